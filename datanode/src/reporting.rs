//! Reporting to namenodes: one task per configured namenode registers,
//! sends a full block report, heartbeats every `heartbeat-interval`, sends
//! incremental "received / deleted" reports as soon as they are queued, a
//! full report every `block-report-interval`, and executes the commands the
//! namenode answers with.
//!
//! Standby namenodes get the same registration and reports as the active
//! one (their block maps stay hot for a failover), but data commands
//! (Invalidate, Transfer, RecoverBlock, VerifyReplica) are obeyed only
//! when the response's fencing says active at the highest raft term seen
//! ([`crate::fencing`]); others are dropped with a warning and counted in
//! `rfs_datanode_fenced_commands_total`.
//! ReRegister is obeyed from any namenode: it only resyncs this connection.
//!
//! Replicas the block scanner quarantined are reported bad to every
//! namenode (`ReportBadReplica`) as soon as found, and again after every
//! full block report (which leaves them out), so a namenode that restarted
//! or forgot still learns of them and can order their deletion.
//!
//! Any failed RPC sends the task back to registration (with backoff): a
//! namenode that restarted knows nothing of this node, and a fresh
//! registration plus full report is always a correct resync. Every call
//! after Register carries the epoch it answered; the namenode answers one
//! under a stale epoch "re-register" (a ReRegister command, or an error).
//!
//! Commands a namenode queued come numbered and are sent again with every
//! heartbeat reply until a heartbeat says they were received (the highest
//! number seen, `last_command_seq`; also passed to the next Register), so
//! a lost reply loses no command and none runs twice.
//!
//! A finished block's last ack waits (bounded, see `write_pipeline.rs`) for
//! its "block received" report to reach the namenode a client will
//! complete the file with, so that the namenode already counts the replica:
//!
//! - Each task remembers whether its namenode's last response claimed
//!   active and was obeyed, and at which term. The namenodes *known
//!   active* are those whose last such claim is at the [`crate::fencing`]
//!   highest term (normally exactly one, the raft leader).
//! - If any namenode is known active, the ack waits only for delivery to
//!   it; the report is still queued for every other namenode and delivered
//!   to them asynchronously, so a dead or partitioned standby does not
//!   slow writes down.
//! - If none is (at startup, before any active claim, or while a newly
//!   raised term's leader has not answered this node yet), it waits for
//!   delivery to every namenode, as it cannot tell which one matters.
//!
//! Either way the wait is bounded, so a dead active namenode delays writes
//! but never stalls them; a namenode whose task fails keeps its last state
//! until it answers again or another one claims a higher term.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rfs_proto::common::ExtendedBlock;
use rfs_proto::datanode::datanode_command::Command;
use rfs_proto::datanode::datanode_protocol_client::DatanodeProtocolClient;
use rfs_proto::datanode::{
    BlockReceivedAndDeletedRequest, BlockReportRequest, DatanodeCommand, Fencing, HeartbeatRequest,
    RegisterRequest, ReportBadReplicaRequest,
};
use tokio::sync::{oneshot, watch, Notify};
use tokio::time::{Instant, MissedTickBehavior};
use tonic::transport::Channel;
use tracing::{debug, info, warn};

use crate::error::{Error, Result};
use crate::fencing::Verdict;
use crate::http::names;
use crate::Node;

/// Incremental report entries queued per namenode before the queue is
/// dropped in favour of a full block report.
const MAX_PENDING: usize = 100_000;
const MAX_BACKOFF: Duration = Duration::from_secs(5);

#[derive(Default)]
struct Pending {
    received: Vec<ExtendedBlock>,
    deleted: Vec<ExtendedBlock>,
    /// Replicas found corrupt, with why.
    bad: Vec<(ExtendedBlock, String)>,
    /// Fired once the entries queued with them reached the namenode.
    waiters: Vec<oneshot::Sender<()>>,
    /// Entries were dropped: only a full block report resyncs.
    overflow: bool,
}

#[derive(Default)]
struct Queue {
    pending: Mutex<Pending>,
    notify: Notify,
    /// The term this namenode's last response claimed active at, if that
    /// claim was obeyed; 0 when its last response was no such claim.
    active_term: AtomicU64,
}

