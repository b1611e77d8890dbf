//! The namenode group behind one failover proxy, [`NamenodeRpc`].
//!
//! It knows every member's RPC address (a lazily connected tonic channel
//! each) and remembers which member answered last: the leader, as far as
//! it knows. A call goes there first; what the member answers decides
//! where the next attempt goes:
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
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use futures::stream::{FuturesUnordered, StreamExt};
use rand::Rng;
use rfs_proto::namenode::client_protocol_client::ClientProtocolClient;
use rfs_proto::rpc_error::{self, RpcErrorKind};
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status};

use crate::error::{chain, one_line, status_reason, Error, Result};

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
    /// and dials them all at once; the first to accept is where calls
    /// start. Fails at once when none accepts: with one member "cannot
    /// reach namenode at {addr}: {reason}", with several "cannot reach any
    /// namenode: {addr}: {reason}; ...". Later calls ride out members
    /// going away.
    pub(crate) async fn connect(
        addrs: &[String],
        timeout: Duration,
        failover_deadline: Duration,
    ) -> Result<NamenodeRpc> {
        let mut list: Vec<Member> = Vec::new();
        for addr in addrs {
            if list.iter().all(|m| m.addr != *addr) {
                list.push(Member {
                    addr: addr.clone(),
                    endpoint: endpoint(addr, timeout)?,
                    channel: None,
                });
            }
        }
        if list.is_empty() {
            return Err(Error::Config("no namenode address is given".into()));
        }
        let mut dials: FuturesUnordered<_> = list
            .iter()
            .enumerate()
            .map(|(i, m)| {
                let ep = m.endpoint.clone();
                async move { (i, dial(&ep, timeout).await) }
            })
            .collect();
        let mut failures: Vec<(usize, String)> = Vec::new();
        let leader = loop {
            match dials.next().await {
                Some((i, Ok(channel))) => {
                    list[i].channel = Some(channel);
                    break i;
                }
                Some((i, Err(reason))) => failures.push((i, reason)),
                None if list.len() == 1 => {
                    return Err(Error::NamenodeUnreachable {
                        addr: list[0].addr.clone(),
                        reason: failures.pop().map(|f| f.1).unwrap_or_default(),
                    })
                }
                None => {
                    failures.sort_by_key(|f| f.0);
                    return Err(Error::NamenodesUnreachable {
                        tried: describe_tried(&list, &failures),
                    });
                }
            }
        };
        drop(dials);
        Ok(NamenodeRpc {
            shared: Arc::new(Shared {
                timeout,
                failover_deadline,
                members: Mutex::new(Members { list, leader }),
            }),
        })
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
        let timeout = self.shared.timeout;
        let deadline = self.shared.failover_deadline;
        let start = Instant::now();
        let mut backoff = BACKOFF_FIRST;
        // Each member tried in this call, with its last failure.
        let mut tried: Vec<(usize, String)> = Vec::new();
        let mut target = self.members().leader;
        loop {
            let (addr, channel) = self.channel(target);
            let attempt = f(ClientProtocolClient::new(channel), req.clone());
            let failure = match tokio::time::timeout(timeout, attempt).await {
                Ok(Ok(resp)) => {
                    self.members().leader = target;
                    return Ok(resp.into_inner());
                }
                Ok(Err(status)) => match Failure::of(&status) {
                    Some(failure) => failure,
                    None => return Err(Error::from_status(&addr, &status)),
                },
                Err(_) => {
                    self.members().list[target].channel = None;
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

    /// The address and channel of member `i`, connecting lazily.
    fn channel(&self, i: usize) -> (String, Channel) {
        let mut members = self.members();
        let m = &mut members.list[i];
        let channel = m
            .channel
            .get_or_insert_with(|| m.endpoint.connect_lazy())
            .clone();
        (m.addr.clone(), channel)
    }

    /// The index of the member at `addr`, added when a leader hint names
    /// one outside the configured list; `None` for an address tonic
    /// cannot use. The hint also becomes the leader other calls start at.
    fn member_for(&self, addr: &str) -> Option<usize> {
        let mut members = self.members();
        let i = match members.list.iter().position(|m| m.addr == addr) {
            Some(i) => i,
            None => match endpoint(addr, self.shared.timeout) {
                Ok(endpoint) => {
                    members.list.push(Member {
                        addr: addr.to_string(),
                        endpoint,
                        channel: None,
                    });
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
                }
            })
            .collect();
        NamenodeRpc {
            shared: Arc::new(Shared {
                timeout,
                failover_deadline,
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
