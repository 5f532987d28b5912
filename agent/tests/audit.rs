//! `hostguard audit` end to end: for each check, a host that has the problem shows the finding,
//! the emitted state closes it (or, where no document can, the manual remedy does), and a clean
//! host has no finding. Every run is inside a private network namespace, so the firewall the
//! audit reads is the test's own and never the machine's.

use crate::util;

use std::process::Command;

use util::{FakeRoot, Netns, Run};

/// A container config that passes every check on a cgroup v1 host.
const HARDENED: &str = "\
lxc.uts.name = web1
lxc.idmap = u 0 100000 65536
lxc.idmap = g 0 100000 65536
lxc.cap.drop = mac_admin mac_override sys_module sys_rawio sys_time
lxc.apparmor.profile = generated
lxc.seccomp.profile = /usr/share/lxc/config/common.seccomp
lxc.mount.auto = proc:mixed sys:mixed cgroup:mixed
lxc.cgroup.devices.deny = a
lxc.cgroup.devices.allow = c 1:3 rwm
lxc.cgroup.memory.limit_in_bytes = 1G
lxc.cgroup.memory.memsw.limit_in_bytes = 2G
lxc.cgroup.cpu.shares = 512
lxc.cgroup.pids.max = 1024
";

struct Host {
    root: FakeRoot,
    ns: Netns,
}

impl Host {
    /// A cgroup v1 container host with nothing to find: one hardened container, swappiness 10,
    /// forwarding off, no bridge, an empty firewall.
    fn clean(tag: &str) -> Host {
        let root = FakeRoot::new();
        root.sysctl("vm.swappiness", "10");
        root.sysctl("net.ipv4.ip_forward", "0");
        root.write("/proc/meminfo", "MemTotal:        8388608 kB\nSwapTotal:       1048576 kB\n");
        root.write("/usr/share/lxc/config/common.seccomp", "2\ndenylist\nkexec_load errno 1\n");
        root.write("/var/lib/lxc/web1/config", HARDENED);
        // newuidmap installed (so LXC maps ids through it) and root delegated ids 100000-1099999.
        root.write("/usr/bin/newuidmap", "");
        root.write("/etc/subuid", "root:100000:1000000\n");
        root.write("/etc/subgid", "root:100000:1000000\n");
        Host { root, ns: Netns::new(tag) }
    }

    fn config(&self, name: &str, text: &str) {
        self.root.write(&format!("/var/lib/lxc/{name}/config"), text);
    }

    fn run(&self, args: &[&str]) -> Run {
        let mut a: Vec<&str> = args.to_vec();
        let root = self.root.arg();
        a.extend(["--root", &root]);
        self.ns.hostguard(&a)
    }

    fn audit(&self) -> Run {
        self.run(&["audit", "--format", "json"])
    }

    /// The findings with this id.
    fn findings(&self, id: &str) -> Vec<serde_json::Value> {
        let a = self.audit();
        a.json()["findings"].as_array().unwrap().iter().filter(|f| f["id"] == id).cloned().collect()
    }

    fn finding(&self, id: &str) -> serde_json::Value {
        let all = self.audit();
        let f = self.findings(id);
        assert_eq!(f.len(), 1, "want one {id} finding in\n{}", all.stdout);
        f[0].clone()
    }

    /// `audit --emit-state > fix.json && apply fix.json`, then the second audit is clean.
    #[track_caller]
    fn fix_and_expect_clean(&self) -> Run {
        // Exit 0: the document was printed, so `&& hostguard apply fix.json` runs (SPEC section 8).
        let emitted = self.run(&["audit", "--emit-state"]);
        assert_eq!(emitted.code, 0, "{}\n{}", emitted.stdout, emitted.stderr);
        let fix = self.root.doc("fix", &emitted.stdout);
        util::hostguard(&["validate", &fix]).expect(0);
        let applied = self.run(&["apply", "--format", "json", &fix]);
        applied.expect(2);
        self.expect_clean();
        applied
    }

    #[track_caller]
    fn expect_clean(&self) {
        let again = self.run(&["audit", "--format", "json", "--fail-on", "low"]);
        assert_eq!(again.code, 0, "second audit is not clean:\n{}\n{}", again.stdout, again.stderr);
        assert_eq!(again.json()["findings"].as_array().unwrap().len(), 0, "{}", again.stdout);
    }
}

