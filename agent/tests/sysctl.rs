//! The sysctl resource end to end: the built binary against a fake root, and against the real
//! kernel inside a private network namespace.

use crate::util;

use std::process::Command;

use util::{hostguard, run_with, FakeRoot, Netns, Run};

fn fake_host() -> FakeRoot {
    let r = FakeRoot::new();
    r.sysctl("vm.swappiness", "60");
    r.sysctl("net.ipv4.ip_forward", "0");
    r.sysctl("net.ipv4.ip_local_port_range", "32768\t60999");
    r
}

/// `plan` / `apply` of the document file `doc` on the fake host, reporting in JSON.
fn plan_json(r: &FakeRoot, doc: &str) -> Run {
    hostguard(&["plan", "--format", "json", "--root", &r.arg(), doc])
}

fn apply_json(r: &FakeRoot, doc: &str) -> Run {
    hostguard(&["apply", "--format", "json", "--root", &r.arg(), doc])
}

const DOC: &str = r#"{"version": 1, "sysctl": {
    "persist": "/etc/sysctl.d/60-hostguard.conf",
    "values": {"vm.swappiness": 10, "net.ipv4.ip_forward": 1, "net.ipv4.ip_local_port_range": "32768 60999"}}}"#;

#[test]
fn drift_then_apply_then_in_sync() {
    let r = fake_host();
    let doc = r.doc("state", DOC);
    let root = r.arg();

    let plan = hostguard(&["plan", "--format", "json", "--root", &root, &doc]);
    plan.expect(2);
    assert_eq!(plan.status("sysctl/vm.swappiness"), "drift");
    assert_eq!(plan.resource("sysctl/vm.swappiness")["current"], "60");
    assert_eq!(plan.resource("sysctl/vm.swappiness")["desired"], "10");
    assert_eq!(plan.status("sysctl/net.ipv4.ip_local_port_range"), "in_sync");
    assert_eq!(plan.status("sysctl-file/etc/sysctl.d/60-hostguard.conf"), "drift");
    assert_eq!(r.sysctl_value("vm.swappiness"), "60", "plan changed nothing");

    let apply = hostguard(&["apply", "--format", "json", "--root", &root, &doc]);
    apply.expect(2);
    assert_eq!(apply.status("sysctl/vm.swappiness"), "changed");
    // SPEC section 4: a changed resource shows the old value as current, the new as desired.
    assert_eq!(apply.resource("sysctl/vm.swappiness")["current"], "60");
    assert_eq!(apply.resource("sysctl/vm.swappiness")["desired"], "10");
    assert_eq!(apply.json()["summary"]["changed"], 3);
    assert_eq!(r.sysctl_value("vm.swappiness"), "10");
    assert_eq!(r.sysctl_value("net.ipv4.ip_forward"), "1");
    let persisted = r.read("/etc/sysctl.d/60-hostguard.conf");
    assert!(persisted.starts_with("# Managed by hostguard"), "{persisted}");
    assert!(persisted.ends_with(
        "net.ipv4.ip_forward = 1\nnet.ipv4.ip_local_port_range = 32768 60999\nvm.swappiness = 10\n"
    ), "{persisted}");

    let again = hostguard(&["apply", "--format", "json", "--root", &root, &doc]);
    again.expect(0);
    assert_eq!(again.json()["summary"]["in_sync"], 4);
    hostguard(&["plan", "--format", "json", "--root", &root, &doc]).expect(0);
}

#[test]
fn report_lists_every_resource_once_in_a_stable_order() {
    let r = fake_host();
    let doc = r.doc("state", DOC);
    let ids = |run: &util::Run| -> Vec<String> {
        run.json()["resources"].as_array().unwrap().iter().map(|x| x["id"].as_str().unwrap().to_string()).collect()
    };
    let a = plan_json(&r, &doc);
    let b = apply_json(&r, &doc);
    assert_eq!(ids(&a), ids(&b));
    assert_eq!(
        ids(&a),
        vec![
            "sysctl/net.ipv4.ip_forward",
            "sysctl/net.ipv4.ip_local_port_range",
            "sysctl/vm.swappiness",
            "sysctl-file/etc/sysctl.d/60-hostguard.conf"
        ]
    );
    let j = a.json();
    assert_eq!(j["version"], 1);
    assert_eq!(j["command"], "plan");
    assert_eq!(j["state_sha256"].as_str().unwrap().len(), 64);
}

