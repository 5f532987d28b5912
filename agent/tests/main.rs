//! The integration tests, one binary (ripgrep's layout): each file below is a module, so the
//! crate and the helpers are compiled and linked once rather than once per file. Run one file's
//! tests with `cargo test --test main FILE::` (`cargo test --test main crash::`).

mod props;
mod remote_support;
mod util;

mod audit;
mod audit_firewall;
mod bad_input;
mod cgroup_v1;
mod concurrency;
mod corpus;
mod corpus_docker;
mod corpus_iptables;
mod corpus_libvirt;
mod corpus_lxc;
mod corpus_nftables;
mod corpus_sysctl;
mod crash;
mod distribution;
mod iptables;
mod lxc;
mod lxc_golden;
mod nftables;
mod properties;
mod remote;
mod remote_report;
mod show_roundtrip;
mod special_files;
mod sysctl;
mod stale_temps;

/// With one binary, cargo no longer finds test files by itself: a file in tests/ that is not a
/// module above would silently never run.
#[test]
fn every_test_file_is_a_module_of_this_binary() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests");
    let main = std::fs::read_to_string(dir.join("main.rs")).unwrap();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        let Some(module) = name.strip_suffix(".rs").filter(|m| *m != "main") else { continue };
        assert!(main.lines().any(|l| l == format!("mod {module};")), "agent/tests/{name} is not run: add `mod {module};` to agent/tests/main.rs");
    }
}
