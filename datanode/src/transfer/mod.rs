//! The data-transfer server: accepts connections through the
//! `BlockTransport`, reads the op header and hands the connection to the op.
//! One op per connection. A bad first frame gets an `OpResponse` with
//! `ERROR_INVALID` naming the problem and the connection is closed; a
//! connection's failure (even a panic) never stops the server. A
//! connection that sends no op header in time, or is the oldest of too
//! many waiting to send one, is closed (see `admission`).

mod admission;
pub mod copy_block;
mod read_block;
pub mod recover_block;
mod write_pipeline;

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use rfs_proto::common::{DatanodeInfo, ExtendedBlock};
use rfs_proto::datanode::RecoveryKind;
use rfs_proto::transfer::{Frame, Op, OpResponse, Status};
use rfs_transport::{BlockListener, Connection, FrameReceiver, FrameSender};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tracing::{debug, info, warn};

use crate::error::{Error, Result};
use crate::http::names;
use crate::Node;
use admission::PendingHeaders;

/// Most nodes a WRITE_BLOCK / COPY_BLOCK may name downstream.
pub const MAX_TARGETS: usize = 16;
/// How long in-flight transfers may run after shutdown starts.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

pub async fn serve(
    node: Arc<Node>,
    mut listener: Box<dyn BlockListener>,
    mut shutdown: watch::Receiver<bool>,
) {
    let limit = Arc::new(Semaphore::new(node.config.max_connections));
    let pending = PendingHeaders::new(node.config.max_pending_headers);
    let mut tasks = JoinSet::new();
    loop {
        while let Some(r) = tasks.try_join_next() {
            if let Err(e) = r {
                warn!("data-transfer connection task failed: {e}");
            }
        }
        let permit = tokio::select! {
            p = limit.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
            _ = shutdown.changed() => break,
        };
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = shutdown.changed() => break,
        };
        match accepted {
            Ok(conn) => {
                tasks.spawn(handle(node.clone(), conn, permit, pending.clone()));
            }
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                warn!("accepting a data-transfer connection: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    drop(listener);
    info!(
        "data transfer stopped accepting; {} connections in flight",
        tasks.len()
    );
    let drained = tokio::time::timeout(SHUTDOWN_GRACE, async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        warn!(
            "aborting {} transfers still running after {SHUTDOWN_GRACE:?}",
            tasks.len()
        );
        tasks.abort_all();
        while tasks.join_next().await.is_some() {}
    }
}

struct XceiverGuard<'a>(&'a Node);

impl Drop for XceiverGuard<'_> {
    fn drop(&mut self) {
        self.0.xceivers.fetch_sub(1, Ordering::Relaxed);
    }
}

async fn handle(
    node: Arc<Node>,
    conn: Connection,
    _permit: OwnedSemaphorePermit,
    pending: Arc<PendingHeaders>,
) {
    node.xceivers.fetch_add(1, Ordering::Relaxed);
    let _guard = XceiverGuard(&node);
    let peer = conn.peer;
    let (tx, mut rx) = conn.split();
    let (ticket, evicted) = pending.enter();
    let limit = node.config.op_header_timeout();
    let first = tokio::select! {
        r = tokio::time::timeout(limit, rx.recv()) => r,
        _ = evicted => {
            debug!(
                "{peer}: closed to make room: {} connections wait for their op header",
                node.config.max_pending_headers
            );
            metrics::counter!(names::HEADERLESS_CLOSED, "reason" => "evicted").increment(1);
            return;
        }
    };
    drop(ticket);
    let first = match first {
        Err(_) => {
            debug!("{peer}: no op header within {limit:?}; closing");
            metrics::counter!(names::HEADERLESS_CLOSED, "reason" => "timeout").increment(1);
            return;
        }
        Ok(Ok(None)) => return,
        Ok(Ok(Some(f))) => f,
        Ok(Err(e)) => {
            debug!("{peer}: bad first frame: {e}");
            reject(tx, rx, Status::ErrorInvalid, format!("bad frame: {e}")).await;
            return;
        }
    };
    let op = match first {
        Frame::Op(op) => op,
        other => {
            let what = frame_name(&other);
            reject(
                tx,
                rx,
                Status::ErrorInvalid,
                format!("expected an op header as the first frame, got a {what}"),
            )
            .await;
            return;
        }
    };
    let name = op.name();
    metrics::counter!(names::OPS, "op" => name).increment(1);
    let result = match op {
        Op::WriteBlock(op) => write_pipeline::write_block(&node, op, tx, rx).await,
        Op::ReadBlock(op) => read_block::read_block(&node, op, tx, rx).await,
        Op::CopyBlock(op) => copy_block::copy_block(&node, op, tx, rx).await,
        Op::RecoverReplica(op) => recover_block::recover_replica(&node, op, tx, rx).await,
    };
    if let Err(e) = result {
        metrics::counter!(names::OP_ERRORS, "op" => name).increment(1);
        info!("{name} from {peer}: {e}");
    }
}

