//! Concurrent runs: simultaneous applies of different documents serialise on the run lock, each
//! exits with its own code, and the host ends in the state of the run that took the lock last.
//!
//! The order the runs took the lock in is read from their reports: each run finds, as `current`,
//! the values the run before it wrote. If two runs overlapped, two would find the same values (or a
//! mix of two documents), and the chain below would not hold.

use crate::util;

use std::collections::BTreeMap;
use std::os::unix::io::AsRawFd;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use util::{hostguard, FakeRoot, Run};

/// Keys each document sets: enough that a run takes a while, so the runs really contend.
const KEYS: usize = 40;

fn key(k: usize) -> String {
    format!("net.ipv4.conf.if{k}.forwarding")
}

fn host() -> FakeRoot {
    let r = FakeRoot::new();
    r.sysctl("vm.swappiness", "60");
    for k in 0..KEYS {
        r.sysctl(&key(k), "0");
    }
    r.write("/var/lib/lxc/web1/config", "lxc.uts.name = web1\n");
    r
}

/// Document `i`: every value is unique to it, so a value names the document that wrote it.
fn document(i: usize) -> String {
    let mut values: BTreeMap<String, serde_json::Value> = (0..KEYS).map(|k| (key(k), (i * 1000 + k + 1).into())).collect();
    values.insert("vm.swappiness".into(), (i + 1).into());
    serde_json::json!({
        "version": 1,
        "sysctl": {"persist": "/etc/sysctl.d/60-hostguard.conf", "values": values},
        "lxc": {"dialect": "modern", "containers": {"web1": {"config": {"lxc.start.delay": (i + 1).to_string()}}}}
    })
    .to_string()
}

