//! READ_BLOCK: stream a range of a finalized replica with its stored
//! checksums (never recomputed, so the reader detects on-disk corruption).
//!
//! Packets hold whole chunks (the last may be short at the replica's end)
//! and at most `PACKET_SIZE` bytes, from `first_chunk_offset` (the offset
//! rounded down to a chunk) to the chunk boundary at or after the end of
//! the range; an empty last packet closes the stream.

use std::sync::Arc;

use rfs_proto::defaults::PACKET_SIZE;
use rfs_proto::transfer::{FilePacket, Frame, OpResponse, Packet, ReadBlockOp, Status};
use rfs_transport::{FrameReceiver, FrameSender, TransportError};
use tokio::sync::mpsc;

use super::{reject, send_response, send_within, stalled};
use crate::error::{Error, Result};
use crate::http::names;
use crate::storage::{ReplicaInfo, ReplicaReader, Storage};
use crate::Node;

/// Bytes handed to the transport per call: many packets' worth, so the
/// hand-off to a blocking thread and back is paid once per MiB rather than
/// once per 64 KiB packet.
const READ_BATCH: u64 = 1 << 20;
/// Batches prepared (checksums read, data prefetched) ahead of the socket,
/// so the disk read of the next batch overlaps sending this one.
const READ_AHEAD_BATCHES: usize = 2;

/// The byte range a read streams: (first chunk offset, end).
pub fn plan(info: &ReplicaInfo, offset: u64, length: u64) -> (u64, u64) {
    let bpc = info.bytes_per_checksum as u64;
    let first = offset / bpc * bpc;
    let want_end = if length == 0 {
        info.length
    } else {
        offset.saturating_add(length).min(info.length)
    };
    let end = want_end.div_ceil(bpc).saturating_mul(bpc).min(info.length);
    (first, end.max(first))
}

/// Bytes of data per packet: whole chunks, at most `PACKET_SIZE` unless one
/// chunk is bigger.
pub fn packet_len(bpc: u32) -> u64 {
    let bpc = bpc as u64;
    ((PACKET_SIZE as u64 / bpc).max(1)) * bpc
}

pub async fn read_block(
    node: &Arc<Node>,
    op: ReadBlockOp,
    mut tx: Box<dyn FrameSender>,
    rx: Box<dyn FrameReceiver>,
) -> Result<()> {
    let reader = match open(node, &op).await {
        Ok(r) => r,
        Err(e) => {
            let m = e.to_string();
            reject(tx, rx, e.status(), m).await;
            return Err(e);
        }
    };
    let info = reader.info.clone();
    let (first, end) = plan(&info, op.offset, op.length);
    send_response(
        &mut *tx,
        OpResponse {
            status: Status::Success as i32,
            bytes_per_checksum: info.bytes_per_checksum,
            first_chunk_offset: first,
            replica_length: info.length,
            ..Default::default()
        },
    )
    .await?;
    let step = packet_len(info.bytes_per_checksum);
    let batch = (READ_BATCH / step).max(1) * step;
    let bpc = info.bytes_per_checksum as u64;
    let file = reader.data_file().clone();
    let data_path = reader.data_path().to_path_buf();
    let (btx, mut brx) = mpsc::channel::<Result<(u64, usize, bytes::Bytes)>>(READ_AHEAD_BATCHES);
    // Reads each batch's checksums and starts its data into the page
    // cache ahead of the sender, which hands the data to the transport
    // straight from the file (`sendfile` on TCP: no copy through here).
    let producer = tokio::spawn(async move {
        let mut pos = first;
        while pos < end {
            let len = batch.min(end - pos) as usize;
            let r2 = reader.clone();
            let r = tokio::task::spawn_blocking(move || {
                r2.prefetch(pos, len);
                r2.read_checksums(pos, len)
            })
            .await
            .map_err(Error::from)
            .and_then(|r| r);
            let failed = r.is_err();
            if btx.send(r.map(|sums| (pos, len, sums))).await.is_err() || failed {
                return;
            }
            pos += len as u64;
        }
    });
    let mut seqno = 0u64;
    let limit = node.config.idle_timeout();
    let result = async {
        while let Some(r) = brx.recv().await {
            let (mut pos, len, mut sums) = r?;
            let batch_end = pos + len as u64;
            // Packets start on chunk boundaries (`step` is whole chunks),
            // so each takes its own chunks' checksums.
            let mut packets = Vec::with_capacity(len.div_ceil(step as usize));
            while pos < batch_end {
                let n = step.min(batch_end - pos);
                packets.push(FilePacket {
                    seqno,
                    offset_in_block: pos,
                    checksums: sums.split_to(n.div_ceil(bpc) as usize * 4),
                    file_offset: pos,
                    len: n as usize,
                });
                seqno += 1;
                pos += n;
            }
            let count = packets.len() as u64;
            tx.send_file_packets(&file, packets, limit)
                .await
                .map_err(|e| match e {
                    TransportError::Stalled { idle } => stalled("reader", idle),
                    TransportError::Io(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                        Error::CorruptReplica {
                            path: data_path.clone(),
                            why: e.to_string(),
                        }
                    }
                    e => e.into(),
                })?;
            metrics::counter!(names::BYTES_READ).increment(len as u64);
            metrics::counter!(names::PACKETS_SENT).increment(count);
        }
        let p = Frame::Packet(Packet::last(seqno, end));
        send_within(&mut *tx, p, limit, "reader").await?;
        metrics::counter!(names::BLOCKS_READ).increment(1);
        Ok::<(), Error>(())
    }
    .await;
    producer.abort();
    let _ = tx.close().await;
    drop(rx);
    result
}

async fn open(node: &Node, op: &ReadBlockOp) -> Result<ReplicaReader> {
    let block = op
        .block
        .as_ref()
        .ok_or_else(|| Error::Invalid("READ_BLOCK without a block".into()))?;
    let info = node
        .storage
        .lookup(block.block_id, block.generation_stamp, &node.addr)?;
    if op.offset > info.length {
        return Err(Error::Invalid(format!(
            "offset {} is beyond the {} bytes of block {} on datanode {}",
            op.offset, info.length, info.block_id, node.addr
        )));
    }
    let storage: Arc<Storage> = node.storage.clone();
    tokio::task::spawn_blocking(move || ReplicaReader::open(&storage, info)).await?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_rounds_to_chunks() {
        let info = ReplicaInfo {
            block_id: 1,
            gen_stamp: 1,
            length: 1300,
            bytes_per_checksum: 512,
            volume: 0,
        };
        assert_eq!(plan(&info, 0, 0), (0, 1300));
        assert_eq!(plan(&info, 600, 10), (512, 1024));
        assert_eq!(plan(&info, 600, 1000), (512, 1300));
        assert_eq!(plan(&info, 1300, 0), (1024, 1300));
        assert_eq!(packet_len(512), 65536);
        assert_eq!(packet_len(100_000), 100_000);
    }
}
