//! LXC containers: isolation (user namespace, capabilities, AppArmor, seccomp, mounts, devices),
//! resource limits, and config keys that LXC ignores or refuses. Each reads the config as LXC
//! does (`lxc.include` files expanded in place, the last line of a single-valued key winning).

use std::collections::BTreeSet;

use serde_json::{json, Value};

use super::{finding, Facts, Finding, Severity};
use crate::audit::facts::Container;
use crate::cgroup::Setting;
use crate::lxc::{cgroup_file_key, cgroup_key, cgroup_keys, cgroup_limits_of, is_legacy_key, parse_size, translate, wrong_version_key, Dialect};
use crate::state::lxc::DEFAULT_LXCPATH;
use crate::state::types::Limit;

/// Capabilities no container should hold: loading kernel modules, raw I/O to devices, the
/// system clock, and the LSM policy (LXC's own common.conf drops exactly these).
const DANGEROUS_CAPS: [&str; 5] = ["mac_admin", "mac_override", "sys_module", "sys_rawio", "sys_time"];

/// A pids limit generous for a full distribution container and fatal to a fork bomb.
const DEFAULT_PIDS_MAX: u64 = 4096;

/// Where each container's id range starts when a fix maps one, and how many ids it maps
/// (the `usermod --add-subuids` and LXC documentation defaults).
const IDMAP_BASE: u64 = 100_000;
const IDMAP_COUNT: u64 = 65_536;

fn subject(c: &Container) -> String {
    format!("lxc/{}", c.name)
}

/// The `lxc` fragment naming one container with `fields`.
fn fix(f: &Facts, c: &Container, fields: Value) -> Value {
    let mut lxc = json!({"containers": {c.name.clone(): fields}});
    if f.lxcpath != DEFAULT_LXCPATH {
        lxc["lxcpath"] = json!(f.lxcpath);
    }
    json!({ "lxc": lxc })
}

fn v(f: &Facts) -> u8 {
    f.cgroup.number()
}

/// The right-version key of a limit (`lxc.cgroup2.memory.max` on v2), and the other version's,
/// which LXC ignores on this host: the cgroup kind's files, as `lxc::plan` writes them.
fn keys(f: &Facts, setting: Setting) -> (String, String) {
    let right = cgroup_key(setting, f.cgroup);
    let wrong = cgroup_keys(setting).into_iter().find(|k| *k != right).unwrap_or_default();
    (right, wrong)
}

fn key(f: &Facts, setting: Setting) -> String {
    keys(f, setting).0
}

fn is_privileged(c: &Container) -> bool {
    c.last_of(&["lxc.idmap", "lxc.id_map"]).is_none()
}

/// A list key read as LXC reads it: tokens accumulate over lines, an empty value clears them.
fn tokens(c: &Container, key: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for v in c.values(key) {
        if v.trim().is_empty() {
            out.clear();
        }
        for t in v.split_whitespace() {
            let t = t.to_ascii_lowercase();
            out.insert(t.strip_prefix("cap_").map(str::to_string).unwrap_or(t));
        }
    }
    out
}

/// The host uid range (start, end) a container maps, from its `u` lines.
fn uid_ranges(c: &Container) -> Vec<(u64, u64)> {
    c.values("lxc.idmap")
        .chain(c.values("lxc.id_map"))
        .filter_map(|v| {
            let p: Vec<&str> = v.split_whitespace().collect();
            let (start, count) = (p.get(2)?.parse::<u64>().ok()?, p.get(3)?.parse::<u64>().ok()?);
            (p.first() == Some(&"u")).then_some((start, start + count))
        })
        .collect()
}

fn overlaps(a: (u64, u64), b: (u64, u64)) -> bool {
    a.0 < b.1 && b.0 < a.1
}

