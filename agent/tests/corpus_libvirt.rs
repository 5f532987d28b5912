//! libvirt beside hostguard, with the rules libvirt's own network driver writes. libvirtd is too
//! heavy to run here (a daemon with its own D-Bus, dnsmasq and polkit); instead the exact
//! iptables commands its firewall code issues, as libvirt's test suite records them
//! (`tests/networkxml2firewalldata/*.iptables`, copied into `tests/data/libvirt/` with the source
//! in `tests/data/MANIFEST.md`), are run as written in a network namespace of the test's own:
//! the private chains (`base.iptables`: `LIBVIRT_INP/OUT/FWO/FWI/FWX` in filter, `LIBVIRT_PRT` in
//! nat and mangle, each jumped to from the top of its built-in chain) and a NAT network with IPv4
//! and IPv6 addresses and a port range. hostguard then owns INPUT, FORWARD, OUTPUT and both
//! POSTROUTING chains with `"foreign": ["libvirt"]` and `purge: true`: libvirt's rules are never
//! drift, apply keeps them byte for byte in their places, libvirt tearing its network down and up
//! again (what a network restart does) is not drift, and a `--confirm` rollback during which
//! libvirt re-adds its rules leaves them all. Needs root, `ip` and both iptables backends.

use crate::util;

use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::{json, Value};
use util::{manifest_rows, Netns, Run};

const BACKENDS: [&str; 2] = ["nft", "legacy"];

/// One libvirt command per entry: the argument vector as libvirt's test data records it
/// (`iptables \` continuation lines; `'!'` is the shell quoting of `!`).
fn commands(file: &str) -> Vec<Vec<String>> {
    let text = std::fs::read_to_string(util::data_dir().join("libvirt").join(file)).unwrap();
    let mut out = Vec::new();
    let mut cur: Vec<String> = Vec::new();
    for line in text.lines() {
        let (body, more) = match line.strip_suffix(" \\") {
            Some(b) => (b, true),
            None => (line, false),
        };
        cur.extend(body.split_whitespace().map(|w| w.trim_matches('\'').to_string()));
        if !more && !cur.is_empty() {
            out.push(std::mem::take(&mut cur));
        }
    }
    out
}

/// Run libvirt's commands in the namespace on one backend; `--insert` becomes `--delete` with
/// `delete` (how libvirt removes a network's rules). `--list-rules` (libvirt reading first) is
/// run too and ignored.
fn libvirt(ns: &Netns, b: &str, file: &str, delete: bool) {
    for mut argv in commands(file) {
        assert!(argv[0] == "iptables" || argv[0] == "ip6tables", "{file}: {argv:?}");
        argv[0] = format!("{}-{b}", argv[0]);
        if delete {
            if !argv.iter().any(|a| a == "--insert") {
                continue;
            }
            for a in argv.iter_mut() {
                if a == "--insert" {
                    *a = "--delete".into();
                }
            }
        }
        let refs: Vec<&str> = argv.iter().map(String::as_str).collect();
        ns.ok(&refs);
    }
}

/// Every line of libvirt's in both families' tables, in order: its chains and every rule that
/// names one of them or its bridge.
fn libvirts(ns: &Netns, b: &str) -> Vec<String> {
    let mut out = Vec::new();
    for tool in ["iptables", "ip6tables"] {
        for l in ns.ok(&[&format!("{tool}-{b}-save")]).lines() {
            if l.contains("LIBVIRT_") || l.contains("virbr0") || l.starts_with('*') {
                out.push(format!("{tool}: {}", l.split(" [").next().unwrap()));
            }
        }
    }
    out
}

