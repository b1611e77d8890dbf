//! Writer leases: a client holds the files it writes while it keeps
//! renewing. The holder of an under-construction file is persisted in its
//! inode; the renewal clocks live here and restart with the namenode and
//! whenever it becomes the leader (a holder we have not heard from since
//! then counts from then).

use std::collections::HashMap;
use std::time::{Duration, Instant};

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
        let last = self.renewed.get(client).copied().unwrap_or(self.started);
        last.elapsed() < self.soft_limit
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
}