#[test]
fn a_clean_host_has_no_finding() {
    let h = Host::clean("aud-clean");
    let a = h.run(&["audit", "--format", "json", "--fail-on", "low"]);
    a.expect(0);
    assert_eq!(a.json()["findings"].as_array().unwrap().len(), 0, "{}", a.stdout);
}

#[test]
fn swappiness_finding_is_closed_by_the_emitted_state() {
    let h = Host::clean("aud-swap");
    h.root.sysctl("vm.swappiness", "60");
    let f = h.finding("sysctl.swappiness");
    assert_eq!(f["severity"], "low");
    assert_eq!(f["evidence"], "vm.swappiness = 60");
    assert_eq!(f["fix"]["sysctl"]["values"]["vm.swappiness"], 10);
    h.fix_and_expect_clean();
    assert_eq!(h.root.sysctl_value("vm.swappiness"), "10");
    // Persisted, so the fix survives a reboot.
    assert!(h.root.read("/etc/sysctl.d/60-hostguard.conf").contains("\nvm.swappiness = 10\n"));
}

#[test]
fn fail_on_high_ignores_low_findings() {
    let h = Host::clean("aud-failon");
    h.root.sysctl("vm.swappiness", "60");
    h.run(&["audit", "--format", "json", "--fail-on", "high"]).expect(0);
    h.run(&["audit", "--format", "json", "--fail-on", "low"]).expect(2);
}