pub fn frame_name(f: &Frame) -> &'static str {
    match f {
        Frame::Op(op) => op.name(),
        Frame::Response(_) => "op response",
        Frame::Packet(_) => "packet",
        Frame::Ack(_) => "ack",
    }
}

pub fn error_response(status: Status, message: String) -> OpResponse {
    OpResponse {
        status: status as i32,
        message,
        ..Default::default()
    }
}

/// Answers an op with an error and closes the connection, giving the peer a
/// moment to read the answer before the socket goes away.
pub async fn reject(
    mut tx: Box<dyn FrameSender>,
    mut rx: Box<dyn FrameReceiver>,
    status: Status,
    message: String,
) {
    let _ = send_response(&mut *tx, error_response(status, message)).await;
    let _ = tx.close().await;
    // Drain what the peer still sends (bounded) so closing does not reset
    // the connection under our answer.
    let _ = tokio::time::timeout(Duration::from_millis(500), async {
        for _ in 0..64 {
            match rx.recv().await {
                Ok(Some(_)) => continue,
                _ => break,
            }
        }
    })
    .await;
}

/// Sends one frame, giving up when the peer takes none for `limit` (a
/// peer that stops reading must not pin a connection forever).
pub async fn send_within(
    tx: &mut dyn FrameSender,
    frame: Frame,
    limit: Duration,
    peer: &str,
) -> Result<()> {
    match tokio::time::timeout(limit, tx.send(frame)).await {
        Ok(r) => Ok(r?),
        Err(_) => Err(stalled(peer, limit)),
    }
}

/// The error for a peer that took no data for `limit`.
pub fn stalled(peer: &str, limit: Duration) -> Error {
    Error::Timeout(format!("{peer} took no data for {limit:?}"))
}

/// Asks the leader whether this node may cut its replica of `block` to
/// its generation stamp and `num_bytes` (see `recovery_check.rs`).
pub async fn confirm_recovery(node: &Node, block: ExtendedBlock, kind: RecoveryKind) -> Result<()> {
    node.recovery_check
        .confirm(block, kind, &node.storage.datanode_id)
        .await
}

pub async fn send_response(tx: &mut dyn FrameSender, resp: OpResponse) -> Result<()> {
    tx.send(Frame::Response(resp)).await?;
    Ok(())
}

/// Resolves a pipeline target's data address.
pub async fn target_addr(t: &DatanodeInfo) -> Result<SocketAddr> {
    let port = u16::try_from(t.data_port)
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| Error::Invalid(format!("target {} has data port {}", t.ip, t.data_port)))?;
    if let Ok(ip) = t.ip.parse::<std::net::IpAddr>() {
        return Ok(SocketAddr::new(ip, port));
    }
    let host = if t.ip.is_empty() { &t.hostname } else { &t.ip };
    if host.is_empty() {
        return Err(Error::Invalid(format!(
            "target {} has no address",
            t.datanode_id
        )));
    }
    tokio::net::lookup_host((host.as_str(), port))
        .await?
        .next()
        .ok_or_else(|| Error::Invalid(format!("cannot resolve target {host}")))
}

/// `ip:port` of a target, as messages and `first_bad_link` name it.
pub fn target_name(t: &DatanodeInfo) -> String {
    format!("{}:{}", t.ip, t.data_port)
}
