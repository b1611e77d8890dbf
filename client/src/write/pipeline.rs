//! One attempt at a block's write pipeline: client → dn1 → dn2 → …
//!
//! [`BlockPipeline::open`] sends WRITE_BLOCK to the first datanode (the rest
//! of the targets ride along) and checks its `OpResponse`. Packets then go
//! out without waiting for their acks, at most `max_packets_in_flight`
//! unacknowledged (a semaphore is the window). A separate ack reader task
//! takes, in seqno order, the seqno of every packet sent and waits (time-
//! limited, see [`pipeline_timeout`]) for its `PipelineAck`; each success
//! reopens one slot of the window and is published as the highest
//! acknowledged seqno. Any failure (non-success reply, wrong seqno,
//! timeout, closed connection) ends the reader with a [`Failure`] naming
//! the failed datanode's position and closes the window, so the sender
//! stops at its next packet. Recovering from it is the caller's job
//! ([`super::block`]).

use std::sync::Arc;
use std::time::Duration;

use rfs_proto::common::{DatanodeInfo, ExtendedBlock};
use rfs_proto::transfer::{
    pipeline_timeout, Frame, Op, Packet, PipelineAck, Status as TransferStatus, WriteBlockOp,
    WriteStage,
};
use rfs_transport::{FrameReceiver, FrameSender};
use tokio::sync::{mpsc, watch, Semaphore};
use tokio::task::JoinHandle;
use tokio::time::timeout;

use crate::client::Client;
use crate::datanode::{data_addr, describe};
use crate::error::{chain, Error};

/// How long a failed send waits for the ack reader's (better) explanation.
const ACK_ERROR_GRACE: Duration = Duration::from_secs(2);

/// Why a pipeline attempt failed, and which of its datanodes is to blame
/// (`None`: none can be singled out).
#[derive(Debug)]
pub(crate) struct Failure {
    pub node: Option<usize>,
    pub error: Error,
}

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
    fn at(&self, index: usize, reason: impl Into<String>) -> Failure {
        let datanode = self
            .nodes
            .get(index)
            .map(describe)
            .unwrap_or_else(|| format!("#{index} of the pipeline"));
        Failure {
            node: (index < self.nodes.len()).then_some(index),
            error: Error::Pipeline {
                path: self.path.clone(),
                block: self.block,
                datanode,
                reason: reason.into(),
            },
        }
    }

    /// The node a datanode named as its first bad link (by id or address).
    fn link(&self, link: &str, reason: String) -> Failure {
        match self
            .nodes
            .iter()
            .position(|n| n.datanode_id == link || format!("{}:{}", n.ip, n.data_port) == link)
        {
            Some(i) => self.at(i, reason),
            None => Failure {
                node: None,
                error: Error::Pipeline {
                    path: self.path.clone(),
                    block: self.block,
                    datanode: link.to_string(),
                    reason,
                },
            },
        }
    }
}

/// What a pipeline is opened for.
pub(crate) struct Setup {
    pub block: ExtendedBlock,
    pub nodes: Vec<DatanodeInfo>,
    pub stage: WriteStage,
    /// RECOVER: the bytes every node keeps.
    pub recover_length: u64,
}

