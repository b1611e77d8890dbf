//! One block's write pipeline: client → dn1 → dn2 → …
//!
//! [`BlockPipeline::open`] sends WRITE_BLOCK to the first datanode (the rest
//! of the targets ride along) and checks its `OpResponse`. Packets then go
//! out without waiting for their acks, at most `max_packets_in_flight`
//! unacknowledged (a semaphore is the window). A separate ack reader task
//! takes, in seqno order, the seqno of every packet sent and waits (time-
//! limited) for its `PipelineAck`; each success reopens one slot of the
//! window. Any failure (non-success reply, wrong seqno, timeout, closed
//! connection) ends the reader with an error naming the failed datanode and
//! closes the window, so the sender stops at its next packet and reports
//! that error. Pipeline recovery (replacing the failed node) is not done
//! here: the write fails.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use rfs_proto::common::{DatanodeInfo, ExtendedBlock, LocatedBlock};
use rfs_proto::transfer::{
    Checksums, Frame, Op, Packet, PipelineAck, Status as TransferStatus, WriteBlockOp,
};
use rfs_transport::{FrameReceiver, FrameSender};
use tokio::sync::{mpsc, Semaphore};
use tokio::task::JoinHandle;
use tokio::time::timeout;

use crate::client::Client;
use crate::datanode::{data_addr, describe};
use crate::error::{chain, Error, Result};

/// How long a failed send waits for the ack reader's (better) explanation.
const ACK_ERROR_GRACE: Duration = Duration::from_secs(2);

/// A packet handed to the ack reader: it waits for this seqno's ack next.
struct Sent {
    seqno: u64,
    last: bool,
}

/// Names pipeline failures for one block.
#[derive(Clone)]
struct Blame {
    path: String,
    block: u64,
    nodes: Vec<DatanodeInfo>,
}

impl Blame {
    fn at(&self, index: usize, reason: impl Into<String>) -> Error {
        let datanode = self
            .nodes
            .get(index)
            .map(describe)
            .unwrap_or_else(|| format!("#{index} of the pipeline"));
        Error::Pipeline {
            path: self.path.clone(),
            block: self.block,
            datanode,
            reason: reason.into(),
        }
    }

    fn named(&self, datanode: String, reason: impl Into<String>) -> Error {
        Error::Pipeline {
            path: self.path.clone(),
            block: self.block,
            datanode,
            reason: reason.into(),
        }
    }
}

pub(crate) struct BlockPipeline {
    blame: Blame,
    block: ExtendedBlock,
    sender: Box<dyn FrameSender>,
    sums: Checksums,
    next_seqno: u64,
    offset: u64,
    window: Arc<Semaphore>,
    sent: Option<mpsc::Sender<Sent>>,
    acks: Option<JoinHandle<Result<()>>>,
    timeout: Duration,
}

impl Drop for BlockPipeline {
    fn drop(&mut self) {
        if let Some(h) = self.acks.take() {
            h.abort();
        }
    }
}

