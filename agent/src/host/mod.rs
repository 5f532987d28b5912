//! The one door to the host: files under a root directory, and commands run as argument vectors.
//!
//! Every host path in hostguard is written as the absolute path it has on a real host
//! (`/proc/sys/vm/swappiness`); `Host` prefixes it with `--root`, so tests and chroots run the
//! same code on a temp directory. Nothing here ever invokes a shell.

mod beneath;
mod bounded;
mod lock;
pub mod netns;
mod run;
mod write;

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

pub use bounded::{human_bytes, limits, Limit};
pub use lock::Lock;

use crate::error::HostError;

/// The environment variable that makes a run kill itself after its Nth host write: how the
/// crash-at-any-point tests stop `apply` at a chosen moment.
pub const FAULT_AFTER_WRITES_ENV: &str = "HOSTGUARD_FAULT_AFTER_WRITES";

/// Fault injection for a process `spawn_detached` starts (the `--confirm` watchdog): it is
/// killed after its own Nth host write.
pub const FAULT_DETACHED_AFTER_WRITES_ENV: &str = "HOSTGUARD_FAULT_DETACHED_AFTER_WRITES";

/// The largest existing file `write_file` reads to compare or back up before replacing it.
const MAX_REPLACED_BYTES: u64 = 16 * 1024 * 1024;

/// Names of temp files hostguard creates beside a file it replaces.
pub const TEMP_MARKER: &str = ".hostguard-tmp.";

#[derive(Debug)]
pub struct Host {
    root: PathBuf,
    backup_dir: Option<PathBuf>,
    writes: AtomicUsize,
    fault_after: Option<usize>,
    command_timeout: std::time::Duration,
}

/// An entry `Host::walk` found: its path below the walked directory, its type and permission
/// bits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub rel: String,
    pub kind: rustix::fs::FileType,
    pub mode: u32,
}

/// What a command printed and how it ended.
#[derive(Debug, Clone)]
pub struct Output {
    pub success: bool,
    pub status: String,
    pub stdout: String,
    pub stderr: String,
}

impl Host {
    pub fn new(root: impl Into<PathBuf>) -> Host {
        let fault_after = std::env::var(FAULT_AFTER_WRITES_ENV).ok().and_then(|v| v.parse().ok());
        Host {
            root: root.into(),
            backup_dir: None,
            writes: AtomicUsize::new(0),
            fault_after,
            command_timeout: run::timeout_from_env(),
        }
    }

