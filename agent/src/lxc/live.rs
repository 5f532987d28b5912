//! Talking to the installed LXC: its version and which containers run. A running container's
//! live cgroup is read and written through `cgroup::LxcCgroup` (`lxc-cgroup`), so LXC itself
//! locates it and hostguard never guesses a path that depends on LXC's version and settings.

use std::collections::BTreeSet;

use crate::error::HostError;
use crate::host::Host;

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