/// Which containers a fix gives a new id range, and where it starts: privileged ones, and
/// every container whose range overlaps one of a container before it (by name). One allocation
/// for both checks, so their fixes never hand out the same range twice.
fn allocations(f: &Facts) -> Vec<(&Container, u64, Option<String>)> {
    let mut used: Vec<(u64, u64)> = Vec::new();
    let mut kept: Vec<(&str, (u64, u64))> = Vec::new();
    let mut need: Vec<(&Container, Option<String>)> = Vec::new();
    for c in &f.containers {
        let ranges = uid_ranges(c);
        if ranges.is_empty() {
            need.push((c, None));
            continue;
        }
        let shared = kept.iter().find(|(_, k)| ranges.iter().any(|r| overlaps(*r, *k))).map(|(n, _)| n.to_string());
        match shared {
            Some(other) => need.push((c, Some(other))),
            None => {
                used.extend(&ranges);
                kept.extend(ranges.iter().map(|r| (c.name.as_str(), *r)));
            }
        }
    }
    // Ranges of containers that get a new one are still taken until they are moved.
    used.extend(need.iter().flat_map(|(c, _)| uid_ranges(c)));
    need.into_iter()
        .map(|(c, shared)| {
            let start = free_block(f, &used);
            used.push((start, start + IDMAP_COUNT));
            (c, start, shared)
        })
        .collect()
}

fn within(r: (u64, u64), ranges: &[(u64, u64)]) -> bool {
    ranges.iter().any(|&(s, e)| s <= r.0 && r.1 <= e)
}

/// The first free 65536-id block that root's /etc/subuid and /etc/subgid both delegate; when
/// they delegate none, the first free block from 100000 (the remedy then says to delegate it).
fn free_block(f: &Facts, used: &[(u64, u64)]) -> u64 {
    let free = |s: u64| !used.iter().any(|&r| overlaps(r, (s, s + IDMAP_COUNT)));
    for &(s, e) in &f.root_subuid {
        let mut start = s;
        while start + IDMAP_COUNT <= e {
            let block = (start, start + IDMAP_COUNT);
            if free(start) && within(block, &f.root_subgid) {
                return start;
            }
            start += IDMAP_COUNT;
        }
    }
    let mut start = IDMAP_BASE;
    while !free(start) {
        start += IDMAP_COUNT;
    }
    start
}

/// Every map line (kind, host start, host end) of a container.
fn maps(c: &Container) -> Vec<(char, u64, u64)> {
    c.values("lxc.idmap")
        .chain(c.values("lxc.id_map"))
        .filter_map(|v| {
            let p: Vec<&str> = v.split_whitespace().collect();
            let kind = p.first()?.chars().next()?;
            let (start, count) = (p.get(2)?.parse::<u64>().ok()?, p.get(3)?.parse::<u64>().ok()?);
            Some((kind, start, start + count))
        })
        .collect()
}

/// With `newuidmap` installed LXC maps ids through it, even as root, and it refuses any range
/// /etc/subuid or /etc/subgid does not delegate to root: the container does not start.
pub fn idmap_not_delegated(f: &Facts) -> Vec<Finding> {
    if !f.newuidmap {
        return vec![];
    }
    let mut out = Vec::new();
    for c in &f.containers {
        let missing: Vec<String> = maps(c)
            .into_iter()
            .filter(|&(kind, s, e)| match kind {
                'u' => !within((s, e), &f.root_subuid),
                'g' => !within((s, e), &f.root_subgid),
                _ => false,
            })
            .map(|(kind, s, e)| format!("{kind} {s}-{}", e - 1))
            .collect();
        if missing.is_empty() {
            continue;
        }
        let add: Vec<String> = maps(c).into_iter().map(|(kind, s, e)| format!("--add-sub{kind}ids {s}-{}", e - 1)).collect();
        out.push(finding(
            "lxc.idmap_not_delegated",
            Severity::High,
            subject(c),
            format!("container {} maps host ids that /etc/subuid or /etc/subgid do not delegate to root: it will not start", c.name),
            format!("not delegated: {}; newuidmap refuses such a map", missing.join(", ")),
            None,
            Some(format!(
                "delegate the range to root (usermod {} root); hostguard does not manage /etc/subuid and /etc/subgid",
                add.join(" ")
            )),
            "subuid(5), newuidmap(1); lxc.container.conf(5) lxc.idmap; LXC \"Getting started\" (unprivileged containers as root)",
        ));
    }
    out
}

