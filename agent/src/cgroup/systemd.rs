//! On a host that systemd runs (`/run/systemd/system` exists), the cgroup tree below its units
//! (`*.slice`, `*.scope`, `*.service`, ...) is systemd's: it sets their limits from unit properties
//! and may rewrite or remove what others put there. A `cgroups` group is managed only outside
//! every unit (a top-level group such as `hostguard/web1`, as LXC makes `lxc.payload.NAME`) or
//! strictly below a unit that delegates its subtree (`Delegate=yes`, which systemd marks with the
//! `trusted.delegate` extended attribute on the unit's cgroup).

use std::path::Path;

use crate::host::Host;
use crate::state::cgroup::CgroupPath;

/// The unit types that have a cgroup of their own.
const UNIT_SUFFIXES: [&str; 6] = [".slice", ".scope", ".service", ".socket", ".mount", ".swap"];

/// Whether systemd is the host's init (sd_booted(3): `/run/systemd/system` is a directory).
pub fn runs_host(host: &Host) -> bool {
    host.is_dir("/run/systemd/system")
}

fn is_unit(name: &str) -> bool {
    UNIT_SUFFIXES.iter().any(|s| name.len() > s.len() && name.ends_with(s))
}

fn delegated(dir: &Path) -> bool {
    ["trusted.delegate", "user.delegate"].iter().any(|attr| {
        let mut buf = [0u8; 8];
        matches!(rustix::fs::getxattr(dir, *attr, &mut buf[..]), Ok(n) if &buf[..n] == b"1")
    })
}

/// Why `group` is systemd's to manage, with what to do instead; `None` when hostguard may
/// create and limit it. `base` is the cgroup2 mount as a host path.
pub fn refusal(host: &Host, base: &Path, group: &CgroupPath) -> Option<String> {
    let parts: Vec<&str> = group.as_str().split('/').collect();
    let at = parts.iter().rposition(|p| is_unit(p))?;
    let unit = parts[at];
    let unit_group = parts[..=at].join("/");
    let dir = host.path(base.join(&unit_group));
    if at + 1 == parts.len() {
        return Some(format!(
            "cgroup {group} is the cgroup of the systemd unit {unit}, whose limits systemd sets: use \
             `systemctl set-property {unit} MemoryMax=... CPUWeight=... TasksMax=...` (or a drop-in) instead"
        ));
    }
    if unit.ends_with(".slice") {
        return Some(format!(
            "cgroup {group} is inside the systemd slice {unit_group}, which systemd owns and never delegates: \
             put the group at the top of the hierarchy (outside systemd's units) or below a service or scope \
             with Delegate=yes"
        ));
    }
    if !host.is_dir(base.join(&unit_group)) {
        return Some(format!(
            "cgroup {group} is below the systemd unit {unit}, which is not running ({} does not exist): \
             systemd creates that cgroup when the unit starts; start it (with Delegate=yes) first",
            dir.display()
        ));
    }
    if !delegated(&dir) {
        return Some(format!(
            "cgroup {group} is below the systemd unit {unit}, which does not delegate its subtree \
             (no trusted.delegate on {}): set Delegate=yes on {unit}, or put the group outside systemd's units",
            dir.display()
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(host: &Host, g: &str) -> Option<String> {
        refusal(host, Path::new("/sys/fs/cgroup"), &CgroupPath::parse(g).unwrap())
    }

    #[test]
    fn units_and_their_subtrees_are_systemds() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join("sys/fs/cgroup/system.slice/cron.service")).unwrap();
        let host = Host::new(root.path());
        assert_eq!(refused(&host, "hostguard/web1"), None);
        assert_eq!(refused(&host, "lxc.payload.web1/sub"), None);
        assert!(refused(&host, "system.slice").unwrap().contains("systemctl set-property system.slice"));
        assert!(refused(&host, "system.slice/x").unwrap().contains("never delegates"));
        assert!(refused(&host, "system.slice/cron.service/x").unwrap().contains("does not delegate"));
        assert!(refused(&host, "system.slice/gone.service/x").unwrap().contains("not running"));
        // Delegate=yes: systemd marks the unit's cgroup; below it is the delegatee's (and so ours).
        let svc = root.path().join("sys/fs/cgroup/system.slice/lxc@web1.service");
        std::fs::create_dir_all(&svc).unwrap();
        rustix::fs::setxattr(&svc, "trusted.delegate", b"1", rustix::fs::XattrFlags::empty()).unwrap();
        assert_eq!(refused(&host, "system.slice/lxc@web1.service/payload"), None);
        assert!(refused(&host, "system.slice/lxc@web1.service").unwrap().contains("set-property"));
    }
}
