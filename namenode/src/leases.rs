//! Writer leases: a client holds the files it writes while it keeps
//! renewing. The holder of an under-construction file is persisted in its
//! inode; the renewal clocks live here and restart with the namenode (a
//! holder we have not heard from since start counts from start).

use std::collections::HashMap;
use std::time::{Duration, Instant};

pub struct Leases {
    renewed: HashMap<String, Instant>,
    started: Instant,
    soft_limit: Duration,
}

impl Leases {
    pub fn new(soft_limit: Duration) -> Leases {
        Leases {
            renewed: HashMap::new(),
            started: Instant::now(),
            soft_limit,
        }
    }

    pub fn renew(&mut self, client: &str) {
        self.renewed.insert(client.to_string(), Instant::now());
    }

    /// Whether `client`'s lease is within the soft limit.
    pub fn is_live(&self, client: &str) -> bool {
        let last = self.renewed.get(client).copied().unwrap_or(self.started);
        last.elapsed() < self.soft_limit
    }
}
