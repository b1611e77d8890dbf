//! Raft messages between members over tonic (`rfs.ha.RaftPeer`).
//!
//! Each peer gets one long-lived gRPC stream (`Stream`): the raft loop
//! hands each Ready's messages for that peer to the stream's queue as one
//! batch, encoded on the spot, and the connection task writes it as one
//! frame. No batch waits for an answer to the one before, and none pays
//! for a request of its own (HTTP/2 headers, a response and trailers), which
//! a unary RPC per batch did. Raft tolerates lost messages, so a full queue
//! or a stream that is still (re)connecting drops the batch and reports the
//! peer unreachable instead of stalling the raft loop. Snapshots are large
//! and their sender must learn whether they arrived, so they go one at a
//! time on a task of their own, each as one `InstallSnapshot` stream of
//! 1 MiB pieces (`snapshot_chunks.rs`). Every batch also says
//! whether the sender's name dir is below its reserve (`name_dir_space.rs`).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::mpsc::Sender as InboxSender;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use protobuf::Message as _;
use raft::prelude::{Message, MessageType};
use rfs_proto::ha::raft_peer_client::RaftPeerClient;
use rfs_proto::ha::raft_peer_server::RaftPeer;
use rfs_proto::ha::{RaftBatch, RaftBatchAck, SnapshotChunk};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Channel, Endpoint};
use tonic::{Request, Response, Status, Streaming};

use super::name_dir_space::NameDirSpace;
use super::node::Inbox;
use super::snapshot_chunks::{self, Assembler};
use crate::config::Member;

/// Batches queued on a peer's stream before new ones are dropped.
const STREAM_QUEUE: usize = 256;
/// Snapshots queued per peer (raft sends one at a time).
const SNAPSHOT_QUEUE: usize = 4;
const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);
/// A peer that has not taken a new stream by then is unreachable.
const OPEN_TIMEOUT: Duration = Duration::from_secs(1);
/// Pause before a broken stream is opened again.
const REOPEN_DELAY: Duration = Duration::from_millis(100);
/// A snapshot can be large.
const SNAPSHOT_TIMEOUT: Duration = Duration::from_secs(60);
/// HTTP/2 pings find a connection that died silently (a cut link) within
/// about two seconds, so a healed member is reached again promptly.
const KEEPALIVE: Duration = Duration::from_secs(1);

/// The other members, by raft id.
pub struct Peers {
    me: u64,
    members: Vec<Member>,
    links: HashMap<u64, Link>,
    inbox: InboxSender<Inbox>,
    space: Arc<NameDirSpace>,
}

/// The way to one peer.
struct Link {
    /// The open stream's queue; `None` while it is being (re)opened.
    stream: Arc<Mutex<Option<mpsc::Sender<RaftBatch>>>>,
    snapshots: mpsc::Sender<Message>,
}

impl Peers {
    /// Starts each other member's stream and snapshot tasks on `rt`.
    pub fn start(
        me: u64,
        members: Vec<Member>,
        rt: &tokio::runtime::Handle,
        inbox: InboxSender<Inbox>,
        max_message: usize,
        space: &Arc<NameDirSpace>,
    ) -> Peers {
        let mut links = HashMap::new();
        for (i, m) in members.iter().enumerate() {
            let id = i as u64 + 1;
            if id == me {
                continue;
            }
            let addr = m.rpc_addr.to_string();
            let Some(client) = peer_client(&addr, max_message) else {
                tracing::error!("member {id} has an unusable address {addr}");
                continue;
            };
            let stream = Arc::new(Mutex::new(None));
            let (snapshots, snapshot_rx) = mpsc::channel(SNAPSHOT_QUEUE);
            rt.spawn(keep_stream_open(
                id,
                addr,
                client.clone(),
                stream.clone(),
                inbox.clone(),
            ));
            rt.spawn(send_snapshots(me, id, client, snapshot_rx, inbox.clone()));
            links.insert(id, Link { stream, snapshots });
        }
        Peers {
            me,
            members,
            links,
            inbox,
            space: space.clone(),
        }
    }