fn idmap_fix(start: u64) -> Value {
    json!([
        {"type": "u", "container": 0, "host": start, "count": IDMAP_COUNT},
        {"type": "g", "container": 0, "host": start, "count": IDMAP_COUNT}
    ])
}

fn shift_remedy(f: &Facts, start: u64) -> String {
    let end = start + IDMAP_COUNT - 1;
    let delegate = if within((start, start + IDMAP_COUNT), &f.root_subuid) && within((start, start + IDMAP_COUNT), &f.root_subgid) {
        String::new()
    } else {
        format!("delegate that range to root (usermod --add-subuids {start}-{end} --add-subgids {start}-{end} root) and ")
    };
    format!(
        "the fix maps ids 0-65535 to host ids {start}-{end}; before restarting the container, {delegate}shift the root \
         filesystem's ownership to that range (or recreate the container unprivileged), else it will not boot"
    )
}

/// A container whose root is the host's root: a breakout is a host root shell.
pub fn privileged(f: &Facts) -> Vec<Finding> {
    allocations(f)
        .into_iter()
        .filter(|(_, _, shared)| shared.is_none())
        .map(|(c, start, _)| {
            finding(
                "lxc.privileged",
                Severity::High,
                subject(c),
                format!("container {} is privileged: its root is the host's root", c.name),
                "no lxc.idmap line (after includes): uid 0 in the container is uid 0 on the host",
                Some(fix(f, c, json!({ "idmap": idmap_fix(start) }))),
                Some(shift_remedy(f, start)),
                "LXC security documentation (linuxcontainers.org/lxc/security: privileged containers are not root-safe); lxc.container.conf(5) lxc.idmap",
            )
        })
        .collect()
}

/// Two unprivileged containers mapped to the same host ids are the same user to the kernel: a
/// breakout from one owns the other's files and processes.
pub fn idmap_shared(f: &Facts) -> Vec<Finding> {
    allocations(f)
        .into_iter()
        .filter_map(|(c, start, shared)| shared.map(|other| (c, start, other)))
        .map(|(c, start, other)| {
            let mine: Vec<String> = uid_ranges(c).iter().map(|(s, e)| format!("{s}-{}", e - 1)).collect();
            finding(
                "lxc.idmap_shared",
                Severity::Medium,
                subject(c),
                format!("container {} maps host ids that container {other} also maps", c.name),
                format!("host uid range {} overlaps container {other}'s", mine.join(", ")),
                Some(fix(f, c, json!({ "idmap": idmap_fix(start) }))),
                Some(shift_remedy(f, start)),
                "Incus/LXD security.idmap.isolated (a distinct id range per container); LXC security documentation (unprivileged containers)",
            )
        })
        .collect()
}

