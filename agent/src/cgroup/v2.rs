//! cgroup v2: one unified hierarchy, `<base>/<group>/`, controllers enabled top-down through
//! each parent's `cgroup.subtree_control`.

use std::path::PathBuf;

use crate::error::HostError;
use crate::host::Host;
use crate::state::cgroup::CgroupPath;

use super::backend::{Backend, Controller, Setting, Version};

#[derive(Debug, Clone)]
pub struct V2 {
    /// The cgroup2 mount, as a host path: `/sys/fs/cgroup`, or `/sys/fs/cgroup/unified` when
    /// forced on a hybrid host.
    pub base: PathBuf,
    /// Set on a hybrid host, where the controllers are bound to v1: explains why they are missing.
    pub hybrid: bool,
}

impl V2 {
    pub fn new(base: impl Into<PathBuf>, hybrid: bool) -> V2 {
        V2 { base: base.into(), hybrid }
    }

    fn group_dir(&self, group: &str) -> PathBuf {
        self.base.join(group)
    }

    fn words(host: &Host, file: PathBuf) -> Result<Vec<String>, HostError> {
        Ok(host.read_to_string(file)?.split_whitespace().map(str::to_string).collect())
    }
}

impl Backend for V2 {
    fn version(&self) -> Version {
        Version::V2
    }

    fn dir(&self, _controller: Controller, group: Option<&CgroupPath>) -> PathBuf {
        match group {
            Some(g) => self.group_dir(g.as_str()),
            None => self.base.clone(),
        }
    }

    fn unavailable(&self, host: &Host, setting: Setting) -> Result<Option<String>, HostError> {
        let c = setting.controller().name();
        let file = self.base.join("cgroup.controllers");
        let have = match V2::words(host, file.clone()) {
            Ok(w) => w,
            Err(e) if e.is_unreadable_kind() => return Err(e),
            Err(e) => return Ok(Some(format!("cannot read the cgroup v2 controllers: {e}"))),
        };
        if !have.iter().any(|w| w == c) {
            let why = if self.hybrid {
                " (this host mounts its controllers as cgroup v1 beside an empty v2 hierarchy: use cgroups.version \"auto\" or \"v1\")"
            } else {
                " (enable the controller on the kernel command line, or remove the setting)"
            };
            return Ok(Some(format!(
                "the cgroup v2 hierarchy at {} has no {c} controller ({}: {:?}){why}",
                self.base.display(),
                file.display(),
                have.join(" ")
            )));
        }
        Ok(None)
    }

    /// Each level from the top: its parent's `cgroup.subtree_control` gets `+controller` for
    /// every controller missing there (one write each, so a refusal names its controller), then
    /// the level's directory is made.
    fn create(&self, host: &Host, group: &CgroupPath, controllers: &[Controller]) -> Result<(), HostError> {
        let mut parent = self.base.clone();
        for level in group.ancestors_and_self() {
            let control = parent.join("cgroup.subtree_control");
            let enabled = V2::words(host, control.clone())?;
            for c in controllers {
                if !enabled.iter().any(|w| w == c.name()) {
                    host.write_value(&control, &format!("+{}", c.name())).map_err(|e| match e {
                        HostError::Io { source, .. } if source.raw_os_error() == Some(libc::EBUSY) => HostError::Other(format!(
                            "{}: cannot enable +{}: the group has processes of its own, and cgroup v2 only enables \
                             controllers for children of groups without processes; move them into a leaf group",
                            control.display(),
                            c.name()
                        )),
                        other => other,
                    })?;
                }
            }
            let dir = self.group_dir(&level);
            if !host.is_dir(&dir) {
                host.create_dir_all(&dir)?;
            }
            parent = dir;
        }
        Ok(())
    }

    fn usage_file(&self, setting: Setting) -> &'static str {
        match setting {
            Setting::MemorySwap => "memory.swap.current",
            _ => "memory.current",
        }
    }

    fn missing_file(&self, setting: Setting, shown: &str) -> Option<String> {
        (setting == Setting::MemorySwap).then(|| {
            format!(
                "{shown} does not exist: this kernel does not account swap (swapaccount=0 or no CONFIG_MEMCG_SWAP), so \
                 memory+swap cannot be limited; enable swap accounting or remove memory_swap_limit"
            )
        })
    }

    /// memory.max may be written below memory.current; the kernel then reclaims or OOM-kills
    /// synchronously (Documentation/admin-guide/cgroup-v2.rst, memory.max).
    fn takes_limits_below_usage(&self) -> bool {
        true
    }

    fn oom_events_file(&self) -> Option<&'static str> {
        Some("memory.events")
    }

    /// v2's memory files are independent of each other.
    fn invalid_because(&self, _setting: Setting, _read: &dyn Fn(&str) -> Option<u64>) -> Option<String> {
        None
    }
}