    /// Queues `msgs`: one batch per peer, in the order given.
    pub fn send(&self, msgs: Vec<Message>) {
        let mut batches: Vec<(u64, Vec<Vec<u8>>)> = Vec::new();
        for m in msgs {
            let to = m.to;
            let Some(link) = self.links.get(&to) else {
                if to != self.me {
                    tracing::warn!("raft message for unknown member {to} dropped");
                }
                continue;
            };
            if m.get_msg_type() == MessageType::MsgSnapshot {
                if link.snapshots.try_send(m).is_err() {
                    self.dropped(to, 1);
                    let _ = self.inbox.send(Inbox::SnapshotSent { to, ok: false });
                }
                continue;
            }
            let bytes = m.write_to_bytes().expect("raft messages always encode");
            match batches.iter_mut().find(|(peer, _)| *peer == to) {
                Some((_, messages)) => messages.push(bytes),
                None => batches.push((to, vec![bytes])),
            }
        }
        for (to, messages) in batches {
            let count = messages.len();
            let batch = RaftBatch {
                from: self.me,
                messages,
                low_on_disk: self.space.low(),
            };
            let stream = self.links[&to].stream.lock().expect("stream slot");
            let queued = stream.as_ref().is_some_and(|q| q.try_send(batch).is_ok());
            drop(stream);
            if !queued {
                self.dropped(to, count);
            }
        }
    }