impl Queue {
    fn lock(&self) -> std::sync::MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn push(
        &self,
        received: Option<ExtendedBlock>,
        deleted: &[ExtendedBlock],
    ) -> oneshot::Receiver<()> {
        let (tx, rx) = oneshot::channel();
        {
            let mut p = self.lock();
            if p.received.len() + p.deleted.len() >= MAX_PENDING {
                p.received.clear();
                p.deleted.clear();
                p.overflow = true;
            }
            if !p.overflow {
                p.received.extend(received);
                p.deleted.extend_from_slice(deleted);
            }
            p.waiters.push(tx);
        }
        self.notify.notify_one();
        rx
    }

    fn take(&self) -> Pending {
        std::mem::take(&mut *self.lock())
    }

    /// Puts back entries whose delivery failed, ahead of newer ones.
    fn restore(&self, mut old: Pending) {
        let mut p = self.lock();
        old.received.append(&mut p.received);
        old.deleted.append(&mut p.deleted);
        old.bad.append(&mut p.bad);
        old.waiters.append(&mut p.waiters);
        old.overflow |= p.overflow;
        *p = old;
    }
}

/// Queues of incremental reports, one per namenode.
pub struct Reporter {
    queues: Vec<Arc<Queue>>,
}

impl Reporter {
    pub fn new(namenodes: usize) -> Reporter {
        Reporter {
            queues: (0..namenodes).map(|_| Arc::new(Queue::default())).collect(),
        }
    }

    /// Queues "block received" for every namenode; returns the receivers
    /// that fire when the namenodes known active at term `highest` got it,
    /// or every namenode's when none is (see the module doc).
    pub fn block_received(&self, block: ExtendedBlock, highest: u64) -> Vec<oneshot::Receiver<()>> {
        let active: Vec<bool> = self
            .queues
            .iter()
            .map(|q| highest > 0 && q.active_term.load(Ordering::Acquire) == highest)
            .collect();
        let any_active = active.contains(&true);
        self.queues
            .iter()
            .zip(active)
            .filter_map(|(q, active)| {
                let rx = q.push(Some(block), &[]);
                (active || !any_active).then_some(rx)
            })
            .collect()
    }

    /// Queues a "bad replica" report for every namenode.
    pub fn bad_replica(&self, block: ExtendedBlock, reason: &str) {
        for q in &self.queues {
            q.lock().bad.push((block, reason.to_string()));
            q.notify.notify_one();
        }
    }

    pub fn blocks_deleted(&self, blocks: &[ExtendedBlock]) {
        if blocks.is_empty() {
            return;
        }
        for q in &self.queues {
            drop(q.push(None, blocks));
        }
    }
}

/// Waits (at most `limit`) until every receiver of `waiters` fired.
pub async fn await_delivery(waiters: Vec<oneshot::Receiver<()>>, limit: Duration) {
    if waiters.is_empty() {
        return;
    }
    let all = futures::future::join_all(waiters);
    if tokio::time::timeout(limit, all).await.is_err() {
        debug!(
            "block received report not yet delivered to the namenodes waited for after {limit:?}"
        );
    }
}

struct Session {
    node: Arc<Node>,
    addr: String,
    queue: Arc<Queue>,
    client: DatanodeProtocolClient<Channel>,
    /// The current registration with this namenode (0: none yet).
    epoch: u64,
    /// The highest queued command number received under `epoch`.
    last_command_seq: u64,
}

