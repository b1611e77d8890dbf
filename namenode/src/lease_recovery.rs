//! Lease recovery: closing the files of writers silent past the hard limit.
//!
//! Runs on the leader only (only it may change metadata and send data
//! commands). Every `lease_recovery_interval_ms` it looks at the files
//! that may be under construction (`State::under_construction`, filled
//! from the namespace once when this member starts to lead, then by
//! `create`) and, for each whose writer passed the hard limit:
//! - a file with no blocks, or whose last block no datanode is known to
//!   hold, is closed at once (the empty block dropped) through
//!   [`MetaOp::RecoverLease`];
//! - otherwise the same op gives the last block a new generation stamp and
//!   hands the file to [`RECOVERY_HOLDER`], and one live location of the
//!   block (the primary) gets a RecoverBlock command. The primary agrees a
//!   length with the other replicas, has them finalized at the new stamp
//!   and reports back with CommitBlockSynchronization, which closes the
//!   file (`service/datanode.rs`).
//!
//! A recovery not committed within `lease_recovery_retry_ms` (the primary
//! died, no location answered) starts again with yet another generation
//! stamp, which also makes a late commit of the old attempt fail. A file
//! found held by the recovery holder when this member starts to lead (an
//! earlier leader began it) gets the same grace first.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use rfs_proto::common::DatanodeInfo;
use rfs_proto::datanode::{datanode_command, DatanodeCommand, RecoverBlock};

use crate::error::Result;
use crate::leases::RECOVERY_HOLDER;
use crate::meta_op::{MetaOp, MetaResult, Proposal};
use crate::namespace::Inode;
use crate::state::{extended, State};

/// Runs while the task lives; does work only while this member leads.
pub async fn monitor(state: Arc<State>) {
    let mut ticker = tokio::time::interval(state.config.lease_recovery_interval());
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Inode → when its recovery, if still not committed, starts again.
    let mut recovering: HashMap<u64, Instant> = HashMap::new();
    let mut led = false;
    loop {
        ticker.tick().await;
        if !state.raft.is_leader() {
            if led {
                state.under_construction().clear();
                recovering.clear();
            }
            led = false;
            continue;
        }
        if !led {
            let s = state.clone();
            match tokio::task::spawn_blocking(move || open_files(&s)).await {
                Ok(Ok(ids)) => state.under_construction().extend(ids),
                Ok(Err(e)) => {
                    tracing::warn!("lease recovery: listing files being written failed: {e}");
                    continue;
                }
                Err(e) => {
                    tracing::error!("lease recovery: listing files being written panicked: {e}");
                    continue;
                }
            }
            led = true;
        }
        if let Err(e) = pass(&state, &mut recovering).await {
            tracing::warn!("lease recovery pass failed: {e}");
        }
    }
}

/// Every file under construction (one scan, when this member starts to
/// lead: it has then applied everything earlier leaders committed).
fn open_files(state: &State) -> Result<Vec<u64>> {
    let mut ids = Vec::new();
    for inode in state.ns.files() {
        let inode = inode?;
        if inode.file.as_ref().is_some_and(|f| f.writer.is_some()) {
            ids.push(inode.id);
        }
    }
    Ok(ids)
}

/// One look at every candidate file; starts the recoveries that are due.
pub async fn pass(state: &State, recovering: &mut HashMap<u64, Instant>) -> Result<()> {
    let ids: Vec<u64> = state.under_construction().iter().copied().collect();
    let retry = state.config.lease_recovery_retry();
    for id in ids {
        let now = Instant::now();
        let inode = state.ns.inode(id)?;
        let Some(writer) = inode
            .as_ref()
            .and_then(|i| i.file.as_ref())
            .and_then(|f| f.writer.clone())
        else {
            // Closed or deleted since.
            state.under_construction().remove(&id);
            recovering.remove(&id);
            continue;
        };
        let inode = inode.expect("a file has an inode");
        if writer == RECOVERY_HOLDER {
            match recovering.get(&id) {
                Some(at) if *at > now => continue,
                Some(_) => tracing::info!(
                    "lease recovery of inode {id} did not commit within {retry:?}; starting again"
                ),
                None => {
                    recovering.insert(id, now + retry);
                    continue;
                }
            }
        } else if !state.leases().hard_expired(&writer) {
            continue;
        }
        recover(state, &inode, &writer, recovering).await?;
    }
    Ok(())
}

