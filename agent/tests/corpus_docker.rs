//! Docker 28 and 29 beside hostguard, with the rules those versions write. Neither is packaged
//! anywhere this suite can install it (Debian 12 has 20.10, Debian 13 has 26.1; both are run for
//! real by tests/system/docker-neighbour), so the filter, nat and raw tables are loaded as moby's
//! own integration test documents them: `integration/network/bridge/iptablesdoc/generated/*.md`
//! at the v28.5.2 and docker-v29.1.3 tags (copied into `tests/data/docker/`, source in
//! `tests/data/MANIFEST.md`), the "iptables commands" listing of each table turned into one
//! `iptables-restore` input. 28 has `DOCKER-FORWARD`, `DOCKER-CT`, `DOCKER-BRIDGE` and still the
//! ISOLATION chains; 29 drops those for `DOCKER-INTERNAL`; neither writes a RETURN in
//! `DOCKER-USER` any more.
//!
//! In a network namespace of the test's own, on both backends: the README's Docker host recipe
//! (`examples/docker-host.json`) and the README example's firewall (`examples/host.json`) are
//! applied; Docker's rules stay byte for byte and in order, plan is in sync, a dockerd restart
//! (its jumps deleted and inserted again at the top) and a new network written the way the
//! documents show are not drift. Needs root, `ip` and both iptables backends.

use crate::util;

use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::Value;
use util::{manifest_rows, Netns, Run};

const BACKENDS: [&str; 2] = ["nft", "legacy"];

/// The tables a document lists, as `iptables-restore` input: each "iptables commands" block
/// (`-P`, `-N`, `-A` lines) under the table the text before it names.
fn tables(file: &str) -> Vec<(String, String)> {
    let text = std::fs::read_to_string(util::data_dir().join("docker").join(file)).unwrap();
    let mut out = Vec::new();
    let mut table = None;
    let mut inside = false;
    let mut body = String::new();
    for line in text.lines() {
        let l = line.trim();
        for t in ["filter", "nat", "raw", "mangle"] {
            if !inside && l.contains(&format!("{t} table")) {
                table = Some(t.to_string());
            }
        }
        if l == "<summary>iptables commands</summary>" {
            inside = true;
            body.clear();
            continue;
        }
        if inside && l == "</details>" {
            inside = false;
            let t = table.take().unwrap_or_else(|| panic!("{file}: an iptables commands block with no table named before it"));
            out.push((t.clone(), format!("*{t}\n{body}COMMIT\n")));
            continue;
        }
        if !inside || l.is_empty() {
            continue;
        }
        let mut words = l.splitn(3, ' ');
        match (words.next(), words.next(), words.next()) {
            (Some("-P"), Some(chain), Some(policy)) => body.push_str(&format!(":{chain} {policy} [0:0]\n")),
            (Some("-N"), Some(chain), None) => body.push_str(&format!(":{chain} - [0:0]\n")),
            (Some("-A"), Some(_), _) => body.push_str(&format!("{l}\n")),
            _ => panic!("{file}: not an iptables command: {l}"),
        }
    }
    assert!(out.iter().any(|(t, _)| t == "filter") && out.iter().any(|(t, _)| t == "nat"), "{file}: {out:?}");
    out
}

/// Every rule of the loaded tables, per table, in order (what Docker wrote).
fn rules(ns: &Netns, b: &str, tables: &[(String, String)]) -> Vec<String> {
    let mut out = Vec::new();
    for (t, _) in tables {
        for l in ns.ok(&[&format!("iptables-{b}-save"), "-t", t]).lines() {
            if l.starts_with("-A ") {
                out.push(format!("{t}: {l}"));
            }
        }
    }
    out
}

fn example(name: &str, b: &str) -> Value {
    let text = std::fs::read_to_string(util::data_dir().join("../../examples").join(name)).unwrap();
    let full: Value = serde_json::from_str(&text).unwrap();
    let mut iptables = full["iptables"].clone();
    iptables["backend"] = b.into();
    serde_json::json!({ "version": 1, "iptables": iptables })
}