fn doc(b: &str, forward: &[&str]) -> Value {
    let chain = |rules: &[&str]| json!({ "purge": true, "rules": rules });
    json!({ "version": 1, "iptables": { "backend": b, "foreign": ["libvirt"],
        "ipv4": {
            "filter": {
                "INPUT": chain(&["-i lo -j ACCEPT", "-p tcp --dport 22 -j ACCEPT"]),
                "FORWARD": { "policy": "DROP", "purge": true, "rules": forward },
                "OUTPUT": chain(&[]),
            },
            "nat": { "POSTROUTING": chain(&["-s 10.0.3.0/24 ! -d 10.0.3.0/24 -j MASQUERADE"]) },
            "mangle": { "POSTROUTING": chain(&[]) },
        },
        "ipv6": {
            "filter": { "FORWARD": { "policy": "DROP", "purge": true, "rules": ["-i lxcbr0 -j ACCEPT"] } },
            "nat": { "POSTROUTING": chain(&[]) },
        } } })
}

fn hg(ns: &Netns, dir: &std::path::Path, args: &[&str], d: &Value) -> Run {
    ns.hostguard_doc(dir, args, d)
}

/// No line of a report's diffs removes or moves a libvirt rule.
fn no_libvirt_drift(r: &Run, what: &str) {
    for res in r.json()["resources"].as_array().unwrap() {
        for l in res["diff"].as_array().into_iter().flatten() {
            let l = l.as_str().unwrap();
            assert!(!(l.contains("LIBVIRT_") || l.contains("virbr0")), "{what}: libvirt's rule is drift: {l}\n{}", r.stdout);
        }
    }
}

#[test]
fn libvirts_rules_are_never_drift_never_moved_and_survive_rollback() {
    static N: AtomicUsize = AtomicUsize::new(0);
    let rows = manifest_rows("libvirt");
    let network = rows.iter().find(|(f, _)| f != "base.iptables").map(|(f, _)| f.clone()).expect("a network file");
    for (file, expected) in &rows {
        assert_eq!(expected, "passes", "{file}");
    }
    for b in BACKENDS {
        let ns = Netns::new(&format!("lv{}", N.fetch_add(1, Ordering::SeqCst)));
        let dir = tempfile::tempdir().unwrap();
        libvirt(&ns, b, "base.iptables", false);
        libvirt(&ns, b, &network, false);
        let theirs = libvirts(&ns, b);
        assert!(theirs.iter().filter(|l| l.contains("-A ")).count() >= 40, "{b}: libvirt's rules did not load: {theirs:#?}");
        let lxc = ["-i lxcbr0 -o eth0 -j ACCEPT", "-i eth0 -o lxcbr0 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT"];

        let plan = hg(&ns, dir.path(), &["plan"], &doc(b, &lxc));
        plan.expect(2);
        no_libvirt_drift(&plan, b);
        hg(&ns, dir.path(), &["apply"], &doc(b, &lxc)).expect(2);
        assert_eq!(libvirts(&ns, b), theirs, "{b}: apply changed or moved libvirt's rules");
        hg(&ns, dir.path(), &["plan"], &doc(b, &lxc)).expect(0);

        // A network restart: libvirt deletes its network's rules, then inserts them again (its
        // private chains and their jumps are kept: iptablesPrivateChainCreate adds only what
        // `--list-rules` does not show).
        libvirt(&ns, b, &network, true);
        libvirt(&ns, b, &network, false);
        let plan = hg(&ns, dir.path(), &["plan"], &doc(b, &lxc));
        no_libvirt_drift(&plan, b);
        plan.expect(0);

        // --confirm, not confirmed, while libvirt restarts the network during the wait.
        hg(&ns, dir.path(), &["apply", "--confirm", "3"], &doc(b, &lxc[..1])).expect(2);
        libvirt(&ns, b, &network, true);
        libvirt(&ns, b, &network, false);
        let start = std::time::Instant::now();
        while hg(&ns, dir.path(), &["plan"], &doc(b, &lxc)).code != 0 && start.elapsed() < std::time::Duration::from_secs(20) {
            std::thread::sleep(std::time::Duration::from_millis(300));
        }
        let after = hg(&ns, dir.path(), &["plan"], &doc(b, &lxc));
        no_libvirt_drift(&after, b);
        after.expect(0);
        let mut now = libvirts(&ns, b);
        let mut before = theirs.clone();
        now.sort();
        before.sort();
        assert_eq!(now, before, "{b}: the rollback lost or added libvirt rules");
    }
}
