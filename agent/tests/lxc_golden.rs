//! Golden files for LXC configs: the managed keys rendered for each dialect and cgroup version,
//! real-world configs (as lxc-create writes them, hand-edited ones with comments and includes,
//! an LXC 2.0 one) read and written back byte for byte, and each converged with a document.
//!
//! `UPDATE_GOLDEN=1 cargo test --test main lxc_golden::` rewrites the expected files; review the diff.

use std::path::PathBuf;

use hostguard::cgroup::Version as CgroupVersion;
use hostguard::lxc::Config;
use hostguard::lxc::{converge, render_text, Dialect, Env, Omit, Renderer};
use hostguard::state::lxc::Container;

fn golden_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden/lxc")
}

fn read(rel: &str) -> String {
    let p = golden_dir().join(rel);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

#[track_caller]
fn golden(rel: &str, actual: &str) {
    let p = golden_dir().join(rel);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, actual).unwrap();
        return;
    }
    let want = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e} (UPDATE_GOLDEN=1 creates it)", p.display()));
    assert!(want == actual, "{rel} differs from the golden file.\n--- expected\n{want}\n--- actual\n{actual}");
}

fn container(json: &str) -> Container {
    let doc = format!(r#"{{"version": 1, "lxc": {{"containers": {{"web1": {json}}}}}}}"#);
    let d = hostguard::state::load(doc.as_bytes(), "test").unwrap_or_else(|e| panic!("{e}"));
    d.lxc.unwrap().containers.remove(0)
}

const SPEC: &str = r#"{
    "memory_limit": "512M", "memory_swap_limit": "1G", "cpu_shares": 512,
    "network": [{ "type": "veth", "link": "lxcbr0", "flags": "up", "ipv4.address": ["10.0.3.10/24", "10.0.3.11/24"],
                  "ipv4.gateway": "10.0.3.1" },
                { "type": "empty" }],
    "cap_drop": ["sys_module", "sys_time", "sys_rawio", "mac_admin", "mac_override"],
    "idmap": [{ "type": "u", "container": 0, "host": 100000, "count": 65536 },
              { "type": "g", "container": 0, "host": 100000, "count": 65536 }],
    "config": { "lxc.start.auto": "1", "lxc.apparmor.profile": "generated" },
    "live": true }"#;

fn env(dialect: Dialect, v: CgroupVersion) -> Env {
    Env { dialect, cgroup: v }
}

const ENVS: [(Dialect, CgroupVersion, &str); 4] = [
    (Dialect::Modern, CgroupVersion::V1, "modern-v1"),
    (Dialect::Modern, CgroupVersion::V2, "modern-v2"),
    (Dialect::Legacy, CgroupVersion::V1, "legacy-v1"),
    (Dialect::Legacy, CgroupVersion::V2, "legacy-v2"),
];

#[test]
fn renders_the_managed_keys_for_each_dialect_and_cgroup_version() {
    let c = container(SPEC);
    for (d, v, name) in ENVS {
        let text = render_text(&Renderer::new(env(d, v)), &c).unwrap();
        golden(&format!("render/{name}.conf"), &text);
    }
}

