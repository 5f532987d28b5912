//! Talking to the installed LXC: its version, whether a container runs, and the limits of a
//! running container's live cgroup, which LXC itself locates (`lxc-cgroup`), so hostguard never
//! guesses a cgroup path that depends on LXC's version and settings.

use std::collections::BTreeSet;

use super::cgroupmap::{parse_size, size_value, CgroupVersion};
use crate::error::HostError;
use crate::host::Host;
use crate::state::lxc::Container;
use crate::state::types::Limit;

/// `lxc-info --version` as (major, minor).
pub fn version(host: &Host) -> Result<(u32, u32), HostError> {
    let out = host.run_ok(&["lxc-info", "--version"], None)?;
    let text = out.stdout.trim();
    let mut parts = text.split(|c: char| !c.is_ascii_digit()).filter(|p| !p.is_empty());
    match (parts.next().and_then(|p| p.parse().ok()), parts.next().and_then(|p| p.parse().ok())) {
        (Some(major), Some(minor)) => Ok((major, minor)),
        _ => Err(HostError::Other(format!("`lxc-info --version` printed {text:?}, not a version such as 5.0.2"))),
    }
}

/// The containers of `lxcpath` that run (or are frozen), from one `lxc-ls` for the whole run
/// rather than one `lxc-info` per container. A host without LXC runs no container.
pub fn active(host: &Host, lxcpath: &str) -> Result<BTreeSet<String>, HostError> {
    match host.run_ok(&["lxc-ls", "-P", lxcpath, "--active", "-1"], None) {
        Ok(out) => Ok(out.stdout.lines().map(|l| l.trim().to_string()).filter(|l| !l.is_empty()).collect()),
        Err(HostError::Spawn { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => Ok(BTreeSet::new()),
        Err(e) => Err(e),
    }
}

pub fn read(host: &Host, lxcpath: &str, name: &str, file: &str) -> Result<String, HostError> {
    Ok(host.run_ok(&["lxc-cgroup", "-P", lxcpath, "-n", name, file], None)?.stdout.trim().to_string())
}

pub fn write(host: &Host, lxcpath: &str, name: &str, file: &str, value: &str) -> Result<(), HostError> {
    host.run_ok(&["lxc-cgroup", "-P", lxcpath, "-n", name, file, value], None)?;
    host.count_write();
    Ok(())
}

/// A value a live cgroup file should hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Want {
    Size(Limit),
    Number(u64),
}

impl Want {
    /// What is written: bytes exactly, or the version's "no limit".
    pub fn value(self, v: CgroupVersion) -> String {
        match self {
            Want::Size(Limit::Bytes(b)) => b.to_string(),
            Want::Size(l) => size_value(l, v),
            Want::Number(n) => n.to_string(),
        }
    }

    /// Whether a value read back is this one. The kernel keeps memory limits in whole pages,
    /// rounding down, so 1000000 reads back as 999424.
    pub fn matches(self, read: &str) -> bool {
        match self {
            Want::Size(Limit::Bytes(b)) => {
                let got = parse_size(read);
                got == Some(Limit::Bytes(crate::cgroup::page_rounded(b))) || got == Some(Limit::Bytes(b))
            }
            Want::Size(Limit::Max) => parse_size(read) == Some(Limit::Max),
            Want::Number(n) => read.trim().parse::<u64>().ok() == Some(n),
        }
    }

    pub fn shown(self, read: &str) -> String {
        match (self, parse_size(read)) {
            (Want::Size(_), Some(l)) => l.to_string(),
            _ => read.to_string(),
        }
    }
}

/// The live files for a container's limits, in a safe write order for lowering memory (memory,
/// then memory+swap; `apply` reverses it when raising memory above the current memsw).
pub fn wanted(c: &Container, v: CgroupVersion, swap_accounting: bool) -> Vec<(&'static str, Want)> {
    let mut out = Vec::new();
    match v {
        CgroupVersion::V1 => {
            if let Some(m) = c.memory_limit {
                out.push(("memory.limit_in_bytes", Want::Size(m)));
            }
            if let (Some(s), true) = (c.memory_swap_limit, swap_accounting) {
                out.push(("memory.memsw.limit_in_bytes", Want::Size(s)));
            }
            if let Some(n) = c.cpu_shares {
                out.push(("cpu.shares", Want::Number(n)));
            }
        }
        CgroupVersion::V2 => {
            if let Some(m) = c.memory_limit {
                out.push(("memory.max", Want::Size(m)));
            }
            if let Some(s) = c.memory_swap_limit {
                let swap = super::cgroupmap::swap_only(s, c.memory_limit.unwrap_or(Limit::Max));
                out.push(("memory.swap.max", Want::Size(swap)));
            }
            if let Some(n) = c.cpu_shares {
                out.push(("cpu.weight", Want::Number(super::cgroupmap::shares_to_weight(n))));
            }
        }
    }
    out
}
