//! Calls to one namenode member, sent a batch at a time (`Batch` in
//! namenode.proto).
//!
//! A call goes out at once while fewer than [`IN_FLIGHT`] batches are on
//! the wire; past that, calls queue, and the next batch carries every call
//! queued by then. One task alone therefore waits for nothing, and sixteen
//! tasks creating files share a few RPCs instead of sending sixteen: the
//! namenode handles each call as its own RPC (its call id, its retry-cache
//! entry, its error), so batching changes only how many HTTP/2 requests,
//! headers and tasks the calls cost on both ends. The group commit of a
//! database log, applied to RPCs.
//!
//! A namenode older than `Batch` answers it Unimplemented; the batcher then
//! sends each call as its own RPC, from then on.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use rfs_proto::namenode::answer::Answer as A;
use rfs_proto::namenode::call::Call as C;
use rfs_proto::namenode::client_protocol_client::ClientProtocolClient;
use rfs_proto::namenode::*;
use rfs_proto::rpc_error;
use tokio::sync::{mpsc, oneshot, Semaphore};
use tonic::transport::Channel;
use tonic::{Code, Status};

/// Batches on the wire at once, per member.
const IN_FLIGHT: usize = 2;
/// Most calls in one batch (the namenode takes up to 1,024).
const MAX_CALLS: usize = 256;

/// A request that may ride in a batch, and its answer's type.
pub(crate) trait Batchable: Clone {
    type Response;
    fn into_call(self) -> C;
    /// The answer for this kind of call; `None` for another kind.
    fn from_answer(answer: A) -> Option<Self::Response>;
}

macro_rules! batchable {
    ($($req:ident => $resp:ident, $variant:ident, $method:ident;)*) => {
        $(impl Batchable for $req {
            type Response = $resp;
            fn into_call(self) -> C {
                C::$variant(self)
            }
            fn from_answer(answer: A) -> Option<$resp> {
                match answer {
                    A::$variant(r) => Some(r),
                    _ => None,
                }
            }
        })*

        /// `call` as its own RPC (a namenode without `Batch`).
        async fn unary(mut client: ClientProtocolClient<Channel>, call: C) -> Result<A, Status> {
            match call {
                $(C::$variant(r) => Ok(A::$variant(client.$method(r).await?.into_inner())),)*
            }
        }
    };
}

batchable! {
    CreateRequest => CreateResponse, Create, create;
    CompleteRequest => CompleteResponse, Complete, complete;
    AddBlockRequest => AddBlockResponse, AddBlock, add_block;
    GetFileInfoRequest => GetFileInfoResponse, GetFileInfo, get_file_info;
    DeleteRequest => DeleteResponse, Delete, delete;
    MkdirsRequest => MkdirsResponse, Mkdirs, mkdirs;
}

struct Pending {
    call: C,
    reply: oneshot::Sender<Result<A, Status>>,
}

/// The queue of one member's calls; dropping it ends its task once the
/// batches in flight are answered.
pub(crate) struct Batcher {
    queue: mpsc::UnboundedSender<Pending>,
}

impl Batcher {
    /// Starts the batching task for the member behind `channel`.
    pub(crate) fn new(channel: Channel) -> Batcher {
        let (queue, rx) = mpsc::unbounded_channel();
        tokio::spawn(run(ClientProtocolClient::new(channel), rx));
        Batcher { queue }
    }

    /// Sends `req` in the next batch; what its own RPC would have answered.
    pub(crate) async fn call<Req: Batchable>(&self, req: Req) -> Result<Req::Response, Status> {
        let (reply, answer) = oneshot::channel();
        let call = req.into_call();
        self.queue
            .send(Pending { call, reply })
            .map_err(|_| Status::unavailable("the namenode connection's batcher stopped"))?;
        let answer = answer
            .await
            .map_err(|_| Status::unavailable("the namenode connection's batcher stopped"))??;
        Req::from_answer(answer).ok_or_else(|| {
            Status::internal("the namenode answered a batched call with another call's answer")
        })
    }
}

async fn run(client: ClientProtocolClient<Channel>, mut queue: mpsc::UnboundedReceiver<Pending>) {
    let in_flight = Arc::new(Semaphore::new(IN_FLIGHT));
    let unsupported = Arc::new(AtomicBool::new(false));
    while let Some(first) = queue.recv().await {
        let Ok(permit) = in_flight.clone().acquire_owned().await else {
            return;
        };
        // Everything that queued while the batches in flight were out.
        let mut batch = vec![first];
        while batch.len() < MAX_CALLS {
            match queue.try_recv() {
                Ok(p) => batch.push(p),
                Err(_) => break,
            }
        }
        let client = client.clone();
        let unsupported = unsupported.clone();
        tokio::spawn(async move {
            send(client, batch, &unsupported).await;
            drop(permit);
        });
    }
}

/// Sends `batch` and hands each call its answer.
async fn send(
    client: ClientProtocolClient<Channel>,
    batch: Vec<Pending>,
    unsupported: &AtomicBool,
) {
    let (calls, replies): (Vec<C>, Vec<_>) = batch.into_iter().map(|p| (p.call, p.reply)).unzip();
    if !unsupported.load(Ordering::Relaxed) {
        if let Some(answers) = batched(client.clone(), &calls, unsupported).await {
            for (reply, answer) in replies.into_iter().zip(answers) {
                let _ = reply.send(answer);
            }
            return;
        }
    }
    let each = calls.into_iter().zip(replies).map(|(call, reply)| {
        let client = client.clone();
        async move {
            let _ = reply.send(unary(client, call).await);
        }
    });
    futures::future::join_all(each).await;
}

/// Each of `calls`' answers from one `Batch` RPC (a failed RPC fails
/// every call with its status); `None` when the namenode has no `Batch`,
/// which `unsupported` then remembers.
async fn batched(
    mut client: ClientProtocolClient<Channel>,
    calls: &[C],
    unsupported: &AtomicBool,
) -> Option<Vec<Result<A, Status>>> {
    let request = BatchRequest {
        calls: (calls.iter())
            .map(|c| Call {
                call: Some(c.clone()),
            })
            .collect(),
    };
    let failed = |status: Status| Some(vec![Err(status); calls.len()]);
    let answers = match client.batch(request).await {
        Ok(resp) => resp.into_inner().answers,
        Err(status) if status.code() == Code::Unimplemented => {
            tracing::debug!("namenode has no Batch call; sending calls one by one");
            unsupported.store(true, Ordering::Relaxed);
            return None;
        }
        Err(status) => return failed(status),
    };
    if answers.len() != calls.len() {
        return failed(Status::internal(format!(
            "the namenode answered {} of {} batched calls",
            answers.len(),
            calls.len()
        )));
    }
    Some(
        (answers.into_iter())
            .map(|answer| match answer.answer {
                Some(A::Error(e)) => Err(rpc_error::from_call_error(&e)),
                Some(a) => Ok(a),
                None => Err(Status::internal("the namenode sent an empty answer")),
            })
            .collect(),
    )
}