/// Capabilities that let root in a container act on the host's kernel.
pub fn cap_drop(f: &Facts) -> Vec<Finding> {
    let mut out = Vec::new();
    for c in &f.containers {
        let privileged = is_privileged(c);
        let severity = if privileged { Severity::High } else { Severity::Medium };
        let reference = "LXC common.conf (drops mac_admin mac_override sys_time sys_module sys_rawio); capabilities(7); Docker default capability set (none of these); CIS Docker Benchmark 5.3";
        let keep = tokens(c, "lxc.cap.keep");
        if !keep.is_empty() {
            let kept: Vec<&str> = DANGEROUS_CAPS.iter().chain(privileged.then_some(&"sys_admin")).copied().filter(|k| keep.contains(*k)).collect();
            if !kept.is_empty() {
                out.push(finding(
                    "lxc.cap_drop",
                    severity,
                    subject(c),
                    format!("container {} keeps {}", c.name, kept.join(", ")),
                    format!("lxc.cap.keep = {}", keep.iter().cloned().collect::<Vec<_>>().join(" ")),
                    None,
                    Some(format!(
                        "remove {} from the lxc.cap.keep lines of {}/{}/config: a document cannot set lxc.cap.keep (a list key), and \
                         LXC refuses lxc.cap.drop beside it",
                        kept.join(", "),
                        f.lxcpath,
                        c.name
                    )),
                    reference,
                ));
            }
            continue;
        }
        let dropped = tokens(c, "lxc.cap.drop");
        let mut required: Vec<&str> = DANGEROUS_CAPS.to_vec();
        if privileged {
            required.push("sys_admin");
        }
        let missing: Vec<&str> = required.into_iter().filter(|k| !dropped.contains(*k)).collect();
        if missing.is_empty() {
            continue;
        }
        // apply owns every lxc.cap.drop line of the container's own file: keep what it drops.
        let own: BTreeSet<String> = c
            .config
            .entries()
            .filter(|(_, e)| e.key == "lxc.cap.drop")
            .flat_map(|(_, e)| e.value.split_whitespace().map(|t| t.to_ascii_lowercase().trim_start_matches("cap_").to_string()).collect::<Vec<_>>())
            .collect();
        let mut drop: BTreeSet<String> = own;
        drop.extend(missing.iter().map(|s| s.to_string()));
        let seen = if dropped.is_empty() {
            "no lxc.cap.drop line (after includes): the container keeps every capability".to_string()
        } else {
            format!("lxc.cap.drop = {}", dropped.iter().cloned().collect::<Vec<_>>().join(" "))
        };
        out.push(finding(
            "lxc.cap_drop",
            severity,
            subject(c),
            format!("container {} keeps {}", c.name, missing.join(", ")),
            seen,
            Some(fix(f, c, json!({ "cap_drop": drop }))),
            missing.contains(&"sys_admin").then(|| {
                "sys_admin is required to drop because the container is privileged; a systemd-based container may need it: \
                 make the container unprivileged (lxc.privileged) instead and this requirement goes"
                    .to_string()
            }),
            reference,
        ));
    }
    out
}

/// A size limit of the right cgroup version, or of the wrong one (ignored by LXC until apply
/// translates it), as (key, limit).
fn size_of(c: &Container, right: &str, wrong: &str) -> (Option<Limit>, Option<Limit>) {
    (c.last(right).and_then(parse_size), c.last(wrong).and_then(parse_size))
}

fn memory_keys(f: &Facts) -> (String, String) {
    keys(f, Setting::Memory)
}

/// The memory a fix gives a container without a limit: three quarters of the host's memory
/// shared among its containers, in 64M steps, at least 256M; 1G when the host's is unknown.
fn default_memory(f: &Facts) -> Limit {
    const STEP: u64 = 64 << 20;
    match f.mem_total {
        Some(total) => {
            let n = f.containers.len().max(1) as u64;
            Limit::Bytes(((total / 4 * 3 / n) / STEP * STEP).max(256 << 20))
        }
        None => Limit::Bytes(1 << 30),
    }
}

/// Memory plus swap for a memory limit: twice the memory, Docker's default when only --memory
/// is given, so a container can swap at most as much as its memory.
fn swap_for(m: Limit) -> Limit {
    match m {
        Limit::Bytes(b) => Limit::Bytes(b.saturating_mul(2)),
        Limit::Max => Limit::Max,
    }
}

/// A container that can take all of the host's memory takes the others down with it.
pub fn memory_limit(f: &Facts) -> Vec<Finding> {
    let (right, wrong) = memory_keys(f);
    let mut out = Vec::new();
    for c in &f.containers {
        let (have, ignored) = size_of(c, &right, &wrong);
        if matches!(have, Some(Limit::Bytes(_))) {
            continue;
        }
        let (m, sized) = match ignored {
            Some(l @ Limit::Bytes(_)) => (l, format!("{l} is the limit the ignored line meant")),
            _ => {
                let m = default_memory(f);
                (m, format!("{m} is a starting point (three quarters of the host's memory shared among its containers): size it for the workload"))
            }
        };
        let mut fields = json!({"memory_limit": m.to_string()});
        if f.swap_accounting {
            fields["memory_swap_limit"] = json!(swap_for(m).to_string());
        }
        let seen = match (have, ignored) {
            (Some(_), _) => format!("{right} = max"),
            (None, Some(l)) => format!("no {right}; {wrong} = {l} is ignored on this cgroup v{} host", v(f)),
            (None, None) => format!("no {right} line (after includes)"),
        };
        out.push(finding(
            "lxc.memory_limit",
            Severity::Medium,
            subject(c),
            format!("container {} has no memory limit", c.name),
            seen,
            Some(fix(f, c, fields)),
            Some(sized),
            "CIS Docker Benchmark 5.10 (ensure memory usage for containers is limited); lxc.container.conf(5) lxc.cgroup.[controller]",
        ));
    }
    out
}

