//! The log a leader keeps for members installing a snapshot.
//!
//! A member far behind gets a snapshot at index S and then needs the log
//! from S + 1. Loading a large snapshot takes a while (about 15 s at 1M
//! files on this hardware); if the leader compacted past S meanwhile, the
//! member would need a second snapshot, and the leader would build it while
//! the member loads the first, both on the CPU the leader's commits need.
//! So while a member installs a snapshot the leader compacts no further
//! than S. A hold ends when the member has matched S, when the snapshot
//! failed to send, or after [`HOLD_FOR`] or [`HOLD_ENTRIES`] past S, so a
//! member that never comes back cannot make the log grow without bound.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Longest a member's install holds the log back.
pub const HOLD_FOR: Duration = Duration::from_secs(300);
/// Most entries applied past a hold before it is dropped (about 200 MB of
/// log at 200 B per entry).
pub const HOLD_ENTRIES: u64 = 1_000_000;

#[derive(Debug, Default)]
pub struct InstallHolds {
    /// Per member: the snapshot's index and when it was sent.
    holds: HashMap<u64, (u64, Instant)>,
}

impl InstallHolds {
    /// A snapshot at `index` is on its way to `to`.
    pub fn sent(&mut self, to: u64, index: u64, now: Instant) {
        self.holds.insert(to, (index, now));
    }

    /// Sending the snapshot to `to` failed: raft-rs will send a new one.
    pub fn failed(&mut self, to: u64) {
        self.holds.remove(&to);
    }

    /// Highest index the log may be compacted to, given the applied
    /// index and each member's matched index (`None` for a member no
    /// longer in the group); drops the holds that have ended.
    pub fn compact_limit(
        &mut self,
        applied: u64,
        matched: impl Fn(u64) -> Option<u64>,
        now: Instant,
    ) -> u64 {
        self.holds.retain(|to, (index, since)| {
            let ended = match matched(*to) {
                None => true,
                Some(m) => m >= *index,
            };
            let expired = now.duration_since(*since) >= HOLD_FOR
                || applied.saturating_sub(*index) > HOLD_ENTRIES;
            if expired && !ended {
                tracing::warn!(
                    "member {to} has not installed the snapshot at {index} after {:?}: \
                     the log is compacted past it",
                    now.duration_since(*since)
                );
            }
            !(ended || expired)
        });
        self.holds
            .values()
            .map(|(index, _)| *index)
            .fold(applied, u64::min)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hold_keeps_the_log_after_the_snapshot_until_the_member_matches_it() {
        let t0 = Instant::now();
        let mut h = InstallHolds::default();
        assert_eq!(h.compact_limit(500, |_| Some(0), t0), 500);
        h.sent(2, 100, t0);
        // Member 2 is loading (matched still 0); member 3 is current.
        let matched = |m: u64| Some(if m == 2 { 0 } else { 900 });
        assert_eq!(h.compact_limit(900, matched, t0), 100);
        assert_eq!(h.compact_limit(1000, matched, t0 + HOLD_FOR / 2), 100);
        // Installed: matched reaches the snapshot's index.
        let matched = |_| Some(100);
        assert_eq!(h.compact_limit(1000, matched, t0 + HOLD_FOR / 2), 1000);
        assert!(h.holds.is_empty());
    }

    #[test]
    fn a_hold_ends_on_failure_removal_time_or_distance() {
        let t0 = Instant::now();
        let behind = |_| Some(0);
        let mut h = InstallHolds::default();
        h.sent(2, 100, t0);
        h.failed(2);
        assert_eq!(h.compact_limit(900, behind, t0), 900);

        h.sent(2, 100, t0);
        assert_eq!(h.compact_limit(900, |_| None, t0), 900, "member removed");

        h.sent(2, 100, t0);
        assert_eq!(h.compact_limit(900, behind, t0 + HOLD_FOR), 900);

        h.sent(2, 100, t0);
        assert_eq!(h.compact_limit(100 + HOLD_ENTRIES, behind, t0), 100);
        assert_eq!(
            h.compact_limit(101 + HOLD_ENTRIES, behind, t0),
            101 + HOLD_ENTRIES
        );

        // Two members: the lower snapshot bounds compaction.
        h.sent(2, 300, t0);
        h.sent(3, 200, t0);
        assert_eq!(h.compact_limit(900, behind, t0), 200);
    }
}
