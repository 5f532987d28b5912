//! Real cgroup v1 on this machine: every test makes its own groups under the v1 memory, cpu and
//! pids hierarchies, runs the hostguard binary against them, reads the kernel's files, and
//! removes its groups afterwards, even when it fails (a Drop guard).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::time::{Duration, Instant};

const MOUNT: &str = "/sys/fs/cgroup";
const HIERARCHIES: [&str; 3] = ["memory", "cpu", "pids"];

/// A test's own top group, `hostguard-test-<name>-<pid>`, removed with everything below it.
struct Sandbox {
    top: String,
    children: Vec<Child>,
    dir: tempfile::TempDir,
}

impl Sandbox {
    fn new(name: &str) -> Sandbox {
        assert_eq!(unsafe { libc::geteuid() }, 0, "the cgroup v1 tests write /sys/fs/cgroup: run them as root");
        for h in HIERARCHIES {
            assert!(
                Path::new(MOUNT).join(h).join("cgroup.procs").exists(),
                "this host has no cgroup v1 {h} hierarchy at {MOUNT}/{h}: these tests need a v1 (or hybrid) host"
            );
        }
        let top = format!("hostguard-test-{name}-{}", std::process::id());
        let sb = Sandbox { top, children: Vec::new(), dir: tempfile::tempdir().unwrap() };
        sb.cleanup();
        sb
    }

    fn group(&self, rel: &str) -> String {
        format!("{}/{rel}", self.top)
    }

    fn file(&self, hierarchy: &str, rel: &str, file: &str) -> PathBuf {
        Path::new(MOUNT).join(hierarchy).join(self.group(rel)).join(file)
    }

    fn read(&self, hierarchy: &str, rel: &str, file: &str) -> String {
        let p = self.file(hierarchy, rel, file);
        fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display())).trim().to_string()
    }

    fn exists(&self, hierarchy: &str) -> bool {
        Path::new(MOUNT).join(hierarchy).join(&self.top).exists()
    }

    fn hostguard(&self, args: &[&str], doc: &serde_json::Value) -> (i32, serde_json::Value, String) {
        let path = self.dir.path().join("state.json");
        fs::write(&path, doc.to_string()).unwrap();
        let out = run(args.iter().copied().chain(["--format", "json", path.to_str().unwrap()]));
        let code = out.status.code().expect("hostguard was killed");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let json = serde_json::from_str(&stdout).unwrap_or(serde_json::Value::Null);
        (code, json, String::from_utf8_lossy(&out.stderr).into_owned())
    }

    fn cleanup(&self) {
        for h in HIERARCHIES {
            let top = Path::new(MOUNT).join(h).join(&self.top);
            remove_tree(&top);
        }
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        self.cleanup();
    }
}

/// rmdir deepest first: cgroup directories only go away empty of groups and tasks.
fn remove_tree(dir: &Path) {
    if !dir.is_dir() {
        return;
    }
    if let Ok(entries) = fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                remove_tree(&e.path());
            }
        }
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while let Err(e) = fs::remove_dir(dir) {
        if Instant::now() > deadline {
            eprintln!("could not remove {}: {e}", dir.display());
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn run<'a>(args: impl IntoIterator<Item = &'a str>) -> Output {
    Command::new(env!("CARGO_BIN_EXE_hostguard")).args(args).output().expect("run hostguard")
}

fn doc(groups: serde_json::Value) -> serde_json::Value {
    serde_json::json!({ "version": 1, "cgroups": { "version": "auto", "groups": groups } })
}

fn status_of<'a>(report: &'a serde_json::Value, id: &str) -> &'a serde_json::Value {
    report["resources"]
        .as_array()
        .and_then(|rs| rs.iter().find(|r| r["id"] == id))
        .unwrap_or_else(|| panic!("no resource {id} in {report:#}"))
}

