//! The nftables resource kind against real nft, each test inside a network namespace it creates
//! and deletes: the machine's own ruleset is never read or written. Needs root, `ip` (iproute2)
//! and `nft` (the nftables package); without them the tests fail loudly rather than skip.

use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::{json, Value};

use crate::util;

/// A network namespace of the test's own (`util::Netns`, deleted on drop, also when the test
/// fails) and a temp dir for hostguard's `--root`.
struct Netns {
    ns: util::Netns,
    root: tempfile::TempDir,
}

impl Netns {
    fn new() -> Netns {
        static N: AtomicUsize = AtomicUsize::new(0);
        Netns { ns: util::Netns::new(&format!("nft{}", N.fetch_add(1, Ordering::SeqCst))), root: tempfile::tempdir().unwrap() }
    }

    fn ok(&self, argv: &[&str]) -> String {
        self.ns.ok(argv)
    }

    /// `nft -f -` of a script in the namespace (what an operator or a neighbour would write).
    fn nft(&self, script: &str) {
        self.ns.nft(script)
    }

    fn hostguard(&self, args: &[&str], doc: &Value) -> Run {
        self.hostguard_env(args, doc, &[])
    }

    /// hostguard with `--root` in the temp dir and `--format json`, the document on stdin.
    fn hostguard_env(&self, args: &[&str], doc: &Value, env: &[(&str, &str)]) -> Run {
        let root = self.root.path().to_str().unwrap().to_string();
        let mut argv = vec!["--root", &root, "--format", "json"];
        argv.extend_from_slice(args);
        argv.push("-");
        Run::from(util::run_with(&self.ns.prefix(), &argv, Some(doc.to_string().as_bytes()), env))
    }

    fn apply(&self, doc: &Value) -> Run {
        self.hostguard(&["apply"], doc)
    }

    fn plan(&self, doc: &Value) -> Run {
        self.hostguard(&["plan"], doc)
    }
}

#[derive(Debug)]
struct Run {
    code: i32,
    report: Value,
    stderr: String,
    stdout: String,
}

impl From<util::Run> for Run {
    fn from(o: util::Run) -> Run {
        Run { code: o.code, report: serde_json::from_str(&o.stdout).unwrap_or(Value::Null), stderr: o.stderr, stdout: o.stdout }
    }
}

impl Run {
    fn resource(&self, id: &str) -> &Value {
        self.report["resources"]
            .as_array()
            .and_then(|rs| rs.iter().find(|r| r["id"] == id))
            .unwrap_or_else(|| panic!("no resource {id} in {:#}\nstderr: {}", self.report, self.stderr))
    }
    fn status(&self, id: &str) -> &str {
        self.resource(id)["status"].as_str().unwrap()
    }
    #[track_caller]
    fn expect(&self, code: i32, what: &str) -> &Self {
        assert_eq!(self.code, code, "{what}: exit {}\nreport: {:#}\nstderr: {}", self.code, self.report, self.stderr);
        self
    }
}

const HG: &str = "nftables/inet/hostguard";
const NAT: &str = "nftables/ip/nat_lxc";

/// Two owned tables: a forward filter with a set, and a NAT table.
fn two_tables() -> Value {
    json!({ "version": 1, "nftables": { "tables": {
        "inet hostguard": {
            "chains": {
                "forward": { "type": "filter", "hook": "forward", "priority": 0, "policy": "drop",
                             "rules": ["ct state established,related accept",
                                       "ip saddr @blocked drop",
                                       "iifname \"lxcbr0\" oifname \"eth0\" accept",
                                       "iifname \"lxcbr0\" oifname \"lxcbr0\" drop"] },
                "input": { "type": "filter", "hook": "input", "priority": "filter", "policy": "accept",
                           "rules": ["tcp dport ssh accept", "jump lxc_in"] },
                "lxc_in": { "rules": ["iifname \"lxcbr0\" udp dport { 53, 67 } accept"] }
            },
            "sets": { "blocked": { "type": "ipv4_addr", "flags": ["interval"], "elements": ["192.0.2.0/24", "198.51.100.7"] } }
        },
        "ip nat_lxc": {
            "chains": { "postrouting": { "type": "nat", "hook": "postrouting", "priority": "srcnat",
                                          "rules": ["ip saddr 10.0.3.0/24 oifname != \"lxcbr0\" masquerade"] } }
        }
    } } })
}