fn hg(ns: &Netns, dir: &std::path::Path, args: &[&str], d: &Value) -> Run {
    ns.hostguard_doc(dir, args, d)
}

/// The rules of `after` that are Docker's (not the documents'), in order.
fn dockers(after: &[String]) -> Vec<String> {
    after.iter().filter(|l| !l.contains("lxcbr0") && !l.contains("-i eth0 -m conntrack --ctstate NEW -j DROP")).cloned().collect()
}

#[test]
fn docker_28_and_29_rules_are_never_drift_and_never_moved() {
    static N: AtomicUsize = AtomicUsize::new(0);
    let rows = manifest_rows("docker");
    assert!(rows.len() >= 4, "{rows:?}");
    for (file, expected) in &rows {
        assert_eq!(expected, "passes", "{file}");
        let tables = tables(file);
        for b in BACKENDS {
            let what = format!("{file} on {b}");
            let ns = Netns::new(&format!("dk{}", N.fetch_add(1, Ordering::SeqCst)));
            let dir = tempfile::tempdir().unwrap();
            for (_, input) in &tables {
                let o = ns.run(&[&format!("iptables-{b}-restore"), "--noflush"], Some(input.as_bytes()));
                assert!(o.status.success(), "{what}: restore failed: {}\n{input}", String::from_utf8_lossy(&o.stderr));
            }
            let theirs = rules(&ns, b, &tables);
            assert!(theirs.iter().any(|l| l.contains("DOCKER-FORWARD")), "{what}: not a Docker 28/29 layout: {theirs:#?}");

            let recipe = example("docker-host.json", b);
            let readme = example("host.json", b);
            for (name, d) in [("the Docker host recipe", &recipe), ("the README example", &readme)] {
                hg(&ns, dir.path(), &["apply"], d).expect(2);
                let after = rules(&ns, b, &tables);
                assert_eq!(dockers(&after), theirs, "{what}: {name} changed or moved Docker's rules");
                hg(&ns, dir.path(), &["plan"], d).expect(0);
            }
            let after = rules(&ns, b, &tables);
            assert!(
                after.iter().any(|l| l == "filter: -A DOCKER-USER ! -s 192.0.2.0/24 -i eth0 -m conntrack --ctstate NEW -j DROP"),
                "{what}: the recipe's DOCKER-USER rule is missing: {after:#?}"
            );

            // A dockerd restart: Docker deletes its jumps from FORWARD and inserts them again at the
            // top (moby's setupIPChains / arrangeUserFilterRule).
            for chain in ["DOCKER-FORWARD", "DOCKER-USER"] {
                ns.ok(&[&format!("iptables-{b}"), "-D", "FORWARD", "-j", chain]);
                ns.ok(&[&format!("iptables-{b}"), "-I", "FORWARD", "-j", chain]);
            }
            // A second network, written as the documents write bridge1's rules (its container's
            // own rules, naming 192.0.2.2, left out).
            for l in theirs.iter().filter(|l| l.contains("bridge1") && !l.contains("192.0.2.2")) {
                let (table, rule) = l.split_once(": ").unwrap();
                let rule = rule.replace("bridge1", "bridge2").replace("192.0.2.0/24", "198.51.100.0/24");
                let mut argv = vec![format!("iptables-{b}"), "-t".into(), table.into()];
                argv.extend(shlex::split(&rule).unwrap());
                let refs: Vec<&str> = argv.iter().map(String::as_str).collect();
                ns.ok(&refs);
            }
            for d in [&recipe, &readme] {
                hg(&ns, dir.path(), &["plan"], d).expect(0);
            }
            let before = rules(&ns, b, &tables);
            hg(&ns, dir.path(), &["apply"], &readme).expect(0);
            assert_eq!(rules(&ns, b, &tables), before, "{what}: an apply in sync changed something");
        }
    }
}
