//! The namenode group behind one failover proxy, [`NamenodeRpc`].
//!
//! It knows every member's RPC address (a lazily connected tonic channel
//! each) and remembers which member answered last: the leader, as far as
//! it knows. The addresses it is given need not be the whole group: at
//! connect, the first member to accept names its group and the leader it
//! knows ([`crate::namenode_group`]); the members it names join the list
//! and calls start at that leader. So one member's address is enough, and
//! the calls go on when that member is gone. A call goes to the leader
//! first; what the member answers decides where the next attempt goes:
//!
//! | answer                                         | next attempt                          |
//! |------------------------------------------------|---------------------------------------|
//! | a result                                       | none; this member is the leader now   |
//! | `NotLeader` with a leader hint                 | the hinted member (added if unknown)  |
//! | `NotLeader` without a hint (election running)  | the next member                       |
//! | `NotLeader` hinting the member that answered   | the next member                       |
//! | `CatchingUp` (leads, still applying its log)   | the same member, after the backoff    |
//! | refused, unreachable, transport error          | the next member                       |
//! | no answer within `rpc_timeout`                 | the next member; this one reconnects  |
//! | any other error (`NotFound`, `LowOnDisk`…)     | none: returned at once                |
//!
//! Each member is tried once without waiting; further attempts wait a
//! jittered backoff (20 ms doubling to 500 ms). Once `failover_deadline`
//! has passed and every member has been tried, the call fails with
//! [`Error::NoNamenode`] naming each member and its last failure.
//!
//! The request is cloned for every attempt. Non-idempotent requests carry
//! a `CallId` chosen once per call, so a namenode that already applied an
//! attempt whose answer was lost answers the repeat from its retry cache.
//! This module does not choose call ids; `Client` does.

use std::future::Future;
use std::ops::Range;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use futures::stream::{FuturesUnordered, StreamExt};
use rand::Rng;
use rfs_proto::namenode::client_protocol_client::ClientProtocolClient;
use rfs_proto::rpc_error::{self, RpcErrorKind};
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status};

use crate::batch::{Batchable, Batcher};
use crate::error::{chain, one_line, status_reason, Error, Result};
use crate::namenode_group::{self, NamenodeGroup};

/// First pause between attempts once every member has been tried.
const BACKOFF_FIRST: Duration = Duration::from_millis(20);
/// Longest pause between attempts.
const BACKOFF_MAX: Duration = Duration::from_millis(500);

/// The failover proxy. Cheap to clone; clones share the channels and the
/// leader they know.
#[derive(Clone)]
pub(crate) struct NamenodeRpc {
    shared: Arc<Shared>,
}

struct Shared {
    /// Limit on each attempt.
    timeout: Duration,
    /// How long a call keeps trying members.
    failover_deadline: Duration,
    /// The group as the first member reached described it.
    group: Option<NamenodeGroup>,
    members: Mutex<Members>,
}

struct Members {
    /// Configured members first, then members learnt from leader hints.
    list: Vec<Member>,
    /// Index of the member that answered last.
    leader: usize,
}

struct Member {
    addr: String,
    endpoint: Endpoint,
    /// Made on first use, dropped after a timeout so the next use dials
    /// afresh.
    channel: Option<Channel>,
    /// The queue of batched calls over `channel`, made and dropped with it.
    batcher: Option<Arc<Batcher>>,
}

impl Member {
    fn at(addr: &str, timeout: Duration) -> Result<Member> {
        Ok(Member {
            addr: addr.to_string(),
            endpoint: endpoint(addr, timeout)?,
            channel: None,
            batcher: None,
        })
    }

    /// Its channel, connecting lazily.
    fn channel(&mut self) -> Channel {
        self.channel
            .get_or_insert_with(|| self.endpoint.connect_lazy())
            .clone()
    }

    /// Its batcher, over its channel.
    fn batcher(&mut self) -> Arc<Batcher> {
        let channel = self.channel();
        (self
            .batcher
            .get_or_insert_with(|| Arc::new(Batcher::new(channel))))
        .clone()
    }