pub(crate) struct BlockPipeline {
    blame: Blame,
    sender: Box<dyn FrameSender>,
    window: Arc<Semaphore>,
    sent: Option<mpsc::Sender<Sent>>,
    acks: Option<JoinHandle<Result<(), Failure>>>,
    acked: watch::Receiver<Option<u64>>,
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
    /// Connects to the first datanode of `setup.nodes` and sets up the
    /// pipeline, all within the client's pipeline wait.
    pub(crate) async fn open(
        client: &Client,
        path: &str,
        setup: Setup,
    ) -> Result<BlockPipeline, Failure> {
        let cfg = client.config();
        let t = pipeline_timeout(cfg.datanode_timeout, setup.nodes.len());
        let blame = Blame {
            path: path.to_string(),
            block: setup.block.block_id,
            nodes: setup.nodes.clone(),
        };
        let Some(first) = setup.nodes.first() else {
            return Err(Failure {
                node: None,
                error: Error::Pipeline {
                    path: path.to_string(),
                    block: setup.block.block_id,
                    datanode: "(none)".into(),
                    reason: "no datanode is left for the block".into(),
                },
            });
        };
        let addr = data_addr(first).await.map_err(|r| blame.at(0, r))?;
        let op = Op::WriteBlock(WriteBlockOp {
            block: Some(setup.block),
            targets: setup.nodes[1..].to_vec(),
            client_id: client.client_id().to_string(),
            bytes_per_checksum: cfg.bytes_per_checksum,
            source_datanode: String::new(),
            stage: setup.stage as i32,
            recover_length: setup.recover_length,
        });
        let connected = async {
            let conn = client
                .inner
                .transport
                .connect(addr)
                .await
                .map_err(|e| blame.at(0, chain(&e)))?;
            let (mut sender, mut receiver) = conn.split();
            sender
                .send(Frame::Op(op))
                .await
                .map_err(|e| blame.at(0, format!("sending WRITE_BLOCK: {}", chain(&e))))?;
            let resp = match receiver.recv().await {
                Err(e) => return Err(blame.at(0, chain(&e))),
                Ok(None) => return Err(blame.at(0, "connection closed before the op response")),
                Ok(Some(Frame::Response(r))) => r,
                Ok(Some(other)) => {
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
                    blame.link(&resp.first_bad_link, reason)
                });
            }
            Ok((sender, receiver))
        };
        let (sender, receiver) = match timeout(t, connected).await {
            Ok(r) => r?,
            Err(_) => return Err(blame.at(0, format!("pipeline set-up took over {t:?}"))),
        };
        let inflight = cfg.max_packets_in_flight;
        let window = Arc::new(Semaphore::new(inflight));
        let (sent_tx, sent_rx) = mpsc::channel(inflight + 1);
        let (acked_tx, acked) = watch::channel(None);
        let acks = tokio::spawn(read_acks(
            receiver,
            sent_rx,
            window.clone(),
            acked_tx,
            blame.clone(),
            t,
        ));
        Ok(BlockPipeline {
            blame,
            sender,
            window,
            sent: Some(sent_tx),
            acks: Some(acks),
            acked,
            timeout: t,
        })
    }

    /// The highest seqno every node acknowledged.
    pub(crate) fn acked(&self) -> Option<u64> {
        *self.acked.borrow()
    }

    /// Sends one packet once the window has room.
    pub(crate) async fn push(&mut self, packet: Packet) -> Result<(), Failure> {
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
        let (seqno, last) = (packet.seqno, packet.is_last());
        let told = match &self.sent {
            Some(tx) => tx.send(Sent { seqno, last }).await.is_ok(),
            None => false,
        };
        if !told {
            return Err(self.ack_failure().await);
        }
        if last {
            self.sent = None;
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
                if let Ok(Err(f)) = res {
                    return Err(f);
                }
            }
        }
        Err(self.blame.at(0, reason))
    }

    /// Waits until every node acknowledged `seqno`.
    pub(crate) async fn wait_acked(&mut self, seqno: u64) -> Result<(), Failure> {
        let reached = self
            .acked
            .wait_for(|a| a.is_some_and(|a| a >= seqno))
            .await
            .is_ok();
        if reached {
            return Ok(());
        }
        // The reader ended (its sender dropped) without reaching it.
        Err(self.ack_failure().await)
    }

    /// Closes the connection after the last packet's ack.
    pub(crate) async fn close(mut self) {
        let _ = timeout(self.timeout, self.sender.close()).await;
    }

    /// The ack reader's error after it stopped.
    async fn ack_failure(&mut self) -> Failure {
        if let Some(h) = self.acks.take() {
            match timeout(self.timeout, h).await {
                Ok(Ok(Err(f))) => return f,
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
    acked: watch::Sender<Option<u64>>,
    blame: Blame,
    t: Duration,
) -> Result<(), Failure> {
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
            acked.send_replace(Some(seqno));
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

fn check_ack(ack: &PipelineAck, seqno: u64, blame: &Blame) -> Result<(), Failure> {
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
