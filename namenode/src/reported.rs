//! What a reported replica is worth: current (a location of its block),
//! stale (to be deleted), or not this member's to judge.
//!
//! Only the leader judges, and only once it serves (it has applied its
//! term's first entry, so its namespace holds every block a client was
//! told of). A standby's namespace may lag the reports (a block the leader
//! just allocated, a snapshot being installed); it records what it is
//! told, and reconciles on becoming leader (`State::reconcile_block_map`).
//! Stale is:
//! - a block id the namespace's block counter has passed that no file
//!   holds (its file was deleted, or the block abandoned), or
//! - a generation stamp older than the file's block (a node dropped from a
//!   pipeline), unless that file is under lease recovery, which takes such
//!   replicas over.
//!
//! Never stale: a block id the counter has not reached (a namespace
//! behind the node), or a stamp newer than the namespace's. Finalized
//! replicas found stale are deleted at once; unfinished (rbw) ones only
//! when two consecutive full reports of their node hold them stale, since
//! one report may catch a replica between a recovery's steps.

use rfs_proto::common::ExtendedBlock;

use crate::error::Result;
use crate::leases::RECOVERY_HOLDER;
use crate::namespace::counter;
use crate::state::State;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Judgement {
    /// The namespace's block at this stamp.
    Current,
    /// To be deleted (see the module doc).
    Stale,
    /// An older stamp of a block under lease recovery: kept, not a
    /// location.
    Recovering,
    /// Not judged: this member does not serve, or its namespace has not
    /// reached the replica.
    Unjudged,
}

/// Judges the replicas of one report against the namespace as applied
/// when it was made.
pub struct Judge<'a> {
    state: &'a State,
    leading: bool,
    next_block: u64,
}

impl<'a> Judge<'a> {
    pub fn new(state: &'a State) -> Result<Judge<'a>> {
        // Read after the leadership check: a leader that serves has applied
        // at least every block the counter stood at then.
        let leading = state.raft.is_leader();
        let next_block = state.ns.counter(counter::NEXT_BLOCK)?;
        Ok(Judge {
            state,
            leading,
            next_block,
        })
    }

    /// Whether this member judges at all.
    pub fn leading(&self) -> bool {
        self.leading
    }

    pub fn judge(&self, b: &ExtendedBlock) -> Result<Judgement> {
        let ns = &self.state.ns;
        let Some(owner) = ns.block_owner(b.block_id)? else {
            return Ok(if self.leading && b.block_id < self.next_block {
                Judgement::Stale
            } else {
                Judgement::Unjudged
            });
        };
        let Some(file) = owner.file else {
            return Ok(Judgement::Unjudged);
        };
        let Some(meta) = file.blocks.iter().find(|m| m.id == b.block_id) else {
            return Ok(if self.leading {
                Judgement::Stale
            } else {
                Judgement::Unjudged
            });
        };
        Ok(match meta.gen_stamp {
            gs if gs == b.generation_stamp => Judgement::Current,
            _ if !self.leading => Judgement::Unjudged,
            gs if gs > b.generation_stamp => {
                if file.writer.as_deref() == Some(RECOVERY_HOLDER) {
                    Judgement::Recovering
                } else {
                    Judgement::Stale
                }
            }
            _ => Judgement::Unjudged,
        })
    }
}
