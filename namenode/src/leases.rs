//! Writer leases: a client holds the files it writes while it keeps
//! renewing. The holder of an under-construction file is persisted in its
//! inode; the renewal clocks live here and restart with the namenode and
//! whenever it becomes the leader (a holder we have not heard from since
//! then counts from then).

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// The writer of a file whose lease the namenode is recovering. No client
/// renews it, and the dead writer's calls (`add_block`, `complete`,
/// `update_pipeline`) find the file held by someone else.
pub const RECOVERY_HOLDER: &str = "namenode-lease-recovery";

pub struct Leases {
    renewed: HashMap<String, Instant>,
    started: Instant,
    soft_limit: Duration,
    /// Clients silent this long are forgotten (bounds the map).
    hard_limit: Duration,
    renewals_since_prune: usize,
}

/// Renewals between sweeps of long-silent clients.
const PRUNE_EVERY: usize = 4096;

impl Leases {
    pub fn new(soft_limit: Duration, hard_limit: Duration) -> Leases {
        Leases {
            renewed: HashMap::new(),
            started: Instant::now(),
            soft_limit,
            hard_limit,
            renewals_since_prune: 0,
        }
    }

    /// Restarts `client`'s lease clock (all the files it writes).
    pub fn renew(&mut self, client: &str) {
        self.renewed.insert(client.to_string(), Instant::now());
        self.renewals_since_prune += 1;
        if self.renewals_since_prune >= PRUNE_EVERY {
            self.renewals_since_prune = 0;
            let hard = self.hard_limit;
            self.renewed.retain(|_, t| t.elapsed() < hard);
        }
    }

    /// Counts every holder from now: called when this member becomes the
    /// leader, which has not heard any renewals while it followed.
    pub fn restart_clocks(&mut self) {
        self.renewed.clear();
        self.started = Instant::now();
    }

    /// Whether `client`'s lease is within the soft limit.
    pub fn is_live(&self, client: &str) -> bool {
        self.silent_for(client) < self.soft_limit
    }

    /// Whether `client` has been silent past the hard limit: the namenode
    /// recovers its files.
    pub fn hard_expired(&self, client: &str) -> bool {
        self.silent_for(client) >= self.hard_limit
    }

    /// Time since `client` last renewed (or since the clocks restarted). A
    /// pruned client was silent past the hard limit, and so is `started`.
    fn silent_for(&self, client: &str) -> Duration {
        self.renewed
            .get(client)
            .copied()
            .unwrap_or(self.started)
            .elapsed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_holders_count_from_start_and_renewal_restarts_the_clock() {
        let mut l = Leases::new(Duration::from_millis(30), Duration::from_secs(60));
        assert!(
            l.is_live("w"),
            "a holder from before a restart gets a full soft limit"
        );
        std::thread::sleep(Duration::from_millis(40));
        assert!(!l.is_live("w"));
        l.renew("w");
        assert!(l.is_live("w"));
        assert!(!l.is_live("other"));
    }

    #[test]
    fn hard_limit_counts_from_the_last_renewal() {
        let mut l = Leases::new(Duration::from_millis(10), Duration::from_millis(40));
        assert!(!l.hard_expired("w"));
        std::thread::sleep(Duration::from_millis(50));
        assert!(l.hard_expired("w"), "silent since the clocks started");
        l.renew("w");
        assert!(!l.hard_expired("w"));
        l.restart_clocks();
        assert!(!l.hard_expired("other"), "a new leader counts from now");
    }
}
