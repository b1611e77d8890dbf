//! When the leader proposes the steps of the retry-cache sweep.
//!
//! Every [`SWEEP_EVERY_TICKS`] a sweep starts from the first entry; its
//! steps ([`MetaOp::SweepRetryCache`], at most [`STEP_ENTRIES`] entries
//! each) follow one per tick until a step reaches the end. Each member
//! follows the sweep as steps are applied, whoever proposed them, so a new
//! leader carries on where the old one stopped. Bounding each step keeps
//! every member's raft thread responsive and its memory flat, where one
//! op over the whole cache (hundreds of thousands of entries at a few
//! hundred creates a second) stalled it and grew it by the batch's size.

use crate::meta_op::MetaOp;

/// Retry-cache entries older than this are dropped: a client retries
/// within its failover deadline, far shorter.
const RETRY_CACHE_TTL_MS: u64 = 10 * 60 * 1000;
/// How often a sweep starts, in ticks.
const SWEEP_EVERY_TICKS: u64 = 600;
/// Entries one step looks at.
const STEP_ENTRIES: u32 = 4096;
/// A proposed step not applied within this many ticks (lost with a
/// leader change) is proposed again.
const STEP_TIMEOUT_TICKS: u64 = 50;

#[derive(Debug, Default)]
pub struct RetrySweep {
    /// While a sweep runs: the key the next step starts after.
    next: Option<Vec<u8>>,
    /// The tick this member last proposed a step, until one is applied.
    proposed_at: Option<u64>,
}

impl RetrySweep {
    /// The step a leader should propose at tick `tick`, if any.
    pub fn on_tick(&mut self, tick: u64, now_ms: u64) -> Option<MetaOp> {
        if self.next.is_none() && tick.is_multiple_of(SWEEP_EVERY_TICKS) {
            self.next = Some(Vec::new());
        }
        let after = self.next.as_ref()?;
        if let Some(at) = self.proposed_at {
            if tick.saturating_sub(at) < STEP_TIMEOUT_TICKS {
                return None;
            }
        }
        self.proposed_at = Some(tick);
        Some(MetaOp::SweepRetryCache {
            before_ms: now_ms.saturating_sub(RETRY_CACHE_TTL_MS),
            after: after.clone(),
            limit: STEP_ENTRIES,
        })
    }

    /// A step was applied: the sweep goes on after `next`, or ends.
    pub fn on_applied(&mut self, next: Option<Vec<u8>>) {
        self.next = next;
        self.proposed_at = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn after(op: Option<MetaOp>) -> Option<Vec<u8>> {
        match op? {
            MetaOp::SweepRetryCache { after, limit, .. } => {
                assert_eq!(limit, STEP_ENTRIES);
                Some(after)
            }
            other => panic!("not a sweep step: {other:?}"),
        }
    }

    #[test]
    fn a_sweep_starts_on_schedule_and_steps_once_each_is_applied() {
        let mut s = RetrySweep::default();
        assert_eq!(after(s.on_tick(1, 0)), None, "not time yet");
        assert_eq!(after(s.on_tick(SWEEP_EVERY_TICKS, 0)), Some(vec![]));
        // One step in flight at a time.
        assert_eq!(after(s.on_tick(SWEEP_EVERY_TICKS + 1, 0)), None);
        s.on_applied(Some(b"xa".to_vec()));
        assert_eq!(
            after(s.on_tick(SWEEP_EVERY_TICKS + 2, 0)),
            Some(b"xa".to_vec())
        );
        // A step lost with a leader change is proposed again.
        let later = SWEEP_EVERY_TICKS + 2 + STEP_TIMEOUT_TICKS;
        assert_eq!(after(s.on_tick(later, 0)), Some(b"xa".to_vec()));
        s.on_applied(None);
        assert_eq!(after(s.on_tick(later + 1, 0)), None, "the sweep ended");
        assert_eq!(after(s.on_tick(2 * SWEEP_EVERY_TICKS, 0)), Some(vec![]));
    }

    #[test]
    fn a_member_follows_steps_it_did_not_propose() {
        let mut s = RetrySweep::default();
        s.on_applied(Some(b"xk".to_vec()));
        assert_eq!(after(s.on_tick(7, 0)), Some(b"xk".to_vec()));
    }

    #[test]
    fn steps_drop_what_is_older_than_the_ttl() {
        let mut s = RetrySweep::default();
        match s.on_tick(0, RETRY_CACHE_TTL_MS + 5) {
            Some(MetaOp::SweepRetryCache { before_ms, .. }) => assert_eq!(before_ms, 5),
            other => panic!("{other:?}"),
        }
    }
}
