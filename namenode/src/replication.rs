//! The replication monitor: keeps every block of a closed file at its
//! file's replication.
//!
//! Runs on the leader only (a standby's view of replicas is as good, but
//! only the leader may send data commands). Each pass looks at the next
//! `replication_files_per_pass` files of the namespace, in inode order, so
//! that a pass costs the same at a million files as at a thousand; a cycle
//! over the whole namespace takes as many passes as it needs, and the
//! under-replicated and missing counts (and which draining nodes are
//! drained) are settled when a cycle ends. For the files it looks at:
//! - blocks with fewer live, good replicas than the file asks for (a dead
//!   datanode, a corrupt replica, `setrep` raised) are copied from a live
//!   replica to new datanodes with a TransferBlock command, fewest
//!   replicas first, at most `max_replication_streams` copies per source
//!   node at a time; a scheduled copy is not scheduled again until its
//!   replicas are reported or `replication_pending_timeout_ms` passes;
//! - blocks with more live replicas than asked (a dead node came back,
//!   `setrep` lowered) lose the extra replicas: the map forgets them and
//!   their nodes are told to delete them;
//! - corrupt replicas are deleted once the block has the file's
//!   replication of live good ones (`bad_replicas::deletable`; the
//!   datanode's report deletes them at once if it already has): until
//!   then they stay, and the block is copied from a good replica first.
//!
//! Files still being written are left alone: their last block's replicas
//! are still arriving (pipeline recovery is the writer's business).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rfs_proto::common::{DatanodeInfo, ExtendedBlock};
use rfs_proto::datanode::{datanode_command, DatanodeCommand, TransferBlock};

use crate::bad_replicas;
use crate::error::Result;
use crate::namespace::BlockMeta;
use crate::placement;
use crate::state::{extended, invalidate_command, readable_replicas, State};

/// What passes carry over: copies in flight, and the cycle under way.
#[derive(Default)]
pub struct Pending {
    /// Block id → (source node, targets, when it gives up).
    copies: HashMap<u64, (String, Vec<String>, Instant)>,
    /// The last inode the cycle has looked at (0: a cycle starts).
    after: u64,
    cycle: Cycle,
}

/// Counts of the cycle under way.
#[derive(Default)]
struct Cycle {
    under_replicated: u64,
    missing: u64,
    /// Nodes draining when the cycle started: only those can be found
    /// drained at its end (a node marked later was not checked against
    /// the files already passed).
    draining: HashSet<String>,
    /// Draining nodes still holding a block the rest cannot yet cover.
    not_drained: HashSet<String>,
}

/// What one pass decided.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Pass {
    /// Under-replicated blocks counted in the cycle so far.
    pub under_replicated: u64,
    pub copies_scheduled: u64,
    pub excess_deleted: u64,
    /// Corrupt replicas deleted, their blocks having enough good ones.
    pub corrupt_deleted: u64,
    /// Blocks with no live good replica (nothing to copy from), counted
    /// in the cycle so far.
    pub missing: u64,
    /// This pass reached the end of the namespace: the counts above are
    /// the whole cycle's.
    pub cycle_done: bool,
}

/// Runs passes every `interval` while this member leads, until the task
/// is dropped.
pub async fn monitor(state: Arc<State>) {
    let interval = Duration::from_millis(state.config.replication_interval_ms);
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut pending = Pending::default();
    loop {
        ticker.tick().await;
        if !state.raft.is_leader() {
            pending = Pending::default();
            continue;
        }
        let s = state.clone();
        let taken = std::mem::take(&mut pending);
        let ran = tokio::task::spawn_blocking(move || {
            let mut p = taken;
            let r = pass(&s, &mut p);
            (p, r)
        })
        .await;
        match ran {
            Ok((p, Ok(done))) => {
                pending = p;
                if done.cycle_done {
                    metrics::gauge!("rfs_namenode_under_replicated_blocks")
                        .set(done.under_replicated as f64);
                    metrics::gauge!("rfs_namenode_missing_blocks").set(done.missing as f64);
                }
                metrics::counter!("rfs_namenode_replications_scheduled_total")
                    .increment(done.copies_scheduled);
                metrics::counter!("rfs_namenode_excess_replicas_deleted_total")
                    .increment(done.excess_deleted);
                metrics::counter!("rfs_namenode_corrupt_replicas_deleted_total")
                    .increment(done.corrupt_deleted);
            }
            Ok((p, Err(e))) => {
                pending = p;
                tracing::warn!("replication pass failed: {e}");
            }
            Err(e) => tracing::error!("replication pass panicked: {e}"),
        }
    }
}

