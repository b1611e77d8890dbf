//! The block scanner: re-verifies finalized replicas against their stored
//! CRC32C checksums in the background, so that bit rot and damaged files are
//! found before a reader (or a re-replication copy) trips over them.
//!
//! A pass walks every finalized replica in block id order, reading data and
//! `.meta` in slices of about [`SCAN_SLICE`] bytes paced by a token bucket
//! at `scan-bytes-per-sec` (so it never competes with clients for more disk
//! bandwidth than that). Passes start `scan-interval` apart, the first one
//! at startup; `scan-bytes-per-sec = 0` disables the scanner.
//!
//! A replica whose data does not match its checksums, whose files have the
//! wrong length or whose meta header is unreadable is quarantined
//! ([`crate::storage::Storage::quarantine`]: never served again, left out
//! of block reports, kept on disk until a namenode invalidates it) and
//! reported bad to every namenode ([`crate::reporting::Reporter::bad_replica`]).
//!
//! Suspects go first: when a client's read of a replica fails a checksum,
//! the namenode does not take the client's word for it but sends this node
//! a VerifyReplica command ([`Suspects`]); [`run_suspects`] verifies each
//! such replica at once, beside the paced pass and at the same rate (or
//! unpaced while the pass is disabled), and condemns it as above only if
//! it is bad. That verdict, never a client's report, is what makes the
//! namenode count a replica corrupt.
//!
//! It does not repair anything: the namenode re-replicates from a good copy
//! and then orders this one deleted.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use rfs_proto::common::ExtendedBlock;
use tokio::sync::{watch, Notify};
use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::error::Error;
use crate::http::names;
use crate::storage::meta;
use crate::storage::{ReplicaInfo, ReplicaReader, Storage};
use crate::throttle::TokenBucket;
use crate::Node;

/// Bytes read per paced step (rounded down to whole chunks).
pub const SCAN_SLICE: u64 = 64 * 1024;

/// Most suspects waiting at once. More are refused: a namenode asks again
/// on the next failed read, and a flood of reports must not grow the queue
/// without bound.
const MAX_SUSPECTS: usize = 1024;

/// Replicas a namenode asked this node to verify now, oldest first, each
/// queued once.
#[derive(Default)]
pub struct Suspects {
    queue: Mutex<VecDeque<ExtendedBlock>>,
    notify: Notify,
}

impl Suspects {
    /// Queues `block` for verification; false if it is queued already or
    /// the queue is full.
    pub fn add(&self, block: ExtendedBlock) -> bool {
        let mut q = self.queue.lock().unwrap_or_else(|p| p.into_inner());
        if q.len() >= MAX_SUSPECTS || q.iter().any(|b| b.block_id == block.block_id) {
            return false;
        }
        q.push_back(block);
        drop(q);
        self.notify.notify_one();
        true
    }

    fn pop(&self) -> Option<ExtendedBlock> {
        self.queue
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .pop_front()
    }
}

/// What verifying one replica found.
enum Verdict {
    Good,
    Corrupt(String),
    /// Could not be checked now (deleted meanwhile, transient error).
    Skipped,
}

