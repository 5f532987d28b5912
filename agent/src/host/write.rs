//! Replacing files: one or many, each old or new after a kill at any point, never partial.
//!
//! A batch goes in four rounds, so that 1,000 container configs cost four waits on the disk
//! rather than a thousand rounds of three:
//! 1. every file is written to `.NAME.hostguard-tmp.PID` beside it (mode and owner of the file
//!    it replaces);
//! 2. the temp files are made durable together (`fsync` of each, on several threads: the disk
//!    serves them at once, and a journaling filesystem commits them together). `syncfs` would be
//!    one call, but it also waits for every other program's writes to the same filesystem;
//! 3. each temp file is renamed over its file, again on several threads: replacing a file frees
//!    the old one, which on a `discard`-mounted disk is a wait of its own;
//! 4. each directory is made durable (`fsync`), once, together.
//!
//! No file is renamed before every temp file of its batch is durable, so a kill or a power cut
//! leaves each file old or new: a new one is complete, and an old one has its complete
//! replacement beside it, which the next run writes again. Batches are as large as the open-file
//! limit allows (a file and its directory are held open from round 1 to round 4; a directory is
//! opened once for the batch, without a link on the way, and shared by its files).

use std::fs::{self, File};
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use rustix::fs::{FileType, Mode, OFlags};

use super::{beneath, bounded, Host, MAX_REPLACED_BYTES, TEMP_MARKER};
use crate::error::HostError;

/// Threads for the rounds that wait on the disk.
const THREADS: usize = 8;

/// A file written to its temp name, not yet renamed.
struct Staged {
    index: usize,
    /// Its directory in the batch's `beneath::Dirs`.
    dir: usize,
    tmp: String,
    name: String,
    path: PathBuf,
    file: File,
}

impl Host {
    /// Replace `files` (absolute host path, content), each as `write_file` does, in four rounds
    /// for the whole batch (module comment). One result per file, in order: whether it was
    /// written (`false`: the content was already right).
    pub fn write_files(&self, files: &[(&Path, &[u8])]) -> Vec<Result<bool, HostError>> {
        let mut out: Vec<Option<Result<bool, HostError>>> = (0..files.len()).map(|_| None).collect();
        let batch = batch_size();
        for (b, part) in files.chunks(batch).enumerate() {
            let mut staged = Vec::new();
            // Each directory is opened once for the batch, however many of its files change.
            let mut dirs = beneath::Dirs::new(&self.root);
            for (k, (abs, contents)) in part.iter().enumerate() {
                let index = b * batch + k;
                match self.stage(abs, contents, &mut dirs) {
                    Ok(Some(mut s)) => {
                        s.index = index;
                        staged.push(s);
                    }
                    Ok(None) => out[index] = Some(Ok(false)),
                    Err(e) => out[index] = Some(Err(e)),
                }
            }
            let synced = parallel(&staged, |s| s.file.sync_all());
            if let Some(e) = synced.into_iter().find_map(std::result::Result::err) {
                // Nothing is renamed unless everything is durable: the whole batch fails as it is.
                let msg = e.to_string();
                for s in staged {
                    let _ = rustix::fs::unlinkat(dirs.fd(s.dir), &s.tmp, rustix::fs::AtFlags::empty());
                    out[s.index] = Some(Err(HostError::io(&s.path, std::io::Error::other(format!("could not make the new content durable: {msg}")))));
                }
                continue;
            }
            let renamed = parallel(&staged, |s| {
                let dir = dirs.fd(s.dir);
                let r = rustix::fs::renameat(dir, &s.tmp, dir, &s.name);
                match r {
                    Ok(()) => self.count_write(),
                    Err(_) => {
                        let _ = rustix::fs::unlinkat(dir, &s.tmp, rustix::fs::AtFlags::empty());
                    }
                }
                r
            });
            // One fsync per directory, however many of its files changed.
            let mut changed: Vec<usize> = staged.iter().map(|s| s.dir).collect();
            changed.sort_unstable();
            changed.dedup();
            let dir_synced = parallel(&changed, |&d| rustix::fs::fsync(dirs.fd(d)).is_ok());
            for (s, r) in staged.iter().zip(renamed) {
                let dir_ok = changed.binary_search(&s.dir).is_ok_and(|k| dir_synced[k]);
                out[s.index] = Some(match r {
                    Err(e) => Err(HostError::io(&s.path, e.into())),
                    Ok(()) if !dir_ok => Err(HostError::io(&s.path, std::io::Error::other("renamed, but its directory could not be made durable"))),
                    Ok(()) => Ok(true),
                });
            }
        }
        out.into_iter().map(|r| r.expect("every file has a result")).collect()
    }

