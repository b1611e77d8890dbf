//! The raft loop: one thread owns the `RawNode`, its storage and the state
//! machine. Everything else talks to it through [`Inbox`] messages.
//!
//! Each wake takes every queued inbox message (up to [`MAX_BATCH`]), so a
//! burst of proposals becomes one append and one round of `MsgAppend`s,
//! and every Ready written while an `fdatasync` runs shares the next one:
//! group commit falls out of the loop's shape. Then it ticks
//! when the interval has passed and handles `Ready` in the order raft-rs
//! documents (`RawNode::ready`/`advance`).
//!
//! A proposal is answered after it is applied, by its id carried in the
//! entry's context (a per-process nonce plus a counter, so an entry written
//! by an earlier incarnation never answers a new caller). A proposal that
//! cannot be placed, or whose leader steps down, is answered `NotLeader`:
//! the client retries with the same call id and the retry cache answers.
//!
//! Nothing is acknowledged before it is durable here and on a majority:
//! raft-rs hands out as committed only entries this member has persisted
//! (`min(committed, persisted)`), and it counts them persisted only at
//! `on_persist_ready`, which the syncer thread triggers after the
//! `fdatasync` covering that `Ready` (`syncer.rs`; the loop meanwhile
//! writes and replicates the next ones), and a follower's acknowledgements
//! and votes leave only then. A failed write or `fdatasync` of the log, a
//! compaction or a snapshot install stops the loop: [`Node::run`] returns the
//! error, the namenode exits non-zero, and every waiting caller is told
//! `NotLeader` (outcome unknown here; its retry on the new leader finds
//! it out). A member that stayed up after such a failure could only
//! answer from a state it can no longer make durable.
//!
//! A leader whose name dir is below its reserve (`name_dir_space.rs`)
//! hands leadership to a full member with room (`handover.rs`); while
//! none has room it refuses proposals with `LowOnDisk` and goes on
//! serving reads.

use std::collections::HashMap;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use raft::prelude::{Entry, EntryType, Message, MessageType, Snapshot};
use raft::{RawNode, SnapshotStatus, StateRole};
use tokio::sync::{oneshot, watch};

use super::handover::{self, Candidate};
use super::install_holds::InstallHolds;
use super::name_dir_space::NameDirSpace;
use super::read_lease::ReadLease;
use super::retry_sweep::RetrySweep;
use super::storage::RaftStorage;
use super::syncer::{Job, Persisted, Syncer};
use super::transport::Peers;
use crate::apply;
use crate::error::{NamenodeError, Result};
use crate::meta_op::{MetaResult, Proposal};
use crate::namespace::Namespace;

/// Most inbox messages handled per wake (bounds one Ready's size).
const MAX_BATCH: usize = 8192;

pub enum Inbox {
    Propose {
        proposal: Proposal,
        done: oneshot::Sender<Result<MetaResult>>,
    },
    /// Answered once this member, as leader, has applied everything that
    /// was committed when the read arrived (ReadIndex).
    Read {
        done: oneshot::Sender<Result<()>>,
    },
    Peer(Box<Message>),
    Transfer {
        to: u64,
        done: oneshot::Sender<Result<u64>>,
    },
    Unreachable(u64),
    SnapshotSent {
        to: u64,
        ok: bool,
    },
    /// The syncer made Readies durable, up to a number (`syncer.rs`);
    /// `jobs` of them.
    Persisted {
        persisted: Persisted,
        jobs: usize,
    },
    /// The syncer's `fdatasync` failed: the member must stop.
    PersistFailed(String),
    /// Ends the loop; `checkpoint: false` leaves the store as a kill -9
    /// would (crash tests).
    Stop {
        checkpoint: bool,
    },
}