    fn dropped(&self, to: u64, count: usize) {
        metrics::counter!("rfs_namenode_raft_messages_dropped_total").increment(count as u64);
        let _ = self.inbox.send(Inbox::Unreachable(to));
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

fn peer_client(addr: &str, max_message: usize) -> Option<RaftPeerClient<Channel>> {
    let channel = Endpoint::from_shared(format!("http://{addr}"))
        .ok()?
        .connect_timeout(CONNECT_TIMEOUT)
        .tcp_nodelay(true)
        .http2_keep_alive_interval(KEEPALIVE)
        .keep_alive_timeout(KEEPALIVE)
        .keep_alive_while_idle(true)
        .connect_lazy();
    Some(
        RaftPeerClient::new(channel)
            .max_decoding_message_size(max_message)
            .max_encoding_message_size(max_message),
    )
}

/// Keeps one stream to peer `to` open, opening a new one whenever it
/// breaks, and publishes its queue in `slot` for [`Peers::send`].
async fn keep_stream_open(
    to: u64,
    addr: String,
    mut client: RaftPeerClient<Channel>,
    slot: Arc<Mutex<Option<mpsc::Sender<RaftBatch>>>>,
    inbox: InboxSender<Inbox>,
) {
    let mut reachable = true;
    loop {
        let (queue, batches) = mpsc::channel(STREAM_QUEUE);
        *slot.lock().expect("stream slot") = Some(queue);
        let ended = run_stream(&mut client, batches, || {
            if !reachable {
                tracing::info!("member {to} at {addr} is reachable again");
                reachable = true;
            }
        })
        .await;
        *slot.lock().expect("stream slot") = None;
        if reachable {
            tracing::warn!("member {to} at {addr} unreachable: {ended}");
            reachable = false;
        }
        let _ = inbox.send(Inbox::Unreachable(to));
        tokio::time::sleep(REOPEN_DELAY).await;
    }
}

/// Runs one stream until it ends; says why it did. `opened` is called once
/// the peer has taken the stream.
async fn run_stream(
    client: &mut RaftPeerClient<Channel>,
    batches: mpsc::Receiver<RaftBatch>,
    opened: impl FnOnce(),
) -> String {
    let response =
        match tokio::time::timeout(OPEN_TIMEOUT, client.stream(ReceiverStream::new(batches))).await
        {
            Ok(Ok(response)) => response,
            Ok(Err(e)) => return e.message().to_string(),
            Err(_) => return format!("the stream was not taken within {OPEN_TIMEOUT:?}"),
        };
    opened();
    let mut acks = response.into_inner();
    loop {
        match acks.message().await {
            Ok(Some(_)) => {}
            Ok(None) => return "the peer ended the stream".to_string(),
            Err(e) => return e.message().to_string(),
        }
    }
}

/// Sends peer `to` each snapshot raft hands over, one at a time, and tells
/// raft whether it arrived.
async fn send_snapshots(
    me: u64,
    to: u64,
    mut client: RaftPeerClient<Channel>,
    mut snapshots: mpsc::Receiver<Message>,
    inbox: InboxSender<Inbox>,
) {
    while let Some(m) = snapshots.recv().await {
        let pieces = snapshot_chunks::split(me, m, snapshot_chunks::CHUNK_BYTES);
        let request = client.install_snapshot(tokio_stream::iter(pieces));
        let ok = match tokio::time::timeout(SNAPSHOT_TIMEOUT, request).await {
            Ok(Ok(_)) => true,
            Ok(Err(e)) => {
                tracing::warn!("snapshot to member {to} failed: {}", e.message());
                false
            }
            Err(_) => {
                tracing::warn!("snapshot to member {to} not taken within {SNAPSHOT_TIMEOUT:?}");
                false
            }
        };
        if !ok {
            let _ = inbox.send(Inbox::Unreachable(to));
        }
        let _ = inbox.send(Inbox::SnapshotSent { to, ok });
    }
}

/// The receiving side of [`Peers`].
#[derive(Clone)]
pub struct PeerService {
    pub inbox: InboxSender<Inbox>,
    pub members: usize,
    /// Where what each sender says of its name dir is kept.
    pub space: Arc<NameDirSpace>,
    /// Turns true when the server shuts down: incoming streams then end,
    /// or the server's graceful shutdown would wait for them in vain.
    pub stopping: tokio::sync::watch::Receiver<bool>,
}

impl PeerService {
    /// A service that refuses everything (a placeholder once the real one
    /// is handed to the server).
    pub fn closed() -> PeerService {
        PeerService {
            inbox: std::sync::mpsc::channel().0,
            members: 0,
            space: Arc::new(NameDirSpace::new(PathBuf::new(), 0, 0)),
            stopping: never_stopping(),
        }
    }
}

/// Refuses a raft `what` ("batch", "snapshot") from `from` unless it is
/// one of the group's `members` (raft ids 1 to `members`).
pub(super) fn check_member(what: &str, from: u64, members: usize) -> Result<(), Status> {
    if from == 0 || from as usize > members {
        return Err(Status::permission_denied(format!(
            "raft {what} from {from} which is not a member of this group"
        )));
    }
    Ok(())
}

/// A stop signal that never fires, until the server's own is set.
pub fn never_stopping() -> tokio::sync::watch::Receiver<bool> {
    tokio::sync::watch::channel(false).1
}

/// Completes once `stopping` turns true; never if its sender is gone
/// without that.
async fn stopped(mut stopping: tokio::sync::watch::Receiver<bool>) {
    if stopping.wait_for(|s| *s).await.is_err() {
        std::future::pending::<()>().await;
    }
}

impl PeerService {
    /// Hands one batch's messages to the raft loop, or says why not.
    fn deliver(&self, batch: RaftBatch) -> Result<(), Status> {
        check_member("batch", batch.from, self.members)?;
        self.space.set_peer_low(batch.from, batch.low_on_disk);
        for bytes in batch.messages {
            let m = Message::parse_from_bytes(&bytes)
                .map_err(|e| Status::invalid_argument(format!("bad raft message: {e}")))?;
            if m.from != batch.from {
                return Err(Status::invalid_argument("raft message sender mismatch"));
            }
            if self.inbox.send(Inbox::Peer(Box::new(m))).is_err() {
                return Err(Status::unavailable("this namenode is shutting down"));
            }
        }
        Ok(())
    }
}

#[tonic::async_trait]
impl RaftPeer for PeerService {
    async fn send(&self, req: Request<RaftBatch>) -> Result<Response<RaftBatchAck>, Status> {
        self.deliver(req.into_inner())?;
        Ok(Response::new(RaftBatchAck {}))
    }

    async fn install_snapshot(
        &self,
        req: Request<Streaming<SnapshotChunk>>,
    ) -> Result<Response<RaftBatchAck>, Status> {
        let mut pieces = req.into_inner();
        let mut whole = Assembler::new(self.members, snapshot_chunks::MAX_SNAPSHOT_BYTES);
        while let Some(piece) = pieces.message().await? {
            whole.push(piece)?;
        }
        let m = whole.finish()?;
        if self.inbox.send(Inbox::Peer(Box::new(m))).is_err() {
            return Err(Status::unavailable("this namenode is shutting down"));
        }
        Ok(Response::new(RaftBatchAck {}))
    }

    type StreamStream = ReceiverStream<Result<RaftBatchAck, Status>>;

    async fn stream(
        &self,
        req: Request<Streaming<RaftBatch>>,
    ) -> Result<Response<Self::StreamStream>, Status> {
        let mut batches = req.into_inner();
        let (end, ended) = mpsc::channel(1);
        let service = self.clone();
        // The response stays open while this task holds `end`: it ends
        // with the sender's stream, or with the reason a batch was refused.
        let stop = stopped(self.stopping.clone());
        tokio::spawn(async move {
            tokio::pin!(stop);
            loop {
                let batch = tokio::select! {
                    b = batches.message() => b,
                    () = &mut stop => return,
                };
                let Ok(Some(batch)) = batch else {
                    return;
                };
                if let Err(refused) = service.deliver(batch) {
                    let _ = end.send(Err(refused)).await;
                    return;
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(ended)))
    }
}
