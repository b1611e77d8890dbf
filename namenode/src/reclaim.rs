//! Freeing what recursive deletes detached (`MetaOp::DeleteInSteps`).
//!
//! While this member leads and detached subtrees are left, it proposes
//! `MetaOp::Reclaim` steps of at most `delete_step` inodes, one after the
//! other, and has the blocks each step freed deleted from the datanodes.
//! Each step is one small entry, so a 200k-entry `rm -r` no longer holds
//! the raft loop (and every RPC and heartbeat behind it) for seconds, nor
//! copies the whole subtree into memory. Which inodes a step frees is
//! decided in apply from the replicated state, so a new leader simply
//! carries on. Blocks freed by a step whose result a dying leader never
//! saw are found by the next leader's block-map cleanup (`state.rs`).

use std::sync::Arc;
use std::time::Duration;

use crate::meta_op::{MetaOp, MetaResult, Proposal};
use crate::state::State;

/// How often an idle leader looks for detached subtrees.
const LOOK_EVERY: Duration = Duration::from_millis(100);

/// Runs while the task lives; proposes only while this member leads.
pub async fn monitor(state: Arc<State>) {
    // Shown from the start, so that a watcher can tell 0 from "unknown".
    metrics::counter!("rfs_namenode_reclaimed_inodes_total").absolute(0);
    metrics::counter!("rfs_namenode_reclaim_steps_total").absolute(0);
    let mut ticker = tokio::time::interval(LOOK_EVERY);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        // On every member: the deletion backlog an operator can watch.
        metrics::gauge!("rfs_namenode_detached_subtrees").set(state.ns.detached() as f64);
        while state.raft.is_leader() && state.ns.detached() > 0 {
            let op = MetaOp::Reclaim {
                limit: state.config.delete_step,
            };
            match state.raft.submit(Proposal::new(op)).await {
                Ok(MetaResult::Reclaimed {
                    freed,
                    blocks,
                    more,
                }) => {
                    metrics::counter!("rfs_namenode_reclaimed_inodes_total").increment(freed);
                    metrics::counter!("rfs_namenode_reclaim_steps_total").increment(1);
                    state.invalidate(&blocks);
                    // A step that freed nothing would be proposed again
                    // and again: wait for the next look instead.
                    if !more || freed == 0 {
                        break;
                    }
                }
                Ok(other) => {
                    tracing::error!("a reclaim step was answered {other:?}");
                    break;
                }
                Err(e) => {
                    tracing::debug!("reclaim step not applied: {e}");
                    break;
                }
            }
        }
    }
}