/// Starts (or restarts) the recovery of `inode`, held by `holder`.
async fn recover(
    state: &State,
    inode: &Inode,
    holder: &str,
    recovering: &mut HashMap<u64, Instant>,
) -> Result<()> {
    let f = inode.file.as_ref().expect("recover is called for files");
    let path = state
        .ns
        .path_of(inode)
        .unwrap_or_else(|_| format!("inode {}", inode.id));
    // Datanodes that may hold the last block: reported replicas first,
    // then the pipeline chosen for it (rbw replicas are not reported).
    let mut known: Vec<String> = Vec::new();
    let mut live: Vec<DatanodeInfo> = Vec::new();
    if let Some(last) = f.blocks.last() {
        let map = state.blocks();
        let reg = state.registry();
        if let Some(info) = map.get(last.id) {
            let expected = info.expected().filter(|n| !info.is_corrupt(n));
            let mut reported: Vec<&str> = info.replicas().collect();
            reported.sort();
            for n in reported.into_iter().chain(expected) {
                if !known.iter().any(|k| k == n) {
                    known.push(n.to_string());
                }
            }
        }
        live = known
            .iter()
            .filter(|n| reg.is_live(n))
            .filter_map(|n| reg.get(n).map(|s| s.info.clone()))
            .collect();
        // Nothing live to ask; an empty block known nowhere is dropped
        // below instead.
        if live.is_empty() && !(known.is_empty() && last.len == 0) {
            tracing::info!(
                "{path}: lease of {holder} expired, but no live datanode is known to hold block {}; retrying later",
                last.id
            );
            return Ok(());
        }
    }
    let drop_last = f.blocks.last().is_some_and(|b| b.len == 0) && known.is_empty();
    let op = MetaOp::RecoverLease {
        inode_id: inode.id,
        holder: holder.to_string(),
        drop_last,
        now_ms: crate::clock::now_ms(),
    };
    match state.raft.submit(Proposal::new(op)).await {
        Ok(MetaResult::LeaseRecoveryStarted { block, .. }) => {
            // The block map follows the new stamp (so the recovered
            // replicas' reports count) and keeps every candidate location,
            // live or not, for a retry.
            state.blocks().allocated(block.id, block.gen_stamp, known);
            // The stamp changes with each attempt, so a retry tends to pick
            // another primary.
            let primary = live[(block.gen_stamp % live.len() as u64) as usize].clone();
            tracing::info!(
                "{path}: lease of {holder} expired; recovering block {} at generation stamp {} with primary {} of {} locations",
                block.id,
                block.gen_stamp,
                primary.datanode_id,
                live.len()
            );
            metrics::counter!("rfs_namenode_lease_recoveries_total").increment(1);
            state.registry().queue(
                &primary.datanode_id,
                DatanodeCommand {
                    command: Some(datanode_command::Command::Recover(RecoverBlock {
                        block: Some(extended(&block)),
                        locations: live,
                    })),
                    ..Default::default()
                },
            );
            recovering.insert(
                inode.id,
                Instant::now() + state.config.lease_recovery_retry(),
            );
        }
        Ok(MetaResult::LeaseRecovered { dropped, .. }) => {
            tracing::info!(
                "{path}: lease of {holder} expired; closed{}",
                dropped.map_or(String::new(), |b| format!(
                    " without its empty last block {}",
                    b.id
                ))
            );
            if let Some(b) = dropped {
                state.invalidate(&[b]);
            }
            state.under_construction().remove(&inode.id);
            recovering.remove(&inode.id);
        }
        Ok(other) => {
            tracing::error!("{path}: lease recovery got an unexpected result {other:?}")
        }
        // The file changed meanwhile (closed, replaced, a new holder):
        // the next pass looks again.
        Err(e) => tracing::info!("{path}: lease recovery not started: {e}"),
    }
    Ok(())
}