    /// Forgets the connection (after a timeout): the next use dials afresh.
    fn disconnect(&mut self) {
        self.channel = None;
        self.batcher = None;
    }
}

/// Why an attempt failed in a way a later attempt may not.
enum Failure {
    NotLeader {
        hint: Option<String>,
    },
    /// The member leads but has not applied its log yet; its message
    /// ("nn1 is catching up: applied N of M").
    CatchingUp(String),
    Unreachable(String),
    Timeout,
}

impl Failure {
    /// The statuses worth another attempt; `None` for answers that stand
    /// (tagged rfs errors other than `NotLeader` and `CatchingUp`, and any
    /// other code).
    fn of(s: &Status) -> Option<Failure> {
        match s.metadata().get(rpc_error::ERROR_KIND_KEY) {
            Some(_) if rpc_error::kind_of(s) == RpcErrorKind::CatchingUp => {
                Some(Failure::CatchingUp(one_line(s.message())))
            }
            Some(_) if rpc_error::kind_of(s) == RpcErrorKind::NotLeader => {
                let hint = s
                    .metadata()
                    .get(rpc_error::LEADER_HINT_KEY)
                    .and_then(|v| v.to_str().ok())
                    .map(str::trim)
                    .filter(|h| !h.is_empty())
                    .map(str::to_string);
                Some(Failure::NotLeader { hint })
            }
            Some(_) => None,
            None => match s.code() {
                Code::Unavailable | Code::Unknown | Code::Cancelled | Code::DeadlineExceeded => {
                    Some(Failure::Unreachable(one_line(&status_reason(s))))
                }
                // tonic's word for a connection that broke mid-call.
                Code::Internal if s.message().starts_with("h2 protocol error") => {
                    Some(Failure::Unreachable(one_line(&status_reason(s))))
                }
                _ => None,
            },
        }
    }

    fn reason(&self, timeout: Duration) -> String {
        match self {
            Failure::NotLeader { hint: Some(h) } => format!("not the leader (leader: {h})"),
            Failure::NotLeader { hint: None } => "not the leader (no leader known)".into(),
            Failure::CatchingUp(m) | Failure::Unreachable(m) => m.clone(),
            Failure::Timeout => format!("no answer within {timeout:?}"),
        }
    }
}

/// HTTP/2 pings on namenode connections: a leader cut off by the network
/// gives no error on its TCP connection, so without them a call would wait
/// its whole RPC timeout before failing over.
const KEEPALIVE: Duration = Duration::from_secs(1);

/// The endpoint of the member at `addr` (`host:port`).
pub(crate) fn endpoint(addr: &str, timeout: Duration) -> Result<Endpoint> {
    Ok(Endpoint::from_shared(format!("http://{addr}"))
        .map_err(|e| Error::Config(format!("invalid namenode address {addr:?}: {e}")))?
        .connect_timeout(timeout)
        .tcp_nodelay(true)
        .http2_keep_alive_interval(KEEPALIVE)
        .keep_alive_timeout(2 * KEEPALIVE)
        .keep_alive_while_idle(true))
}

/// Dials `endpoint` now; the error is the reason, one line.
async fn dial(endpoint: &Endpoint, timeout: Duration) -> std::result::Result<Channel, String> {
    match tokio::time::timeout(timeout, endpoint.connect()).await {
        Err(_) => Err(format!("no answer within {timeout:?}")),
        Ok(Err(e)) => Err(chain(&e)),
        Ok(Ok(c)) => Ok(c),
    }
}

/// A channel to the one member at `addr`, connected now: "cannot reach
/// namenode at {addr}: {reason}" when it refuses or stays silent.
pub(crate) async fn connect_one(addr: &str, timeout: Duration) -> Result<Channel> {
    dial(&endpoint(addr, timeout)?, timeout)
        .await
        .map_err(|reason| Error::NamenodeUnreachable {
            addr: addr.to_string(),
            reason,
        })
}

