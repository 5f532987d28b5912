//! cgroup v1: one hierarchy per controller, `<base>/<controller>/<group>/`.

use std::path::{Path, PathBuf};

use crate::error::HostError;
use crate::host::Host;
use crate::state::cgroup::{CgroupPath, Limits};

use super::backend::{Backend, Controller, Native, Setting, Target, Version};

#[derive(Debug, Clone)]
pub struct V1 {
    /// Where the hierarchies are mounted, as a host path: `/sys/fs/cgroup`.
    pub base: PathBuf,
}

pub const MEMSW_FILE: &str = "memory.memsw.limit_in_bytes";

impl V1 {
    pub fn new(base: impl Into<PathBuf>) -> V1 {
        V1 { base: base.into() }
    }

    /// Whether `<base>/<controller>` is a mounted hierarchy (it has `cgroup.procs`). On many
    /// hosts `cpu` is a link to a `cpu,cpuacct` mount; following it is intended.
    pub fn has_hierarchy(host: &Host, base: &Path, controller: Controller) -> bool {
        host.exists(base.join(controller.name()).join("cgroup.procs"))
    }
}

impl Backend for V1 {
    fn version(&self) -> Version {
        Version::V1
    }

    fn dir(&self, controller: Controller, group: Option<&CgroupPath>) -> PathBuf {
        let root = self.base.join(controller.name());
        match group {
            Some(g) => root.join(g.as_str()),
            None => root,
        }
    }

    fn target(&self, setting: Setting, limits: &Limits) -> Target {
        let (file, value) = match setting {
            Setting::Memory => ("memory.limit_in_bytes", Native::Bytes(limits.memory.unwrap_or(crate::state::types::Limit::Max))),
            Setting::MemorySwap => (MEMSW_FILE, Native::Bytes(limits.memory_swap.unwrap_or(crate::state::types::Limit::Max))),
            Setting::CpuShares => ("cpu.shares", Native::Number(limits.cpu_shares.unwrap_or(1024))),
            Setting::PidsMax => ("pids.max", Native::Pids(limits.pids_max.unwrap_or(crate::state::cgroup::PidsMax::Max))),
        };
        Target { setting, file, value, converted: false }
    }

    fn unavailable(&self, host: &Host, setting: Setting) -> Result<Option<String>, HostError> {
        let c = setting.controller();
        if !V1::has_hierarchy(host, &self.base, c) {
            return Ok(Some(format!(
                "this host has no cgroup v1 {} hierarchy at {}: mount it (mount -t cgroup -o {} cgroup {}) or remove {} from the document",
                c.name(),
                self.dir(c, None).display(),
                c.name(),
                self.dir(c, None).display(),
                setting.name()
            )));
        }
        if setting == Setting::MemorySwap && !host.exists(self.dir(c, None).join(MEMSW_FILE)) {
            return Ok(Some(memsw_missing_message(&self.dir(c, None).join(MEMSW_FILE))));
        }
        Ok(None)
    }

    fn create(&self, host: &Host, group: &CgroupPath, controllers: &[Controller]) -> Result<(), HostError> {
        for c in controllers {
            host.create_dir_all(self.dir(*c, Some(group)))?;
        }
        Ok(())
    }

    fn usage_file(&self, setting: Setting) -> &'static str {
        match setting {
            Setting::MemorySwap => "memory.memsw.usage_in_bytes",
            _ => "memory.usage_in_bytes",
        }
    }
}

pub fn memsw_missing_message(file: &Path) -> String {
    format!(
        "this kernel does not account swap ({} does not exist), so memory+swap cannot be limited: \
         boot with swapaccount=1 (and cgroup_enable=memory), or remove memory_swap_limit",
        file.display()
    )
}