/// What the rest of the namenode sees of raft, published after every wake.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NodeStatus {
    pub role: Role,
    /// Leader AND has applied everything earlier leaders committed: only
    /// then may it check requests against its state.
    pub serving: bool,
    pub term: u64,
    /// Raft id of the leader; 0 while none is known.
    pub leader: u64,
    pub commit: u64,
    pub applied: u64,
    pub last_index: u64,
    pub snapshot_index: u64,
    /// On the leader: each member's matched index.
    pub matched: Vec<(u64, u64)>,
    /// On the leader: the index of the entry that opened its term; it
    /// serves once it has applied it. 0 on other members.
    pub term_start: u64,
    /// Log fsyncs so far: far fewer than entries when batching works.
    pub syncs: u64,
    /// This member's name dir is below its reserve.
    pub low_on_disk: bool,
    /// Free bytes on this member's name dir at the last measurement.
    pub name_dir_free: u64,
    /// The loop stopped (shutdown or a store failure).
    pub stopped: bool,
    /// Why the loop stopped, when a write failed (one line).
    pub failure: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Role {
    #[default]
    Follower,
    PreCandidate,
    Candidate,
    Leader,
}

impl Role {
    pub fn name(self) -> &'static str {
        match self {
            Role::Follower => "follower",
            Role::PreCandidate => "pre-candidate",
            Role::Candidate => "candidate",
            Role::Leader => "leader",
        }
    }
}

impl From<StateRole> for Role {
    fn from(r: StateRole) -> Role {
        match r {
            StateRole::Follower => Role::Follower,
            StateRole::PreCandidate => Role::PreCandidate,
            StateRole::Candidate => Role::Candidate,
            StateRole::Leader => Role::Leader,
        }
    }
}

pub struct NodeSettings {
    pub tick: Duration,
    pub snapshot_entries: u64,
    pub witness: bool,
    /// Raft ids of members that may lead (not witnesses).
    pub leaders: Vec<u64>,
    /// This member's name dir against its reserve, and what the others
    /// said of theirs.
    pub space: Arc<NameDirSpace>,
    pub election_ticks: usize,
    /// The leader's read lease (`read_lease.rs`) and how long one
    /// acknowledged round earns.
    pub lease: Arc<ReadLease>,
    pub lease_for: Duration,
}

struct Batch {
    waiters: Vec<oneshot::Sender<Result<()>>>,
    issued_tick: u64,
    /// When the round was handed to raft-rs: the lease it earns starts
    /// here.
    sent: Instant,
}

pub struct Node {
    raw: RawNode<RaftStorage>,
    ns: Namespace,
    rx: Receiver<Inbox>,
    peers: Peers,
    status: watch::Sender<NodeStatus>,
    settings: NodeSettings,
    nonce: u64,
    next_id: u64,
    proposals: HashMap<u64, oneshot::Sender<Result<MetaResult>>>,
    reads_new: Vec<oneshot::Sender<Result<()>>>,
    reads_in_flight: HashMap<u64, Batch>,
    next_read: u64,
    /// Read batches confirmed at an index, waiting for it to be applied.
    reads_confirmed: Vec<(u64, Vec<oneshot::Sender<Result<()>>>)>,
    transfer: Option<(u64, oneshot::Sender<Result<u64>>, Instant)>,
    ticks: u64,
    role: Role,
    syncs: u64,
    /// Index of the empty entry that opened this member's term as leader.
    term_start: u64,
    retry_sweep: RetrySweep,
    /// Why the loop stopped, once a write failed.
    failure: Option<String>,
    /// Whether stopping checkpoints the namespace (not when halted).
    final_checkpoint: bool,
    syncer: Syncer,
    /// A failure the syncer reported, ending the loop at the next Ready.
    persist_failure: Option<NamenodeError>,
    /// On the leader: members installing a snapshot, whose log after it
    /// compaction keeps.
    install_holds: InstallHolds,
}

impl Node {
    pub fn new(
        raw: RawNode<RaftStorage>,
        ns: Namespace,
        rx: Receiver<Inbox>,
        peers: Peers,
        status: watch::Sender<NodeStatus>,
        settings: NodeSettings,
        syncer: Syncer,
    ) -> Node {
        Node {
            raw,
            ns,
            rx,
            peers,
            status,
            settings,
            nonce: rand::random(),
            next_id: 0,
            proposals: HashMap::new(),
            reads_new: Vec::new(),
            reads_in_flight: HashMap::new(),
            next_read: 0,
            reads_confirmed: Vec::new(),
            transfer: None,
            ticks: 0,
            role: Role::Follower,
            syncs: 0,
            term_start: u64::MAX,
            retry_sweep: RetrySweep::default(),
            failure: None,
            final_checkpoint: true,
            syncer,
            persist_failure: None,
            install_holds: InstallHolds::default(),
        }
    }

