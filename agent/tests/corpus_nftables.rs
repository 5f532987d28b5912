//! Real nftables rulesets that nobody on this project wrote (`tests/data/nftables/`, each file
//! named with its source in `tests/data/MANIFEST.md`), each loaded with `nft -f` into a network
//! namespace of its own, beside a rule iptables-nft keeps in its own `ip filter` table. For every
//! ruleset: `show` prints each of its tables in the `nftables` section (or leaves one out with a
//! warning naming what the kind cannot hold, where the manifest says so) and iptables-nft's table
//! only in the `iptables` section; `plan` of `show`'s document exits 0 and `apply` of it changes
//! nothing, handles included; the document converges an empty namespace to the same listing;
//! a rule deleted (or added) by hand is drift on exactly its table and is repaired. Needs root, `ip`, `nft`
//! and iptables-nft.

use crate::util;

use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::Value;
use util::{manifest_rows, Netns, Run};

fn netns() -> Netns {
    static N: AtomicUsize = AtomicUsize::new(0);
    Netns::new(&format!("nftc{}", N.fetch_add(1, Ordering::SeqCst)))
}

/// hostguard in the namespace with a document file; `show` takes none.
fn hg(ns: &Netns, args: &[&str]) -> Run {
    ns.hostguard(args)
}

fn tables(ns: &Netns) -> Vec<String> {
    ns.ok(&["nft", "list", "tables"]).lines().filter_map(|l| l.strip_prefix("table ")).map(str::to_string).collect()
}

/// The table as nft lists it, read into chains, rules, sets and elements: chains are compared by
/// name, not by the order nft lists them in (the order they were added).
fn listing(ns: &Netns, key: &str) -> hostguard::nftables::listing::Ruleset {
    let mut argv = vec!["nft", "-s", "list", "table"];
    argv.extend(key.split(' '));
    hostguard::nftables::listing::parse(&ns.ok(&argv)).unwrap()
}

#[test]
fn real_rulesets_show_plan_in_sync_apply_unchanged_converge_and_repair() {
    let mut failures = Vec::new();
    for (file, expected) in manifest_rows("nftables") {
        let path = util::data_dir().join("nftables").join(&file);
        let ns = netns();
        ns.ok(&["nft", "-f", path.to_str().unwrap()]);
        // iptables-nft keeps its own `ip filter` table; `show` prints it as iptables only.
        ns.ok(&["iptables-nft", "-A", "INPUT", "-s", "192.0.2.9", "-j", "DROP"]);
        let loaded: Vec<String> = tables(&ns).into_iter().filter(|t| t != "ip filter").collect();
        assert!(!loaded.is_empty(), "{file}: loads no table");
        let show = hg(&ns, &["show", "--sysctl", "net.ipv4.ip_forward"]);
        show.expect(0);
        let doc = show.json();
        assert_eq!(doc["iptables"]["ipv4"]["filter"]["INPUT"]["rules"], serde_json::json!(["-s 192.0.2.9/32 -j DROP"]), "{file}");
        let shown = doc["nftables"]["tables"].as_object().cloned().unwrap_or_default();
        assert!(!shown.contains_key("ip filter"), "{file}: iptables-nft's table is printed twice");
        let left_out: Option<&str> = expected.strip_prefix("left out by `show`: ").map(|w| w.trim_matches('`'));
        for t in &loaded {
            match left_out {
                Some(why) => {
                    assert!(!shown.contains_key(t), "{file}: {t} shown although the kind cannot hold `{why}`");
                    assert!(show.stderr.contains(&format!("nftables table {t} left out")) && show.stderr.contains(why), "{file}: {}", show.stderr);
                }
                None => assert!(shown.contains_key(t), "{file}: {t} not shown; stderr: {}", show.stderr),
            }
        }
        let dir = tempfile::tempdir().unwrap();
        let docpath = dir.path().join("show.json");
        std::fs::write(&docpath, &show.stdout).unwrap();
        let docpath = docpath.to_str().unwrap();
        let before = ns.ok(&["nft", "-a", "-s", "list", "ruleset"]);
        let plan = hg(&ns, &["plan", "--format", "json", docpath]);
        if plan.code != 0 {
            failures.push(format!("{file}: plan of show's document exits {}: {}", plan.code, plan.stdout));
            continue;
        }
        hg(&ns, &["apply", "--format", "json", docpath]).expect(0);
        assert_eq!(ns.ok(&["nft", "-a", "-s", "list", "ruleset"]), before, "{file}: apply of show's document changed the ruleset");
        if shown.is_empty() {
            continue;
        }
        // The same document converges an empty namespace to the same tables.
        let fresh = netns();
        hg(&fresh, &["apply", "--format", "json", docpath]).expect(2);
        hg(&fresh, &["plan", "--format", "json", docpath]).expect(0);
        for t in shown.keys() {
            assert_eq!(listing(&fresh, t), listing(&ns, t), "{file}: {t} converges to another listing");
        }
        // A rule deleted by hand (the last of the longest chain; a rule added by hand when no
        // chain has one) is drift on exactly its table.
        let (key, chain) = longest_chain(&shown);
        let mut argv = vec!["nft", "-a", "list", "chain"];
        argv.extend(key.split(' '));
        argv.push(&chain);
        let out = ns.ok(&argv);
        let handle = out.lines().filter(|l| l.contains("# handle") && !l.contains('{')).last().map(|l| l.rsplit("handle ").next().unwrap().trim().to_string());
        let mut edit = vec!["nft"];
        match &handle {
            Some(h) => {
                edit.extend(["delete", "rule"]);
                edit.extend(key.split(' '));
                edit.extend([chain.as_str(), "handle", h]);
            }
            None => {
                edit.extend(["add", "rule"]);
                edit.extend(key.split(' '));
                edit.extend([chain.as_str(), "tcp", "dport", "23", "accept"]);
            }
        }
        ns.ok(&edit);
        let plan = hg(&ns, &["plan", "--format", "json", docpath]);
        plan.expect(2);
        let drifted: Vec<String> = plan.json()["resources"].as_array().unwrap().iter().filter(|r| r["status"] != "in_sync").map(|r| r["id"].as_str().unwrap().to_string()).collect();
        assert_eq!(drifted, [format!("nftables/{}", key.replace(' ', "/"))], "{file}");
        hg(&ns, &["apply", "--format", "json", docpath]).expect(2);
        hg(&ns, &["plan", "--format", "json", docpath]).expect(0);
        assert_eq!(listing(&ns, &key), listing(&fresh, &key), "{file}: {key} repaired to another listing");
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

/// The shown table and chain with the most rules.
fn longest_chain(shown: &serde_json::Map<String, Value>) -> (String, String) {
    shown
        .iter()
        .flat_map(|(t, v)| v["chains"].as_object().unwrap().iter().map(move |(c, cv)| (cv["rules"].as_array().unwrap().len(), t.clone(), c.clone())))
        .max()
        .map(|(_, t, c)| (t, c))
        .unwrap()
}
