//! The leader cut off in a network namespace: no split brain, then it
//! rejoins as a follower.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{ensure, Result};
use rfs_client::Client;
use rfs_integration::{
    load::{verify_acks, wait_for, Load},
    require_netns, HaCluster, NetNs, NN1,
};
use rfs_proto::ha::ha_admin_client::HaAdminClient;
use rfs_proto::ha::HaStatusRequest;
use rfs_proto::namenode::{CallId, GetFileInfoRequest, MkdirsRequest};
use rfs_proto::rpc_error;

use super::support::{diff_namespaces, namespace, raw_client, serial};

const PINNED_CALL_TIMEOUT: Duration = Duration::from_secs(1);

/// One mkdirs sent by the pinned client.
#[derive(Debug)]
struct PinnedCall {
    path: String,
    sent: Instant,
    /// `Ok` when acknowledged; else the error kind and message.
    outcome: std::result::Result<(), String>,
}

/// What the pinned client saw.
#[derive(Debug, Default)]
struct PinnedLog {
    calls: Vec<PinnedCall>,
    /// Reads (`get_file_info /pinned`) sent to nn1: when, and whether
    /// answered. A read answered after the cut would be a stale read.
    reads: Vec<(Instant, bool)>,
    /// When nn1's own Status first said it was not leader after the cut.
    stepped_down: Option<Instant>,
}

/// A client inside the namespace, talking to nn1 only (raw gRPC, no
/// failover): mkdirs `/pinned/p<k>` one after another until stopped.
struct Pinned {
    stop: Arc<AtomicBool>,
    cut: Arc<AtomicBool>,
    successes: Arc<AtomicUsize>,
    thread: std::thread::JoinHandle<Result<PinnedLog>>,
}

impl Pinned {
    fn start(ns: &NetNs, addr: String) -> Pinned {
        let stop = Arc::new(AtomicBool::new(false));
        let cut = Arc::new(AtomicBool::new(false));
        let successes = Arc::new(AtomicUsize::new(0));
        let (s, c, n) = (stop.clone(), cut.clone(), successes.clone());
        let thread = ns.run_inside(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?
                .block_on(pinned_calls(addr, s, c, n))
        });
        Pinned {
            stop,
            cut,
            successes,
            thread,
        }
    }

    async fn stop(self) -> Result<PinnedLog> {
        self.stop.store(true, Ordering::SeqCst);
        let thread = self.thread;
        tokio::task::spawn_blocking(move || thread.join())
            .await?
            .map_err(|_| anyhow::anyhow!("pinned client thread panicked"))?
    }
}

async fn pinned_calls(
    addr: String,
    stop: Arc<AtomicBool>,
    cut: Arc<AtomicBool>,
    successes: Arc<AtomicUsize>,
) -> Result<PinnedLog> {
    let mut log = PinnedLog::default();
    let mut k = 0u64;
    while !stop.load(Ordering::SeqCst) {
        k += 1;
        let path = format!("/pinned/p{k}");
        let sent = Instant::now();
        let outcome = match raw_client(&addr, PINNED_CALL_TIMEOUT).await {
            Err(e) => Err(format!("connect: {e:#}")),
            Ok(mut c) => {
                let req = MkdirsRequest {
                    path: path.clone(),
                    mode: 0o755,
                    create_parent: true,
                    call: Some(CallId {
                        client_id: "pinned-in-netns".into(),
                        call_id: k,
                        ..Default::default()
                    }),
                    ..Default::default()
                };
                let outcome = match tokio::time::timeout(PINNED_CALL_TIMEOUT, c.mkdirs(req)).await {
                    Err(_) => Err(format!("no answer within {PINNED_CALL_TIMEOUT:?}")),
                    Ok(Err(status)) => Err(format!(
                        "{}: {}",
                        rpc_error::kind_of(&status).name(),
                        status.message()
                    )),
                    Ok(Ok(_)) => Ok(()),
                };
                let read_sent = Instant::now();
                let read = GetFileInfoRequest {
                    path: "/pinned".into(),
                };
                let answered = matches!(
                    tokio::time::timeout(PINNED_CALL_TIMEOUT, c.get_file_info(read)).await,
                    Ok(Ok(_))
                );
                log.reads.push((read_sent, answered));
                outcome
            }
        };
        if outcome.is_ok() {
            successes.fetch_add(1, Ordering::SeqCst);
        }
        let failed = outcome.is_err();
        log.calls.push(PinnedCall {
            path,
            sent,
            outcome,
        });
        if cut.load(Ordering::SeqCst) && log.stepped_down.is_none() {
            if let Ok(s) = own_role(&addr).await {
                if s != "leader" {
                    log.stepped_down = Some(Instant::now());
                }
            }
        }
        if failed {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    Ok(log)
}

async fn own_role(addr: &str) -> Result<String> {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))?
        .connect_timeout(PINNED_CALL_TIMEOUT)
        .timeout(PINNED_CALL_TIMEOUT)
        .connect()
        .await?;
    let st = HaAdminClient::new(channel)
        .status(HaStatusRequest {})
        .await?
        .into_inner();
    Ok(st.member.map(|m| m.role).unwrap_or_default())
}

