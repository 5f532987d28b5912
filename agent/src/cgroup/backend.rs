//! The one interface over both cgroup versions, and the values their files hold.
//!
//! Shaped after youki's libcgroups: a version knows where a group's files are below the cgroup
//! mount it was given (`base`, a host path such as `/sys/fs/cgroup`), which file and value express
//! each abstract setting, and how to create a group. Everything else (reading, comparing,
//! ordering, reporting) is shared, in `group.rs`.

use std::fmt;
use std::path::PathBuf;

use crate::error::HostError;
use crate::host::Host;
use crate::state::cgroup::{CgroupPath, Limits, PidsMax};
use crate::state::types::Limit;

use super::convert::{memsw_from_v2, page_rounded, shares_to_weight, swap_for_v2, weight_to_shares};

/// v1's memory+swap limit; it exists only on a kernel that accounts swap.
pub const MEMSW_FILE: &str = "memory.memsw.limit_in_bytes";

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Version {
    V1,
    V2,
}

impl Version {
    /// 1 or 2, as templates and messages spell it.
    pub fn number(self) -> u8 {
        match self {
            Version::V1 => 1,
            Version::V2 => 2,
        }
    }

    /// Which file, with which value, expresses `setting` of `limits` on this version: the one
    /// table of files and conversions, for the `cgroups` kind, a container's live cgroup and the
    /// `lxc.cgroup.*` / `lxc.cgroup2.*` keys of its config alike. A setting `limits` leaves out
    /// gets the kernel's default (no limit, 1024 shares), so `file` can be asked of any limits.
    pub fn target(self, setting: Setting, limits: &Limits) -> Target {
        let memory = limits.memory.unwrap_or(Limit::Max);
        let memory_swap = limits.memory_swap.unwrap_or(Limit::Max);
        let shares = limits.cpu_shares.unwrap_or(1024);
        let (file, value, converted) = match (self, setting) {
            (Version::V1, Setting::Memory) => ("memory.limit_in_bytes", Native::Bytes(memory), false),
            (Version::V1, Setting::MemorySwap) => (MEMSW_FILE, Native::Bytes(memory_swap), false),
            (Version::V1, Setting::CpuShares) => ("cpu.shares", Native::Number(shares), false),
            (Version::V2, Setting::Memory) => ("memory.max", Native::Bytes(memory), false),
            // v2 limits swap alone, not memory plus swap.
            (Version::V2, Setting::MemorySwap) => ("memory.swap.max", Native::Bytes(swap_for_v2(limits.memory, memory_swap)), true),
            (Version::V2, Setting::CpuShares) => ("cpu.weight", Native::Number(shares_to_weight(shares)), true),
            (_, Setting::PidsMax) => ("pids.max", Native::Pids(limits.pids_max.unwrap_or(PidsMax::Max)), false),
        };
        Target { setting, file, value, converted }
    }

    /// The setting whose file `target` names on this version (`memory.max` on v2 is `Memory`).
    pub fn setting_of(self, file: &str) -> Option<Setting> {
        Setting::ALL.into_iter().find(|s| self.target(*s, &Limits::default()).file == file)
    }

    /// `target` read backwards: the document's limits whose `setting` this version's file
    /// expresses as `native` (v2's swap alone back to memory+swap over `memory`, a weight back to
    /// the roundest shares giving it), with `memory` as the memory limit beside it. `None` when no
    /// document value gives that file (a bounded v2 swap beside no or an unlimited memory).
    pub fn limits_from(self, setting: Setting, native: Native, memory: Option<Limit>) -> Option<Limits> {
        let mut l = Limits { memory, ..Limits::default() };
        match (self, setting, native) {
            (_, Setting::Memory, Native::Bytes(m)) => l.memory = Some(m),
            (Version::V1, Setting::MemorySwap, Native::Bytes(s)) => l.memory_swap = Some(s),
            (Version::V2, Setting::MemorySwap, Native::Bytes(swap)) => l.memory_swap = Some(memsw_from_v2(memory, swap)?),
            (Version::V1, Setting::CpuShares, Native::Number(n)) => l.cpu_shares = Some(n),
            (Version::V2, Setting::CpuShares, Native::Number(w)) => l.cpu_shares = Some(weight_to_shares(w)),
            (_, Setting::PidsMax, Native::Pids(p)) => l.pids_max = Some(p),
            _ => return None,
        }
        Some(l)
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Version::V1 => "v1",
            Version::V2 => "v2",
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Controller {
    Memory,
    Cpu,
    Pids,
}

impl Controller {
    pub fn name(self) -> &'static str {
        match self {
            Controller::Memory => "memory",
            Controller::Cpu => "cpu",
            Controller::Pids => "pids",
        }
    }
}

/// One abstract limit of the document.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Setting {
    Memory,
    MemorySwap,
    CpuShares,
    PidsMax,
}

impl Setting {
    pub const ALL: [Setting; 4] = [Setting::Memory, Setting::MemorySwap, Setting::CpuShares, Setting::PidsMax];