impl NamenodeRpc {
    /// Sets up the proxy for the members at `addrs` (duplicates ignored)
    /// and dials them all at once, asking each that accepts for its group
    /// ([`namenode_group`]): the members the first answer names join the
    /// list, and calls start at the leader it names (else at a member that
    /// accepted).
    ///
    /// When none of `addrs` accepts, the members at `remembered` (of the
    /// group `addrs` belonged to when last seen) not among them are
    /// dialed; the first to accept whose group still has a member at every
    /// remembered address stands in. Fails at once when nobody stands in: with one member
    /// "cannot reach namenode at {addr}: {reason}", with several "cannot
    /// reach any namenode: {addr}: {reason}; ...". Later calls ride out
    /// members going away.
    pub(crate) async fn connect(
        addrs: &[String],
        remembered: &[String],
        timeout: Duration,
        failover_deadline: Duration,
    ) -> Result<NamenodeRpc> {
        let mut list: Vec<Member> = Vec::new();
        for addr in addrs {
            if list.iter().all(|m| m.addr != *addr) {
                list.push(Member::at(addr, timeout)?);
            }
        }
        if list.is_empty() {
            return Err(Error::Config("no namenode address is given".into()));
        }
        let given = list.len();
        let mut failures: Vec<(usize, String)> = Vec::new();
        let mut reached = reach(&mut list, 0..given, None, timeout, &mut failures).await;
        if reached.is_none() {
            for addr in remembered {
                if list.iter().any(|m| m.addr == *addr) {
                    continue;
                }
                match Member::at(addr, timeout) {
                    Ok(m) => list.push(m),
                    Err(e) => tracing::debug!("ignoring remembered namenode: {e}"),
                }
            }
            let stand_ins = given..list.len();
            reached = reach(
                &mut list,
                stand_ins,
                Some(remembered),
                timeout,
                &mut failures,
            )
            .await;
        }
        let Some((start, group)) = reached else {
            return Err(match list.len() {
                1 => Error::NamenodeUnreachable {
                    addr: list[0].addr.clone(),
                    reason: failures.pop().map(|f| f.1).unwrap_or_default(),
                },
                _ => {
                    failures.sort_by_key(|f| f.0);
                    Error::NamenodesUnreachable {
                        tried: describe_tried(&list, &failures),
                    }
                }
            });
        };
        let mut leader = start;
        if let Some(group) = &group {
            let known: Vec<String> = list.iter().map(|m| m.addr.clone()).collect();
            let learnt = namenode_group::learn(group, &list[start].addr, &known);
            for addr in &learnt.new {
                match Member::at(addr, timeout) {
                    Ok(m) => list.push(m),
                    Err(e) => tracing::debug!("ignoring a member of the group: {e}"),
                }
            }
            if let Some(at) = learnt.leader {
                leader = list.iter().position(|m| m.addr == at).unwrap_or(start);
            }
        }
        Ok(NamenodeRpc {
            shared: Arc::new(Shared {
                timeout,
                failover_deadline,
                group,
                members: Mutex::new(Members { list, leader }),
            }),
        })
    }

    /// The group as the first member reached described it at connect;
    /// `None` when it could not say.
    pub(crate) fn group(&self) -> Option<&NamenodeGroup> {
        self.shared.group.as_ref()
    }

