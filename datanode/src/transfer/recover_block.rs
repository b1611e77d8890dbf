//! Lease recovery on the datanodes: RECOVER_REPLICA (one replica's part)
//! and the primary's run of a namenode's RecoverBlock command.
//!
//! The primary asks every location of the block, itself included, to stop
//! the block's writer and describe its replica (INIT). It keeps the length
//! every good replica can hold: a finalized replica's length if there is
//! one (its bytes were complete; shorter replicas are left out), else the
//! minimum over the rbw replicas. Bytes past the minimum reached only some
//! nodes, so no reader can have relied on them, while every byte the
//! writer hflushed was acknowledged by the whole pipeline and is kept.
//! Each kept replica is then cut to that length, given the recovery's
//! generation stamp and finalized (COMMIT), which reports it to the
//! namenodes as usual; the primary finally tells the namenode that sent
//! the command (CommitBlockSynchronization), which closes the file.
//! Dead or failing locations are skipped; if none holds a replica and
//! some did not answer, nothing is committed and the namenode retries.

use std::sync::Arc;
use std::time::Duration;

use futures::future::join_all;
use rfs_proto::common::{DatanodeInfo, ExtendedBlock};
use rfs_proto::datanode::datanode_protocol_client::DatanodeProtocolClient;
use rfs_proto::datanode::{CommitBlockSynchronizationRequest, RecoveryKind};
use rfs_proto::transfer::{Frame, Op, OpResponse, RecoverReplicaOp, RecoveryPhase, Status};
use rfs_transport::{FrameReceiver, FrameSender};
use tonic::transport::Channel;
use tracing::{info, warn};

use super::{confirm_recovery, frame_name, reject, send_response, target_addr, target_name};
use crate::error::{Error, Result};
use crate::Node;

/// How long a COMMIT waits for its "block received" to reach the active
/// namenode before answering (the namenode also learns the replicas from
/// CommitBlockSynchronization).
const REPORT_WAIT: Duration = Duration::from_secs(3);

/// Serves one RECOVER_REPLICA op.
pub async fn recover_replica(
    node: &Arc<Node>,
    op: RecoverReplicaOp,
    mut tx: Box<dyn FrameSender>,
    rx: Box<dyn FrameReceiver>,
) -> Result<()> {
    let result = match op.block {
        None => Err(Error::Invalid("RECOVER_REPLICA without a block".into())),
        Some(b) => match op.phase() {
            RecoveryPhase::Init => init(node, b).await,
            RecoveryPhase::Commit => commit(node, b).await,
        },
    };
    match result {
        Ok(r) => {
            send_response(&mut *tx, r).await?;
            let _ = tx.close().await;
            Ok(())
        }
        Err(e) => {
            reject(tx, rx, e.status(), e.to_string()).await;
            Err(e)
        }
    }
}

/// Stops the writer and describes the replica.
async fn init(node: &Arc<Node>, b: ExtendedBlock) -> Result<OpResponse> {
    let storage = node.storage.clone();
    let wait = node.config.ack_timeout();
    let found = tokio::task::spawn_blocking(move || {
        storage.stop_writer(b.block_id, wait)?;
        Ok::<_, Error>(storage.find_recoverable(b.block_id))
    })
    .await??;
    let Some(r) = found else {
        return Err(Error::ReplicaNotFound {
            block: b.block_id,
            gen_stamp: b.generation_stamp,
            node: node.addr.clone(),
        });
    };
    // A newer recovery already took this replica over.
    if r.gen_stamp > b.generation_stamp {
        return Err(Error::Invalid(format!(
            "replica of block {} on {} has generation stamp {}, newer than the recovery's {}",
            b.block_id, node.addr, r.gen_stamp, b.generation_stamp
        )));
    }
    Ok(OpResponse {
        status: Status::Success as i32,
        replica_length: r.length,
        replica_finalized: r.finalized,
        replica_gen_stamp: r.gen_stamp,
        ..Default::default()
    })
}

/// Cuts the replica to `b.num_bytes`, stamps and finalizes it, and reports
/// it to the namenodes; only at the stamp the leader's lease recovery
/// allocated.
async fn commit(node: &Arc<Node>, b: ExtendedBlock) -> Result<OpResponse> {
    confirm_recovery(node, b, RecoveryKind::Lease).await?;
    let storage = node.storage.clone();
    let (me, wait, bpc) = (
        node.addr.clone(),
        node.config.ack_timeout(),
        node.config.bytes_per_checksum,
    );
    let info = tokio::task::spawn_blocking(move || {
        let writer =
            storage.recover_replica(b.block_id, b.generation_stamp, b.num_bytes, bpc, &me, wait)?;
        writer.finalize(&me)
    })
    .await??;
    info!(
        "lease recovery finalized block {} gs {} ({} bytes)",
        info.block_id, info.gen_stamp, info.length
    );
    let waiters = node
        .reporter
        .block_received(info.extended(), node.fence.highest());
    crate::reporting::await_delivery(waiters, REPORT_WAIT).await;
    Ok(OpResponse {
        status: Status::Success as i32,
        replica_length: info.length,
        replica_finalized: true,
        replica_gen_stamp: info.gen_stamp,
        ..Default::default()
    })
}

/// What a recovery agreed on, for CommitBlockSynchronization.
#[derive(Debug)]
pub struct Synchronized {
    /// The recovery's generation stamp and the kept length.
    pub block: ExtendedBlock,
    /// Datanodes that finalized their replica.
    pub datanode_ids: Vec<String>,
    /// No location held a replica: the (empty) block goes.
    pub delete_block: bool,
}