/// One pass over the next closed files' blocks (blocking: reads the
/// store).
pub fn pass(state: &State, pending: &mut Pending) -> Result<Pass> {
    let config = &state.config;
    let now = Instant::now();
    pending.copies.retain(|_, (_, _, until)| *until > now);

    let draining = state.ns.decommissioning()?;
    state.registry().set_draining(draining.clone());
    if pending.after == 0 {
        pending.cycle = Cycle {
            draining: draining.clone(),
            ..Cycle::default()
        };
    }
    // (block, wanted replicas, block size) of the next closed files.
    let mut blocks: Vec<(BlockMeta, usize, u64)> = Vec::new();
    let mut looked_at = 0;
    for inode in state.ns.files_after(pending.after) {
        let inode = inode?;
        looked_at += 1;
        pending.after = inode.id;
        if let Some(f) = inode.file.filter(|f| f.writer.is_none()) {
            for b in &f.blocks {
                blocks.push((*b, f.replication as usize, f.block_size));
            }
        }
        if looked_at == config.replication_files_per_pass {
            break;
        }
    }
    let cycle_done = looked_at < config.replication_files_per_pass;

    let not_drained = &mut pending.cycle.not_drained;
    let mut done = Pass::default();
    // (counted replicas, block, live holders, nodes to avoid, size, wanted)
    type Copy = (usize, BlockMeta, Vec<String>, Vec<String>, u64, usize);
    let mut copies: Vec<Copy> = Vec::new();
    let mut excess: Vec<(String, ExtendedBlock)> = Vec::new();
    let mut corrupt: Vec<(String, ExtendedBlock)> = Vec::new();
    {
        let mut map = state.blocks();
        let reg = state.registry();
        for (b, wanted, block_size) in blocks {
            let Some(info) = map.get(b.id) else {
                done.missing += 1;
                continue;
            };
            corrupt.extend(
                bad_replicas::deletable(info, &b, wanted, &reg)
                    .map(|n| (n.to_string(), extended(&b))),
            );
            let all_live: Vec<String> = readable_replicas(info, b.gen_stamp, &reg)
                .into_iter()
                .map(str::to_string)
                .collect();
            // Replicas on draining nodes serve reads and copies but do not
            // count: the node is going away.
            let mut live: Vec<String> = all_live
                .iter()
                .filter(|n| !draining.contains(*n))
                .cloned()
                .collect();
            if live.len() < wanted {
                not_drained.extend(all_live.iter().filter(|n| draining.contains(*n)).cloned());
            }
            if let Some((_, targets, _)) = pending.copies.get(&b.id) {
                if targets.iter().all(|t| live.contains(t)) {
                    pending.copies.remove(&b.id);
                }
            }
            if all_live.is_empty() {
                done.missing += 1;
                continue;
            }
            if live.len() < wanted {
                done.under_replicated += 1;
                if !pending.copies.contains_key(&b.id) {
                    // Never copy onto a node that still holds a bad copy.
                    let mut holders = all_live.clone();
                    holders.extend(info.corrupt().map(str::to_string));
                    copies.push((live.len(), b, all_live, holders, block_size, wanted));
                }
            } else if live.len() > wanted && !pending.copies.contains_key(&b.id) {
                let extra = live.len() - wanted;
                // Delete from the fullest nodes first.
                live.sort_by_key(|n| reg.get(n).map_or(0, |s| s.info.remaining));
                for node in live.into_iter().take(extra) {
                    excess.push((node, extended(&b)));
                }
            }
        }
        for (node, b) in excess.iter().chain(&corrupt) {
            map.remove_replica(b.block_id, node);
        }
    }
    // Fewest live replicas first: those blocks are closest to being lost.
    copies.sort_by_key(|(n, ..)| *n);
    let mut reg = state.registry();
    let mut streams: HashMap<String, usize> = HashMap::new();
    for (source, _, _) in pending.copies.values() {
        *streams.entry(source.clone()).or_default() += 1;
    }
    pending.cycle.under_replicated += done.under_replicated;
    pending.cycle.missing += done.missing;
    done.under_replicated = pending.cycle.under_replicated;
    done.missing = pending.cycle.missing;
    if cycle_done {
        done.cycle_done = true;
        let cycle = std::mem::take(&mut pending.cycle);
        let drained = draining
            .intersection(&cycle.draining)
            .filter(|n| !cycle.not_drained.contains(*n))
            .cloned()
            .collect();
        reg.set_drained(drained);
        pending.after = 0;
    }
    for (counted, b, live, avoid, block_size, wanted) in copies {
        let Some(source) = live
            .iter()
            .find(|n| streams.get(*n).copied().unwrap_or(0) < config.max_replication_streams)
            .cloned()
        else {
            continue;
        };
        let targets: Vec<DatanodeInfo> =
            placement::choose(&reg, wanted - counted, block_size, "", &avoid);
        if targets.is_empty() {
            continue;
        }
        let ids: Vec<String> = targets.iter().map(|t| t.datanode_id.clone()).collect();
        tracing::info!(
            "block {} has {counted} of {wanted} replicas: copying from {source} to {ids:?}",
            b.id
        );
        reg.queue(
            &source,
            DatanodeCommand {
                command: Some(datanode_command::Command::Transfer(TransferBlock {
                    block: Some(extended(&b)),
                    targets,
                })),
                ..Default::default()
            },
        );
        *streams.entry(source.clone()).or_default() += 1;
        let until = Instant::now() + Duration::from_millis(config.replication_pending_timeout_ms);
        pending.copies.insert(b.id, (source, ids, until));
        done.copies_scheduled += 1;
    }
    for (node, b) in excess {
        tracing::info!(
            "block {} has excess replicas: deleting the one on {node}",
            b.block_id
        );
        reg.queue(&node, invalidate_command(vec![b]));
        done.excess_deleted += 1;
    }
    for (node, b) in corrupt {
        tracing::info!(
            "block {} has enough good replicas: deleting the corrupt one on {node}",
            b.block_id
        );
        reg.queue(&node, invalidate_command(vec![b]));
        done.corrupt_deleted += 1;
    }
    Ok(done)
}