    /// Runs `call` on the leader, failing over as the module doc says.
    /// `f` gets a client for one member and a clone of `req`; it may run
    /// once per attempt.
    pub(crate) async fn call<Req, T, F, Fut>(&self, call: &'static str, req: Req, f: F) -> Result<T>
    where
        Req: Clone,
        F: Fn(ClientProtocolClient<Channel>, Req) -> Fut,
        Fut: Future<Output = std::result::Result<tonic::Response<T>, Status>>,
    {
        self.failover(call, |target| {
            let attempt = f(ClientProtocolClient::new(self.channel(target)), req.clone());
            async move { attempt.await.map(tonic::Response::into_inner) }
        })
        .await
    }

    /// [`NamenodeRpc::call`] for a call that rides in a batch with the
    /// others queued for the same member ([`crate::batch`]).
    pub(crate) async fn batched<Req: Batchable>(
        &self,
        call: &'static str,
        req: Req,
    ) -> Result<Req::Response> {
        self.failover(call, |target| {
            let batcher = self.members().list[target].batcher();
            let req = req.clone();
            async move { batcher.call(req).await }
        })
        .await
    }

    /// The failover loop: `attempt(member)` once per attempt.
    async fn failover<T, F, Fut>(&self, call: &'static str, attempt: F) -> Result<T>
    where
        F: Fn(usize) -> Fut,
        Fut: Future<Output = std::result::Result<T, Status>>,
    {
        let timeout = self.shared.timeout;
        let deadline = self.shared.failover_deadline;
        let start = Instant::now();
        let mut backoff = BACKOFF_FIRST;
        // Each member tried in this call, with its last failure.
        let mut tried: Vec<(usize, String)> = Vec::new();
        let mut target = self.members().leader;
        loop {
            let addr = self.members().list[target].addr.clone();
            let failure = match tokio::time::timeout(timeout, attempt(target)).await {
                Ok(Ok(resp)) => {
                    self.members().leader = target;
                    return Ok(resp);
                }
                Ok(Err(status)) => match Failure::of(&status) {
                    Some(failure) => failure,
                    None => return Err(Error::from_status(&addr, &status)),
                },
                Err(_) => {
                    self.members().list[target].disconnect();
                    Failure::Timeout
                }
            };
            let reason = failure.reason(timeout);
            tracing::debug!("namenode {addr}: {call}: {reason}");
            match tried.iter_mut().find(|t| t.0 == target) {
                Some(t) => t.1 = reason,
                None => tried.push((target, reason)),
            }

            let waited = start.elapsed();
            let members = self.members().list.len();
            let untried = (0..members).find(|i| tried.iter().all(|t| t.0 != *i));
            target = match (untried, failure) {
                (None, _) if waited >= deadline => {
                    let mut tried = tried;
                    tried.sort_by_key(|t| t.0);
                    return Err(Error::NoNamenode {
                        call,
                        waited: whole_ms(waited),
                        tried: describe_tried(&self.members().list, &tried),
                    });
                }
                // Past the deadline only members never asked are left.
                (Some(i), _) if waited >= deadline => i,
                // It leads and serves shortly: nobody else would.
                (_, Failure::CatchingUp(_)) => target,
                (_, Failure::NotLeader { hint: Some(hint) }) => match self.member_for(&hint) {
                    // A member naming itself would only send us back.
                    Some(i) if i != target => i,
                    _ => (target + 1) % members,
                },
                _ => (target + 1) % members,
            };
            if tried.iter().any(|t| t.0 == target) {
                let pause = backoff.mul_f64(rand::thread_rng().gen_range(0.5..=1.0));
                backoff = (backoff * 2).min(BACKOFF_MAX);
                tokio::time::sleep(pause.min(deadline.saturating_sub(waited))).await;
            }
        }
    }

    fn members(&self) -> MutexGuard<'_, Members> {
        // A panic while holding this lock cannot leave the list
        // inconsistent (every update is one assignment), so go on.
        self.shared
            .members
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The channel of member `i`, connecting lazily.
    fn channel(&self, i: usize) -> Channel {
        self.members().list[i].channel()
    }

    /// The index of the member at `addr`, added when a leader hint names
    /// one outside the configured list; `None` for an address tonic
    /// cannot use. The hint also becomes the leader other calls start at.
    fn member_for(&self, addr: &str) -> Option<usize> {
        let mut members = self.members();
        let i = match members.list.iter().position(|m| m.addr == addr) {
            Some(i) => i,
            None => match Member::at(addr, self.shared.timeout) {
                Ok(member) => {
                    members.list.push(member);
                    members.list.len() - 1
                }
                Err(e) => {
                    tracing::warn!("ignoring leader hint: {e}");
                    return None;
                }
            },
        };
        members.leader = i;
        Some(i)
    }
}

/// Dials the members `which` of `list` at once and asks each that accepts
/// for its group. The first to answer with a group wins; without
/// `remembered`, the first to accept stands in when no group comes (a
/// namenode older than the call). With `remembered`, only a group that
/// still has a member at every remembered address wins, and the others
/// count as failures. Every failure goes to `failures`.
async fn reach(
    list: &mut [Member],
    which: Range<usize>,
    remembered: Option<&[String]>,
    timeout: Duration,
    failures: &mut Vec<(usize, String)>,
) -> Option<(usize, Option<NamenodeGroup>)> {
    let mut tries: FuturesUnordered<_> = which
        .map(|i| {
            let endpoint = list[i].endpoint.clone();
            let addr = list[i].addr.clone();
            async move {
                let channel = match dial(&endpoint, timeout).await {
                    Ok(channel) => channel,
                    Err(reason) => return (i, Err(reason)),
                };
                // Each member is asked as soon as it accepts: one that
                // accepts but does not answer (stopped) holds up no other.
                let group = namenode_group::ask(&addr, channel.clone(), timeout).await;
                (i, Ok((channel, group)))
            }
        })
        .collect();
    let mut accepted: Option<(usize, Channel)> = None;
    while let Some((i, tried)) = tries.next().await {
        let (channel, group) = match tried {
            Ok(answer) => answer,
            Err(reason) => {
                failures.push((i, reason));
                continue;
            }
        };
        match (group, remembered) {
            (Some(group), None) => {
                list[i].channel = Some(channel);
                return Some((i, Some(group)));
            }
            (Some(group), Some(remembered)) if namenode_group::holds(&group, remembered) => {
                list[i].channel = Some(channel);
                return Some((i, Some(group)));
            }
            (Some(_), Some(_)) => {
                tracing::debug!(
                    "namenode {} is in another group than the one remembered; not using it",
                    list[i].addr
                );
                failures.push((i, "in another group than the one remembered".into()));
            }
            (None, Some(_)) => failures.push((i, "did not say which group it is in".into())),
            (None, None) => {
                accepted.get_or_insert((i, channel));
            }
        }
    }
    let (i, channel) = accepted?;
    list[i].channel = Some(channel);
    Some((i, None))
}

/// `addr: reason; addr: reason`, in the order given.
fn describe_tried(list: &[Member], tried: &[(usize, String)]) -> String {
    tried
        .iter()
        .map(|(i, reason)| format!("{}: {reason}", list[*i].addr))
        .collect::<Vec<_>>()
        .join("; ")
}

/// `d` without the sub-millisecond part, for messages.
fn whole_ms(d: Duration) -> Duration {
    Duration::from_millis(d.as_millis().try_into().unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn not_leader(hint: Option<&str>) -> Status {
        let mut s = rpc_error::status(RpcErrorKind::NotLeader, "nn2 is not the leader");
        if let Some(h) = hint {
            s.metadata_mut()
                .insert(rpc_error::LEADER_HINT_KEY, h.parse().unwrap());
        }
        s
    }

    #[test]
    fn which_statuses_fail_over() {
        assert!(matches!(
            Failure::of(&not_leader(Some("nn1:8020"))),
            Some(Failure::NotLeader { hint: Some(h) }) if h == "nn1:8020"
        ));
        assert!(matches!(
            Failure::of(&not_leader(None)),
            Some(Failure::NotLeader { hint: None })
        ));
        assert!(matches!(
            Failure::of(&rpc_error::status(
                RpcErrorKind::CatchingUp,
                "nn1 is catching up: applied 3 of 5"
            )),
            Some(Failure::CatchingUp(m)) if m == "nn1 is catching up: applied 3 of 5"
        ));
        assert!(matches!(
            Failure::of(&Status::unavailable("tcp connect error")),
            Some(Failure::Unreachable(_))
        ));
        assert!(matches!(
            Failure::of(&Status::unknown("transport error")),
            Some(Failure::Unreachable(_))
        ));
        assert!(matches!(
            Failure::of(&Status::internal("h2 protocol error: stream reset")),
            Some(Failure::Unreachable(_))
        ));
        // Answers that stand: rfs errors, even those with code Unavailable.
        for s in [
            rpc_error::status(RpcErrorKind::NotFound, "/x: No such file or directory"),
            rpc_error::status(RpcErrorKind::AlreadyExists, "/x: File exists"),
            rpc_error::status(RpcErrorKind::NoLiveDatanodes, "no live datanodes"),
            rpc_error::status(RpcErrorKind::LowOnDisk, "low on disk space on nn1"),
            Status::already_exists("/x: File exists"),
            Status::unimplemented("no such method"),
            Status::internal("namenode bug"),
        ] {
            assert!(Failure::of(&s).is_none(), "{s:?}");
        }
    }

    /// A status as a namenode sends it, its kind named as on the wire.
    fn tagged(kind: &str, message: &str) -> Status {
        let mut s = Status::unavailable(message);
        s.metadata_mut()
            .insert(rpc_error::ERROR_KIND_KEY, kind.parse().unwrap());
        s
    }

    /// A proxy over `n` members that are never dialed (the scripted
    /// calls below ignore their channel), starting at member 0.
    fn proxy(n: usize, failover_deadline: Duration) -> NamenodeRpc {
        let timeout = Duration::from_secs(1);
        let list = (1..=n)
            .map(|port| {
                let addr = format!("127.0.0.1:{port}");
                Member {
                    endpoint: endpoint(&addr, timeout).unwrap(),
                    addr,
                    channel: None,
                    batcher: None,
                }
            })
            .collect();
        NamenodeRpc {
            shared: Arc::new(Shared {
                timeout,
                failover_deadline,
                group: None,
                members: Mutex::new(Members { list, leader: 0 }),
            }),
        }
    }

    /// Runs one call through `rpc` whose n-th attempt gets `answer(n)`;
    /// the result and the number of attempts.
    async fn scripted(
        rpc: &NamenodeRpc,
        answer: impl Fn(usize) -> std::result::Result<u32, Status>,
    ) -> (Result<u32>, usize) {
        let attempts = std::sync::atomic::AtomicUsize::new(0);
        let r = rpc
            .call("mkdirs", (), |_client, ()| {
                let n = attempts.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let a = answer(n).map(tonic::Response::new);
                async move { a }
            })
            .await;
        (r, attempts.into_inner())
    }

    #[tokio::test]
    async fn a_leader_catching_up_is_asked_again_until_it_serves() {
        let rpc = proxy(3, Duration::from_secs(30));
        let (r, attempts) = scripted(&rpc, |n| match n {
            0 | 1 => Err(tagged("catching-up", "nn1 is catching up: applied 3 of 5")),
            _ => Ok(7),
        })
        .await;
        assert_eq!(r.unwrap(), 7);
        assert_eq!(attempts, 3);
        assert_eq!(
            rpc.members().leader,
            0,
            "every attempt went to the member that leads"
        );
    }

    #[tokio::test]
    async fn a_leader_that_never_catches_up_fails_the_call_at_the_deadline_saying_why() {
        let rpc = proxy(1, Duration::from_millis(100));
        let (r, attempts) = scripted(&rpc, |_| {
            Err(tagged("catching-up", "nn1 is catching up: applied 3 of 5"))
        })
        .await;
        let e = r.unwrap_err();
        assert!(matches!(e, Error::NoNamenode { .. }), "{e}");
        assert!(
            e.to_string()
                .ends_with("127.0.0.1:1: nn1 is catching up: applied 3 of 5"),
            "{e}"
        );
        assert!(attempts > 1, "asked {attempts} times");
    }

    #[tokio::test]
    async fn a_member_hinting_itself_as_leader_sends_the_call_on() {
        let rpc = proxy(3, Duration::from_secs(30));
        let (r, attempts) = scripted(&rpc, |n| match n {
            0 => Err(not_leader(Some("127.0.0.1:1"))),
            _ => Ok(1),
        })
        .await;
        assert_eq!((r.unwrap(), attempts), (1, 2));
        assert_eq!(
            rpc.members().leader,
            1,
            "the second attempt went to the next member"
        );
    }

    #[test]
    fn reasons_name_the_leader() {
        let t = Duration::from_millis(200);
        assert_eq!(
            Failure::NotLeader {
                hint: Some("a:1".into())
            }
            .reason(t),
            "not the leader (leader: a:1)"
        );
        assert_eq!(Failure::Timeout.reason(t), "no answer within 200ms");
        assert_eq!(
            whole_ms(Duration::from_micros(1_503_700)),
            Duration::from_millis(1503)
        );
    }
}
