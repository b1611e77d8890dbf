//! WRITE_BLOCK: receive a block, store it, and forward it down the pipeline.
//!
//! ```text
//! upstream ──packets──► receive loop ──packets──► downstream (targets[0])
//!    ▲                      │ verify, forward, write, finalize on LAST
//!    │                      ▼ Done{seqno} (bounded channel)
//!    └──acks [own, down…]── responder ◄──acks──── downstream
//! ```
//!
//! The receive loop verifies every packet's CRC32C before forwarding it;
//! the responder pairs each packet with the downstream ack of the same seqno
//! (time-limited) and sends `[own status] ++ downstream replies` upstream.
//! A checksum mismatch or a full disk deletes the partial replica, and so
//! does a failure before the first byte of a replica this op created (an
//! upstream gone after the op header: nothing can need an empty replica);
//! any other failure leaves the rbw files for lease recovery. Nothing
//! finalized is touched, except by a RECOVER the leader confirmed first.
//!
//! The last packet is acknowledged once the block is finalized and its
//! "block received" report reached the namenode(s) known active (or every
//! namenode while none is), waiting at most `REPORT_WAIT`; the other
//! namenodes get the report asynchronously (rule in `reporting.rs`).

use std::sync::Arc;
use std::time::Duration;

use rfs_proto::common::ExtendedBlock;
use rfs_proto::datanode::RecoveryKind;
use rfs_proto::transfer::{
    pipeline_timeout, Checksums, Frame, Op, OpResponse, Packet, PipelineAck, Status, WriteBlockOp,
    WriteStage,
};
use rfs_transport::{FrameReceiver, FrameSender};
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use super::{
    confirm_recovery, error_response, reject, send_response, send_within, target_addr, target_name,
    MAX_TARGETS,
};
use crate::config::MAX_BYTES_PER_CHECKSUM;
use crate::error::{Error, Result};
use crate::http::names;
use crate::storage::ReplicaWriter;
use crate::Node;

/// Packets received but not yet acknowledged, per connection.
const MAX_IN_FLIGHT: usize = 64;
/// How long a finished block waits for its "received" report to reach the
/// active namenode (every namenode while none is known active; see
/// `reporting.rs`) before it is acknowledged anyway.
const REPORT_WAIT: Duration = Duration::from_secs(3);

/// What the receive loop tells the responder about one packet.
enum Done {
    Ok {
        seqno: u64,
        last: bool,
    },
    Fail {
        seqno: u64,
        status: Status,
        message: String,
    },
}

/// A connected downstream node that accepted the op.
pub struct Downstream {
    pub tx: Box<dyn FrameSender>,
    pub rx: Box<dyn FrameReceiver>,
    pub name: String,
}

fn validate(op: &WriteBlockOp) -> Result<ExtendedBlock> {
    let block = op
        .block
        .ok_or_else(|| Error::Invalid("WRITE_BLOCK without a block".into()))?;
    if op.bytes_per_checksum == 0 || op.bytes_per_checksum > MAX_BYTES_PER_CHECKSUM {
        return Err(Error::Invalid(format!(
            "bytes_per_checksum {} must be between 1 and {MAX_BYTES_PER_CHECKSUM}",
            op.bytes_per_checksum
        )));
    }
    if op.targets.len() > MAX_TARGETS {
        return Err(Error::Invalid(format!(
            "{} pipeline targets exceed the limit of {MAX_TARGETS}",
            op.targets.len()
        )));
    }
    Ok(block)
}

/// How long this node waits for the nodes below it (see
/// [`pipeline_timeout`]): `targets` are all of them.
fn downstream_wait(node: &Node, op: &WriteBlockOp) -> Duration {
    pipeline_timeout(node.config.ack_timeout(), op.targets.len())
}

/// Connects to `targets[0]` and has it accept a WRITE_BLOCK for the rest of
/// the pipeline, all within this hop's wait. On failure returns the first
/// bad link and why.
pub async fn connect_downstream(
    node: &Node,
    op: &WriteBlockOp,
) -> std::result::Result<Option<Downstream>, (String, Status, String)> {
    let Some(first) = op.targets.first() else {
        return Ok(None);
    };
    let limit = downstream_wait(node, op);
    match tokio::time::timeout(limit, connect_first(node, op, limit)).await {
        Ok(r) => r,
        Err(_) => {
            let name = target_name(first);
            let why =
                format!("downstream datanode {name} did not accept WRITE_BLOCK within {limit:?}");
            Err((name, Status::Error, why))
        }
    }
}

