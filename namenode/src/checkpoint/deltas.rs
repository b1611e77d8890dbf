//! Delta files: the checkpoints written since the image, one record
//! (`records.rs`) per checkpoint holding its ops (bincode). The files are
//! `delta.<seq>` in the checkpoint directory; checkpoints append to the
//! newest. A merge starts a new file and folds the older ones into the
//! image, which records the first sequence number it does not hold.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use super::encoding::Op;
use crate::error::{NamenodeError, Result};
use crate::records::{frame, records};

const PREFIX: &str = "delta.";

fn io_err(path: &Path, what: &str, e: std::io::Error) -> NamenodeError {
    NamenodeError::Store(format!("{what} checkpoint delta {}: {e}", path.display()))
}

pub fn path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("{PREFIX}{seq:020}"))
}

/// The delta files in `dir`, by sequence number.
pub fn list(dir: &Path) -> Result<Vec<(u64, PathBuf)>> {
    let entries = std::fs::read_dir(dir)
        .map_err(|e| NamenodeError::Store(format!("cannot list {}: {e}", dir.display())))?;
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry
            .map_err(|e| NamenodeError::Store(format!("cannot list {}: {e}", dir.display())))?;
        let name = entry.file_name();
        let Some(seq) = name.to_str().and_then(|n| n.strip_prefix(PREFIX)) else {
            continue;
        };
        if let Ok(seq) = seq.parse::<u64>() {
            out.push((seq, entry.path()));
        }
    }
    out.sort_unstable();
    Ok(out)
}

/// Calls `each` with every op of the checkpoints in `file` (its first
/// `len` bytes, or all of it), in order, borrowed from the bytes read;
/// returns the length of its whole records. Only the newest file's tail
/// may be torn (a crash during an append, never acknowledged); anywhere
/// else a bad record is corruption.
pub fn read(
    path: &Path,
    mut file: &File,
    len: Option<u64>,
    tail_may_be_torn: bool,
    mut each: impl FnMut(&[u8], Option<&[u8]>) -> Result<()>,
) -> Result<u64> {
    let mut bytes = Vec::new();
    match len {
        Some(n) => file.take(n).read_to_end(&mut bytes),
        None => file.read_to_end(&mut bytes),
    }
    .map_err(|e| io_err(path, "cannot read", e))?;
    let corrupt = |why: String| {
        NamenodeError::Store(format!(
            "refusing the corrupt checkpoint delta {}: {why}",
            path.display()
        ))
    };
    let (bodies, valid) = records(&bytes);
    if valid < bytes.len() && !tail_may_be_torn {
        return Err(corrupt(format!(
            "a record at offset {valid} fails its checksum"
        )));
    }
    for body in bodies {
        // The layout of `Vec<Op>`, read without copying keys and values.
        let ops: Vec<(&[u8], Option<&[u8]>)> =
            bincode::deserialize(body).map_err(|e| corrupt(e.to_string()))?;
        for (k, v) in ops {
            each(k, v)?;
        }
    }
    Ok(valid as u64)
}

/// The delta file checkpoints append to.
pub struct DeltaFile {
    pub seq: u64,
    path: PathBuf,
    file: File,
    /// Bytes of whole records in it.
    pub len: u64,
}

impl DeltaFile {
    /// Starts delta `seq` in `dir` (durably: the directory is synced).
    pub fn create(dir: &Path, seq: u64) -> Result<DeltaFile> {
        let path = path(dir, seq);
        let file = OpenOptions::new()
            .create_new(true)
            .append(true)
            .open(&path)
            .map_err(|e| io_err(&path, "cannot create", e))?;
        super::image::sync_dir(dir)?;
        Ok(DeltaFile {
            seq,
            path,
            file,
            len: 0,
        })
    }

    /// Reopens delta `seq` to append after its first `len` bytes (a torn
    /// tail is cut off).
    pub fn reopen(path: PathBuf, seq: u64, len: u64) -> Result<DeltaFile> {
        let file = OpenOptions::new()
            .append(true)
            .open(&path)
            .map_err(|e| io_err(&path, "cannot open", e))?;
        let size = file
            .metadata()
            .map_err(|e| io_err(&path, "cannot stat", e))?
            .len();
        if size > len {
            tracing::warn!(
                "checkpoint delta {}: dropping {} bytes of a torn tail at offset {len}",
                path.display(),
                size - len
            );
            file.set_len(len)
                .and_then(|()| file.sync_all())
                .map_err(|e| io_err(&path, "cannot cut the torn tail of", e))?;
        }
        Ok(DeltaFile {
            seq,
            path,
            file,
            len,
        })
    }

    /// Appends one checkpoint and makes it durable.
    pub fn append(&mut self, ops: &[Op]) -> Result<()> {
        let mut out = Vec::new();
        let mut encoded = Ok(());
        frame(&mut out, |body| {
            encoded = bincode::serialize_into(body, ops);
        });
        encoded?;
        let written = self
            .file
            .write_all(&out)
            .and_then(|()| self.file.sync_data());
        if let Err(e) = written {
            // Cut back what may have landed, so the next append follows
            // the last whole record.
            let _ = self.file.set_len(self.len);
            return Err(io_err(&self.path, "cannot write", e));
        }
        self.len += out.len() as u64;
        Ok(())
    }
}