/// A memory limit with unlimited swap: the container pages its excess out and slows the host.
pub fn memory_swap_limit(f: &Facts) -> Vec<Finding> {
    let (mem_right, _) = memory_keys(f);
    let swap_key = key(f, Setting::MemorySwap);
    let mut out = Vec::new();
    for c in &f.containers {
        let Some(m @ Limit::Bytes(_)) = c.last(&mem_right).and_then(parse_size) else { continue };
        if matches!(c.last(&swap_key).and_then(parse_size), Some(Limit::Bytes(_))) {
            continue;
        }
        let (fix_value, remedy) = if f.swap_accounting {
            (Some(fix(f, c, json!({"memory_limit": m.to_string(), "memory_swap_limit": swap_for(m).to_string()}))), None)
        } else {
            (None, Some("swap accounting is off on this kernel (no memory.memsw.*): boot with swapaccount=1, then run the audit again".to_string()))
        };
        out.push(finding(
            "lxc.memory_swap_limit",
            Severity::Medium,
            subject(c),
            format!("container {} has a memory limit but unlimited memory+swap", c.name),
            format!("{mem_right} = {m}; no {swap_key} limit"),
            fix_value,
            remedy,
            "Docker docs \"Runtime options with Memory\" (--memory-swap defaults to twice --memory); CIS Docker Benchmark 5.10; kernel Documentation/admin-guide/cgroup-v2.rst (memory.swap.max)",
        ));
    }
    out
}

/// The cpu shares a container has, from this host's version's key (a v2 weight converted back
/// by the cgroup kind's table).
fn shares(f: &Facts, c: &Container) -> Option<u64> {
    let k = key(f, Setting::CpuShares);
    c.last(&k).and_then(|v| cgroup_limits_of(Setting::CpuShares, &k, v, None)).and_then(|l| l.cpu_shares)
}

/// One container without a cpu share among containers that have one competes at the default
/// 1024, which may be many times what its neighbours were given.
pub fn cpu_shares(f: &Facts) -> Vec<Finding> {
    let mut set: Vec<u64> = f.containers.iter().filter_map(|c| shares(f, c)).collect();
    if set.is_empty() {
        return vec![];
    }
    set.sort();
    let median = set[(set.len() - 1) / 2];
    let k = key(f, Setting::CpuShares);
    f.containers
        .iter()
        .filter(|c| shares(f, c).is_none())
        .map(|c| {
            finding(
                "lxc.cpu_shares",
                Severity::Low,
                subject(c),
                format!("container {} has no cpu share while other containers have one", c.name),
                format!("no {k} line; {} other container(s) have one (median {median} shares)", set.len()),
                Some(fix(f, c, json!({ "cpu_shares": median }))),
                None,
                "CIS Docker Benchmark 5.12 (ensure CPU priority is set appropriately); kernel Documentation/scheduler/sched-design-CFS.rst (group scheduling weights)",
            )
        })
        .collect()
}

/// Without a pids limit one fork bomb exhausts the host's process table for everyone.
pub fn pids_limit(f: &Facts) -> Vec<Finding> {
    let (k, wrong) = keys(f, Setting::PidsMax);
    let limited = |v: &str| v != "max" && v != "-1" && v.parse::<u64>().is_ok();
    let mut out = Vec::new();
    for c in &f.containers {
        let have = c.last(&k).map(str::trim);
        if have.is_some_and(limited) {
            continue;
        }
        // A limit written for the other cgroup version is what the operator meant.
        let ignored = c.last(&wrong).map(str::trim).filter(|v| limited(v));
        let value = ignored.map(str::to_string).unwrap_or_else(|| DEFAULT_PIDS_MAX.to_string());
        out.push(finding(
            "lxc.pids_limit",
            Severity::Low,
            subject(c),
            format!("container {} has no pids limit", c.name),
            match (have, ignored) {
                (Some(v), _) => format!("{k} = {v}"),
                (None, Some(w)) => format!("no {k}; {wrong} = {w} is ignored on this cgroup v{} host", v(f)),
                (None, None) => format!("no {k} line (after includes)"),
            },
            Some(fix(f, c, json!({"config": { k.clone(): value }}))),
            None,
            "CIS Docker Benchmark 5.28 (ensure the PIDs cgroup limit is used); kernel Documentation/admin-guide/cgroup-v2.rst (pids)",
        ));
    }
    out
}

