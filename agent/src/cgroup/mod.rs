//! The `cgroup` resource kind: limits of named cgroups on cgroup v1 and v2.
//!
//! The host's layout is read once (`detect`), the version decided once, and a `Backend` for it
//! passed down; each limit of each group is one resource (`cgroup/hostguard/web1/memory_limit`).
//!
//! This module is the only code that knows the limits' control files, versions and the kernel's
//! rules. The `lxc` kind is its client for a running container's live cgroup: `detect`, then
//! `GroupPlan::read` + `reports`/`apply` through an `LxcCgroup` door (`files.rs`); and for its
//! config keys: `Version::target` and `Version::limits_from` (lxc/cgroupmap.rs).

mod backend;
mod convert;
mod files;
mod group;
mod systemd;
mod v1;
mod v2;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use crate::kind::{Ctx, Resources};
use crate::error::{Error, Result};
use crate::host::Host;
use crate::report::ResourceReport;
use crate::state::cgroup::{CgroupPath, CgroupsState, Limits, PidsMax, VersionChoice};

pub use backend::{Backend, Controller, Native, Setting, Target, Version};
pub use convert::{memsw_from_v2, page_rounded, shares_to_weight, swap_for_v2, weight_to_shares};
pub use files::{GroupFiles, HostDir, LxcCgroup, Presence};
pub use group::GroupPlan;
pub use v1::V1;
pub use v2::V2;

const KIND: &str = "cgroup";

/// Where cgroup filesystems are mounted on a host.
pub const CGROUP_MOUNT: &str = "/sys/fs/cgroup";

/// What `<root>/sys/fs/cgroup` holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// cgroup v1 controllers; `hybrid` when an (empty) v2 hierarchy is mounted at `unified/`.
    V1 { hybrid: bool },
    /// The unified cgroup v2 hierarchy.
    V2,
    /// No cgroup filesystem found.
    None,
}

/// Read the layout of the cgroup mount from its files (so `--root` trees work as real hosts).
pub fn layout(host: &Host) -> Layout {
    let base = Path::new(CGROUP_MOUNT);
    if host.exists(base.join("cgroup.controllers")) {
        return Layout::V2;
    }
    let hybrid = host.exists(base.join("unified/cgroup.controllers"));
    if [Controller::Memory, Controller::Cpu, Controller::Pids].iter().any(|c| V1::has_hierarchy(host, base, *c)) {
        return Layout::V1 { hybrid };
    }
    Layout::None
}

/// Which cgroup version holds the host's controllers, for a client that follows the host rather
/// than a document's choice (LXC, the audit): v2 when `/sys/fs/cgroup` is the unified hierarchy
/// itself; a hybrid host (v1 controllers, an empty unified mount) is v1. A host with no cgroup
/// mount under the root (a bare `--root` tree) is taken as v1.
pub fn host_version(host: &Host) -> Version {
    match layout(host) {
        Layout::V2 => Version::V2,
        Layout::V1 { .. } | Layout::None => Version::V1,
    }
}

/// Decide the version to manage, once: the document's choice checked against the host's layout.
/// A forced version the host does not have is refused before anything is touched.
pub fn detect(host: &Host, choice: VersionChoice) -> Result<Box<dyn Backend>> {
    let base = PathBuf::from(CGROUP_MOUNT);
    let shown = host.path(&base).display().to_string();
    match (layout(host), choice) {
        (Layout::V2, VersionChoice::Auto | VersionChoice::V2) => Ok(Box::new(V2::new(base, false))),
        (Layout::V1 { .. }, VersionChoice::Auto | VersionChoice::V1) => Ok(Box::new(V1::new(base))),
        (Layout::V1 { hybrid: true }, VersionChoice::V2) => Ok(Box::new(V2::new(base.join("unified"), true))),
        (Layout::V1 { hybrid: false }, VersionChoice::V2) => Err(Error::Refused(format!(
            "cgroups.version is \"v2\" but {shown} holds cgroup v1 hierarchies and no cgroup2 mount: \
             use \"v1\" or \"auto\" for this host"
        ))),
        (Layout::V2, VersionChoice::V1) => Err(Error::Refused(format!(
            "cgroups.version is \"v1\" but {shown} is the unified cgroup v2 hierarchy: use \"v2\" or \"auto\" for this host"
        ))),
        (Layout::None, _) => Err(Error::Refused(format!(
            "no cgroup filesystem at {shown} (neither cgroup.controllers nor memory/cpu/pids hierarchies): mount cgroups first"
        ))),
    }
}

/// Whether a v1 kernel accounts swap (booted without `swapaccount=0`): without it there is no
/// `memory.memsw.*`. Unknown (no v1 memory controller under the root) counts as yes; v2 hosts
/// tell per group (`Backend::missing_file`).
pub fn swap_accounting(host: &Host, v: Version) -> bool {
    let memory = V1::new(CGROUP_MOUNT).dir(Controller::Memory, None);
    match v {
        Version::V2 => true,
        Version::V1 => !host.exists(memory.join("memory.limit_in_bytes")) || host.exists(memory.join(v1::MEMSW_FILE)),
    }
}

#[derive(Debug)]
pub struct Plan {
    backend: Box<dyn Backend>,
    groups: Vec<(CgroupPath, GroupPlan)>,
}

