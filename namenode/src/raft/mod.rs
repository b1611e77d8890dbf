//! The namenodes' raft group (raft-rs): the replicated log that is the
//! namenode's write-ahead log.
//!
//! - `log_file.rs`: the raft log and hard state as an append-only file;
//! - `storage.rs`: raft-rs's `Storage` over that file and the checkpoint;
//! - `node.rs`: the one thread that drives `RawNode` and applies
//!   committed entries to the state machine (`apply.rs`, which knows
//!   nothing of raft);
//! - `retry_sweep.rs`: when the leader proposes the bounded steps that
//!   expire the retry cache;
//! - `name_dir_space.rs`: each member's free space against its reserve;
//! - `handover.rs`: whom a witness or a leader low on disk hands
//!   leadership to;
//! - `transport.rs`: raft messages between members over gRPC.
//!
//! [`RaftHandle`] is what the services use: submit a proposal, wait for a
//! linearizable read point, ask who leads, learn that the loop failed.

pub mod handover;
pub mod install_holds;
pub mod log_file;
pub mod name_dir_space;
pub mod node;
pub mod read_lease;
pub mod retry_sweep;
pub mod snapshot_chunks;
pub mod storage;
pub mod syncer;
pub mod transport;

use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;

use raft::RawNode;
use tokio::sync::{oneshot, watch};

use crate::checkpoint::Checkpointer;
use crate::config::{Config, Member};
use crate::error::{NamenodeError, Result};
use crate::meta_op::{MetaResult, Proposal};
use crate::namespace::{counter, Namespace};
use name_dir_space::NameDirSpace;
use node::{Inbox, Node, NodeSettings, NodeStatus, Role};
use read_lease::ReadLease;
use storage::RaftStorage;
use transport::{PeerService, Peers};

/// A witness waits this many election timeouts before campaigning, so a
/// full member normally wins first. It must still be able to campaign: when
/// a leader dies, the witness may hold log entries the surviving full
/// member lacks, and then only the witness can win an election (the full
/// member's vote request is refused as less up to date). It then serves
/// nothing and at once hands leadership to the full member, after catching
/// it up (`node.rs`).
const WITNESS_ELECTION_DELAY: usize = 2;

#[derive(Clone)]
pub struct RaftHandle {
    inbox: mpsc::Sender<Inbox>,
    lease: Arc<ReadLease>,
    status: watch::Receiver<NodeStatus>,
    members: Vec<Member>,
    me: u64,
}

/// The running raft loop: its handle and its thread.
pub struct RaftGroup {
    pub handle: RaftHandle,
    pub peer_service: PeerService,
    thread: Option<JoinHandle<Result<()>>>,
    checkpointer: Checkpointer,
}

/// How often the namespace's changes are checkpointed: what a
/// restart replays at most, and how far the log trails compaction.
const CHECKPOINT_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

