//! Whether a `dfs` writer on this host still runs, so that a put can take
//! over the temporary file of one that was killed at once, instead of
//! waiting out its lease's soft limit.
//!
//! A `dfs put` holds an exclusive `flock` on `<dir>/<client id>` from
//! before its first create until it exits; the kernel drops the lock when
//! the process ends, however it ends (kill -9 included). So a holder whose
//! lock file is here and can be locked is dead; one whose lock is held is
//! alive; one without a lock file here (a writer on another host, of
//! another user, or not `dfs`) is unknown, and only the soft limit frees
//! its files. The lock file outlives a killed writer, and is removed by
//! the put that takes its file over.
//!
//! `<dir>` is `$XDG_RUNTIME_DIR/rfs-dfs`, else `<tmp>/rfs-dfs-<uid>`, and
//! must be a directory of the user's own that nobody else may write to:
//! another user's planted file must not pass for a dead writer.

use std::fs::{DirBuilder, File, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::PathBuf;

/// Client ids of `dfs` writers: this prefix and a UUID, so that a holder
/// named by the namenode maps to a file name here and nowhere else.
const ID_PREFIX: &str = "dfs-";

/// The directory of this user's writer locks.
pub struct LockDir {
    path: PathBuf,
}

impl LockDir {
    /// This user's lock directory, made if missing; an error when it is not
    /// private to the user.
    pub fn for_user() -> io::Result<LockDir> {
        // SAFETY: geteuid(2) has no preconditions and cannot fail.
        let uid = unsafe { libc::geteuid() };
        let path = match std::env::var_os("XDG_RUNTIME_DIR") {
            Some(dir) if !dir.is_empty() => PathBuf::from(dir).join("rfs-dfs"),
            _ => std::env::temp_dir().join(format!("rfs-dfs-{uid}")),
        };
        LockDir::at(path, uid)
    }

    /// The lock directory at `path`, which user `uid` must own.
    fn at(path: PathBuf, uid: u32) -> io::Result<LockDir> {
        match DirBuilder::new().mode(0o700).create(&path) {
            Err(e) if e.kind() != io::ErrorKind::AlreadyExists => return Err(e),
            _ => {}
        }
        let meta = std::fs::symlink_metadata(&path)?;
        if !meta.is_dir() || meta.uid() != uid || meta.mode() & 0o022 != 0 {
            return Err(io::Error::other(format!(
                "{}: not a directory of uid {uid} that only it may write",
                path.display()
            )));
        }
        Ok(LockDir { path })
    }

    /// A fresh client id, locked for as long as the returned lock lives.
    pub fn lock_new_writer(&self) -> io::Result<WriterLock> {
        let client_id = format!("{ID_PREFIX}{}", uuid::Uuid::new_v4());
        let path = self.path.join(&client_id);
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)?;
        if !try_lock(&file)? {
            return Err(io::Error::other(format!(
                "{}: locked by another process",
                path.display()
            )));
        }
        Ok(WriterLock {
            client_id,
            path,
            _file: file,
            keep: false,
        })
    }

    /// The lock of `holder` when it is a `dfs` writer of this host whose
    /// process is gone; `None` when it runs, or this host cannot tell.
    pub fn dead_writer(&self, holder: &str) -> Option<DeadWriter> {
        let id = holder.strip_prefix(ID_PREFIX)?;
        uuid::Uuid::parse_str(id).ok()?;
        let path = self.path.join(holder);
        let file = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&path)
            .ok()?;
        match try_lock(&file) {
            Ok(true) => Some(DeadWriter { path, _file: file }),
            Ok(false) | Err(_) => None,
        }
    }
}

/// Takes an exclusive lock on `file` without waiting; `false` when
/// another open file description holds it.
fn try_lock(file: &File) -> io::Result<bool> {
    match file.try_lock() {
        Ok(()) => Ok(true),
        Err(std::fs::TryLockError::WouldBlock) => Ok(false),
        Err(std::fs::TryLockError::Error(e)) => Err(e),
    }
}

/// This process's writer lock: its client id says "alive" to any put on
/// this host until the lock is dropped or the process dies.
pub struct WriterLock {
    client_id: String,
    path: PathBuf,
    /// Holds the lock; closing it releases it.
    _file: File,
    /// Leave the file for a later put to find this writer dead.
    keep: bool,
}

impl WriterLock {
    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    /// Leaves the lock file behind when dropped (the lock itself goes):
    /// some file of this writer may still be held under its id, and a
    /// later put on this host can then take it over at once.
    pub fn keep_file(&mut self) {
        self.keep = true;
    }
}

impl Drop for WriterLock {
    fn drop(&mut self) {
        if !self.keep {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// A dead writer's lock, held while its file is taken over.
pub struct DeadWriter {
    path: PathBuf,
    _file: File,
}

impl DeadWriter {
    /// Its file is taken over: nothing is left to tell about it.
    pub fn forget(self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir() -> (tempfile::TempDir, LockDir) {
        let tmp = tempfile::tempdir().unwrap();
        // SAFETY: geteuid(2) has no preconditions.
        let uid = unsafe { libc::geteuid() };
        let locks = LockDir::at(tmp.path().join("locks"), uid).unwrap();
        (tmp, locks)
    }

    #[test]
    fn a_running_writer_is_alive_and_a_gone_one_dead() {
        let (_tmp, locks) = dir();
        let mut w = locks.lock_new_writer().unwrap();
        assert!(w.client_id().starts_with("dfs-"));
        assert!(locks.dead_writer(w.client_id()).is_none(), "lock held");
        // A process that dies leaves its file with nobody holding it.
        w.keep_file();
        let id = w.client_id().to_string();
        drop(w);
        let dead = locks.dead_writer(&id).expect("its lock is free");
        // While one put takes it over, another finds it held.
        assert!(locks.dead_writer(&id).is_none());
        let path = dead.path.clone();
        dead.forget();
        assert!(!path.exists());
        assert!(locks.dead_writer(&id).is_none(), "no file: cannot tell");
    }

    #[test]
    fn a_writer_that_ends_normally_leaves_nothing() {
        let (_tmp, locks) = dir();
        let w = locks.lock_new_writer().unwrap();
        let id = w.client_id().to_string();
        drop(w);
        assert!(locks.dead_writer(&id).is_none());
        assert_eq!(std::fs::read_dir(&locks.path).unwrap().count(), 0);
    }

    #[test]
    fn holders_that_are_not_dfs_writers_are_never_judged() {
        let (_tmp, locks) = dir();
        // Unlocked files under the names asked about: still no verdict.
        for planted in ["rfs-client-1", "dfs-not-a-uuid"] {
            std::fs::write(locks.path.join(planted), b"").unwrap();
            assert!(locks.dead_writer(planted).is_none(), "{planted}");
        }
        assert!(locks.dead_writer("dfs-../../etc/passwd").is_none());
    }

    #[test]
    fn a_directory_others_may_write_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("open");
        DirBuilder::new().mode(0o777).create(&path).unwrap();
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o777))
            .unwrap();
        // SAFETY: geteuid(2) has no preconditions.
        let uid = unsafe { libc::geteuid() };
        assert!(LockDir::at(path, uid).is_err());
        assert!(
            LockDir::at(tmp.path().join("mine"), uid + 1).is_err(),
            "another user's"
        );
    }
}