    /// Keep the replaced version of every file `write_file` rewrites in `dir` (a real path, not
    /// under the root).
    pub fn with_backup_dir(mut self, dir: Option<PathBuf>) -> Host {
        self.backup_dir = dir;
        self
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The real path of a host path: `/proc/sys/x` under `--root /tmp/r` is `/tmp/r/proc/sys/x`.
    pub fn path(&self, abs: impl AsRef<Path>) -> PathBuf {
        let abs = abs.as_ref();
        self.root.join(abs.strip_prefix("/").unwrap_or(abs))
    }

    /// Whether `abs` exists, resolved like the reads (links only within the root).
    pub fn exists(&self, abs: impl AsRef<Path>) -> bool {
        beneath::open_in_root(&self.root, abs.as_ref(), rustix::fs::OFlags::PATH).is_ok()
    }

    pub fn is_dir(&self, abs: impl AsRef<Path>) -> bool {
        beneath::open_in_root(&self.root, abs.as_ref(), rustix::fs::OFlags::PATH | rustix::fs::OFlags::DIRECTORY).is_ok()
    }

    /// Read a file; links are followed only within the root (see `beneath`). Only a regular file
    /// is read, up to the limit for its place: a kernel file under `/proc` or `/sys`, otherwise a
    /// generic host file (`read_bounded` names the kind).
    pub fn read_to_string(&self, abs: impl AsRef<Path>) -> Result<String, HostError> {
        let abs = abs.as_ref();
        let limit = if abs.starts_with("/proc") || abs.starts_with("/sys") { limits::KERNEL_FILE } else { limits::HOST_FILE };
        self.read_bounded(abs, limit)
    }

    /// Read a regular file of the kind `limit` names: a FIFO, socket, device or directory is
    /// `HostError::NotRegular` without being opened for reading, a larger file
    /// `HostError::TooLarge` without being read past the limit.
    pub fn read_bounded(&self, abs: impl AsRef<Path>, limit: Limit) -> Result<String, HostError> {
        let abs = abs.as_ref();
        let shown = self.path(abs);
        let open = |flags| beneath::open_in_root(&self.root, abs, flags);
        let (fd, _) = bounded::open_regular(&shown, limit, &open)?;
        bounded::read_to_string(&shown, limit, fd)
    }

    /// `None` when the file does not exist; any other failure is an error.
    pub fn read_optional(&self, abs: impl AsRef<Path>) -> Result<Option<String>, HostError> {
        not_found_is_none(self.read_to_string(abs))
    }

    /// `read_bounded`, with `None` when the file does not exist.
    pub fn read_optional_bounded(&self, abs: impl AsRef<Path>, limit: Limit) -> Result<Option<String>, HostError> {
        not_found_is_none(self.read_bounded(abs, limit))
    }

    /// Names in a directory, sorted; empty when the directory does not exist.
    pub fn list_dir(&self, abs: impl AsRef<Path>) -> Result<Vec<String>, HostError> {
        let abs = abs.as_ref();
        let p = self.path(abs);
        let dir = match beneath::open_in_root(&self.root, abs, rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::DIRECTORY) {
            Ok(d) => d,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(HostError::io(&p, e)),
        };
        let mut names = beneath::names(&dir).map_err(|e| HostError::io(&p, e))?;
        names.sort();
        Ok(names)
    }

    /// The type and permission bits of `abs` itself (not following a last link); `None` when it
    /// cannot be looked at.
    pub fn mode(&self, abs: impl AsRef<Path>) -> Option<(rustix::fs::FileType, u32)> {
        let fd = beneath::open_in_root(&self.root, abs.as_ref(), rustix::fs::OFlags::PATH | rustix::fs::OFlags::NOFOLLOW).ok()?;
        let st = rustix::fs::fstat(&fd).ok()?;
        Some((rustix::fs::FileType::from_raw_mode(st.st_mode), st.st_mode & 0o7777))
    }

    /// Whether `abs`, a file of the kernel's procfs, prints text when read from offset 1, as its
    /// string handler (proc_dostring) does and its integer handlers (proc_dointvec and kin, the
    /// bitmap) do not: they print nothing past offset 0. `None` when `abs` is not procfs's (a
    /// fake root's plain file) or cannot be read.
    pub fn proc_prints_past_start(&self, abs: impl AsRef<Path>) -> Option<bool> {
        use rustix::fs::OFlags;
        const PROC_SUPER_MAGIC: i64 = 0x9fa0;
        let fd = beneath::open_in_root(&self.root, abs.as_ref(), OFlags::RDONLY | OFlags::NONBLOCK | OFlags::NOFOLLOW).ok()?;
        if rustix::fs::fstatfs(&fd).ok()?.f_type as i64 != PROC_SUPER_MAGIC {
            return None;
        }
        let mut byte = [0u8; 1];
        rustix::io::pread(&fd, &mut byte, 1).ok().map(|n| n > 0)
    }

    /// Whether this process may both read and write `abs` as it stands (access(2)): the kernel's
    /// own answer, which for /proc/sys includes a network namespace's ownership and a read-only
    /// mount.
    pub fn may_read_and_write(&self, abs: impl AsRef<Path>) -> bool {
        use rustix::fs::{Access, AtFlags};
        rustix::fs::accessat(rustix::fs::CWD, &self.path(abs), Access::READ_OK | Access::WRITE_OK, AtFlags::empty()).is_ok()
    }

    /// Whether `abs` itself is a symbolic link (its directory resolved like the reads).
    pub fn is_symlink(&self, abs: impl AsRef<Path>) -> bool {
        let abs = abs.as_ref();
        let (Some(dir), Some(name)) = (abs.parent(), abs.file_name()) else { return false };
        beneath::open_in_root(&self.root, dir, rustix::fs::OFlags::PATH | rustix::fs::OFlags::DIRECTORY)
            .and_then(|d| beneath::file_type(&d, name))
            .is_ok_and(|t| t == Some(rustix::fs::FileType::Symlink))
    }

    /// Write a kernel interface file in place (`/proc/sys`, cgroup files): these cannot be
    /// replaced by rename, and the kernel takes the value in one write.
    /// Links are followed only within the root, never at the file itself.
    pub fn write_value(&self, abs: impl AsRef<Path>, value: &str) -> Result<(), HostError> {
        use rustix::fs::OFlags;
        let abs = abs.as_ref();
        let p = self.path(abs);
        let mut f = beneath::open_in_root(&self.root, abs, OFlags::WRONLY | OFlags::TRUNC | OFlags::NOFOLLOW)
            .map(File::from)
            .map_err(|e| HostError::io(&p, e))?;
        f.write_all(value.as_bytes()).map_err(|e| HostError::io(&p, e))?;
        self.count_write();
        Ok(())
    }

    /// Replace a file atomically: temp file in the same directory, fsync, rename, fsync the
    /// directory. A file whose content is already right is not rewritten; returns whether it was.
    /// Refuses to write through a symlink, so a planted link cannot redirect a root-owned write.
    /// `write_files` does the same for many files at once.
    pub fn write_file(&self, abs: impl AsRef<Path>, contents: &[u8]) -> Result<bool, HostError> {
        self.write_files(&[(abs.as_ref(), contents)]).pop().expect("one result per file")
    }

    /// Remove temp files that a killed run left beside `name` (`.NAME.hostguard-tmp.PID`, PID
    /// gone). They are never read, since they are dot files without a `.conf` suffix; removing
    /// them keeps a directory from filling up over many killed runs. Best effort: a file that
    /// cannot be removed is left, and cannot collide with this run's own temp name.
    /// A temp file of `name` last written before the machine booted: its writer died with the
    /// previous boot (a power cut), whatever process has its PID now.
    fn before_this_boot(dir: &rustix::fd::OwnedFd, entry: &str, name: &str) -> bool {
        if !entry.starts_with(&format!(".{name}{TEMP_MARKER}")) {
            return false;
        }
        let boot = fs::read_to_string("/proc/stat")
            .ok()
            .and_then(|s| s.lines().find_map(|l| l.strip_prefix("btime ")?.trim().parse::<i64>().ok()));
        let st = rustix::fs::statat(dir, entry, rustix::fs::AtFlags::SYMLINK_NOFOLLOW);
        matches!((boot, st), (Some(b), Ok(st)) if (st.st_mtime as i64) < b)
    }

    /// Remove the temp files that dead runs left beside the file `abs`, as a write of `abs`
    /// does, for a file that needs no write: a power cut between a batch's durable temp files
    /// and its renames leaves them beside files that are already as the next apply wants them.
    /// Best effort, and nothing when the directory does not exist.
    pub fn remove_stale_temps_beside(&self, abs: impl AsRef<Path>) {
        let Some((dir_abs, name)) = split(abs.as_ref()) else { return };
        if let Ok(Some(dir)) = self.existing_dir(dir_abs) {
            self.remove_stale_temps(&dir, &name.to_string_lossy());
        }
    }

    fn remove_stale_temps(&self, dir: &rustix::fd::OwnedFd, name: &str) {
        let Ok(entries) = beneath::names(dir) else { return };
        for entry in entries {
            if (beneath::stale_temp(&entry, name, TEMP_MARKER) || Self::before_this_boot(dir, &entry, name))
                && rustix::fs::unlinkat(dir, entry.as_str(), rustix::fs::AtFlags::empty()).is_ok()
            {
                self.count_write();
            }
        }
    }

    fn backup(&self, abs: &Path, old: &[u8], backups: &Path) -> Result<(), HostError> {
        let flat = abs.to_string_lossy().trim_start_matches('/').replace('/', "_");
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        fs::create_dir_all(backups).map_err(|e| HostError::io(backups, e))?;
        let dest = backups.join(format!("{flat}.{stamp}"));
        fs::write(&dest, old).map_err(|e| HostError::io(&dest, e))
    }

    /// Rename `from` to `to` (both below the root, no link on the way to either), then make the
    /// rename durable. `false` when `from` does not exist: of two runs renaming the same file,
    /// exactly one sees `true`, which is what a state machine of renames commits on.
    pub fn rename(&self, from: impl AsRef<Path>, to: impl AsRef<Path>) -> Result<bool, HostError> {
        let (from, to) = (from.as_ref(), to.as_ref());
        let (Some((from_dir, from_name)), Some((to_dir, to_name))) = (split(from), split(to)) else {
            return Err(HostError::Other(format!("{} -> {}: not file paths", from.display(), to.display())));
        };
        let Some(src) = self.existing_dir(from_dir)? else { return Ok(false) };
        let dst = if to_dir == from_dir { None } else { Some(beneath::open_dir_for_write(&self.root, to_dir, false, &|| {})?) };
        let dst_fd = dst.as_ref().unwrap_or(&src);
        match rustix::fs::renameat(&src, from_name, dst_fd, to_name) {
            Ok(()) => {}
            Err(rustix::io::Errno::NOENT) => return Ok(false),
            Err(e) => return Err(HostError::io(self.path(from), e.into())),
        }
        self.count_write();
        for d in [Some(&src), dst.as_ref()].into_iter().flatten() {
            rustix::fs::fsync(d).map_err(|e| HostError::io(self.path(to), e.into()))?;
        }
        Ok(true)
    }

    /// Remove the file `abs` (no link on the way to it); `false` when it was not there.
    pub fn remove(&self, abs: impl AsRef<Path>) -> Result<bool, HostError> {
        let abs = abs.as_ref();
        let Some((dir_abs, name)) = split(abs) else { return Err(HostError::Other(format!("{}: not a file path", abs.display()))) };
        let Some(dir) = self.existing_dir(dir_abs)? else { return Ok(false) };
        match rustix::fs::unlinkat(&dir, name, rustix::fs::AtFlags::empty()) {
            Ok(()) => {}
            Err(rustix::io::Errno::NOENT) => return Ok(false),
            Err(e) => return Err(HostError::io(self.path(abs), e.into())),
        }
        self.count_write();
        rustix::fs::fsync(&dir).map_err(|e| HostError::io(self.path(dir_abs), e.into()))?;
        Ok(true)
    }

    /// The directory `abs` opened for writing into it, `None` when it does not exist.
    fn existing_dir(&self, abs: &Path) -> Result<Option<rustix::fd::OwnedFd>, HostError> {
        match beneath::open_dir_for_write(&self.root, abs, false, &|| {}) {
            Ok(d) => Ok(Some(d)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Every entry below the directory `abs`, depth first in name order, with its type and
    /// permission bits as the entry itself has them (a link is reported, never followed).
    /// `wanted(rel)` decides, for each entry's path relative to `abs`, whether it is listed and,
    /// for a directory, entered. Empty when `abs` does not exist.
    pub fn walk(&self, abs: impl AsRef<Path>, wanted: &mut dyn FnMut(&str) -> bool) -> Result<Vec<Found>, HostError> {
        use rustix::fs::{AtFlags, FileType, Mode, OFlags};
        let abs = abs.as_ref();
        let top = match beneath::open_in_root(&self.root, abs, OFlags::RDONLY | OFlags::DIRECTORY) {
            Ok(d) => d,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(HostError::io(self.path(abs), e)),
        };
        let mut out = Vec::new();
        let mut stack = vec![(top, String::new())];
        while let Some((dir, rel_dir)) = stack.pop() {
            let shown = || self.path(abs.join(&rel_dir));
            let mut names = beneath::names(&dir).map_err(|e| HostError::io(shown(), e))?;
            names.sort();
            let mut subdirs = Vec::new();
            for name in names {
                let rel = if rel_dir.is_empty() { name.clone() } else { format!("{rel_dir}/{name}") };
                if !wanted(&rel) {
                    continue;
                }
                // An entry gone since the listing (a process exiting under /proc) is skipped.
                let Ok(st) = rustix::fs::statat(&dir, name.as_str(), AtFlags::SYMLINK_NOFOLLOW) else { continue };
                let kind = FileType::from_raw_mode(st.st_mode);
                if kind == FileType::Directory {
                    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
                    match rustix::fs::openat(&dir, name.as_str(), flags, Mode::empty()) {
                        Ok(sub) => subdirs.push((sub, rel.clone())),
                        Err(rustix::io::Errno::NOENT) => continue,
                        Err(e) => return Err(HostError::io(self.path(abs.join(&rel)), e.into())),
                    }
                }
                out.push(Found { rel, kind, mode: st.st_mode & 0o7777 });
            }
            stack.extend(subdirs);
        }
        // Depth first in name order: a directory's entries come after it, before its next sibling.
        out.sort_by(|a, b| a.rel.split('/').cmp(b.rel.split('/')));
        Ok(out)
    }

    /// Start `argv` detached: its own session, standard streams on /dev/null, never waited for,
    /// so it outlives the terminal or SSH connection of this run. Counts as a host write (the
    /// started process is a commit point of the run that starts it). The child does not inherit
    /// this run's fault injection; `HOSTGUARD_FAULT_DETACHED_AFTER_WRITES` gives it its own.
    pub fn spawn_detached(&self, argv: &[&std::ffi::OsStr]) -> Result<(), HostError> {
        use std::os::unix::process::CommandExt;
        use std::process::{Command, Stdio};
        let shown = argv.iter().map(|a| a.to_string_lossy()).collect::<Vec<_>>().join(" ");
        let (prog, args) = argv.split_first().ok_or_else(|| HostError::Other("empty command".into()))?;
        let mut cmd = Command::new(prog);
        cmd.args(args).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null()).env_remove(FAULT_AFTER_WRITES_ENV);
        if let Ok(n) = std::env::var(FAULT_DETACHED_AFTER_WRITES_ENV) {
            cmd.env(FAULT_AFTER_WRITES_ENV, n);
        }
        // SAFETY: setsid is async-signal-safe and touches no memory of the parent.
        unsafe {
            cmd.pre_exec(|| {
                libc::setsid();
                Ok(())
            });
        }
        cmd.spawn().map_err(|source| HostError::Spawn { argv: shown, source })?;
        self.count_write();
        Ok(())
    }

    /// Replace a file at a real path, not one under `--root` (the metrics file, the saved state
    /// document), the way `write_file` replaces one: atomically, skipping identical content,
    /// never through a link. Returns whether it was written.
    pub fn write_real_file(path: &Path, contents: &[u8]) -> Result<bool, HostError> {
        let abs = std::path::absolute(path).map_err(|e| HostError::io(path, e))?;
        Host::new("/").write_file(&abs, contents)
    }

    /// Make a directory and its parents below the root, refusing to follow a link on the way.
    pub fn create_dir_all(&self, abs: impl AsRef<Path>) -> Result<(), HostError> {
        beneath::open_dir_for_write(&self.root, abs.as_ref(), true, &|| self.count_write())?;
        Ok(())
    }

    /// Run a command as an argument vector, never through a shell; its output is read bounded
    /// (`limits::COMMAND_STDOUT`), and it is killed after the command timeout (`run` module).
    pub fn run(&self, argv: &[&str], stdin: Option<&[u8]>) -> Result<Output, HostError> {
        run::run(argv, stdin, self.command_timeout, limits::COMMAND_STDOUT.bytes)
    }

    /// `run_ok`, with standard output given to `on_stdout` piece by piece as the command prints
    /// it (`Output::stdout` stays empty).
    pub fn run_ok_streaming(&self, argv: &[&str], on_stdout: &mut dyn FnMut(&[u8])) -> Result<Output, HostError> {
        run::run_streaming(argv, None, self.command_timeout, limits::COMMAND_STDOUT.bytes, on_stdout)?.ok(argv)
    }

    /// How long a command may run before it is killed.
    pub fn with_command_timeout(mut self, timeout: std::time::Duration) -> Host {
        self.command_timeout = timeout;
        self
    }

    /// Like `run`, but a non-zero exit is an error carrying the command's stderr.
    pub fn run_ok(&self, argv: &[&str], stdin: Option<&[u8]>) -> Result<Output, HostError> {
        self.run(argv, stdin)?.ok(argv)
    }

    /// Run a command that changes the host (a firewall transaction committed, a value set with
    /// `lxc-cgroup`), as `run` does. When it succeeds it is a host write, so the crash tests stop
    /// a run right after the change; a failed one is not, since the commands run this way change
    /// nothing when they fail (`nft -f` and `iptables-restore` commit all or nothing).
    pub fn run_change(&self, argv: &[&str], stdin: Option<&[u8]>) -> Result<Output, HostError> {
        let out = self.run(argv, stdin)?;
        if out.success {
            self.count_write();
        }
        Ok(out)
    }

    /// Take the run lock `/run/hostguard.lock`, waiting at most `timeout`.
    /// `/run` is made without following a link, so a fake root's `/run` linked elsewhere cannot
    /// put the lock (and its truncating open) outside the root.
    pub fn lock(&self, timeout: std::time::Duration) -> Result<Lock, crate::error::Error> {
        beneath::open_dir_for_write(&self.root, Path::new("/run"), true, &|| {})?;
        Lock::acquire(&self.path("/run/hostguard.lock"), timeout)
    }

    /// Counts host writes; with the fault variable set, dies (as SIGKILL would) after the Nth.
    /// Only `Host` writes, so every write is counted where it is made.
    fn count_write(&self) {
        let n = self.writes.fetch_add(1, Ordering::SeqCst) + 1;
        if self.fault_after == Some(n) {
            // SAFETY: raising a signal on ourselves has no memory-safety preconditions.
            unsafe {
                libc::raise(libc::SIGKILL);
            }
        }
    }
}

impl Output {
    /// The output of a command that succeeded; a non-zero exit is an error carrying its stderr.
    pub fn ok(self, argv: &[&str]) -> Result<Output, HostError> {
        if self.success {
            return Ok(self);
        }
        Err(HostError::Command { argv: argv.join(" "), status: self.status, stderr: self.stderr.trim().to_string() })
    }
}

/// The directory part and the file name of a host path.
fn split(abs: &Path) -> Option<(&Path, &std::ffi::OsStr)> {
    Some((abs.parent()?, abs.file_name()?))
}

fn not_found_is_none(r: Result<String, HostError>) -> Result<Option<String>, HostError> {
    match r {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn paths_are_prefixed_by_the_root() {
        let h = Host::new("/tmp/r");
        assert_eq!(h.path("/proc/sys/vm/swappiness"), PathBuf::from("/tmp/r/proc/sys/vm/swappiness"));
        assert_eq!(Host::new("/").path("/etc/x"), PathBuf::from("/etc/x"));
    }

    #[test]
    fn write_file_is_atomic_and_skips_identical_content() {
        let dir = tempfile::tempdir().unwrap();
        let h = Host::new(dir.path());
        assert!(h.write_file("/etc/a/b.conf", b"one\n").unwrap());
        assert!(!h.write_file("/etc/a/b.conf", b"one\n").unwrap());
        assert!(h.write_file("/etc/a/b.conf", b"two\n").unwrap());
        assert_eq!(h.read_to_string("/etc/a/b.conf").unwrap(), "two\n");
        let leftovers: Vec<_> = h.list_dir("/etc/a").unwrap();
        assert_eq!(leftovers, vec!["b.conf"]);
    }

    #[test]
    fn write_file_refuses_a_planted_symlink() {
        let dir = tempfile::tempdir().unwrap();
        let h = Host::new(dir.path());
        let victim = dir.path().join("victim");
        fs::write(&victim, "secret").unwrap();
        fs::create_dir_all(dir.path().join("etc")).unwrap();
        std::os::unix::fs::symlink(&victim, dir.path().join("etc/x.conf")).unwrap();
        let e = h.write_file("/etc/x.conf", b"pwned").unwrap_err();
        assert!(matches!(e, HostError::Symlink { .. }));
        assert_eq!(fs::read_to_string(&victim).unwrap(), "secret");
    }

    #[test]
    fn write_file_refuses_a_linked_parent_directory() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let h = Host::new(dir.path().join("root"));
        fs::create_dir_all(dir.path().join("root/etc")).unwrap();
        std::os::unix::fs::symlink(outside.path(), dir.path().join("root/etc/sysctl.d")).unwrap();
        let e = h.write_file("/etc/sysctl.d/60-hostguard.conf", b"x").unwrap_err();
        assert!(matches!(&e, HostError::Symlink { path } if path.ends_with("etc/sysctl.d")), "{e}");
        assert_eq!(fs::read_dir(outside.path()).unwrap().count(), 0, "nothing written through the link");
        // Even a link that stays inside the root is refused for files hostguard replaces.
        fs::create_dir_all(dir.path().join("root/real")).unwrap();
        std::os::unix::fs::symlink("../real", dir.path().join("root/etc/lxc")).unwrap();
        assert!(matches!(h.write_file("/etc/lxc/x", b"x"), Err(HostError::Symlink { .. })));
        assert!(h.create_dir_all("/etc/sysctl.d/sub").is_err());
    }

    #[test]
    fn reads_and_kernel_writes_follow_links_only_within_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        fs::write(outside.path().join("shadow"), "secret").unwrap();
        let root = dir.path().join("root");
        fs::create_dir_all(root.join("proc/sys")).unwrap();
        fs::create_dir_all(root.join("sys/fs/cgroup/cpu,cpuacct")).unwrap();
        // An absolute link out of a fake root resolves inside it, as in a chroot.
        std::os::unix::fs::symlink(outside.path(), root.join("proc/sys/vm")).unwrap();
        let h = Host::new(&root);
        assert!(h.read_to_string("/proc/sys/vm/shadow").unwrap_err().is_not_found());
        assert!(h.write_value("/proc/sys/vm/shadow", "1").is_err());
        assert_eq!(fs::read_to_string(outside.path().join("shadow")).unwrap(), "secret");
        // cgroup v1's relative links within the root still work.
        std::os::unix::fs::symlink("cpu,cpuacct", root.join("sys/fs/cgroup/cpu")).unwrap();
        fs::write(root.join("sys/fs/cgroup/cpu,cpuacct/cpu.shares"), "1024\n").unwrap();
        h.write_value("/sys/fs/cgroup/cpu/cpu.shares", "512").unwrap();
        assert_eq!(h.read_to_string("/sys/fs/cgroup/cpu/cpu.shares").unwrap(), "512");
        assert_eq!(h.list_dir("/sys/fs/cgroup/cpu").unwrap(), vec!["cpu.shares"]);
    }

    #[test]
    fn stale_temp_files_of_dead_runs_are_removed_and_never_block_a_write() {
        let dir = tempfile::tempdir().unwrap();
        let h = Host::new(dir.path());
        h.write_file("/etc/a/b.conf", b"old\n").unwrap();
        let etc = dir.path().join("etc/a");
        // A run killed between writing its temp file and renaming it, with our pid (reused) and
        // with a pid that no longer exists.
        let ours = etc.join(format!(".b.conf{TEMP_MARKER}{}", std::process::id()));
        let dead = etc.join(format!(".b.conf{TEMP_MARKER}{}", i32::MAX - 1));
        let alive = etc.join(format!(".b.conf{TEMP_MARKER}1"));
        let other = etc.join(format!(".c.conf{TEMP_MARKER}{}", i32::MAX - 1));
        for p in [&ours, &dead, &alive, &other] {
            fs::write(p, "partial").unwrap();
        }
        assert!(h.write_file("/etc/a/b.conf", b"new\n").unwrap());
        assert_eq!(fs::read_to_string(etc.join("b.conf")).unwrap(), "new\n");
        assert!(!ours.exists() && !dead.exists(), "stale temp files removed");
        assert!(alive.exists(), "a live process's temp file is left alone");
        assert!(other.exists(), "only temp files of the file being written are touched");
    }

    #[test]
    fn stale_temp_files_go_when_the_file_already_holds_the_content() {
        // After a power cut between a batch's renames, an old config has its new version beside
        // it; the next apply may want the old content back, and then writes nothing.
        let dir = tempfile::tempdir().unwrap();
        let h = Host::new(dir.path());
        h.write_file("/var/lib/lxc/c/config", b"old\n").unwrap();
        let dead = dir.path().join(format!("var/lib/lxc/c/.config{TEMP_MARKER}{}", i32::MAX - 1));
        fs::write(&dead, "new\n").unwrap();
        assert!(!h.write_file("/var/lib/lxc/c/config", b"old\n").unwrap(), "nothing to write");
        assert!(!dead.exists(), "the stale temp file is removed");
        // After the power cut the PID in its name may belong to a live process of the new boot
        // (here 1): a temp file written before this boot is stale all the same.
        let reused = dir.path().join(format!("var/lib/lxc/c/.config{TEMP_MARKER}1"));
        fs::write(&reused, "new\n").unwrap();
        let f = fs::File::options().write(true).open(&reused).unwrap();
        f.set_modified(std::time::UNIX_EPOCH + std::time::Duration::from_secs(86400)).unwrap();
        drop(f);
        assert!(!h.write_file("/var/lib/lxc/c/config", b"old\n").unwrap());
        assert!(!reused.exists(), "a temp file from before this boot is removed whatever its PID");
    }

    #[test]
    fn a_replaced_file_keeps_its_mode() {
        let dir = tempfile::tempdir().unwrap();
        let h = Host::new(dir.path());
        h.write_file("/var/lib/lxc/c/config", b"a\n").unwrap();
        let p = dir.path().join("var/lib/lxc/c/config");
        fs::set_permissions(&p, fs::Permissions::from_mode(0o640)).unwrap();
        h.write_file("/var/lib/lxc/c/config", b"b\n").unwrap();
        assert_eq!(fs::metadata(&p).unwrap().permissions().mode() & 0o7777, 0o640);
    }

    #[test]
    fn the_lock_is_never_taken_through_a_linked_run_directory() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("root")).unwrap();
        std::os::unix::fs::symlink(outside.path(), dir.path().join("root/run")).unwrap();
        let e = Host::new(dir.path().join("root")).lock(std::time::Duration::from_secs(1)).unwrap_err();
        assert!(e.to_string().contains("symbolic link"), "{e}");
        assert_eq!(fs::read_dir(outside.path()).unwrap().count(), 0);
    }

