//! Raft messages between members over tonic (`rfs.ha.RaftPeer`).
//!
//! Each peer has one sending task and a bounded queue: the task takes
//! everything queued while the previous RPC was in flight and sends it as
//! one batch, so a busy leader sends few, large RPCs. Raft tolerates lost
//! messages, so a full queue drops (and reports the peer unreachable)
//! instead of stalling the raft loop. The receiving side decodes and hands
//! messages to the raft loop without waiting for it. Every batch also says
//! whether the sender's name dir is below its reserve
//! (`name_dir_space.rs`).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::mpsc::Sender as InboxSender;
use std::sync::Arc;
use std::time::Duration;

use protobuf::Message as _;
use raft::prelude::{Message, MessageType};
use rfs_proto::ha::raft_peer_client::RaftPeerClient;
use rfs_proto::ha::raft_peer_server::RaftPeer;
use rfs_proto::ha::{RaftBatch, RaftBatchAck};
use tokio::sync::mpsc;
use tonic::transport::Endpoint;
use tonic::{Request, Response, Status};

use super::name_dir_space::NameDirSpace;
use super::node::Inbox;
use crate::config::Member;

/// Messages queued per peer before new ones are dropped.
const QUEUE: usize = 8192;
/// Most messages in one RPC.
const MAX_BATCH: usize = 1024;
const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);
/// A batch without a snapshot is small: if it takes longer the peer is
/// unreachable (raft retransmits), and the next batch must not queue
/// behind a dead connection for long.
const SEND_TIMEOUT: Duration = Duration::from_secs(1);
/// A snapshot can be large.
const SNAPSHOT_TIMEOUT: Duration = Duration::from_secs(60);
/// HTTP/2 pings find a connection that died silently (a cut link) within
/// about two seconds, so a healed member is reached again promptly.
const KEEPALIVE: Duration = Duration::from_secs(1);

/// The other members, by raft id.
pub struct Peers {
    me: u64,
    members: Vec<Member>,
    queues: HashMap<u64, mpsc::Sender<Message>>,
}

impl Peers {
    /// Starts one sending task per other member on `rt`.
    pub fn start(
        me: u64,
        members: Vec<Member>,
        rt: &tokio::runtime::Handle,
        inbox: InboxSender<Inbox>,
        max_message: usize,
        space: &Arc<NameDirSpace>,
    ) -> Peers {
        let mut queues = HashMap::new();
        for (i, m) in members.iter().enumerate() {
            let id = i as u64 + 1;
            if id == me {
                continue;
            }
            let (tx, rx) = mpsc::channel(QUEUE);
            queues.insert(id, tx);
            rt.spawn(send_loop(
                me,
                id,
                m.rpc_addr.to_string(),
                rx,
                inbox.clone(),
                max_message,
                space.clone(),
            ));
        }
        Peers {
            me,
            members,
            queues,
        }
    }

    pub fn send(&self, msgs: Vec<Message>) {
        for m in msgs {
            let to = m.to;
            match self.queues.get(&to) {
                Some(q) => {
                    if q.try_send(m).is_err() {
                        metrics::counter!("rfs_namenode_raft_messages_dropped_total").increment(1);
                    }
                }
                None if to == self.me => {}
                None => tracing::warn!("raft message for unknown member {to} dropped"),
            }
        }
    }

    /// The RPC address of member `id` (0: none).
    pub fn addr_of(&self, id: u64) -> Option<String> {
        self.member(id).map(|m| m.rpc_addr.to_string())
    }

    /// The configured name of member `id`, for logs.
    pub fn name_of(&self, id: u64) -> String {
        self.member(id)
            .map_or_else(|| "none".to_string(), |m| m.id.clone())
    }

    fn member(&self, id: u64) -> Option<&Member> {
        id.checked_sub(1).and_then(|i| self.members.get(i as usize))
    }
}

async fn send_loop(
    me: u64,
    to: u64,
    addr: String,
    mut rx: mpsc::Receiver<Message>,
    inbox: InboxSender<Inbox>,
    max_message: usize,
    space: Arc<NameDirSpace>,
) {
    let channel = match Endpoint::from_shared(format!("http://{addr}")) {
        Ok(e) => e
            .connect_timeout(CONNECT_TIMEOUT)
            .tcp_nodelay(true)
            .http2_keep_alive_interval(KEEPALIVE)
            .keep_alive_timeout(KEEPALIVE)
            .keep_alive_while_idle(true)
            .connect_lazy(),
        Err(e) => {
            tracing::error!("member {to} has an unusable address {addr}: {e}");
            return;
        }
    };
    let mut client = RaftPeerClient::new(channel)
        .max_decoding_message_size(max_message)
        .max_encoding_message_size(max_message);
    let mut reachable = true;
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(m) => batch.push(m),
                Err(_) => break,
            }
        }
        let snapshots = batch
            .iter()
            .filter(|m| m.get_msg_type() == MessageType::MsgSnapshot)
            .count();
        let messages = batch
            .iter()
            .map(|m| m.write_to_bytes().expect("raft messages always encode"))
            .collect();
        let limit = if snapshots > 0 {
            SNAPSHOT_TIMEOUT
        } else {
            SEND_TIMEOUT
        };
        let request = client.send(RaftBatch {
            from: me,
            messages,
            low_on_disk: space.low(),
        });
        let sent = match tokio::time::timeout(limit, request).await {
            Ok(sent) => sent,
            Err(_) => Err(Status::deadline_exceeded(format!(
                "no answer within {limit:?}"
            ))),
        };
        match &sent {
            Ok(_) if !reachable => {
                tracing::info!("member {to} at {addr} is reachable again");
                reachable = true;
            }
            Ok(_) => {}
            Err(e) => {
                if reachable {
                    tracing::warn!("member {to} at {addr} unreachable: {}", e.message());
                    reachable = false;
                }
                let _ = inbox.send(Inbox::Unreachable(to));
            }
        }
        for _ in 0..snapshots {
            let _ = inbox.send(Inbox::SnapshotSent {
                to,
                ok: sent.is_ok(),
            });
        }
    }
}

/// The receiving side of [`Peers`].
pub struct PeerService {
    pub inbox: InboxSender<Inbox>,
    pub members: usize,
    /// Where what each sender says of its name dir is kept.
    pub space: Arc<NameDirSpace>,
}

impl PeerService {
    /// A service that refuses everything (a placeholder once the real one
    /// is handed to the server).
    pub fn closed() -> PeerService {
        PeerService {
            inbox: std::sync::mpsc::channel().0,
            members: 0,
            space: Arc::new(NameDirSpace::new(PathBuf::new(), 0, 0)),
        }
    }
}

#[tonic::async_trait]
impl RaftPeer for PeerService {
    async fn send(&self, req: Request<RaftBatch>) -> Result<Response<RaftBatchAck>, Status> {
        let batch = req.into_inner();
        if batch.from == 0 || batch.from as usize > self.members {
            return Err(Status::permission_denied(format!(
                "raft batch from {} which is not a member of this group",
                batch.from
            )));
        }
        self.space.set_peer_low(batch.from, batch.low_on_disk);
        let inbox = &self.inbox;
        for bytes in batch.messages {
            let m = Message::parse_from_bytes(&bytes)
                .map_err(|e| Status::invalid_argument(format!("bad raft message: {e}")))?;
            if m.from != batch.from {
                return Err(Status::invalid_argument("raft message sender mismatch"));
            }
            if inbox.send(Inbox::Peer(Box::new(m))).is_err() {
                return Err(Status::unavailable("this namenode is shutting down"));
            }
        }
        Ok(Response::new(RaftBatchAck {}))
    }
}