#[test]
fn converges_memory_swap_cpu_and_pids_then_reports_in_sync() {
    let sb = Sandbox::new("converge");
    let g = sb.group("web1");
    let d = doc(serde_json::json!({ &g: {
        "memory_limit": "64M", "memory_swap_limit": "128M", "cpu_shares": 512, "pids_max": 50 } }));
    let (code, report, err) = sb.hostguard(&["plan"], &d);
    assert_eq!(code, 2, "plan of a missing group is drift: {report:#} {err}");
    assert!(!sb.exists("memory"), "plan created a group");
    let (code, report, err) = sb.hostguard(&["apply"], &d);
    assert_eq!(code, 2, "{report:#} {err}");
    assert_eq!(sb.read("memory", "web1", "memory.limit_in_bytes"), (64u64 << 20).to_string());
    assert_eq!(sb.read("memory", "web1", "memory.memsw.limit_in_bytes"), (128u64 << 20).to_string());
    assert_eq!(sb.read("cpu", "web1", "cpu.shares"), "512");
    assert_eq!(sb.read("pids", "web1", "pids.max"), "50");
    let (code, report, _) = sb.hostguard(&["apply"], &d);
    assert_eq!(code, 0, "a second apply changes nothing: {report:#}");
    assert_eq!(report["summary"]["in_sync"], 4);
    let (code, _, _) = sb.hostguard(&["plan"], &d);
    assert_eq!(code, 0);
}

#[test]
fn lowers_and_raises_memory_and_memsw_together_in_the_kernels_order() {
    let sb = Sandbox::new("order");
    let g = sb.group("db");
    let set = |m: &str, s: &str| doc(serde_json::json!({ &g: { "memory_limit": m, "memory_swap_limit": s } }));
    let (code, report, _) = sb.hostguard(&["apply"], &set("64M", "128M"));
    assert_eq!(code, 2, "{report:#}");
    // Lowering both below the current memory limit: memory must go first.
    let (code, report, _) = sb.hostguard(&["apply"], &set("16M", "32M"));
    assert_eq!(code, 2, "lowering: {report:#}");
    assert_eq!(sb.read("memory", "db", "memory.limit_in_bytes"), (16u64 << 20).to_string());
    assert_eq!(sb.read("memory", "db", "memory.memsw.limit_in_bytes"), (32u64 << 20).to_string());
    // Raising both above the current memsw limit: memsw must go first.
    let (code, report, _) = sb.hostguard(&["apply"], &set("256M", "512M"));
    assert_eq!(code, 2, "raising: {report:#}");
    assert_eq!(sb.read("memory", "db", "memory.limit_in_bytes"), (256u64 << 20).to_string());
    assert_eq!(sb.read("memory", "db", "memory.memsw.limit_in_bytes"), (512u64 << 20).to_string());
    let (code, report, _) = sb.hostguard(&["apply"], &set("256M", "max"));
    assert_eq!(code, 2, "{report:#}");
    assert_eq!(status_of(&report, &format!("cgroup/{g}/memory_swap_limit"))["status"], "changed");
    let (code, _, _) = sb.hostguard(&["apply"], &set("256M", "max"));
    assert_eq!(code, 0);
}

#[test]
fn a_limit_of_1000000_bytes_is_page_rounded_and_then_in_sync() {
    let sb = Sandbox::new("pages");
    let g = sb.group("small");
    let d = doc(serde_json::json!({ &g: { "memory_limit": 1000000 } }));
    let (code, report, _) = sb.hostguard(&["apply"], &d);
    assert_eq!(code, 2, "{report:#}");
    let held: u64 = sb.read("memory", "small", "memory.limit_in_bytes").parse().unwrap();
    assert_eq!(held, 1_000_000 - 1_000_000 % 4096, "the kernel keeps whole pages");
    let (code, report, _) = sb.hostguard(&["apply"], &d);
    assert_eq!(code, 0, "a rounded limit is not failed forever: {report:#}");
}

#[test]
fn lowering_memory_below_a_running_process_usage_fails_with_ebusy_and_says_what_to_do() {
    let mut sb = Sandbox::new("busy");
    let g = sb.group("hog");
    let d = doc(serde_json::json!({ &g: { "memory_limit": "256M", "memory_swap_limit": "256M" } }));
    assert_eq!(sb.hostguard(&["apply"], &d).0, 2);
    let procs = sb.file("memory", "hog", "cgroup.procs");
    // The process joins the group first, then touches 64 MiB of anonymous memory: with no swap
    // the kernel cannot reclaim it.
    let child = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "echo $$ > {} && exec python3 -c \"import time; x = b'a' * (64 << 20); time.sleep(120)\"",
            procs.display()
        ))
        .spawn()
        .unwrap();
    sb.children.push(child);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let usage: u64 = sb.read("memory", "hog", "memory.usage_in_bytes").parse().unwrap();
        if usage > 60 << 20 {
            break;
        }
        assert!(Instant::now() < deadline, "the memory hog did not reach 60 MiB (usage {usage})");
        std::thread::sleep(Duration::from_millis(100));
    }
    let low = doc(serde_json::json!({ &g: { "memory_limit": "16M", "memory_swap_limit": "16M" } }));
    let (code, report, _) = sb.hostguard(&["apply"], &low);
    assert_eq!(code, 4, "{report:#}");
    let mem = status_of(&report, &format!("cgroup/{g}/memory_limit"));
    assert_eq!(mem["status"], "failed");
    let msg = mem["message"].as_str().unwrap();
    assert!(msg.contains("EBUSY") && msg.contains("stop or shrink"), "{msg}");
    assert_eq!(sb.read("memory", "hog", "memory.limit_in_bytes"), (256u64 << 20).to_string(), "the old limit stays");
}