#[test]
fn converges_two_tables_from_empty_then_is_in_sync() {
    let ns = Netns::new();
    let r = ns.plan(&two_tables());
    r.expect(2, "plan from empty");
    assert_eq!(r.status(HG), "drift");
    assert!(r.resource(HG)["message"].as_str().unwrap().contains("absent"), "{:#}", r.report);
    let r = ns.apply(&two_tables());
    r.expect(2, "apply from empty");
    assert_eq!((r.status(HG), r.status(NAT)), ("changed", "changed"));
    let listed = ns.ok(&["nft", "list", "table", "inet", "hostguard"]);
    assert!(listed.contains("tcp dport 22 accept"), "{listed}");
    ns.apply(&two_tables()).expect(0, "second apply");
    let r = ns.plan(&two_tables());
    r.expect(0, "plan after apply");
    assert!(r.resource(HG)["message"].as_str().unwrap().contains("in sync"), "{:#}", r.report);
}

#[test]
fn drift_is_reported_on_exactly_that_table_and_repaired() {
    let ns = Netns::new();
    ns.apply(&two_tables()).expect(2, "first apply");
    let handle = |chain: &str, needle: &str| -> String {
        let out = ns.ok(&["nft", "-a", "list", "chain", "inet", "hostguard", chain]);
        let line = out.lines().find(|l| l.contains(needle)).unwrap_or_else(|| panic!("{needle} not in {out}"));
        line.rsplit("handle ").next().unwrap().trim().to_string()
    };
    let cases: Vec<(&str, Box<dyn Fn()>, &str)> = vec![
        ("a rule removed", Box::new(|| { let h = handle("forward", "oifname \"eth0\""); ns.ok(&["nft", "delete", "rule", "inet", "hostguard", "forward", "handle", &h]); }), "+ chain forward: iifname \"lxcbr0\" oifname \"eth0\" accept"),
        ("a rule added by hand", Box::new(|| { ns.ok(&["nft", "add", "rule", "inet", "hostguard", "input", "tcp", "dport", "23", "accept"]); }), "- chain input: tcp dport 23 accept"),
        ("a policy flipped", Box::new(|| { ns.ok(&["nft", "add", "chain", "inet", "hostguard", "forward", "{ policy accept; }"]); }), "+ chain forward: type filter hook forward priority filter; policy drop;"),
        ("a set element removed", Box::new(|| { ns.ok(&["nft", "delete", "element", "inet", "hostguard", "blocked", "{ 198.51.100.7 }"]); }), "+ set blocked: element 198.51.100.7"),
    ];
    for (what, break_it, line) in cases {
        break_it();
        let r = ns.plan(&two_tables());
        r.expect(2, what);
        assert_eq!((r.status(HG), r.status(NAT)), ("drift", "in_sync"), "{what}: {:#}", r.report);
        let diff: Vec<&str> = r.resource(HG)["diff"].as_array().unwrap().iter().map(|l| l.as_str().unwrap()).collect();
        assert!(diff.contains(&line), "{what}: {line:?} not in {diff:#?}");
        let r = ns.apply(&two_tables());
        r.expect(2, what);
        assert_eq!((r.status(HG), r.status(NAT)), ("changed", "in_sync"), "{what}: {:#}", r.report);
        ns.plan(&two_tables()).expect(0, what);
    }
}

