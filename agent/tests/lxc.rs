//! The `lxc` section through the built binary, on a temp `--root` holding container configs
//! (real containers are exercised by tests/system/lxc): exit codes, reports, files on disk.

use crate::util;

use util::{run_with, FakeRoot};

const BUSYBOX: &str = include_str!("golden/lxc/roundtrip/busybox.conf");
const LEGACY: &str = include_str!("golden/lxc/roundtrip/legacy-lxc20.conf");
const HAND_EDITED: &str = include_str!("golden/lxc/roundtrip/hand-edited.conf");

fn root_with(containers: &[(&str, &str)]) -> FakeRoot {
    let r = FakeRoot::new();
    for (name, config) in containers {
        r.write(&format!("/var/lib/lxc/{name}/config"), config);
        std::fs::create_dir_all(r.host_path(&format!("/var/lib/lxc/{name}/rootfs"))).unwrap();
    }
    r
}

fn run(r: &FakeRoot, cmd: &str, doc: &str) -> util::Run {
    run_with(&[], &[cmd, "--format", "json", "--root", &r.arg(), "-"], Some(doc.as_bytes()), &[])
}

fn doc(dialect: &str, containers: &str) -> String {
    format!(r#"{{"version": 1, "lxc": {{"dialect": "{dialect}", "containers": {containers}}}}}"#)
}

/// A container's limits are the `cgroups` section's `Limits`: every spelling is accepted by both
/// sections or refused by both with the same reason (`"cpu_shares": "512"` used to be valid
/// under `cgroups` and refused under `lxc`).
#[test]
fn a_limit_means_the_same_in_the_lxc_and_cgroups_sections() {
    let cases = [
        (r#"{"cpu_shares": "512"}"#, 0),
        (r#"{"cpu_shares": 512}"#, 0),
        (r#"{"memory_limit": "256M", "memory_swap_limit": "512M"}"#, 0),
        (r#"{"memory_limit": 268435456}"#, 0),
        (r#"{"memory_swap_limit": "max"}"#, 0),
        (r#"{"memory_limit": "max", "cpu_shares": "2"}"#, 0),
        (r#"{"cpu_shares": 1}"#, 1),
        (r#"{"cpu_shares": "262145"}"#, 1),
        (r#"{"cpu_shares": "0x200"}"#, 1),
        (r#"{"memory_limit": "12Q"}"#, 1),
        (r#"{"memory_limit": -5}"#, 1),
        (r#"{"memory_limit": true}"#, 1),
        (r#"{"memory_swap_limit": "1G"}"#, 1),
        (r#"{"memory_limit": "512M", "memory_swap_limit": "256M"}"#, 1),
    ];
    let validate = |section: &str, limits: &str| {
        let doc = match section {
            "cgroups" => format!(r#"{{"version": 1, "cgroups": {{"groups": {{"g": {limits}}}}}}}"#),
            _ => format!(r#"{{"version": 1, "lxc": {{"containers": {{"c1": {limits}}}}}}}"#),
        };
        let run = run_with(&[], &["validate", "-"], Some(doc.as_bytes()), &[]);
        // The reasons without the path, which names the section.
        let prefix = if section == "cgroups" { "  cgroups.groups[\"g\"]." } else { "  lxc.containers[\"c1\"]." };
        let reasons: Vec<String> = run.stderr.lines().filter_map(|l| l.strip_prefix(prefix)).map(str::to_string).collect();
        (run.code, reasons)
    };
    for (limits, code) in cases {
        let (cg_code, cg) = validate("cgroups", limits);
        let (lxc_code, lxc) = validate("lxc", limits);
        assert_eq!((cg_code, lxc_code), (code, code), "{limits}: cgroups {cg:?}, lxc {lxc:?}");
        assert_eq!(lxc, cg, "{limits}: the lxc section's reasons differ from the cgroups section's");
        assert_eq!(cg.is_empty(), code == 0, "{limits}: {cg:?}");
    }
}

#[test]
fn apply_converges_then_a_second_apply_changes_nothing() {
    let r = root_with(&[("web1", BUSYBOX)]);
    let d = doc(
        "modern",
        r#"{"web1": {"memory_limit": "256M", "memory_swap_limit": "512M", "cpu_shares": 512,
                     "network": [{"type": "empty"}], "cap_drop": ["sys_module", "sys_rawio"],
                     "config": {"lxc.start.auto": "1"}}}"#,
    );
    let plan = run(&r, "plan", &d);
    plan.expect(2);
    assert_eq!(plan.status("lxc/web1"), "drift");
    assert_eq!(r.read("/var/lib/lxc/web1/config"), BUSYBOX, "plan wrote");
    run(&r, "apply", &d).expect(2);
    let now = r.read("/var/lib/lxc/web1/config");
    for line in ["lxc.cgroup.memory.limit_in_bytes = 256M", "lxc.cgroup.memory.memsw.limit_in_bytes = 512M",
                 "lxc.cgroup.cpu.shares = 512", "lxc.net.0.type = empty", "lxc.cap.drop = sys_module sys_rawio",
                 "lxc.start.auto = 1",
                 // the operator's own lines and comments stay
                 "# Uncomment the following line to support nesting containers:", "lxc.mount.entry = /lib lib none ro,bind 0 0",
                 "lxc.uts.name = \"web1\""] {
        assert!(now.lines().any(|l| l == line), "missing {line:?} in:\n{now}");
    }
    assert!(!now.contains("lxc.net.0.link"), "{now}");
    let again = run(&r, "apply", &d);
    again.expect(0);
    assert_eq!(again.status("lxc/web1"), "in_sync");
    assert_eq!(r.read("/var/lib/lxc/web1/config"), now);
}

#[test]
fn a_config_that_needs_nothing_is_not_rewritten() {
    let r = root_with(&[("web3", HAND_EDITED)]);
    let d = doc("modern", r#"{"web3": {"memory_limit": "1G", "cpu_shares": 1024, "cap_drop": ["mac_admin", "mac_override", "sys_module"]}}"#);
    let before = r.snapshot();
    run(&r, "apply", &d).expect(0);
    assert_eq!(r.snapshot(), before);
}

#[test]
fn a_missing_container_is_failed_and_says_to_create_it() {
    let r = root_with(&[]);
    let d = doc("modern", r#"{"ghost": {"memory_limit": "256M", "live": true}}"#);
    let plan = run(&r, "plan", &d);
    // Nothing but resources that cannot converge: exit 4, as for a sysctl key the kernel lacks.
    plan.expect(4);
    let res = plan.resource("lxc/ghost");
    assert_eq!(res["status"], "failed");
    assert!(res["message"].as_str().unwrap().contains("lxc-create -n ghost"), "{res}");
    assert_eq!(plan.status("lxc-live/ghost"), "failed");
    run(&r, "apply", &d).expect(4);
    assert!(!r.host_path("/var/lib/lxc/ghost").exists(), "apply created the container directory");
}

#[test]
fn legacy_keys_are_migrated_with_a_backup_on_modern_lxc() {
    let r = root_with(&[("old1", LEGACY)]);
    let d = doc("modern", r#"{"old1": {"memory_limit": "512M"}}"#);
    let plan = run(&r, "plan", &d);
    plan.expect(2);
    assert!(plan.resource("lxc/old1")["message"].as_str().unwrap().contains("legacy keys"));
    run(&r, "apply", &d).expect(2);
    let now = r.read("/var/lib/lxc/old1/config");
    assert!(now.contains("lxc.net.0.ipv4.address = 10.0.3.50/24") && now.contains("lxc.uts.name = old1"), "{now}");
    assert!(!now.lines().any(|l| l.starts_with("lxc.network") || l.starts_with("lxc.utsname")), "{now}");
    assert_eq!(r.read("/var/lib/lxc/old1/config.backup"), LEGACY);
    run(&r, "apply", &d).expect(0);
}

#[test]
fn legacy_dialect_keeps_and_writes_legacy_keys() {
    let r = root_with(&[("old1", LEGACY)]);
    let d = doc("legacy", r#"{"old1": {"memory_limit": "512M", "idmap": [{"type": "u", "container": 0, "host": 100000, "count": 65536},
                                                                      {"type": "g", "container": 0, "host": 100000, "count": 65536}]}}"#);
    run(&r, "apply", &d).expect(0);
    assert_eq!(r.read("/var/lib/lxc/old1/config"), LEGACY);
}

#[test]
fn injection_attempts_exit_1_and_touch_nothing() {
    let r = root_with(&[("web1", BUSYBOX)]);
    let before = r.snapshot();
    for bad in [
        r#"{"web1": {"config": {"lxc.start.auto": "1\nlxc.cgroup.devices.allow = a"}}}"#,
        r#"{"web1": {"network": [{"type": "veth", "link": "br0\nlxc.include = /tmp/evil"}]}}"#,
        r#"{"../web1": {"memory_limit": "1G"}}"#,
        r#"{"../../etc": {"memory_limit": "1G"}}"#,
        r#"{"web1": {"config": {"lxc.start.auto\n": "1"}}}"#,
        r#"{"web1": {"cap_drop": ["sys_time\n"]}}"#,
    ] {
        for cmd in ["validate", "plan", "apply"] {
            let out = run(&r, cmd, &doc("modern", bad));
            assert_eq!(out.code, 1, "{cmd} {bad}: {}\n{}", out.stdout, out.stderr);
            assert!(out.stderr.contains("lxc.containers["), "{}", out.stderr);
        }
    }
    assert_eq!(r.snapshot(), before);
}

#[test]
fn swap_limit_without_swap_accounting_is_failed_not_written() {
    let r = root_with(&[("web1", BUSYBOX)]);
    r.write("/sys/fs/cgroup/memory/memory.limit_in_bytes", "9223372036854771712\n");
    let d = doc("modern", r#"{"web1": {"memory_limit": "256M", "memory_swap_limit": "512M"}}"#);
    let out = run(&r, "apply", &d);
    out.expect(4);
    assert!(out.resource("lxc/web1")["message"].as_str().unwrap().contains("swap accounting is off"), "{}", out.stdout);
    let now = r.read("/var/lib/lxc/web1/config");
    assert!(now.contains("lxc.cgroup.memory.limit_in_bytes = 256M") && !now.contains("memsw"), "{now}");
}

#[test]
fn a_cgroup_v2_host_gets_cgroup2_keys_and_translated_v1_lines() {
    let r = root_with(&[("web3", HAND_EDITED)]);
    r.write("/sys/fs/cgroup/cgroup.controllers", "cpu memory pids\n");
    let d = doc("modern", r#"{"web3": {"memory_limit": "512M", "memory_swap_limit": "768M", "cpu_shares": 2048}}"#);
    run(&r, "apply", &d).expect(2);
    let now = r.read("/var/lib/lxc/web3/config");
    for line in ["lxc.cgroup2.memory.max = 512M", "lxc.cgroup2.memory.swap.max = 256M", "lxc.cgroup2.cpu.weight = 174"] {
        assert!(now.lines().any(|l| l == line), "missing {line:?} in:\n{now}");
    }
    assert!(!now.contains("lxc.cgroup.memory") && !now.contains("lxc.cgroup.cpu"), "{now}");
    run(&r, "apply", &d).expect(0);
}

#[test]
fn config_keys_of_the_wrong_cgroup_version_are_failed_not_written() {
    let r = root_with(&[("web1", BUSYBOX)]);
    let d = doc("modern", r#"{"web1": {"config": {"lxc.cgroup2.memory.high": "100M", "lxc.start.auto": "1"}}}"#);
    let out = run(&r, "apply", &d);
    out.expect(4);
    let now = r.read("/var/lib/lxc/web1/config");
    assert!(now.contains("lxc.start.auto = 1") && !now.contains("cgroup2"), "{now}");
}

#[test]
fn show_prints_managed_settings_that_apply_takes_back_unchanged() {
    let r = root_with(&[("old1", LEGACY), ("web3", HAND_EDITED)]);
    let out = run_with(&[], &["show", "--root", &r.arg(), "--sysctl", "none.such", "--lxcpath", "/var/lib/lxc"], None, &[]);
    out.expect(0);
    let shown = out.json();
    let web3 = &shown["lxc"]["containers"]["web3"];
    assert_eq!(web3["memory_limit"], "1G");
    assert_eq!(web3["cpu_shares"], 1024);
    assert_eq!(web3["cap_drop"], serde_json::json!(["mac_admin", "mac_override", "sys_module"]));
    assert_eq!(web3["network"][0]["ipv4.address"], serde_json::json!(["10.20.0.13/24", "10.20.0.14/24"]));
    assert_eq!(shown["lxc"]["containers"]["old1"]["idmap"][1]["type"], "g");
    // Only the lxc part: the rest of show depends on what this test root holds.
    let mut d = serde_json::json!({ "version": 1, "lxc": shown["lxc"].clone() });
    d["lxc"]["dialect"] = "legacy".into();
    d["lxc"]["containers"].as_object_mut().unwrap().remove("web3");
    let d2 = serde_json::json!({ "version": 1, "lxc": { "dialect": "modern", "containers": { "web3": web3.clone() } } });
    let before = r.snapshot();
    run(&r, "apply", &d.to_string()).expect(0);
    run(&r, "apply", &d2.to_string()).expect(0);
    assert_eq!(r.snapshot(), before);
}

#[test]
fn cap_drop_beside_an_operators_cap_keep_is_failed() {
    let config = format!("{BUSYBOX}lxc.cap.keep = sys_admin\n");
    let r = root_with(&[("web1", &config)]);
    let out = run(&r, "plan", &doc("modern", r#"{"web1": {"cap_drop": ["sys_time"]}}"#));
    out.expect(4);
    let res = out.resource("lxc/web1");
    assert_eq!(res["status"], "failed");
    assert!(res["message"].as_str().unwrap().contains("lxc.cap.keep"), "{res}");
    run(&r, "apply", &doc("modern", r#"{"web1": {"cap_drop": ["sys_time"]}}"#)).expect(4);
    assert_eq!(r.read("/var/lib/lxc/web1/config"), config, "cap_drop was written beside lxc.cap.keep");
}