async fn connect_first(
    node: &Node,
    op: &WriteBlockOp,
    limit: Duration,
) -> std::result::Result<Option<Downstream>, (String, Status, String)> {
    let Some(first) = op.targets.first() else {
        return Ok(None);
    };
    let name = target_name(first);
    let fail = |status, why: String| (name.clone(), status, why);
    let addr = target_addr(first)
        .await
        .map_err(|e| fail(Status::Error, e.to_string()))?;
    let conn = match tokio::time::timeout(limit, node.transport.connect(addr)).await {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => {
            return Err(fail(
                Status::Error,
                format!("cannot connect to downstream datanode {name}: {e}"),
            ))
        }
        Err(_) => {
            return Err(fail(
                Status::Error,
                format!("timed out connecting to downstream datanode {name}"),
            ))
        }
    };
    let (mut tx, mut rx) = conn.split();
    let forward = WriteBlockOp {
        targets: op.targets[1..].to_vec(),
        ..op.clone()
    };
    if let Err(e) = tx.send(Frame::Op(Op::WriteBlock(forward))).await {
        return Err(fail(
            Status::Error,
            format!("sending WRITE_BLOCK to downstream datanode {name}: {e}"),
        ));
    }
    let resp = match tokio::time::timeout(limit, rx.recv()).await {
        Ok(Ok(Some(Frame::Response(r)))) => r,
        Ok(Ok(Some(f))) => {
            return Err(fail(
                Status::Error,
                format!(
                    "downstream datanode {name} answered WRITE_BLOCK with a {}",
                    super::frame_name(&f)
                ),
            ))
        }
        Ok(Ok(None)) => {
            return Err(fail(
                Status::Error,
                format!("downstream datanode {name} closed the connection"),
            ))
        }
        Ok(Err(e)) => {
            return Err(fail(
                Status::Error,
                format!("downstream datanode {name}: {e}"),
            ))
        }
        Err(_) => {
            return Err(fail(
                Status::Error,
                format!("downstream datanode {name} did not answer WRITE_BLOCK within {limit:?}"),
            ))
        }
    };
    if resp.status() != Status::Success {
        let bad = if resp.first_bad_link.is_empty() {
            name.clone()
        } else {
            resp.first_bad_link.clone()
        };
        return Err((bad, resp.status(), resp.message));
    }
    Ok(Some(Downstream { tx, rx, name }))
}

pub async fn write_block(
    node: &Arc<Node>,
    op: WriteBlockOp,
    mut up_tx: Box<dyn FrameSender>,
    up_rx: Box<dyn FrameReceiver>,
) -> Result<()> {
    let block = match validate(&op) {
        Ok(b) => b,
        Err(e) => {
            reject(up_tx, up_rx, e.status(), e.to_string()).await;
            return Err(e);
        }
    };
    // Before anything moves: downstream is not even asked to recover.
    if op.stage() == WriteStage::Recover {
        let cut_to = ExtendedBlock {
            num_bytes: op.recover_length,
            ..block
        };
        if let Err(e) = confirm_recovery(node, cut_to, RecoveryKind::Pipeline).await {
            reject(up_tx, up_rx, e.status(), e.to_string()).await;
            return Err(e);
        }
    }
    let downstream = match connect_downstream(node, &op).await {
        Ok(d) => d,
        Err((bad_link, status, message)) => {
            let resp = OpResponse {
                first_bad_link: bad_link,
                ..error_response(status, message.clone())
            };
            let _ = send_response(&mut *up_tx, resp).await;
            return Err(Error::Pipeline(message));
        }
    };
    let storage = node.storage.clone();
    let (id, gs, bpc, expected) = (
        block.block_id,
        block.generation_stamp,
        op.bytes_per_checksum,
        block.num_bytes,
    );
    let me = node.addr.clone();
    let stage = op.stage();
    let (keep, wait) = (op.recover_length, node.config.ack_timeout());
    let writer = tokio::task::spawn_blocking(move || match stage {
        WriteStage::Recover => storage.recover_replica(id, gs, keep, bpc, &me, wait),
        WriteStage::Create | WriteStage::TransferRbw => {
            storage.create_rbw(id, gs, bpc, expected, &me)
        }
    })
    .await
    .map_err(Error::from)
    .and_then(|r| r);
    let writer = match writer {
        Ok(w) => w,
        Err(e) => {
            reject(up_tx, up_rx, e.status(), e.to_string()).await;
            return Err(e);
        }
    };
    if let Err(e) = send_response(&mut *up_tx, error_response(Status::Success, String::new())).await
    {
        release(writer, false).await;
        return Err(e);
    }
    debug!(
        "receiving block {id} gs {gs} ({stage:?}) from {} (client {:?}, {} downstream)",
        if op.source_datanode.is_empty() {
            "client"
        } else {
            &op.source_datanode
        },
        op.client_id,
        op.targets.len()
    );
    let finalize = stage != WriteStage::TransferRbw;
    let receiver = Receiver {
        block,
        bpc,
        finalize,
        ack_wait: downstream_wait(node, &op),
    };
    run_pipeline(node, receiver, writer, up_tx, up_rx, downstream).await
}