impl RaftGroup {
    /// Opens the raft log in `ns`'s store and starts the loop on its own
    /// thread; peers are reached from `rt`.
    pub fn start(
        config: &Config,
        ns: Namespace,
        rt: &tokio::runtime::Handle,
        max_message: usize,
    ) -> Result<RaftGroup> {
        let members = config.members();
        let me = config.raft_id();
        let voters: Vec<u64> = (1..=members.len() as u64).collect();
        let mut storage = RaftStorage::open(ns.clone(), &config.name_dir, &voters)?;
        let mut applied = ns.counter(counter::APPLIED_INDEX)?;
        if applied > 0 && storage.last() == 0 {
            return Err(NamenodeError::Store(
                "the metadata store predates the raft log (an older rfs format); \
                 start from an empty name dir"
                    .into(),
            ));
        }
        // Only committed entries are ever applied; a crash may have kept
        // the applied state but not the commit index written before it.
        if applied > storage.hard_state().commit {
            storage.set_commit(applied)?;
        }
        applied = applied.max(storage.snapshot_index());
        let ha = &config.ha;
        let mut rc = raft::Config {
            id: me,
            election_tick: ha.election_ticks,
            heartbeat_tick: ha.heartbeat_ticks,
            applied,
            max_size_per_msg: 1024 * 1024,
            max_inflight_msgs: 256,
            check_quorum: true,
            pre_vote: true,
            read_only_option: raft::ReadOnlyOption::Safe,
            // Followers learn the commit index from the next append or
            // heartbeat instead of an extra broadcast round per commit.
            skip_bcast_commit: true,
            priority: if config.witness { 0 } else { 1 },
            ..Default::default()
        };
        if config.witness {
            rc.min_election_tick = WITNESS_ELECTION_DELAY * ha.election_ticks;
            rc.max_election_tick = 2 * WITNESS_ELECTION_DELAY * ha.election_ticks;
        }
        rc.validate()
            .map_err(|e| NamenodeError::Config(format!("raft settings: {e}")))?;
        let logger = slog::Logger::root(slog::Discard, slog::o!());
        let mut raw = RawNode::new(&rc, storage, &logger)
            .map_err(|e| NamenodeError::Store(format!("starting raft: {e}")))?;
        if members.len() == 1 {
            // Alone, there is nobody to wait for: lead at once.
            raw.campaign()
                .map_err(|e| NamenodeError::Store(format!("starting raft: {e}")))?;
        }
        let (tx, rx) = mpsc::channel();
        let space = Arc::new(NameDirSpace::new(
            config.name_dir.clone(),
            config.name_dir_reserved_bytes(),
            members.len(),
        ));
        let peers = Peers::start(me, members.clone(), rt, tx.clone(), max_message, &space);
        let (status_tx, status_rx) = watch::channel(NodeStatus::default());
        let lease = Arc::new(ReadLease::default());
        let settings = NodeSettings {
            tick: ha.tick(),
            snapshot_entries: ha.snapshot_entries,
            witness: config.witness,
            leaders: members
                .iter()
                .enumerate()
                .filter(|(_, m)| !m.witness)
                .map(|(i, _)| i as u64 + 1)
                .collect(),
            space: space.clone(),
            election_ticks: ha.election_ticks,
            lease: lease.clone(),
            lease_for: read_lease::duration(ha.tick(), ha.election_ticks),
        };
        let checkpointer = Checkpointer::start(ns.clone(), CHECKPOINT_EVERY)?;
        let syncer = syncer::Syncer::start(tx.clone())?;
        let node = Node::new(raw, ns, rx, peers, status_tx, settings, syncer);
        let thread = std::thread::Builder::new()
            .name("raft".into())
            .spawn(move || node.run())
            .map_err(|e| NamenodeError::Store(format!("cannot start the raft loop: {e}")))?;
        if members.len() == 1 {
            // Serve only once the loop has taken the lead it already won,
            // so the first requests do not hear "not the leader".
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
            while !status_rx.borrow().serving && std::time::Instant::now() < deadline {
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
        }
        Ok(RaftGroup {
            handle: RaftHandle {
                inbox: tx.clone(),
                lease,
                status: status_rx,
                members: members.clone(),
                me,
            },
            peer_service: PeerService {
                inbox: tx,
                members: members.len(),
                space,
                stopping: transport::never_stopping(),
            },
            thread: Some(thread),
            checkpointer,
        })
    }

    /// Stops the loop and waits for its final checkpoint (blocking).
    pub fn stop(&mut self) {
        self.stop_with(true);
    }

    /// Stops the loop leaving the store as kill -9 would: the last
    /// periodic checkpoint and the log, no final checkpoint. For crash
    /// tests.
    pub fn halt(&mut self) {
        self.stop_with(false);
    }

    fn stop_with(&mut self, checkpoint: bool) {
        let _ = self.handle.inbox.send(Inbox::Stop { checkpoint });
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.checkpointer.stop();
    }
}

impl Drop for RaftGroup {
    fn drop(&mut self) {
        self.stop();
    }
}

impl RaftHandle {
    pub fn status(&self) -> NodeStatus {
        self.status.borrow().clone()
    }

    /// Completes when the loop has stopped because a write failed, with
    /// that failure; never after a clean stop. The member must then exit:
    /// it can make nothing durable any more.
    pub async fn failed(&self) -> NamenodeError {
        let mut w = self.status.clone();
        let stopped = w.wait_for(|s| s.failure.is_some()).await;
        match stopped.ok().and_then(|s| s.failure.clone()) {
            Some(f) => NamenodeError::Store(f),
            None => std::future::pending().await,
        }
    }

    /// Waits until this member leads (tests, tools).
    pub async fn wait_leader(&self) -> Result<()> {
        let mut w = self.status.clone();
        w.wait_for(|s| s.serving || s.stopped)
            .await
            .map_err(|_| stopped())?;
        self.check_leader()
    }

    /// Changes of [`RaftHandle::status`].
    pub fn watch(&self) -> watch::Receiver<NodeStatus> {
        self.status.clone()
    }

    pub fn members(&self) -> &[Member] {
        &self.members
    }

    /// This member's raft id.
    pub fn id(&self) -> u64 {
        self.me
    }

    pub fn member(&self, raft_id: u64) -> Option<&Member> {
        raft_id
            .checked_sub(1)
            .and_then(|i| self.members.get(i as usize))
    }

