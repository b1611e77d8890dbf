//! `<dir>/in_use.lock`: one datanode per data directory.
//!
//! Two datanodes on one directory would share replica files and the
//! datanode id, so the second would register as the first (taking over its
//! address at the namenode) and each would delete what the other writes.
//! As HDFS does, a datanode takes an exclusive `flock` on `in_use.lock` in
//! every data directory for as long as it runs and writes `pid@host` into
//! it, so that the one refused can say who holds the directory. The kernel
//! drops the lock when the process exits, however it exits (kill -9
//! included), so a stale lock file never blocks a restart.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::Path;

const LOCK_FILE: &str = "in_use.lock";

/// The held lock of one data directory; released when dropped (or when
/// the process ends).
#[derive(Debug)]
pub struct DirLock {
    _file: File,
}

/// Why a data directory could not be locked.
#[derive(Debug)]
pub enum LockError {
    /// Another process holds it: `process pid@host`, from what the holder
    /// wrote into the lock file.
    InUse {
        holder: String,
    },
    Io(std::io::Error),
}

impl DirLock {
    /// Takes `dir`'s lock without waiting.
    pub fn acquire(dir: &Path) -> Result<DirLock, LockError> {
        let path = dir.join(LOCK_FILE);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(LockError::Io)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = match holder.trim() {
                    "" => "a process that wrote nothing yet".to_string(),
                    h => format!("process {h}"),
                };
                return Err(LockError::InUse { holder });
            }
            Err(TryLockError::Error(e)) => return Err(LockError::Io(e)),
        }
        // Only informational: who to look for when another start is refused.
        let me = format!("{}@{}\n", std::process::id(), hostname());
        file.set_len(0)
            .and_then(|_| file.rewind())
            .and_then(|_| file.write_all(me.as_bytes()))
            .map_err(LockError::Io)?;
        Ok(DirLock { _file: file })
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "unknown-host".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_on_a_held_directory_names_the_holder() {
        let dir = tempfile::tempdir().unwrap();
        let held = DirLock::acquire(dir.path()).unwrap();
        match DirLock::acquire(dir.path()) {
            Err(LockError::InUse { holder }) => {
                assert_eq!(
                    holder,
                    format!("process {}@{}", std::process::id(), hostname())
                )
            }
            other => panic!("second lock: {other:?}"),
        }
        drop(held);
        DirLock::acquire(dir.path()).expect("free again once the holder is gone");
    }
}