/// What the receive loop stores.
struct Receiver {
    block: ExtendedBlock,
    bpc: u32,
    /// Finalize (and report) the replica on the last packet; otherwise it
    /// stays in rbw/ for the recovery that follows (see `WriteStage`).
    finalize: bool,
    /// How long the responder waits for each downstream ack.
    ack_wait: Duration,
}

async fn run_pipeline(
    node: &Arc<Node>,
    receiver: Receiver,
    writer: ReplicaWriter,
    up_tx: Box<dyn FrameSender>,
    up_rx: Box<dyn FrameReceiver>,
    downstream: Option<Downstream>,
) -> Result<()> {
    let (done_tx, done_rx) = mpsc::channel(MAX_IN_FLIGHT);
    let (down_tx, down_rx, down_name) = match downstream {
        Some(d) => (Some(d.tx), Some(d.rx), d.name),
        None => (None, None, String::new()),
    };
    let responder = tokio::spawn(responder(
        done_rx,
        up_tx,
        down_rx,
        down_name,
        receiver.ack_wait,
    ));
    let abort = responder.abort_handle();
    let id = receiver.block.block_id;
    // A recovery of the block (pipeline or lease) asks this write to stop;
    // it may be blocked anywhere (a full ack queue, a stalled downstream),
    // so the whole pipeline is dropped, which releases the replica.
    let mut stop = writer.stop_signal();
    let stopped = async move {
        if stop.wait_for(|stop| *stop).await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    let receive = receive_loop(node.clone(), receiver, writer, up_rx, down_tx, done_tx);
    tokio::pin!(receive);
    let mut responder = responder;
    tokio::select! {
        _ = stopped => {
            abort.abort();
            info!("write of block {id} on datanode {} stopped: a recovery of the block took over", node.addr);
            Err(Error::Pipeline(format!("write of block {id} stopped for a recovery")))
        }
        r = &mut receive => {
            // The responder sends the remaining acks (each time-limited).
            let resp = responder.await;
            r?;
            resp??;
            Ok(())
        }
        resp = &mut responder => {
            match resp {
                Ok(Ok(())) => {
                    // The last packet was acknowledged, so the receive
                    // loop has finished (or is about to).
                    receive.await
                }
                Ok(Err(e)) => {
                    // The pipeline failed downstream or upstream went away:
                    // stop receiving; the rbw files stay for recovery.
                    abort.abort();
                    Err(e)
                }
                Err(e) => Err(e.into()),
            }
        }
    }
}

/// Receives, verifies, forwards and writes packets until the last one.
async fn receive_loop(
    node: Arc<Node>,
    receiver: Receiver,
    mut writer: ReplicaWriter,
    mut up_rx: Box<dyn FrameReceiver>,
    mut down_tx: Option<Box<dyn FrameSender>>,
    done: mpsc::Sender<Done>,
) -> Result<()> {
    let Receiver {
        block,
        bpc,
        finalize,
        ..
    } = receiver;
    let id = block.block_id;
    let sums = Checksums::new(bpc);
    let idle = node.config.idle_timeout();
    let mut next_seqno: Option<u64> = None;
    // Fails the write: tells the responder, deletes the replica if asked.
    async fn fail(
        done: &mpsc::Sender<Done>,
        writer: ReplicaWriter,
        seqno: u64,
        status: Status,
        message: String,
        delete: bool,
    ) -> Error {
        // Delete first, so that whoever sees the error sees no partial
        // replica either.
        release(writer, delete).await;
        let _ = done
            .send(Done::Fail {
                seqno,
                status,
                message: message.clone(),
            })
            .await;
        Error::Pipeline(message)
    }
    loop {
        let expect = next_seqno.unwrap_or(0);
        let packet = match tokio::time::timeout(idle, up_rx.recv()).await {
            Ok(Ok(Some(Frame::Packet(p)))) => p,
            Ok(Ok(Some(f))) => {
                let m = format!(
                    "expected a packet of block {id}, got a {} on datanode {}",
                    super::frame_name(&f),
                    node.addr
                );
                return Err(fail(&done, writer, expect, Status::ErrorInvalid, m, false).await);
            }
            Ok(Ok(None)) => {
                let m = format!(
                    "upstream closed before the last packet of block {id} ({} bytes received)",
                    writer.length
                );
                return Err(fail(&done, writer, expect, Status::Error, m, false).await);
            }
            Ok(Err(e)) => {
                let m = format!("bad frame in block {id} on datanode {}: {e}", node.addr);
                return Err(fail(&done, writer, expect, Status::ErrorInvalid, m, false).await);
            }
            Err(_) => {
                let m = format!("no packet of block {id} for {idle:?}; giving up");
                return Err(fail(&done, writer, expect, Status::Error, m, false).await);
            }
        };
        let seqno = packet.seqno;
        if let Some(want) = next_seqno {
            if seqno != want {
                let m = format!(
                    "packet seqno {seqno} of block {id} out of order (expected {want}) on datanode {}",
                    node.addr
                );
                return Err(fail(&done, writer, seqno, Status::ErrorInvalid, m, false).await);
            }
        }
        next_seqno = Some(seqno.wrapping_add(1));
        let off = packet.offset_in_block;
        let continues = if packet.data.is_empty() {
            off == writer.length
        } else {
            off % bpc as u64 == 0 && writer.accepts_offset(off)
        };
        if !continues {
            let m = format!(
                "packet {seqno} of block {id} at offset {off} does not continue the {} bytes received on datanode {}",
                writer.length, node.addr
            );
            return Err(fail(&done, writer, seqno, Status::ErrorInvalid, m, false).await);
        }
        if packet.is_last() && !packet.data.is_empty() {
            let m = format!("last packet of block {id} carries data");
            return Err(fail(&done, writer, seqno, Status::ErrorInvalid, m, false).await);
        }
        metrics::counter!(names::PACKETS_RECEIVED).increment(1);
        if let Err(e) = packet.verify(&sums) {
            metrics::counter!(names::CHECKSUM_ERRORS).increment(1);
            let m = Error::ChecksumMismatch {
                block: id,
                offset: e.offset,
                node: node.addr.clone(),
            }
            .to_string();
            warn!("{m}");
            return Err(fail(&done, writer, seqno, Status::ErrorChecksum, m, true).await);
        }
        if let Some(tx) = down_tx.as_mut() {
            let fwd = Frame::Packet(packet.clone());
            if let Err(e) =
                send_within(&mut **tx, fwd, node.config.ack_timeout(), "downstream").await
            {
                // The responder finds the downstream gone when it waits
                // for this packet's ack and reports it by name.
                debug!("forwarding packet {seqno} of block {id}: {e}");
                down_tx = None;
            }
        }
        let last = packet.is_last();
        let sync = packet.wants_sync() && node.storage.fsync;
        if !packet.data.is_empty() || sync {
            let Packet {
                data, checksums, ..
            } = packet;
            let n = data.len() as u64;
            let r = tokio::task::spawn_blocking(move || {
                let mut r = Ok(());
                if !data.is_empty() {
                    r = writer.write_packet(off, &data, &checksums);
                }
                if r.is_ok() && sync {
                    r = writer.sync();
                }
                (writer, r)
            })
            .await?;
            writer = r.0;
            if let Err(e) = r.1 {
                let (status, delete) = match e {
                    Error::NoSpace { .. } => (Status::ErrorNoSpace, true),
                    _ => (Status::Error, false),
                };
                let m = match e {
                    Error::NoSpace { .. } => e.to_string(),
                    e => format!("writing block {id} on datanode {}: {e}", node.addr),
                };
                warn!("{m}");
                return Err(fail(&done, writer, seqno, status, m, delete).await);
            }
            metrics::counter!(names::BYTES_WRITTEN).increment(n);
        }
        if last && !finalize {
            // A transferred rbw copy: durable, left for the recovery.
            if node.storage.fsync {
                tokio::task::spawn_blocking(move || writer.sync()).await??;
            }
            let _ = done.send(Done::Ok { seqno, last: true }).await;
            return Ok(());
        }
        if last {
            let me = node.addr.clone();
            let length = writer.length;
            let r = tokio::task::spawn_blocking(move || writer.finalize(&me)).await?;
            let info = match r {
                Ok(info) => info,
                Err(e) => {
                    let m = format!("finalizing block {id} on datanode {}: {e}", node.addr);
                    warn!("{m}");
                    let _ = done
                        .send(Done::Fail {
                            seqno,
                            status: e.status(),
                            message: m.clone(),
                        })
                        .await;
                    return Err(Error::Pipeline(m));
                }
            };
            metrics::counter!(names::BLOCKS_WRITTEN).increment(1);
            info!(
                "finalized block {id} gs {} ({length} bytes) in {}",
                info.gen_stamp,
                node.storage.volumes[info.volume].root.display()
            );
            let waiters = node
                .reporter
                .block_received(info.extended(), node.fence.highest());
            crate::reporting::await_delivery(waiters, REPORT_WAIT).await;
            let _ = done.send(Done::Ok { seqno, last: true }).await;
            if let Some(mut tx) = down_tx {
                // Downstream's last ack still comes back on its receiver.
                let _ = tx.close().await;
            }
            return Ok(());
        }
        if done.send(Done::Ok { seqno, last: false }).await.is_err() {
            // The responder stopped: the pipeline failed elsewhere.
            return Err(Error::Pipeline(format!(
                "pipeline of block {id} failed; stopped receiving at packet {seqno}"
            )));
        }
    }
}

/// Lets go of a replica whose write failed: deletes it when asked, or when
/// this op created it and it holds no byte; else its rbw files stay for a
/// recovery.
async fn release(writer: ReplicaWriter, delete: bool) {
    if delete || writer.is_new_and_empty() {
        let _ = tokio::task::spawn_blocking(move || writer.delete()).await;
    }
}

/// Sends acks upstream in packet order, each combining this node's status
/// with the downstream ack of the same seqno.
async fn responder(
    mut done: mpsc::Receiver<Done>,
    mut up_tx: Box<dyn FrameSender>,
    mut down_rx: Option<Box<dyn FrameReceiver>>,
    down_name: String,
    ack_timeout: Duration,
) -> Result<()> {
    while let Some(d) = done.recv().await {
        match d {
            Done::Fail {
                seqno,
                status,
                message,
            } => {
                let ack = PipelineAck {
                    seqno,
                    replies: vec![status],
                    message: message.clone(),
                };
                let _ = up_tx.send(Frame::Ack(ack)).await;
                let _ = up_tx.close().await;
                return Err(Error::Pipeline(message));
            }
            Done::Ok { seqno, last } => {
                let mut ack = PipelineAck::success(seqno, 1);
                if let Some(rx) = down_rx.as_mut() {
                    let fail = |why: String| (Status::Error, why);
                    let got = match tokio::time::timeout(ack_timeout, rx.recv()).await {
                        Ok(Ok(Some(Frame::Ack(a)))) if a.seqno == seqno => Ok(a),
                        Ok(Ok(Some(Frame::Ack(a)))) => Err(fail(format!(
                            "datanode {down_name} acknowledged packet {} while {seqno} was due",
                            a.seqno
                        ))),
                        Ok(Ok(Some(f))) => Err(fail(format!(
                            "datanode {down_name} sent a {} instead of the ack of packet {seqno}",
                            super::frame_name(&f)
                        ))),
                        Ok(Ok(None)) => Err(fail(format!(
                            "datanode {down_name} closed the pipeline before acknowledging packet {seqno}"
                        ))),
                        Ok(Err(e)) => Err(fail(format!(
                            "datanode {down_name} failed before acknowledging packet {seqno}: {e}"
                        ))),
                        Err(_) => Err(fail(format!(
                            "datanode {down_name} did not acknowledge packet {seqno} within {ack_timeout:?}"
                        ))),
                    };
                    match got {
                        Ok(a) => {
                            ack.replies.extend(a.replies);
                            ack.message = a.message;
                        }
                        Err((status, why)) => {
                            ack.replies.push(status);
                            ack.message = why;
                        }
                    }
                }
                let ok = ack.is_success();
                let message = ack.message.clone();
                send_within(&mut *up_tx, Frame::Ack(ack), ack_timeout, "upstream")
                    .await
                    .map_err(|e| {
                        Error::Pipeline(format!("sending the ack of packet {seqno} upstream: {e}"))
                    })?;
                if !ok {
                    let _ = up_tx.close().await;
                    return Err(Error::Pipeline(format!(
                        "downstream failed at packet {seqno}: {message}"
                    )));
                }
                if last {
                    let _ = up_tx.close().await;
                    return Ok(());
                }
            }
        }
    }
    // The receive loop ended without a last packet (it already reported why).
    Ok(())
}
