//! Crash at any point: `hostguard apply` is killed with SIGKILL after its Nth host write, for
//! every N, and at random moments, across a document touching every resource kind: sysctl,
//! cgroup v1 and LXC configs in a fake root, iptables (IPv4 and IPv6, nf_tables) in a network
//! namespace the test creates. After each kill: every file is its old or its new version, never
//! partial or empty, and so is each firewall table; a temp file left behind does not trip the
//! next run and is cleaned by it; the lock does not wedge the next run; the next apply converges,
//! and the one after that finds nothing to do. `apply --confirm` and its watchdog are killed
//! the same way at each commit point of the confirm state machine, for iptables, and for owned
//! nftables tables alone and beside iptables (each `nft -f` commit is a host write).

use crate::util;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use util::{run_with, FakeRoot, Netns, Run};

const DOC: &str = r#"{"version": 1,
  "sysctl": {"persist": "/etc/sysctl.d/60-hostguard.conf",
             "values": {"vm.swappiness": 10, "vm.overcommit_memory": 1, "kernel.pid_max": 4194304,
                        "net.ipv4.ip_forward": 1, "net.ipv4.ip_local_port_range": "1024 65000",
                        "net.core.somaxconn": 4096}},
  "cgroups": {"version": "v1", "groups": {
      "hostguard/web1": {"memory_limit": "512M", "memory_swap_limit": "1G", "cpu_shares": 512, "pids_max": 100},
      "hostguard/web2": {"memory_limit": "256M", "cpu_shares": 256, "pids_max": 50}}},
  "lxc": {"dialect": "modern", "containers": {
      "web1": {"memory_limit": "256M", "cpu_shares": 256, "config": {"lxc.start.auto": "1"}},
      "web2": {"memory_limit": "128M", "cap_drop": ["sys_module", "sys_time"], "config": {"lxc.start.delay": "5"}},
      "web3": {"memory_limit": "64M", "config": {"lxc.start.auto": "1"}},
      "web4": {"cpu_shares": 128, "config": {"lxc.start.order": "4"}}}},
  "iptables": {"backend": "nft",
      "ipv4": {"filter": {"FORWARD": {"policy": "DROP", "purge": true,
                   "rules": ["-i docker0 -o eth0 -j ACCEPT", "-i docker0 -o docker0 -j DROP"]},
                          "HG-IN": {"purge": true, "rules": ["-p tcp --dport 22 -j ACCEPT"]}}},
      "ipv6": {"filter": {"FORWARD": {"policy": "DROP", "purge": true, "rules": ["-i docker0 -o eth0 -j ACCEPT"]}}}}}"#;

/// The firewall before the document: an older ruleset, loaded afresh before every run.
const OLD_V4: &str = "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n\
                      -A FORWARD -i eth0 -j ACCEPT\n-A FORWARD -i docker0 -o eth1 -j ACCEPT\nCOMMIT\n";
const OLD_V6: &str = "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n\
                      -A FORWARD -i eth0 -j ACCEPT\nCOMMIT\n";

/// The network namespace of one test, its firewall reset to the old ruleset.
fn firewall(ns: &Netns) {
    for (cmd, rules) in [("iptables-nft-restore", OLD_V4), ("ip6tables-nft-restore", OLD_V6)] {
        let mut child = Command::new("ip")
            .args(["netns", "exec", &ns.name, cmd])
            .stdin(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("{cmd}: {e}"));
        std::io::Write::write_all(&mut child.stdin.take().unwrap(), rules.as_bytes()).unwrap();
        assert!(child.wait().unwrap().success(), "{cmd} of the old ruleset failed");
    }
}

/// The IPv4 and the IPv6 filter table as the kernel holds them, without comments and counters.
/// Each table is one transaction; the two are not one together.
fn tables(ns: &Netns) -> [String; 2] {
    ["iptables-nft-save", "ip6tables-nft-save"].map(|cmd| {
        let o = Command::new("ip").args(["netns", "exec", &ns.name, cmd, "-t", "filter"]).output().unwrap();
        assert!(o.status.success(), "{cmd}: {}", String::from_utf8_lossy(&o.stderr));
        let mut out = String::new();
        for line in String::from_utf8_lossy(&o.stdout).lines().filter(|l| !l.starts_with('#')) {
            out.push_str(line.split(" [").next().unwrap());
            out.push('\n');
        }
        out
    })
}