    #[test]
    fn backups_keep_the_replaced_version() {
        let dir = tempfile::tempdir().unwrap();
        let backups = dir.path().join("bk");
        let h = Host::new(dir.path().join("root")).with_backup_dir(Some(backups.clone()));
        h.write_file("/etc/x.conf", b"old").unwrap();
        h.write_file("/etc/x.conf", b"new").unwrap();
        let kept: Vec<_> = fs::read_dir(&backups).unwrap().map(|e| e.unwrap().path()).collect();
        assert_eq!(kept.len(), 1);
        assert_eq!(fs::read_to_string(&kept[0]).unwrap(), "old");
    }

    #[test]
    fn rename_and_remove_commit_once_and_never_follow_a_link() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let h = Host::new(dir.path().join("root"));
        h.write_file("/run/x/pending", b"p").unwrap();
        assert!(h.rename("/run/x/pending", "/run/x/confirmed").unwrap());
        assert!(!h.rename("/run/x/pending", "/run/x/rolling").unwrap(), "the second rename of one file loses");
        assert_eq!(h.read_to_string("/run/x/confirmed").unwrap(), "p");
        assert!(h.remove("/run/x/confirmed").unwrap());
        assert!(!h.remove("/run/x/confirmed").unwrap());
        assert!(!h.remove("/no/such/dir/file").unwrap());
        fs::write(outside.path().join("victim"), "keep").unwrap();
        std::os::unix::fs::symlink(outside.path(), dir.path().join("root/run/y")).unwrap();
        assert!(matches!(h.remove("/run/y/victim"), Err(HostError::Symlink { .. })));
        assert!(matches!(h.rename("/run/y/victim", "/run/x/stolen"), Err(HostError::Symlink { .. })));
        assert_eq!(fs::read_to_string(outside.path().join("victim")).unwrap(), "keep");
    }

    #[test]
    fn walk_lists_depth_first_in_name_order_and_reports_links_as_links() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        fs::write(outside.path().join("secret"), "s").unwrap();
        let root = dir.path();
        fs::create_dir_all(root.join("proc/sys/net/ipv4")).unwrap();
        fs::create_dir_all(root.join("proc/sys/vm")).unwrap();
        fs::write(root.join("proc/sys/net/ipv4/ip_forward"), "0\n").unwrap();
        fs::write(root.join("proc/sys/net/core"), "1\n").unwrap();
        fs::write(root.join("proc/sys/vm/swappiness"), "60\n").unwrap();
        fs::set_permissions(root.join("proc/sys/vm/swappiness"), fs::Permissions::from_mode(0o444)).unwrap();
        std::os::unix::fs::symlink(outside.path(), root.join("proc/sys/kernel")).unwrap();
        let h = Host::new(root);
        let all = h.walk("/proc/sys", &mut |_| true).unwrap();
        let shown: Vec<(&str, rustix::fs::FileType)> = all.iter().map(|f| (f.rel.as_str(), f.kind)).collect();
        use rustix::fs::FileType::*;
        assert_eq!(
            shown,
            [("kernel", Symlink), ("net", Directory), ("net/core", RegularFile), ("net/ipv4", Directory), ("net/ipv4/ip_forward", RegularFile), ("vm", Directory), ("vm/swappiness", RegularFile)]
        );
        assert_eq!(all.last().unwrap().mode, 0o444);
        let net = h.walk("/proc/sys", &mut |rel| rel == "net" || rel.starts_with("net/ipv4")).unwrap();
        assert_eq!(net.iter().map(|f| f.rel.as_str()).collect::<Vec<_>>(), ["net", "net/ipv4", "net/ipv4/ip_forward"]);
        assert!(h.walk("/proc/nothing", &mut |_| true).unwrap().is_empty());
    }

    #[test]
    fn a_command_that_changes_the_host_is_a_write_only_when_it_succeeds() {
        let h = Host::new("/");
        assert!(h.run_change(&["true"], None).unwrap().success);
        let failed = h.run_change(&["false"], None).unwrap();
        assert!(matches!(failed.ok(&["false"]), Err(HostError::Command { .. })));
        h.run(&["true"], None).unwrap();
        assert_eq!(h.writes.load(Ordering::SeqCst), 1, "only the change that succeeded is a write");
    }

    #[test]
    fn commands_run_as_argv_and_report_failure() {
        let h = Host::new("/");
        let out = h.run(&["echo", "a; rm -rf /", "$(x)"], None).unwrap();
        assert_eq!(out.stdout, "a; rm -rf / $(x)\n");
        let e = h.run_ok(&["false"], None).unwrap_err();
        assert!(e.to_string().contains("`false` failed"), "{e}");
        let out = h.run(&["cat"], Some(b"piped")).unwrap();
        assert_eq!(out.stdout, "piped");
    }
}
