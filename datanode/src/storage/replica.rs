//! Writing a replica in `rbw/` and moving it into `finalized/`; reading a
//! finalized replica's data with its stored checksums.
//!
//! Blocking file I/O throughout: call from `spawn_blocking`.

use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};

use super::meta;
use super::{ReplicaInfo, Storage, Volume, WritingGuard};
use crate::error::{is_no_space, Error, Result};

/// Written data is handed to the disk in steps of this many bytes as it
/// arrives (`sync_file_range`, like HDFS's sync-behind-writes), so the
/// fsync that finalizes a block finds little left to write: without it the
/// whole block sits in the page cache until then, and the disk idles while
/// the block arrives and the writer waits while it is flushed.
const WRITE_BEHIND: u64 = 8 << 20;

/// Starts writing `[from, to)` of `file` to disk without waiting for it.
/// Only a head start for the fsync that makes the data durable, which
/// reports any I/O error, so a failure here is ignored.
fn start_writeback(file: &File, from: u64, to: u64) {
    let (Ok(from), Ok(len)) = (i64::try_from(from), i64::try_from(to - from)) else {
        return;
    };
    // SAFETY: plain syscall on an open descriptor this writer owns.
    unsafe {
        libc::sync_file_range(file.as_raw_fd(), from, len, libc::SYNC_FILE_RANGE_WRITE);
    }
}

/// An open replica being written. Dropped without [`ReplicaWriter::finalize`]
/// it leaves its rbw files in place (lease recovery may want them) unless
/// [`ReplicaWriter::delete`] is called.
pub struct ReplicaWriter {
    guard: WritingGuard,
    /// This writer created the replica (rather than reopening one).
    created: bool,
    pub volume: usize,
    pub gen_stamp: u64,
    pub bytes_per_checksum: u32,
    data: File,
    meta: File,
    data_path: PathBuf,
    meta_path: PathBuf,
    /// Bytes of data written so far.
    pub length: u64,
    /// Data before this offset has been handed to the disk.
    written_behind: u64,
}

impl ReplicaWriter {
    /// Creates the rbw files in `volume`; on failure hands the guard back
    /// (with the error) so another volume can be tried.
    pub(super) fn create(
        guard: WritingGuard,
        volume: usize,
        gen_stamp: u64,
        bytes_per_checksum: u32,
    ) -> std::result::Result<ReplicaWriter, (WritingGuard, Error)> {
        let storage = guard.storage.clone();
        let v = &storage.volumes[volume];
        let block_id = guard.block_id;
        let data_path = Volume::data_path(&v.rbw, block_id);
        let meta_path = Volume::meta_path(&v.rbw, block_id, gen_stamp);
        let open = |p: &PathBuf| {
            OpenOptions::new()
                .create(true)
                .write(true)
                .truncate(true)
                .open(p)
        };
        let opened = open(&data_path).and_then(|data| {
            let meta = open(&meta_path)?;
            meta.write_all_at(&meta::encode_header(bytes_per_checksum), 0)?;
            Ok((data, meta))
        });
        let (data, meta) = match opened {
            Ok(files) => files,
            Err(e) => {
                for p in [&data_path, &meta_path] {
                    let _ = std::fs::remove_file(p);
                }
                let e = storage.io_error(volume, e);
                return Err((guard, e));
            }
        };
        Ok(ReplicaWriter {
            guard,
            created: true,
            volume,
            gen_stamp,
            bytes_per_checksum,
            data,
            meta,
            data_path,
            meta_path,
            length: 0,
            written_behind: 0,
        })
    }

    /// Reopens existing rbw files holding `length` valid bytes (recovery).
    pub(super) fn reopen(
        guard: WritingGuard,
        volume: usize,
        gen_stamp: u64,
        bytes_per_checksum: u32,
        length: u64,
    ) -> Result<ReplicaWriter> {
        let storage = guard.storage.clone();
        let v = &storage.volumes[volume];
        let block_id = guard.block_id;
        let data_path = Volume::data_path(&v.rbw, block_id);
        let meta_path = Volume::meta_path(&v.rbw, block_id, gen_stamp);
        let open = |p: &PathBuf| OpenOptions::new().read(true).write(true).open(p);
        let data = open(&data_path).map_err(|e| storage.io_error(volume, e))?;
        let meta = open(&meta_path).map_err(|e| storage.io_error(volume, e))?;
        Ok(ReplicaWriter {
            guard,
            created: false,
            volume,
            gen_stamp,
            bytes_per_checksum,
            data,
            meta,
            data_path,
            meta_path,
            length,
            written_behind: length,
        })
    }