#[test]
fn human_plan_shows_old_and_new_values_and_a_summary() {
    let r = fake_host();
    let doc = r.doc("state", DOC);
    let plan = hostguard(&["plan", "--format", "human", "--root", &r.arg(), &doc]);
    plan.expect(2);
    assert!(plan.stdout.contains("sysctl/vm.swappiness: 60 -> 10"), "{}", plan.stdout);
    assert!(plan.stdout.contains("plan: 1 in sync, 3 drift, 0 changed, 0 failed"), "{}", plan.stdout);
}

#[test]
fn missing_key_fails_unless_ignore_missing() {
    let r = fake_host();
    let doc = r.doc("state", r#"{"version": 1, "sysctl": {"values": {"net.netfilter.nf_conntrack_max": 262144, "vm.swappiness": 10}}}"#);
    // SPEC section 2: an honest plan. The key apply would fail is failed already in plan, with
    // the same message, and the plan exits 6 (drift, and a resource that cannot converge).
    let plan = plan_json(&r, &doc);
    plan.expect(6);
    assert_eq!(plan.status("sysctl/net.netfilter.nf_conntrack_max"), "failed");
    assert_eq!(plan.status("sysctl/vm.swappiness"), "drift");
    let apply = apply_json(&r, &doc);
    apply.expect(6);
    let missing = apply.resource("sysctl/net.netfilter.nf_conntrack_max");
    assert_eq!(missing["status"], "failed");
    assert!(missing["message"].as_str().unwrap().contains("net.netfilter.nf_conntrack_max does not exist"), "{missing}");
    assert_eq!(missing["message"], plan.resource("sysctl/net.netfilter.nf_conntrack_max")["message"], "plan says what apply says");

    let doc = r.doc("ignore", r#"{"version": 1, "sysctl": {"ignore_missing": true, "values": {"net.netfilter.nf_conntrack_max": 262144}}}"#);
    let apply = apply_json(&r, &doc);
    apply.expect(0);
    let skipped = apply.resource("sysctl/net.netfilter.nf_conntrack_max");
    assert_eq!(skipped["status"], "in_sync");
    assert!(skipped["message"].as_str().unwrap().contains("skipped"), "{skipped}");
}

#[test]
fn a_plan_with_only_keys_that_cannot_converge_exits_4() {
    let r = fake_host();
    let doc = r.doc("state", r#"{"version": 1, "sysctl": {"values": {"vm.no_such_key": 1, "vm.swappiness": 60}}}"#);
    let plan = plan_json(&r, &doc);
    plan.expect(4);
    assert_eq!(plan.json()["summary"]["failed"], 1);
    let human = hostguard(&["plan", "--format", "human", "--root", &r.arg(), &doc]);
    human.expect(4);
    assert!(human.stdout.contains("! FAILED  sysctl/vm.no_such_key"), "{}", human.stdout);
}

#[test]
fn a_key_that_does_not_exist_is_never_persisted() {
    for ignore_missing in [false, true] {
        let r = fake_host();
        let doc = r.doc("state", &format!(r#"{{"version": 1, "sysctl": {{"persist": "/etc/sysctl.d/60-hostguard.conf",
            "ignore_missing": {ignore_missing}, "values": {{"vm.no_such_key": 1, "vm.swappiness": 10}}}}}}"#));
        let apply = apply_json(&r, &doc);
        apply.expect(if ignore_missing { 2 } else { 6 });
        let persisted = r.read("/etc/sysctl.d/60-hostguard.conf");
        assert!(!persisted.contains("no_such_key"), "ignore_missing={ignore_missing}: {persisted}");
        assert!(persisted.contains("vm.swappiness = 10"), "{persisted}");
        let plan = plan_json(&r, &doc);
        plan.expect(if ignore_missing { 0 } else { 4 });
        assert_eq!(plan.status("sysctl-file/etc/sysctl.d/60-hostguard.conf"), "in_sync");
    }
}

#[test]
fn a_word_for_an_integer_key_is_failed_in_plan_and_never_written() {
    let r = fake_host();
    r.sysctl("net.ipv4.tcp_congestion_control", "cubic");
    let doc = r.doc("state", r#"{"version": 1, "sysctl": {"persist": "/etc/sysctl.d/60-hostguard.conf", "values": {
        "vm.swappiness": "high", "net.ipv4.ip_forward": "", "net.ipv4.tcp_congestion_control": "bbr",
        "net.ipv4.ip_local_port_range": "1024 0x10000"}}}"#);
    let plan = plan_json(&r, &doc);
    plan.expect(6);
    let word = plan.resource("sysctl/vm.swappiness");
    assert_eq!(word["status"], "failed");
    assert!(word["message"].as_str().unwrap().contains(r#"holds whole numbers (now 60) and "high" is not one"#), "{word}");
    assert_eq!(plan.status("sysctl/net.ipv4.ip_forward"), "failed", "an empty value does not set an integer key");
    // Text keys are the handler's to judge; a hex number starts with a digit and may be taken.
    assert_eq!(plan.status("sysctl/net.ipv4.tcp_congestion_control"), "drift");
    assert_eq!(plan.status("sysctl/net.ipv4.ip_local_port_range"), "drift");
    let apply = apply_json(&r, &doc);
    assert_eq!(apply.resource("sysctl/vm.swappiness")["message"], word["message"]);
    assert_eq!(r.sysctl_value("vm.swappiness"), "60", "not written");
    let persisted = r.read("/etc/sysctl.d/60-hostguard.conf");
    assert!(!persisted.contains("swappiness") && !persisted.contains("ip_forward"), "{persisted}");
}

/// A key the kernel prints as N numbers takes exactly N: `ip_local_port_range` given one keeps
/// its second as it was, `ip_forward` given two keeps the first (checked on the real kernel
/// below). Both are failed in plan, never written, never persisted.
#[test]
fn another_count_of_numbers_than_the_kernel_holds_is_failed_in_plan() {
    let r = fake_host();
    let doc = r.doc("state", r#"{"version": 1, "sysctl": {"persist": "/etc/sysctl.d/60-hostguard.conf", "values": {
        "net.ipv4.ip_local_port_range": 1024, "net.ipv4.ip_forward": "1 2", "vm.swappiness": 10}}}"#);
    let plan = plan_json(&r, &doc);
    plan.expect(6);
    let range = plan.resource("sysctl/net.ipv4.ip_local_port_range");
    assert_eq!(range["status"], "failed");
    assert!(range["message"].as_str().unwrap().contains("holds 2 whole numbers (now 32768 60999) and the value gives 1"), "{range}");
    assert!(plan.resource("sysctl/net.ipv4.ip_forward")["message"].as_str().unwrap().contains("holds 1 whole number (now 0)"));
    let apply = apply_json(&r, &doc);
    apply.expect(6);
    assert_eq!(apply.resource("sysctl/net.ipv4.ip_local_port_range")["message"], range["message"]);
    assert_eq!(r.sysctl_value("net.ipv4.ip_local_port_range"), "32768\t60999", "not written");
    assert_eq!(r.sysctl_value("net.ipv4.ip_forward"), "0", "not written");
    let persisted = r.read("/etc/sysctl.d/60-hostguard.conf");
    assert!(persisted.contains("vm.swappiness = 10") && !persisted.contains("port_range") && !persisted.contains("ip_forward"), "{persisted}");
}