pub async fn namenode_task(node: Arc<Node>, index: usize, mut shutdown: watch::Receiver<bool>) {
    let addr = node.config.namenodes[index].clone();
    let endpoint = match node.config.namenode_endpoint(&addr) {
        Ok(e) => e,
        Err(e) => {
            warn!("{e}; not reporting to it");
            return;
        }
    };
    let mut s = Session {
        queue: node.reporter.queues[index].clone(),
        client: DatanodeProtocolClient::new(endpoint.connect_lazy()),
        node,
        addr,
        epoch: 0,
        last_command_seq: 0,
    };
    let mut backoff = Duration::from_millis(100);
    let mut failures = 0u32;
    loop {
        let started = Instant::now();
        match s.session(&mut shutdown).await {
            Ok(()) => return,
            Err(e) => {
                failures += 1;
                // Log the first failure and then every 20th, not each retry.
                if failures == 1 || failures.is_multiple_of(20) {
                    warn!("namenode {}: {e} (retrying)", s.addr);
                } else {
                    debug!("namenode {}: {e}", s.addr);
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = shutdown.changed() => return,
        }
        if started.elapsed() > Duration::from_secs(10) {
            // A long-lived session broke: start the backoff over.
            backoff = Duration::from_millis(100);
            failures = 0;
        } else {
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }
}

impl Session {
    fn rpc_err(&self, status: tonic::Status) -> Error {
        Error::Rpc {
            namenode: self.addr.clone(),
            status: Box::new(status),
        }
    }

    /// One registration's life: returns `Ok` on shutdown, `Err` when it
    /// must register again.
    async fn session(&mut self, shutdown: &mut watch::Receiver<bool>) -> Result<()> {
        let storage = self.node.storage.clone();
        let mut info = self.node.info.clone();
        let report = storage.storage_report();
        info.capacity = report.capacity;
        info.used = report.used;
        info.remaining = report.remaining;
        let req = RegisterRequest {
            info: Some(info),
            previous_epoch: self.epoch,
            last_command_seq: self.last_command_seq,
        };
        let resp = self
            .client
            .register(req)
            .await
            .map_err(|s| self.rpc_err(s))?
            .into_inner();
        // Command numbers go on across registrations with one namenode
        // process, but a restarted one starts again: count afresh.
        (self.epoch, self.last_command_seq) = (resp.epoch, 0);
        info!(
            "registered with namenode {} ({}) as {} (epoch {:016x})",
            self.addr, resp.namenode_id, storage.datanode_id, resp.epoch
        );
        // No commands here, but an active claim raises the term early.
        self.observe(resp.fencing.as_ref());
        let mut reregister = self.full_report().await?;
        let hb_every = self.node.config.heartbeat_interval();
        let br_every = self.node.config.block_report_interval();
        let mut hb = tokio::time::interval(hb_every);
        hb.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut br = tokio::time::interval_at(Instant::now() + br_every, br_every);
        br.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            if reregister {
                return Err(Error::Pipeline(format!(
                    "namenode {} asked this node to register again",
                    self.addr
                )));
            }
            tokio::select! {
                _ = shutdown.changed() => return Ok(()),
                _ = hb.tick() => {
                    let req = HeartbeatRequest {
                        datanode_id: storage.datanode_id.clone(),
                        storage: Some(storage.storage_report()),
                        xceivers: self.node.xceivers.load(std::sync::atomic::Ordering::Relaxed) as u32,
                        epoch: self.epoch,
                        last_command_seq: self.last_command_seq,
                    };
                    let resp = self.client.heartbeat(req).await.map_err(|s| self.rpc_err(s))?.into_inner();
                    let commands = self.take_new(resp.commands);
                    reregister = self.execute(commands, resp.fencing).await;
                }
                _ = br.tick() => {
                    reregister = self.full_report().await?;
                }
                _ = self.queue.notify.notified() => {
                    reregister = self.incremental().await?;
                }
            }
        }
    }

    /// Sends every finalized replica. Queued incremental entries taken
    /// before the snapshot are covered by it.
    async fn full_report(&mut self) -> Result<bool> {
        let pending = self.queue.take();
        let storage = self.node.storage.clone();
        let (blocks, being_written) =
            tokio::task::spawn_blocking(move || (storage.block_report(), storage.rbw_report()))
                .await?;
        let n = blocks.len();
        let req = BlockReportRequest {
            datanode_id: self.node.storage.datanode_id.clone(),
            blocks,
            being_written,
            epoch: self.epoch,
        };
        let resp = match self.client.block_report(req).await {
            Ok(r) => r.into_inner(),
            Err(s) => {
                // Deleted entries are not in a full report: keep them.
                // Bad replicas are re-sent after the next full report.
                self.queue.restore(Pending {
                    deleted: pending.deleted,
                    waiters: pending.waiters,
                    ..Default::default()
                });
                return Err(self.rpc_err(s));
            }
        };
        debug!("full block report of {n} replicas sent to {}", self.addr);
        // Quarantined replicas (those queued in `pending.bad` among them)
        // are not in the report: tell the namenode they are bad.
        let storage = self.node.storage.clone();
        let bad = tokio::task::spawn_blocking(move || storage.corrupt_replicas()).await?;
        self.report_bad(&bad).await?;
        if !pending.deleted.is_empty() {
            self.queue.restore(Pending {
                deleted: pending.deleted,
                waiters: pending.waiters,
                ..Default::default()
            });
            self.queue.notify.notify_one();
        } else {
            for w in pending.waiters {
                let _ = w.send(());
            }
        }
        Ok(self.execute(resp.commands, resp.fencing).await)
    }

    async fn incremental(&mut self) -> Result<bool> {
        let pending = self.queue.take();
        if pending.overflow {
            return self.full_report().await;
        }
        if !pending.bad.is_empty() {
            if let Err(e) = self.report_bad(&pending.bad).await {
                self.queue.restore(pending);
                return Err(e);
            }
        }
        if pending.received.is_empty() && pending.deleted.is_empty() {
            for w in pending.waiters {
                let _ = w.send(());
            }
            return Ok(false);
        }
        let req = BlockReceivedAndDeletedRequest {
            datanode_id: self.node.storage.datanode_id.clone(),
            received: pending.received.clone(),
            deleted: pending.deleted.clone(),
            epoch: self.epoch,
        };
        match self.client.block_received_and_deleted(req).await {
            Ok(_) => {
                for w in pending.waiters {
                    let _ = w.send(());
                }
                Ok(false)
            }
            Err(s) => {
                // The bad replicas were delivered above.
                self.queue.restore(Pending {
                    bad: Vec::new(),
                    ..pending
                });
                Err(self.rpc_err(s))
            }
        }
    }

    /// Sends one `ReportBadReplica` per replica.
    async fn report_bad(&mut self, bad: &[(ExtendedBlock, String)]) -> Result<()> {
        for (block, reason) in bad {
            let req = ReportBadReplicaRequest {
                datanode_id: self.node.storage.datanode_id.clone(),
                block: Some(*block),
                reason: reason.clone(),
                epoch: self.epoch,
            };
            self.client
                .report_bad_replica(req)
                .await
                .map_err(|s| self.rpc_err(s))?;
            debug!(
                "reported bad replica of block {} to {}",
                block.block_id, self.addr
            );
        }
        Ok(())
    }

    /// The commands of a heartbeat reply not run before: unnumbered ones,
    /// and numbered ones past `last_command_seq`, which moves up to them.
    fn take_new(&mut self, commands: Vec<DatanodeCommand>) -> Vec<DatanodeCommand> {
        let seen = self.last_command_seq;
        let new: Vec<DatanodeCommand> = commands
            .into_iter()
            .filter(|c| c.seq == 0 || c.seq > seen)
            .collect();
        self.last_command_seq = new.iter().map(|c| c.seq).fold(seen, u64::max);
        new
    }

    /// Judges a response's fencing and remembers whether this namenode is
    /// now known active (and at which term).
    fn observe(&self, fencing: Option<&Fencing>) -> Verdict {
        let verdict = self.node.fence.observe(fencing);
        let term = match (verdict, fencing) {
            (Verdict::Obey, Some(f)) => f.term,
            _ => 0,
        };
        self.queue.active_term.store(term, Ordering::Release);
        verdict
    }

    /// Whether this response's data commands may run; logs and counts the
    /// ones dropped.
    fn admit(&self, fencing: Option<&Fencing>, data_commands: usize) -> bool {
        let verdict = self.observe(fencing);
        if verdict == Verdict::Obey || data_commands == 0 {
            return true;
        }
        let n = data_commands;
        match verdict {
            Verdict::Obey => {}
            Verdict::Deposed { term, highest } => warn!(
                "ignoring {n} command(s) from deposed namenode {} (term {term} < {highest})",
                self.addr
            ),
            Verdict::Standby { term } => warn!(
                "ignoring {n} command(s) from standby namenode {} (term {term}, highest {})",
                self.addr,
                self.node.fence.highest()
            ),
            Verdict::Unfenced => warn!(
                "ignoring {n} command(s) from namenode {}: response has no fencing term (highest {})",
                self.addr,
                self.node.fence.highest()
            ),
        }
        metrics::counter!(names::FENCED_COMMANDS, "reason" => verdict.reason()).increment(n as u64);
        false
    }

    /// Runs the namenode's commands, the data-changing ones only if
    /// `fencing` admits them; returns whether it asked to re-register.
    async fn execute(&self, commands: Vec<DatanodeCommand>, fencing: Option<Fencing>) -> bool {
        let data_commands = commands
            .iter()
            .filter(|c| {
                matches!(
                    c.command,
                    Some(Command::Invalidate(_))
                        | Some(Command::Transfer(_))
                        | Some(Command::Recover(_))
                        | Some(Command::Verify(_))
                )
            })
            .count();
        let obey = self.admit(fencing.as_ref(), data_commands);
        let mut reregister = false;
        for c in commands {
            match c.command {
                Some(Command::Invalidate(_))
                | Some(Command::Transfer(_))
                | Some(Command::Recover(_))
                | Some(Command::Verify(_))
                    if !obey => {}
                Some(Command::Invalidate(inv)) => {
                    let storage = self.node.storage.clone();
                    let blocks = inv.blocks;
                    let deleted = tokio::task::spawn_blocking(move || {
                        let mut deleted = Vec::new();
                        for b in blocks {
                            match storage.invalidate(b.block_id, b.generation_stamp) {
                                Ok(Some(gone)) => deleted.push(gone),
                                Ok(None) => {
                                    debug!("invalidate: no replica of block {}", b.block_id)
                                }
                                Err(e) => warn!("invalidate block {}: {e}", b.block_id),
                            }
                        }
                        deleted
                    })
                    .await
                    .unwrap_or_default();
                    metrics::counter!(names::BLOCKS_DELETED).increment(deleted.len() as u64);
                    self.node.reporter.blocks_deleted(&deleted);
                }
                Some(Command::Transfer(t)) => {
                    let Some(block) = t.block else {
                        warn!("namenode {} sent a transfer without a block", self.addr);
                        continue;
                    };
                    let node = self.node.clone();
                    tokio::spawn(async move {
                        let Ok(_permit) = node.transfers.acquire().await else {
                            return;
                        };
                        match crate::transfer::copy_block::push_replica(&node, &block, &t.targets)
                            .await
                        {
                            Ok(()) => info!(
                                "transferred block {} to {} nodes",
                                block.block_id,
                                t.targets.len()
                            ),
                            Err(e) => warn!("transfer of block {} failed: {e}", block.block_id),
                        }
                    });
                }
                Some(Command::Recover(r)) => {
                    let Some(block) = r.block else {
                        warn!(
                            "namenode {} sent a block recovery without a block",
                            self.addr
                        );
                        continue;
                    };
                    info!(
                        "namenode {} made this node the primary of the lease recovery of block {} (gs {}, {} locations)",
                        self.addr,
                        block.block_id,
                        block.generation_stamp,
                        r.locations.len()
                    );
                    // The commit goes back to the namenode that asked.
                    tokio::spawn(crate::transfer::recover_block::run_primary(
                        self.node.clone(),
                        block,
                        r.locations,
                        self.client.clone(),
                        self.addr.clone(),
                    ));
                }
                Some(Command::Verify(v)) => {
                    let Some(block) = v.block else {
                        warn!("namenode {} sent a verification without a block", self.addr);
                        continue;
                    };
                    if !self.node.suspects.add(block) {
                        debug!(
                            "replica of block {} already waits for verification (or too many do)",
                            block.block_id
                        );
                    }
                }
                Some(Command::Reregister(_)) => reregister = true,
                None => debug!("empty command from namenode {}", self.addr),
            }
        }
        reregister
    }
}
