//! Bounded reads of the host: what a file must be before hostguard reads it, how much of it, and
//! how long and how much a command may print (SPEC section 5, README "Bounded reads").
//!
//! A host file is looked at before it is opened for reading: through an `O_PATH` descriptor,
//! which opens nothing (no FIFO waits for a writer, no device driver runs), `fstat` says what it
//! is. Only a regular file is then opened (`O_NONBLOCK`, checked again by `fstat`, since the path
//! may have been swapped in between) and read up to its kind's limit. The kernel's own files under
//! `/proc` and `/sys` are regular files that report no size, so the limit is applied while
//! reading, not only from `st_size`. A FIFO, socket, device or oversized file is an error that
//! names the path and what it is, in bounded time and memory.

use std::io::Read;
use std::path::Path;

use rustix::fd::OwnedFd;
use rustix::fs::{FileType, OFlags};

use crate::error::HostError;

const KIB: u64 = 1024;
const MIB: u64 = 1024 * KIB;

/// The kind of host file a read is for, and the most hostguard reads of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    /// What the file is, as the error names it ("an LXC container config").
    pub what: &'static str,
    pub bytes: u64,
}

/// The limits named in the README, one per kind of file hostguard reads.
pub mod limits {
    use super::{Limit, KIB, MIB};

    /// `/var/lib/lxc/NAME/config`. LXC's own templates write a few KiB.
    pub const CONTAINER_CONFIG: Limit = Limit { what: "an LXC container config", bytes: MIB };
    /// A file or directory entry named by `lxc.include`.
    pub const LXC_INCLUDE: Limit = Limit { what: "an lxc.include file", bytes: MIB };
    /// `/etc/sysctl.d/*.conf` and its sibling directories, `/etc/sysctl.conf`, the persisted file.
    pub const SYSCTL_FILE: Limit = Limit { what: "a sysctl.d file", bytes: MIB };
    /// `/etc/docker/daemon.json`.
    pub const DAEMON_JSON: Limit = Limit { what: "Docker's daemon.json", bytes: MIB };
    /// Any other host file hostguard reads (`/etc/os-release`-like facts).
    pub const HOST_FILE: Limit = Limit { what: "a host file", bytes: MIB };
    /// `/etc/subuid`, `/etc/subgid`.
    pub const ID_MAP: Limit = Limit { what: "an id map (/etc/subuid, /etc/subgid)", bytes: MIB };
    /// A kernel file: a `/proc/sys` value, a cgroup file, `/proc/meminfo`. The kernel prints at
    /// most a page or two for each; `ip_local_reserved_ports` with every port listed is ~330 KiB.
    pub const KERNEL_FILE: Limit = Limit { what: "a kernel file", bytes: MIB };
    /// `/lib/modules/RELEASE/modules.dep`, read to know whether a sysctl name could load a module
    /// (Debian's is about 1 MiB).
    pub const MODULES_DEP: Limit = Limit { what: "the kernel's module list (modules.dep)", bytes: 16 * MIB };
    /// What one command hostguard runs may print on standard output (`iptables-save` of a host
    /// with 100,000 rules prints about 15 MiB).
    pub const COMMAND_STDOUT: Limit = Limit { what: "a command's output", bytes: 64 * MIB };
    /// Standard error is kept up to this much (the rest is read and dropped, so the command
    /// never blocks on a full pipe).
    pub const COMMAND_STDERR: Limit = Limit { what: "a command's error output", bytes: 64 * KIB };
}

/// How a file that is not a regular file is described: "is a FIFO".
pub fn describe(t: FileType) -> &'static str {
    match t {
        FileType::RegularFile => "is a regular file",
        FileType::Directory => "is a directory",
        FileType::Symlink => "is a symbolic link",
        FileType::Fifo => "is a FIFO (named pipe)",
        FileType::Socket => "is a socket",
        FileType::CharacterDevice => "is a character device",
        FileType::BlockDevice => "is a block device",
        FileType::Unknown => "is not a regular file",
    }
}

/// Open a regular file for reading, after looking at what it is without opening it.
/// `open` opens the path with the given flags (resolved below the root by the caller).
pub fn open_regular(
    shown: &Path,
    limit: Limit,
    open: &dyn Fn(OFlags) -> std::io::Result<OwnedFd>,
) -> Result<(OwnedFd, u64), HostError> {
    let look = open(OFlags::PATH).map_err(|e| HostError::io(shown, e))?;
    check(shown, limit, &look)?;
    let fd = open(OFlags::RDONLY | OFlags::NONBLOCK | OFlags::NOCTTY).map_err(|e| HostError::io(shown, e))?;
    let size = check(shown, limit, &fd)?;
    Ok((fd, size))
}

fn check(shown: &Path, limit: Limit, fd: &OwnedFd) -> Result<u64, HostError> {
    let st = rustix::fs::fstat(fd).map_err(|e| HostError::io(shown, e.into()))?;
    let t = FileType::from_raw_mode(st.st_mode);
    if t != FileType::RegularFile {
        return Err(HostError::NotRegular { path: shown.to_path_buf(), what: describe(t) });
    }
    let size = st.st_size.max(0) as u64;
    if size > limit.bytes {
        return Err(too_large(shown, limit, Some(size)));
    }
    Ok(size)
}

fn too_large(shown: &Path, limit: Limit, size: Option<u64>) -> HostError {
    HostError::TooLarge { path: shown.to_path_buf(), what: limit.what, limit: limit.bytes, size }
}

/// Read at most `limit` bytes of an open regular file; more is an error, never a longer read.
pub fn read_to_string(shown: &Path, limit: Limit, fd: OwnedFd) -> Result<String, HostError> {
    let mut bytes = Vec::new();
    std::fs::File::from(fd)
        .take(limit.bytes + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| HostError::io(shown, e))?;
    if bytes.len() as u64 > limit.bytes {
        return Err(too_large(shown, limit, None));
    }
    String::from_utf8(bytes)
        .map_err(|_| HostError::io(shown, std::io::Error::new(std::io::ErrorKind::InvalidData, "is not UTF-8 text")))
}

pub use crate::error::human_bytes;
