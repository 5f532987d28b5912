//! The iptables resource kind against real iptables (nf_tables and legacy, IPv4 and IPv6), each
//! test inside network namespaces it creates and deletes: the machine's own firewall is never
//! read or written. Needs root, `ip` (iproute2) and both iptables backends; without them the
//! tests fail loudly rather than skip.

use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

const BIN: &str = env!("CARGO_BIN_EXE_hostguard");

/// A named network namespace, deleted on drop (also when the test fails).
struct Netns {
    name: String,
    root: tempfile::TempDir,
}

impl Netns {
    fn new() -> Netns {
        static N: AtomicUsize = AtomicUsize::new(0);
        let name = format!("hg-ipt-{}-{}", std::process::id(), N.fetch_add(1, Ordering::SeqCst));
        let out = Command::new("ip").args(["netns", "add", &name]).output().expect("run ip (iproute2 is required)");
        assert!(out.status.success(), "ip netns add {name}: {}", String::from_utf8_lossy(&out.stderr));
        Netns { name, root: tempfile::tempdir().unwrap() }
    }

    fn cmd(&self, argv: &[&str]) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name]).args(argv).env_remove("SSH_CONNECTION");
        c
    }

    /// Run a command in the namespace; panics when it cannot start.
    fn run(&self, argv: &[&str]) -> Output {
        self.cmd(argv).output().unwrap_or_else(|e| panic!("{argv:?}: {e}"))
    }

    /// Run a command that must succeed.
    fn ok(&self, argv: &[&str]) -> String {
        let o = self.run(argv);
        assert!(o.status.success(), "{argv:?} failed: {}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8(o.stdout).unwrap()
    }

    /// hostguard with `--root` in a temp dir, the document on stdin.
    fn hostguard(&self, args: &[&str], doc: &Value, env: &[(&str, &str)]) -> Run {
        self.hostguard_as(&[], args, doc, env)
    }

    /// hostguard run through a wrapper command (`setpriv ...`).
    fn hostguard_as(&self, prefix: &[&str], args: &[&str], doc: &Value, env: &[(&str, &str)]) -> Run {
        let root = self.root.path().to_str().unwrap().to_string();
        let mut argv = prefix.to_vec();
        argv.extend([BIN, "--root", &root, "--format", "json"]);
        argv.extend_from_slice(args);
        argv.push("-");
        let mut c = self.cmd(&argv);
        for (k, v) in env {
            c.env(k, v);
        }
        let mut child = c.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
        use std::io::Write;
        child.stdin.take().unwrap().write_all(doc.to_string().as_bytes()).unwrap();
        Run::from(child.wait_with_output().unwrap())
    }

    /// hostguard with no document (`confirm`).
    fn bare(&self, args: &[&str]) -> Run {
        let root = self.root.path().to_str().unwrap().to_string();
        let mut argv = vec![BIN, "--root", &root];
        argv.extend_from_slice(args);
        Run::from(self.run(&argv))
    }

    fn apply(&self, doc: &Value) -> Run {
        self.hostguard(&["apply"], doc, &[])
    }

    fn plan(&self, doc: &Value) -> Run {
        self.hostguard(&["plan"], doc, &[])
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.name]).status();
    }
}

#[derive(Debug)]
struct Run {
    code: i32,
    report: Value,
    stderr: String,
}

