//! The leader's read lease: reads answered from memory with no ReadIndex
//! round while no other member can have been elected.
//!
//! Not raft-rs's `LeaseBased` reads: those answer on any leader with
//! `check_quorum`, and a partitioned leader steps down up to two election
//! timeouts late while followers elect after one, so it serves stale
//! reads with perfect clocks. Here the lease is earned by a ReadIndex
//! round (a heartbeat round with a context) that a quorum acknowledged:
//!
//! - it starts at the round's *send* time `s`, taken before the round is
//!   handed to raft-rs (so no later than the heartbeats leave);
//! - a follower that acknowledged heard the heartbeat at some `r >= s`,
//!   and with `check_quorum` raft-rs refuses (pre-)votes while
//!   `election_elapsed < election_tick`, i.e. for at least
//!   `(election_ticks - 1) * tick` after `r` (its tick may fall just after
//!   `r`); a member that restarts refuses votes for its first
//!   `election_ticks` ticks (`node.rs`), so a restart does not reset that;
//! - so no quorum elects anyone before `s + (election_ticks - 1) * tick`
//!   by the followers' clocks. The lease lasts [`DRIFT_NUM`]/[`DRIFT_DEN`]
//!   of that by the leader's clock: clock rates may differ by up to 10%
//!   (crystals differ by about 0.01%);
//! - a leadership transfer bypasses the followers' refusal (the target
//!   campaigns with `CAMPAIGN_TRANSFER`), so the lease is dropped before a
//!   transfer starts and not renewed while one runs; stepping down drops
//!   it too.
//!
//! A read under the lease waits for nothing, but only once this member has
//! applied the commit index the round confirmed: everything acknowledged
//! by any leader before the round is then in memory here.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The lease lasts `DRIFT_NUM / DRIFT_DEN` of the shortest time in which
/// another member could be elected.
pub const DRIFT_NUM: u32 = 9;
pub const DRIFT_DEN: u32 = 10;

/// How long a lease earned by one acknowledged round lasts.
pub fn duration(tick: Duration, election_ticks: usize) -> Duration {
    let safe = tick * (election_ticks.saturating_sub(1) as u32);
    safe * DRIFT_NUM / DRIFT_DEN
}

/// Shared by the raft loop (which extends and drops it) and the handles
/// (which check it).
#[derive(Debug)]
pub struct ReadLease {
    base: Instant,
    /// Nanoseconds after `base` until which reads may skip ReadIndex;
    /// 0 when there is no lease.
    until_ns: AtomicU64,
    /// The commit index the last round confirmed.
    min_applied: AtomicU64,
    /// What this member has applied.
    applied: AtomicU64,
}

impl Default for ReadLease {
    fn default() -> ReadLease {
        ReadLease {
            base: Instant::now(),
            until_ns: AtomicU64::new(0),
            min_applied: AtomicU64::new(u64::MAX),
            applied: AtomicU64::new(0),
        }
    }
}

impl ReadLease {
    fn nanos(&self, t: Instant) -> u64 {
        t.saturating_duration_since(self.base).as_nanos() as u64
    }

    /// A round sent at `sent` was acknowledged by a quorum and confirmed
    /// commit index `commit`: the lease runs until `sent + lasts`.
    pub fn extend(&self, sent: Instant, lasts: Duration, commit: u64) {
        let until = self.nanos(sent + lasts).max(1);
        // Only the raft loop writes; readers see the commit bar raised
        // before the lease lengthens.
        let bar = match self.min_applied.load(Ordering::Acquire) {
            u64::MAX => commit,
            b => b.max(commit),
        };
        self.min_applied.store(bar, Ordering::Release);
        self.until_ns.fetch_max(until, Ordering::AcqRel);
    }

    /// No more reads under the lease (stepping down, a transfer).
    pub fn drop_lease(&self) {
        self.until_ns.store(0, Ordering::Release);
        self.min_applied.store(u64::MAX, Ordering::Release);
    }

    pub fn set_applied(&self, applied: u64) {
        self.applied.store(applied, Ordering::Release);
    }

    /// Whether a read arriving at `now` may be answered from memory.
    pub fn holds(&self, now: Instant) -> bool {
        let until = self.until_ns.load(Ordering::Acquire);
        until != 0
            && self.nanos(now) < until
            && self.applied.load(Ordering::Acquire) >= self.min_applied.load(Ordering::Acquire)
    }

    /// Time left at `now` (zero without a lease).
    pub fn left(&self, now: Instant) -> Duration {
        let until = self.until_ns.load(Ordering::Acquire);
        Duration::from_nanos(until.saturating_sub(self.nanos(now)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lease_is_shorter_than_the_quickest_election_by_the_drift_bound() {
        let tick = Duration::from_millis(100);
        // A follower may vote 5 ticks after the heartbeat at the earliest.
        assert_eq!(duration(tick, 6), Duration::from_millis(450));
        assert_eq!(duration(tick, 1), Duration::ZERO);
    }

    #[test]
    fn a_lease_holds_from_the_send_time_only_once_its_commit_is_applied() {
        let lease = ReadLease::default();
        let sent = Instant::now();
        assert!(!lease.holds(sent), "no lease before any round");
        lease.extend(sent, Duration::from_millis(450), 10);
        assert!(!lease.holds(sent), "commit 10 not applied yet");
        lease.set_applied(10);
        assert!(lease.holds(sent + Duration::from_millis(449)));
        assert!(!lease.holds(sent + Duration::from_millis(450)));
        // An older round never shortens it; a later one extends it.
        lease.extend(
            sent - Duration::from_millis(100),
            Duration::from_millis(450),
            10,
        );
        assert!(lease.holds(sent + Duration::from_millis(449)));
        lease.extend(
            sent + Duration::from_millis(100),
            Duration::from_millis(450),
            10,
        );
        assert!(lease.holds(sent + Duration::from_millis(549)));
        lease.drop_lease();
        assert!(!lease.holds(sent));
        assert_eq!(lease.left(sent), Duration::ZERO);
    }
}