/// Where the new leader writes once it is elected; a read of it through
/// nn1 that says "absent" after that write was acknowledged is stale.
const MARKER: &str = "/written-by-the-new-leader";
const READ_TIMEOUT: Duration = Duration::from_millis(300);

/// One read of [`MARKER`] sent to nn1: when, and what it answered (`None`:
/// no answer or an error; `Some(seen)`: whether the marker existed).
type MarkerRead = (Instant, Option<bool>);

/// A reader inside the namespace hammering nn1 with `get_file_info
/// MARKER`, back to back, through the whole election.
struct Reader {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<Result<Vec<MarkerRead>>>,
}

impl Reader {
    fn start(ns: &NetNs, addr: String) -> Reader {
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let thread = ns.run_inside(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?
                .block_on(read_marker(addr, s))
        });
        Reader { stop, thread }
    }

    async fn stop(self) -> Result<Vec<MarkerRead>> {
        self.stop.store(true, Ordering::SeqCst);
        let thread = self.thread;
        tokio::task::spawn_blocking(move || thread.join())
            .await?
            .map_err(|_| anyhow::anyhow!("reader thread panicked"))?
    }
}

async fn read_marker(addr: String, stop: Arc<AtomicBool>) -> Result<Vec<MarkerRead>> {
    let mut reads = Vec::new();
    let mut client = None;
    while !stop.load(Ordering::SeqCst) {
        let sent = Instant::now();
        if client.is_none() {
            client = raw_client(&addr, READ_TIMEOUT).await.ok();
        }
        let Some(c) = client.as_mut() else {
            reads.push((sent, None));
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        };
        let req = GetFileInfoRequest {
            path: MARKER.into(),
        };
        let answer = match tokio::time::timeout(READ_TIMEOUT, c.get_file_info(req)).await {
            Ok(Ok(r)) => Some(r.into_inner().status.is_some()),
            Ok(Err(_)) => None,
            Err(_) => {
                client = None; // a fresh connection after a lost answer
                None
            }
        };
        reads.push((sent, answer));
        if answer.is_none() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    Ok(reads)
}

fn netns(cluster: &HaCluster) -> &NetNs {
    cluster.netns().expect("nn1 runs in a netns")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn isolated_leader_acknowledges_nothing_and_rejoins_as_follower() -> Result<()> {
    require_netns()?;
    let _serial = serial().await;
    let mut cluster = HaCluster::builder().isolate(NN1).start().await?;
    cluster.transfer_leader(NN1).await?;
    // A request on a connection to the cut-off leader is never answered
    // (the packets are dropped), so a client moves on only after its
    // per-attempt timeout: keep it short here.
    let mut config = cluster.client_config();
    config.rpc_timeout = Duration::from_secs(2);
    let load = Load::start(config, "/load", 2);
    load.wait_acked(4, Duration::from_secs(30)).await?;
    let pinned = Pinned::start(netns(&cluster), cluster.member_addr(NN1));
    let served = wait_for(
        "nn1 serving the pinned client",
        Duration::from_secs(20),
        || {
            let n = pinned.successes.load(Ordering::SeqCst);
            async move { Ok((n >= 3).then_some(n)) }
        },
    )
    .await?;

    let reader = Reader::start(netns(&cluster), cluster.member_addr(NN1));
    netns(&cluster).cut()?;
    let cut_done = Instant::now();
    pinned.cut.store(true, Ordering::SeqCst);
    let new = cluster.new_leader_other_than(NN1).await?;
    let elected_seen = Instant::now();
    let new_term = cluster.member_status(new).await?.term;
    let writer = Client::connect(cluster.client_config_for(new)).await?;
    writer.mkdirs(MARKER, true).await?;
    let marker_acked = Instant::now();
    eprintln!(
        "cut after {served} pinned acks; {} leader at term {new_term} {:?} after the cut",
        cluster.member_id(new),
        cut_done.elapsed()
    );
    // The load goes on through the others.
    let acked = load.acked();
    load.wait_acked(acked + 6, Duration::from_secs(40)).await?;
    let load_moved_on = cut_done.elapsed();
    let (logs, errors) = load.finish().await?;
    let pinned_log = pinned.stop().await?;
    let marker_reads = reader.stop().await?;

    let restored_at = Instant::now();
    netns(&cluster).restore()?;
    let rejoined = wait_for(
        "nn1 a follower at the new term",
        Duration::from_secs(30),
        || {
            let c = &cluster;
            async move {
                let st = c.member_status(NN1).await?;
                Ok((st.role == "follower" && st.term >= new_term).then_some(st))
            }
        },
    )
    .await?;
    eprintln!(
        "load +6 acks {load_moved_on:?} after the cut; nn1 following {:?} after the restore: {rejoined:?}",
        restored_at.elapsed()
    );
    cluster.wait_caught_up(NN1).await?;

    // No split brain: nothing sent to nn1 after the cut was acknowledged,
    // and everything it ever acknowledged is in the final namespace.
    let after_cut: Vec<&PinnedCall> = pinned_log
        .calls
        .iter()
        .filter(|c| c.sent >= cut_done)
        .collect();
    eprintln!(
        "pinned client: {} calls after the cut, nn1 stepped down {:?} after it; outcomes: {:?}",
        after_cut.len(),
        pinned_log.stepped_down.map(|t| t - cut_done),
        after_cut
            .iter()
            .map(|c| c.outcome.clone().err().unwrap_or_else(|| "OK".into()))
            .collect::<std::collections::BTreeSet<_>>()
    );
    let acked_after_cut: Vec<&str> = after_cut
        .iter()
        .filter(|c| c.outcome.is_ok())
        .map(|c| c.path.as_str())
        .collect();
    let client = cluster.client().await?;
    let mut lost = Vec::new();
    for c in pinned_log.calls.iter().filter(|c| c.outcome.is_ok()) {
        if client.get_file_info(&c.path).await?.is_none() {
            lost.push(c.path.as_str());
        }
    }
    ensure!(lost.is_empty(), "acknowledged by nn1 but lost: {lost:?}");
    ensure!(
        acked_after_cut.is_empty(),
        "nn1 acknowledged mutations sent after it was cut off: {acked_after_cut:?}"
    );
    // Reads are linearizable: nn1 may answer from its read lease for less
    // than an election timeout after the cut (no one else can have been
    // elected yet), never once another leader exists. The pinned client's
    // reads come a call timeout after the cut: none may be answered.
    let pinned_late = pinned_log
        .reads
        .iter()
        .filter(|(sent, _)| *sent >= cut_done + PINNED_CALL_TIMEOUT)
        .count();
    let pinned_answered = pinned_log
        .reads
        .iter()
        .filter(|(sent, answered)| *sent >= cut_done + PINNED_CALL_TIMEOUT && *answered)
        .count();
    ensure!(
        pinned_late > 0 && pinned_answered == 0,
        "nn1 answered {pinned_answered} of {pinned_late} reads sent a second after it was cut off"
    );
    // The reader hammered nn1 through the whole election: no answer to a
    // read sent once the new leader was seen, and none missing the marker
    // the new leader had acknowledged before the read was sent.
    let after_cut: Vec<&MarkerRead> = marker_reads
        .iter()
        .filter(|(t, _)| *t >= cut_done)
        .collect();
    let lease_answers = after_cut.iter().filter(|(_, a)| a.is_some()).count();
    let after_election: Vec<&&MarkerRead> = after_cut
        .iter()
        .filter(|(t, a)| *t >= elected_seen && a.is_some())
        .collect();
    let stale: Vec<&&MarkerRead> = after_cut
        .iter()
        .filter(|(t, a)| *t >= marker_acked && *a == Some(false))
        .collect();
    eprintln!(
        "reader: {} reads of nn1 after the cut, {lease_answers} answered (under its lease), \
         new leader seen {:?} and the marker acknowledged {:?} after the cut",
        after_cut.len(),
        elected_seen - cut_done,
        marker_acked - cut_done
    );
    // HaCluster's raft timing: 50 ms ticks, elections after 10; a follower
    // votes 9 ticks after the last heartbeat it heard, at the earliest.
    let earliest_election = Duration::from_millis(9 * 50);
    let last_answer = after_cut
        .iter()
        .filter(|(_, a)| a.is_some())
        .map(|(t, _)| *t - cut_done)
        .max();
    eprintln!("reader: the last read nn1 answered was sent {last_answer:?} after the cut");
    ensure!(
        last_answer.is_none_or(|d| d < earliest_election),
        "nn1 answered a read sent {last_answer:?} after the cut, when another member may lead \
         {earliest_election:?} after it"
    );
    ensure!(
        after_cut.len() >= 10,
        "the reader sent only {} reads after the cut",
        after_cut.len()
    );
    ensure!(
        stale.is_empty() && after_election.is_empty(),
        "nn1 answered {} reads sent after a new leader was seen, {} of them stale",
        after_election.len(),
        stale.len()
    );
    let verified = verify_acks(&client, "/load", &logs).await;
    ensure!(
        errors.is_empty(),
        "errors surfaced to the load's clients: {errors:?}"
    );
    verified?;

    // nn1, back as leader, serves exactly the namespace the others built.
    let through_new = namespace(&Client::connect(cluster.client_config_for(new)).await?).await?;
    cluster.transfer_leader(NN1).await?;
    let through_nn1 = namespace(&Client::connect(cluster.client_config_for(NN1)).await?).await?;
    ensure!(
        through_nn1 == through_new,
        "nn1 serves a different namespace after rejoining:\n{}",
        diff_namespaces(&through_new, &through_nn1)
    );
    Ok(())
}