    pub fn block_id(&self) -> u64 {
        self.guard.block_id
    }

    /// Becomes true when a recovery of this block asks the writer to stop.
    pub fn stop_signal(&self) -> tokio::sync::watch::Receiver<bool> {
        self.guard.stop.clone()
    }

    /// Where the next packet may start: the current length, or the start
    /// of a partial last chunk (a writer resends it after an hflush).
    pub fn accepts_offset(&self, offset: u64) -> bool {
        let bpc = self.bytes_per_checksum as u64;
        offset == self.length
            || (!self.length.is_multiple_of(bpc) && offset == self.length - self.length % bpc)
    }

    /// Writes a packet's data (starting on a chunk boundary at `offset`,
    /// checked by [`Self::accepts_offset`]) and its checksums.
    pub fn write_packet(&mut self, offset: u64, data: &[u8], checksums: &[u8]) -> Result<()> {
        let storage = self.guard.storage.clone();
        let volume = self.volume;
        let io = |e| storage.io_error(volume, e);
        if offset < self.length {
            self.data.set_len(offset).map_err(io)?;
            self.meta
                .set_len(meta::checksum_pos(offset, self.bytes_per_checksum))
                .map_err(io)?;
        }
        self.data.write_all_at(data, offset).map_err(io)?;
        self.meta
            .write_all_at(
                checksums,
                meta::checksum_pos(offset, self.bytes_per_checksum),
            )
            .map_err(io)?;
        self.length = offset + data.len() as u64;
        self.written_behind = self.written_behind.min(offset);
        if self.length - self.written_behind >= WRITE_BEHIND {
            start_writeback(&self.data, self.written_behind, self.length);
            self.written_behind = self.length;
        }
        Ok(())
    }

    /// fsyncs data and meta (hsync / before finalizing).
    pub fn sync(&self) -> Result<()> {
        let storage = &self.guard.storage;
        let io = |e| storage.io_error(self.volume, e);
        self.data.sync_all().map_err(io)?;
        self.meta.sync_all().map_err(io)?;
        Ok(())
    }

    /// fsync (unless disabled), rename into `finalized/`, fsync the
    /// directories, and record the replica.
    pub fn finalize(self, node: &str) -> Result<ReplicaInfo> {
        let storage = self.guard.storage.clone();
        let block_id = self.block_id();
        if storage.get(block_id).is_some() {
            return Err(Error::ReplicaExists {
                block: block_id,
                node: node.to_string(),
            });
        }
        if storage.fsync {
            self.sync()?;
        }
        let v = &storage.volumes[self.volume];
        let data_to = Volume::data_path(&v.finalized, block_id);
        let meta_to = Volume::meta_path(&v.finalized, block_id, self.gen_stamp);
        let volume = self.volume;
        let io = |e| storage.io_error(volume, e);
        // Meta first: a crash between the renames leaves a data file with
        // no meta in finalized/, which the startup scan refuses to serve.
        std::fs::rename(&self.meta_path, &meta_to).map_err(io)?;
        std::fs::rename(&self.data_path, &data_to).map_err(io)?;
        if storage.fsync {
            super::sync_dir(&v.finalized).map_err(io)?;
            super::sync_dir(&v.rbw).map_err(io)?;
        }
        let info = ReplicaInfo {
            block_id,
            gen_stamp: self.gen_stamp,
            length: self.length,
            bytes_per_checksum: self.bytes_per_checksum,
            volume: self.volume,
        };
        storage.insert_finalized(info.clone(), node)?;
        Ok(info)
    }

    /// What the replica holds so far (it stays in rbw/).
    pub fn info(&self) -> ReplicaInfo {
        ReplicaInfo {
            block_id: self.block_id(),
            gen_stamp: self.gen_stamp,
            length: self.length,
            bytes_per_checksum: self.bytes_per_checksum,
            volume: self.volume,
        }
    }

    /// Whether this writer created the replica and has stored no byte in
    /// it: if the write ends now, nothing can need the replica.
    pub fn is_new_and_empty(&self) -> bool {
        self.created && self.length == 0
    }

    /// Removes the rbw files (a write that can never be completed).
    pub fn delete(self) {
        for p in [&self.data_path, &self.meta_path] {
            if let Err(e) = std::fs::remove_file(p) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    tracing::warn!("removing {}: {e}", p.display());
                }
            }
        }
    }
}