    /// Ok when this member leads and has caught up with what earlier
    /// leaders committed. A leader still applying that says so
    /// (`CatchingUp`: ask it again shortly); anyone else answers
    /// `NotLeader` with the leader's address when it knows one that
    /// serves (never its own, nor a witness's).
    pub fn check_leader(&self) -> Result<()> {
        let s = self.status.borrow();
        if s.serving {
            return Ok(());
        }
        let me = self.member(self.me);
        let witness = me.is_none_or(|m| m.witness);
        if s.role == Role::Leader && !witness && !s.stopped && s.applied < s.term_start {
            return Err(NamenodeError::CatchingUp {
                member: me.map(|m| m.id.clone()).unwrap_or_default(),
                applied: s.applied,
                needed: s.term_start,
            });
        }
        let leader = (s.leader != self.me)
            .then(|| self.member(s.leader))
            .flatten()
            .filter(|m| !m.witness);
        Err(NamenodeError::NotLeader {
            leader: leader.map(|m| m.rpc_addr.to_string()),
        })
    }

    pub fn is_leader(&self) -> bool {
        self.check_leader().is_ok()
    }

    /// Replicates and applies `proposal`; its result once applied here.
    pub async fn submit(&self, proposal: Proposal) -> Result<MetaResult> {
        self.check_leader()?;
        let (done, wait) = oneshot::channel();
        self.send(Inbox::Propose { proposal, done })?;
        wait.await.map_err(|_| stopped())?
    }

    /// Waits until this member, still leader, has applied everything
    /// committed when the call was made: a read after it is linearizable.
    pub async fn read_barrier(&self) -> Result<()> {
        self.check_leader()?;
        if self.lease.holds(std::time::Instant::now()) {
            metrics::counter!("rfs_namenode_lease_reads_total").increment(1);
            return Ok(());
        }
        let (done, wait) = oneshot::channel();
        self.send(Inbox::Read { done })?;
        wait.await.map_err(|_| stopped())?
    }

    /// Hands leadership to member `to`; the new term once it leads.
    pub async fn transfer(&self, to: u64) -> Result<u64> {
        let (done, wait) = oneshot::channel();
        self.send(Inbox::Transfer { to, done })?;
        wait.await.map_err(|_| stopped())?
    }

    fn send(&self, m: Inbox) -> Result<()> {
        self.inbox.send(m).map_err(|_| stopped())
    }
}

/// The loop has stopped (shutdown, or a failed write and the member is
/// exiting): whatever was asked may or may not have happened, so the
/// caller is sent on to another member, where its retry finds out.
fn stopped() -> NamenodeError {
    NamenodeError::NotLeader { leader: None }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn handle(me: u64, status: NodeStatus) -> (RaftHandle, watch::Sender<NodeStatus>) {
        let members = ["nn1", "nn2", "witness"]
            .iter()
            .enumerate()
            .map(|(i, id)| Member {
                id: id.to_string(),
                rpc_addr: format!("127.0.0.1:{}", 8020 + i).parse().unwrap(),
                witness: *id == "witness",
            })
            .collect();
        let (tx, rx) = watch::channel(status);
        let handle = RaftHandle {
            inbox: mpsc::channel().0,
            lease: Arc::default(),
            status: rx,
            members,
            me,
        };
        (handle, tx)
    }

    fn leader_of_term_starting_at(term_start: u64, applied: u64) -> NodeStatus {
        NodeStatus {
            role: Role::Leader,
            leader: 1,
            applied,
            commit: applied,
            last_index: term_start,
            term_start,
            ..Default::default()
        }
    }

    #[test]
    fn a_leader_still_applying_says_so_instead_of_naming_itself() {
        let (h, tx) = handle(1, leader_of_term_starting_at(5, 3));
        let err = h.check_leader().unwrap_err();
        assert_eq!(err.to_string(), "nn1 is catching up: applied 3 of 5");
        assert_eq!(err.kind(), rfs_proto::rpc_error::RpcErrorKind::CatchingUp);
        tx.send_modify(|s| {
            s.applied = 5;
            s.serving = true;
        });
        assert!(h.check_leader().is_ok());
    }

    #[test]
    fn a_member_not_serving_names_a_leader_that_serves_never_itself_or_a_witness() {
        let following = |leader| NodeStatus {
            leader,
            ..Default::default()
        };
        let hint = |me, status| match handle(me, status).0.check_leader() {
            Err(NamenodeError::NotLeader { leader }) => leader,
            other => panic!("{other:?}"),
        };
        assert_eq!(hint(2, following(1)).as_deref(), Some("127.0.0.1:8020"));
        assert_eq!(hint(2, following(3)), None, "the witness serves nothing");
        assert_eq!(hint(2, following(0)), None, "no leader known");
        // A leader whose loop stopped, and a witness that leads.
        let stopped = NodeStatus {
            stopped: true,
            ..leader_of_term_starting_at(5, 3)
        };
        assert_eq!(hint(1, stopped), None);
        let witness_leads = NodeStatus {
            leader: 3,
            ..leader_of_term_starting_at(5, 3)
        };
        assert_eq!(hint(3, witness_leads), None);
    }
}
