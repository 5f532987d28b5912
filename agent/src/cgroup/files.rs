//! Where a group's control files are: the one seam between the kernel's rules (`group.rs`) and
//! the two places hostguard finds a cgroup. `HostDir` is a `cgroups` group, its files under
//! `--root`; `LxcCgroup` is a running container's cgroup, reached through `lxc-cgroup`, so LXC
//! keeps deciding where it is (with `lxc.cgroup.dir.container.inner` it is not where
//! `/proc/PID/cgroup` says).

use std::path::PathBuf;

use crate::error::HostError;
use crate::host::Host;
use crate::state::cgroup::CgroupPath;

use super::backend::{Backend, Controller, Version};

/// Whether a group's directory for one controller is there to be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Presence {
    Ready,
    /// The group does not exist (in this controller's hierarchy).
    Missing,
    /// v2: the group exists but its parent does not pass this controller down.
    NotEnabled,
}

/// A group's control files, read and written by name.
pub trait GroupFiles {
    /// The group as messages name it: `cgroup hostguard/web1`.
    fn name(&self) -> String;
    fn presence(&self, controller: Controller) -> Result<Presence, HostError>;
    /// A control file's text; `None` when it does not exist.
    fn read(&self, controller: Controller, file: &str) -> Result<Option<String>, HostError>;
    fn write(&self, controller: Controller, file: &str, value: &str) -> Result<(), HostError>;
    /// A control file as messages name it.
    fn describe(&self, controller: Controller, file: &str) -> String;
    /// Whether a missing group is made (a `cgroups` group) or is a failure (a container's
    /// cgroup, which LXC owns).
    fn can_create(&self) -> bool;
    /// Make the group so that `controllers` manage it.
    fn create(&self, controllers: &[Controller]) -> Result<(), HostError>;
}

/// A `cgroups` group: its files below the backend's mount, under `--root`.
pub struct HostDir<'a> {
    pub host: &'a Host,
    pub backend: &'a dyn Backend,
    pub group: &'a CgroupPath,
}

impl HostDir<'_> {
    fn file(&self, controller: Controller, file: &str) -> PathBuf {
        self.backend.dir(controller, Some(self.group)).join(file)
    }
}

impl GroupFiles for HostDir<'_> {
    fn name(&self) -> String {
        format!("cgroup {}", self.group)
    }

    fn presence(&self, controller: Controller) -> Result<Presence, HostError> {
        let dir = self.backend.dir(controller, Some(self.group));
        if !self.host.is_dir(&dir) {
            return Ok(Presence::Missing);
        }
        if self.backend.version() == Version::V2 {
            let available = self.host.read_optional(dir.join("cgroup.controllers"))?.unwrap_or_default();
            if !available.split_whitespace().any(|c| c == controller.name()) {
                return Ok(Presence::NotEnabled);
            }
        }
        Ok(Presence::Ready)
    }

    fn read(&self, controller: Controller, file: &str) -> Result<Option<String>, HostError> {
        self.host.read_optional(self.file(controller, file))
    }

    fn write(&self, controller: Controller, file: &str, value: &str) -> Result<(), HostError> {
        self.host.write_value(self.file(controller, file), value)
    }

    fn describe(&self, controller: Controller, file: &str) -> String {
        self.host.path(self.file(controller, file)).display().to_string()
    }

    fn can_create(&self) -> bool {
        true
    }

    fn create(&self, controllers: &[Controller]) -> Result<(), HostError> {
        self.backend.create(self.host, self.group, controllers)
    }
}

/// A running container's cgroup: `lxc-cgroup -P LXCPATH -n NAME FILE [VALUE]`.
pub struct LxcCgroup<'a> {
    pub host: &'a Host,
    /// The real path LXC's commands are given (the host path under `--root`).
    pub lxcpath: &'a str,
    pub name: &'a str,
}

impl GroupFiles for LxcCgroup<'_> {
    fn name(&self) -> String {
        format!("the cgroup of container {}", self.name)
    }

    /// LXC made the group with the controllers it was given: a running container's is there.
    fn presence(&self, _controller: Controller) -> Result<Presence, HostError> {
        Ok(Presence::Ready)
    }

    fn read(&self, _controller: Controller, file: &str) -> Result<Option<String>, HostError> {
        let out = self.host.run_ok(&["lxc-cgroup", "-P", self.lxcpath, "-n", self.name, file], None)?;
        Ok(Some(out.stdout))
    }

    fn write(&self, _controller: Controller, file: &str, value: &str) -> Result<(), HostError> {
        let argv = ["lxc-cgroup", "-P", self.lxcpath, "-n", self.name, file, value];
        self.host.run_change(&argv, None)?.ok(&argv).map(drop)
    }

    fn describe(&self, _controller: Controller, file: &str) -> String {
        format!("{file} of container {} (lxc-cgroup)", self.name)
    }

    fn can_create(&self) -> bool {
        false
    }

    fn create(&self, _controllers: &[Controller]) -> Result<(), HostError> {
        Err(HostError::Other(format!("{} does not exist or lacks the controller (is the container running?)", self.name())))
    }
}
