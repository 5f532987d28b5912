//! The one door to the host: files under a root directory, and commands run as argument vectors.
//!
//! Every host path in hostguard is written as the absolute path it has on a real host
//! (`/proc/sys/vm/swappiness`); `Host` prefixes it with `--root`, so tests and chroots run the
//! same code on a temp directory. Nothing here ever invokes a shell.

mod lock;

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

pub use lock::Lock;

use crate::error::HostError;

/// The environment variable that makes a run kill itself after its Nth host write: how the
/// crash-at-any-point tests stop `apply` at a chosen moment.
pub const FAULT_AFTER_WRITES_ENV: &str = "HOSTGUARD_FAULT_AFTER_WRITES";

/// Names of temp files hostguard creates beside a file it replaces.
pub const TEMP_MARKER: &str = ".hostguard-tmp.";

#[derive(Debug)]
pub struct Host {
    root: PathBuf,
    backup_dir: Option<PathBuf>,
    writes: AtomicUsize,
    fault_after: Option<usize>,
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

    pub fn exists(&self, abs: impl AsRef<Path>) -> bool {
        self.path(abs).exists()
    }

    pub fn is_dir(&self, abs: impl AsRef<Path>) -> bool {
        self.path(abs).is_dir()
    }

    pub fn read_to_string(&self, abs: impl AsRef<Path>) -> Result<String, HostError> {
        let p = self.path(abs);
        let mut s = String::new();
        File::open(&p)
            .and_then(|mut f| f.read_to_string(&mut s))
            .map_err(|e| HostError::io(&p, e))?;
        Ok(s)
    }

    /// `None` when the file does not exist; any other failure is an error.
    pub fn read_optional(&self, abs: impl AsRef<Path>) -> Result<Option<String>, HostError> {
        match self.read_to_string(abs) {
            Ok(s) => Ok(Some(s)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Names in a directory, sorted; empty when the directory does not exist.
    pub fn list_dir(&self, abs: impl AsRef<Path>) -> Result<Vec<String>, HostError> {
        let p = self.path(abs);
        let entries = match fs::read_dir(&p) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(HostError::io(&p, e)),
        };
        let mut names = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| HostError::io(&p, e))?;
            names.push(entry.file_name().to_string_lossy().into_owned());
        }
        names.sort();
        Ok(names)
    }

    pub fn is_symlink(&self, abs: impl AsRef<Path>) -> bool {
        fs::symlink_metadata(self.path(abs)).map(|m| m.file_type().is_symlink()).unwrap_or(false)
    }

    /// Write a kernel interface file in place (`/proc/sys`, cgroup files): these cannot be
    /// replaced by rename, and the kernel takes the value in one write.
    pub fn write_value(&self, abs: impl AsRef<Path>, value: &str) -> Result<(), HostError> {
        let p = self.path(abs);
        let mut f = OpenOptions::new()
            .write(true)
            .truncate(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&p)
            .map_err(|e| HostError::io(&p, e))?;
        f.write_all(value.as_bytes()).map_err(|e| HostError::io(&p, e))?;
        self.count_write();
        Ok(())
    }

    /// Replace a file atomically: temp file in the same directory, fsync, rename, fsync the
    /// directory. A file whose content is already right is not rewritten; returns whether it was.
    /// Refuses to write through a symlink, so a planted link cannot redirect a root-owned write.
    pub fn write_file(&self, abs: impl AsRef<Path>, contents: &[u8]) -> Result<bool, HostError> {
        let abs = abs.as_ref();
        let p = self.path(abs);
        let old = match fs::symlink_metadata(&p) {
            Ok(m) if m.file_type().is_symlink() => return Err(HostError::Symlink { path: p }),
            Ok(_) => Some(fs::read(&p).map_err(|e| HostError::io(&p, e))?),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(HostError::io(&p, e)),
        };
        if old.as_deref() == Some(contents) {
            return Ok(false);
        }
        let dir = p.parent().ok_or_else(|| HostError::Other(format!("{}: no parent directory", p.display())))?;
        fs::create_dir_all(dir).map_err(|e| HostError::io(dir, e))?;
        if let (Some(old), Some(backups)) = (&old, &self.backup_dir) {
            self.backup(abs, old, backups)?;
        }
        let name = p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let tmp = dir.join(format!(".{name}{TEMP_MARKER}{}", std::process::id()));
        let result = (|| {
            let mut f = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o644)
                .custom_flags(libc::O_NOFOLLOW)
                .open(&tmp)?;
            f.write_all(contents)?;
            f.sync_all()?;
            drop(f);
            self.count_write();
            fs::rename(&tmp, &p)?;
            File::open(dir)?.sync_all()
        })();
        if let Err(e) = result {
            let _ = fs::remove_file(&tmp);
            return Err(HostError::io(&p, e));
        }
        self.count_write();
        Ok(true)
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

    pub fn create_dir_all(&self, abs: impl AsRef<Path>) -> Result<(), HostError> {
        let p = self.path(abs);
        fs::create_dir_all(&p).map_err(|e| HostError::io(&p, e))?;
        self.count_write();
        Ok(())
    }

    /// Run a command as an argument vector, never through a shell.
    pub fn run(&self, argv: &[&str], stdin: Option<&[u8]>) -> Result<Output, HostError> {
        let shown = argv.join(" ");
        let (prog, args) = argv
            .split_first()
            .ok_or_else(|| HostError::Other("empty command".into()))?;
        let mut cmd = Command::new(prog);
        cmd.args(args)
            .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .env("LC_ALL", "C");
        let mut child = cmd.spawn().map_err(|source| HostError::Spawn {
            argv: shown.clone(),
            source,
        })?;
        if let Some(input) = stdin {
            let mut pipe = child.stdin.take().expect("stdin was piped");
            // A writer thread, so a child that fills its stdout before reading all of its stdin
            // cannot deadlock us.
            let input = input.to_vec();
            let writer = std::thread::spawn(move || pipe.write_all(&input));
            let out = child.wait_with_output().map_err(|source| HostError::Spawn { argv: shown.clone(), source })?;
            let _ = writer.join();
            return Ok(Output::from(out));
        }
        let out = child
            .wait_with_output()
            .map_err(|source| HostError::Spawn { argv: shown, source })?;
        Ok(Output::from(out))
    }

    /// Like `run`, but a non-zero exit is an error carrying the command's stderr.
    pub fn run_ok(&self, argv: &[&str], stdin: Option<&[u8]>) -> Result<Output, HostError> {
        let out = self.run(argv, stdin)?;
        if out.success {
            Ok(out)
        } else {
            Err(HostError::Command {
                argv: argv.join(" "),
                status: out.status,
                stderr: out.stderr.trim().to_string(),
            })
        }
    }

    /// Take the run lock `/run/hostguard.lock`, waiting at most `timeout`.
    pub fn lock(&self, timeout: std::time::Duration) -> Result<Lock, crate::error::Error> {
        Lock::acquire(&self.path("/run/hostguard.lock"), timeout)
    }

    /// Counts host writes; with the fault variable set, dies (as SIGKILL would) after the Nth.
    pub fn count_write(&self) {
        let n = self.writes.fetch_add(1, Ordering::SeqCst) + 1;
        if self.fault_after == Some(n) {
            // SAFETY: raising a signal on ourselves has no memory-safety preconditions.
            unsafe {
                libc::raise(libc::SIGKILL);
            }
        }
    }
}

impl From<std::process::Output> for Output {
    fn from(o: std::process::Output) -> Self {
        Output {
            success: o.status.success(),
            status: o.status.to_string(),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