impl Resources for Plan {
    fn reports(&self) -> Vec<ResourceReport> {
        self.groups.iter().flat_map(|(_, g)| g.reports()).collect()
    }

    fn apply(self: Box<Self>, ctx: &Ctx) -> Vec<ResourceReport> {
        let backend = self.backend;
        let b = &*backend;
        self.groups.into_iter().flat_map(|(group, g)| g.apply(ctx.host, b, &HostDir { host: ctx.host, backend: b, group: &group })).collect()
    }
}

pub fn plan(ctx: &Ctx, desired: &CgroupsState) -> Result<Plan> {
    let backend = detect(ctx.host, desired.version)?;
    if backend.version() == Version::V2 && systemd::runs_host(ctx.host) {
        let base = backend.dir(Controller::Memory, None);
        for (group, _) in &desired.groups {
            if let Some(why) = systemd::refusal(ctx.host, &base, group) {
                return Err(Error::Refused(why));
            }
        }
    }
    let mut groups = Vec::new();
    for (group, limits) in &desired.groups {
        let files = HostDir { host: ctx.host, backend: &*backend, group };
        groups.push((group.clone(), GroupPlan::read(ctx.host, &*backend, &files, limits, KIND, &format!("cgroup/{group}"))?));
    }
    Ok(Plan { backend, groups })
}

/// Groups at and below each prefix (`--cgroup hostguard`), with their limits, as the `cgroups`
/// section of a state document. Nothing is shown without a prefix: a host has thousands.
pub fn show(ctx: &Ctx, prefixes: &[String]) -> Result<Option<serde_json::Value>> {
    if prefixes.is_empty() {
        return Ok(None);
    }
    let prefixes: Vec<CgroupPath> = prefixes
        .iter()
        .map(|p| CgroupPath::parse(p).map_err(|m| Error::Refused(format!("--cgroup {p:?}: {m}"))))
        .collect::<Result<_>>()?;
    let backend = detect(ctx.host, VersionChoice::Auto)?;
    let b = &*backend;
    let mut found = BTreeSet::new();
    for prefix in &prefixes {
        for c in [Controller::Memory, Controller::Cpu, Controller::Pids] {
            walk(ctx.host, &b.dir(c, None), prefix.as_str(), 0, &mut found)?;
        }
    }
    let mut groups = serde_json::Map::new();
    for name in found {
        let Ok(group) = CgroupPath::parse(&name) else { continue };
        let limits = read_limits(ctx.host, b, &group)?;
        let mut g = serde_json::Map::new();
        if let Some(m) = limits.memory {
            g.insert("memory_limit".into(), m.to_string().into());
        }
        if let Some(s) = limits.memory_swap {
            g.insert("memory_swap_limit".into(), s.to_string().into());
        }
        if let Some(s) = limits.cpu_shares {
            g.insert("cpu_shares".into(), s.into());
        }
        match limits.pids_max {
            Some(PidsMax::Count(n)) => {
                g.insert("pids_max".into(), n.into());
            }
            Some(PidsMax::Max) => {
                g.insert("pids_max".into(), "max".into());
            }
            None => {}
        }
        if !g.is_empty() {
            groups.insert(name, g.into());
        }
    }
    Ok(Some(serde_json::json!({ "version": b.version().to_string(), "groups": groups })))
}

/// Group directories at and below `rel` under a hierarchy root `root` (a host path).
fn walk(host: &Host, root: &Path, rel: &str, depth: usize, out: &mut BTreeSet<String>) -> Result<()> {
    let dir = root.join(rel);
    if depth > 32 || !host.is_dir(&dir) || host.is_symlink(&dir) {
        return Ok(());
    }
    out.insert(rel.to_string());
    for name in host.list_dir(&dir)? {
        let child = dir.join(&name);
        if host.is_dir(&child) && !host.is_symlink(&child) {
            walk(host, root, &format!("{rel}/{name}"), depth + 1, out)?;
        }
    }
    Ok(())
}

/// A group's limits in the document's abstract form (what `show` prints).
pub fn read_limits(host: &Host, b: &dyn Backend, group: &CgroupPath) -> Result<Limits> {
    let read = |s: Setting| -> Result<Option<Native>> {
        let t = b.target(s, &Limits::default());
        let file = b.dir(s.controller(), Some(group)).join(t.file);
        Ok(host.read_optional(&file)?.and_then(|text| t.value.parse_like(&text, b.version())))
    };
    let bytes = |n: Option<Native>| match n {
        Some(Native::Bytes(l)) => Some(l),
        _ => None,
    };
    let memory = bytes(read(Setting::Memory)?);
    let swap_file = bytes(read(Setting::MemorySwap)?);
    let memory_swap = match b.version() {
        Version::V1 => swap_file,
        Version::V2 => swap_file.and_then(|s| memsw_from_v2(memory, s)),
    };
    let cpu_shares = match read(Setting::CpuShares)? {
        Some(Native::Number(n)) if b.version() == Version::V2 => Some(weight_to_shares(n)),
        Some(Native::Number(n)) => Some(n),
        _ => None,
    };
    let pids_max = match read(Setting::PidsMax)? {
        Some(Native::Pids(p)) => Some(p),
        _ => None,
    };
    Ok(Limits { memory, memory_swap, cpu_shares, pids_max })
}

#[cfg(test)]
mod tests;
