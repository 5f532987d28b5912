//! Regression tests for issue 14's hangs and memory blow-ups: a FIFO, a socket, a device or a
//! 3 GiB sparse file where a configuration file is expected. Each made `plan`, `apply` and `audit`
//! wait forever (holding the run lock) or grow to gigabytes; each is now a `failed` resource (or a
//! check not made, or exit 1 for the document) naming the path and what it is, in bounded time
//! and memory. Every run is watched: one that outlives its deadline is killed and fails the test.

use crate::util;

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use util::{bin, FakeRoot, Netns};

/// The special files of the issue, and how hostguard names each.
#[derive(Debug, Clone, Copy)]
enum Special {
    Fifo,
    Socket,
    DevZero,
    Sparse3GiB,
}

const ALL: [Special; 4] = [Special::Fifo, Special::Socket, Special::DevZero, Special::Sparse3GiB];

impl Special {
    fn plant(self, path: &Path) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let _ = std::fs::remove_file(path);
        let c = CString::new(path.as_os_str().as_bytes()).unwrap();
        match self {
            // SAFETY: a valid NUL-terminated path; mkfifo and mknod only create a node.
            Special::Fifo => assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0, "mkfifo {path:?}"),
            Special::Socket => drop(std::os::unix::net::UnixListener::bind(path).unwrap()),
            Special::DevZero => {
                // /dev/zero's own device number (char 1:5).
                let rc = unsafe { libc::mknod(c.as_ptr(), libc::S_IFCHR | 0o644, libc::makedev(1, 5)) };
                assert_eq!(rc, 0, "mknod {path:?}: {}", std::io::Error::last_os_error());
            }
            Special::Sparse3GiB => std::fs::File::create(path).unwrap().set_len(3 << 30).unwrap(),
        }
    }

    /// What the message says it is.
    fn named(self) -> &'static str {
        match self {
            Special::Fifo => "is a FIFO",
            Special::Socket => "is a socket",
            Special::DevZero => "is a character device",
            Special::Sparse3GiB => "over the 1 MiB limit",
        }
    }

    fn still_there(self, path: &Path) {
        let m = std::fs::symlink_metadata(path).unwrap_or_else(|e| panic!("{path:?} was removed: {e}"));
        use std::os::unix::fs::FileTypeExt;
        let t = m.file_type();
        let same = match self {
            Special::Fifo => t.is_fifo(),
            Special::Socket => t.is_socket(),
            Special::DevZero => t.is_char_device(),
            Special::Sparse3GiB => t.is_file() && m.len() == 3 << 30,
        };
        assert!(same, "{path:?} was replaced: {t:?}");
    }
}

/// One watched run: its exit code, output, wall time and peak resident memory.
struct Watched {
    code: i32,
    stdout: String,
    stderr: String,
    elapsed: Duration,
    max_rss_kib: i64,
}

impl Watched {
    fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {}\n{}", self.stdout, self.stderr))
    }

    fn resource(&self, id: &str) -> serde_json::Value {
        self.json()["resources"].as_array().unwrap().iter().find(|r| r["id"] == id).cloned().unwrap_or_else(|| panic!("no {id}: {}", self.stdout))
    }
}