#[test]
fn bad_input_exits_1_and_touches_nothing() {
    let sb = Sandbox::new("bad");
    let g = sb.group("x");
    for bad in [
        serde_json::json!({ &g: { "memory_limit": "12Q" } }),
        serde_json::json!({ &g: { "memory_limit": -1 } }),
        serde_json::json!({ &g: { "cpu_shares": 1 } }),
        serde_json::json!({ &g: { "cpu_shares": 262145 } }),
        serde_json::json!({ &g: { "pids_max": -5 } }),
        serde_json::json!({ format!("{}/../escape", sb.top): { "pids_max": 5 } }),
        serde_json::json!({ &g: { "memory_limit": "1G", "memory_swap_limit": "512M" } }),
    ] {
        let (code, _, err) = sb.hostguard(&["apply"], &doc(bad.clone()));
        assert_eq!(code, 1, "{bad}: {err}");
        assert!(err.contains("cgroups.groups"), "the error names its path: {err}");
        for h in HIERARCHIES {
            assert!(!sb.exists(h), "{bad} touched {h}");
        }
    }
}

#[test]
fn show_prints_groups_under_the_prefix_as_a_document_that_applies_cleanly() {
    let sb = Sandbox::new("show");
    let g = sb.group("web1");
    let d = doc(serde_json::json!({ &g: {
        "memory_limit": "32M", "memory_swap_limit": "64M", "cpu_shares": 256, "pids_max": 20 } }));
    assert_eq!(sb.hostguard(&["apply"], &d).0, 2);
    let out = run(["show", "--format", "json", "--sysctl", "vm.swappiness", "--cgroup", &sb.top]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let shown: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let web1 = &shown["cgroups"]["groups"][&g];
    assert_eq!(web1["memory_limit"], "32M", "{shown:#}");
    assert_eq!(web1["memory_swap_limit"], "64M");
    assert_eq!(web1["cpu_shares"], 256);
    assert_eq!(web1["pids_max"], 20);
    let back = serde_json::json!({ "version": 1, "cgroups": shown["cgroups"].clone() });
    assert_eq!(sb.hostguard(&["plan"], &back).0, 0, "the shown document is in sync");
}

#[test]
fn forcing_v2_on_this_hybrid_host_fails_every_limit_and_touches_nothing() {
    let sb = Sandbox::new("hybrid");
    assert!(
        Path::new(MOUNT).join("unified/cgroup.controllers").exists(),
        "this test expects a hybrid host (an empty cgroup2 mount at {MOUNT}/unified)"
    );
    let g = sb.group("web1");
    let d = serde_json::json!({ "version": 1, "cgroups": { "version": "v2", "groups": {
        &g: { "memory_limit": "64M", "cpu_shares": 512 } } } });
    let (code, report, err) = sb.hostguard(&["apply"], &d);
    assert_eq!(code, 4, "{report:#} {err}");
    for r in report["resources"].as_array().unwrap() {
        assert_eq!(r["status"], "failed");
        let msg = r["message"].as_str().unwrap();
        assert!(msg.contains("has no") && msg.contains("cgroups.version"), "{msg}");
    }
    assert!(!Path::new(MOUNT).join("unified").join(&sb.top).exists(), "a group was made in the empty v2 mount");
    for h in HIERARCHIES {
        assert!(!sb.exists(h), "forcing v2 touched the v1 {h} hierarchy");
    }
    // The same document with "v1" converges.
    let v1 = serde_json::json!({ "version": 1, "cgroups": { "version": "v1", "groups": {
        &g: { "memory_limit": "64M", "cpu_shares": 512 } } } });
    assert_eq!(sb.hostguard(&["apply"], &v1).0, 2);
}