impl BlockPipeline {
    /// Connects to the first datanode of `located` and sets up the pipeline.
    pub(crate) async fn open(
        client: &Client,
        path: &str,
        located: LocatedBlock,
    ) -> Result<BlockPipeline> {
        let cfg = client.config();
        let t = cfg.datanode_timeout;
        let block = located.block.ok_or_else(|| {
            Error::Protocol(format!(
                "{path}: the namenode allocated a block without an id"
            ))
        })?;
        let blame = Blame {
            path: path.to_string(),
            block: block.block_id,
            nodes: located.locations.clone(),
        };
        let Some(first) = located.locations.first() else {
            return Err(blame.named(
                "(none)".into(),
                "the namenode chose no datanodes for the block",
            ));
        };
        let addr = data_addr(first).await.map_err(|r| blame.at(0, r))?;
        let conn = match timeout(t, client.inner.transport.connect(addr)).await {
            Err(_) => return Err(blame.at(0, format!("no connection within {t:?}"))),
            Ok(Err(e)) => return Err(blame.at(0, chain(&e))),
            Ok(Ok(c)) => c,
        };
        let (mut sender, mut receiver) = conn.split();
        let op = Op::WriteBlock(WriteBlockOp {
            block: Some(block),
            targets: located.locations[1..].to_vec(),
            client_id: client.client_id().to_string(),
            bytes_per_checksum: cfg.bytes_per_checksum,
            source_datanode: String::new(),
            ..Default::default()
        });
        match timeout(t, sender.send(Frame::Op(op))).await {
            Err(_) => return Err(blame.at(0, format!("sending WRITE_BLOCK timed out after {t:?}"))),
            Ok(Err(e)) => return Err(blame.at(0, format!("sending WRITE_BLOCK: {}", chain(&e)))),
            Ok(Ok(())) => {}
        }
        let resp = match timeout(t, receiver.recv()).await {
            Err(_) => return Err(blame.at(0, format!("no answer to WRITE_BLOCK within {t:?}"))),
            Ok(Err(e)) => return Err(blame.at(0, chain(&e))),
            Ok(Ok(None)) => return Err(blame.at(0, "connection closed before the op response")),
            Ok(Ok(Some(Frame::Response(r)))) => r,
            Ok(Ok(Some(other))) => {
                return Err(blame.at(
                    0,
                    format!("expected an op response, got {}", frame_name(&other)),
                ))
            }
        };
        if resp.status() != TransferStatus::Success {
            let reason = status_reason(resp.status(), &resp.message);
            return Err(if resp.first_bad_link.is_empty() {
                blame.at(0, reason)
            } else {
                let bad = blame
                    .nodes
                    .iter()
                    .find(|n| {
                        n.datanode_id == resp.first_bad_link
                            || format!("{}:{}", n.ip, n.data_port) == resp.first_bad_link
                    })
                    .map(describe)
                    .unwrap_or_else(|| resp.first_bad_link.clone());
                blame.named(bad, reason)
            });
        }

        let inflight = cfg.max_packets_in_flight;
        let window = Arc::new(Semaphore::new(inflight));
        let (sent_tx, sent_rx) = mpsc::channel(inflight + 1);
        let acks = tokio::spawn(read_acks(
            receiver,
            sent_rx,
            window.clone(),
            blame.clone(),
            t,
        ));
        Ok(BlockPipeline {
            blame,
            block,
            sender,
            sums: Checksums::new(cfg.bytes_per_checksum),
            next_seqno: 0,
            offset: 0,
            window,
            sent: Some(sent_tx),
            acks: Some(acks),
            timeout: t,
        })
    }

    /// Bytes of the block sent so far.
    pub(crate) fn offset(&self) -> u64 {
        self.offset
    }

    /// Sends one packet of `data` (which starts on a chunk boundary).
    pub(crate) async fn send(&mut self, data: Bytes) -> Result<()> {
        let len = data.len() as u64;
        let packet = Packet::new(self.next_seqno, self.offset, data, &self.sums);
        self.push(packet, false).await?;
        self.offset += len;
        Ok(())
    }

    /// Sends the last (empty) packet, waits for every ack, and returns the
    /// block with its final length.
    pub(crate) async fn finish(mut self) -> Result<ExtendedBlock> {
        self.push(Packet::last(self.next_seqno, self.offset), true)
            .await?;
        self.sent = None;
        let acks = self.acks.take();
        if let Some(h) = acks {
            match h.await {
                Ok(r) => r?,
                Err(e) => {
                    return Err(self.blame.at(0, format!("the ack reader stopped: {e}")));
                }
            }
        }
        let _ = timeout(self.timeout, self.sender.close()).await;
        Ok(ExtendedBlock {
            num_bytes: self.offset,
            ..self.block
        })
    }