/// The files a run replaces (atomically), as opposed to kernel files it writes in place.
const REPLACED: [&str; 5] =
    ["/etc/sysctl.d/60-hostguard.conf", "/var/lib/lxc/web1/config", "/var/lib/lxc/web2/config", "/var/lib/lxc/web3/config", "/var/lib/lxc/web4/config"];

/// The container configs, which apply replaces in one batch (`Host::write_files`).
const CONFIGS: [&str; 4] = ["var/lib/lxc/web1/config", "var/lib/lxc/web2/config", "var/lib/lxc/web3/config", "var/lib/lxc/web4/config"];

/// A host before the document is applied. With `first_run`, nothing hostguard writes exists yet
/// (no sysctl.d file, new cgroups); otherwise an earlier version of each file is in place.
fn fixture(first_run: bool) -> FakeRoot {
    let r = FakeRoot::new();
    for (k, v) in [
        ("vm.swappiness", "60"),
        ("vm.overcommit_memory", "0"),
        ("kernel.pid_max", "32768"),
        ("net.ipv4.ip_forward", "0"),
        ("net.ipv4.ip_local_port_range", "32768\t60999"),
        ("net.core.somaxconn", "128"),
    ] {
        r.sysctl(k, v);
    }
    for c in ["memory", "cpu", "pids"] {
        r.write(&format!("/sys/fs/cgroup/{c}/cgroup.procs"), "");
    }
    r.write("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes", "9223372036854771712\n");
    for g in ["web1", "web2"] {
        let group = |c: &str, f: &str, v: &str| r.write(&format!("/sys/fs/cgroup/{c}/hostguard/{g}/{f}"), v);
        group("memory", "memory.limit_in_bytes", "9223372036854771712\n");
        group("memory", "memory.memsw.limit_in_bytes", "9223372036854771712\n");
        group("cpu", "cpu.shares", "1024\n");
        group("pids", "pids.max", "max\n");
    }
    r.write(
        "/var/lib/lxc/web1/config",
        "# Template used to create this container\nlxc.uts.name = web1\nlxc.rootfs.path = dir:/var/lib/lxc/web1/rootfs\nlxc.start.auto = 0\n",
    );
    r.write("/var/lib/lxc/web2/config", "lxc.uts.name = web2\nlxc.net.0.type = empty\n");
    r.write("/var/lib/lxc/web3/config", "lxc.uts.name = web3\nlxc.net.0.type = empty\nlxc.start.auto = 0\n");
    r.write("/var/lib/lxc/web4/config", "# Template used to create this container\nlxc.uts.name = web4\nlxc.net.0.type = empty\n");
    if !first_run {
        r.write("/etc/sysctl.d/60-hostguard.conf", "# Managed by hostguard\nvm.swappiness = 30\n");
        r.write("/etc/sysctl.d/10-local.conf", "kernel.panic = 10\n");
    }
    r
}

fn apply(ns: &Netns, r: &FakeRoot, doc: &str, env: &[(&str, &str)]) -> Run {
    run_with(&ns.prefix(), &["apply", "--format", "json", "--lock-timeout", "5", "--root", &r.arg(), doc], None, env)
}

/// Every file under the root but the lock, the state document and temp files.
fn files(r: &FakeRoot) -> BTreeMap<PathBuf, Vec<u8>> {
    r.snapshot()
        .into_iter()
        .filter(|(p, _)| p.extension().is_none_or(|e| e != "json") && !is_temp(p))
        .map(|(p, b)| (p.strip_prefix(r.path()).unwrap().to_path_buf(), b))
        .collect()
}

fn is_temp(p: &Path) -> bool {
    p.file_name().is_some_and(|n| n.to_string_lossy().contains(".hostguard-tmp."))
}

fn temps(r: &FakeRoot) -> Vec<PathBuf> {
    r.snapshot().into_keys().filter(|p| is_temp(p)).collect()
}

/// The host before and after a clean apply, and how many host writes that apply made.
struct Reference {
    before: BTreeMap<PathBuf, Vec<u8>>,
    after: BTreeMap<PathBuf, Vec<u8>>,
    tables_before: [String; 2],
    tables_after: [String; 2],
}

fn reference(ns: &Netns, first_run: bool) -> Reference {
    let r = fixture(first_run);
    firewall(ns);
    let (before, tables_before) = (files(&r), tables(ns));
    let doc = r.doc("state", DOC);
    let run = apply(ns, &r, &doc, &[]);
    run.expect(2);
    assert_eq!(run.json()["summary"]["failed"], 0, "{}", run.stdout);
    Reference { before, after: files(&r), tables_before, tables_after: tables(ns) }
}