    /// Round 1 for one file: checks (no link, a regular file), the identical-content skip, the
    /// backup, and the temp file with the new content. `None` when the content is already right.
    fn stage(&self, abs: &Path, contents: &[u8], dirs: &mut beneath::Dirs) -> Result<Option<Staged>, HostError> {
        let p = self.path(abs);
        let (dir_abs, name) = match (abs.parent(), abs.file_name()) {
            (Some(d), Some(n)) => (d, n),
            _ => return Err(HostError::Other(format!("{}: not a file path", p.display()))),
        };
        let dir_index = dirs.open(dir_abs, true, &|| self.count_write())?;
        let dir = dirs.fd(dir_index);
        let old = match beneath::file_type(dir, name).map_err(|e| HostError::io(&p, e))? {
            None => None,
            Some(FileType::Symlink) => return Err(HostError::Symlink { path: p }),
            Some(FileType::RegularFile) => {
                let f = rustix::fs::openat(dir, name, OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC, Mode::empty())
                    .map(File::from)
                    .map_err(|e| HostError::io(&p, e.into()))?;
                let meta = f.metadata().map_err(|e| HostError::io(&p, e))?;
                // The old content is needed only to skip an identical write and for a backup;
                // a file of another size is not identical, and one too large to back up is not
                // read at all (a 3 GiB file must not be pulled into memory to be replaced).
                let wanted = meta.len() == contents.len() as u64 || self.backup_dir.is_some();
                if wanted && meta.len() > MAX_REPLACED_BYTES {
                    return Err(HostError::TooLarge { path: p, what: "a file hostguard replaces", limit: MAX_REPLACED_BYTES, size: Some(meta.len()) });
                }
                let mut bytes = Vec::new();
                if wanted {
                    (&f).take(MAX_REPLACED_BYTES + 1).read_to_end(&mut bytes).map_err(|e| HostError::io(&p, e))?;
                }
                Some((bytes, meta))
            }
            Some(t) => return Err(HostError::NotRegular { path: p, what: bounded::describe(t) }),
        };
        let name = name.to_string_lossy().into_owned();
        if old.as_ref().is_some_and(|(b, m)| m.len() == contents.len() as u64 && b.as_slice() == contents) {
            // A batch cut by a power loss between its renames leaves old files with the new
            // version beside them; applying the old document again must not leave those behind.
            self.remove_stale_temps(dir, &name);
            return Ok(None);
        }
        if let (Some((old, _)), Some(backups)) = (&old, &self.backup_dir) {
            self.backup(abs, old, backups)?;
        }
        self.remove_stale_temps(dir, &name);
        let tmp = format!(".{name}{TEMP_MARKER}{}", std::process::id());
        let file = (|| -> std::io::Result<File> {
            let mut f = File::from(rustix::fs::openat(
                dir,
                &tmp,
                OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::from_raw_mode(0o644),
            )?);
            // A replaced file keeps its owner and mode (an LXC config may be 0640 root:lxc).
            if let Some((_, meta)) = &old {
                use std::os::unix::fs::MetadataExt;
                let _ = std::os::unix::fs::fchown(&f, Some(meta.uid()), Some(meta.gid()));
                f.set_permissions(fs::Permissions::from_mode(meta.mode() & 0o7777))?;
            }
            f.write_all(contents)?;
            Ok(f)
        })();
        match file {
            Ok(file) => {
                self.count_write();
                Ok(Some(Staged { index: 0, dir: dir_index, tmp, name, path: p, file }))
            }
            Err(e) => {
                let _ = rustix::fs::unlinkat(dir, &tmp, rustix::fs::AtFlags::empty());
                Err(HostError::io(&p, e))
            }
        }
    }
}

/// Files per batch: each holds at most two descriptors open (the file, and its directory unless
/// another file of the batch shares it) until its batch ends, so a batch stays well inside the
/// open-file limit.
fn batch_size() -> usize {
    let mut lim = libc::rlimit { rlim_cur: 1024, rlim_max: 1024 };
    // SAFETY: getrlimit writes one rlimit into the struct it is given.
    let soft = if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0 { lim.rlim_cur } else { 1024 };
    (soft.saturating_sub(128) / 2).clamp(16, 4096) as usize
}

