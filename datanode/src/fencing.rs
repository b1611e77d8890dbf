//! Fencing of deposed namenodes: which namenode's data commands to obey.
//!
//! Namenodes form a raft HA group; each response to a datanode carries
//! `Fencing { term, active }`, where `active` is true only on the raft
//! leader and `term` is that namenode's current raft term. One [`Fence`] is
//! shared by every reporting task of a datanode and keeps the highest term
//! any namenode has *claimed active* at.
//!
//! The rule, applied per response:
//!
//! | fencing                        | data commands (Invalidate, Transfer) | highest term    |
//! |--------------------------------|--------------------------------------|-----------------|
//! | `active`, `term >= highest`    | obeyed                               | raised to term  |
//! | `active`, `term <  highest`    | dropped: deposed leader              | unchanged       |
//! | not `active` (standby)         | dropped                              | unchanged       |
//! | absent                         | dropped: treated as not active       | unchanged       |
//!
//! Only active claims raise the term, as HDFS's datanode only lets a newer
//! *active claim* win: a standby or candidate may have bumped its term in an
//! election it has not won (or cannot win, being cut off from the group),
//! and counting that term would silence the real leader.
//!
//! What this module does not decide: ReRegister is per-connection
//! bookkeeping and is obeyed from any namenode, and heartbeats and reports
//! go to standbys as to the leader (a standby keeps its block map hot);
//! see `reporting.rs`.

use std::sync::atomic::{AtomicU64, Ordering};

use rfs_proto::datanode::Fencing;

use crate::http::names;

/// What a response's fencing allows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// From the active namenode of the highest term seen: obey.
    Obey,
    /// Claims active, but a later term has been claimed since.
    Deposed { term: u64, highest: u64 },
    /// Says it is not the leader.
    Standby { term: u64 },
    /// Carries no fencing at all: treated as not active.
    Unfenced,
}

impl Verdict {
    /// Why commands were dropped, as a metrics label.
    pub fn reason(&self) -> &'static str {
        match self {
            Verdict::Obey => "obeyed",
            Verdict::Deposed { .. } => "deposed",
            Verdict::Standby { .. } => "standby",
            Verdict::Unfenced => "no_fencing",
        }
    }
}

/// The highest raft term any namenode claimed active at, shared by every
/// reporting task of one datanode.
#[derive(Debug, Default)]
pub struct Fence {
    highest: AtomicU64,
}

impl Fence {
    pub fn new() -> Fence {
        metrics::gauge!(names::NAMENODE_TERM).set(0.0);
        Fence::default()
    }

    /// The highest term claimed active so far (0 before any claim).
    pub fn highest(&self) -> u64 {
        self.highest.load(Ordering::Acquire)
    }

    /// Judges one response's fencing, raising the highest term when it is
    /// an active claim at or above it. Check and raise are one atomic step:
    /// claims racing in from several reporting tasks never lower the term.
    pub fn observe(&self, fencing: Option<&Fencing>) -> Verdict {
        let Some(f) = fencing else {
            return Verdict::Unfenced;
        };
        if !f.active {
            return Verdict::Standby { term: f.term };
        }
        match self
            .highest
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |highest| {
                (f.term >= highest).then_some(f.term)
            }) {
            Ok(previous) => {
                if f.term > previous {
                    metrics::gauge!(names::NAMENODE_TERM).set(f.term as f64);
                }
                Verdict::Obey
            }
            Err(highest) => Verdict::Deposed {
                term: f.term,
                highest,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(term: u64, active: bool) -> Option<Fencing> {
        Some(Fencing { term, active })
    }

    #[test]
    fn active_claims_at_or_above_the_highest_term_are_obeyed_and_raise_it() {
        let fence = Fence::new();
        assert_eq!(fence.observe(f(1, true).as_ref()), Verdict::Obey);
        assert_eq!(fence.highest(), 1);
        assert_eq!(fence.observe(f(1, true).as_ref()), Verdict::Obey);
        assert_eq!(fence.observe(f(3, true).as_ref()), Verdict::Obey);
        assert_eq!(fence.highest(), 3);
    }

    #[test]
    fn a_lower_active_claim_is_deposed() {
        let fence = Fence::new();
        fence.observe(f(4, true).as_ref());
        assert_eq!(
            fence.observe(f(3, true).as_ref()),
            Verdict::Deposed {
                term: 3,
                highest: 4
            }
        );
        assert_eq!(fence.highest(), 4);
    }

    #[test]
    fn standby_and_missing_fencing_are_not_obeyed_and_raise_nothing() {
        let fence = Fence::new();
        fence.observe(f(2, true).as_ref());
        assert_eq!(
            fence.observe(f(9, false).as_ref()),
            Verdict::Standby { term: 9 }
        );
        assert_eq!(fence.observe(None), Verdict::Unfenced);
        assert_eq!(fence.highest(), 2);
        // The leader of term 2 is still obeyed after a standby said 9.
        assert_eq!(fence.observe(f(2, true).as_ref()), Verdict::Obey);
    }
}