/// What must hold right after a kill: each file is its old or its new version.
#[track_caller]
fn check_old_or_new(ns: &Netns, r: &FakeRoot, reference: &Reference, when: &str, kernel_may_be_empty: bool) {
    for (i, fw) in tables(ns).iter().enumerate() {
        assert!(
            *fw == reference.tables_before[i] || *fw == reference.tables_after[i],
            "{when}: a filter table is neither the old nor the new ruleset:\n{fw}\nold:\n{}\nnew:\n{}",
            reference.tables_before[i],
            reference.tables_after[i]
        );
    }
    let now = files(r);
    check_batch(r, reference, &now, when);
    let paths: std::collections::BTreeSet<_> = reference.before.keys().chain(reference.after.keys()).chain(now.keys()).collect();
    for p in paths {
        let (old, new, cur) = (reference.before.get(p), reference.after.get(p), now.get(p));
        if cur == old || cur == new {
            continue;
        }
        let replaced = REPLACED.iter().any(|f| Path::new(f.trim_start_matches('/')) == p);
        // A fake kernel file is truncated then written (a real one takes the value in one
        // write(2) and has no empty state): a kill at a random moment may catch it empty.
        if kernel_may_be_empty && !replaced && cur.is_some_and(|c| c.is_empty()) {
            continue;
        }
        panic!(
            "{when}: {} is neither the old nor the new version\nold: {:?}\nnew: {:?}\nnow: {:?}",
            p.display(),
            old.map(|b| String::from_utf8_lossy(b)),
            new.map(|b| String::from_utf8_lossy(b)),
            cur.map(|b| String::from_utf8_lossy(b))
        );
    }
}

/// The configs are one batch: no config is renamed before every new one is complete on disk.
/// So once any config is new, each config still old has its complete new version beside it as
/// a temp file (which the next run writes again).
#[track_caller]
fn check_batch(r: &FakeRoot, reference: &Reference, now: &BTreeMap<PathBuf, Vec<u8>>, when: &str) {
    let is = |p: &str, version: &BTreeMap<PathBuf, Vec<u8>>| now.get(Path::new(p)) == version.get(Path::new(p));
    if !CONFIGS.iter().any(|p| is(p, &reference.after)) {
        return;
    }
    let temps = temps(r);
    for p in CONFIGS.iter().filter(|p| !is(p, &reference.after)) {
        let dir = r.path().join(p).parent().unwrap().to_path_buf();
        let new = &reference.after[Path::new(p)];
        let beside = temps.iter().any(|t| t.parent() == Some(dir.as_path()) && std::fs::read(t).is_ok_and(|b| &b == new));
        assert!(beside, "{when}: a config is already new, but {p} is old without its complete new version beside it (temps: {temps:?})");
    }
}

/// A fake kernel file caught empty between truncate and write gets the value a real one would
/// hold: the old one, since the kernel takes a value in one write(2) or not at all.
fn restore_emptied_kernel_files(r: &FakeRoot, reference: &Reference) {
    for (p, content) in files(r) {
        if content.is_empty() && !REPLACED.iter().any(|f| Path::new(f.trim_start_matches('/')) == p) {
            if let Some(old) = reference.before.get(&p) {
                std::fs::write(r.path().join(&p), old).unwrap();
            }
        }
    }
}

/// After a kill: the next apply takes the lock at once, converges with nothing failed, leaves the
/// reference end state and no temp file; the apply after it and a plan find nothing to do.
#[track_caller]
fn check_recovers(ns: &Netns, r: &FakeRoot, doc: &str, reference: &Reference, when: &str) {
    let start = Instant::now();
    let next = apply(ns, r, doc, &[]);
    assert!(
        next.code == 0 || next.code == 2,
        "{when}: the apply after the kill exited {}\nstdout: {}\nstderr: {}",
        next.code,
        next.stdout,
        next.stderr
    );
    assert!(start.elapsed() < Duration::from_secs(4), "{when}: the next run waited for the lock of a dead run");
    assert_eq!(next.json()["summary"]["failed"], 0, "{when}: {}", next.stdout);
    assert_eq!(temps(r), Vec::<PathBuf>::new(), "{when}: temp files left after the next apply");
    assert_eq!(files(r), reference.after, "{when}: the host after recovery is not the converged host");
    assert_eq!(tables(ns), reference.tables_after, "{when}: the firewall after recovery is not the converged one");
    let again = apply(ns, r, doc, &[]);
    again.expect(0);
    run_with(&ns.prefix(), &["plan", "--format", "json", "--root", &r.arg(), doc], None, &[]).expect(0);
}