/// Run hostguard (inside `ns` when given), killed after 20 s; the bounds are asserted here once
/// for every run: under 10 s and under 64 MiB resident (the goal is 1 s and 20 MiB; the slack is
/// for a loaded 2-core machine and a debug build; `bench/special-files` measures the release build).
fn watched(ns: Option<&Netns>, args: &[&str], what: &str) -> Watched {
    // The peak is GNU time's report of its own child. A process forked from this test binary
    // (one binary for every integration test, hundreds of MiB resident) starts with the test's
    // resident size as its ru_maxrss, which exec keeps; a child of the small `time` does not.
    let rss_file = tempfile::NamedTempFile::new().unwrap();
    let rss_path = rss_file.path().to_str().unwrap().to_string();
    let mut argv: Vec<&str> = vec!["/usr/bin/time", "-f", "%M", "-o", &rss_path];
    argv.extend(ns.map(|n| n.prefix()).unwrap_or_default());
    argv.push(bin());
    argv.extend_from_slice(args);
    let mut child = Command::new(argv[0])
        .args(&argv[1..])
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .env_remove("SSH_CONNECTION")
        .spawn()
        .unwrap();
    let started = Instant::now();
    let pid = child.id() as i32;
    let (mut out, mut err) = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut out, &mut s).ok();
        s
    });
    let ereader = std::thread::spawn(move || {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut err, &mut s).ok();
        s
    });
    let (mut status, mut usage) = (0, unsafe { std::mem::zeroed::<libc::rusage>() });
    loop {
        // SAFETY: waiting for our own child, with valid out-pointers.
        let rc = unsafe { libc::wait4(pid, &mut status, libc::WNOHANG, &mut usage) };
        if rc == pid {
            break;
        }
        if started.elapsed() > Duration::from_secs(20) {
            // SAFETY: the child leads its own process group: `time` and hostguard under it.
            unsafe { libc::kill(-pid, libc::SIGKILL) };
            let _ = child.wait();
            panic!("{what}: hostguard {args:?} still running after 20 s: it hangs");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let elapsed = started.elapsed();
    let w = Watched {
        code: if libc::WIFEXITED(status) { libc::WEXITSTATUS(status) } else { -1 },
        stdout: reader.join().unwrap(),
        stderr: ereader.join().unwrap(),
        elapsed,
        // With `ip netns exec` in front this is the larger of it and hostguard, which it execs.
        // `time` writes "Command exited with non-zero status N" first when the run failed.
        max_rss_kib: std::fs::read_to_string(&rss_path)
            .ok()
            .and_then(|t| t.lines().last().and_then(|l| l.trim().parse().ok()))
            .unwrap_or_else(|| panic!("{what}: /usr/bin/time wrote no peak resident size to {rss_path}")),
    };
    assert!(w.elapsed < Duration::from_secs(10), "{what}: {args:?} took {:?}", w.elapsed);
    assert!(w.max_rss_kib < 64 * 1024, "{what}: {args:?} grew to {} KiB resident", w.max_rss_kib);
    w
}

fn run(r: &FakeRoot, args: &[&str], what: &str) -> Watched {
    let root = r.arg();
    let mut a = args.to_vec();
    a.extend(["--format", "json", "--root", &root]);
    watched(None, &a, what)
}

fn host() -> FakeRoot {
    let r = FakeRoot::new();
    r.sysctl("vm.swappiness", "60");
    r.write("/proc/meminfo", "MemTotal:        8388608 kB\n");
    r
}

const SYSCTL_DOC: &str = r#"{"version": 1, "sysctl": {"persist": "/etc/sysctl.d/60-hostguard.conf", "values": {"vm.swappiness": 10}}}"#;
const LXC_DOC: &str = r#"{"version": 1, "lxc": {"dialect": "modern", "containers": {"web1": {"memory_limit": "256M"}}}}"#;

#[test]
fn a_special_file_at_a_containers_config_is_failed_not_a_hang() {
    for special in ALL {
        let r = host();
        std::fs::create_dir_all(r.host_path("/var/lib/lxc/web1/rootfs")).unwrap();
        let config = r.host_path("/var/lib/lxc/web1/config");
        special.plant(&config);
        let doc = r.doc("state", LXC_DOC);
        let what = format!("{special:?} at the config");
        for cmd in ["plan", "apply"] {
            let out = run(&r, &[cmd, &doc], &what);
            assert_eq!(out.code, 4, "{what}: {cmd}: {}{}", out.stdout, out.stderr);
            let res = out.resource("lxc/web1");
            assert_eq!(res["status"], "failed");
            let msg = res["message"].as_str().unwrap();
            assert!(msg.contains("var/lib/lxc/web1/config") && msg.contains(special.named()), "{what}: {cmd}: {msg}");
        }
        special.still_there(&config);
        // show leaves the container out, and says so, rather than hanging or failing.
        let show = run(&r, &["show"], &what);
        assert_eq!(show.code, 0, "{what}: show: {}", show.stderr);
        assert!(show.json()["lxc"]["containers"].get("web1").is_none(), "{}", show.stdout);
        assert!(show.stderr.contains("container web1 left out") && show.stderr.contains(special.named()), "{}", show.stderr);
    }
}

#[test]
fn a_special_file_at_the_persisted_sysctl_file_is_failed_not_a_hang() {
    for special in ALL {
        let r = host();
        let file = r.host_path("/etc/sysctl.d/60-hostguard.conf");
        special.plant(&file);
        let doc = r.doc("state", SYSCTL_DOC);
        let what = format!("{special:?} at the persisted file");
        let plan = run(&r, &["plan", &doc], &what);
        // The key still converges at runtime; only the file cannot.
        assert_eq!(plan.code, 6, "{what}: {}{}", plan.stdout, plan.stderr);
        let res = plan.resource("sysctl-file/etc/sysctl.d/60-hostguard.conf");
        assert_eq!(res["status"], "failed");
        assert!(res["message"].as_str().unwrap().contains(special.named()), "{what}: {res}");
        let apply = run(&r, &["apply", &doc], &what);
        assert_eq!(apply.code, 6, "{what}: {}{}", apply.stdout, apply.stderr);
        assert_eq!(apply.resource("sysctl/vm.swappiness")["status"], "changed");
        special.still_there(&file);
    }
}

#[test]
fn a_special_file_among_the_other_sysctl_d_files_is_failed_not_a_hang() {
    for special in ALL {
        let r = host();
        let other = r.host_path("/etc/sysctl.d/99-other.conf");
        special.plant(&other);
        let doc = r.doc("state", SYSCTL_DOC);
        let what = format!("{special:?} at /etc/sysctl.d/99-other.conf");
        let plan = run(&r, &["plan", &doc], &what);
        assert_eq!(plan.code, 6, "{what}: {}{}", plan.stdout, plan.stderr);
        let res = plan.resource("sysctl-file/etc/sysctl.d/60-hostguard.conf");
        let msg = res["message"].as_str().unwrap();
        assert!(msg.contains("etc/sysctl.d/99-other.conf") && msg.contains(special.named()), "{what}: {msg}");
        // Not written while the boot order it would join cannot be read.
        let apply = run(&r, &["apply", &doc], &what);
        assert_eq!(apply.code, 6, "{what}");
        assert!(!r.host_path("/etc/sysctl.d/60-hostguard.conf").exists(), "{what}: written anyway");
        special.still_there(&other);
    }
}

#[test]
fn a_special_file_in_the_audit_is_listed_as_not_checked_not_a_hang() {
    let ns = Netns::new("special");
    for special in ALL {
        let r = host();
        r.write("/var/lib/lxc/web1/config", "lxc.uts.name = web1\nlxc.include = /var/lib/lxc/web1/extra.conf\n");
        r.write("/var/lib/lxc/web2/config", "lxc.uts.name = web2\n");
        r.write("/usr/bin/dockerd", "");
        special.plant(&r.host_path("/var/lib/lxc/web1/extra.conf"));
        special.plant(&r.host_path("/var/lib/lxc/web2/config"));
        special.plant(&r.host_path("/etc/docker/daemon.json"));
        special.plant(&r.host_path("/etc/sysctl.d/99-other.conf"));
        special.plant(&r.host_path("/etc/subuid"));
        let what = format!("{special:?} in the audit");
        let root = r.arg();
        let out = watched(Some(&ns), &["audit", "--format", "json", "--root", &root], &what);
        assert!(out.code == 0 || out.code == 2, "{what}: {}{}", out.stdout, out.stderr);
        let skipped: Vec<String> =
            out.json()["skipped"].as_array().unwrap().iter().map(|s| s.as_str().unwrap().to_string()).collect();
        for (checks, path) in [
            ("lxc/web1", "/var/lib/lxc/web1/extra.conf"),
            ("lxc/web2", "/var/lib/lxc/web2/config"),
            ("docker checks", "/etc/docker/daemon.json"),
            ("sysctl boot checks", "/etc/sysctl.d/99-other.conf"),
            ("lxc.idmap_not_delegated", "/etc/subuid"),
        ] {
            assert!(
                skipped.iter().any(|s| s.starts_with(checks) && s.contains(path) && s.contains(special.named())),
                "{what}: nothing says {checks} did not see {path}: {skipped:#?}"
            );
        }
    }
}

#[test]
fn a_special_file_as_the_document_exits_1_not_a_hang() {
    for special in ALL {
        let r = host();
        let doc = r.path().join("state.json");
        special.plant(&doc);
        let what = format!("{special:?} as the document");
        let out = run(&r, &["plan", doc.to_str().unwrap()], &what);
        assert_eq!(out.code, 1, "{what}: {}", out.stderr);
        let named = match special {
            Special::Sparse3GiB => "over the limit",
            other => &other.named()[3..],
        };
        assert!(out.stderr.contains("state.json") && out.stderr.contains(named), "{what}: {}", out.stderr);
        assert!(out.stderr.contains("nothing was touched"), "{}", out.stderr);
    }
}

#[test]
fn a_run_after_a_special_file_is_not_kept_waiting_for_the_lock() {
    // The hang held the run lock, so every later run on the host waited too.
    let r = host();
    Special::Fifo.plant(&r.host_path("/etc/sysctl.d/60-hostguard.conf"));
    let doc = r.doc("state", SYSCTL_DOC);
    let first = std::thread::spawn({
        let (root, doc) = (r.arg(), doc.clone());
        move || watched(None, &["apply", "--format", "json", "--root", &root, &doc], "first").code
    });
    let second = run(&r, &["plan", "--lock-timeout", "5", &doc], "second");
    assert_ne!(second.code, 1, "{}", second.stderr);
    assert_eq!(first.join().unwrap(), 6);
}

/// Issue 14: a special file under `/proc/sys` (a fake root's) stopped the run with exit 1. It is
/// a `failed` key naming the path and what it is; the other keys converge.
#[test]
fn a_special_file_at_a_proc_sys_key_is_failed_not_exit_1() {
    for special in ALL {
        let r = host();
        let key = r.host_path("/proc/sys/vm/overcommit_memory");
        special.plant(&key);
        let doc = r.doc("state", r#"{"version": 1, "sysctl": {"values": {"vm.swappiness": 10, "vm.overcommit_memory": 2}}}"#);
        let what = format!("{special:?} at /proc/sys/vm/overcommit_memory");
        for (cmd, swappiness) in [("plan", "drift"), ("apply", "changed")] {
            let out = run(&r, &[cmd, &doc], &what);
            assert_eq!(out.code, 6, "{what}: {cmd}: {}{}", out.stdout, out.stderr);
            let res = out.resource("sysctl/vm.overcommit_memory");
            assert_eq!(res["status"], "failed", "{what}: {cmd}: {res}");
            let msg = res["message"].as_str().unwrap();
            assert!(msg.contains("proc/sys/vm/overcommit_memory") && msg.contains(special.named()), "{what}: {cmd}: {msg}");
            assert_eq!(out.resource("sysctl/vm.swappiness")["status"], swappiness, "{what}: {cmd}");
        }
        special.still_there(&key);
    }
}

/// A cgroup v2 fake root with `hostguard/web1` holding memory and pids.
fn cgroup_host() -> FakeRoot {
    let r = host();
    r.write("/sys/fs/cgroup/cgroup.controllers", "cpu memory pids\n");
    r.write("/sys/fs/cgroup/cgroup.subtree_control", "memory pids\n");
    r.write("/sys/fs/cgroup/hostguard/cgroup.controllers", "memory pids\n");
    r.write("/sys/fs/cgroup/hostguard/cgroup.subtree_control", "memory pids\n");
    r.write("/sys/fs/cgroup/hostguard/web1/cgroup.controllers", "memory pids\n");
    r.write("/sys/fs/cgroup/hostguard/web1/memory.max", "max\n");
    r.write("/sys/fs/cgroup/hostguard/web1/pids.max", "max\n");
    r
}

const CGROUP_DOC: &str = r#"{"version": 1, "cgroups": {"groups": {"hostguard/web1": {"memory_limit": "128M", "pids_max": 64}}}}"#;

/// Issue 14: a special file among the cgroup control files stopped the run with exit 1. The
/// settings it is read for are `failed`, naming the path and what it is; the others converge.
#[test]
fn a_special_file_in_cgroup_control_files_is_failed_not_exit_1() {
    // (the file, the settings it fails)
    let cases = [
        ("/sys/fs/cgroup/hostguard/web1/pids.max", &["pids_max"][..]),
        ("/sys/fs/cgroup/hostguard/web1/cgroup.controllers", &["memory_limit", "pids_max"][..]),
        ("/sys/fs/cgroup/cgroup.controllers", &["memory_limit", "pids_max"][..]),
    ];
    for special in ALL {
        for (file, failing) in cases {
            let r = cgroup_host();
            special.plant(&r.host_path(file));
            let doc = r.doc("state", CGROUP_DOC);
            let what = format!("{special:?} at {file}");
            let some_converge = failing.len() < 2;
            for cmd in ["plan", "apply"] {
                let out = run(&r, &[cmd, &doc], &what);
                assert_eq!(out.code, if some_converge { 6 } else { 4 }, "{what}: {cmd}: {}{}", out.stdout, out.stderr);
                for setting in ["memory_limit", "pids_max"] {
                    let res = out.resource(&format!("cgroup/hostguard/web1/{setting}"));
                    if failing.contains(&setting) {
                        assert_eq!(res["status"], "failed", "{what}: {cmd}: {res}");
                        let msg = res["message"].as_str().unwrap();
                        assert!(msg.contains(file.trim_start_matches('/')) && msg.contains(special.named()), "{what}: {cmd}: {msg}");
                    } else {
                        assert_eq!(res["status"], if cmd == "plan" { "drift" } else { "changed" }, "{what}: {cmd}: {res}");
                    }
                }
            }
            special.still_there(&r.host_path(file));
            if some_converge {
                assert_eq!(r.read("/sys/fs/cgroup/hostguard/web1/memory.max").trim(), (128u64 << 20).to_string(), "{what}");
            }
        }
    }
}
