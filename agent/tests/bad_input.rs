//! Documents hostguard must refuse: exit 1, a message naming what and where, an untouched host.

use crate::util;

use util::{hostguard, run_with, FakeRoot};

fn refused(doc: &[u8], expect_in_message: &str) {
    let r = FakeRoot::new();
    r.sysctl("vm.swappiness", "60");
    r.write("/etc/sysctl.d/10-local.conf", "vm.swappiness = 60\n");
    let before = r.snapshot();
    for cmd in ["validate", "plan", "apply"] {
        let run = run_with(&[], &[cmd, "--format", "json", "--root", &r.arg(), "-"], Some(doc), &[]);
        assert_eq!(run.code, 1, "{cmd} of {:?}\nstdout: {}\nstderr: {}", String::from_utf8_lossy(doc), run.stdout, run.stderr);
        assert!(run.stderr.contains(expect_in_message), "{cmd}: expected {expect_in_message:?} in:\n{}", run.stderr);
        assert_eq!(r.snapshot(), before, "{cmd} touched the host");
    }
}

#[test]
fn key_with_double_dot() {
    refused(br#"{"version": 1, "sysctl": {"values": {"kernel..x": 1}}}"#, r#"sysctl.values["kernel..x"]"#);
}

#[test]
fn key_escaping_proc_sys() {
    refused(br#"{"version": 1, "sysctl": {"values": {"../../etc/shadow": 1}}}"#, "../../etc/shadow");
}

#[test]
fn empty_key() {
    refused(br#"{"version": 1, "sysctl": {"values": {"": 1}}}"#, "may not be empty");
}

#[test]
fn value_with_a_newline() {
    refused(br#"{"version": 1, "sysctl": {"values": {"vm.swappiness": "10\nkernel.x = 1"}}}"#, "control character");
}

#[test]
fn unknown_field_anywhere() {
    refused(br#"{"version": 1, "sysctl": {"values": {}, "persistt": "/etc/sysctl.d/x.conf"}}"#, "unknown field `persistt`");
    refused(br#"{"version": 1, "extra": true}"#, "unknown field `extra`");
}

#[test]
fn version_two() {
    refused(br#"{"version": 2}"#, "unsupported version 2");
}

#[test]
fn invalid_json() {
    refused(br#"{"version": 1, "sysctl": "#, "line 1");
}

#[test]
fn invalid_utf8() {
    refused(b"{\"version\": 1, \"sysctl\": {\"values\": {\"vm.\xff\": 1}}}", "not valid UTF-8");
}

#[test]
fn oversized_document() {
    let mut doc = br#"{"version": 1, "sysctl": {"values": {"vm.swappiness": ""#.to_vec();
    doc.extend(std::iter::repeat_n(b'1', 16 * 1024 * 1024));
    doc.extend_from_slice(br#""}}}"#);
    refused(&doc, "over the limit");
}

#[test]
fn persist_outside_sysctl_d() {
    refused(br#"{"version": 1, "sysctl": {"persist": "/etc/shadow", "values": {}}}"#, "sysctl.persist");
}

#[test]
fn duplicate_keys() {
    refused(br#"{"version": 1, "sysctl": {"values": {"vm.swappiness": 1, "vm.swappiness": 60}}}"#, "duplicate key");
}

#[test]
fn every_error_is_reported_at_once() {
    let r = FakeRoot::new();
    let run = run_with(
        &[],
        &["validate", "--root", &r.arg(), "-"],
        Some(br#"{"version": 2, "sysctl": {"values": {"a..b": 1, "vm.x": "\u0000"}}}"#),
        &[],
    );
    run.expect(1);
    assert!(run.stderr.contains("3 errors"), "{}", run.stderr);
}

#[test]
fn a_missing_document_file_is_named() {
    let run = hostguard(&["plan", "/nonexistent/state.json"]);
    run.expect(1);
    assert!(run.stderr.contains("/nonexistent/state.json"), "{}", run.stderr);
}

#[test]
fn usage_errors_exit_1_not_2() {
    // 2 means drift: a typo on the command line must not look like drift to a wrapper.
    hostguard(&["plann"]).expect(1);
    hostguard(&["plan", "--formt", "json"]).expect(1);
}

#[test]
fn a_planted_symlink_at_the_persisted_file_is_not_followed() {
    let r = FakeRoot::new();
    r.sysctl("vm.swappiness", "10");
    r.write("/etc/shadow", "root:secret\n");
    std::fs::create_dir_all(r.host_path("/etc/sysctl.d")).unwrap();
    std::os::unix::fs::symlink(r.host_path("/etc/shadow"), r.host_path("/etc/sysctl.d/60-hostguard.conf")).unwrap();
    let doc = r.doc("state", r#"{"version": 1, "sysctl": {"persist": "/etc/sysctl.d/60-hostguard.conf", "values": {"vm.swappiness": 10}}}"#);
    let apply = hostguard(&["apply", "--format", "json", "--root", &r.arg(), &doc]);
    apply.expect(4);
    let res = apply.resource("sysctl-file/etc/sysctl.d/60-hostguard.conf");
    assert!(res["message"].as_str().unwrap().contains("symbolic link"), "{res}");
    assert_eq!(r.read("/etc/shadow"), "root:secret\n");
}