#[test]
fn spellings_nft_normalises_are_never_drift() {
    let ns = Netns::new();
    let spellings = [
        "tcp dport ssh accept",
        "meta l4proto icmp icmp type echo-request accept",
        "ct state {established, related} accept",
        "ct state established,related accept",
        "iifname lxcbr0 accept",
        "ip protocol tcp tcp dport 80 accept",
        "tcp dport { http, https } counter accept",
        "ip saddr & 255.255.255.0 == 10.0.3.0 drop",
        "meta iifname \"lo\" accept",
        "ip6 nexthdr ipv6-icmp icmpv6 type nd-neighbor-solicit accept",
        "udp dport 53 ct state new accept",
        "tcp flags & (syn|ack) == syn drop",
    ];
    let doc = json!({ "version": 1, "nftables": { "tables": { "inet hostguard": {
        "chains": {
            "input": { "type": "filter", "hook": "input", "priority": 0, "rules": spellings },
            "pre": { "type": "filter", "hook": "prerouting", "priority": "mangle + 5", "policy": "accept", "rules": [] },
            "out": { "type": "filter", "hook": "output", "priority": -300, "rules": ["counter"] }
        },
        "sets": { "ports": { "type": "inet_service", "elements": ["ssh", "80"] },
                  "nets": { "type": "ipv4_addr", "flags": ["interval"], "elements": ["10.0.0.0/8", "192.0.2.1"] },
                  "seen": { "type": "ipv4_addr", "flags": ["dynamic", "timeout"], "timeout": "1h" } },
        "maps": { "vm": { "type": "ipv4_addr : verdict", "elements": ["10.1.1.1 : accept"] } }
    } } } });
    ns.apply(&doc).expect(2, "apply");
    // Traffic the kernel counts, and elements it adds at run time, are not drift either.
    ns.ok(&["nft", "add", "element", "inet", "hostguard", "seen", "{ 203.0.113.9 timeout 30m }"]);
    let send = "import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.sendto(b'x', ('127.0.0.1', 9))";
    ns.ok(&["ip", "link", "set", "lo", "up"]);
    ns.ok(&["python3", "-c", send]);
    assert!(!ns.ok(&["nft", "list", "chain", "inet", "hostguard", "out"]).contains("packets 0 "), "no packet was counted");
    let r = ns.plan(&doc);
    r.expect(0, "plan after apply");
}

#[test]
fn a_neighbour_table_at_the_same_hook_is_byte_for_byte_untouched() {
    let ns = Netns::new();
    // As Docker 29's nftables backend and firewalld would have it: their own tables, own chains
    // at the forward hook.
    ns.nft("table ip docker-bridges {\n chain filter-FORWARD {\n type filter hook forward priority filter; policy accept;\n counter jump filter-forward-in\n }\n chain filter-forward-in {\n iifname \"docker0\" accept\n }\n}\ntable inet firewalld {\n chain filter_FORWARD {\n type filter hook forward priority filter + 10; policy accept;\n ct state established,related accept\n }\n}\n");
    let neighbours = || ns.ok(&["nft", "-a", "list", "table", "ip", "docker-bridges"]) + &ns.ok(&["nft", "-a", "list", "table", "inet", "firewalld"]);
    let before = neighbours();
    ns.apply(&two_tables()).expect(2, "apply beside neighbours");
    ns.ok(&["nft", "add", "rule", "inet", "hostguard", "forward", "accept"]);
    ns.apply(&two_tables()).expect(2, "repair beside neighbours");
    assert_eq!(before, neighbours(), "a neighbour table changed");
    // A neighbour's rule never shows in hostguard's report.
    let r = ns.plan(&two_tables());
    r.expect(0, "plan beside neighbours");
}

