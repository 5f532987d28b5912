//! SPEC section 5: `show` prints the host as a document that `validate` accepts, `plan` finds in
//! sync and `apply` leaves unchanged, on any host. Issue 14: on a stock machine `validate` refused
//! `show`'s own output (empty values), and `plan` then found drift on `kernel.ns_last_pid`.

use crate::util;

use std::os::unix::fs::PermissionsExt;

use util::{hostguard, FakeRoot, Netns, Run};

fn values(show: &Run) -> serde_json::Map<String, serde_json::Value> {
    show.json()["sysctl"]["values"].as_object().unwrap().clone()
}

/// show -> validate -> plan, each exit 0; returns the document's path.
fn round_trip(r: &FakeRoot, run: &dyn Fn(&[&str]) -> Run, tag: &str) -> (String, Run) {
    let show = run(&["show"]);
    show.expect(0);
    let doc = r.doc(tag, &show.stdout);
    run(&["validate", &doc]).expect(0);
    let plan = run(&["plan", "--format", "json", &doc]);
    assert_eq!(plan.code, 0, "{tag}: plan of show's document is not in sync:\n{}", not_in_sync(&plan));
    (doc, show)
}

fn not_in_sync(plan: &Run) -> String {
    let j = plan.json();
    j["resources"].as_array().unwrap().iter().filter(|r| r["status"] != "in_sync").map(|r| r.to_string()).collect::<Vec<_>>().join("\n")
}

#[test]
fn show_round_trips_on_this_machine() {
    // Read only: plan, never apply, of the machine's own keys (vm.*, kernel.* are not per
    // namespace). apply is run in a namespace below and on a kernel of its own in the cgroup v2 VM.
    let r = FakeRoot::new();
    let (_, show) = round_trip(&r, &|a: &[&str]| hostguard(a), "machine");
    let v = values(&show);
    assert!(v.len() > 100, "{} keys", v.len());
    // Empty values are values.
    assert_eq!(v.get("net.ipv4.ip_local_reserved_ports"), Some(&serde_json::json!("")));
    // Left out by the rule, not by name: write-only triggers, read-only state, a handler that
    // prints nothing, a value that moves by itself.
    for left_out in ["vm.drop_caches", "vm.compact_memory", "net.ipv4.route.flush", "fs.file-nr", "kernel.random.uuid",
                     "vm.stat_refresh", "kernel.ns_last_pid"] {
        assert!(!v.contains_key(left_out), "{left_out} shown");
    }
    // --all prints what can be read, for a person.
    let all = hostguard(&["show", "--all", "--sysctl", "kernel", "--sysctl", "fs"]);
    all.expect(0);
    let a = values(&all);
    for k in ["kernel.ns_last_pid", "fs.file-nr", "kernel.random.boot_id"] {
        assert!(a.contains_key(k), "--all lacks {k}");
    }
}

#[test]
fn show_round_trips_and_apply_changes_nothing_in_a_fresh_namespace() {
    let ns = Netns::new("show");
    let r = FakeRoot::new();
    let run = |a: &[&str]| ns.hostguard(a);
    round_trip(&r, &run, "netns");
    // apply of everything that is the namespace's own (net.* keys, its firewall): exit 0, and
    // the host reads back the same document.
    let show = run(&["show", "--sysctl", "net"]);
    show.expect(0);
    let doc = r.doc("net", &show.stdout);
    let apply = run(&["apply", "--format", "json", &doc]);
    assert_eq!(apply.code, 0, "apply of show's document changed something:\n{}", not_in_sync(&apply));
    let again = run(&["show", "--sysctl", "net"]);
    assert_eq!(again.stdout, show.stdout, "the namespace reads back differently after apply");
}

#[test]
fn show_leaves_out_what_the_file_modes_and_handlers_say_cannot_be_held() {
    let r = FakeRoot::new();
    r.sysctls(&[("vm.swappiness", "60"), ("fs.file-nr", "1 0 100"), ("vm.drop_caches", "0"), ("net.ipv4.ip_local_reserved_ports", "")]);
    r.write("/proc/sys/vm/stat_refresh", "");
    let mode = |k: &str, m: u32| std::fs::set_permissions(r.host_path(k), std::fs::Permissions::from_mode(m)).unwrap();
    mode("/proc/sys/fs/file-nr", 0o444);
    mode("/proc/sys/vm/drop_caches", 0o200);
    let show = hostguard(&["show", "--root", &r.arg()]);
    show.expect(0);
    let v = values(&show);
    assert_eq!(serde_json::Value::Object(v.clone()), serde_json::json!({"net.ipv4.ip_local_reserved_ports": "", "vm.swappiness": 60}));
    let doc = r.doc("shown", &show.stdout);
    hostguard(&["plan", "--format", "json", "--root", &r.arg(), &doc]).expect(0);
    let all = hostguard(&["show", "--all", "--root", &r.arg()]);
    let a = values(&all);
    assert_eq!(a.get("fs.file-nr"), Some(&serde_json::json!("1 0 100")));
    assert!(a.contains_key("vm.stat_refresh"));
}