    /// The document's field name, also the last part of the resource id.
    pub fn name(self) -> &'static str {
        match self {
            Setting::Memory => "memory_limit",
            Setting::MemorySwap => "memory_swap_limit",
            Setting::CpuShares => "cpu_shares",
            Setting::PidsMax => "pids_max",
        }
    }

    pub fn controller(self) -> Controller {
        match self {
            Setting::Memory | Setting::MemorySwap => Controller::Memory,
            Setting::CpuShares => Controller::Cpu,
            Setting::PidsMax => Controller::Pids,
        }
    }

    /// The settings `limits` names, in the order reports list them.
    pub fn named_by(limits: &Limits) -> Vec<Setting> {
        Setting::ALL
            .into_iter()
            .filter(|s| match s {
                Setting::Memory => limits.memory.is_some(),
                Setting::MemorySwap => limits.memory_swap.is_some(),
                Setting::CpuShares => limits.cpu_shares.is_some(),
                Setting::PidsMax => limits.pids_max.is_some(),
            })
            .collect()
    }
}

/// A value as a cgroup file holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Native {
    /// A memory limit: compared after rounding to pages, as the kernel stores it.
    Bytes(Limit),
    /// `cpu.shares`, `cpu.weight`.
    Number(u64),
    /// `pids.max`.
    Pids(PidsMax),
}

impl Native {
    /// Whether a value read back (`self`) is what writing `desired` leaves in the file.
    pub fn satisfies(self, desired: Native) -> bool {
        match (self, desired) {
            // A plain file (a test root) keeps the exact value; the kernel keeps whole pages.
            (Native::Bytes(Limit::Bytes(have)), Native::Bytes(Limit::Bytes(want))) => {
                have == want || have == page_rounded(want)
            }
            (a, b) => a == b,
        }
    }

    /// Parse the file's text the way `self` is typed: `self` is the desired value.
    pub fn parse_like(self, text: &str, version: Version) -> Option<Native> {
        let t = text.trim();
        match self {
            Native::Bytes(_) => {
                if t == "max" {
                    return Some(Native::Bytes(Limit::Max));
                }
                let n: u64 = t.parse().ok()?;
                // v1 prints "no limit" as the largest page multiple of LONG_MAX.
                if version == Version::V1 && n > i64::MAX as u64 - super::convert::page_size() {
                    return Some(Native::Bytes(Limit::Max));
                }
                Some(Native::Bytes(Limit::Bytes(n)))
            }
            Native::Number(_) => t.parse().ok().map(Native::Number),
            Native::Pids(_) => match t {
                "max" => Some(Native::Pids(PidsMax::Max)),
                n => n.parse().ok().map(|n| Native::Pids(PidsMax::Count(n))),
            },
        }
    }

    /// The text written to the file.
    pub fn render(self, version: Version) -> String {
        match (self, version) {
            (Native::Bytes(Limit::Max), Version::V1) => "-1".into(),
            (Native::Bytes(Limit::Max), Version::V2) => "max".into(),
            (Native::Bytes(Limit::Bytes(n)), _) => n.to_string(),
            (Native::Number(n), _) => n.to_string(),
            (Native::Pids(p), _) => p.to_string(),
        }
    }
}

impl fmt::Display for Native {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Native::Bytes(l) => write!(f, "{l}"),
            Native::Number(n) => write!(f, "{n}"),
            Native::Pids(p) => write!(f, "{p}"),
        }
    }
}

/// The file that expresses one setting, and the value the document asks of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target {
    pub setting: Setting,
    pub file: &'static str,
    pub value: Native,
    /// Whether `value` is the document's own value, or a conversion of it (v2 swap and weight).
    pub converted: bool,
}

/// One cgroup version's layout below its mount.
pub trait Backend: fmt::Debug {
    fn version(&self) -> Version;

    /// The host directory holding `group`'s files for `controller` (`None`: the hierarchy root).
    fn dir(&self, controller: Controller, group: Option<&CgroupPath>) -> PathBuf;

    /// Which file, with which value, expresses `setting` of `limits` (`Version::target`).
    fn target(&self, setting: Setting, limits: &Limits) -> Target {
        self.version().target(setting, limits)
    }

    /// Why the host cannot hold `setting` at all (controller not mounted or not enabled, no swap
    /// accounting), with what to do; `None` when it can.
    /// A file it reads that is not one hostguard reads (a FIFO, a device) is the error itself.
    fn unavailable(&self, host: &Host, setting: Setting) -> Result<Option<String>, HostError>;

    /// Create `group` so that `controllers` manage it.
    fn create(&self, host: &Host, group: &CgroupPath, controllers: &[Controller]) -> Result<(), HostError>;

    /// The file that tells a group's memory usage, for messages.
    fn usage_file(&self, setting: Setting) -> &'static str;

    /// Why `setting` cannot be limited when a group lacks its file (`shown`, as messages name
    /// it) although the controller manages the group: for memory+swap, no swap accounting.
    fn missing_file(&self, setting: Setting, shown: &str) -> Option<String>;

    /// Whether the kernel takes a memory limit below the group's usage and then reclaims or
    /// OOM-kills to meet it (v2), rather than refusing the write (v1, EBUSY): after such a write
    /// the usage must be read again, since the limit file alone says nothing of whether it held.
    fn takes_limits_below_usage(&self) -> bool;

    /// The file whose `oom_kill N` line counts the group's OOM kills, where there is one.
    fn oom_events_file(&self) -> Option<&'static str>;

    /// Why the kernel refused `setting` with EINVAL, and what to do, where this version has a
    /// rule between limits; `read` gives a control file of the group as a number.
    fn invalid_because(&self, setting: Setting, read: &dyn Fn(&str) -> Option<u64>) -> Option<String>;
}