#[test]
fn a_batch_with_one_bad_rule_changes_nothing_and_names_the_rule() {
    let ns = Netns::new();
    ns.apply(&two_tables()).expect(2, "first apply");
    let before = ns.ok(&["nft", "-s", "list", "ruleset"]);
    let mut doc = two_tables();
    doc["nftables"]["tables"]["inet hostguard"]["chains"]["input"]["rules"] = json!(["tcp dport 22 accept", "tcp dport 2222 acept"]);
    doc["nftables"]["tables"]["ip nat_lxc"]["chains"]["postrouting"]["rules"] = json!(["masquerade"]);
    // Both tables are failed in plan already: with one refused, neither would change.
    let r = ns.plan(&doc);
    r.expect(4, "plan with a bad rule");
    let msg = r.resource(HG)["message"].as_str().unwrap();
    assert_eq!((r.status(HG), r.status(NAT)), ("failed", "failed"), "{:#}", r.report);
    assert!(msg.contains(r#"nftables.tables["inet hostguard"].chains["input"].rules[1] `tcp dport 2222 acept`"#), "{msg}");
    let r = ns.apply(&doc);
    r.expect(4, "apply with a bad rule");
    assert_eq!((r.status(HG), r.status(NAT)), ("failed", "failed"), "{:#}", r.report);
    assert_eq!(ns.ok(&["nft", "-s", "list", "ruleset"]), before, "a refused batch changed the ruleset");
}

#[test]
fn a_batch_the_host_refuses_changes_no_table_and_says_which() {
    let ns = Netns::new();
    ns.apply(&two_tables()).expect(2, "first apply");
    let before = ns.ok(&["nft", "-s", "list", "ruleset"]);
    // Loads in the throwaway namespace (which gets a dummy device of that name) but not on this
    // host, which has no such device: `nft -c` refuses the batch.
    let mut doc = two_tables();
    doc["nftables"]["tables"]["netdev edge"] = json!({ "chains": { "in": {
        "type": "filter", "hook": "ingress", "device": "hgmissing0", "priority": 0, "rules": ["iif \"hgmissing0\" accept"] } } });
    doc["nftables"]["tables"]["ip nat_lxc"]["chains"]["postrouting"]["rules"] = json!(["masquerade"]);
    let r = ns.apply(&doc);
    r.expect(4, "apply refused by the host");
    let msg = r.resource("nftables/netdev/edge")["message"].as_str().unwrap();
    assert!(msg.contains("`nft -c` refused the batch, so no table was changed"), "{msg}");
    assert!(msg.contains(r#"Interface does not exist: nftables.tables["netdev edge"].chains["in"].rules[0]"#), "{msg}");
    assert_eq!(r.status(NAT), "failed");
    assert_eq!(ns.ok(&["nft", "-s", "list", "ruleset"]), before, "a refused batch changed the ruleset");
}

#[test]
fn tables_hostguard_does_not_own_are_not_in_the_report_and_iptables_works_beside() {
    let ns = Netns::new();
    let mut doc = two_tables();
    doc["iptables"] = json!({ "backend": "nft", "ipv4": { "filter": { "FORWARD": { "policy": "DROP", "purge": true, "rules": ["-i lxcbr0 -j ACCEPT"] } } } });
    let r = ns.apply(&doc);
    r.expect(2, "apply of both sections");
    assert_eq!(r.status("iptables/ipv4/filter/FORWARD"), "changed");
    assert_eq!(r.report["resources"].as_array().unwrap().len(), 3);
    ns.plan(&doc).expect(0, "plan of both sections");
}

const SSH: &[(&str, &str)] = &[("SSH_CONNECTION", "10.9.8.7 50000 10.0.0.2 22")];

fn input_table(chains: Value) -> Value {
    json!({ "version": 1, "nftables": { "tables": { "inet hostguard": { "chains": chains } } } })
}

#[test]
fn the_ssh_guard_walks_every_owned_base_chain_and_each_layer() {
    let ns = Netns::new();
    let tables = || ns.ok(&["nft", "list", "tables"]);
    // A drop policy with no accept for the session: refused, nothing written; plan says so.
    let locks_out = input_table(json!({ "input": { "type": "filter", "hook": "input", "priority": 0, "policy": "drop",
                                                   "rules": ["iifname \"lo\" accept", "tcp dport 80 accept"] } }));
    let r = ns.hostguard_env(&["apply"], &locks_out, SSH);
    r.expect(1, "apply that locks the session out");
    assert!(r.stderr.contains("would drop the SSH session") && r.stderr.contains("base chain input"), "{}", r.stderr);
    assert!(!tables().contains("hostguard"), "a refused apply wrote the table");
    let r = ns.hostguard_env(&["plan"], &locks_out, SSH);
    r.expect(2, "plan of it");
    assert!(r.resource(HG)["message"].as_str().unwrap().contains("apply would refuse without --force"), "{:#}", r.report);
    // An accept in one base chain does not save the session from a drop in another at the same
    // path: a prerouting chain that drops its address.
    let two_chains = input_table(json!({
        "input": { "type": "filter", "hook": "input", "priority": 0, "policy": "drop", "rules": ["ct state established,related accept"] },
        "early": { "type": "filter", "hook": "prerouting", "priority": "raw", "rules": ["ip saddr 10.9.8.0/24 drop"] } }));
    let r = ns.hostguard_env(&["apply"], &two_chains, SSH);
    r.expect(1, "a drop in a second base chain");
    assert!(r.stderr.contains("base chain early (priority -300): the rule `ip saddr 10.9.8.0/24 drop`"), "{}", r.stderr);
    // --force applies anyway.
    ns.hostguard_env(&["apply", "--force"], &locks_out, SSH).expect(2, "--force");
    assert!(tables().contains("inet hostguard"));
    // The other layer is guarded too: the nft table keeps the session, iptables' INPUT would not.
    let mut both = input_table(json!({ "input": { "type": "filter", "hook": "input", "priority": 0, "policy": "drop",
                                                  "rules": ["ct state established,related accept"] } }));
    both["iptables"] = json!({ "backend": "nft", "ipv4": { "filter": { "INPUT": { "policy": "DROP", "purge": true, "rules": ["-p udp --dport 53 -j ACCEPT"] } } } });
    let before = ns.ok(&["nft", "-s", "list", "ruleset"]);
    let r = ns.hostguard_env(&["apply"], &both, SSH);
    r.expect(1, "iptables INPUT that drops the session beside a safe nft table");
    assert!(r.stderr.contains("filter INPUT chain would drop the SSH session"), "{}", r.stderr);
    assert_eq!(ns.ok(&["nft", "-s", "list", "ruleset"]), before, "a refused apply changed a layer");
    // Both layers keep it: applied.
    both["iptables"]["ipv4"]["filter"]["INPUT"]["rules"] = json!(["-p tcp --dport 22 -j ACCEPT"]);
    let r = ns.hostguard_env(&["apply"], &both, SSH);
    r.expect(2, "both layers accept the session");
    assert_eq!((r.status(HG), r.status("iptables/ipv4/filter/INPUT")), ("changed", "changed"), "{:#}", r.report);
}

#[test]
fn an_absent_table_nft_refuses_is_failed_in_plan_and_one_it_takes_converges_in_nfts_spelling() {
    let ns = Netns::new();
    // Absent tables are checked with `nft -c` on the host rather than in a throwaway namespace;
    // a refusal still names the rule, in plan.
    let mut doc = two_tables();
    doc["nftables"]["tables"]["inet hostguard"]["chains"]["lxc_in"]["rules"] = json!(["udp dport 53 acept"]);
    let r = ns.plan(&doc);
    r.expect(4, "plan of an absent table with a bad rule");
    let msg = r.resource(HG)["message"].as_str().unwrap();
    assert!(msg.contains(r#"nftables.tables["inet hostguard"].chains["lxc_in"].rules[0] `udp dport 53 acept`"#), "{msg}");
    assert_eq!(ns.ok(&["nft", "list", "ruleset"]), "", "plan wrote something");
    // A document spelled otherwise than nft lists it (`tcp dport ssh`) is created, read back and
    // compared in canonical form: changed, then in sync.
    let r = ns.plan(&two_tables());
    r.expect(2, "plan from empty");
    assert!(r.resource(HG)["message"].as_str().unwrap().contains("`nft -c` accepts it"), "{:#}", r.report);
    let r = ns.apply(&two_tables());
    r.expect(2, "apply from empty");
    assert_eq!(r.status(HG), "changed", "{:#}", r.report);
    ns.plan(&two_tables()).expect(0, "plan after apply");
}

/// `hostguard confirm` in the namespace (no document).
fn confirm(ns: &Netns) -> Run {
    let root = ns.root.path().to_str().unwrap().to_string();
    Run::from(util::run_with(&ns.ns.prefix(), &["--root", &root, "confirm"], None, &[]))
}

#[track_caller]
fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let start = std::time::Instant::now();
    while !f() {
        assert!(start.elapsed() < std::time::Duration::from_secs(20), "timed out waiting: {what}");
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

#[test]
fn confirm_rolls_back_only_the_owned_tables_it_replaced_unless_confirmed() {
    let ns = Netns::new();
    ns.nft("table ip docker-bridges {\n chain filter-FORWARD {\n type filter hook forward priority filter; policy accept;\n iifname \"docker0\" accept\n }\n}\n");
    ns.apply(&two_tables()).expect(2, "first apply");
    let owned = || ns.ok(&["nft", "-s", "list", "table", "inet", "hostguard"]) + &ns.ok(&["nft", "-s", "list", "table", "ip", "nat_lxc"]);
    let neighbour = || ns.ok(&["nft", "-a", "list", "table", "ip", "docker-bridges"]);
    let (before, docker) = (owned(), neighbour());
    // A changed table, and a new one that did not exist before.
    let mut doc = two_tables();
    doc["nftables"]["tables"]["inet hostguard"]["chains"]["input"]["rules"] = json!(["tcp dport 2222 accept", "jump lxc_in"]);
    doc["nftables"]["tables"]["inet extra"] = json!({ "chains": { "c": { "rules": ["counter"] } } });
    let r = ns.hostguard(&["apply", "--confirm", "2"], &doc);
    r.expect(2, "apply --confirm 2");
    assert!(r.resource(HG)["message"].as_str().unwrap().contains("rolled back in 2s unless `hostguard confirm` runs"), "{:#}", r.report);
    assert!(owned().contains("2222"), "the change was not made");
    assert_eq!(neighbour(), docker, "the apply touched a neighbour's table");
    // Meanwhile the neighbour adds a rule of its own: the rollback must keep it.
    ns.ok(&["nft", "add", "rule", "ip", "docker-bridges", "filter-FORWARD", "oifname", "\"docker0\"", "accept"]);
    let docker = neighbour();
    wait_until("the rollback", || !ns.ok(&["nft", "list", "tables"]).contains("inet extra"));
    assert_eq!(owned(), before, "the owned tables were not restored");
    assert_eq!(neighbour(), docker, "the rollback touched a neighbour's table");
    let late = confirm(&ns);
    assert_eq!(late.code, 1, "confirm after the rollback: {}", late.stderr);
    ns.plan(&two_tables()).expect(0, "in sync with the first document again");
    // Confirmed in time: kept.
    ns.hostguard(&["apply", "--confirm", "6"], &doc).expect(2, "apply --confirm 6");
    let ok = confirm(&ns);
    assert_eq!(ok.code, 0, "confirm: {}", ok.stderr);
    std::thread::sleep(std::time::Duration::from_secs(8));
    ns.plan(&doc).expect(0, "the confirmed change is kept");
    assert!(ok.stdout.contains("2 table(s)"), "{}", ok.stdout);
}

#[test]
fn one_confirm_window_covers_both_layers() {
    let ns = Netns::new();
    ns.apply(&two_tables()).expect(2, "first apply");
    let nft_before = ns.ok(&["nft", "-s", "list", "table", "inet", "hostguard"]);
    let ipt_before = ns.ok(&["iptables-nft", "-S", "FORWARD"]);
    let mut doc = two_tables();
    doc["nftables"]["tables"]["inet hostguard"]["chains"]["forward"]["policy"] = json!("accept");
    doc["iptables"] = json!({ "backend": "nft", "ipv4": { "filter": { "FORWARD": { "policy": "DROP", "purge": true, "rules": ["-i lxcbr0 -j ACCEPT"] } } } });
    let r = ns.hostguard(&["apply", "--confirm", "2"], &doc);
    r.expect(2, "apply --confirm of both sections");
    assert_eq!((r.status(HG), r.status("iptables/ipv4/filter/FORWARD")), ("changed", "changed"), "{:#}", r.report);
    wait_until("both layers rolled back", || {
        ns.ok(&["iptables-nft", "-S", "FORWARD"]) == ipt_before && ns.ok(&["nft", "-s", "list", "table", "inet", "hostguard"]) == nft_before
    });
    let late = confirm(&ns);
    assert!(late.code == 1 && late.stderr.contains("rolled back"), "{late:?}");
}
