//! cgroup v1: one hierarchy per controller, `<base>/<controller>/<group>/`.

use std::path::{Path, PathBuf};

use crate::error::HostError;
use crate::host::Host;
use crate::state::cgroup::CgroupPath;
use crate::state::types::Limit;

use super::backend::{Backend, Controller, Setting, Version};

#[derive(Debug, Clone)]
pub struct V1 {
    /// Where the hierarchies are mounted, as a host path: `/sys/fs/cgroup`.
    pub base: PathBuf,
}

pub use super::backend::MEMSW_FILE;

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

    fn missing_file(&self, setting: Setting, shown: &str) -> Option<String> {
        (setting == Setting::MemorySwap).then(|| memsw_missing_message(Path::new(shown)))
    }

    fn takes_limits_below_usage(&self) -> bool {
        false
    }

    fn oom_events_file(&self) -> Option<&'static str> {
        None
    }

    /// The kernel keeps `memory.limit_in_bytes <= memory.memsw.limit_in_bytes` at every moment.
    fn invalid_because(&self, setting: Setting, read: &dyn Fn(&str) -> Option<u64>) -> Option<String> {
        let now = |file: &str| read(file).map(|v| Limit::Bytes(v).to_string()).unwrap_or_default();
        match setting {
            Setting::Memory => Some(format!(
                "cgroup v1 keeps memory.limit_in_bytes at or below {MEMSW_FILE} (now {}); set memory_swap_limit in the \
                 document as well",
                now(MEMSW_FILE)
            )),
            Setting::MemorySwap => Some(format!(
                "memory+swap may not be below memory.limit_in_bytes (now {}); set memory_limit in the document as well",
                now("memory.limit_in_bytes")
            )),
            _ => None,
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
