//! A small tmpfs mounted for one test: a disk that fills when the test
//! says so. [`Tmpfs::fill_leaving`] writes a filler file that leaves an
//! exact number of bytes free (a whole disk when asked for none), and
//! [`Tmpfs::unfill`] deletes it again. [`Drop`] unmounts it.
//!
//! Mounting needs root (`mount -t tmpfs`); [`require_tmpfs`] fails a test
//! that cannot have one, naming why (it never passes without running).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

const FILLER: &str = "filler";
const CHUNK: usize = 64 * 1024;

/// An error naming why a tmpfs cannot be mounted here, if it cannot.
pub fn require_tmpfs() -> Result<()> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        bail!("this test mounts a tmpfs, which needs root: run it as root");
    }
    Ok(())
}

/// A tmpfs mounted at a directory, unmounted on drop.
pub struct Tmpfs {
    path: PathBuf,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size` bytes (rounded up to pages) at `path`,
    /// creating the directory.
    pub fn mount(path: &Path, size: u64) -> Result<Tmpfs> {
        std::fs::create_dir_all(path).with_context(|| format!("creating {}", path.display()))?;
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(path)
            .output()
            .context("running mount")?;
        if !out.status.success() {
            bail!(
                "mount -t tmpfs at {}: {}",
                path.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(Tmpfs {
            path: path.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Bytes an unprivileged write could still use (`f_bavail`).
    pub fn free_bytes(&self) -> Result<u64> {
        let c = std::ffi::CString::new(self.path.as_os_str().as_encoded_bytes())?;
        // SAFETY: `st` is a plain-data out-parameter statvfs fills in on
        // success; `c` is a valid NUL-terminated path.
        let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
        if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
            bail!(
                "statvfs {}: {}",
                self.path.display(),
                std::io::Error::last_os_error()
            );
        }
        Ok(st.f_bavail as u64 * st.f_frsize as u64)
    }

    /// Grows the filler file until `free` bytes are left (0: until the
    /// disk refuses more). Returns the bytes free afterwards.
    pub fn fill_leaving(&self, free: u64) -> Result<u64> {
        let path = self.path.join(FILLER);
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .with_context(|| format!("opening {}", path.display()))?;
        let zeros = vec![0u8; CHUNK];
        loop {
            let now = self.free_bytes()?;
            if now <= free {
                break;
            }
            let n = (now - free).min(CHUNK as u64) as usize;
            match f.write(&zeros[..n]) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => break,
                Err(e) => return Err(e).with_context(|| format!("writing {}", path.display())),
            }
        }
        f.sync_all()?;
        self.free_bytes()
    }

    /// Deletes the filler file: the space it held is free again.
    pub fn unfill(&self) -> Result<()> {
        let path = self.path.join(FILLER);
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(e).with_context(|| format!("removing {}", path.display()))
            }
            _ => Ok(()),
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // A process still holding files there (a test that failed before
        // killing it) would make a plain unmount fail: detach it then.
        let plain = Command::new("umount").arg(&self.path).status();
        if !plain.is_ok_and(|s| s.success()) {
            let _ = Command::new("umount").arg("-l").arg(&self.path).status();
        }
    }
}