impl From<Output> for Run {
    fn from(o: Output) -> Run {
        let stdout = String::from_utf8_lossy(&o.stdout);
        Run {
            code: o.status.code().unwrap_or(-1),
            report: serde_json::from_str(&stdout).unwrap_or(Value::Null),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

impl Run {
    fn resource(&self, id: &str) -> &Value {
        self.report["resources"]
            .as_array()
            .and_then(|rs| rs.iter().find(|r| r["id"] == id))
            .unwrap_or_else(|| panic!("no resource {id} in {:#}\nstderr: {}", self.report, self.stderr))
    }
    fn expect(&self, code: i32, what: &str) -> &Self {
        assert_eq!(self.code, code, "{what}: exit {} \nreport: {:#}\nstderr: {}", self.code, self.report, self.stderr);
        self
    }
}

const BACKENDS: [&str; 2] = ["nft", "legacy"];

fn tool(backend: &str, v6: bool, what: &str) -> String {
    format!("{}-{backend}{what}", if v6 { "ip6tables" } else { "iptables" })
}

/// `iptables-save` of one table without comment lines (which hold timestamps).
/// The table's rules and policies, without the chains' packet counters: those count the test's
/// own traffic (a probe's SYNs in OUTPUT), so two saves around an apply may differ in them (with
/// iptables-legacy 1.8.11 in Debian 13 they did).
fn save(ns: &Netns, backend: &str, v6: bool, table: &str) -> String {
    ns.ok(&[&tool(backend, v6, "-save"), "-t", table])
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| match l.rfind(" [") {
            Some(i) if l.starts_with(':') && l.ends_with(']') => &l[..i],
            _ => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn ipt(ns: &Netns, backend: &str, v6: bool, args: &[&str]) {
    let t = tool(backend, v6, "");
    // --wait: legacy's lock file is shared by every namespace, and tests run in parallel.
    let mut argv = vec![t.as_str(), "--wait"];
    argv.extend_from_slice(args);
    ns.ok(&argv);
}

fn seed(backend: &str) -> Value {
    let forward = json!({
        "policy": "DROP", "purge": true, "ignore": ["-j DOCKER"],
        "rules": ["-i docker0 -o eth0 -j ACCEPT",
                  "-i eth0 -o docker0 -m state --state RELATED,ESTABLISHED -j ACCEPT",
                  "-i docker0 -o docker0 -j DROP"]
    });
    json!({ "version": 1, "iptables": { "backend": backend,
        "ipv4": { "filter": { "FORWARD": forward } }, "ipv6": { "filter": { "FORWARD": forward } } } })
}

#[test]
fn seed_policy_converges_from_empty_then_is_in_sync_on_both_backends() {
    for b in BACKENDS {
        let ns = Netns::new();
        let doc = seed(b);
        let first = ns.apply(&doc);
        first.expect(2, b);
        assert_eq!(first.resource("iptables/ipv4/filter/FORWARD")["status"], "changed");
        assert_eq!(first.resource("iptables/ipv6/filter/FORWARD")["status"], "changed");
        ns.apply(&doc).expect(0, b);
        ns.plan(&doc).expect(0, b);
        for v6 in [false, true] {
            let s = save(&ns, b, v6, "filter");
            assert!(s.contains(":FORWARD DROP"), "{b} v6={v6}: {s}");
            for r in ["-A FORWARD -i docker0 -o eth0 -j ACCEPT",
                      "-A FORWARD -i eth0 -o docker0 -m state --state RELATED,ESTABLISHED -j ACCEPT",
                      "-A FORWARD -i docker0 -o docker0 -j DROP"] {
                assert!(s.contains(r), "{b} v6={v6}: missing {r} in\n{s}");
            }
        }
    }
}

/// Each pair: a spelling and the form iptables-save prints.
const SPELLINGS_V4: &[(&str, &str)] = &[
    ("-p tcp --dport 22 -j ACCEPT", "-p tcp -m tcp --dport 22 -j ACCEPT"),
    ("-p tcp --dport ssh -j ACCEPT", "-p tcp -m tcp --dport 22 -j ACCEPT"),
    ("-s 10.1.2.3/8 -j ACCEPT", "-s 10.0.0.0/8 -j ACCEPT"),
    ("-s 10.1.2.3 -j ACCEPT", "-s 10.1.2.3/32 -j ACCEPT"),
    ("-m state --state ESTABLISHED,RELATED -j ACCEPT", "-m state --state RELATED,ESTABLISHED -j ACCEPT"),
    ("-m conntrack --ctstate ESTABLISHED,NEW -j ACCEPT", "-m conntrack --ctstate NEW,ESTABLISHED -j ACCEPT"),
    ("--jump ACCEPT --protocol udp", "-p udp -j ACCEPT"),
    ("-s ! 10.0.0.0/8 -j DROP", "! -s 10.0.0.0/8 -j DROP"),
    ("! -s 10.0.0.0/8 -j DROP", "! -s 10.0.0.0/8 -j DROP"),
    ("-i eth+ -j ACCEPT", "-i eth+ -j ACCEPT"),
    ("-m comment --comment 'a b' -j ACCEPT", "-m comment --comment \"a b\" -j ACCEPT"),
    ("-j ACCEPT -i lo", "-i lo -j ACCEPT"),
    ("-p icmp --icmp-type echo-request -j ACCEPT", "-p icmp -m icmp --icmp-type 8 -j ACCEPT"),
    ("-p tcp --syn -j DROP", "-p tcp -m tcp --tcp-flags FIN,SYN,RST,ACK SYN -j DROP"),
    ("-p tcp -m multiport --dports http,https -j ACCEPT", "-p tcp -m multiport --dports 80,443 -j ACCEPT"),
    ("-p TCP -m tcp --destination-port 8080:8090 -j ACCEPT", "-p tcp -m tcp --dport 8080:8090 -j ACCEPT"),
    ("-m limit --limit 10/minute -j LOG --log-prefix 'fw: '", "-m limit --limit 10/min -j LOG --log-prefix \"fw: \""),
    ("-s 192.168.1.0/255.255.255.0 -j RETURN", "-s 192.168.1.0/24 -j RETURN"),
];

const SPELLINGS_V6: &[(&str, &str)] = &[
    ("-p tcp --dport ssh -j ACCEPT", "-p tcp -m tcp --dport 22 -j ACCEPT"),
    ("-s 2001:db8:0:0::1/64 -j ACCEPT", "-s 2001:db8::/64 -j ACCEPT"),
    ("-s 2001:DB8::1 -j ACCEPT", "-s 2001:db8::1/128 -j ACCEPT"),
    ("-p icmpv6 --icmpv6-type echo-request -j ACCEPT", "-p ipv6-icmp -m icmp6 --icmpv6-type 128 -j ACCEPT"),
    ("! -s fe80::/10 -m state --state ESTABLISHED,RELATED --jump ACCEPT",
     "! -s fe80::/10 -m state --state RELATED,ESTABLISHED -j ACCEPT"),
];

fn chain_doc(backend: &str, v4: &[&str], v6: &[&str]) -> Value {
    json!({ "version": 1, "iptables": { "backend": backend,
        "ipv4": { "filter": { "SPELL": { "purge": true, "rules": v4 } } },
        "ipv6": { "filter": { "SPELL": { "purge": true, "rules": v6 } } } } })
}

#[test]
fn every_spelling_causes_no_drift_once_applied() {
    let odd4: Vec<&str> = SPELLINGS_V4.iter().map(|p| p.0).collect();
    let canon4: Vec<&str> = SPELLINGS_V4.iter().map(|p| p.1).collect();
    let odd6: Vec<&str> = SPELLINGS_V6.iter().map(|p| p.0).collect();
    let canon6: Vec<&str> = SPELLINGS_V6.iter().map(|p| p.1).collect();
    for b in BACKENDS {
        let ns = Netns::new();
        let odd = chain_doc(b, &odd4, &odd6);
        let canon = chain_doc(b, &canon4, &canon6);
        ns.apply(&odd).expect(2, &format!("{b}: first apply"));
        let again = ns.plan(&odd);
        again.expect(0, &format!("{b}: plan after apply"));
        ns.apply(&odd).expect(0, &format!("{b}: second apply"));
        // The printed forms and the odd spellings are the same rules.
        ns.plan(&canon).expect(0, &format!("{b}: canonical spellings against odd ones"));
        let s = save(&ns, b, false, "filter");
        for c in &canon4 {
            assert!(s.contains(&format!("-A SPELL {c}")), "{b}: {c} not in\n{s}");
        }
        let s6 = save(&ns, b, true, "filter");
        for c in &canon6 {
            assert!(s6.contains(&format!("-A SPELL {c}")), "{b}: {c} not in\n{s6}");
        }
        // And a real difference is still drift.
        let mut changed = odd4.clone();
        changed[0] = "-p tcp --dport 23 -j ACCEPT";
        let r = ns.plan(&chain_doc(b, &changed, &odd6));
        r.expect(2, &format!("{b}: a changed port"));
        let diff = r.resource("iptables/ipv4/filter/SPELL")["diff"].to_string();
        assert!(diff.contains("--dport 23"), "{b}: {diff}");
    }
}

#[test]
fn purge_removes_strays_keeps_ignored_and_never_touches_docker_chains_or_nat() {
    for b in BACKENDS {
        for v6 in [false, true] {
            let ns = Netns::new();
            let net = if v6 { "fd00::/64" } else { "172.17.0.0/16" };
            ipt(&ns, b, v6, &["-N", "DOCKER"]);
            ipt(&ns, b, v6, &["-N", "DOCKER-USER"]);
            ipt(&ns, b, v6, &["-A", "DOCKER", "-d", net, "-p", "tcp", "--dport", "80", "-j", "ACCEPT"]);
            ipt(&ns, b, v6, &["-A", "DOCKER-USER", "-j", "RETURN"]);
            ipt(&ns, b, v6, &["-A", "FORWARD", "-j", "DOCKER-USER"]);
            ipt(&ns, b, v6, &["-A", "FORWARD", "-s", net, "-j", "ACCEPT"]); // the stray
            ipt(&ns, b, v6, &["-A", "FORWARD", "-o", "docker0", "-j", "DOCKER"]);
            ipt(&ns, b, v6, &["-t", "nat", "-A", "POSTROUTING", "-s", net, "!", "-o", "docker0", "-j", "MASQUERADE"]);
            let docker_before: Vec<String> =
                save(&ns, b, v6, "filter").lines().filter(|l| l.contains("-A DOCKER")).map(String::from).collect();
            let nat_before = save(&ns, b, v6, "nat");
            let fam = if v6 { "ipv6" } else { "ipv4" };
            let doc = json!({ "version": 1, "iptables": { "backend": b, fam: { "filter": { "FORWARD": {
                "policy": "DROP", "purge": true, "ignore": ["-j DOCKER"],
                "rules": ["-i docker0 -o eth0 -j ACCEPT"] } } } } });
            let plan = ns.plan(&doc);
            plan.expect(2, b);
            let id = format!("iptables/{fam}/filter/FORWARD");
            let diff = plan.resource(&id)["diff"].to_string();
            assert!(diff.contains(&format!("- -A FORWARD -s {net} -j ACCEPT")), "{b} {fam}: {diff}");
            assert!(!diff.contains("DOCKER"), "{b} {fam}: ignored rules are not drift: {diff}");
            ns.apply(&doc).expect(2, b);
            let s = save(&ns, b, v6, "filter");
            let fw: Vec<&str> = s.lines().filter(|l| l.starts_with("-A FORWARD")).collect();
            assert_eq!(
                fw,
                ["-A FORWARD -j DOCKER-USER", "-A FORWARD -o docker0 -j DOCKER", "-A FORWARD -i docker0 -o eth0 -j ACCEPT"],
                "{b} {fam}"
            );
            let docker_after: Vec<String> = s.lines().filter(|l| l.contains("-A DOCKER")).map(String::from).collect();
            assert_eq!(docker_before, docker_after, "{b} {fam}: DOCKER chains touched");
            assert_eq!(nat_before, save(&ns, b, v6, "nat"), "{b} {fam}: nat touched");
            ns.plan(&doc).expect(0, b);
            // Docker re-adding its jump at the top is not drift either.
            ipt(&ns, b, v6, &["-I", "FORWARD", "-j", "DOCKER-USER"]);
            ns.plan(&doc).expect(0, b);
        }
    }
}

#[test]
fn rules_may_jump_to_a_chain_the_same_document_creates() {
    for b in BACKENDS {
        let ns = Netns::new();
        ipt(&ns, b, false, &["-A", "FORWARD", "-j", "ACCEPT"]);
        let doc = json!({ "version": 1, "iptables": { "backend": b, "ipv4": { "filter": {
            "FORWARD": { "purge": true, "rules": ["-p tcp --dport ssh -j MINE", "-j ACCEPT"] },
            "MINE": { "purge": true, "rules": ["-p icmp --icmp-type echo-request -j RETURN", "-j DROP"] } } } } });
        ns.apply(&doc).expect(2, b);
        ns.plan(&doc).expect(0, b);
        let s = save(&ns, b, false, "filter");
        assert!(s.contains("-A FORWARD -p tcp -m tcp --dport 22 -j MINE"), "{b}: {s}");
        assert!(s.lines().any(|l| l == ":MINE -"), "{b}: {s}");
    }
}

#[test]
fn without_purge_listed_rules_are_added_and_others_kept() {
    for b in BACKENDS {
        let ns = Netns::new();
        ipt(&ns, b, false, &["-A", "INPUT", "-i", "lo", "-j", "ACCEPT"]);
        let doc = json!({ "version": 1, "iptables": { "backend": b, "ipv4": { "filter": { "INPUT": {
            "rules": ["-p tcp --dport 22 -j ACCEPT", "-p tcp --dport 443 -j ACCEPT"] } } } } });
        ns.apply(&doc).expect(2, b);
        ns.apply(&doc).expect(0, b);
        let s = save(&ns, b, false, "filter");
        let input: Vec<&str> = s.lines().filter(|l| l.starts_with("-A INPUT")).collect();
        assert_eq!(input, ["-A INPUT -i lo -j ACCEPT", "-A INPUT -p tcp -m tcp --dport 22 -j ACCEPT",
                           "-A INPUT -p tcp -m tcp --dport 443 -j ACCEPT"], "{b}");
    }
}

#[test]
fn a_batch_with_one_invalid_rule_leaves_the_table_as_it_was_and_names_the_rule() {
    for b in BACKENDS {
        for v6 in [false, true] {
            let ns = Netns::new();
            ipt(&ns, b, v6, &["-A", "FORWARD", "-i", "eth9", "-j", "ACCEPT"]);
            ipt(&ns, b, v6, &["-N", "KEEP"]);
            ipt(&ns, b, v6, &["-A", "KEEP", "-j", "RETURN"]);
            let before = save(&ns, b, v6, "filter");
            let fam = if v6 { "ipv6" } else { "ipv4" };
            let doc = json!({ "version": 1, "iptables": { "backend": b, fam: { "filter": {
                "FORWARD": { "policy": "DROP", "purge": true,
                             "rules": ["-i docker0 -j ACCEPT", "-i eth0 -j NO-SUCH-CHAIN", "-j DROP"] },
                "KEEP": { "purge": true, "rules": ["-j ACCEPT"] },
                "NEWCHAIN": { "rules": ["-j RETURN"] } } } } });
            let r = ns.apply(&doc);
            r.expect(4, &format!("{b} {fam}"));
            let fw = r.resource(&format!("iptables/{fam}/filter/FORWARD"));
            assert_eq!(fw["status"], "failed");
            let msg = fw["message"].as_str().unwrap();
            assert!(msg.contains("NO-SUCH-CHAIN"), "{b} {fam}: {msg}");
            assert!(msg.contains(&format!("iptables.{fam}[\"filter\"][\"FORWARD\"].rules[1]")), "{b} {fam}: {msg}");
            assert_eq!(r.resource(&format!("iptables/{fam}/filter/KEEP"))["status"], "failed");
            assert_eq!(before, save(&ns, b, v6, "filter"), "{b} {fam}: the table changed");
        }
    }
}

#[test]
fn confirm_keeps_the_change_and_its_absence_rolls_it_back() {
    for b in BACKENDS {
        let ns = Netns::new();
        ipt(&ns, b, false, &["-A", "FORWARD", "-j", "ACCEPT"]);
        ipt(&ns, b, true, &["-A", "FORWARD", "-j", "ACCEPT"]);
        let before4 = save(&ns, b, false, "filter");
        let before6 = save(&ns, b, true, "filter");
        let doc = seed(b);
        // Without confirm: rolled back, also after the apply's process group got SIGHUP.
        let mut c = ns.cmd(&[BIN, "--root", ns.root.path().to_str().unwrap(), "--format", "json", "apply", "--confirm", "2", "-"]);
        use std::os::unix::process::CommandExt;
        c.process_group(0).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = c.spawn().unwrap();
        let pgid = child.id() as i32;
        use std::io::Write;
        child.stdin.take().unwrap().write_all(doc.to_string().as_bytes()).unwrap();
        let r = Run::from(child.wait_with_output().unwrap());
        r.expect(2, b);
        // SAFETY: a signal to the process group this test created.
        unsafe {
            libc::kill(-pgid, libc::SIGHUP);
        }
        assert_ne!(before4, save(&ns, b, false, "filter"), "{b}: the change was not made");
        // The watchdog restores IPv4 and IPv6 one after the other: wait for both.
        wait_for(Duration::from_secs(15), || {
            save(&ns, b, false, "filter") == before4 && save(&ns, b, true, "filter") == before6
        });
        assert_eq!(before4, save(&ns, b, false, "filter"), "{b}: ipv4 not rolled back");
        assert_eq!(before6, save(&ns, b, true, "filter"), "{b}: ipv6 not rolled back");
        let late = ns.bare(&["confirm"]);
        assert_eq!(late.code, 1, "{b}: confirm after rollback: {}", late.stderr);
        assert!(late.stderr.contains("rolled back"), "{}", late.stderr);

        // With confirm in time: kept.
        // A longer window, so a loaded machine still confirms in time.
        ns.hostguard(&["apply", "--confirm", "6"], &doc, &[]).expect(2, b);
        let during = ns.apply(&chain_doc(b, &["-j ACCEPT"], &[]));
        assert_eq!(during.code, 1, "{b}: an apply while a confirm is pending is refused: {:?}", during);
        let ok = ns.bare(&["confirm"]);
        assert_eq!(ok.code, 0, "{b}: confirm: {}", ok.stderr);
        let after = save(&ns, b, false, "filter");
        std::thread::sleep(Duration::from_secs(8));
        assert_eq!(after, save(&ns, b, false, "filter"), "{b}: confirmed change was rolled back");
        assert!(after.contains(":FORWARD DROP"), "{after}");
        ns.plan(&doc).expect(0, b);
        let again = ns.bare(&["confirm"]);
        assert_eq!(again.code, 1, "{b}: nothing to confirm: {}", again.stderr);
    }
}

fn wait_for(limit: Duration, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while start.elapsed() < limit {
        if cond() {
            return;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[test]
fn ssh_guard_refuses_a_ruleset_that_drops_the_session_unless_forced() {
    let ssh = [("SSH_CONNECTION", "10.9.8.7 50022 10.0.0.2 22")];
    let ssh6 = [("SSH_CONNECTION", "2001:db8::7 50022 2001:db8::2 22")];
    for b in BACKENDS {
        for (v6, env) in [(false, &ssh), (true, &ssh6)] {
            let ns = Netns::new();
            let fam = if v6 { "ipv6" } else { "ipv4" };
            let lockout = json!({ "version": 1, "iptables": { "backend": b, fam: { "filter": { "INPUT": {
                "policy": "DROP", "purge": true, "rules": ["-i lo -j ACCEPT", "-p tcp --dport 80 -j ACCEPT"] } } } } });
            let before = save(&ns, b, v6, "filter");
            let r = ns.hostguard(&["apply"], &lockout, env);
            assert_eq!(r.code, 1, "{b} {fam}: {r:?}");
            assert!(r.stderr.contains("SSH session"), "{b} {fam}: {}", r.stderr);
            assert_eq!(before, save(&ns, b, v6, "filter"), "{b} {fam}: refused apply touched the table");
            // Plan is not refused: it changes nothing, and says what apply would do.
            let p = ns.hostguard(&["plan"], &lockout, env);
            p.expect(2, b);
            let msg = p.resource(&format!("iptables/{fam}/filter/INPUT"))["message"].as_str().unwrap().to_string();
            assert!(msg.contains("apply would refuse"), "{b} {fam}: {msg}");
            ns.hostguard(&["apply", "--force"], &lockout, env).expect(2, b);
            assert!(save(&ns, b, v6, "filter").contains(":INPUT DROP"));
            // A ruleset that keeps the session passes without --force.
            let safe = json!({ "version": 1, "iptables": { "backend": b, fam: { "filter": { "INPUT": {
                "policy": "DROP", "purge": true,
                "rules": ["-m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT", "-p tcp --dport 80 -j ACCEPT"] } } } } });
            ns.hostguard(&["apply"], &safe, env).expect(2, b);
        }
    }
}

/// A RETURN whose match the guard cannot decide (the session's interface is unknown) may be
/// taken: `-i eth1 -j RETURN` sends a session arriving on eth1 back to INPUT's DROP policy, so
/// the ACCEPT after it does not keep the session, and apply refuses. It was skipped as if never
/// taken, and the apply went ahead.
#[test]
fn ssh_guard_counts_an_undecidable_return_as_taken() {
    let ssh = [("SSH_CONNECTION", "10.9.8.7 50022 10.0.0.2 22")];
    for b in BACKENDS {
        let ns = Netns::new();
        let doc = |input: &[&str]| json!({ "version": 1, "iptables": { "backend": b, "ipv4": { "filter": {
            "INPUT": { "policy": "DROP", "purge": true, "rules": input },
            "MINE": { "purge": true, "rules": ["-i eth1 -j RETURN", "-j ACCEPT"] } } } } });
        let lockout = doc(&["-j MINE"]);
        let before = save(&ns, b, false, "filter");
        let r = ns.hostguard(&["apply"], &lockout, &ssh);
        assert_eq!(r.code, 1, "{b}: {r:?}");
        assert!(r.stderr.contains("SSH session") && r.stderr.contains("policy is DROP"), "{b}: {}", r.stderr);
        assert_eq!(before, save(&ns, b, false, "filter"), "{b}: refused apply touched the table");
        // Accepted on both paths (returned to INPUT, or not): applied without --force.
        ns.hostguard(&["apply"], &doc(&["-j MINE", "-p tcp --dport 22 -j ACCEPT"]), &ssh).expect(2, b);
        assert!(save(&ns, b, false, "filter").contains("-A MINE -i eth1 -j RETURN"), "{b}");
    }
}

#[test]
fn two_concurrent_applies_do_not_interleave() {
    for b in BACKENDS {
        let ns = Netns::new();
        let doc = |port: u32| {
            let rules: Vec<String> = (0..300).map(|i| format!("-p tcp --dport {} -j ACCEPT", port + i)).collect();
            json!({ "version": 1, "iptables": { "backend": b,
                "ipv4": { "filter": { "RACE": { "purge": true, "rules": rules } } } } })
        };
        let (a, z) = (doc(1000), doc(5000));
        let (ra, rz) = std::thread::scope(|s| {
            let ta = s.spawn(|| ns.apply(&a));
            let tz = s.spawn(|| ns.apply(&z));
            (ta.join().unwrap(), tz.join().unwrap())
        });
        ra.expect(2, b);
        rz.expect(2, b);
        let rules: Vec<String> =
            save(&ns, b, false, "filter").lines().filter(|l| l.starts_with("-A RACE")).map(String::from).collect();
        assert_eq!(rules.len(), 300, "{b}: a mix of both runs: {}", rules.len());
        let first_port = rules[0].rsplit("--dport ").next().unwrap().split(' ').next().unwrap().to_string();
        let winner = if first_port == "1000" { &a } else { &z };
        ns.plan(winner).expect(0, b);
        // The run that went second saw the first one's rules and removed all 300 of them.
        let second = if first_port == "1000" { &ra } else { &rz };
        let msg = second.resource("iptables/ipv4/filter/RACE")["message"].as_str().unwrap().to_string();
        assert!(msg.contains("300 rules to remove") || msg.contains("300 rules missing; 300 rules to remove"), "{b}: {msg}");
    }
}

#[test]
fn show_prints_the_current_rules_as_a_document_that_plans_in_sync() {
    for b in BACKENDS {
        let ns = Netns::new();
        ns.apply(&seed(b)).expect(2, b);
        let root = ns.root.path().to_str().unwrap().to_string();
        let shown: Value = serde_json::from_str(&ns.ok(&[BIN, "--root", &root, "show"])).unwrap();
        let fw = &shown["iptables"]["ipv4"]["filter"]["FORWARD"];
        assert_eq!(fw["policy"], "DROP", "{b}: {shown:#}");
        assert_eq!(fw["rules"].as_array().unwrap().len(), 3, "{b}: {fw}");
        let mut doc = json!({ "version": 1, "iptables": shown["iptables"].clone() });
        doc["iptables"]["backend"] = json!(b);
        ns.plan(&doc).expect(0, b);
    }
}

#[test]
fn invalid_documents_are_refused_before_touching_anything() {
    let ns = Netns::new();
    let doc = json!({ "version": 1, "iptables": { "ipv4": { "filter": {
        "FORWARD": { "rules": ["-A FORWARD -j ACCEPT", "-m comment --comment \"unclosed"] },
        "MINE": { "policy": "DROP" } } } } });
    let r = ns.apply(&doc);
    assert_eq!(r.code, 1);
    for path in [r#"iptables.ipv4["filter"]["FORWARD"].rules[0]"#, r#"iptables.ipv4["filter"]["FORWARD"].rules[1]"#,
                 r#"iptables.ipv4["filter"]["MINE"].policy"#] {
        assert!(r.stderr.contains(path), "{path} not in {}", r.stderr);
    }
}

#[test]
fn without_the_privilege_to_make_a_namespace_the_builtin_normaliser_decides_and_says_so() {
    // CAP_SYS_ADMIN (needed for unshare) dropped; CAP_NET_ADMIN (iptables) kept.
    let nopriv = ["setpriv", "--bounding-set", "-sys_admin"];
    for b in BACKENDS {
        let ns = Netns::new();
        ipt(&ns, b, false, &["-A", "FORWARD", "-j", "ACCEPT"]);
        let doc = json!({ "version": 1, "iptables": { "backend": b, "ipv4": { "filter": { "FORWARD": {
            "purge": true, "rules": ["-p tcp --dport ssh -s 10.1.2.3/8 -j ACCEPT",
                                     "-m state --state ESTABLISHED,RELATED --jump ACCEPT"] } } } } });
        let r = ns.hostguard_as(&nopriv, &["apply"], &doc, &[]);
        r.expect(2, b);
        let msg = r.resource("iptables/ipv4/filter/FORWARD")["message"].as_str().unwrap().to_string();
        assert!(msg.contains("built-in normaliser"), "{b}: {msg}");
        let again = ns.hostguard_as(&nopriv, &["plan"], &doc, &[]);
        again.expect(0, b);
        // With the privilege, iptables agrees.
        ns.plan(&doc).expect(0, b);
    }
}

#[test]
fn nat_mangle_and_raw_chains_converge_in_their_own_transactions() {
    for b in BACKENDS {
        for v6 in [false, true] {
            let ns = Netns::new();
            let fam = if v6 { "ipv6" } else { "ipv4" };
            let net = if v6 { "fd00::/64" } else { "172.17.0.0/16" };
            let masq = format!("-s {net} ! -o docker0 -j MASQUERADE");
            let doc = json!({ "version": 1, "iptables": { "backend": b, fam: {
                "nat": { "POSTROUTING": { "purge": true, "rules": [masq] } },
                "mangle": { "PREROUTING": { "rules": ["-p tcp --dport 22 -j MARK --set-mark 0x1"] } },
                "raw": { "PREROUTING": { "policy": "ACCEPT", "rules": ["-p udp --dport domain -j ACCEPT"] } } } } });
            let r = ns.apply(&doc);
            r.expect(2, &format!("{b} {fam}"));
            for t in ["nat/POSTROUTING", "mangle/PREROUTING"] {
                assert_eq!(r.resource(&format!("iptables/{fam}/{t}"))["status"], "changed", "{b} {fam} {t}");
            }
            ns.plan(&doc).expect(0, &format!("{b} {fam}"));
            assert!(save(&ns, b, v6, "nat").contains(&format!("-A POSTROUTING -s {net} ! -o docker0 -j MASQUERADE")));
            assert!(save(&ns, b, v6, "mangle").contains("-A PREROUTING -p tcp -m tcp --dport 22 -j MARK --set-xmark 0x1/0xffffffff"));
            assert!(save(&ns, b, v6, "raw").contains("-A PREROUTING -p udp -m udp --dport 53 -j ACCEPT"));
        }
    }
}

#[test]
fn one_table_failing_does_not_stop_another_and_exits_6() {
    for b in BACKENDS {
        let ns = Netns::new();
        let filter_before = save(&ns, b, false, "filter");
        let doc = json!({ "version": 1, "iptables": { "backend": b, "ipv4": {
            "filter": { "FORWARD": { "rules": ["-j NO-SUCH-CHAIN"] } },
            "nat": { "POSTROUTING": { "rules": ["-o eth0 -j MASQUERADE"] } } } } });
        let r = ns.apply(&doc);
        r.expect(6, b);
        assert_eq!(r.resource("iptables/ipv4/filter/FORWARD")["status"], "failed");
        assert_eq!(r.resource("iptables/ipv4/nat/POSTROUTING")["status"], "changed");
        assert_eq!(filter_before, save(&ns, b, false, "filter"), "{b}");
        assert!(save(&ns, b, false, "nat").contains("-A POSTROUTING -o eth0 -j MASQUERADE"));
    }
}

#[test]
fn auto_uses_the_backend_iptables_reports() {
    let ns = Netns::new();
    let version = ns.ok(&["iptables", "-V"]);
    let b = if version.contains("nf_tables") { "nft" } else { "legacy" };
    let mut doc = seed("auto");
    doc["iptables"]["ipv6"] = json!({});
    ns.apply(&doc).expect(2, "auto");
    assert!(save(&ns, b, false, "filter").contains("-A FORWARD -i docker0 -o docker0 -j DROP"), "auto is {b}");
    let other = if b == "nft" { "legacy" } else { "nft" };
    assert!(!save(&ns, other, false, "filter").contains("docker0"), "auto also wrote {other}");
    ns.plan(&doc).expect(0, "auto");
}

/// Docker 20.10's FORWARD for one bridge (moby's setup_ip_tables_linux.go), loaded as Docker
/// loads it: its jumps first, then per bridge four rules.
fn docker_network(ns: &Netns, b: &str, bridge: &str) {
    for rule in [
        vec!["-I", "FORWARD", "-o", bridge, "-j", "DOCKER"],
        vec!["-I", "FORWARD", "-o", bridge, "-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED", "-j", "ACCEPT"],
        vec!["-I", "FORWARD", "-i", bridge, "!", "-o", bridge, "-j", "ACCEPT"],
        vec!["-I", "FORWARD", "-i", bridge, "-o", bridge, "-j", "ACCEPT"],
    ] {
        ipt(ns, b, false, &rule);
    }
}

fn docker_daemon(ns: &Netns, b: &str) {
    for c in ["DOCKER", "DOCKER-USER", "DOCKER-ISOLATION-STAGE-1"] {
        ipt(ns, b, false, &["-N", c]);
    }
    ipt(ns, b, false, &["-A", "DOCKER-USER", "-j", "RETURN"]);
    ipt(ns, b, false, &["-A", "FORWARD", "-j", "DOCKER-USER"]);
    ipt(ns, b, false, &["-A", "FORWARD", "-j", "DOCKER-ISOLATION-STAGE-1"]);
    docker_network(ns, b, "docker0");
}

fn lxc_forward(b: &str, foreign: &[&str], rules: &[&str]) -> Value {
    json!({ "version": 1, "iptables": { "backend": b, "ipv4": { "filter": { "FORWARD": {
        "policy": "DROP", "purge": true, "foreign": foreign, "rules": rules } } } } })
}

fn rules_of(ns: &Netns, b: &str, chain: &str) -> Vec<String> {
    let prefix = format!("-A {chain} ");
    save(ns, b, false, "filter").lines().filter(|l| l.starts_with(&prefix) || *l == prefix.trim_end()).map(String::from).collect()
}

const LXC: [&str; 3] = ["-i lxcbr0 -o eth0 -j ACCEPT", "-i eth0 -o lxcbr0 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT", "-i lxcbr0 -o lxcbr0 -j DROP"];

#[test]
fn dockers_rules_are_never_drift_and_never_removed_when_docker_is_named() {
    for b in BACKENDS {
        let ns = Netns::new();
        docker_daemon(&ns, b);
        docker_network(&ns, b, "br-0123456789ab");
        ipt(&ns, b, false, &["-A", "FORWARD", "-i", "lxcbr0", "-j", "REJECT"]);
        let docker_before: Vec<String> = rules_of(&ns, b, "FORWARD").into_iter().filter(|l| !l.contains("lxcbr0")).collect();
        let doc = lxc_forward(b, &["docker"], &LXC);
        let r = ns.apply(&doc);
        r.expect(2, b);
        let after = rules_of(&ns, b, "FORWARD");
        let docker_after: Vec<String> = after.iter().filter(|l| !l.contains("lxcbr0")).cloned().collect();
        assert_eq!(docker_before, docker_after, "{b}: Docker's rules were moved or removed");
        assert!(!after.iter().any(|l| l.contains("-i lxcbr0 -j REJECT")), "{b}: {after:?}");
        ns.plan(&doc).expect(0, b);
        // Docker creates another network: still in sync, and the next apply keeps it.
        docker_network(&ns, b, "br-ba9876543210");
        ns.plan(&doc).expect(0, b);
        // A dockerd restart re-adds what it misses, at the top: not drift either.
        ipt(&ns, b, false, &["-D", "FORWARD", "-j", "DOCKER-USER"]);
        ipt(&ns, b, false, &["-I", "FORWARD", "-j", "DOCKER-USER"]);
        ns.plan(&doc).expect(0, b);
    }
}

#[test]
fn an_unknown_neighbour_is_refused_naming_the_known_ones() {
    let ns = Netns::new();
    let r = ns.hostguard(&["validate"], &lxc_forward("nft", &["podman"], &LXC), &[]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.contains("\"podman\"") && r.stderr.contains("\"docker\"") && r.stderr.contains("\"kube-proxy\""), "{}", r.stderr);
    assert!(r.stderr.contains(r#"iptables.ipv4["filter"]["FORWARD"].foreign[0]"#), "{}", r.stderr);
}

/// Regression: `purge: false` deleted the second copy of a listed rule and called it drift.
#[test]
fn without_purge_duplicates_stay_and_the_empty_rule_round_trips_through_show() {
    for b in BACKENDS {
        let ns = Netns::new();
        ipt(&ns, b, false, &["-N", "CUSTOM"]);
        for _ in 0..3 {
            ipt(&ns, b, false, &["-A", "CUSTOM", "-s", "192.0.2.0/24", "-j", "RETURN"]);
        }
        ipt(&ns, b, false, &["-A", "CUSTOM"]);
        let before = rules_of(&ns, b, "CUSTOM");
        let doc = json!({ "version": 1, "iptables": { "backend": b, "ipv4": { "filter": { "CUSTOM": {
            "rules": ["-s 192.0.2.0/24 -j RETURN", ""] } } } } });
        ns.plan(&doc).expect(0, b);
        ns.apply(&doc).expect(0, b);
        assert_eq!(before, rules_of(&ns, b, "CUSTOM"), "{b}");
        // `show` prints the empty rule as "", and its own output plans in sync.
        let root = ns.root.path().to_str().unwrap().to_string();
        let shown = ns.ok(&[BIN, "--root", &root, "show"]);
        let shown: Value = serde_json::from_str(&shown).unwrap();
        let custom = &shown["iptables"]["ipv4"]["filter"]["CUSTOM"]["rules"];
        assert!(custom.as_array().unwrap().iter().any(|r| r == ""), "{custom}");
        let mut only = json!({ "version": 1, "iptables": shown["iptables"].clone() });
        only["iptables"]["backend"] = json!(b);
        ns.plan(&only).expect(0, b);
    }
}

/// The rollback of `apply --confirm` undoes only that apply's edits: a network Docker created
/// during the wait keeps its four rules.
#[test]
fn rollback_keeps_what_a_neighbour_added_during_the_wait() {
    for b in BACKENDS {
        let ns = Netns::new();
        docker_daemon(&ns, b);
        ipt(&ns, b, false, &["-A", "FORWARD", "-i", "lxcbr0", "-j", "REJECT"]);
        let before = rules_of(&ns, b, "FORWARD");
        let doc = lxc_forward(b, &["docker"], &LXC);
        ns.hostguard(&["apply", "--confirm", "3"], &doc, &[]).expect(2, b);
        docker_network(&ns, b, "br-0123456789ab");
        let with_net: Vec<String> = rules_of(&ns, b, "FORWARD").into_iter().filter(|l| l.contains("br-0123456789ab")).collect();
        assert_eq!(with_net.len(), 4, "{b}");
        wait_for(Duration::from_secs(20), || save(&ns, b, false, "filter").contains(":FORWARD ACCEPT"));
        std::thread::sleep(Duration::from_millis(500));
        let after = rules_of(&ns, b, "FORWARD");
        for r in &with_net {
            assert!(after.contains(r), "{b}: the rollback deleted {r}: {after:?}");
        }
        let old: Vec<String> = after.iter().filter(|l| !l.contains("br-0123456789ab")).cloned().collect();
        assert_eq!(old, before, "{b}: not rolled back to the rules before");
    }
}

/// A neighbour adding and deleting its rules in the same chain while applies run: none of its
/// rules is lost, and every apply ends in sync or says it failed.
#[test]
fn a_neighbour_changing_the_chain_during_applies_loses_no_rule() {
    for b in BACKENDS {
        let ns = Netns::new();
        docker_daemon(&ns, b);
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let name = ns.name.clone();
        let flag = stop.clone();
        let backend = b.to_string();
        let neighbour = std::thread::spawn(move || {
            let mut made = Vec::new();
            let mut n = 0;
            while !flag.load(Ordering::SeqCst) {
                let br = format!("br-{n:012x}");
                let ipt = |args: &[&str]| {
                    let t = format!("iptables-{backend}");
                    let mut argv = vec!["netns", "exec", &name, &t, "--wait"];
                    argv.extend_from_slice(args);
                    assert!(Command::new("ip").args(&argv).status().unwrap().success(), "{argv:?}");
                };
                ipt(&["-I", "FORWARD", "-o", &br, "-j", "DOCKER"]);
                ipt(&["-I", "FORWARD", "-i", &br, "!", "-o", &br, "-j", "ACCEPT"]);
                if n % 3 == 2 {
                    // A network removed again: its rules are gone by its owner's hand.
                    ipt(&["-D", "FORWARD", "-o", &br, "-j", "DOCKER"]);
                    ipt(&["-D", "FORWARD", "-i", &br, "!", "-o", &br, "-j", "ACCEPT"]);
                } else {
                    made.push(br);
                }
                n += 1;
            }
            made
        });
        let variants = [lxc_forward(b, &["docker"], &LXC), lxc_forward(b, &["docker"], &LXC[..2])];
        for i in 0..8 {
            let r = ns.apply(&variants[i % 2]);
            assert!(r.code == 2 || r.code == 0, "{b}: apply {i}: {r:?}");
        }
        stop.store(true, Ordering::SeqCst);
        let made = neighbour.join().unwrap();
        let after = rules_of(&ns, b, "FORWARD");
        let lost: Vec<&String> = made.iter().filter(|br| after.iter().filter(|l| l.contains(br.as_str())).count() != 2).collect();
        eprintln!("{b}: the neighbour made {} networks during 8 applies; lost rules of {}", made.len(), lost.len());
        assert!(lost.is_empty(), "{b}: rules lost for {lost:?}");
        ns.plan(&variants[1]).expect(0, b);
    }
}

/// A second namespace joined to `ns` by a veth pair (`ns` 10.77.0.1, far 10.77.0.2), serving
/// plain TCP on 8140 and HTTPS (python3's http.server over ssl, a certificate for 10.77.0.2 signed
/// by a CA made here) on 8443. Killed and deleted on drop.
struct Far {
    far: Netns,
    servers: Vec<std::process::Child>,
    ca: String,
}

impl Far {
    fn new(ns: &Netns) -> Far {
        let far = Netns::new();
        let (a, b) = (format!("v{}", &ns.name[7..]), format!("w{}", &ns.name[7..]));
        let o = Command::new("ip").args(["link", "add", &a, "netns", &ns.name, "type", "veth", "peer", "name", &b, "netns", &far.name]).output().unwrap();
        assert!(o.status.success(), "veth: {}", String::from_utf8_lossy(&o.stderr));
        for (n, dev, addr) in [(ns, &a, "10.77.0.1/24"), (&far, &b, "10.77.0.2/24")] {
            n.ok(&["ip", "addr", "add", addr, "dev", dev]);
            n.ok(&["ip", "link", "set", dev, "up"]);
            n.ok(&["ip", "link", "set", "lo", "up"]);
        }
        let dir = far.root.path().to_str().unwrap().to_string();
        let ossl = |args: &[&str]| {
            let o = Command::new("openssl").args(args).current_dir(&dir).output().expect("openssl");
            assert!(o.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&o.stderr));
        };
        ossl(&["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=hostguard probe test CA"]);
        ossl(&["req", "-newkey", "rsa:2048", "-nodes", "-keyout", "leaf.key", "-out", "leaf.csr", "-subj", "/CN=10.77.0.2"]);
        std::fs::write(far.root.path().join("san.ext"), "subjectAltName=IP:10.77.0.2\nbasicConstraints=CA:FALSE\n").unwrap();
        ossl(&["x509", "-req", "-in", "leaf.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-out", "leaf.pem", "-days", "2", "-extfile", "san.ext"]);
        let https = "import http.server, ssl\n\
            s = http.server.HTTPServer(('10.77.0.2', 8443), http.server.SimpleHTTPRequestHandler)\n\
            c = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER); c.load_cert_chain('leaf.pem', 'leaf.key')\n\
            s.socket = c.wrap_socket(s.socket, server_side=True)\n\
            s.serve_forever()\n";
        let spawn = |argv: &[&str]| far.cmd(argv).current_dir(&dir).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
        let servers = vec![
            spawn(&["/usr/bin/python3", "-m", "http.server", "--bind", "10.77.0.2", "8140"]),
            spawn(&["/usr/bin/python3", "-c", https]),
        ];
        let ca = format!("{dir}/ca.pem");
        let f = Far { far, servers, ca };
        // Both listen before the test starts.
        wait_for(Duration::from_secs(10), || {
            ["10.77.0.2:8140", "10.77.0.2:8443"].iter().all(|t| ns.run(&["/usr/bin/python3", "-c", &format!("import socket; socket.create_connection(('{}', {}), 1)", &t[..9], &t[10..])]).status.success())
        });
        f
    }
}

impl Drop for Far {
    fn drop(&mut self) {
        for s in &mut self.servers {
            let _ = s.kill();
            let _ = s.wait();
        }
        let _ = &self.far;
    }
}

/// INPUT with policy DROP: `keep` accepts the replies of connections this host opens (the
/// probe's), `cut` does not.
fn input_doc(b: &str, keep: bool) -> Value {
    let mut rules = vec!["-i lo -j ACCEPT", "-p tcp --dport 22 -j ACCEPT"];
    if keep {
        rules.insert(0, "-m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT");
    }
    json!({ "version": 1, "iptables": { "backend": b, "ipv4": { "filter": { "INPUT": { "policy": "DROP", "rules": rules } } } } })
}

fn message(r: &Run, id: &str) -> String {
    r.resource(id)["message"].as_str().unwrap_or_default().to_string()
}

/// `apply --confirm S --confirm-probe TARGET`: rules that cut the path to TARGET are rolled back
/// by themselves (exit 4, the chain failed, the rules as before, nothing left to confirm); rules
/// that keep it are confirmed by themselves and stay after the window.
#[test]
fn confirm_probe_rolls_back_a_change_that_cuts_the_path_and_keeps_one_that_does_not() {
    const ID: &str = "iptables/ipv4/filter/INPUT";
    for b in BACKENDS {
        let ns = Netns::new();
        let _far = Far::new(&ns);
        ipt(&ns, b, false, &["-A", "INPUT", "-s", "192.0.2.9", "-j", "DROP"]);
        let before = save(&ns, b, false, "filter");

        let cut = ns.hostguard(&["apply", "--confirm", "4", "--confirm-probe", "10.77.0.2:8140"], &input_doc(b, false), &[]);
        cut.expect(4, b);
        let m = message(&cut, ID);
        assert_eq!(cut.resource(ID)["status"], "failed", "{b}: {m}");
        assert!(m.contains("rolled back") && m.contains("10.77.0.2:8140") && m.contains("timed out"), "{b}: {m}");
        assert_eq!(save(&ns, b, false, "filter"), before, "{b}: the rules that cut the path are still there");
        assert_eq!(ns.bare(&["confirm"]).code, 1, "{b}: confirm after the probe's rollback");
        ns.plan(&input_doc(b, false)).expect(2, b);

        let keep = ns.hostguard(&["apply", "--confirm", "4", "--confirm-probe", "10.77.0.2:8140"], &input_doc(b, true), &[]);
        keep.expect(2, b);
        let m = message(&keep, ID);
        assert!(m.contains("kept: TCP connect to 10.77.0.2:8140"), "{b}: {m}");
        // The watchdog's window passes: nothing is rolled back, nothing waits for a confirm.
        std::thread::sleep(Duration::from_secs(6));
        ns.plan(&input_doc(b, true)).expect(0, b);
        assert!(save(&ns, b, false, "filter").contains("-A INPUT -s 192.0.2.9/32 -j DROP"), "{b}: a rule not hostguard's was lost");
        let late = ns.bare(&["confirm"]);
        assert_eq!(late.code, 1, "{b}: nothing should wait for a confirm: {}", late.stderr);
        // Another apply is not refused as "waiting for confirm".
        ns.apply(&input_doc(b, true)).expect(0, b);
    }
}

/// An https:// probe target, served by a real HTTPS server beyond the veth: answered 2xx with the
/// CA given by --ca-file → kept; the same server without that CA fails the certificate check →
/// rolled back; a closed port fails fast (connection refused) and is rolled back too.
#[test]
fn confirm_probe_over_https_checks_the_server_with_the_ca_file() {
    const ID: &str = "iptables/ipv4/filter/INPUT";
    let b = "nft";
    let ns = Netns::new();
    let far = Far::new(&ns);
    let before = save(&ns, b, false, "filter");
    let url = "https://10.77.0.2:8443/";
    let untrusted = ns.hostguard(&["apply", "--confirm", "3", "--confirm-probe", url], &input_doc(b, true), &[]);
    untrusted.expect(4, "without the CA");
    let m = message(&untrusted, ID);
    assert!(m.contains("rolled back") && m.to_lowercase().contains("certificate"), "{m}");
    assert_eq!(save(&ns, b, false, "filter"), before);

    let refused = ns.hostguard(&["apply", "--confirm", "3", "--confirm-probe", "10.77.0.2:9"], &input_doc(b, true), &[]);
    refused.expect(4, "closed port");
    assert!(message(&refused, ID).contains("refused"), "{}", message(&refused, ID));
    assert_eq!(save(&ns, b, false, "filter"), before);

    let kept = ns.hostguard(&["apply", "--confirm", "5", "--confirm-probe", url, "--ca-file", &far.ca], &input_doc(b, true), &[]);
    kept.expect(2, "with the CA");
    assert!(message(&kept, ID).contains("answered 200"), "{}", message(&kept, ID));
    std::thread::sleep(Duration::from_secs(6));
    ns.plan(&input_doc(b, true)).expect(0, "kept after the window");
}

/// A probe target that is not HOST:PORT or https:// is refused before anything is touched, and
/// --confirm-probe needs --confirm.
#[test]
fn a_bad_confirm_probe_is_refused_before_touching_anything() {
    let ns = Netns::new();
    let before = save(&ns, "nft", false, "filter");
    for (args, needle) in [
        (vec!["apply", "--confirm", "5", "--confirm-probe", "salt"], "HOST:PORT"),
        (vec!["apply", "--confirm", "5", "--confirm-probe", "http://10.0.0.1/"], "http://"),
        (vec!["apply", "--confirm-probe", "salt:4506"], "--confirm"),
    ] {
        let r = ns.hostguard(&args, &input_doc("nft", true), &[]);
        assert_eq!(r.code, 1, "{args:?}: {r:?}");
        assert!(r.stderr.contains(needle), "{args:?}: {}", r.stderr);
        assert_eq!(save(&ns, "nft", false, "filter"), before, "{args:?} touched the firewall");
    }
}

/// The apply that probes is killed before its probe decided (SIGKILL, so it cannot clean up):
/// the watchdog takes over once the run lock is free, probes for SECONDS itself, and rolls the
/// change that cut the path back.
#[test]
fn a_killed_confirm_probe_apply_is_decided_by_the_watchdog() {
    let b = "nft";
    let ns = Netns::new();
    let far = Far::new(&ns);
    let before = save(&ns, b, false, "filter");
    let root = ns.root.path().to_str().unwrap().to_string();
    let mut c = ns.cmd(&[BIN, "--root", &root, "--format", "json", "apply", "--confirm", "4", "--confirm-probe", "10.77.0.2:8140", "-"]);
    c.stdin(Stdio::piped()).stdout(Stdio::null()).stderr(Stdio::null());
    let mut child = c.spawn().unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(input_doc(b, false).to_string().as_bytes()).unwrap();
    wait_for(Duration::from_secs(10), || save(&ns, b, false, "filter").contains(":INPUT DROP"));
    assert!(save(&ns, b, false, "filter").contains(":INPUT DROP"), "the change was not made");
    // `ip netns exec` execs in place: the child is hostguard itself.
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(save(&ns, b, false, "filter").contains(":INPUT DROP"), "rolled back before the kill");
    wait_for(Duration::from_secs(20), || save(&ns, b, false, "filter") == before);
    assert_eq!(save(&ns, b, false, "filter"), before, "the watchdog did not roll back the change");
    let late = ns.bare(&["confirm"]);
    assert_eq!(late.code, 1, "nothing waits after the watchdog's rollback: {}", late.stderr);
    assert!(late.stderr.contains("rolled back"), "{}", late.stderr);

    // The same with rules that keep the path, killed while the target is unreachable (its link
    // down); the target comes back during the watchdog's window: the watchdog's own probe
    // confirms, and the change stays after the window.
    let peer = format!("w{}", &ns.name[7..]);
    far.far.ok(&["ip", "link", "set", &peer, "down"]);
    let mut c = ns.cmd(&[BIN, "--root", &root, "--format", "json", "apply", "--confirm", "6", "--confirm-probe", "10.77.0.2:8140", "-"]);
    c.stdin(Stdio::piped()).stdout(Stdio::null()).stderr(Stdio::null());
    let mut child = c.spawn().unwrap();
    child.stdin.take().unwrap().write_all(input_doc(b, true).to_string().as_bytes()).unwrap();
    wait_for(Duration::from_secs(10), || save(&ns, b, false, "filter").contains(":INPUT DROP"));
    child.kill().unwrap();
    child.wait().unwrap();
    far.far.ok(&["ip", "link", "set", &peer, "up"]);
    wait_for(Duration::from_secs(20), || ns.root.path().join("run/hostguard/confirm/confirmed.json").exists());
    std::thread::sleep(Duration::from_secs(7));
    ns.plan(&input_doc(b, true)).expect(0, "kept by the watchdog's probe");
    let none = ns.bare(&["confirm"]);
    assert_eq!(none.code, 1, "the watchdog confirmed: nothing waits: {}", none.stderr);
    assert!(none.stderr.contains("nothing to confirm"), "{}", none.stderr);
}