/// `f` of every item, in order, on up to THREADS threads (one when there are few).
fn parallel<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    if items.len() < 4 {
        return items.iter().map(f).collect();
    }
    let per = items.len().div_ceil(THREADS);
    std::thread::scope(|s| {
        let f = &f;
        let handles: Vec<_> = items.chunks(per).map(|c| s.spawn(move || c.iter().map(f).collect::<Vec<R>>())).collect();
        handles.into_iter().flat_map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e))).collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_replaces_every_file_and_skips_identical_ones() {
        let dir = tempfile::tempdir().unwrap();
        let h = Host::new(dir.path());
        let paths: Vec<PathBuf> = (0..40).map(|i| PathBuf::from(format!("/var/lib/lxc/c{i}/config"))).collect();
        h.write_file(&paths[3], b"same\n").unwrap();
        h.write_file(&paths[4], b"old\n").unwrap();
        let files: Vec<(&Path, &[u8])> = paths.iter().map(|p| (p.as_path(), if p == &paths[3] { &b"same\n"[..] } else { &b"new\n"[..] })).collect();
        let got = h.write_files(&files);
        assert_eq!(got.iter().filter(|r| matches!(r, Ok(true))).count(), 39);
        assert!(matches!(got[3], Ok(false)));
        for p in &paths {
            let want = if p == &paths[3] { "same\n" } else { "new\n" };
            assert_eq!(h.read_to_string(p).unwrap(), want);
            assert_eq!(h.list_dir(p.parent().unwrap()).unwrap(), vec!["config"], "no temp file left");
        }
    }

    #[test]
    fn a_batch_opens_each_directory_once_and_still_refuses_a_link_on_the_way() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("var/lib")).unwrap();
        fs::create_dir_all(outside.path().join("sub")).unwrap();
        // A link deeper in a path whose start the batch has open already.
        std::os::unix::fs::symlink(outside.path(), dir.path().join("var/lib/link")).unwrap();
        let mut dirs = beneath::Dirs::new(dir.path());
        let a = dirs.open(Path::new("/var/lib/lxc/a"), true, &|| {}).unwrap();
        let b = dirs.open(Path::new("/var/lib/lxc/b"), true, &|| {}).unwrap();
        assert_ne!(a, b);
        assert_eq!(dirs.open(Path::new("/var/lib/lxc/a/"), true, &|| {}).unwrap(), a, "the same directory is not opened again");
        let lxc = dirs.open(Path::new("/var/lib/lxc"), false, &|| {}).unwrap();
        assert!(!beneath::names(dirs.fd(lxc)).unwrap().is_empty());
        assert!(matches!(dirs.open(Path::new("/var/lib/link/sub"), false, &|| {}), Err(HostError::Symlink { .. })));
        assert!(dirs.open(Path::new("/var/lib/../lib"), false, &|| {}).is_err());

        let h = Host::new(dir.path());
        let got = h.write_files(&[(Path::new("/var/lib/lxc/a/config"), b"1\n"), (Path::new("/var/lib/link/sub/config"), b"2\n"), (Path::new("/var/lib/lxc/b/config"), b"3\n")]);
        assert!(matches!(got[0], Ok(true)) && matches!(got[2], Ok(true)), "{got:?}");
        assert!(matches!(got[1], Err(HostError::Symlink { .. })), "{:?}", got[1]);
        assert!(!outside.path().join("sub/config").exists(), "nothing written through the link");
        assert_eq!(h.read_to_string("/var/lib/lxc/b/config").unwrap(), "3\n");
    }

    #[test]
    fn one_bad_file_fails_alone() {
        let dir = tempfile::tempdir().unwrap();
        let h = Host::new(dir.path());
        fs::create_dir_all(dir.path().join("etc/b")).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", dir.path().join("etc/b/x.conf")).unwrap();
        let got = h.write_files(&[(Path::new("/etc/a/x.conf"), b"1\n"), (Path::new("/etc/b/x.conf"), b"2\n"), (Path::new("/etc/c/x.conf"), b"3\n")]);
        assert!(matches!(got[0], Ok(true)) && matches!(got[2], Ok(true)));
        assert!(matches!(got[1], Err(HostError::Symlink { .. })), "{:?}", got[1]);
        assert_eq!(h.read_to_string("/etc/c/x.conf").unwrap(), "3\n");
    }
}