fn spawn_apply(r: &FakeRoot, doc: &str) -> std::process::Child {
    Command::new(util::bin())
        .args(["apply", "--format", "json", "--lock-timeout", "60", "--root", &r.arg(), doc])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn finish(child: std::process::Child) -> Run {
    let out = child.wait_with_output().unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

#[test]
fn ten_simultaneous_applies_serialise_and_the_last_lock_holder_wins() {
    let r = host();
    // Run 3's document is invalid: refused before it takes the lock, it changes nothing. Run 7's
    // names a key this host lacks: its other values are applied and it exits 6.
    let docs: Vec<String> = (0..10)
        .map(|i| match i {
            3 => r.doc(&format!("d{i}"), r#"{"version": 1, "sysctl": {"values": {"vm..swappiness": 1}}}"#),
            7 => {
                let mut d: serde_json::Value = serde_json::from_str(&document(i)).unwrap();
                d["sysctl"]["values"]["vm.no_such_key"] = 1.into();
                r.doc(&format!("d{i}"), &d.to_string())
            }
            _ => r.doc(&format!("d{i}"), &document(i)),
        })
        .collect();
    let children: Vec<_> = docs.iter().map(|d| spawn_apply(&r, d)).collect();
    let runs: Vec<Run> = children.into_iter().map(finish).collect();

    for (i, run) in runs.iter().enumerate() {
        let want = match i {
            3 => 1,
            7 => 6,
            _ => 2,
        };
        assert_eq!(run.code, want, "run {i}\nstdout: {}\nstderr: {}", run.stdout, run.stderr);
    }
    assert!(runs[3].stderr.contains("vm..swappiness"), "{}", runs[3].stderr);

    // Which document each run found on the host: the same for every key, or runs overlapped.
    // An apply report's `current` is the value after the run; the one it found is in its message,
    // `set KEY OLD -> NEW`.
    let old_value = |run: &Run, k: &str| -> String {
        let res = run.resource(&format!("sysctl/{k}"));
        let msg = res["message"].as_str().unwrap_or_default();
        let rest = msg.strip_prefix(&format!("set {k} ")).unwrap_or_else(|| panic!("{k} was not changed: {res}"));
        rest.split(" -> ").next().unwrap().to_string()
    };
    let found_by = |run: &Run| -> Option<usize> {
        let swappiness: usize = old_value(run, "vm.swappiness").parse().unwrap();
        let prev = if swappiness == 60 { None } else { Some(swappiness - 1) };
        for k in 0..KEYS {
            let cur = old_value(run, &key(k));
            let want = prev.map_or("0".to_string(), |p| (p * 1000 + k + 1).to_string());
            assert_eq!(cur, want, "a run found {} = {cur} but vm.swappiness = {swappiness}: two runs interleaved", key(k));
        }
        prev
    };
    let valid: Vec<usize> = (0..10).filter(|&i| i != 3).collect();
    let mut next_of: BTreeMap<Option<usize>, usize> = BTreeMap::new();
    for &i in &valid {
        if let Some(other) = next_of.insert(found_by(&runs[i]), i) {
            panic!("runs {other} and {i} both found the host as {:?} left it: they did not serialise", found_by(&runs[i]));
        }
    }
    // Follow the chain from the untouched host: every valid run exactly once, in lock order.
    let mut order = Vec::new();
    let mut at = None;
    while let Some(&i) = next_of.get(&at) {
        order.push(i);
        at = Some(i);
    }
    assert_eq!(order.len(), valid.len(), "lock order {order:?} does not cover every run {valid:?}");
    let last = *order.last().unwrap();
    eprintln!("lock order: {order:?}; last: {last}");

    // The host is the last lock holder's document, everywhere.
    assert_eq!(r.sysctl_value("vm.swappiness"), (last + 1).to_string());
    for k in 0..KEYS {
        assert_eq!(r.sysctl_value(&key(k)), (last * 1000 + k + 1).to_string());
    }
    let persisted = r.read("/etc/sysctl.d/60-hostguard.conf");
    assert!(persisted.contains(&format!("\nvm.swappiness = {}\n", last + 1)), "{persisted}");
    assert!(r.read("/var/lib/lxc/web1/config").contains(&format!("lxc.start.delay = {}\n", last + 1)));
    let again = hostguard(&["plan", "--format", "json", "--root", &r.arg(), &docs[last]]);
    // Run 7's missing key is `failed` already in plan (honest plans, SPEC section 2): exit 4.
    again.expect(if last == 7 { 4 } else { 0 });
}

/// Holds the run lock of a root the way another hostguard run would, until dropped.
struct HeldLock(#[allow(dead_code)] std::fs::File);

fn hold_lock(r: &FakeRoot) -> HeldLock {
    let p = r.host_path("/run/hostguard.lock");
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    let f = std::fs::OpenOptions::new().create(true).truncate(false).read(true).write(true).open(&p).unwrap();
    // SAFETY: flock on a descriptor this test owns.
    assert_eq!(unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) }, 0);
    HeldLock(f)
}

#[test]
fn a_run_that_cannot_get_the_lock_in_time_exits_1_and_touches_nothing() {
    let r = host();
    let doc = r.doc("d", &document(1));
    let held = hold_lock(&r);
    let before = r.snapshot();
    let start = Instant::now();
    let run = hostguard(&["apply", "--format", "json", "--lock-timeout", "1", "--root", &r.arg(), &doc]);
    run.expect(1);
    assert!(run.stderr.contains("another hostguard run"), "{}", run.stderr);
    assert!(start.elapsed() >= Duration::from_secs(1) && start.elapsed() < Duration::from_secs(10));
    assert_eq!(r.snapshot(), before, "a run without the lock touched the host");
    drop(held);
    hostguard(&["apply", "--format", "json", "--lock-timeout", "1", "--root", &r.arg(), &doc]).expect(2);
}

#[test]
fn a_waiting_run_proceeds_when_the_lock_is_released() {
    let r = host();
    let doc = r.doc("d", &document(1));
    let held = hold_lock(&r);
    let child = spawn_apply(&r, &doc);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(r.sysctl_value("vm.swappiness"), "60", "the run did not wait for the lock");
    drop(held);
    finish(child).expect(2);
    assert_eq!(r.sysctl_value("vm.swappiness"), "2");
}