    /// Runs until [`Inbox::Stop`] or a store failure; then flushes. The
    /// failure is returned (and published): the member must not go on.
    pub fn run(mut self) -> Result<()> {
        let tick = self.settings.tick;
        let mut next_tick = Instant::now() + tick;
        self.settings.space.measure();
        // A group of one has already elected itself: say so at once.
        let mut result = self.on_ready();
        self.publish(false);
        let result = loop {
            if result.is_err() {
                break result;
            }
            let wait = next_tick.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(wait) {
                Ok(Inbox::Stop { checkpoint }) => {
                    self.final_checkpoint = checkpoint;
                    break Ok(());
                }
                Err(RecvTimeoutError::Disconnected) => break Ok(()),
                Ok(m) => {
                    let mut stop = self.handle(m);
                    for _ in 1..MAX_BATCH {
                        match self.rx.try_recv() {
                            Ok(Inbox::Stop { checkpoint }) => {
                                self.final_checkpoint = checkpoint;
                                stop = true
                            }
                            Ok(m) => stop |= self.handle(m),
                            Err(_) => break,
                        }
                    }
                    if stop {
                        break Ok(());
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
            }
            if Instant::now() >= next_tick {
                self.raw.tick();
                self.ticks += 1;
                next_tick = Instant::now() + tick;
                self.on_tick();
            }
            self.issue_reads();
            result = self.on_ready();
            self.publish(false);
        };
        if let Err(e) = &result {
            tracing::error!("raft loop stopped; this member stops: {e}");
        } else if !self.final_checkpoint {
            tracing::warn!("raft loop halted without a final checkpoint");
        } else if let Err(e) = self.raw.store().flush_state() {
            tracing::error!("final checkpoint of the metadata store failed: {e}");
        }
        // Outcome unknown here: the caller's retry (same call id) on the
        // next leader finds it out.
        self.fail_all(|| NamenodeError::NotLeader { leader: None });
        self.failure = result.as_ref().err().map(|e| e.to_string());
        self.publish(true);
        result
    }

    /// Returns true when asked to stop.
    fn handle(&mut self, m: Inbox) -> bool {
        match m {
            Inbox::Propose { proposal, done } => self.propose(proposal, Some(done)),
            Inbox::Read { done } => {
                if self.role == Role::Leader {
                    self.reads_new.push(done);
                } else {
                    let _ = done.send(Err(self.not_leader()));
                }
            }
            Inbox::Peer(mut m) => {
                // A member whose name dir was wiped gets heartbeats with the
                // commit index the leader remembers from before; raft-rs
                // would panic committing past its (now empty) log. Commit
                // is only a hint, so cap it; the leader then finds the
                // member behind and sends it a snapshot.
                let last = self.raw.raft.raft_log.last_index();
                if m.get_msg_type() == MessageType::MsgHeartbeat && m.commit > last {
                    m.commit = last;
                }
                // Before this member restarted it may have acknowledged a
                // round that earned the leader a read lease: refuse votes
                // for an election timeout, as if it had just heard the
                // leader (`read_lease.rs`).
                let vote = matches!(
                    m.get_msg_type(),
                    MessageType::MsgRequestVote | MessageType::MsgRequestPreVote
                );
                if vote
                    && self.ticks < self.settings.election_ticks as u64
                    && m.context[..] != *raft::CAMPAIGN_TRANSFER
                {
                    tracing::debug!("vote request from {} refused: just started", m.from);
                    return false;
                }
                if let Err(e) = self.raw.step(*m) {
                    tracing::debug!("raft message dropped: {e}");
                }
            }
            Inbox::Transfer { to, done } => self.start_transfer(to, done),
            Inbox::Unreachable(id) => self.raw.report_unreachable(id),
            Inbox::SnapshotSent { to, ok } => {
                let status = if ok {
                    SnapshotStatus::Finish
                } else {
                    self.install_holds.failed(to);
                    SnapshotStatus::Failure
                };
                self.raw.report_snapshot(to, status);
            }
            Inbox::Persisted { persisted, jobs } => self.on_persisted(persisted, jobs),
            Inbox::PersistFailed(e) => self.persist_failure = Some(NamenodeError::Store(e)),
            Inbox::Stop { checkpoint } => {
                self.final_checkpoint = checkpoint;
                return true;
            }
        }
        false
    }

    /// `NotLeader` naming the member to ask instead: the one leadership
    /// is being handed to, else the leader; never this member itself nor
    /// a witness (they would only send the caller back).
    fn not_leader(&self) -> NamenodeError {
        let raft = &self.raw.raft;
        let to = raft.lead_transferee.unwrap_or(raft.leader_id);
        let servable = to != raft.id && self.settings.leaders.contains(&to);
        NamenodeError::NotLeader {
            leader: servable.then(|| self.peers.addr_of(to)).flatten(),
        }
    }

    fn propose(&mut self, proposal: Proposal, done: Option<oneshot::Sender<Result<MetaResult>>>) {
        if self.role != Role::Leader || self.settings.witness {
            if let Some(done) = done {
                let _ = done.send(Err(self.not_leader()));
            }
            return;
        }
        if self.settings.space.low() {
            // Hand over now if a member has room (the tick may not have
            // seen it yet); else refuse: the caller must not wait.
            self.hand_over();
            let err = if self.raw.raft.lead_transferee.is_some() {
                self.not_leader()
            } else {
                NamenodeError::LowOnDisk {
                    member: self.peers.name_of(self.raw.raft.id),
                    free: self.settings.space.free_bytes(),
                    reserved: self.settings.space.reserved_bytes(),
                }
            };
            if let Some(done) = done {
                let _ = done.send(Err(err));
            }
            return;
        }
        let data = match proposal.encode() {
            Ok(d) => d,
            Err(e) => {
                if let Some(done) = done {
                    let _ = done.send(Err(e.into()));
                }
                return;
            }
        };
        let id = self.next_id;
        self.next_id += 1;
        let mut context = Vec::with_capacity(16);
        context.extend_from_slice(&self.nonce.to_be_bytes());
        context.extend_from_slice(&id.to_be_bytes());
        match self.raw.propose(context, data) {
            Ok(()) => {
                if let Some(done) = done {
                    self.proposals.insert(id, done);
                }
            }
            Err(e) => {
                tracing::debug!("proposal dropped: {e}");
                if let Some(done) = done {
                    let _ = done.send(Err(self.not_leader()));
                }
            }
        }
    }

    fn start_transfer(&mut self, to: u64, done: oneshot::Sender<Result<u64>>) {
        if self.role != Role::Leader {
            let _ = done.send(Err(self.not_leader()));
            return;
        }
        if to == self.raw.raft.id {
            let _ = done.send(Ok(self.raw.raft.term));
            return;
        }
        if let Some((_, old, _)) = self.transfer.take() {
            let _ = old.send(Err(NamenodeError::InvalidArgument(
                "superseded by another leadership transfer".into(),
            )));
        }
        // The target campaigns past the followers' refusal to vote, so no
        // read may lean on that refusal from here on.
        self.settings.lease.drop_lease();
        self.raw.transfer_leader(to);
        // raft-rs abandons a transfer after an election timeout; allow two.
        let timeout = self.settings.tick * (2 * self.raw.raft.election_timeout() as u32 + 2);
        self.transfer = Some((to, done, Instant::now() + timeout));
    }

    fn on_tick(&mut self) {
        // A read index request is dropped by a leader that has not yet
        // committed in its term; ask again until it answers.
        let resend: Vec<u64> = self
            .reads_in_flight
            .iter()
            .filter(|(_, b)| self.ticks - b.issued_tick >= 3)
            .map(|(ctx, _)| *ctx)
            .collect();
        for ctx in resend {
            if let Some(b) = self.reads_in_flight.get_mut(&ctx) {
                b.issued_tick = self.ticks;
            }
            self.raw.read_index(ctx.to_be_bytes().to_vec());
        }
        // Renew the lease before it runs out, so that steady reads never
        // wait for a round.
        let lease = &self.settings.lease;
        if self.role == Role::Leader
            && self.raw.raft.lead_transferee.is_none()
            && self.reads_in_flight.is_empty()
            && lease.left(Instant::now()) < self.settings.lease_for / 2
        {
            self.issue_read_round();
        }
        if self.role == Role::Leader && !self.settings.witness {
            if let Some(step) = self.retry_sweep.on_tick(self.ticks, crate::clock::now_ms()) {
                self.propose(Proposal::new(step), None);
            }
        }
        if let Some((to, _, deadline)) = &self.transfer {
            if Instant::now() >= *deadline {
                let (to, done) = (*to, self.transfer.take().expect("checked").1);
                let _ = done.send(Err(NamenodeError::Internal(format!(
                    "leadership transfer to member {} did not complete in time; \
                     is it running and caught up?",
                    self.peers.name_of(to)
                ))));
            }
        }
        self.settings.space.measure();
        self.hand_over();
    }

    /// A witness that ends up leading (it held entries the surviving full
    /// member lacked) hands over as soon as a full member answers; a
    /// leader low on disk, as soon as a full member with room answers.
    /// raft-rs catches that member up before handing over.
    fn hand_over(&mut self) {
        let low = self.settings.space.low();
        if self.role != Role::Leader
            || !(self.settings.witness || low)
            || self.raw.raft.lead_transferee.is_some()
        {
            return;
        }
        let raft = &self.raw.raft;
        let space = &self.settings.space;
        let candidates = self.settings.leaders.iter().filter_map(|&id| {
            let p = raft.prs().get(id)?;
            (id != raft.id).then(|| Candidate {
                id,
                active: p.recent_active,
                matched: p.matched,
                low_on_disk: space.peer_low(id),
            })
        });
        let Some(to) = handover::successor(candidates, !self.settings.witness) else {
            return;
        };
        tracing::info!(
            "{}; handing leadership to {}",
            if self.settings.witness {
                "witness is leader"
            } else {
                "name dir below its reserve"
            },
            self.peers.name_of(to)
        );
        self.raw.transfer_leader(to);
    }

    fn issue_reads(&mut self) {
        if self.reads_new.is_empty() {
            return;
        }
        self.issue_read_round();
    }

    /// One ReadIndex round for every read queued meanwhile (none when it
    /// only renews the lease).
    fn issue_read_round(&mut self) {
        let ctx = self.next_read;
        self.next_read += 1;
        self.reads_in_flight.insert(
            ctx,
            Batch {
                waiters: std::mem::take(&mut self.reads_new),
                issued_tick: self.ticks,
                sent: Instant::now(),
            },
        );
        self.raw.read_index(ctx.to_be_bytes().to_vec());
    }

    /// Handles Readies until raft-rs has none (a Ready persisted at once
    /// can make the next one: commits, messages).
    fn on_ready(&mut self) -> Result<()> {
        if let Some(e) = self.persist_failure.take() {
            return Err(e);
        }
        while self.raw.has_ready() {
            self.handle_ready()?;
        }
        self.release_reads();
        self.maybe_compact()
    }

    fn handle_ready(&mut self) -> Result<()> {
        let mut rd = self.raw.ready();
        if let Some(ss) = rd.ss() {
            self.on_role(ss.raft_state.into());
        }
        let messages = rd.take_messages();
        self.hold_for_snapshots(&messages);
        self.peers.send(messages);
        if !rd.snapshot().is_empty() {
            self.install(rd.snapshot())?;
        }
        for rs in rd.take_read_states() {
            let ctx = rs
                .request_ctx
                .as_slice()
                .try_into()
                .map(u64::from_be_bytes)
                .ok();
            if let Some(batch) = ctx.and_then(|c| self.reads_in_flight.remove(&c)) {
                if self.role == Role::Leader && self.raw.raft.lead_transferee.is_none() {
                    let lease = &self.settings.lease;
                    lease.extend(batch.sent, self.settings.lease_for, rs.index);
                }
                self.reads_confirmed.push((rs.index, batch.waiters));
            }
        }
        // The hard state (with the commit index) goes first: applied must
        // never be ahead of the recorded commit after a crash.
        if let Some(hs) = rd.hs() {
            self.raw.mut_store().set_hard_state(hs)?;
        }
        self.apply(rd.take_committed_entries())?;
        if !rd.entries().is_empty() {
            let entries = rd.take_entries();
            self.raw.mut_store().append(&entries)?;
        }
        // Written (raft-rs reads it back from the store); durable once the
        // syncer says so, while this loop goes on (`syncer.rs`).
        let number = rd.number();
        let must_sync = rd.must_sync();
        let messages = rd.take_persisted_messages();
        // After a snapshot raft-rs applies up to it at once, so it must
        // count as persisted now: sync here (snapshots are rare), which
        // covers every earlier write too.
        let inline = !rd.snapshot().is_empty();
        self.raw.advance_append_async(rd);
        if inline || (!must_sync && self.syncer.idle()) {
            // Durable now: nothing to wait for behind the syncer.
            if inline {
                self.raw.store().sync()?;
            }
            let persisted = Persisted {
                number,
                messages,
                synced: inline,
            };
            self.on_persisted(persisted, 0);
        } else {
            let file = self.raw.store().sync_handle();
            self.syncer.submit(Job {
                number,
                must_sync,
                file,
                messages,
            })?;
        }
        self.raw.advance_apply();
        self.settings
            .lease
            .set_applied(self.raw.raft.raft_log.applied);
        Ok(())
    }

    /// Ready `p.number` and those before it are durable; `jobs` of them
    /// went through the syncer.
    fn on_persisted(&mut self, p: Persisted, jobs: usize) {
        self.syncer.done(jobs);
        if p.synced {
            self.syncs += 1;
            metrics::counter!("rfs_namenode_raft_fsyncs_total").increment(1);
        }
        self.peers.send(p.messages);
        self.raw.on_persist_ready(p.number);
    }

    fn on_role(&mut self, role: Role) {
        if role == self.role {
            return;
        }
        tracing::info!(
            "raft role {} -> {} at term {} (leader: {})",
            self.role.name(),
            role.name(),
            self.raw.raft.term,
            self.peers.name_of(self.raw.raft.leader_id)
        );
        let was_leader = self.role == Role::Leader;
        self.settings.lease.drop_lease();
        self.install_holds = InstallHolds::default();
        self.role = role;
        self.term_start = if role == Role::Leader {
            // raft-rs appended the term's empty entry on becoming leader.
            self.raw.raft.raft_log.last_index()
        } else {
            u64::MAX
        };
        if was_leader {
            self.fail_all(|| NamenodeError::NotLeader { leader: None });
        }
    }

    /// Answers every waiting caller with `err()`: their outcome is now
    /// unknown here, and a retry (same call id) finds it out.
    fn fail_all(&mut self, err: impl Fn() -> NamenodeError) {
        for (_, done) in self.proposals.drain() {
            let _ = done.send(Err(err()));
        }
        for done in self.reads_new.drain(..) {
            let _ = done.send(Err(err()));
        }
        for (_, b) in self.reads_in_flight.drain() {
            for done in b.waiters {
                let _ = done.send(Err(err()));
            }
        }
        for (_, waiters) in self.reads_confirmed.drain(..) {
            for done in waiters {
                let _ = done.send(Err(err()));
            }
        }
    }

    fn install(&mut self, snapshot: &Snapshot) -> Result<()> {
        let meta = snapshot.get_metadata();
        tracing::info!(
            "installing a snapshot at index {} (term {}), {} bytes",
            meta.index,
            meta.term,
            snapshot.data.len()
        );
        self.raw.mut_store().install(snapshot)
    }

    fn apply(&mut self, entries: Vec<Entry>) -> Result<()> {
        for e in entries {
            if e.data.is_empty() || e.get_entry_type() != EntryType::EntryNormal {
                apply::skip(&self.ns, e.index).map_err(|err| self.apply_failed(e.index, err))?;
                continue;
            }
            let proposal = Proposal::decode(&e.data).map_err(|err| {
                NamenodeError::Store(format!("raft entry {} does not decode: {err}", e.index))
            })?;
            let result = apply::apply(&self.ns, e.index, &proposal)
                .map_err(|err| self.apply_failed(e.index, err))?;
            metrics::counter!("rfs_namenode_ops_total").increment(1);
            if let Ok(MetaResult::RetryCacheSwept { next, .. }) = &result {
                self.retry_sweep.on_applied(next.clone());
            }
            if let Some(done) = self.waiter(&e.context) {
                let _ = done.send(result);
            }
        }
        Ok(())
    }

    fn apply_failed(&self, index: u64, e: NamenodeError) -> NamenodeError {
        self.raw
            .store()
            .state_write_failed(&format!("cannot apply raft entry {index} to"), e)
    }

    fn waiter(&mut self, context: &[u8]) -> Option<oneshot::Sender<Result<MetaResult>>> {
        if context.len() != 16 {
            return None;
        }
        let nonce = u64::from_be_bytes(context[..8].try_into().ok()?);
        if nonce != self.nonce {
            return None;
        }
        let id = u64::from_be_bytes(context[8..].try_into().ok()?);
        self.proposals.remove(&id)
    }

    fn release_reads(&mut self) {
        let applied = self.raw.raft.raft_log.applied;
        let (ready, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut self.reads_confirmed)
            .into_iter()
            .partition(|(index, _)| *index <= applied);
        self.reads_confirmed = waiting;
        for (_, waiters) in ready {
            for done in waiters {
                let _ = done.send(Ok(()));
            }
        }
    }

    /// Records the snapshots this leader sends, so that compaction keeps
    /// the log their members need after them (`install_holds.rs`).
    fn hold_for_snapshots(&mut self, messages: &[Message]) {
        let now = Instant::now();
        for m in messages {
            if m.get_msg_type() == MessageType::MsgSnapshot {
                let index = m.get_snapshot().get_metadata().index;
                self.install_holds.sent(m.to, index, now);
            }
        }
    }

    /// Snapshot point: once enough entries are applied, drop the log up to
    /// the last durable checkpoint (the checkpointer keeps it within a
    /// second of the applied index), but not past a snapshot a member is
    /// still installing.
    fn maybe_compact(&mut self) -> Result<()> {
        let applied = self.raw.raft.raft_log.applied;
        let snapshot_index = self.raw.store().snapshot_index();
        if applied.saturating_sub(snapshot_index) < self.settings.snapshot_entries {
            return Ok(());
        }
        let prs = self.raw.raft.prs();
        let upto = self.install_holds.compact_limit(
            applied,
            |id| prs.get(id).map(|p| p.matched),
            Instant::now(),
        );
        if upto <= snapshot_index {
            return Ok(());
        }
        self.raw.mut_store().compact(upto)?;
        tracing::debug!(
            "raft log compacted up to {}",
            self.raw.store().snapshot_index()
        );
        Ok(())
    }

    fn publish(&mut self, stopped: bool) {
        let raft = &self.raw.raft;
        let matched = if self.role == Role::Leader {
            let mut m: Vec<(u64, u64)> =
                raft.prs().iter().map(|(id, p)| (*id, p.matched)).collect();
            m.sort_unstable();
            m
        } else {
            Vec::new()
        };
        let applied = raft.raft_log.applied;
        let status = NodeStatus {
            role: self.role,
            serving: self.role == Role::Leader
                && !self.settings.witness
                && applied >= self.term_start
                && !stopped,
            term: raft.term,
            leader: raft.leader_id,
            commit: raft.raft_log.committed,
            applied,
            last_index: raft.raft_log.last_index(),
            snapshot_index: self.raw.store().snapshot_index(),
            matched,
            term_start: if self.role == Role::Leader {
                self.term_start
            } else {
                0
            },
            syncs: self.syncs,
            low_on_disk: self.settings.space.low(),
            name_dir_free: self.settings.space.free_bytes(),
            stopped,
            failure: self.failure.clone(),
        };
        if let Some((to, _, _)) = &self.transfer {
            if status.leader == *to && status.role != Role::Candidate {
                let (_, done, _) = self.transfer.take().expect("checked");
                let _ = done.send(Ok(status.term));
            }
        }
        metrics::gauge!("rfs_namenode_raft_term").set(status.term as f64);
        metrics::gauge!("rfs_namenode_raft_leader").set(if status.serving { 1.0 } else { 0.0 });
        metrics::gauge!("rfs_namenode_raft_commit_index").set(status.commit as f64);
        metrics::gauge!("rfs_namenode_raft_applied_index").set(status.applied as f64);
        self.status.send_if_modified(|s| {
            if *s == status {
                false
            } else {
                *s = status;
                true
            }
        });
    }
}