fn killed_after_every_write(first_run: bool) -> usize {
    let ns = Netns::new(if first_run { "crash1" } else { "crash2" });
    let reference = reference(&ns, first_run);
    let mut n = 1;
    loop {
        let r = fixture(first_run);
        firewall(&ns);
        let doc = r.doc("state", DOC);
        let n_s = n.to_string();
        let run = apply(&ns, &r, &doc, &[("HOSTGUARD_FAULT_AFTER_WRITES", &n_s)]);
        if run.code != -1 {
            // Fewer than n writes: the run finished. It must be the whole, clean apply.
            run.expect(2);
            assert_eq!(files(&r), reference.after);
            assert_eq!(tables(&ns), reference.tables_after);
            break;
        }
        let when = format!("killed after write {n} (first_run: {first_run})");
        check_old_or_new(&ns, &r, &reference, &when, false);
        check_recovers(&ns, &r, &doc, &reference, &when);
        n += 1;
    }
    eprintln!("first_run {first_run}: killed after each of {} host writes", n - 1);
    n - 1
}

#[test]
fn killed_after_each_write_of_a_first_run_recovers() {
    let writes = killed_after_every_write(true);
    // 6 keys, the new sysctl.d file (temp + rename), its directory, 7 cgroup files, 2 configs
    // (temp + rename each), 2 firewall tables.
    assert!(writes >= 20, "only {writes} host writes were seen; the fault injection is not counting them");
}

#[test]
fn killed_after_each_write_of_a_replacing_run_recovers() {
    let writes = killed_after_every_write(false);
    assert!(writes >= 19, "only {writes} host writes were seen; the fault injection is not counting them");
}

/// A small deterministic generator: the seed is printed, and `HOSTGUARD_CRASH_SEED` replays it.
struct Rng(u64);

impl Rng {
    fn next(&mut self, below: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % below.max(1)
    }
}

#[test]
fn killed_at_random_moments_recovers() {
    let seed = std::env::var("HOSTGUARD_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64 | 1);
    eprintln!("killed_at_random_moments_recovers: HOSTGUARD_CRASH_SEED={seed}");
    let mut rng = Rng(seed);
    let ns = Netns::new("crash3");
    for first_run in [true, false] {
        let reference = reference(&ns, first_run);
        // How long a whole run takes here (the quickest of three), so kills land from start-up
        // to the end.
        let span = (0..3)
            .map(|_| {
                let r = fixture(first_run);
                firewall(&ns);
                let doc = r.doc("state", DOC);
                let start = Instant::now();
                apply(&ns, &r, &doc, &[]).expect(2);
                start.elapsed().as_micros() as u64
            })
            .min()
            .unwrap();
        let (mut killed, mut finished, mut midway) = (0, 0, 0);
        for i in 0..40 {
            let r = fixture(first_run);
            firewall(&ns);
            let doc = r.doc("state", DOC);
            // `ip netns exec` execs hostguard in place: the pid killed is hostguard's.
            let mut child = Command::new("ip")
                .args(["netns", "exec", &ns.name, util::bin()])
                .args(["apply", "--format", "json", "--lock-timeout", "5", "--root", &r.arg(), &doc])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            let delay = rng.next(span);
            std::thread::sleep(Duration::from_micros(delay));
            let _ = child.kill();
            let status = child.wait().unwrap();
            if status.code().is_some() {
                finished += 1;
            } else {
                killed += 1;
            }
            let when = format!("kill {i} at {delay}us (seed {seed}, first_run: {first_run})");
            check_old_or_new(&ns, &r, &reference, &when, true);
            let now = files(&r);
            if now != reference.before && now != reference.after {
                midway += 1;
            }
            restore_emptied_kernel_files(&r, &reference);
            check_recovers(&ns, &r, &doc, &reference, &when);
        }
        eprintln!("first_run {first_run}: {killed} runs killed at random moments ({midway} between two writes), {finished} finished first");
        assert!(midway >= 1, "no kill landed between two writes of a run: the delays miss the run");
        assert!(killed >= 10, "only {killed} of 40 runs were killed before they finished ({finished}): the delays miss the run");
    }
}

#[test]
fn a_stale_temp_file_with_our_future_pid_does_not_block_a_write() {
    // Temp files of killed runs (pids that no longer exist) beside two files the run replaces:
    // removed by the next write of those files, never read as configuration. (A temp file named
    // with the next run's own pid is covered by the Host unit tests.)
    let ns = Netns::new("crash4");
    let reference = reference(&ns, false);
    let r = fixture(false);
    firewall(&ns);
    let doc = r.doc("state", DOC);
    r.write("/etc/sysctl.d/.60-hostguard.conf.hostguard-tmp.2147483000", "vm.swappiness = 99\n");
    r.write("/var/lib/lxc/web1/.config.hostguard-tmp.2147483001", "lxc.uts.name = partial");
    check_recovers(&ns, &r, &doc, &reference, "stale temp files planted");
}

/// The firewall part of `DOC`, for `apply --confirm`.
const FW_DOC: &str = r#"{"version": 1,
  "iptables": {"backend": "nft",
      "ipv4": {"filter": {"FORWARD": {"policy": "DROP", "purge": true,
                   "rules": ["-i docker0 -o eth0 -j ACCEPT", "-i docker0 -o docker0 -j DROP"]},
                          "HG-IN": {"purge": true, "rules": ["-p tcp --dport 22 -j ACCEPT"]}}},
      "ipv6": {"filter": {"FORWARD": {"policy": "DROP", "purge": true, "rules": ["-i docker0 -o eth0 -j ACCEPT"]}}}}}"#;