    async fn push(&mut self, packet: Packet, last: bool) -> Result<()> {
        let open = match self.window.acquire().await {
            Ok(permit) => {
                permit.forget();
                true
            }
            Err(_) => false,
        };
        if !open {
            return Err(self.ack_failure().await);
        }
        let seqno = packet.seqno;
        self.next_seqno += 1;
        let told = match &self.sent {
            Some(tx) => tx.send(Sent { seqno, last }).await.is_ok(),
            None => false,
        };
        if !told {
            return Err(self.ack_failure().await);
        }
        let t = self.timeout;
        let reason = match timeout(t, self.sender.send(Frame::Packet(packet))).await {
            Ok(Ok(())) => return Ok(()),
            Ok(Err(e)) => format!("sending packet {seqno} failed: {}", chain(&e)),
            Err(_) => format!("sending packet {seqno} timed out after {t:?}"),
        };
        // The ack reader usually knows better (e.g. a downstream node's
        // error status arrives just before the connection closes).
        if let Some(h) = self.acks.as_mut() {
            if let Ok(res) = timeout(ACK_ERROR_GRACE, h).await {
                self.acks = None;
                if let Ok(Err(e)) = res {
                    return Err(e);
                }
            }
        }
        Err(self.blame.at(0, reason))
    }

    /// The ack reader's error after it closed the window.
    async fn ack_failure(&mut self) -> Error {
        if let Some(h) = self.acks.take() {
            match timeout(self.timeout, h).await {
                Ok(Ok(Err(e))) => return e,
                Ok(Ok(Ok(()))) => {
                    return self
                        .blame
                        .at(0, "the pipeline finished before all packets were sent")
                }
                Ok(Err(e)) => return self.blame.at(0, format!("the ack reader stopped: {e}")),
                Err(_) => {}
            }
        }
        self.blame.at(0, "the ack reader stopped")
    }
}

/// Matches acks to sent packets in seqno order; see the module docs.
async fn read_acks(
    mut rx: Box<dyn FrameReceiver>,
    mut sent: mpsc::Receiver<Sent>,
    window: Arc<Semaphore>,
    blame: Blame,
    t: Duration,
) -> Result<()> {
    let res = async {
        while let Some(Sent { seqno, last }) = sent.recv().await {
            let ack = match timeout(t, rx.recv()).await {
                Err(_) => {
                    return Err(blame.at(0, format!("no ack for packet {seqno} within {t:?}")))
                }
                Ok(Err(e)) => {
                    return Err(blame.at(0, format!("reading acks failed: {}", chain(&e))))
                }
                Ok(Ok(None)) => {
                    return Err(blame.at(
                        0,
                        format!("connection closed before packet {seqno} was acknowledged"),
                    ))
                }
                Ok(Ok(Some(Frame::Ack(a)))) => a,
                Ok(Ok(Some(other))) => {
                    return Err(blame.at(0, format!("expected an ack, got {}", frame_name(&other))))
                }
            };
            check_ack(&ack, seqno, &blame)?;
            window.add_permits(1);
            if last {
                return Ok(());
            }
        }
        Ok(())
    }
    .await;
    if res.is_err() {
        window.close();
    }
    res
}

fn check_ack(ack: &PipelineAck, seqno: u64, blame: &Blame) -> Result<()> {
    if ack.seqno != seqno {
        return Err(blame.at(
            0,
            format!(
                "ack for packet {} arrived while waiting for packet {seqno}",
                ack.seqno
            ),
        ));
    }
    if let Some(i) = ack.first_failed() {
        return Err(blame.at(i, status_reason(ack.replies[i], &ack.message)));
    }
    if ack.replies.len() < blame.nodes.len() {
        let i = ack.replies.len();
        return Err(blame.at(
            i,
            format!("no reply in the ack for packet {seqno} (node lost from the pipeline)"),
        ));
    }
    Ok(())
}

fn status_reason(status: TransferStatus, message: &str) -> String {
    if message.is_empty() {
        status.as_str_name().to_lowercase()
    } else {
        message.to_string()
    }
}

pub(crate) fn frame_name(f: &Frame) -> &'static str {
    match f {
        Frame::Op(op) => op.name(),
        Frame::Response(_) => "an op response",
        Frame::Packet(_) => "a packet",
        Frame::Ack(_) => "an ack",
    }
}
