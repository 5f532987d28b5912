//! `hostguard audit` end to end: a host with a problem shows the finding, the emitted state
//! closes it, and a clean host has no finding.

mod util;

use util::{hostguard, FakeRoot};

fn container_host(swappiness: &str) -> FakeRoot {
    let r = FakeRoot::new();
    r.sysctl("vm.swappiness", swappiness);
    r.sysctl("net.ipv4.ip_forward", "0");
    r.write("/var/lib/lxc/web1/config", "lxc.uts.name = web1\n");
    r
}

#[test]
fn swappiness_finding_is_closed_by_the_emitted_state() {
    let r = container_host("60");
    let audit = hostguard(&["audit", "--format", "json", "--root", &r.arg()]);
    audit.expect(2);
    let j = audit.json();
    let f = j["findings"].as_array().unwrap().iter().find(|f| f["id"] == "sysctl.swappiness").expect("finding").clone();
    assert_eq!(f["severity"], "low");
    assert_eq!(f["evidence"], "vm.swappiness = 60");
    assert_eq!(f["fix"]["sysctl"]["values"]["vm.swappiness"], 10);

    let emitted = hostguard(&["audit", "--emit-state", "--root", &r.arg()]);
    let fix = r.doc("fix", &emitted.stdout);
    hostguard(&["validate", &fix]).expect(0);
    hostguard(&["apply", "--format", "json", "--root", &r.arg(), &fix]).expect(2);
    let again = hostguard(&["audit", "--format", "json", "--fail-on", "low", "--root", &r.arg()]);
    again.expect(0);
    assert!(!again.stdout.contains("sysctl.swappiness"), "{}", again.stdout);
}

#[test]
fn a_document_says_whether_it_closes_each_finding() {
    let r = container_host("60");
    let closes = r.doc("closes", r#"{"version": 1, "sysctl": {"values": {"vm.swappiness": 5}}}"#);
    let keeps = r.doc("keeps", r#"{"version": 1, "sysctl": {"values": {"vm.swappiness": 30}}}"#);
    let a = hostguard(&["audit", "--format", "json", "--root", &r.arg(), &closes]);
    assert_eq!(a.json()["findings"][0]["closed_by_state"], true);
    let b = hostguard(&["audit", "--format", "json", "--root", &r.arg(), &keeps]);
    assert_eq!(b.json()["findings"][0]["closed_by_state"], false);
    // --emit-state with a document: the fix wins where they disagree, the rest is kept.
    let merged = hostguard(&["audit", "--emit-state", "--root", &r.arg(), &keeps]);
    let m: serde_json::Value = serde_json::from_str(&merged.stdout).unwrap();
    assert_eq!(m["sysctl"]["values"]["vm.swappiness"], 10);
}

#[test]
fn fail_on_high_ignores_low_findings() {
    let r = container_host("60");
    hostguard(&["audit", "--format", "json", "--fail-on", "high", "--root", &r.arg()]).expect(0);
}

#[test]
fn a_clean_host_has_no_finding() {
    let r = container_host("10");
    let audit = hostguard(&["audit", "--format", "json", "--root", &r.arg()]);
    audit.expect(0);
    assert_eq!(audit.json()["findings"].as_array().unwrap().len(), 0, "{}", audit.stdout);
}
