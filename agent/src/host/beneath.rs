//! Opening host paths below the root without being led out of it by a link.
//!
//! Reads and kernel-file writes resolve as in a chroot (`RESOLVE_IN_ROOT`): links inside the root
//! are followed (cgroup v1's `cpu -> cpu,cpuacct`), but an absolute target or `..` never leaves
//! it, so a fake root's `/proc/sys/vm` linked to the real `/etc` neither leaks nor overwrites a real
//! file. Files hostguard replaces are stricter: no link at all between the root and the file,
//! because a link in a directory hostguard writes to (`/etc/sysctl.d -> /tmp/x`) is either an
//! attack or a layout nobody told it about, and either way a root-owned write must not follow it.

use std::ffi::OsStr;
use std::io;
use std::path::{Component, Path};

use rustix::fd::{AsFd, OwnedFd};
use rustix::fs::{AtFlags, FileType, Mode, OFlags, ResolveFlags, CWD};
use rustix::io::Errno;

use crate::error::HostError;

fn open_root(root: &Path, flags: OFlags) -> io::Result<OwnedFd> {
    // The root itself is the operator's choice: a link there is followed.
    Ok(rustix::fs::open(root, flags | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())?)
}

/// `abs` without its leading `/`, for resolving relative to the root.
fn relative(abs: &Path) -> &Path {
    abs.strip_prefix("/").unwrap_or(abs)
}

/// Open `abs` as if `root` were `/`; `flags` may add `NOFOLLOW` for the last component.
pub fn open_in_root(root: &Path, abs: &Path, flags: OFlags) -> io::Result<OwnedFd> {
    let rel = relative(abs);
    let rel = if rel.as_os_str().is_empty() { Path::new(".") } else { rel };
    let dir = open_root(root, OFlags::PATH)?;
    // EAGAIN: a rename raced with the lookup; the kernel asks for a retry.
    for _ in 0..16 {
        match rustix::fs::openat2(&dir, rel, flags | OFlags::CLOEXEC, Mode::empty(), ResolveFlags::IN_ROOT) {
            Err(Errno::AGAIN) => continue,
            // Kernels before 5.6 have no openat2: fall back to a plain open.
            Err(Errno::NOSYS) => return Ok(rustix::fs::openat(CWD, &root.join(rel), flags | OFlags::CLOEXEC, Mode::empty())?),
            other => return Ok(other?),
        }
    }
    Err(Errno::AGAIN.into())
}

/// Open the directory `abs` for writing into it, one component at a time, refusing any link on
/// the way. With `create`, missing directories are made (mode 0755) and `created` is called for
/// each, so each counts as a host write.
pub fn open_dir_for_write(root: &Path, abs: &Path, create: bool, created: &dyn Fn()) -> Result<OwnedFd, HostError> {
    if create && !root.exists() {
        // The root is the operator's path, taken as given.
        std::fs::create_dir_all(root).map_err(|e| HostError::io(root, e))?;
    }
    let mut fd = open_root(root, OFlags::RDONLY).map_err(|e| HostError::io(root, e))?;
    let mut shown = root.to_path_buf();
    for comp in relative(abs).components() {
        let name = match comp {
            Component::Normal(n) => n,
            Component::CurDir => continue,
            _ => return Err(HostError::Other(format!("{}: a path hostguard writes may not contain `..`", abs.display()))),
        };
        shown.push(name);
        fd = open_child_dir(&fd, name, &shown, create, created)?;
    }
    Ok(fd)
}

fn open_child_dir(parent: &OwnedFd, name: &OsStr, shown: &Path, create: bool, created: &dyn Fn()) -> Result<OwnedFd, HostError> {
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let mut made = false;
    loop {
        match rustix::fs::openat(parent, name, flags, Mode::empty()) {
            Ok(fd) => return Ok(fd),
            Err(Errno::NOENT) if create && !made => {
                match rustix::fs::mkdirat(parent, name, Mode::from_raw_mode(0o755)) {
                    Ok(()) => created(),
                    Err(Errno::EXIST) => {}
                    Err(e) => return Err(HostError::io(shown, e.into())),
                }
                made = true;
            }
            Err(e @ (Errno::LOOP | Errno::NOTDIR)) => {
                return Err(match file_type(parent, name) {
                    Ok(Some(FileType::Symlink)) => HostError::Symlink { path: shown.to_path_buf() },
                    _ => HostError::io(shown, e.into()),
                })
            }
            Err(e) => return Err(HostError::io(shown, e.into())),
        }
    }
}

/// The type of `name` in `dir` without following a link; `None` when it does not exist.
pub fn file_type(dir: impl AsFd, name: &OsStr) -> io::Result<Option<FileType>> {
    match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => Ok(Some(FileType::from_raw_mode(st.st_mode))),
        Err(Errno::NOENT) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Names in the directory `dir`.
pub fn names(dir: impl AsFd) -> io::Result<Vec<String>> {
    let mut out = Vec::new();
    let mut d = rustix::fs::Dir::read_from(dir)?;
    while let Some(entry) = d.read() {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name != "." && name != ".." {
            out.push(name);
        }
    }
    Ok(out)
}

/// Whether the temp file `entry`, left beside `name` by the run `pid` in it, belongs to a run
/// that is gone: the process no longer exists, or it is this very process (a killed run whose
/// pid was reused by us). A live other process keeps its file; our own name cannot collide with it.
pub fn stale_temp(entry: &str, name: &str, marker: &str) -> bool {
    let Some(pid) = entry.strip_prefix(&format!(".{name}{marker}")) else { return false };
    let Ok(pid) = pid.parse::<i32>() else { return false };
    if pid <= 0 {
        return false;
    }
    if pid as u32 == std::process::id() {
        return true;
    }
    // SAFETY: kill with signal 0 only checks whether the process exists.
    let rc = unsafe { libc::kill(pid, 0) };
    rc != 0 && io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH)
}
