//! Unit tests on temp-dir roots laid out like cgroup mounts (plain files: no kernel rules).

use std::fs;
use std::path::Path;

use super::*;
use crate::state::types::Limit;
use crate::report::Status;
use crate::state::cgroup::PidsMax;

/// Plan and apply one group's limits in one go, as the `cgroups` kind does.
fn converge(host: &Host, b: &dyn Backend, g: &CgroupPath, l: &Limits, id: &str) -> Vec<ResourceReport> {
    let files = HostDir { host, backend: b, group: g };
    GroupPlan::read(host, b, &files, l, "cgroup", id).unwrap().apply(host, b, &files)
}

fn put(root: &Path, rel: &str, content: &str) {
    let p = root.join(rel);
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(p, content).unwrap();
}

fn v1_root() -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    let r = d.path();
    put(r, "sys/fs/cgroup/memory/cgroup.procs", "");
    put(r, "sys/fs/cgroup/memory/memory.memsw.limit_in_bytes", "9223372036854771712\n");
    put(r, "sys/fs/cgroup/cpu/cgroup.procs", "");
    put(r, "sys/fs/cgroup/pids/cgroup.procs", "");
    put(r, "sys/fs/cgroup/unified/cgroup.controllers", "");
    d
}

fn v2_root() -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    put(d.path(), "sys/fs/cgroup/cgroup.controllers", "cpuset cpu io memory pids\n");
    put(d.path(), "sys/fs/cgroup/cgroup.subtree_control", "");
    d
}

/// A v1 host booted without swap accounting (no `memory.memsw.*` files) holding group `g`, and
/// limits that ask memory+swap of it.
fn v1_without_swap_accounting() -> (tempfile::TempDir, Limits) {
    let d = v1_root();
    fs::remove_file(d.path().join("sys/fs/cgroup/memory/memory.memsw.limit_in_bytes")).unwrap();
    put(d.path(), "sys/fs/cgroup/memory/g/memory.limit_in_bytes", "9223372036854771712");
    (d, Limits { memory: Some(Limit::Bytes(1 << 20)), memory_swap: Some(Limit::Bytes(2 << 20)), ..Limits::default() })
}

fn limits() -> Limits {
    Limits {
        memory: Some(Limit::Bytes(512 << 20)),
        memory_swap: Some(Limit::Bytes(1 << 30)),
        cpu_shares: Some(512),
        pids_max: Some(PidsMax::Count(100)),
    }
}

#[test]
fn layouts_are_told_apart() {
    let v1 = v1_root();
    assert_eq!(layout(&Host::new(v1.path())), Layout::V1 { hybrid: true });
    let v2 = v2_root();
    assert_eq!(layout(&Host::new(v2.path())), Layout::V2);
    let none = tempfile::tempdir().unwrap();
    assert_eq!(layout(&Host::new(none.path())), Layout::None);
}

#[test]
fn a_forced_version_the_host_lacks_is_refused() {
    let v2 = v2_root();
    let e = detect(&Host::new(v2.path()), VersionChoice::V1).unwrap_err().to_string();
    assert!(e.contains("cgroup v2"), "{e}");
    let v1 = v1_root();
    let b = detect(&Host::new(v1.path()), VersionChoice::V2).unwrap();
    assert_eq!(b.version(), Version::V2);
    // The hybrid host's v2 hierarchy has no controllers: said so, per setting.
    let why = b.unavailable(&Host::new(v1.path()), Setting::Memory).unwrap().unwrap();
    assert!(why.contains("hybrid") || why.contains("v1 beside"), "{why}");
}

#[test]
fn v1_maps_to_v1_files() {
    let b = V1::new("/sys/fs/cgroup");
    let l = limits();
    assert_eq!(b.target(Setting::Memory, &l).file, "memory.limit_in_bytes");
    assert_eq!(b.target(Setting::MemorySwap, &l).file, "memory.memsw.limit_in_bytes");
    assert_eq!(b.target(Setting::MemorySwap, &l).value, Native::Bytes(Limit::Bytes(1 << 30)));
    assert_eq!(b.target(Setting::CpuShares, &l).value, Native::Number(512));
    assert_eq!(Native::Bytes(Limit::Max).render(Version::V1), "-1");
    assert_eq!(
        Native::Bytes(Limit::Bytes(0)).parse_like("9223372036854771712\n", Version::V1),
        Some(Native::Bytes(Limit::Max))
    );
}

