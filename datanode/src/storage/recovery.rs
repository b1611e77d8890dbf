//! Taking over a replica whose write was cut short. Pipeline recovery (the
//! client rebuilds the pipeline from the survivors and resends what was
//! not acknowledged) and lease recovery (the namenode closes a dead
//! writer's file) both stop the old writer, cut the replica back to a
//! length every good replica holds, and give it a new generation stamp, so
//! that copies which missed the recovery are recognisably stale.

use std::collections::HashMap;
use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rfs_proto::common::ExtendedBlock;
use tracing::info;

use super::{meta, parse_name, Name, ReplicaWriter, Storage, Volume};
use crate::error::{Error, Result};

/// A replica a recovery can continue, as found on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recoverable {
    pub volume: usize,
    pub finalized: bool,
    pub gen_stamp: u64,
    /// Bytes backed by checksums that verify at the end (a chunk cut short
    /// by a crash is dropped).
    pub length: u64,
    pub bytes_per_checksum: u32,
}

impl Storage {
    /// Asks the writer of `block_id`, if there is one, to stop, and waits
    /// up to `wait` for it to let go of the replica.
    pub fn stop_writer(&self, block_id: u64, wait: Duration) -> Result<()> {
        let deadline = Instant::now() + wait;
        loop {
            match self.writing().get(&block_id) {
                None => return Ok(()),
                Some((_, stop)) => {
                    stop.send_replace(true);
                }
            }
            if Instant::now() >= deadline {
                return Err(Error::Timeout(format!(
                    "the writer of block {block_id} did not stop within {wait:?}"
                )));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// The newest rbw replica of each block on this node (being written,
    /// or left by a dead writer): block id → (volume, generation stamp),
    /// the highest stamp where several are left.
    fn newest_rbw(&self, only: Option<u64>) -> HashMap<u64, (usize, u64)> {
        let mut found: HashMap<u64, (usize, u64)> = HashMap::new();
        for (i, v) in self.volumes.iter().enumerate() {
            if v.is_failed() {
                continue;
            }
            let Ok(entries) = std::fs::read_dir(&v.rbw) else {
                continue;
            };
            for e in entries.flatten() {
                let Some(Name::Meta(id, gs)) = e.file_name().to_str().and_then(parse_name) else {
                    continue;
                };
                if only.is_some_and(|b| b != id) {
                    continue;
                }
                let best = found.entry(id).or_insert((i, gs));
                if gs > best.1 {
                    *best = (i, gs);
                }
            }
        }
        found
    }

    /// Every replica in rbw/, at its highest generation stamp, with its
    /// data length (for block reports).
    pub fn rbw_report(&self) -> Vec<ExtendedBlock> {
        let mut v: Vec<_> = self
            .newest_rbw(None)
            .into_iter()
            .map(|(id, (volume, gs))| ExtendedBlock {
                block_id: id,
                generation_stamp: gs,
                num_bytes: std::fs::metadata(Volume::data_path(&self.volumes[volume].rbw, id))
                    .map(|m| m.len())
                    .unwrap_or_default(),
            })
            .collect();
        v.sort_by_key(|b| b.block_id);
        v
    }

    /// Deletes the unfinished replica of `block_id` if its newest stamp is
    /// `gen_stamp` (0 matches any), with the meta files of older stamps
    /// beside it, once a writer still holding it has stopped (within
    /// `wait`). Returns what was deleted.
    pub fn delete_rbw(
        self: &Arc<Self>,
        block_id: u64,
        gen_stamp: u64,
        wait: Duration,
    ) -> Result<Option<ExtendedBlock>> {
        let matching = || {
            let (volume, gs) = *self.newest_rbw(Some(block_id)).get(&block_id)?;
            (gen_stamp == 0 || gs == gen_stamp).then_some((volume, gs))
        };
        if matching().is_none() {
            return Ok(None);
        }
        self.stop_writer(block_id, wait)?;
        let Some(_guard) = self.mark_writing(block_id) else {
            // A new write of the block began meanwhile: not this replica.
            return Ok(None);
        };
        // The stopped writer may have finalized it, or a recovery moved it
        // to a new stamp, before letting go.
        let Some((volume, gs)) = matching() else {
            return Ok(None);
        };
        let v = &self.volumes[volume];
        let data = Volume::data_path(&v.rbw, block_id);
        let num_bytes = std::fs::metadata(&data).map(|m| m.len()).unwrap_or(0);
        let mut files = vec![data];
        for e in std::fs::read_dir(&v.rbw)?.flatten() {
            if let Some(Name::Meta(id, stamp)) = e.file_name().to_str().and_then(parse_name) {
                if id == block_id && stamp <= gs {
                    files.push(e.path());
                }
            }
        }
        for p in files {
            match std::fs::remove_file(&p) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => tracing::warn!("deleting {}: {e}", p.display()),
            }
        }
        info!("deleted unfinished replica blk_{block_id}_{gs} ({num_bytes} bytes)");
        Ok(Some(ExtendedBlock {
            block_id,
            generation_stamp: gs,
            num_bytes,
        }))
    }

    /// The replica of `block_id` on this node: the finalized one, else the
    /// rbw files with the highest generation stamp. Not while a writer
    /// holds it (see [`Storage::stop_writer`]).
    pub fn find_recoverable(&self, block_id: u64) -> Option<Recoverable> {
        if let Some(r) = self.get(block_id) {
            return Some(Recoverable {
                volume: r.volume,
                finalized: true,
                gen_stamp: r.gen_stamp,
                length: r.length,
                bytes_per_checksum: r.bytes_per_checksum,
            });
        }
        let (volume, gen_stamp) = *self.newest_rbw(Some(block_id)).get(&block_id)?;
        let v = &self.volumes[volume];
        let (length, bpc) = valid_rbw_length(v, block_id, gen_stamp).ok()?;
        Some(Recoverable {
            volume,
            finalized: false,
            gen_stamp,
            length,
            bytes_per_checksum: bpc,
        })
    }

    /// Stops the block's writer and turns its replica into an rbw replica
    /// of exactly `length` bytes with generation stamp `new_gs`, open for
    /// writing from there. A finalized replica is moved back to `rbw/`
    /// (never one finalized at `new_gs` itself). Callers serving a
    /// network request first have the leader confirm `new_gs` and
    /// `length` (`recovery_check.rs`).
    /// With `length` 0 and no replica here, a new one is created (a node
    /// that failed before receiving anything). `bytes_per_checksum` is used
    /// only for such a new replica.
    pub fn recover_replica(
        self: &Arc<Self>,
        block_id: u64,
        new_gs: u64,
        length: u64,
        bytes_per_checksum: u32,
        node: &str,
        wait: Duration,
    ) -> Result<ReplicaWriter> {
        self.stop_writer(block_id, wait)?;
        let Some(guard) = self.mark_writing(block_id) else {
            return Err(Error::ReplicaExists {
                block: block_id,
                node: format!("{node} (another write of it started)"),
            });
        };
        let Some(found) = self.find_recoverable(block_id) else {
            if length == 0 {
                return self.create_files(guard, new_gs, bytes_per_checksum, 1);
            }
            return Err(Error::ReplicaNotFound {
                block: block_id,
                gen_stamp: new_gs,
                node: node.to_string(),
            });
        };
        if found.gen_stamp > new_gs {
            return Err(Error::Invalid(format!(
                "replica of block {block_id} on {node} has generation stamp {}, newer than the recovery's {new_gs}",
                found.gen_stamp
            )));
        }
        // A replica finalized at this very stamp may be one the namenode
        // counts as complete (an open file's last block, written to its
        // end before `complete`); every real recovery brings a newer stamp.
        if found.finalized && found.gen_stamp == new_gs {
            return Err(Error::Invalid(format!(
                "recovery of block {block_id} on {node} refused: its replica is finalized at generation stamp {new_gs} already; a recovery needs a newer stamp"
            )));
        }
        if found.length < length {
            return Err(Error::Invalid(format!(
                "replica of block {block_id} on {node} holds {} bytes, fewer than the {length} to keep",
                found.length
            )));
        }
        let v = &self.volumes[found.volume];
        let io = |e| self.io_error(found.volume, e);
        let (data_from, meta_from) = if found.finalized {
            let mut map = self.map();
            if map.get(&block_id).map(|r| r.gen_stamp) != Some(found.gen_stamp) {
                return Err(Error::Invalid(format!(
                    "replica of block {block_id} on {node} changed during recovery"
                )));
            }
            map.remove(&block_id);
            (
                Volume::data_path(&v.finalized, block_id),
                Volume::meta_path(&v.finalized, block_id, found.gen_stamp),
            )
        } else {
            (
                Volume::data_path(&v.rbw, block_id),
                Volume::meta_path(&v.rbw, block_id, found.gen_stamp),
            )
        };
        let data_to = Volume::data_path(&v.rbw, block_id);
        let meta_to = Volume::meta_path(&v.rbw, block_id, new_gs);
        // Meta first, as in finalize: data without meta is never served.
        std::fs::rename(&meta_from, &meta_to).map_err(io)?;
        if data_from != data_to {
            std::fs::rename(&data_from, &data_to).map_err(io)?;
        }
        truncate(&data_to, &meta_to, length, found.bytes_per_checksum).map_err(io)?;
        if self.fsync {
            for d in [&v.rbw, &v.finalized] {
                super::sync_dir(d).map_err(io)?;
            }
        }
        info!(
            "recovering block {block_id} on {node}: {} replica gs {} ({} bytes) is now rbw gs {new_gs} ({length} bytes)",
            if found.finalized { "finalized" } else { "rbw" },
            found.gen_stamp,
            found.length
        );
        ReplicaWriter::reopen(
            guard,
            found.volume,
            new_gs,
            found.bytes_per_checksum,
            length,
        )
    }
}

/// (valid length, bytes_per_checksum) of rbw files: the data the checksums
/// cover, less a last chunk whose checksum does not verify.
fn valid_rbw_length(v: &Volume, block_id: u64, gen_stamp: u64) -> std::io::Result<(u64, u32)> {
    let data = std::fs::File::open(Volume::data_path(&v.rbw, block_id))?;
    let meta_file = std::fs::File::open(Volume::meta_path(&v.rbw, block_id, gen_stamp))?;
    let mut h = [0u8; meta::HEADER_LEN as usize];
    meta_file.read_exact_at(&mut h, 0)?;
    let bpc = meta::decode_header(&h).map_err(std::io::Error::other)?;
    let step = bpc as u64;
    let chunks = (meta_file.metadata()?.len() - meta::HEADER_LEN) / 4;
    let mut length = data.metadata()?.len().min(chunks * step);
    if length > 0 {
        let start = (length - 1) / step * step;
        let mut buf = vec![0u8; (length - start) as usize];
        data.read_exact_at(&mut buf, start)?;
        let mut stored = [0u8; 4];
        meta_file.read_exact_at(&mut stored, meta::checksum_pos(start, bpc))?;
        if crc32c::crc32c(&buf).to_be_bytes() != stored {
            length = start;
        }
    }
    Ok((length, bpc))
}

/// Cuts data and meta files to `length` bytes, recomputing the checksum of
/// a partial last chunk (it may have covered bytes now cut off).
fn truncate(
    data: &std::path::Path,
    meta_path: &std::path::Path,
    length: u64,
    bpc: u32,
) -> std::io::Result<()> {
    let data = OpenOptions::new().read(true).write(true).open(data)?;
    let meta_file = OpenOptions::new().read(true).write(true).open(meta_path)?;
    data.set_len(length)?;
    meta_file.set_len(meta::meta_len(length, bpc))?;
    let step = bpc as u64;
    if !length.is_multiple_of(step) {
        let start = length / step * step;
        let mut buf = vec![0u8; (length - start) as usize];
        data.read_exact_at(&mut buf, start)?;
        meta_file.write_all_at(
            &crc32c::crc32c(&buf).to_be_bytes(),
            meta::checksum_pos(start, bpc),
        )?;
    }
    data.sync_all()?;
    meta_file.sync_all()
}
