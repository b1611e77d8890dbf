//! COPY_BLOCK (and the namenode's TransferBlock command): push a local
//! finalized replica to other datanodes as a WRITE_BLOCK pipeline, with the
//! stored checksums, so a corrupt local replica is caught by the first
//! receiver instead of being copied.

use std::sync::Arc;

use rfs_proto::common::{DatanodeInfo, ExtendedBlock};
use rfs_proto::datanode::RecoveryKind;
use rfs_proto::transfer::{CopyBlockOp, Frame, Packet, Status, WriteBlockOp, WriteStage};
use rfs_transport::{FrameReceiver, FrameSender};

use super::read_block::packet_len;
use super::write_pipeline::connect_downstream;
use super::{confirm_recovery, error_response, reject, send_response, send_within, MAX_TARGETS};
use crate::error::{Error, Result};
use crate::storage::ReplicaReader;
use crate::Node;

pub async fn copy_block(
    node: &Arc<Node>,
    op: CopyBlockOp,
    mut tx: Box<dyn FrameSender>,
    rx: Box<dyn FrameReceiver>,
) -> Result<()> {
    let Some(block) = op.block else {
        let e = Error::Invalid("COPY_BLOCK without a block".into());
        reject(tx, rx, e.status(), e.to_string()).await;
        return Err(e);
    };
    let permit = node.transfers.acquire().await;
    let result = if op.rbw {
        push_rbw_replica(node, &block, &op.targets).await
    } else {
        push_replica(node, &block, &op.targets).await
    };
    drop(permit);
    match result {
        Ok(()) => {
            send_response(&mut *tx, error_response(Status::Success, String::new())).await?;
            let _ = tx.close().await;
            Ok(())
        }
        Err(e) => {
            reject(tx, rx, e.status(), e.to_string()).await;
            Err(e)
        }
    }
}

fn check_targets(targets: &[DatanodeInfo]) -> Result<()> {
    if targets.is_empty() || targets.len() > MAX_TARGETS {
        return Err(Error::Invalid(format!(
            "a copy needs 1 to {MAX_TARGETS} targets, got {}",
            targets.len()
        )));
    }
    Ok(())
}

/// Streams the local finalized replica of `block` to `targets` and waits
/// for every ack.
pub async fn push_replica(
    node: &Arc<Node>,
    block: &ExtendedBlock,
    targets: &[DatanodeInfo],
) -> Result<()> {
    check_targets(targets)?;
    let info = node
        .storage
        .lookup(block.block_id, block.generation_stamp, &node.addr)?;
    let storage = node.storage.clone();
    let info2 = info.clone();
    let reader =
        tokio::task::spawn_blocking(move || ReplicaReader::open(&storage, info2)).await??;
    send_replica(node, reader, targets, WriteStage::Create).await
}

/// Pipeline recovery's copy for a replacement node: recovers the local
/// replica still being written to `block` (its new generation stamp and
/// the acknowledged length, once the leader confirmed both) and streams
/// that to `targets`, which keep it unfinalized.
async fn push_rbw_replica(
    node: &Arc<Node>,
    block: &ExtendedBlock,
    targets: &[DatanodeInfo],
) -> Result<()> {
    check_targets(targets)?;
    confirm_recovery(node, *block, RecoveryKind::Pipeline).await?;
    let storage = node.storage.clone();
    let (b, me, wait) = (*block, node.addr.clone(), node.config.ack_timeout());
    let reader = tokio::task::spawn_blocking(move || {
        let writer =
            storage.recover_replica(b.block_id, b.generation_stamp, b.num_bytes, 0, &me, wait)?;
        // Dropping the writer keeps the files and frees the block for the
        // recovery pipeline that follows.
        let info = writer.info();
        drop(writer);
        ReplicaReader::open_rbw(&storage, info)
    })
    .await??;
    send_replica(node, reader, targets, WriteStage::TransferRbw).await
}

async fn send_replica(
    node: &Arc<Node>,
    reader: ReplicaReader,
    targets: &[DatanodeInfo],
    stage: WriteStage,
) -> Result<()> {
    let info = reader.info.clone();
    let block = &info.extended();
    let op = WriteBlockOp {
        block: Some(info.extended()),
        targets: targets.to_vec(),
        client_id: String::new(),
        bytes_per_checksum: info.bytes_per_checksum,
        source_datanode: node.storage.datanode_id.clone(),
        stage: stage as i32,
        recover_length: 0,
    };
    let down = match connect_downstream(node, &op).await {
        Ok(Some(d)) => d,
        Ok(None) => return Err(Error::Invalid("no copy target".into())),
        Err((bad, status, message)) => {
            return Err(match status {
                Status::ErrorExists => Error::ReplicaExists {
                    block: block.block_id,
                    node: bad,
                },
                _ => Error::Pipeline(format!(
                    "copy of block {} to {bad} failed: {message}",
                    block.block_id
                )),
            })
        }
    };
    let (mut tx, mut rx, name) = (down.tx, down.rx, down.name);
    let target = name.clone();
    let step = packet_len(info.bytes_per_checksum);
    let packets = info.length.div_ceil(step);
    let ack_timeout = node.config.ack_timeout();
    let id = block.block_id;
    let acks = tokio::spawn(async move {
        for seqno in 0..=packets {
            match tokio::time::timeout(ack_timeout, rx.recv()).await {
                Ok(Ok(Some(Frame::Ack(a)))) if a.seqno == seqno && a.is_success() => {}
                Ok(Ok(Some(Frame::Ack(a)))) => {
                    return Err(Error::Pipeline(format!(
                        "copy of block {id}: ack {} ({:?}) for packet {seqno}: {}",
                        a.seqno, a.replies, a.message
                    )))
                }
                Ok(Ok(Some(f))) => {
                    return Err(Error::Pipeline(format!(
                        "copy of block {id}: {name} sent a {}",
                        super::frame_name(&f)
                    )))
                }
                Ok(Ok(None)) => {
                    return Err(Error::Pipeline(format!(
                        "copy of block {id}: {name} closed before acknowledging packet {seqno}"
                    )))
                }
                Ok(Err(e)) => return Err(Error::Pipeline(format!("copy of block {id}: {name}: {e}"))),
                Err(_) => {
                    return Err(Error::Timeout(format!(
                        "copy of block {id}: {name} did not acknowledge packet {seqno} within {ack_timeout:?}"
                    )))
                }
            }
        }
        Ok(())
    });
    let send = async {
        let mut pos = 0u64;
        let mut seqno = 0u64;
        while pos < info.length {
            let len = step.min(info.length - pos) as usize;
            // Re-replication is paced; a pipeline recovery's copy is not
            // (a writer waits on it).
            if let (WriteStage::Create, Some(rate)) = (stage, &node.transfer_rate) {
                rate.lock().await.acquire(len as u64).await;
            }
            let r = reader.clone();
            let (checksums, data) = tokio::task::spawn_blocking(move || r.read(pos, len)).await??;
            let p = Frame::Packet(Packet {
                seqno,
                offset_in_block: pos,
                flags: 0,
                checksums,
                data,
            });
            send_within(&mut *tx, p, ack_timeout, &target).await?;
            pos += len as u64;
            seqno += 1;
        }
        let p = Frame::Packet(Packet::last(seqno, pos));
        send_within(&mut *tx, p, ack_timeout, &target).await?;
        Ok::<(), Error>(())
    };
    let sent = send.await;
    let acked = acks.await?;
    // An ack failure explains a send failure better than "broken pipe".
    acked?;
    sent?;
    let _ = tx.close().await;
    Ok(())
}
