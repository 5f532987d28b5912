//! Temp files a power cut leaves beside files that need no write (bench/power-cut, cuts 29 and
//! 49 of the 50-cut run in docs/reliability.md): a cut after a batch's temp files are durable
//! and before its first rename leaves every file old with its new version beside it; the next
//! apply of the old document finds every file in sync and writes nothing, and must still remove
//! them, for every kind that writes files (LXC configs, the persisted sysctl.d file).

use crate::util;

use std::path::PathBuf;
use std::time::{Duration, UNIX_EPOCH};

use util::FakeRoot;

const DOC: &str = r#"{"version": 1,
  "sysctl": {"persist": "/etc/sysctl.d/60-hostguard.conf", "values": {"vm.swappiness": 10}},
  "lxc": {"dialect": "modern", "containers": {
      "web1": {"memory_limit": "256M", "config": {"lxc.start.auto": "1"}},
      "web2": {"cpu_shares": 128}}}}"#;

const MANAGED: [&str; 3] = ["/etc/sysctl.d/60-hostguard.conf", "/var/lib/lxc/web1/config", "/var/lib/lxc/web2/config"];

fn run(r: &FakeRoot, cmd: &str, doc: &str) -> util::Run {
    util::hostguard(&[cmd, "--format", "json", "--root", &r.arg(), doc])
}

/// `.NAME.hostguard-tmp.PID` beside the host file `abs`, as hostguard names its temp files.
fn temp_beside(r: &FakeRoot, abs: &str, pid: u32) -> PathBuf {
    let p = r.host_path(abs);
    let name = p.file_name().unwrap().to_string_lossy().into_owned();
    p.with_file_name(format!(".{name}.hostguard-tmp.{pid}"))
}

/// A PID no process has: that of a child that has exited and been reaped.
fn dead_pid() -> u32 {
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let pid = child.id();
    child.wait().unwrap();
    pid
}

#[test]
fn apply_removes_stale_temp_files_beside_files_already_in_sync() {
    let r = FakeRoot::new();
    r.sysctl("vm.swappiness", "60");
    for c in ["web1", "web2"] {
        r.write(&format!("/var/lib/lxc/{c}/config"), &format!("lxc.uts.name = {c}\nlxc.net.0.type = empty\n"));
    }
    let doc = r.doc("state", DOC);
    run(&r, "apply", &doc).expect(2);
    run(&r, "apply", &doc).expect(0);

    // What the cut leaves: beside each managed file, a complete temp file of a run that died
    // (its PID gone), one written before this boot whose PID a live process (1) has now, and one
    // of a live run of this boot, which is not stale.
    let dead = dead_pid();
    let mut stale = Vec::new();
    let mut live = Vec::new();
    for abs in MANAGED {
        let gone = temp_beside(&r, abs, dead);
        std::fs::write(&gone, "the new version\n").unwrap();
        let before_boot = temp_beside(&r, abs, 1);
        std::fs::write(&before_boot, "the new version\n").unwrap();
        let f = std::fs::File::options().write(true).open(&before_boot).unwrap();
        f.set_modified(UNIX_EPOCH + Duration::from_secs(86400)).unwrap();
        drop(f);
        stale.extend([gone, before_boot]);
        let running = temp_beside(&r, abs, std::process::id());
        std::fs::write(&running, "being written\n").unwrap();
        live.push(running);
    }
    let files: Vec<String> = MANAGED.iter().map(|a| r.read(a)).collect();

    // plan changes nothing, temp files included, and still says in sync.
    let plan = run(&r, "plan", &doc);
    plan.expect(0);
    for p in stale.iter().chain(&live) {
        assert!(p.exists(), "plan removed {}", p.display());
    }

    let apply = run(&r, "apply", &doc);
    apply.expect(0);
    for id in ["sysctl-file/etc/sysctl.d/60-hostguard.conf", "lxc/web1", "lxc/web2"] {
        assert_eq!(apply.status(id), "in_sync", "{}", apply.stdout);
    }
    for p in &stale {
        assert!(!p.exists(), "apply left the stale temp file {}", p.display());
    }
    for p in &live {
        assert!(p.exists(), "apply removed {}, the temp file of a live run", p.display());
    }
    let after: Vec<String> = MANAGED.iter().map(|a| r.read(a)).collect();
    assert_eq!(files, after, "the managed files are unchanged");
}