#[test]
fn a_document_says_whether_it_closes_each_finding() {
    let h = Host::clean("aud-closes");
    h.root.sysctl("vm.swappiness", "60");
    h.config("web1", &HARDENED.replace("lxc.cgroup.pids.max = 1024\n", ""));
    let closes = h.root.doc("closes", r#"{"version": 1, "sysctl": {"values": {"vm.swappiness": 5}}, "lxc": {"containers": {"web1": {"config": {"lxc.cgroup.pids.max": "500"}}}}}"#);
    let keeps = h.root.doc("keeps", r#"{"version": 1, "sysctl": {"persist": "/etc/sysctl.d/70-site.conf", "values": {"vm.swappiness": 30}}, "lxc": {"containers": {"web1": {"config": {"lxc.cgroup.pids.max": "max"}}}}}"#);
    let by_id = |r: &Run, id: &str| r.json()["findings"].as_array().unwrap().iter().find(|f| f["id"] == id).unwrap()["closed_by_state"].clone();
    let a = h.run(&["audit", "--format", "json", &closes]);
    assert_eq!(by_id(&a, "sysctl.swappiness"), true);
    assert_eq!(by_id(&a, "lxc.pids_limit"), true);
    let b = h.run(&["audit", "--format", "json", &keeps]);
    assert_eq!(by_id(&b, "sysctl.swappiness"), false);
    assert_eq!(by_id(&b, "lxc.pids_limit"), false);
    // --emit-state with a document: the fix wins where they disagree, the rest is kept.
    let merged = h.run(&["audit", "--emit-state", &keeps]);
    let m: serde_json::Value = serde_json::from_str(&merged.stdout).unwrap();
    assert_eq!(m["sysctl"]["values"]["vm.swappiness"], 10);
    // The document's own persisted file is kept, not replaced by the fixes' default one.
    assert_eq!(m["sysctl"]["persist"], "/etc/sysctl.d/70-site.conf");
    assert_eq!(m["lxc"]["containers"]["web1"]["config"]["lxc.cgroup.pids.max"], "4096");
    // A finding the document already closes adds no fix: its value stays the document's.
    let merged = h.run(&["audit", "--emit-state", &closes]);
    let m: serde_json::Value = serde_json::from_str(&merged.stdout).unwrap();
    assert_eq!(m["sysctl"]["values"]["vm.swappiness"], 5);
    assert_eq!(m["lxc"]["containers"]["web1"]["config"]["lxc.cgroup.pids.max"], "500");
}

/// One container check: `config` has the problem; the finding appears with `severity`, and the
/// emitted state closes it.
#[track_caller]
fn container_check_is_fixed(tag: &str, id: &str, severity: &str, config: &str) -> Host {
    let h = Host::clean(tag);
    h.config("web1", config);
    let f = h.finding(id);
    assert_eq!(f["severity"], severity, "{f}");
    assert_eq!(f["subject"], "lxc/web1");
    assert!(!f["fix"].is_null(), "{f}");
    assert!(!f["reference"].as_str().unwrap().is_empty());
    h.fix_and_expect_clean();
    h
}

#[test]
fn privileged_container_gets_an_idmap() {
    let h = container_check_is_fixed(
        "aud-priv",
        "lxc.privileged",
        "high",
        &HARDENED.replace("lxc.idmap = u 0 100000 65536\nlxc.idmap = g 0 100000 65536\n", ""),
    );
    let cfg = h.root.read("/var/lib/lxc/web1/config");
    assert!(cfg.contains("lxc.idmap = u 0 100000 65536\nlxc.idmap = g 0 100000 65536\n"), "{cfg}");
}

#[test]
fn privileged_containers_get_ranges_that_do_not_overlap() {
    let h = Host::clean("aud-privs");
    h.config("a", "lxc.uts.name = a\n");
    h.config("b", "lxc.uts.name = b\n");
    let hosts: Vec<u64> = h
        .findings("lxc.privileged")
        .iter()
        .map(|f| f["fix"]["lxc"]["containers"].as_object().unwrap().values().next().unwrap()["idmap"][0]["host"].as_u64().unwrap())
        .collect();
    // web1 already uses 100000-165535.
    assert_eq!(hosts, vec![165536, 231072]);
}

#[test]
fn an_idmap_that_root_is_not_delegated_is_found() {
    let h = Host::clean("aud-subuid");
    h.root.write("/etc/subuid", "root:200000:65536\n");
    let f = h.finding("lxc.idmap_not_delegated");
    assert_eq!(f["severity"], "high");
    assert!(f["evidence"].as_str().unwrap().contains("u 100000-165535"), "{f}");
    assert!(!f["evidence"].as_str().unwrap().contains("g 100000"), "{f}");
    assert!(f["fix"].is_null());
    assert!(f["remedy"].as_str().unwrap().contains("usermod --add-subuids 100000-165535"), "{f}");
    // The remedy, by hand.
    h.root.write("/etc/subuid", "root:100000:65536\n");
    h.expect_clean();
}

#[test]
fn a_privileged_container_is_mapped_into_roots_delegated_ids() {
    let h = Host::clean("aud-subuid2");
    h.root.write("/etc/subuid", "root:100000:65536\nroot:500000:65536\n");
    h.root.write("/etc/subgid", "root:100000:65536\nroot:500000:65536\n");
    h.config("a", "lxc.uts.name = a\n");
    let f = h.findings("lxc.privileged").pop().unwrap();
    assert_eq!(f["fix"]["lxc"]["containers"]["a"]["idmap"][0]["host"], 500000, "{f}");
    // Without a free delegated block the fix still maps, and says what to delegate.
    h.root.write("/etc/subuid", "root:100000:65536\n");
    let f = h.findings("lxc.privileged").pop().unwrap();
    assert!(f["remedy"].as_str().unwrap().contains("usermod --add-subuids 165536-231071"), "{f}");
}

#[test]
fn containers_sharing_host_ids_are_given_their_own() {
    let h = Host::clean("aud-idshare");
    h.config("web2", HARDENED);
    let f = h.finding("lxc.idmap_shared");
    assert_eq!(f["subject"], "lxc/web2");
    assert_eq!(f["severity"], "medium");
    h.fix_and_expect_clean();
    assert!(h.root.read("/var/lib/lxc/web2/config").contains("lxc.idmap = u 0 165536 65536\n"));
    assert!(h.root.read("/var/lib/lxc/web1/config").contains("lxc.idmap = u 0 100000 65536\n"));
}

#[test]
fn missing_capability_drops_are_added() {
    let h = container_check_is_fixed(
        "aud-caps",
        "lxc.cap_drop",
        "medium",
        &HARDENED.replace("lxc.cap.drop = mac_admin mac_override sys_module sys_rawio sys_time", "lxc.cap.drop = sys_module"),
    );
    let cfg = h.root.read("/var/lib/lxc/web1/config");
    assert!(cfg.contains("lxc.cap.drop = mac_admin mac_override sys_module sys_rawio sys_time\n"), "{cfg}");
}

#[test]
fn capability_drops_from_an_include_count() {
    let h = Host::clean("aud-capinc");
    h.root.write("/usr/share/lxc/config/common.conf", "lxc.cap.drop = mac_admin mac_override sys_time sys_module sys_rawio\n");
    h.config(
        "web1",
        &HARDENED.replace("lxc.cap.drop = mac_admin mac_override sys_module sys_rawio sys_time", "lxc.include = /usr/share/lxc/config/common.conf"),
    );
    h.expect_clean();
    // An empty lxc.cap.drop clears what the include dropped, as LXC does.
    h.config("web1", &format!("{}lxc.cap.drop =\n", h.root.read("/var/lib/lxc/web1/config")));
    assert_eq!(h.findings("lxc.cap_drop").len(), 1);
}

#[test]
fn an_include_that_cannot_be_read_is_said_not_checked() {
    let h = Host::clean("aud-inc");
    h.config("web1", &format!("{HARDENED}lxc.include = /usr/share/lxc/config/gone.conf\n"));
    let a = h.audit();
    a.expect(0);
    let skipped = a.json()["skipped"].to_string();
    assert!(skipped.contains("lxc/web1: lxc.include /usr/share/lxc/config/gone.conf could not be read"), "{skipped}");
}

#[test]
fn cap_keep_with_a_dangerous_capability_has_a_manual_remedy() {
    let h = Host::clean("aud-keep");
    let cfg = HARDENED.replace("lxc.cap.drop = mac_admin mac_override sys_module sys_rawio sys_time", "lxc.cap.keep = chown sys_module");
    h.config("web1", &cfg);
    let f = h.finding("lxc.cap_drop");
    assert!(f["fix"].is_null(), "{f}");
    assert!(f["remedy"].as_str().unwrap().contains("lxc.cap.keep"), "{f}");
    h.config("web1", &cfg.replace("lxc.cap.keep = chown sys_module", "lxc.cap.keep = chown"));
    h.expect_clean();
}

#[test]
fn container_without_memory_limit_gets_memory_and_swap_limits() {
    let h = container_check_is_fixed(
        "aud-mem",
        "lxc.memory_limit",
        "medium",
        &HARDENED.replace("lxc.cgroup.memory.limit_in_bytes = 1G\nlxc.cgroup.memory.memsw.limit_in_bytes = 2G\n", ""),
    );
    // Three quarters of 8G for the one container.
    let cfg = h.root.read("/var/lib/lxc/web1/config");
    assert!(cfg.contains("lxc.cgroup.memory.limit_in_bytes = 6G\n"), "{cfg}");
    assert!(cfg.contains("lxc.cgroup.memory.memsw.limit_in_bytes = 12G\n"), "{cfg}");
}

#[test]
fn memory_without_swap_limit_gets_one() {
    let h = container_check_is_fixed(
        "aud-memsw",
        "lxc.memory_swap_limit",
        "medium",
        &HARDENED.replace("lxc.cgroup.memory.memsw.limit_in_bytes = 2G\n", "lxc.cgroup.memory.memsw.limit_in_bytes = -1\n"),
    );
    assert!(h.root.read("/var/lib/lxc/web1/config").contains("lxc.cgroup.memory.memsw.limit_in_bytes = 2G\n"));
}

#[test]
fn a_container_without_cpu_shares_among_others_gets_theirs() {
    let h = Host::clean("aud-cpu");
    h.config("web2", &HARDENED.replace("lxc.cgroup.cpu.shares = 512\n", "").replace("100000", "165536"));
    let f = h.finding("lxc.cpu_shares");
    assert_eq!(f["subject"], "lxc/web2");
    assert_eq!(f["severity"], "low");
    h.fix_and_expect_clean();
    assert!(h.root.read("/var/lib/lxc/web2/config").contains("lxc.cgroup.cpu.shares = 512\n"));
    // No container with a share: nobody is singled out.
    let h = Host::clean("aud-cpu0");
    h.config("web1", &HARDENED.replace("lxc.cgroup.cpu.shares = 512\n", ""));
    h.expect_clean();
}

#[test]
fn container_without_pids_limit_gets_one() {
    container_check_is_fixed("aud-pids", "lxc.pids_limit", "low", &HARDENED.replace("lxc.cgroup.pids.max = 1024\n", ""));
}

#[test]
fn cgroup2_keys_on_a_v1_host_are_translated() {
    let h = container_check_is_fixed(
        "aud-cgv",
        "lxc.cgroup_version_keys",
        "medium",
        &HARDENED.replace("lxc.cgroup.pids.max = 1024\n", "lxc.cgroup2.pids.max = 1024\n"),
    );
    let cfg = h.root.read("/var/lib/lxc/web1/config");
    assert!(cfg.contains("lxc.cgroup.pids.max = 1024\n") && !cfg.contains("cgroup2.pids"), "{cfg}");
}

#[test]
fn both_spellings_of_a_key_are_not_a_finding() {
    // LXC's own templates write device rules for both versions.
    let h = Host::clean("aud-cgboth");
    h.config("web1", &format!("{HARDENED}lxc.cgroup2.devices.deny = a\nlxc.cgroup2.devices.allow = c 1:3 rwm\n"));
    h.expect_clean();
}

#[test]
fn cgroup_v1_keys_on_a_v2_host_are_a_finding() {
    let h = Host::clean("aud-cgv2");
    h.root.write("/sys/fs/cgroup/cgroup.controllers", "cpu memory pids\n");
    let v2 = "lxc.uts.name = web1\nlxc.idmap = u 0 100000 65536\nlxc.idmap = g 0 100000 65536\n\
              lxc.cap.drop = mac_admin mac_override sys_module sys_rawio sys_time\nlxc.apparmor.profile = generated\n\
              lxc.seccomp.profile = /usr/share/lxc/config/common.seccomp\nlxc.cgroup2.memory.max = 1G\n\
              lxc.cgroup2.memory.swap.max = 1G\nlxc.cgroup2.cpu.weight = 59\nlxc.cgroup.pids.max = 1024\n";
    h.config("web1", v2);
    h.finding("lxc.cgroup_version_keys");
    h.fix_and_expect_clean();
    assert!(h.root.read("/var/lib/lxc/web1/config").contains("lxc.cgroup2.pids.max = 1024\n"));
}

#[test]
fn legacy_keys_are_renamed() {
    container_check_is_fixed("aud-legacy", "lxc.legacy_keys", "high", &HARDENED.replace("lxc.uts.name", "lxc.utsname"));
}

#[test]
fn unconfined_apparmor_is_confined() {
    let h = container_check_is_fixed(
        "aud-aa",
        "lxc.apparmor_unconfined",
        "high",
        &HARDENED.replace("lxc.apparmor.profile = generated", "lxc.apparmor.profile = unconfined"),
    );
    assert!(h.root.read("/var/lib/lxc/web1/config").contains("lxc.apparmor.profile = generated\n"));
}

#[test]
fn writable_proc_and_sys_are_made_mixed() {
    container_check_is_fixed(
        "aud-mount",
        "lxc.mount_auto_rw",
        "high",
        &HARDENED.replace("proc:mixed sys:mixed", "proc:rw sys:rw"),
    );
}

#[test]
fn an_unreachable_rw_mount_has_no_fake_fix() {
    // The :rw line is not the last lxc.mount.auto line: the config map can only rewrite the last,
    // so the audit withdraws the fix rather than offer one that does not close the finding.
    let h = Host::clean("aud-mount2");
    h.config("web1", &format!("lxc.mount.auto = proc:rw\n{HARDENED}"));
    let f = h.finding("lxc.mount_auto_rw");
    assert!(f["fix"].is_null(), "{f}");
    assert!(f["remedy"].as_str().unwrap().contains("no state document closes this"), "{f}");
}

#[test]
fn allow_all_devices_needs_a_manual_edit() {
    let h = Host::clean("aud-dev");
    h.config("web1", &format!("{HARDENED}lxc.cgroup.devices.allow = a\n"));
    let f = h.finding("lxc.devices_allow_all");
    assert_eq!(f["severity"], "high");
    assert!(f["fix"].is_null());
    assert!(f["remedy"].as_str().unwrap().contains("remove"), "{f}");
    // --emit-state carries no fragment for it: nothing to apply; it exits 0 (the document was
    // printed) and says on stderr that a finding needs a remedy by hand.
    let emitted = h.run(&["audit", "--emit-state"]);
    assert_eq!(emitted.code, 0);
    assert!(emitted.stderr.contains("1 without a fix need a remedy by hand"), "{}", emitted.stderr);
    assert_eq!(serde_json::from_str::<serde_json::Value>(&emitted.stdout).unwrap(), serde_json::json!({"version": 1}));
    // An explicit --fail-on still gates: the document is printed and the high finding exits 2
    // (the Salt wrapper's `emit_state=True fail_on=high`); nothing to gate without it (above).
    let gated = h.run(&["audit", "--emit-state", "--fail-on", "high"]);
    assert_eq!(gated.code, 2, "{}\n{}", gated.stdout, gated.stderr);
    assert_eq!(serde_json::from_str::<serde_json::Value>(&gated.stdout).unwrap(), serde_json::json!({"version": 1}));
    h.config("web1", HARDENED);
    h.expect_clean();
}

#[test]
fn container_without_seccomp_gets_lxcs_policy() {
    container_check_is_fixed(
        "aud-seccomp",
        "lxc.seccomp",
        "medium",
        &HARDENED.replace("lxc.seccomp.profile = /usr/share/lxc/config/common.seccomp\n", ""),
    );
}

#[test]
fn every_fix_at_once_leaves_only_what_no_document_can_fix() {
    // Many problems in one config and a second container: the merged fixes must not fight
    // (one config map, cap_drop and idmap together), and none may create a finding of its own.
    let h = Host::clean("aud-all");
    h.root.sysctl("vm.swappiness", "60");
    h.config(
        "web1",
        "lxc.utsname = web1\nlxc.cgroup2.memory.max = 256M\nlxc.apparmor.profile = unconfined\n\
         lxc.mount.auto = proc:rw sys:rw\nlxc.cgroup.devices.allow = a\nlxc.cap.drop = sys_module\n",
    );
    h.config("db", &HARDENED.replace("lxc.cgroup.memory.memsw.limit_in_bytes = 2G\n", "").replace("100000", "165536"));
    let ids = |r: &Run| -> Vec<String> { r.json()["findings"].as_array().unwrap().iter().map(|f| format!("{} {}", f["id"], f["subject"])).collect() };
    let before = h.audit();
    assert!(ids(&before).len() >= 12, "{:?}", ids(&before));
    let emitted = h.run(&["audit", "--emit-state"]);
    let fix = h.root.doc("fix", &emitted.stdout);
    h.run(&["apply", "--format", "json", &fix]).expect(2);
    let after = h.audit();
    assert_eq!(ids(&after), vec![r#""lxc.devices_allow_all" "lxc/web1""#.to_string()], "{}", after.stdout);
}

#[test]
fn a_persisted_value_overridden_later_at_boot_is_found() {
    let h = Host::clean("aud-boot");
    h.root.write("/etc/sysctl.d/60-hostguard.conf", "vm.swappiness = 10\n");
    h.root.write("/etc/sysctl.d/90-tuning.conf", "vm.swappiness = 60\n");
    // A vendor default overridden by /etc is how sysctl.d is meant to be used: not a finding.
    h.root.write("/usr/lib/sysctl.d/50-default.conf", "vm.swappiness = 30\nkernel.pid_max = 4194304\n");
    let f = h.finding("sysctl.boot_override");
    assert_eq!(f["subject"], "sysctl/vm.swappiness");
    assert!(f["evidence"].as_str().unwrap().contains("/etc/sysctl.d/90-tuning.conf:1 sets 60"), "{f}");
    assert!(f["fix"].is_null());
    // The remedy: the operator removes the later line.
    h.root.write("/etc/sysctl.d/90-tuning.conf", "# swappiness is set by hostguard\n");
    h.expect_clean();
}

#[test]
fn docker_api_on_tcp_without_tls_and_without_userns_remap_are_found() {
    let h = Host::clean("aud-docker");
    h.root.write("/etc/docker/daemon.json", r#"{"hosts": ["unix:///var/run/docker.sock", "tcp://0.0.0.0:2375"]}"#);
    let tcp = h.finding("docker.tcp_without_tls");
    assert_eq!(tcp["severity"], "high");
    assert!(tcp["evidence"].as_str().unwrap().contains("tcp://0.0.0.0:2375"), "{tcp}");
    assert!(tcp["fix"].is_null());
    let userns = h.finding("docker.userns_remap");
    assert!(userns["remedy"].as_str().unwrap().contains("\"userns-remap\": \"default\""), "{userns}");
    // The remedy, done by hand: hostguard does not manage Docker's config.
    h.root.write(
        "/etc/docker/daemon.json",
        r#"{"hosts": ["unix:///var/run/docker.sock", "tcp://0.0.0.0:2376"], "tlsverify": true, "tlscacert": "/etc/docker/ca.pem",
            "tlscert": "/etc/docker/cert.pem", "tlskey": "/etc/docker/key.pem", "userns-remap": "default"}"#,
    );
    h.expect_clean();
}

/// The busybox template, as LXC itself writes it, in the test's lxcpath under the fake root.
struct RealContainer {
    lxcpath: String,
    name: String,
}

impl RealContainer {
    fn create(h: &Host, name: &str) -> RealContainer {
        let lxcpath = h.root.host_path("/var/lib/lxc").to_string_lossy().into_owned();
        let out = Command::new("lxc-create").args(["-P", &lxcpath, "-n", name, "-t", "busybox"]).output().expect("lxc-create");
        assert!(out.status.success(), "lxc-create failed: {}", String::from_utf8_lossy(&out.stderr));
        RealContainer { lxcpath, name: name.into() }
    }

    /// A config item as LXC itself reads the file.
    fn item(&self, key: &str) -> String {
        let out = Command::new("lxc-info").args(["-P", &self.lxcpath, "-n", &self.name, "-c", key]).output().unwrap();
        assert!(out.status.success(), "lxc-info -c {key}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }
}

impl Drop for RealContainer {
    fn drop(&mut self) {
        let _ = Command::new("lxc-stop").args(["-P", &self.lxcpath, "-n", &self.name, "-k"]).output();
        let _ = Command::new("lxc-destroy").args(["-P", &self.lxcpath, "-n", &self.name, "-f"]).output();
        // LXC can leave the cgroups of a stopped container behind: remove ours, by name only.
        for ctrl in std::fs::read_dir("/sys/fs/cgroup").into_iter().flatten().flatten() {
            for prefix in ["lxc.payload.", "lxc.monitor."] {
                let d = ctrl.path().join(format!("{prefix}{}", self.name));
                if d.is_dir() {
                    let _ = Command::new("find").arg(&d).args(["-depth", "-type", "d", "-exec", "rmdir", "{}", ";"]).output();
                }
            }
        }
    }
}

/// Mirror what the audit reads about the machine's cgroups into the fake root, so the fixes it
/// emits are the ones this machine's LXC can take (swap accounting, cgroup version).
fn mirror_cgroups(h: &Host) {
    for f in ["/sys/fs/cgroup/cgroup.controllers", "/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes"] {
        if std::path::Path::new(f).exists() {
            h.root.write(f, "");
        }
    }
}

#[test]
fn a_real_busybox_container_still_starts_after_the_fixes() {
    // Every fix except the idmap, which needs root's ids delegated in this machine's own
    // /etc/subuid (newuidmap reads the real one); the test does not edit the machine's files.
    let h = Host::clean("aud-lxcstart");
    std::fs::remove_dir_all(h.root.host_path("/var/lib/lxc/web1")).unwrap();
    mirror_cgroups(&h);
    let name = format!("hgaud{}", std::process::id());
    let c = RealContainer::create(&h, &name);
    h.root.write("/usr/share/lxc/config/common.seccomp", &std::fs::read_to_string("/usr/share/lxc/config/common.seccomp").unwrap());
    // No network: the test must not plug a veth into a bridge of the machine.
    let cfg = h.root.read(&format!("/var/lib/lxc/{name}/config"));
    let cfg: String = cfg.lines().filter(|l| !l.starts_with("lxc.net.0.")).map(|l| format!("{l}\n")).collect();
    h.config(&name, &format!("{cfg}lxc.net.0.type = empty\n"));
    let emitted = h.run(&["audit", "--emit-state"]);
    let mut doc: serde_json::Value = serde_json::from_str(&emitted.stdout).unwrap();
    let fields = doc["lxc"]["containers"][&name].as_object_mut().unwrap();
    assert!(fields.remove("idmap").is_some(), "{}", emitted.stdout);
    for want in ["cap_drop", "memory_limit", "config"] {
        assert!(fields.contains_key(want), "no {want} fix in {}", emitted.stdout);
    }
    let fix = h.root.doc("fix", &doc.to_string());
    h.run(&["apply", "--format", "json", &fix]).expect(2);
    let out = Command::new("lxc-start").args(["-P", &c.lxcpath, "-n", &name]).output().unwrap();
    assert!(out.status.success(), "lxc-start after the fixes: {}", String::from_utf8_lossy(&out.stderr));
    let state = Command::new("lxc-info").args(["-P", &c.lxcpath, "-n", &name, "-s", "-H"]).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&state.stdout).trim(), "RUNNING");
    // The only finding left is the privileged container, whose fix was held back.
    let left: Vec<String> = h.audit().json()["findings"].as_array().unwrap().iter().map(|f| f["id"].as_str().unwrap().to_string()).collect();
    assert_eq!(left, vec!["lxc.privileged".to_string()]);
}

#[test]
fn a_real_busybox_container_is_audited_and_fixed() {
    let h = Host::clean("aud-lxc");
    std::fs::remove_dir_all(h.root.host_path("/var/lib/lxc/web1")).unwrap();
    let c = RealContainer::create(&h, "bb1");
    // The seccomp policy the fix points at, where the audit (under --root) looks for it.
    h.root.write("/usr/share/lxc/config/common.seccomp", &std::fs::read_to_string("/usr/share/lxc/config/common.seccomp").unwrap());
    let a = h.audit();
    a.expect(2);
    let ids: Vec<String> = a.json()["findings"].as_array().unwrap().iter().map(|f| f["id"].as_str().unwrap().to_string()).collect();
    // The LXC 5 busybox template neither includes common.conf nor sets a seccomp policy, and its
    // own cap.drop leaves out sys_rawio: all real findings.
    for want in ["lxc.privileged", "lxc.cap_drop", "lxc.memory_limit", "lxc.pids_limit", "lxc.seccomp"] {
        assert!(ids.contains(&want.to_string()), "no {want} for a stock busybox container: {ids:?}");
    }
    // busybox's own config sets AppArmor, mount.auto and devices well: no finding there.
    for not in ["lxc.apparmor_unconfined", "lxc.mount_auto_rw", "lxc.devices_allow_all", "lxc.legacy_keys", "lxc.cgroup_version_keys"] {
        assert!(!ids.contains(&not.to_string()), "false positive {not}: {}", a.stdout);
    }
    h.fix_and_expect_clean();
    // LXC itself reads the rewritten config.
    assert!(c.item("lxc.idmap").contains("u 0 100000 65536"), "{}", c.item("lxc.idmap"));
    assert!(c.item("lxc.cap.drop").contains("sys_rawio"));
    assert!(c.item("lxc.cgroup.pids.max").ends_with("4096"), "{}", c.item("lxc.cgroup.pids.max"));
}

#[test]
fn audit_document_is_pinned_like_any_other() {
    let h = Host::clean("aud-pin");
    let doc = h.root.doc("closes", r#"{"version": 1, "sysctl": {"values": {"vm.swappiness": 5}}}"#);
    let zeros = "0".repeat(64);
    let run = h.run(&["audit", "--format", "json", "--sha256", &zeros, &doc]);
    run.expect(1);
    assert!(run.stderr.contains("SHA-256 mismatch"), "{}", run.stderr);
}