/// Runs passes until shutdown; returns at once if the scanner is disabled.
pub async fn run(node: Arc<Node>, mut shutdown: watch::Receiver<bool>) {
    let rate = node.config.scan_bytes_per_sec;
    if rate == 0 {
        info!("block scanner disabled");
        return;
    }
    let every = node.config.scan_interval();
    let mut bucket = TokenBucket::new(rate, SCAN_SLICE);
    info!("block scanner: {rate} bytes/s, a pass every {every:?}");
    loop {
        let started = Instant::now();
        tokio::select! {
            _ = pass(&node, &mut bucket) => {}
            _ = shutdown.changed() => return,
        }
        tokio::select! {
            _ = tokio::time::sleep_until(started + every) => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// Verifies the replicas in `node.suspects` as they come, until shutdown.
pub async fn run_suspects(node: Arc<Node>, mut shutdown: watch::Receiver<bool>) {
    let rate = node.config.scan_bytes_per_sec;
    let mut bucket = (rate > 0).then(|| TokenBucket::new(rate, SCAN_SLICE));
    loop {
        let Some(block) = node.suspects.pop() else {
            tokio::select! {
                _ = node.suspects.notify.notified() => continue,
                _ = shutdown.changed() => return,
            }
        };
        tokio::select! {
            _ = verify_suspect(&node, block, bucket.as_mut()) => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// Verifies one suspect replica, if this node still serves it at the
/// suspected generation stamp (one already quarantined, deleted or
/// replaced by a newer stamp has nothing left to verify).
async fn verify_suspect(node: &Arc<Node>, block: ExtendedBlock, bucket: Option<&mut TokenBucket>) {
    let id = block.block_id;
    let info = match node.storage.get(id) {
        Some(info) if info.gen_stamp == block.generation_stamp => info,
        _ => {
            debug!(
                "suspect replica blk_{id}_{} is not served here; nothing to verify",
                block.generation_stamp
            );
            metrics::counter!(names::SUSPECTS_VERIFIED, "verdict" => "absent").increment(1);
            return;
        }
    };
    match verify(&node.storage, &info, bucket).await {
        Verdict::Good => {
            info!("suspect replica blk_{id}_{} verified good", info.gen_stamp);
            metrics::counter!(names::SUSPECTS_VERIFIED, "verdict" => "good").increment(1);
        }
        Verdict::Corrupt(reason) => {
            condemn(node, info, reason).await;
            metrics::counter!(names::SUSPECTS_VERIFIED, "verdict" => "corrupt").increment(1);
        }
        Verdict::Skipped => {
            metrics::counter!(names::SUSPECTS_VERIFIED, "verdict" => "skipped").increment(1)
        }
    }
}

/// Quarantines a replica found bad and reports it to every namenode;
/// returns false if it was no longer served (someone else got there).
async fn condemn(node: &Arc<Node>, info: ReplicaInfo, reason: String) -> bool {
    let storage = node.storage.clone();
    let (i, r) = (info.clone(), reason.clone());
    let quarantined = tokio::task::spawn_blocking(move || storage.quarantine(&i, &r))
        .await
        .unwrap_or(false);
    if quarantined {
        metrics::counter!(names::CORRUPT_REPLICAS).increment(1);
        node.reporter.bad_replica(info.extended(), &reason);
    }
    quarantined
}

async fn pass(node: &Arc<Node>, bucket: &mut TokenBucket) {
    let storage = node.storage.clone();
    let replicas = match tokio::task::spawn_blocking(move || storage.finalized_replicas()).await {
        Ok(r) => r,
        Err(e) => {
            warn!("block scanner: {e}");
            return;
        }
    };
    let (mut good, mut bad) = (0usize, 0usize);
    for info in replicas {
        match verify(&node.storage, &info, Some(&mut *bucket)).await {
            Verdict::Good => good += 1,
            Verdict::Skipped => {}
            Verdict::Corrupt(reason) => {
                if condemn(node, info, reason).await {
                    bad += 1;
                }
            }
        }
    }
    debug!("block scanner pass done: {good} good, {bad} corrupt");
}

/// Reads the whole replica at the bucket's pace (unpaced without one) and
/// checks every chunk.
async fn verify(
    storage: &Arc<Storage>,
    info: &ReplicaInfo,
    mut bucket: Option<&mut TokenBucket>,
) -> Verdict {
    let still_served = |storage: &Storage| storage.get(info.block_id).as_ref() == Some(info);
    let s = storage.clone();
    let i = info.clone();
    let reader = match tokio::task::spawn_blocking(move || {
        let reader = ReplicaReader::open(&s, i)?;
        let lens = reader.file_lens()?;
        Ok::<_, Error>((reader, lens))
    })
    .await
    {
        Ok(Ok((reader, (data_len, meta_len)))) => {
            let want_meta = meta::meta_len(info.length, info.bytes_per_checksum);
            if data_len != info.length || meta_len != want_meta {
                return Verdict::Corrupt(format!(
                    "data file is {data_len} bytes (expected {}), meta file {meta_len} (expected {want_meta})",
                    info.length
                ));
            }
            reader
        }
        Ok(Err(Error::CorruptReplica { why, .. })) => return Verdict::Corrupt(why),
        Ok(Err(Error::Io(e))) if e.kind() == std::io::ErrorKind::NotFound => {
            if still_served(storage) {
                return Verdict::Corrupt(format!("replica file missing: {e}"));
            }
            return Verdict::Skipped;
        }
        Ok(Err(e)) => {
            warn!("block scanner: cannot open block {}: {e}", info.block_id);
            return Verdict::Skipped;
        }
        Err(e) => {
            warn!("block scanner: {e}");
            return Verdict::Skipped;
        }
    };
    let bpc = info.bytes_per_checksum as u64;
    let slice = (SCAN_SLICE / bpc).max(1) * bpc;
    let mut offset = 0u64;
    while offset < info.length {
        let len = slice.min(info.length - offset);
        if let Some(b) = bucket.as_deref_mut() {
            b.acquire(len).await;
        }
        if !still_served(storage) {
            return Verdict::Skipped;
        }
        let r = reader.clone();
        let read = tokio::task::spawn_blocking(move || r.read(offset, len as usize)).await;
        let (sums, data) = match read {
            Ok(Ok(v)) => v,
            Ok(Err(e)) => return Verdict::Corrupt(e.to_string()),
            Err(e) => {
                warn!("block scanner: {e}");
                return Verdict::Skipped;
            }
        };
        metrics::counter!(names::SCANNER_BYTES).increment(len);
        for (k, (chunk, sum)) in data.chunks(bpc as usize).zip(sums.chunks(4)).enumerate() {
            let stored = u32::from_be_bytes([sum[0], sum[1], sum[2], sum[3]]);
            if crc32c::crc32c(chunk) != stored {
                return Verdict::Corrupt(format!(
                    "block scanner: checksum mismatch at offset {}",
                    offset + k as u64 * bpc
                ));
            }
        }
        offset += len;
    }
    Verdict::Good
}
