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
use std::collections::HashMap;
use std::path::{Component, Path, PathBuf};

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
    let mut dirs = Dirs::new(root);
    let i = dirs.open(abs, create, created)?;
    Ok(dirs.opened.swap_remove(i))
}

/// Directories opened for writing into them, as `open_dir_for_write` opens them, each at most
/// once: a batch of 1,000 container configs opens `/var/lib/lxc` once rather than walking
/// `/`, `var`, `lib`, `lxc` again for every config. A directory stays the one that was opened
/// (no link on the way at the time it was opened) for as long as the batch holds it, as a
/// single file's write holds its directory from the temp file to the directory's fsync.
pub struct Dirs<'a> {
    root: &'a Path,
    /// The directories asked for, by index (`open`'s answer), held until the batch ends.
    opened: Vec<OwnedFd>,
    by_path: HashMap<PathBuf, usize>,
    /// Directories on the way to them (the root is `""`), kept only to open children from, and
    /// dropped when there are many, so that deep unrelated paths cannot use up descriptors.
    between: HashMap<PathBuf, OwnedFd>,
}

/// Directories on the way kept open at most, beside the ones asked for.
const BETWEEN_KEPT: usize = 64;

impl<'a> Dirs<'a> {
    pub fn new(root: &'a Path) -> Dirs<'a> {
        Dirs { root, opened: Vec::new(), by_path: HashMap::new(), between: HashMap::new() }
    }

    /// The directory `open` answered with `i`.
    pub fn fd(&self, i: usize) -> &OwnedFd {
        &self.opened[i]
    }

    /// Open the directory `abs` as `open_dir_for_write` does, unless this batch opened it
    /// already; the answer is its index for `fd`, the same for the same directory.
    pub fn open(&mut self, abs: &Path, create: bool, created: &dyn Fn()) -> Result<usize, HostError> {
        let mut names = Vec::new();
        for comp in relative(abs).components() {
            match comp {
                Component::Normal(n) => names.push(n),
                Component::CurDir => {}
                _ => return Err(HostError::Other(format!("{}: a path hostguard writes may not contain `..`", abs.display()))),
            }
        }
        let key = |k: usize| names[..k].iter().collect::<PathBuf>();
        let full = key(names.len());
        if let Some(&i) = self.by_path.get(&full) {
            return Ok(i);
        }
        // The deepest directory on the way that is open already.
        let mut start = names.len();
        while start > 0 {
            let k = key(start);
            if self.between.contains_key(&k) || self.by_path.contains_key(&k) {
                break;
            }
            start -= 1;
        }
        if start == 0 && !self.between.contains_key(Path::new("")) {
            if create && !self.root.exists() {
                // The root is the operator's path, taken as given.
                std::fs::create_dir_all(self.root).map_err(|e| HostError::io(self.root, e))?;
            }
            let fd = open_root(self.root, OFlags::RDONLY).map_err(|e| HostError::io(self.root, e))?;
            self.between.insert(PathBuf::new(), fd);
        }
        let mut at = key(start);
        for name in &names[start..] {
            let parent = self.between.get(&at).or_else(|| self.by_path.get(&at).map(|&i| &self.opened[i])).expect("the parent was opened");
            let fd = open_child_dir(parent, name, &self.root.join(at.join(name)), create, created)?;
            at.push(name);
            if at != full {
                if self.between.len() >= BETWEEN_KEPT {
                    self.between.clear();
                }
                self.between.insert(at.clone(), fd);
            } else {
                self.opened.push(fd);
            }
        }
        if let Some(fd) = self.between.remove(&full) {
            // Opened on the way to another directory earlier: now asked for itself.
            self.opened.push(fd);
        }
        let i = self.opened.len() - 1;
        self.by_path.insert(full, i);
        Ok(i)
    }
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