/// The `--confirm` watchdogs still running for this root.
fn watchdogs(r: &FakeRoot) -> usize {
    let root = r.arg();
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| std::fs::read(e.ok()?.path().join("cmdline")).ok())
        .filter(|c| {
            let args: Vec<&[u8]> = c.split(|b| *b == 0).collect();
            args.contains(&b"__confirm-watchdog".as_slice()) && args.contains(&root.as_bytes())
        })
        .count()
}

fn confirm_file(r: &FakeRoot, name: &str) -> bool {
    r.host_path(&format!("/run/hostguard/confirm/{name}")).exists()
}

/// Waits until no watchdog of this root runs; panics after `limit`.
#[track_caller]
fn no_watchdog_within(r: &FakeRoot, limit: Duration, when: &str) {
    let start = Instant::now();
    while watchdogs(r) > 0 {
        assert!(start.elapsed() < limit, "{when}: the watchdog still runs after {limit:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The IPv4 and IPv6 filter tables before and after `FW_DOC` (without --confirm).
fn firewall_reference(ns: &Netns) -> ([String; 2], [String; 2]) {
    let r = FakeRoot::new();
    firewall(ns);
    let before = tables(ns);
    apply(ns, &r, &r.doc("state", FW_DOC), &[]).expect(2);
    (before, tables(ns))
}

/// `apply --confirm 1` of `FW_DOC` on a fresh root and the old firewall, with the fault
/// variable `fault` set to `n`.
fn confirm_apply(ns: &Netns, fault: &str, n: usize) -> (FakeRoot, String, Run) {
    confirm_apply_of(ns, firewall, FW_DOC, fault, n)
}

/// `apply --confirm 1` of `doc_json` on a fresh root, after `reset` put back the old firewall.
fn confirm_apply_of(ns: &Netns, reset: fn(&Netns), doc_json: &str, fault: &str, n: usize) -> (FakeRoot, String, Run) {
    let r = FakeRoot::new();
    reset(ns);
    let doc = r.doc("state", doc_json);
    let args = ["apply", "--format", "json", "--lock-timeout", "5", "--confirm", "1", "--root", &r.arg(), &doc];
    let run = run_with(&ns.prefix(), &args, None, &[(fault, &n.to_string())]);
    (r, doc, run)
}

/// Each table (or group of tables one transaction changes) in `now` is as in `before` or `after`.
#[track_caller]
fn each_old_or_new(now: &[String], before: &[String], after: &[String], when: &str) {
    for (i, fw) in now.iter().enumerate() {
        assert!(*fw == before[i] || *fw == after[i], "{when}: a table is neither old nor new:\n{fw}\nold:\n{}\nnew:\n{}", before[i], after[i]);
    }
}

/// `apply --confirm` killed after each of its host writes (the watchdog started, the rollback
/// record armed and updated, each table committed): whatever was changed is rolled back by the
/// watchdog, nothing is left pending to block the next run, and that run converges.
#[test]
fn a_confirm_apply_killed_after_each_write_is_rolled_back_and_blocks_nothing() {
    let ns = Netns::new("crash5");
    let (before, after) = firewall_reference(&ns);
    let mut n = 1;
    loop {
        let (r, doc, run) = confirm_apply(&ns, "HOSTGUARD_FAULT_AFTER_WRITES", n);
        let when = format!("confirm apply killed after write {n}");
        if run.code != -1 {
            run.expect(2);
            no_watchdog_within(&r, Duration::from_secs(30), "the unkilled confirm apply");
            assert_eq!(tables(&ns), before, "the unconfirmed change was not rolled back");
            break;
        }
        each_old_or_new(&tables(&ns), &before, &after, &when);
        no_watchdog_within(&r, Duration::from_secs(30), &when);
        assert!(!confirm_file(&r, "pending.json") && !confirm_file(&r, "rolling-back.json"), "{when}: a rollback is left pending with no watchdog");
        assert_eq!(tables(&ns), before, "{when}: the change of the killed run was not rolled back");
        let next = apply(&ns, &r, &doc, &[]);
        next.expect(2);
        assert_eq!(tables(&ns), after, "{when}: the next apply did not converge");
        n += 1;
    }
    // The watchdog started, the record (its directories, temp and rename), two tables.
    assert!(n > 5, "only {} host writes were seen in apply --confirm", n - 1);
}

/// The watchdog killed after each of its host writes (the rename that commits the rollback,
/// each table put back, the outcome written, the record dropped): each table is old or new, and
/// the next run finishes the rollback before anything else, refusing itself since it planned
/// from rules the rollback then changed; the run after converges.
#[test]
fn a_watchdog_killed_after_each_write_has_its_rollback_finished_by_the_next_run() {
    let ns = Netns::new("crash6");
    let (before, after) = firewall_reference(&ns);
    let read = |ns: &Netns| tables(ns).to_vec();
    let n = watchdog_killed_after_each_write(&ns, firewall, FW_DOC, read, &before, &after, &mut |_, _| {});
    // The rename, two tables, the outcome (temp and rename): the last write ends the run.
    assert!(n > 4, "only {n} watchdog writes were killed at");
}

/// The watchdog of `apply --confirm 1` of `doc_json`, on the old firewall `reset` puts back,
/// killed after its Nth host write for every N until it finishes: then each table `read` lists
/// is as in `before` or `after`, the next run finishes the rollback and exits 1, and the run
/// after converges. `at_kill` sees each killed watchdog's root and tables. Returns how many
/// writes it was killed at.
fn watchdog_killed_after_each_write(
    ns: &Netns,
    reset: fn(&Netns),
    doc_json: &str,
    read: fn(&Netns) -> Vec<String>,
    before: &[String],
    after: &[String],
    at_kill: &mut dyn FnMut(&FakeRoot, &[String]),
) -> usize {
    let mut n = 1;
    loop {
        let (r, doc, run) = confirm_apply_of(ns, reset, doc_json, "HOSTGUARD_FAULT_DETACHED_AFTER_WRITES", n);
        run.expect(2);
        let when = format!("watchdog killed after write {n}");
        no_watchdog_within(&r, Duration::from_secs(30), &when);
        if !confirm_file(&r, "rolling-back.json") {
            // It finished (or was killed after its last write): the rollback is complete.
            assert!(confirm_file(&r, "rolled-back.json") && !confirm_file(&r, "pending.json"), "{when}: no outcome recorded");
            assert_eq!(read(ns), before, "{when}: the finished rollback did not restore the tables");
            return n - 1;
        }
        let now = read(ns);
        each_old_or_new(&now, before, after, &when);
        at_kill(&r, &now);
        let late = run_with(&ns.prefix(), &["confirm", "--root", &r.arg()], None, &[]);
        assert_eq!(late.code, 1, "{when}: confirm after the rollback began: {}", late.stderr);
        let next = apply(ns, &r, &doc, &[]);
        next.expect(1);
        assert!(next.stderr.contains("interrupted"), "{when}: {}", next.stderr);
        assert_eq!(read(ns), before, "{when}: the next run did not finish the rollback");
        assert!(!confirm_file(&r, "rolling-back.json"), "{when}: the rollback record is left");
        apply(ns, &r, &doc, &[]).expect(2);
        assert_eq!(read(ns), after, "{when}: the run after did not converge");
        n += 1;
    }
}

/// The nftables tables of the document, as nftables held them before it: an older
/// `inet hostguard`, and no `ip nat_lxc` yet (the commit creates it).
const OLD_NFT: &str = "table inet hostguard {\n chain input {\n  type filter hook input priority filter; policy accept;\n  tcp dport 22 accept\n }\n}\n";

/// An nftables section: one owned table rewritten, one created, in one `nft -f` transaction.
const NFT_SECTION: &str = r#"{"tables": {
  "inet hostguard": {"chains": {
      "input": {"type": "filter", "hook": "input", "priority": "filter", "policy": "accept",
                "rules": ["tcp dport 22 accept", "tcp dport 443 accept"]},
      "forward": {"type": "filter", "hook": "forward", "priority": 0, "policy": "drop",
                  "rules": ["iifname \"lxcbr0\" oifname \"eth0\" accept"]}}},
  "ip nat_lxc": {"chains": {
      "postrouting": {"type": "nat", "hook": "postrouting", "priority": "srcnat",
                      "rules": ["ip saddr 10.0.3.0/24 oifname != \"lxcbr0\" masquerade"]}}}}}"#;

/// The tables the nftables section owns.
const NFT_OWNED: [[&str; 2]; 2] = [["inet", "hostguard"], ["ip", "nat_lxc"]];

/// A firewall document with the nftables section, and with `FW_DOC`'s iptables section too when
/// `iptables` is set: then one run commits both layers (iptables first).
fn nft_doc(iptables: bool) -> String {
    let mut doc: serde_json::Value = if iptables { serde_json::from_str(FW_DOC).unwrap() } else { serde_json::json!({"version": 1}) };
    doc["nftables"] = serde_json::from_str(NFT_SECTION).unwrap();
    doc.to_string()
}

/// Both layers reset to the old firewall: the iptables-nft filter tables and the owned nftables
/// tables (neither iptables-restore nor the owned tables' reset touches the other).
fn both_layers(ns: &Netns) {
    firewall(ns);
    let mut script = String::new();
    for [family, name] in NFT_OWNED {
        script.push_str(&format!("table {family} {name} {{}}\ndelete table {family} {name}\n"));
    }
    ns.nft(&(script + OLD_NFT));
}

/// The firewall as the kernel holds it: the IPv4 and IPv6 filter tables (`tables`), then the
/// owned nftables tables together (`nft -s list table`, an absent one as such), which one `nft -f`
/// changes at once.
fn layers(ns: &Netns) -> Vec<String> {
    let [v4, v6] = tables(ns);
    let mut nft = String::new();
    for [family, name] in NFT_OWNED {
        let o = ns.run(&["nft", "-s", "list", "table", family, name], None);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(o.status.success() || err.contains("No such file or directory"), "nft list table {family} {name}: {err}");
        nft.push_str(if o.status.success() { std::str::from_utf8(&o.stdout).unwrap() } else { "(absent)\n" });
        nft.push_str(&format!("# {family} {name} ends\n"));
    }
    vec![v4, v6, nft]
}

/// The firewall before and after a clean apply of `doc` (without --confirm).
fn layers_reference(ns: &Netns, doc: &str) -> (Vec<String>, Vec<String>) {
    let r = FakeRoot::new();
    both_layers(ns);
    let before = layers(ns);
    apply(ns, &r, &r.doc("state", doc), &[]).expect(2);
    let after = layers(ns);
    assert_ne!(before[2], after[2], "the document changes no nftables table");
    (before, after)
}

/// A plain apply of both firewall layers killed after each of its host writes (each iptables
/// table committed, then the one `nft -f` of the owned nftables tables): every table is old or
/// new, the owned nftables tables all old or all new, and the next apply converges. Some kill
/// must come after the nftables commit, or the commit is not counted as a write.
#[test]
fn an_apply_of_both_firewall_layers_killed_after_each_write_leaves_each_table_old_or_new() {
    let ns = Netns::new("crash7");
    let doc_json = nft_doc(true);
    let (before, after) = layers_reference(&ns, &doc_json);
    let (mut n, mut nft_new) = (1, 0);
    loop {
        let r = FakeRoot::new();
        both_layers(&ns);
        let doc = r.doc("state", &doc_json);
        let run = apply(&ns, &r, &doc, &[("HOSTGUARD_FAULT_AFTER_WRITES", &n.to_string())]);
        if run.code != -1 {
            run.expect(2);
            assert_eq!(layers(&ns), after, "the unkilled apply did not converge");
            break;
        }
        let when = format!("killed after write {n}");
        each_old_or_new(&layers(&ns), &before, &after, &when);
        nft_new += usize::from(layers(&ns)[2] == after[2]);
        let next = apply(&ns, &r, &doc, &[]);
        assert!(next.code == 0 || next.code == 2, "{when}: the next apply exited {}\n{}\n{}", next.code, next.stdout, next.stderr);
        assert_eq!(next.json()["summary"]["failed"], 0, "{when}: {}", next.stdout);
        assert_eq!(layers(&ns), after, "{when}: the next apply did not converge");
        apply(&ns, &r, &doc, &[]).expect(0);
        n += 1;
    }
    eprintln!("both firewall layers: killed after each of {} host writes, {nft_new} after the nftables commit", n - 1);
    // Two iptables tables, then the nftables commit.
    assert!(n > 3, "only {} host writes were seen", n - 1);
    assert!(nft_new >= 1, "no run was killed after the nftables commit: `nft -f` is not counted as a host write");
}

/// `apply --confirm` of nftables tables, alone and beside iptables, killed after each of its
/// host writes (the watchdog started, the rollback record armed, the nftables script joined to
/// it, each commit): the watchdog rolls back whatever was changed, nothing is left pending, and
/// the next run converges.
#[test]
fn a_confirm_apply_of_nftables_killed_after_each_write_is_rolled_back_and_blocks_nothing() {
    let ns = Netns::new("crash8");
    for (what, doc_json) in [("nftables alone", nft_doc(false)), ("both layers", nft_doc(true))] {
        let (before, after) = layers_reference(&ns, &doc_json);
        let (mut n, mut nft_new) = (1, 0);
        loop {
            let (r, doc, run) = confirm_apply_of(&ns, both_layers, &doc_json, "HOSTGUARD_FAULT_AFTER_WRITES", n);
            let when = format!("{what}: confirm apply killed after write {n}");
            if run.code != -1 {
                run.expect(2);
                no_watchdog_within(&r, Duration::from_secs(30), &when);
                assert_eq!(layers(&ns), before, "{when}: the unconfirmed change was not rolled back");
                break;
            }
            each_old_or_new(&layers(&ns), &before, &after, &when);
            nft_new += usize::from(layers(&ns)[2] == after[2]);
            no_watchdog_within(&r, Duration::from_secs(30), &when);
            assert!(!confirm_file(&r, "pending.json") && !confirm_file(&r, "rolling-back.json"), "{when}: a rollback is left pending with no watchdog");
            assert_eq!(layers(&ns), before, "{when}: the change of the killed run was not rolled back");
            apply(&ns, &r, &doc, &[]).expect(2);
            assert_eq!(layers(&ns), after, "{when}: the next apply did not converge");
            n += 1;
        }
        eprintln!("{what}: apply --confirm killed after each of {} host writes, {nft_new} after the nftables commit", n - 1);
        assert!(nft_new >= 1, "{what}: no confirm apply was killed after the nftables commit");
    }
}

/// Whether the watchdog began writing the outcome of its rollback (`rolled-back.json`, or its
/// temp file): it does so after every table is put back.
fn outcome_begun(r: &FakeRoot) -> bool {
    std::fs::read_dir(r.host_path("/run/hostguard/confirm")).unwrap().any(|e| e.unwrap().file_name().to_string_lossy().contains("rolled-back.json"))
}

/// The watchdog of an `apply --confirm` of nftables tables, alone and beside iptables, killed
/// after each of its host writes (the rename that commits the rollback, each iptables table and
/// the nftables tables put back, the outcome written, the record dropped): each table is old or
/// new, the next run finishes the rollback before anything else and refuses itself, and the run
/// after converges. With nftables alone, a watchdog killed before it put the tables back leaves
/// them as the document wants: the next run must finish the rollback all the same.
#[test]
fn a_watchdog_of_nftables_killed_after_each_write_has_its_rollback_finished_by_the_next_run() {
    let ns = Netns::new("crash9");
    for (what, doc_json) in [("nftables alone", nft_doc(false)), ("both layers", nft_doc(true))] {
        let (before, after) = layers_reference(&ns, &doc_json);
        let mut right_after = 0;
        let mut at_kill = |r: &FakeRoot, now: &[String]| right_after += usize::from(now[2] == before[2] && !outcome_begun(r));
        let n = watchdog_killed_after_each_write(&ns, both_layers, &doc_json, layers, &before, &after, &mut at_kill);
        eprintln!("{what}: the watchdog killed after each of {n} host writes, {right_after} right after its nftables rollback");
        // The rename, the nftables rollback, the outcome (temp and rename): the last write ends the run.
        assert!(n > 3, "{what}: only {n} watchdog writes were killed at");
        assert_eq!(right_after, 1, "{what}: the watchdog was not killed right after its `nft -f` rollback");
    }
}