/// A replica as INIT described it.
struct Found {
    location: DatanodeInfo,
    length: u64,
    finalized: bool,
    gen_stamp: u64,
}

/// The primary's work for `block` (the recovery's generation stamp) over
/// `locations`.
pub async fn synchronize(
    node: &Arc<Node>,
    block: ExtendedBlock,
    locations: &[DatanodeInfo],
) -> Result<Synchronized> {
    let id = block.block_id;
    let answers = join_all(
        locations
            .iter()
            .map(|l| ask(node, l, block, RecoveryPhase::Init)),
    )
    .await;
    let mut found = Vec::new();
    let mut unreachable = 0;
    for (l, a) in locations.iter().zip(answers) {
        match a {
            Ok(r) => found.push(Found {
                location: l.clone(),
                length: r.replica_length,
                finalized: r.replica_finalized,
                gen_stamp: r.replica_gen_stamp,
            }),
            Err(Error::ReplicaNotFound { .. }) => {}
            Err(e) => {
                warn!(
                    "lease recovery of block {id}: {} skipped: {e}",
                    target_name(l)
                );
                unreachable += 1;
            }
        }
    }
    if found.is_empty() {
        if unreachable > 0 || locations.is_empty() {
            return Err(Error::Pipeline(format!(
                "lease recovery of block {id}: no location described a replica"
            )));
        }
        return Ok(Synchronized {
            block: ExtendedBlock {
                num_bytes: 0,
                ..block
            },
            datanode_ids: Vec::new(),
            delete_block: true,
        });
    }
    let length = match found
        .iter()
        .filter(|f| f.finalized)
        .max_by_key(|f| f.gen_stamp)
    {
        Some(f) => f.length,
        None => found.iter().map(|f| f.length).min().unwrap_or(0),
    };
    found.retain(|f| f.length >= length);
    let keep = ExtendedBlock {
        num_bytes: length,
        ..block
    };
    info!(
        "lease recovery of block {id}: keeping {length} bytes on {} of {} locations",
        found.len(),
        locations.len()
    );
    let commits = join_all(
        found
            .iter()
            .map(|f| ask(node, &f.location, keep, RecoveryPhase::Commit)),
    )
    .await;
    let mut datanode_ids = Vec::new();
    for (f, c) in found.iter().zip(commits) {
        match c {
            Ok(_) => datanode_ids.push(f.location.datanode_id.clone()),
            Err(e) => warn!(
                "lease recovery of block {id}: commit on {} failed: {e}",
                target_name(&f.location)
            ),
        }
    }
    if datanode_ids.is_empty() {
        return Err(Error::Pipeline(format!(
            "lease recovery of block {id}: no location committed"
        )));
    }
    Ok(Synchronized {
        block: keep,
        datanode_ids,
        delete_block: false,
    })
}

/// Runs a RecoverBlock command and reports the outcome to the namenode
/// that sent it; a failure is logged and left to the namenode's retry.
pub async fn run_primary(
    node: Arc<Node>,
    block: ExtendedBlock,
    locations: Vec<DatanodeInfo>,
    mut namenode: DatanodeProtocolClient<Channel>,
    namenode_addr: String,
) {
    let id = block.block_id;
    let done = match synchronize(&node, block, &locations).await {
        Ok(done) => done,
        Err(e) => {
            warn!("{e}");
            return;
        }
    };
    let req = CommitBlockSynchronizationRequest {
        block: Some(done.block),
        datanode_ids: done.datanode_ids,
        delete_block: done.delete_block,
    };
    match namenode.commit_block_synchronization(req).await {
        Ok(_) => info!(
            "lease recovery of block {id} committed at namenode {namenode_addr}: {} bytes, gs {}",
            done.block.num_bytes, done.block.generation_stamp
        ),
        Err(s) => warn!(
            "lease recovery of block {id}: namenode {namenode_addr} refused the commit: {}",
            s.message()
        ),
    }
}

/// Sends one RECOVER_REPLICA to `target` and returns its successful
/// answer; an error answer becomes the matching [`Error`].
async fn ask(
    node: &Node,
    target: &DatanodeInfo,
    block: ExtendedBlock,
    phase: RecoveryPhase,
) -> Result<OpResponse> {
    let name = target_name(target);
    // INIT may wait out the old writer; COMMIT waits for its report.
    let limit = node.config.ack_timeout() + REPORT_WAIT + Duration::from_secs(2);
    let op = RecoverReplicaOp {
        block: Some(block),
        phase: phase as i32,
    };
    let answer = tokio::time::timeout(limit, async {
        let addr = target_addr(target).await?;
        let (mut tx, mut rx) = node.transport.connect(addr).await?.split();
        tx.send(Frame::Op(Op::RecoverReplica(op))).await?;
        match rx.recv().await? {
            Some(Frame::Response(r)) => Ok(r),
            Some(other) => Err(Error::Pipeline(format!(
                "{name} answered RECOVER_REPLICA with a {}",
                frame_name(&other)
            ))),
            None => Err(Error::Pipeline(format!(
                "{name} closed the connection without answering RECOVER_REPLICA"
            ))),
        }
    })
    .await
    .map_err(|_| {
        Error::Timeout(format!(
            "{name} did not answer RECOVER_REPLICA within {limit:?}"
        ))
    })??;
    match answer.status() {
        Status::Success => Ok(answer),
        Status::ErrorNotFound => Err(Error::ReplicaNotFound {
            block: block.block_id,
            gen_stamp: block.generation_stamp,
            node: name,
        }),
        _ => Err(Error::Pipeline(format!("{name}: {}", answer.message))),
    }
}
