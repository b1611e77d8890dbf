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
//! It does not repair anything: the namenode re-replicates from a good copy
//! and then orders this one deleted.

use std::sync::Arc;

use tokio::sync::watch;
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
        match verify(&node.storage, &info, bucket).await {
            Verdict::Good => good += 1,
            Verdict::Skipped => {}
            Verdict::Corrupt(reason) => {
                let storage = node.storage.clone();
                let (i, r) = (info.clone(), reason.clone());
                let quarantined = tokio::task::spawn_blocking(move || storage.quarantine(&i, &r))
                    .await
                    .unwrap_or(false);
                if quarantined {
                    bad += 1;
                    metrics::counter!(names::CORRUPT_REPLICAS).increment(1);
                    node.reporter.bad_replica(info.extended(), &reason);
                }
            }
        }
    }
    debug!("block scanner pass done: {good} good, {bad} corrupt");
}

/// Reads the whole replica at the bucket's pace and checks every chunk.
async fn verify(storage: &Arc<Storage>, info: &ReplicaInfo, bucket: &mut TokenBucket) -> Verdict {
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
        bucket.acquire(len).await;
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