/// Issue 14: `"0x10"` for an integer key was drift for ever (text against the kernel's decimal).
/// The kernel reads C's bases, so hostguard compares as it reads: `0x3c` and `074` are 60.
#[test]
fn a_hex_or_octal_number_is_in_sync_with_the_decimal_the_kernel_prints() {
    let r = fake_host();
    let doc = r.doc("state", r#"{"version": 1, "sysctl": {"values": {"vm.swappiness": "0x3c", "net.ipv4.ip_forward": "00",
        "net.ipv4.ip_local_port_range": "0x8000 0167107"}}}"#);
    plan_json(&r, &doc).expect(0);
    // `010` is eight to the kernel, not ten.
    let doc = r.doc("octal", r#"{"version": 1, "sysctl": {"values": {"vm.swappiness": "010"}}}"#);
    let plan = plan_json(&r, &doc);
    plan.expect(2);
    r.sysctl("vm.swappiness", "8");
    plan_json(&r, &doc).expect(0);
}

/// A text key whose choices the kernel lists beside it (`tcp_available_congestion_control`):
/// a name not listed, that no module of the running kernel could add, is failed in plan.
#[test]
fn a_choice_the_kernel_does_not_list_and_no_module_adds_is_failed_in_plan() {
    let r = fake_host();
    r.sysctl("net.ipv4.tcp_congestion_control", "cubic");
    r.sysctl("net.ipv4.tcp_available_congestion_control", "reno cubic");
    r.sysctl("kernel.osrelease", "6.1.0-test");
    let doc = r.doc("state", r#"{"version": 1, "sysctl": {"persist": "/etc/sysctl.d/60-hostguard.conf", "values": {
        "net.ipv4.tcp_congestion_control": "bbr"}}}"#);
    let plan = plan_json(&r, &doc);
    plan.expect(6);
    let cc = plan.resource("sysctl/net.ipv4.tcp_congestion_control");
    assert_eq!(cc["status"], "failed");
    let msg = cc["message"].as_str().unwrap();
    assert!(msg.contains(r#"/proc/sys/net/ipv4/tcp_available_congestion_control lists "reno cubic""#) && msg.contains("No such file or directory"), "{msg}");
    let apply = apply_json(&r, &doc);
    assert_eq!(apply.resource("sysctl/net.ipv4.tcp_congestion_control")["message"], cc["message"]);
    assert_eq!(r.sysctl_value("net.ipv4.tcp_congestion_control"), "cubic");
    assert!(!r.read("/etc/sysctl.d/60-hostguard.conf").contains("bbr"));
    // A listed name is drift; so is a name a module of this kernel may add.
    let listed = r.doc("listed", r#"{"version": 1, "sysctl": {"values": {"net.ipv4.tcp_congestion_control": "reno"}}}"#);
    hostguard(&["plan", "--format", "json", "--root", &r.arg(), &listed]).expect(2);
    r.write("/lib/modules/6.1.0-test/modules.dep", "kernel/net/ipv4/tcp_bbr.ko.xz:\nkernel/net/ipv4/tcp_vegas.ko.xz:\n");
    let plan = plan_json(&r, &doc);
    plan.expect(2);
    assert_eq!(plan.status("sysctl/net.ipv4.tcp_congestion_control"), "drift");
}

#[test]
fn a_directory_at_a_key_is_failed_and_the_other_keys_converge() {
    let r = fake_host();
    // A directory where the key's file should be: that key is failed, naming the path; the keys
    // that can be read converge (a FIFO or device there: agent/tests/special_files.rs).
    std::fs::create_dir_all(r.host_path("/proc/sys/vm/overcommit_memory")).unwrap();
    let doc = r.doc("state", r#"{"version": 1, "sysctl": {"values": {"vm.swappiness": 10, "vm.overcommit_memory": 2}}}"#);
    let apply = apply_json(&r, &doc);
    apply.expect(6);
    let res = apply.resource("sysctl/vm.overcommit_memory");
    assert_eq!(res["status"], "failed");
    assert!(res["message"].as_str().unwrap().contains("proc/sys/vm/overcommit_memory"), "{res}");
    assert_eq!(r.sysctl_value("vm.swappiness"), "10");
}

#[test]
fn slash_keys_reach_interface_names_with_dots() {
    let r = fake_host();
    r.write("/proc/sys/net/ipv4/conf/eth0.100/forwarding", "0\n");
    let doc = r.doc("state", r#"{"version": 1, "sysctl": {"values": {"net/ipv4/conf/eth0.100/forwarding": 1}}}"#);
    apply_json(&r, &doc).expect(2);
    assert_eq!(r.read("/proc/sys/net/ipv4/conf/eth0.100/forwarding").trim(), "1");
}

#[test]
fn persisted_file_drift_is_detected_and_repaired() {
    let r = fake_host();
    let doc = r.doc("state", DOC);
    apply_json(&r, &doc).expect(2);
    r.write("/etc/sysctl.d/60-hostguard.conf", "vm.swappiness = 99\n");
    let plan = plan_json(&r, &doc);
    plan.expect(2);
    let file = plan.resource("sysctl-file/etc/sysctl.d/60-hostguard.conf");
    assert_eq!(file["status"], "drift");
    assert!(file["diff"].as_array().unwrap().iter().any(|l| l == "- vm.swappiness = 99"), "{file}");
    apply_json(&r, &doc).expect(2);
    plan_json(&r, &doc).expect(0);
}

#[test]
fn a_later_boot_file_that_overrides_a_key_is_failed_in_plan_as_in_apply() {
    let r = fake_host();
    r.write("/etc/sysctl.conf", "# distro defaults\nvm.swappiness = 60\n");
    r.write("/usr/lib/sysctl.d/10-early.conf", "vm.swappiness = 1\n");
    let doc = r.doc("state", DOC);
    // SPEC §2, a plan is honest: apply will certainly fail the file (hostguard does not edit the
    // overriding file), so plan says failed already, with apply's message, before any write.
    let first = plan_json(&r, &doc);
    first.expect(6);
    let planned = first.resource("sysctl-file/etc/sysctl.d/60-hostguard.conf");
    assert_eq!(planned["status"], "failed");
    assert!(planned["diff"].as_array().unwrap().iter().any(|l| l == "+ vm.swappiness = 10"), "the diff shows what apply writes: {planned}");
    assert!(!r.host_path("/etc/sysctl.d/60-hostguard.conf").exists(), "plan wrote nothing");
    let apply = apply_json(&r, &doc);
    apply.expect(6);
    let file = apply.resource("sysctl-file/etc/sysctl.d/60-hostguard.conf");
    assert_eq!(file["status"], "failed");
    let msg = file["message"].as_str().unwrap();
    assert!(msg.contains("/etc/sysctl.conf:2 sets 60"), "{msg}");
    assert!(!msg.contains("10-early.conf"), "an earlier file does not win: {msg}");
    // The runtime values are right; only the reboot would undo them.
    assert_eq!(apply.status("sysctl/vm.swappiness"), "changed");
    assert_eq!(planned["message"], file["message"], "plan gives apply's message");
    assert!(r.read("/etc/sysctl.d/60-hostguard.conf").contains("vm.swappiness = 10\n"), "apply wrote the file all the same");
    let plan = plan_json(&r, &doc);
    plan.expect(4);
    assert_eq!(plan.resource("sysctl-file/etc/sysctl.d/60-hostguard.conf")["message"], file["message"]);
    assert_eq!(plan.status("sysctl/vm.swappiness"), "in_sync");
    // The operator removes the overriding line: in sync, nothing left to write.
    r.write("/etc/sysctl.conf", "# distro defaults\n");
    plan_json(&r, &doc).expect(0);
}

#[test]
fn a_vendor_file_overriding_a_key_is_failed_in_plan_unless_etc_shadows_it_by_name() {
    let r = fake_host();
    r.write("/usr/lib/sysctl.d/90-vendor.conf", "net.ipv4.ip_forward = 0\n");
    let doc = r.doc("state", DOC);
    let plan = plan_json(&r, &doc);
    plan.expect(6);
    let planned = plan.resource("sysctl-file/etc/sysctl.d/60-hostguard.conf");
    assert_eq!(planned["status"], "failed");
    assert!(planned["message"].as_str().unwrap().contains("/usr/lib/sysctl.d/90-vendor.conf:1 sets 0"), "{planned}");
    let apply = apply_json(&r, &doc);
    apply.expect(6);
    assert_eq!(apply.resource("sysctl-file/etc/sysctl.d/60-hostguard.conf")["message"], planned["message"], "plan gives apply's message");
    // A file of the same name in /etc/sysctl.d hides the vendor's at boot: nothing overrides.
    r.write("/etc/sysctl.d/90-vendor.conf", "# the site's own\n");
    plan_json(&r, &doc).expect(0);
}

#[test]
fn backup_dir_keeps_the_replaced_file() {
    let r = fake_host();
    r.write("/etc/sysctl.d/60-hostguard.conf", "vm.swappiness = 99\n");
    let backups = r.path().join("backups");
    let doc = r.doc("state", DOC);
    hostguard(&["apply", "--format", "json", "--root", &r.arg(), "--backup-dir", backups.to_str().unwrap(), &doc]).expect(2);
    let kept: Vec<_> = std::fs::read_dir(&backups).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(kept.len(), 1);
    assert_eq!(std::fs::read_to_string(&kept[0]).unwrap(), "vm.swappiness = 99\n");
}

#[test]
fn the_document_can_come_from_stdin() {
    let r = fake_host();
    let run = run_with(&[], &["plan", "--format", "json", "--root", &r.arg(), "-"], Some(DOC.as_bytes()), &[]);
    run.expect(2);
    assert_eq!(run.status("sysctl/vm.swappiness"), "drift");
}

#[test]
fn show_prints_current_values_as_a_valid_document() {
    let r = fake_host();
    let show = hostguard(&["show", "--root", &r.arg(), "--sysctl", "vm"]);
    show.expect(0);
    let j = show.json();
    assert_eq!(j["version"], 1);
    assert_eq!(j["sysctl"]["values"]["vm.swappiness"], 60);
    assert!(j["sysctl"]["values"].get("net.ipv4.ip_forward").is_none(), "prefix filter: {j}");
    let doc = r.doc("shown", &show.stdout);
    plan_json(&r, &doc).expect(0);
}

#[test]
fn a_second_run_waits_for_the_lock_then_names_the_holder() {
    let r = fake_host();
    let lock = r.host_path("/run/hostguard.lock");
    std::fs::create_dir_all(lock.parent().unwrap()).unwrap();
    // Hold the lock from another process, as a concurrent run would.
    let holder = std::process::Command::new("flock")
        .args(["--no-fork", lock.to_str().unwrap(), "sleep", "30"])
        .spawn()
        .unwrap();
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let holder = Kill(holder);
    std::thread::sleep(std::time::Duration::from_millis(300));
    let doc = r.doc("state", DOC);
    let run = hostguard(&["apply", "--format", "json", "--lock-timeout", "1", "--root", &r.arg(), &doc]);
    run.expect(1);
    assert!(run.stderr.contains("holds"), "{}", run.stderr);
    assert_eq!(r.sysctl_value("vm.swappiness"), "60", "nothing touched while locked");
    drop(holder);
    hostguard(&["apply", "--format", "json", "--lock-timeout", "5", "--root", &r.arg(), &doc]).expect(2);
}

#[test]
fn concurrent_applies_do_not_interleave() {
    let r = fake_host();
    let doc = r.doc("state", DOC);
    let root = r.arg();
    let runs: Vec<_> = (0..4)
        .map(|_| {
            let (root, doc) = (root.clone(), doc.clone());
            std::thread::spawn(move || hostguard(&["apply", "--format", "json", "--root", &root, &doc]).code)
        })
        .collect();
    let mut codes: Vec<i32> = runs.into_iter().map(|t| t.join().unwrap()).collect();
    codes.sort();
    // Exactly one run changed things; the others found them converged.
    assert_eq!(codes, vec![0, 0, 0, 2]);
}

/// The real kernel, in a namespace of the test's own: `net.*` keys are per namespace.
#[test]
fn real_kernel_net_keys_converge_in_a_private_namespace() {
    let host_before: Vec<String> = ["net/ipv4/ip_forward", "net/ipv4/conf/all/rp_filter", "net/ipv4/ip_local_port_range"]
        .iter()
        .map(|k| std::fs::read_to_string(format!("/proc/sys/{k}")).unwrap())
        .collect();
    let ns = Netns::new("sysctl");
    let r = FakeRoot::new();
    let doc = r.doc(
        "state",
        r#"{"version": 1, "sysctl": {"values": {
            "net.ipv4.ip_forward": 1, "net.ipv4.conf.all.rp_filter": 2,
            "net.ipv4.ip_local_port_range": "20000 30000"}}}"#,
    );
    let plan = ns.hostguard(&["plan", "--format", "json", &doc]);
    plan.expect(2);
    assert_eq!(plan.json()["summary"]["drift"], 3);
    let apply = ns.hostguard(&["apply", "--format", "json", &doc]);
    apply.expect(2);
    assert_eq!(apply.json()["summary"]["changed"], 3);
    assert_eq!(ns.cat("/proc/sys/net/ipv4/ip_forward"), "1");
    assert_eq!(ns.cat("/proc/sys/net/ipv4/conf/all/rp_filter"), "2");
    assert_eq!(ns.cat("/proc/sys/net/ipv4/ip_local_port_range"), "20000 30000");
    ns.hostguard(&["apply", "--format", "json", &doc]).expect(0);
    ns.hostguard(&["plan", "--format", "json", &doc]).expect(0);

    let host_after: Vec<String> = ["net/ipv4/ip_forward", "net/ipv4/conf/all/rp_filter", "net/ipv4/ip_local_port_range"]
        .iter()
        .map(|k| std::fs::read_to_string(format!("/proc/sys/{k}")).unwrap())
        .collect();
    assert_eq!(host_before, host_after, "the machine's own values are untouched");
}

#[test]
fn real_kernel_value_that_does_not_take_is_failed_with_what_it_holds() {
    let ns = Netns::new("readback");
    let r = FakeRoot::new();
    // The kernel accepts a port listed twice and holds it once: only a read-back can catch it.
    let doc = r.doc("state", r#"{"version": 1, "sysctl": {"values": {"net.ipv4.ip_local_reserved_ports": "8080,8080"}}}"#);
    let apply = ns.hostguard(&["apply", "--format", "json", &doc]);
    apply.expect(4);
    let res = apply.resource("sysctl/net.ipv4.ip_local_reserved_ports");
    assert_eq!(res["status"], "failed");
    assert_eq!(res["current"], "8080");
    assert!(res["message"].as_str().unwrap().contains("the kernel holds 8080"), "{res}");

    // A value the kernel refuses outright is failed with its reason.
    let before = ns.cat("/proc/sys/net/ipv4/ip_local_port_range");
    let doc = r.doc("bad", r#"{"version": 1, "sysctl": {"values": {"net.ipv4.ip_local_port_range": "2000 1000"}}}"#);
    let apply = ns.hostguard(&["apply", "--format", "json", &doc]);
    apply.expect(4);
    let res = apply.resource("sysctl/net.ipv4.ip_local_port_range");
    assert!(res["message"].as_str().unwrap().contains("Invalid argument"), "{res}");
    assert_eq!(ns.cat("/proc/sys/net/ipv4/ip_local_port_range"), before);
}

/// The rule plan uses for integer keys, checked against the real kernel: the word plan refuses is
/// one the kernel refuses, and the hex number plan lets through is one the kernel takes.
#[test]
fn real_kernel_refuses_the_word_plan_calls_failed() {
    let ns = Netns::new("honest");
    let r = FakeRoot::new();
    let doc = r.doc("state", r#"{"version": 1, "sysctl": {"values": {"net.ipv4.ip_default_ttl": "sixty"}}}"#);
    let plan = ns.hostguard(&["plan", "--format", "json", &doc]);
    plan.expect(4);
    assert!(plan.resource("sysctl/net.ipv4.ip_default_ttl")["message"].as_str().unwrap().contains("Invalid argument"));
    let write = |v: &str| {
        Command::new("ip")
            .args(["netns", "exec", &ns.name, "sh", "-c", &format!("exec env printf %s '{v}' > /proc/sys/net/ipv4/ip_default_ttl")])
            .output()
            .unwrap()
    };
    let refused = write("sixty");
    assert!(!refused.status.success() && String::from_utf8_lossy(&refused.stderr).contains("Invalid argument"), "{refused:?}");
    assert!(write("0x3c").status.success(), "the kernel takes a hex number");
    assert_eq!(ns.cat("/proc/sys/net/ipv4/ip_default_ttl"), "60");
}

/// The count and choice rules plan uses, checked against the real kernel: what plan calls failed
/// the kernel refuses or does not hold, and a hex number applied once is in sync after.
#[test]
fn real_kernel_agrees_with_the_count_hex_and_choice_rules() {
    let ns = Netns::new("rules");
    let r = FakeRoot::new();
    let doc = r.doc("state", r#"{"version": 1, "sysctl": {"values": {"net.ipv4.ip_forward": "1 2",
        "net.ipv4.tcp_congestion_control": "nosuchalgo", "net.ipv4.ip_default_ttl": "0x3c"}}}"#);
    let plan = ns.hostguard(&["plan", "--format", "json", &doc]);
    plan.expect(6);
    assert_eq!(plan.status("sysctl/net.ipv4.ip_forward"), "failed");
    assert_eq!(plan.status("sysctl/net.ipv4.tcp_congestion_control"), "failed");
    assert_eq!(plan.status("sysctl/net.ipv4.ip_default_ttl"), "drift");
    let apply = ns.hostguard(&["apply", "--format", "json", &doc]);
    apply.expect(6);
    assert_eq!(ns.cat("/proc/sys/net/ipv4/ip_forward"), "0", "a failed key is not written");
    assert_eq!(ns.cat("/proc/sys/net/ipv4/ip_default_ttl"), "60");
    let again = ns.hostguard(&["plan", "--format", "json", &doc]);
    again.expect(4);
    assert_eq!(again.status("sysctl/net.ipv4.ip_default_ttl"), "in_sync", "no permanent drift for a hex number");
    // What the kernel does with those values when written anyway.
    let write = |k: &str, v: &str| {
        Command::new("ip")
            .args(["netns", "exec", &ns.name, "sh", "-c", &format!("exec env printf %s '{v}' > /proc/sys/{k}")])
            .output()
            .unwrap()
    };
    let cc = write("net/ipv4/tcp_congestion_control", "nosuchalgo");
    assert!(!cc.status.success() && String::from_utf8_lossy(&cc.stderr).contains("No such file or directory"), "{cc:?}");
    assert!(write("net/ipv4/ip_forward", "1 2").status.success());
    assert_eq!(ns.cat("/proc/sys/net/ipv4/ip_forward"), "1", "the kernel keeps only the first of two numbers");
}

/// A CPU mask prints like a number ("0") and takes hex ("ff"): the plan must not refuse what the
/// kernel would take, since apply does not try a refused key.
#[test]
fn a_hex_mask_for_a_key_printed_as_a_number_is_not_refused() {
    let r = fake_host();
    r.sysctl("net.core.rps_default_mask", "0");
    let doc = r.doc("state", r#"{"version": 1, "sysctl": {"values": {"net.core.rps_default_mask": "ff", "vm.swappiness": "sixty"}}}"#);
    let plan = plan_json(&r, &doc);
    plan.expect(6);
    assert_eq!(plan.status("sysctl/net.core.rps_default_mask"), "drift");
    assert_eq!(plan.status("sysctl/vm.swappiness"), "failed", "a word that is no hex number is still refused");
}

/// The real kernel: a text key holding digits (a hostname "12345", in a UTS namespace of the
/// test's own) is not taken for an integer key, since its string handler prints past offset 0;
/// an integer key still is.
#[test]
fn real_kernel_text_key_holding_digits_takes_a_word() {
    let r = FakeRoot::new();
    let doc = r.doc("state", r#"{"version": 1, "sysctl": {"values": {"kernel.hostname": "web1"}}}"#);
    let script = r#"hostname 12345 && "$0" plan --format json "$1"; echo "exit $?"; "$0" apply --format json "$1" >/dev/null; hostname"#;
    let out = Command::new("unshare").args(["-u", "sh", "-c", script, util::bin(), &doc]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("\"status\":\"drift\"") || text.contains("\"status\": \"drift\""), "{text}");
    assert!(text.contains("exit 2"), "{text}");
    assert_eq!(text.lines().last(), Some("web1"), "apply set the namespace's hostname: {text}");
    let ttl = {
        let ns = Netns::new("probe");
        let d = r.doc("ttl", r#"{"version": 1, "sysctl": {"values": {"net.ipv4.ip_default_ttl": "sixty"}}}"#);
        ns.hostguard(&["plan", "--format", "json", &d]).status("sysctl/net.ipv4.ip_default_ttl")
    };
    assert_eq!(ttl, "failed");
}

/// `apply --save-state FILE` (what the wrappers use): the document read on standard input is
/// saved as given once it is valid, replaced only when it changed, and never when it is invalid.
#[test]
fn save_state_keeps_the_applied_document_and_only_a_valid_one() {
    use std::os::unix::fs::MetadataExt;
    let r = fake_host();
    let root = r.arg();
    // Outside the fake root, in a directory of this run's own: beside the root (the temp
    // directory's parent) it was one path shared by every run of this test on the machine.
    let out = tempfile::tempdir().unwrap();
    let saved = out.path().join("saved/state.json");
    let file = saved.to_str().unwrap();
    let apply = |doc: &str| run_with(&[], &["apply", "--format", "json", "--root", &root, "--save-state", file, "-"], Some(doc.as_bytes()), &[]);
    apply(DOC).expect(2);
    assert_eq!(std::fs::read_to_string(&saved).unwrap(), DOC, "the document is saved as given");
    let inode = std::fs::metadata(&saved).unwrap().ino();
    apply(DOC).expect(0);
    assert_eq!(std::fs::metadata(&saved).unwrap().ino(), inode, "an unchanged document is not rewritten");
    let bad = apply(r#"{"version": 1, "sysctl": {"values": {"../vm.swappiness": 1}}}"#);
    bad.expect(1);
    assert_eq!(std::fs::read_to_string(&saved).unwrap(), DOC, "an invalid document is not saved");
    // plan has no such option: it writes nothing.
    assert_eq!(run_with(&[], &["plan", "--root", &root, "--save-state", file, "-"], Some(DOC.as_bytes()), &[]).code, 1);
}