#[test]
fn v2_maps_swap_and_weight() {
    let b = V2::new("/sys/fs/cgroup", false);
    let l = limits();
    let swap = b.target(Setting::MemorySwap, &l);
    assert_eq!((swap.file, swap.value), ("memory.swap.max", Native::Bytes(Limit::Bytes(512 << 20))));
    let cpu = b.target(Setting::CpuShares, &l);
    assert_eq!((cpu.file, cpu.value), ("cpu.weight", Native::Number(59)));
    assert_eq!(Native::Bytes(Limit::Max).render(Version::V2), "max");
}

#[test]
fn page_rounded_read_back_is_in_sync() {
    let want = Native::Bytes(Limit::Bytes(1_000_000));
    assert!(Native::Bytes(Limit::Bytes(page_rounded(1_000_000))).satisfies(want));
    assert!(!Native::Bytes(Limit::Bytes(page_rounded(1_000_000) - convert::page_size())).satisfies(want));
}

#[test]
fn v1_missing_group_is_created_in_each_hierarchy_then_in_sync() {
    let d = v1_root();
    let host = Host::new(d.path());
    let b = detect(&host, VersionChoice::Auto).unwrap();
    let g = CgroupPath::parse("hostguard/web1").unwrap();
    let files = HostDir { host: &host, backend: &*b, group: &g };
    let plan = GroupPlan::read(&host, &*b, &files, &limits(), "cgroup", "cgroup/hostguard/web1").unwrap();
    let before = plan.reports();
    assert!(before.iter().all(|r| r.status == Status::Drift && r.message.contains("apply creates it")), "{before:?}");
    // Plain files stand in for the kernel's: seed the defaults a new group shows.
    for (f, v) in [
        ("memory/hostguard/web1/memory.limit_in_bytes", "9223372036854771712"),
        ("memory/hostguard/web1/memory.memsw.limit_in_bytes", "9223372036854771712"),
        ("cpu/hostguard/web1/cpu.shares", "1024"),
        ("pids/hostguard/web1/pids.max", "max"),
    ] {
        put(d.path(), &format!("sys/fs/cgroup/{f}"), v);
    }
    let after = plan.apply(&host, &*b, &files);
    assert!(after.iter().all(|r| r.status == Status::Changed), "{after:?}");
    let read = |f: &str| fs::read_to_string(d.path().join("sys/fs/cgroup").join(f)).unwrap();
    assert_eq!(read("memory/hostguard/web1/memory.limit_in_bytes"), "536870912");
    assert_eq!(read("memory/hostguard/web1/memory.memsw.limit_in_bytes"), "1073741824");
    assert_eq!(read("cpu/hostguard/web1/cpu.shares"), "512");
    assert_eq!(read("pids/hostguard/web1/pids.max"), "100");
    let again = converge(&host, &*b, &g, &limits(), "cgroup/hostguard/web1");
    assert!(again.iter().all(|r| r.status == Status::InSync), "{again:?}");
}

#[test]
fn v1_without_swap_accounting_fails_memsw_with_what_to_do() {
    let (d, l) = v1_without_swap_accounting();
    let host = Host::new(d.path());
    let b = detect(&host, VersionChoice::Auto).unwrap();
    let g = CgroupPath::parse("g").unwrap();
    let r = converge(&host, &*b, &g, &l, "cgroup/g");
    assert_eq!(r[0].status, Status::Changed, "{r:?}");
    assert_eq!(r[1].status, Status::Failed);
    assert!(r[1].message.contains("swapaccount=1"), "{}", r[1].message);
}

/// Issue 14: a setting the host cannot hold (here memsw without swap accounting) was drift in
/// plan and failed in apply: the plan promised what apply could not do.
#[test]
fn a_setting_the_host_cannot_hold_is_failed_already_in_plan() {
    let (d, l) = v1_without_swap_accounting();
    let host = Host::new(d.path());
    let b = detect(&host, VersionChoice::Auto).unwrap();
    let g = CgroupPath::parse("g").unwrap();
    let plan = GroupPlan::read(&host, &*b, &HostDir { host: &host, backend: &*b, group: &g }, &l, "cgroup", "cgroup/g").unwrap().reports();
    assert_eq!(plan[0].status, Status::Drift, "{plan:?}");
    assert_eq!(plan[1].status, Status::Failed, "{plan:?}");
    let applied = converge(&host, &*b, &g, &l, "cgroup/g");
    assert_eq!(applied[1].message, plan[1].message, "the same message in plan and apply");
}