#[test]
fn unlimited_sizes_render_as_each_version_spells_them() {
    let c = container(r#"{ "memory_limit": "max", "memory_swap_limit": "max" }"#);
    let v1 = render_text(&Renderer::new(env(Dialect::Modern, CgroupVersion::V1)), &c).unwrap();
    assert_eq!(v1, "lxc.cgroup.memory.limit_in_bytes = -1\nlxc.cgroup.memory.memsw.limit_in_bytes = -1\n");
    let v2 = render_text(&Renderer::new(env(Dialect::Modern, CgroupVersion::V2)), &c).unwrap();
    assert_eq!(v2, "lxc.cgroup2.memory.max = max\nlxc.cgroup2.memory.swap.max = max\n");
}

const ROUNDTRIP: [&str; 5] = ["busybox", "download-debian", "hand-edited", "legacy-lxc20", "wrong-cgroup-version"];

#[test]
fn real_world_configs_round_trip_byte_for_byte() {
    for name in ROUNDTRIP {
        let text = read(&format!("roundtrip/{name}.conf"));
        assert_eq!(Config::parse(&text).text(), text, "{name}");
    }
}

#[test]
fn configs_that_need_nothing_are_left_exactly_as_they_are() {
    let modern_v1 = env(Dialect::Modern, CgroupVersion::V1);
    for name in ["busybox", "download-debian", "hand-edited"] {
        let text = read(&format!("roundtrip/{name}.conf"));
        let out = converge(&Config::parse(&text), &[], modern_v1);
        assert!(out.changes.is_empty(), "{name}: {:?}", out.changes);
        assert_eq!(out.config.text(), text, "{name}");
    }
    // The document names what the hand-edited file already says, in other spellings and orders.
    let text = read("roundtrip/hand-edited.conf");
    let c = container(
        r#"{ "memory_limit": "1G", "cpu_shares": 1024, "cap_drop": ["MAC_OVERRIDE", "sys_module", "mac_admin"],
             "network": [{ "type": "veth", "flags": "up", "link": "br-app", "ipv4.gateway": "10.20.0.1",
                           "ipv4.address": ["10.20.0.13/24", "10.20.0.14/24"] }],
             "config": { "lxc.uts.name": "web3", "lxc.start.delay": "5" } }"#,
    );
    let settings = Renderer::new(modern_v1).settings(&c, Omit::default()).unwrap();
    let out = converge(&Config::parse(&text), &settings, modern_v1);
    assert!(out.changes.is_empty(), "{:?}", out.changes);
    assert_eq!(out.config.text(), text);
}

/// (input, document, environment, golden name)
const CONVERGE: [(&str, &str, usize); 8] = [
    ("busybox", SPEC, 0),
    ("busybox", SPEC, 1),
    ("download-debian", r#"{ "memory_limit": "256M", "network": [{ "type": "empty" }], "cap_drop": ["sys_time"] }"#, 0),
    (
        "hand-edited",
        r#"{ "memory_limit": "512M", "memory_swap_limit": "768M", "cap_drop": ["sys_module", "sys_time"],
             "network": [{ "type": "veth", "link": "br-app", "flags": "up", "ipv4.address": "10.20.0.13/24" }],
             "config": { "lxc.start.auto": "1", "lxc.uts.name": "web3" } }"#,
        0,
    ),
    ("hand-edited", "{}", 1),
    ("legacy-lxc20", r#"{ "memory_limit": "256M" }"#, 0),
    ("legacy-lxc20", r#"{ "memory_limit": "256M", "network": [{ "type": "veth", "link": "br0", "ipv4.address": "10.0.3.51/24" }] }"#, 2),
    ("wrong-cgroup-version", r#"{ "cpu_shares": 512 }"#, 0),
];

#[test]
fn real_world_configs_converge_keeping_the_operators_lines() {
    for (input, doc, e) in CONVERGE {
        let (d, v, env_name) = ENVS[e];
        let env = env(d, v);
        let text = read(&format!("roundtrip/{input}.conf"));
        let c = container(doc);
        let settings = Renderer::new(env).settings(&c, Omit::default()).unwrap();
        let out = converge(&Config::parse(&text), &settings, env);
        let mut shown = out.config.text();
        shown.push_str("\n#### changes\n");
        for ch in &out.changes {
            shown.push_str(&format!("# [{}] {:?}\n", ch.what, ch.class));
            for l in &ch.diff {
                shown.push_str(&format!("# {l}\n"));
            }
        }
        golden(&format!("converge/{input}.{env_name}.conf"), &shown);
        // What apply wrote needs nothing more: the second run is a no-op.
        let again = converge(&out.config, &settings, env);
        assert!(again.changes.is_empty(), "{input} {env_name}: not a fixed point: {:?}", again.changes);
    }
}