/// `lxc.cgroup2.*` on a v1 host or `lxc.cgroup.*` on v2 is ignored without a word: the limit the
/// operator wrote is not there. A key whose right-version equivalent is also present (LXC's own
/// templates write both spellings of the device rules) is not a finding.
pub fn cgroup_version_keys(f: &Facts) -> Vec<Finding> {
    let mut out = Vec::new();
    for c in &f.containers {
        let [v1, v2] = cgroup_keys(Setting::Memory);
        let memory = c.last_of(&[&v1, &v2]).and_then(|(_, v)| parse_size(v));
        let ignored: Vec<String> = c
            .effective
            .iter()
            .filter(|e| match wrong_version_key(&e.key, f.cgroup) {
                None => false,
                Some(rest) => match translate(rest, &e.value, f.cgroup, memory) {
                    Some(eq) => !eq.iter().all(|(k, _)| c.effective.iter().any(|have| &have.key == k)),
                    None => true,
                },
            })
            .map(|e| format!("{} = {}", e.key, e.value))
            .collect();
        if ignored.is_empty() {
            continue;
        }
        out.push(finding(
            "lxc.cgroup_version_keys",
            Severity::Medium,
            subject(c),
            format!("container {} has cgroup keys that LXC ignores on this cgroup v{} host", c.name, v(f)),
            format!("ignored: {}", ignored.join("; ")),
            Some(fix(f, c, json!({}))),
            Some("apply translates each line to this host's cgroup version, or comments it out where there is no equivalent; it takes effect at the next start".into()),
            "lxc.container.conf(5) (lxc.cgroup.[controller] applies to cgroup v1, lxc.cgroup2.[controller] to v2; the other is ignored)",
        ));
    }
    out
}

/// LXC 2.1 and later refuse to start a container whose config holds a legacy key.
pub fn legacy_keys(f: &Facts) -> Vec<Finding> {
    if f.lxc_version.is_none() || f.dialect() != Dialect::Modern {
        return vec![];
    }
    let (major, minor) = f.lxc_version.expect("checked above");
    let mut out = Vec::new();
    for c in &f.containers {
        let legacy: Vec<String> = c.effective.iter().filter(|e| is_legacy_key(&e.key)).map(|e| e.key.clone()).collect();
        if legacy.is_empty() {
            continue;
        }
        out.push(finding(
            "lxc.legacy_keys",
            Severity::High,
            subject(c),
            format!("container {} has legacy keys that LXC {major}.{minor} refuses: it will not start", c.name),
            format!("legacy keys: {}", legacy.join(", ")),
            Some(fix(f, c, json!({}))),
            Some("apply renames them as lxc-update-config does and keeps the old file as a backup".into()),
            "LXC 2.1 release notes (legacy configuration keys removed); lxc-update-config(1)",
        ));
    }
    out
}

/// A container without an AppArmor profile: nothing stops root in it writing to /proc and /sys
/// files that act on the host.
pub fn apparmor_unconfined(f: &Facts) -> Vec<Finding> {
    let mut out = Vec::new();
    for c in &f.containers {
        let Some((k, v)) = c.last_of(&["lxc.apparmor.profile", "lxc.aa_profile"]) else { continue };
        if v.trim() != "unconfined" {
            continue;
        }
        let (key, profile) = match f.dialect() {
            Dialect::Modern => ("lxc.apparmor.profile", "generated"),
            Dialect::Legacy => ("lxc.aa_profile", "lxc-container-default"),
        };
        out.push(finding(
            "lxc.apparmor_unconfined",
            Severity::High,
            subject(c),
            format!("container {} runs without AppArmor confinement", c.name),
            format!("{k} = unconfined"),
            Some(fix(f, c, json!({"config": { key: profile }}))),
            None,
            "lxc.container.conf(5) lxc.apparmor.profile; LXC security documentation (AppArmor profiles protect the host from privileged containers)",
        ));
    }
    out
}