#[test]
fn v2_creation_enables_controllers_in_each_parent() {
    let d = v2_root();
    // An existing middle group that already passes memory down (a plain file cannot appear by itself).
    put(d.path(), "sys/fs/cgroup/a/cgroup.subtree_control", "memory\n");
    let host = Host::new(d.path());
    let b = detect(&host, VersionChoice::Auto).unwrap();
    let g = CgroupPath::parse("a/b").unwrap();
    b.create(&host, &g, &[Controller::Memory]).unwrap();
    let root = d.path().join("sys/fs/cgroup");
    assert_eq!(fs::read_to_string(root.join("cgroup.subtree_control")).unwrap(), "+memory");
    assert!(root.join("a/b").is_dir());
}

#[test]
fn show_lists_groups_under_the_prefix_in_document_form() {
    let d = v2_root();
    let r = d.path();
    put(r, "sys/fs/cgroup/hg/web1/memory.max", "536870912\n");
    put(r, "sys/fs/cgroup/hg/web1/memory.swap.max", "536870912\n");
    put(r, "sys/fs/cgroup/hg/web1/cpu.weight", "100\n");
    put(r, "sys/fs/cgroup/hg/web1/pids.max", "max\n");
    put(r, "sys/fs/cgroup/other/memory.max", "max\n");
    let host = Host::new(r);
    let opts = crate::kind::Options::default();
    let ctx = Ctx { host: &host, opts: &opts };
    let v = show(&ctx, &["hg".into()]).unwrap().unwrap();
    assert_eq!(v["version"], "v2");
    let web1 = &v["groups"]["hg/web1"];
    assert_eq!(web1["memory_limit"], "512M");
    assert_eq!(web1["memory_swap_limit"], "1G");
    assert_eq!(shares_to_weight(web1["cpu_shares"].as_u64().unwrap()), 100);
    assert_eq!(web1["pids_max"], "max");
    assert!(v["groups"].get("other").is_none());
    assert!(show(&ctx, &["../x".into()]).is_err());
}

/// `Version::limits_from` is `target` read backwards: the file a document's limits give reads
/// back as limits that give that very file and value again (LXC's show and its translation of a
/// wrong-version line rely on it), and `setting_of` names the setting of every file.
#[test]
fn the_table_read_backwards_gives_limits_that_write_the_same_file() {
    let sizes = [None, Some(Limit::Max), Some(Limit::Bytes(256 << 20)), Some(Limit::Bytes(1 << 30))];
    for v in [Version::V1, Version::V2] {
        for memory in sizes {
            for memory_swap in sizes {
                // Validation refuses memory+swap below memory, or bounded beside no bounded memory.
                if let Some(Limit::Bytes(s)) = memory_swap {
                    if !matches!(memory, Some(Limit::Bytes(m)) if m <= s) {
                        continue;
                    }
                }
                for cpu_shares in [None, Some(2), Some(512), Some(1000), Some(1024), Some(262_144)] {
                    for pids_max in [None, Some(PidsMax::Max), Some(PidsMax::Count(50))] {
                        let l = Limits { memory, memory_swap, cpu_shares, pids_max };
                        for s in Setting::named_by(&l) {
                            let t = v.target(s, &l);
                            assert_eq!(v.setting_of(t.file), Some(s), "{v} {}", t.file);
                            let back = v.limits_from(s, t.value, l.memory).unwrap_or_else(|| panic!("{v} {s:?} {l:?}"));
                            assert_eq!(v.target(s, &back), t, "{v} {s:?} {l:?} read back as {back:?}");
                        }
                    }
                }
            }
        }
    }
    assert_eq!(Version::V2.setting_of("memory.limit_in_bytes"), None);
    assert_eq!(Version::V2.limits_from(Setting::MemorySwap, Native::Bytes(Limit::Bytes(1 << 20)), None), None);
}