impl Storage {
    /// Classifies a write error in `volume`: `NoSpace` when the disk is
    /// full; any other I/O error takes the volume out of service
    /// ([`Storage::fail_volume`]) and is `VolumeFailed`.
    pub(super) fn io_error(&self, volume: usize, e: std::io::Error) -> Error {
        if is_no_space(&e) {
            return Error::NoSpace {
                datanode: self.datanode_id.clone(),
                detail: String::new(),
            };
        }
        let why = e.to_string();
        self.fail_volume(volume, &why);
        Error::VolumeFailed {
            path: self.volumes[volume].root.clone(),
            why,
        }
    }
}

/// A finalized replica open for reading. Cheap to clone into blocking tasks.
#[derive(Clone)]
pub struct ReplicaReader {
    pub info: ReplicaInfo,
    data: Arc<File>,
    meta: Arc<File>,
    data_path: PathBuf,
}

impl ReplicaReader {
    pub fn open(storage: &Storage, info: ReplicaInfo) -> Result<ReplicaReader> {
        let dir = storage.volumes[info.volume].finalized.clone();
        Self::open_in(&dir, info)
    }

    /// Opens the unfinalized replica `info` in `rbw/` (nothing may be
    /// writing it: a recovered replica whose writer was dropped).
    pub fn open_rbw(storage: &Storage, info: ReplicaInfo) -> Result<ReplicaReader> {
        let dir = storage.volumes[info.volume].rbw.clone();
        Self::open_in(&dir, info)
    }

    fn open_in(dir: &std::path::Path, info: ReplicaInfo) -> Result<ReplicaReader> {
        let data_path = Volume::data_path(dir, info.block_id);
        let meta_path = Volume::meta_path(dir, info.block_id, info.gen_stamp);
        let data = File::open(&data_path)?;
        let meta = File::open(&meta_path)?;
        let mut h = [0u8; meta::HEADER_LEN as usize];
        meta.read_exact_at(&mut h, 0)?;
        let bpc = meta::decode_header(&h).map_err(|why| Error::CorruptReplica {
            path: meta_path.clone(),
            why,
        })?;
        if bpc != info.bytes_per_checksum {
            return Err(Error::CorruptReplica {
                path: meta_path,
                why: format!(
                    "bytes_per_checksum {bpc} differs from {} seen at load",
                    info.bytes_per_checksum
                ),
            });
        }
        Ok(ReplicaReader {
            info,
            data: Arc::new(data),
            meta: Arc::new(meta),
            data_path,
        })
    }

    /// Current (data, meta) file lengths.
    pub fn file_lens(&self) -> std::io::Result<(u64, u64)> {
        Ok((self.data.metadata()?.len(), self.meta.metadata()?.len()))
    }

    /// Reads `len` data bytes at `offset` (a chunk boundary) and the stored
    /// checksums of the chunks they cover, as (checksums, data).
    pub fn read(&self, offset: u64, len: usize) -> Result<(Bytes, Bytes)> {
        let mut data = BytesMut::zeroed(len);
        self.data
            .read_exact_at(&mut data, offset)
            .map_err(|e| Error::CorruptReplica {
                path: self.data_path.clone(),
                why: format!("reading {len} bytes at offset {offset}: {e}"),
            })?;
        Ok((self.read_checksums(offset, len)?, data.freeze()))
    }

    /// The stored checksums of the chunks covering `len` data bytes at
    /// `offset` (a chunk boundary).
    pub fn read_checksums(&self, offset: u64, len: usize) -> Result<Bytes> {
        let bpc = self.info.bytes_per_checksum;
        let chunks = (len as u64).div_ceil(bpc as u64) as usize;
        let mut sums = BytesMut::zeroed(chunks * 4);
        self.meta
            .read_exact_at(&mut sums, meta::checksum_pos(offset, bpc))
            .map_err(|e| Error::CorruptReplica {
                path: self.data_path.with_extension("meta"),
                why: format!("reading checksums for offset {offset}: {e}"),
            })?;
        Ok(sums.freeze())
    }

    /// Asks the kernel to start reading `len` data bytes at `offset` into
    /// the page cache, so that sending them later does not wait for the
    /// disk. Only advice: a failure changes nothing but speed.
    pub fn prefetch(&self, offset: u64, len: usize) {
        let (Ok(offset), Ok(len)) = (i64::try_from(offset), i64::try_from(len)) else {
            return;
        };
        // SAFETY: plain advice on an open descriptor.
        unsafe {
            libc::posix_fadvise(
                self.data.as_raw_fd(),
                offset,
                len,
                libc::POSIX_FADV_WILLNEED,
            );
        }
    }

    /// The data file's path, for errors that name it.
    pub fn data_path(&self) -> &std::path::Path {
        &self.data_path
    }

    /// The data file, for sending its pages without reading them here.
    pub fn data_file(&self) -> &Arc<File> {
        &self.data
    }
}