/// `proc:rw`, `sys:rw`, `cgroup:rw` give root in the container write access to kernel settings
/// and cgroups of the whole host.
pub fn mount_auto_rw(f: &Facts) -> Vec<Finding> {
    let writable = ["proc:rw", "sys:rw", "cgroup:rw", "cgroup-full:rw"];
    let mut out = Vec::new();
    for c in &f.containers {
        let have = tokens(c, "lxc.mount.auto");
        let bad: Vec<&str> = writable.iter().copied().filter(|t| have.contains(*t)).collect();
        if bad.is_empty() {
            continue;
        }
        let own_last = c.config.last("lxc.mount.auto").unwrap_or("");
        let fixed: Vec<String> = own_last.split_whitespace().map(|t| t.replace(":rw", ":mixed")).collect();
        out.push(finding(
            "lxc.mount_auto_rw",
            Severity::High,
            subject(c),
            format!("container {} mounts {} writable", c.name, bad.join(", ")),
            format!("lxc.mount.auto includes {}", bad.join(" ")),
            Some(fix(f, c, json!({"config": {"lxc.mount.auto": fixed.join(" ")}}))),
            Some("a fix can only rewrite the last lxc.mount.auto line of the container's own config; other lines holding :rw must be edited by hand".into()),
            "lxc.container.conf(5) lxc.mount.auto (proc:rw and sys:rw are unsafe; mixed is the default); LXC security documentation",
        ));
    }
    out
}

/// `devices.allow = a` lets the container open every block and character device of the host
/// (its disks, /dev/mem).
pub fn devices_allow_all(f: &Facts) -> Vec<Finding> {
    let k = cgroup_file_key("devices.allow", f.cgroup);
    let mut out = Vec::new();
    for c in &f.containers {
        let all: Vec<&str> = c.values(&k).filter(|v| v.split_whitespace().next() == Some("a")).collect();
        if all.is_empty() {
            continue;
        }
        out.push(finding(
            "lxc.devices_allow_all",
            Severity::High,
            subject(c),
            format!("container {} may use every device of the host", c.name),
            format!("{k} = {}", all.join("; ")),
            None,
            Some(format!(
                "remove the `{k} = a` line (LXC's default is `devices.deny = a` and an allow list, as in common.conf); a document \
                 cannot edit {k}, which LXC reads as a list"
            )),
            "lxc.container.conf(5) lxc.cgroup.devices.allow; kernel Documentation/admin-guide/cgroup-v1/devices.rst; CIS Docker Benchmark 5.17",
        ));
    }
    out
}

/// LXC's seccomp policy blocks syscalls such as kexec_load, open_by_handle_at and init_module
/// that a container never needs; without a profile they are all reachable.
pub fn seccomp(f: &Facts) -> Vec<Finding> {
    let mut out = Vec::new();
    for c in &f.containers {
        if c.last_of(&["lxc.seccomp.profile", "lxc.seccomp"]).is_some_and(|(_, v)| !v.trim().is_empty()) {
            continue;
        }
        let profile = "/usr/share/lxc/config/common.seccomp";
        let (fix_value, remedy) = if f.seccomp_profile_exists {
            let key = if f.dialect() == Dialect::Modern { "lxc.seccomp.profile" } else { "lxc.seccomp" };
            (Some(fix(f, c, json!({"config": { key: profile }}))), None)
        } else {
            (None, Some(format!("{profile} does not exist on this host: install LXC's config files, or write a seccomp policy and point lxc.seccomp.profile at it")))
        };
        out.push(finding(
            "lxc.seccomp",
            Severity::Medium,
            subject(c),
            format!("container {} has no seccomp policy", c.name),
            "no lxc.seccomp.profile line (after includes)",
            fix_value,
            remedy,
            "lxc.container.conf(5) lxc.seccomp.profile; LXC common.seccomp; CIS Docker Benchmark 5.21 (do not disable the default seccomp profile)",
        ));
    }
    out
}
