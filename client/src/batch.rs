//! Calls to one namenode member, sent a batch at a time (`Batch` in
//! namenode.proto).
//!
//! A lone caller's call goes out at once from its own task. Once calls
//! have had to queue (others are calling too), a call queues, and while
//! fewer than [`IN_FLIGHT`] batches are on the wire a task sends a batch
//! of what queued by the time it runs; past that, the first batch slot
//! given back carries every call queued by then. One task alone therefore
//! waits for nothing and crosses no other task, and sixteen tasks creating
//! files share a few RPCs instead of sending sixteen: the namenode handles
//! each call as its own RPC (its call id, its retry-cache entry, its
//! error), so batching changes only how many HTTP/2 requests, headers and
//! tasks the calls cost on both ends. The group commit of a database log,
//! applied to RPCs.
//!
//! A namenode older than `Batch` answers it Unimplemented; the batcher then
//! sends each call as its own RPC, from then on.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use rfs_proto::namenode::answer::Answer as A;
use rfs_proto::namenode::call::Call as C;
use rfs_proto::namenode::client_protocol_client::ClientProtocolClient;
use rfs_proto::namenode::*;
use rfs_proto::rpc_error;
use tokio::sync::oneshot;
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

/// One member's calls: a lone caller's sent at once from its own task,
/// the others queued for the next batch.
pub(crate) struct Batcher {
    shared: Arc<Shared>,
}

struct Shared {
    client: ClientProtocolClient<Channel>,
    /// The namenode answered `Batch` Unimplemented: calls go one by one.
    unsupported: AtomicBool,
    state: Mutex<State>,
}

/// Calls queue while others are calling (`crowded`) or every slot is out;
/// a slot given back with calls queued goes on to carry them.
#[derive(Default)]
struct State {
    in_flight: usize,
    queued: Vec<Pending>,
    /// Calls have had to queue since a batch of one last came back with
    /// nothing waiting: others are calling too, so a call goes through a
    /// task and takes the calls made meanwhile along, rather than alone.
    crowded: bool,
}

impl Batcher {
    pub(crate) fn new(channel: Channel) -> Batcher {
        Batcher {
            shared: Arc::new(Shared {
                client: ClientProtocolClient::new(channel),
                unsupported: AtomicBool::new(false),
                state: Mutex::default(),
            }),
        }
    }

    /// Sends `req` now or in the next batch; what its own RPC would have
    /// answered.
    pub(crate) async fn call<Req: Batchable>(&self, req: Req) -> Result<Req::Response, Status> {
        let call = req.into_call();
        let route = {
            let mut state = self.shared.lock();
            if state.in_flight == 0 && !state.crowded {
                state.in_flight = 1;
                Route::Now(call)
            } else {
                let (reply, answer) = oneshot::channel();
                state.queued.push(Pending { call, reply });
                state.crowded = true;
                // A free slot's batch leaves from a task of its own, so
                // that the calls made while it starts ride along.
                if state.in_flight < IN_FLIGHT {
                    state.in_flight += 1;
                    carry(self.shared.clone(), None);
                }
                Route::Queued(answer)
            }
        };
        let answer = match route {
            // A lone call crosses no task: it is sent from here.
            Route::Now(call) => {
                let slot = Slot::new(self.shared.clone(), 1);
                let answer = self.shared.send_one(call).await;
                drop(slot);
                answer
            }
            Route::Queued(answer) => answer
                .await
                .map_err(|_| Status::unavailable("the namenode connection's batcher stopped"))?,
        }?;
        Req::from_answer(answer).ok_or_else(|| {
            Status::internal("the namenode answered a batched call with another call's answer")
        })
    }
}

fn take(state: &mut State) -> Vec<Pending> {
    let n = state.queued.len().min(MAX_CALLS);
    state.queued.drain(..n).collect()
}

enum Route {
    Now(C),
    Queued(oneshot::Receiver<Result<A, Status>>),
}

/// A batch's place on the wire, held while its RPC is out (also by a
/// caller whose future is dropped mid-call); giving it back sends what
/// queued meanwhile.
struct Slot {
    shared: Arc<Shared>,
    /// Calls in the batch it carries.
    carried: usize,
}

impl Slot {
    fn new(shared: Arc<Shared>, carried: usize) -> Slot {
        Slot { shared, carried }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some(batch) = self.shared.next_batch(self.carried) {
            carry(self.shared.clone(), Some(batch));
        }
    }
}

/// Sends `batch` (`None`: what has queued by the time the task runs) from
/// a task of its own, in a slot already counted in `in_flight`.
fn carry(shared: Arc<Shared>, batch: Option<Vec<Pending>>) {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        // No runtime left to send from: the queued callers are told the
        // batcher stopped (their replies dropped).
        shared.lock().in_flight -= 1;
        return;
    };
    runtime.spawn(async move {
        let batch = batch.unwrap_or_else(|| shared.take_queued());
        let slot = Slot::new(shared.clone(), batch.len());
        if !batch.is_empty() {
            shared.send(batch).await;
        }
        drop(slot);
    });
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// On the return of a slot that `carried` calls: the calls it carries
    /// next, keeping the slot, or `None`, the slot freed.
    fn next_batch(&self, carried: usize) -> Option<Vec<Pending>> {
        let mut state = self.lock();
        if state.queued.is_empty() {
            state.in_flight -= 1;
            if carried <= 1 {
                state.crowded = false;
            }
            return None;
        }
        Some(take(&mut state))
    }

    /// The next batch of queued calls (maybe none: another slot took them).
    fn take_queued(&self) -> Vec<Pending> {
        take(&mut self.lock())
    }

    async fn send_one(&self, call: C) -> Result<A, Status> {
        if !self.unsupported.load(Ordering::Relaxed) {
            if let Some(mut answers) = self.batched(std::slice::from_ref(&call)).await {
                return answers.pop().expect("one answer per call");
            }
        }
        unary(self.client.clone(), call).await
    }

    /// Sends `batch` and hands each call its answer.
    async fn send(&self, batch: Vec<Pending>) {
        let (calls, replies): (Vec<C>, Vec<_>) =
            batch.into_iter().map(|p| (p.call, p.reply)).unzip();
        if !self.unsupported.load(Ordering::Relaxed) {
            if let Some(answers) = self.batched(&calls).await {
                for (reply, answer) in replies.into_iter().zip(answers) {
                    let _ = reply.send(answer);
                }
                return;
            }
        }
        let each = calls.into_iter().zip(replies).map(|(call, reply)| {
            let client = self.client.clone();
            async move {
                let _ = reply.send(unary(client, call).await);
            }
        });
        futures::future::join_all(each).await;
    }

    /// Each of `calls`' answers from one `Batch` RPC (a failed RPC fails
    /// every call with its status); `None` when the namenode has no `Batch`,
    /// which `unsupported` then remembers.
    async fn batched(&self, calls: &[C]) -> Option<Vec<Result<A, Status>>> {
        let request = BatchRequest {
            calls: (calls.iter())
                .map(|c| Call {
                    call: Some(c.clone()),
                })
                .collect(),
        };
        let failed = |status: Status| Some(vec![Err(status); calls.len()]);
        let answers = match self.client.clone().batch(request).await {
            Ok(resp) => resp.into_inner().answers,
            Err(status) if status.code() == Code::Unimplemented => {
                tracing::debug!("namenode has no Batch call; sending calls one by one");
                self.unsupported.store(true, Ordering::Relaxed);
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
}
