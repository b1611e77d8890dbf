//! The retry cache in memory: each named call's recorded result by its
//! key, with each client id stored once however many calls it has in
//! the cache (three per file it writes: create, add-block, complete).
//! A key was a byte string of `x`, the client id, a 0 and the call
//! number, one allocation per entry; the checkpoint still stores that
//! form ([`RetryKey::to_bytes`]).
//!
//! A call says below which number its client has had every answer
//! (`answered_below`, the raft dissertation's client sessions, §6.3):
//! apply drops those results, as the client never asks again, and
//! records the mark in the client's **session entry**, at call number
//! [`SESSION_CALL`], so that a stray copy of an answered call (delayed on
//! the network, or sent by a follower that lost its leadership) is
//! refused instead of applied twice. The cache then holds the calls a
//! client has in flight, not ten minutes of its history (three entries per
//! file written, 600–900 B per file at 1M files). The session entry is
//! an entry like any other: checkpointed, replicated, and swept once its
//! client has been quiet for the cache's expiry, which bounds the
//! guarantee as before.

use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;
use std::sync::Arc;

use super::RetryEntry;
use crate::checkpoint::encoding::{parse_retry_key, retry_key_bytes};
use crate::error::Result;
use crate::meta_op::{CallKey, MetaResult};

/// The call number of a client's session entry; clients never use it.
pub const SESSION_CALL: u64 = u64::MAX;

/// A call's key: its client id and call number. Keys order as their
/// checkpoint bytes do (client ids hold no control characters, so none
/// holds the 0 that ends it there), which the sweep's cursor relies on.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RetryKey {
    client: Arc<str>,
    call: u64,
}

impl RetryKey {
    pub fn of(call: &CallKey) -> RetryKey {
        RetryKey {
            client: call.client.as_str().into(),
            call: call.call,
        }
    }

    /// The key of `client`'s session entry.
    pub fn session(client: &str) -> RetryKey {
        RetryKey {
            client: client.into(),
            call: SESSION_CALL,
        }
    }

    /// The checkpoint's key of this call.
    pub fn to_bytes(&self) -> Vec<u8> {
        retry_key_bytes(&self.client, self.call)
    }

    pub fn from_bytes(k: &[u8]) -> Result<RetryKey> {
        RetryKey::from_bytes_after(k, None)
    }

    /// [`RetryKey::from_bytes`] sharing `previous`'s client id when it is
    /// the same (keys read in order come grouped by client).
    pub fn from_bytes_after(k: &[u8], previous: Option<&RetryKey>) -> Result<RetryKey> {
        let (client, call) = parse_retry_key(k)?;
        let client = match previous {
            Some(p) if *p.client == *client => p.client.clone(),
            _ => client.into(),
        };
        Ok(RetryKey { client, call })
    }
}

#[derive(Debug, Default)]
pub struct RetryCache {
    entries: BTreeMap<RetryKey, RetryEntry>,
    /// Each client id in `entries`, once, with its number of entries.
    clients: HashMap<Arc<str>, usize>,
}

impl RetryCache {
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The entry of `client`'s call `call`.
    pub fn get(&self, client: &str, call: u64) -> Option<&RetryEntry> {
        let (client, _) = self.clients.get_key_value(client)?;
        self.entries.get(&RetryKey {
            client: client.clone(),
            call,
        })
    }

    /// The mark in `client`'s session entry: every call numbered below
    /// it was answered. 0 without one.
    pub fn answered_below(&self, client: &str) -> Result<u64> {
        match self.get(client, SESSION_CALL).map(RetryEntry::result) {
            None => Ok(0),
            Some(Ok(Ok(MetaResult::CallsAnswered { below }))) => Ok(below),
            Some(other) => Err(crate::error::NamenodeError::Store(format!(
                "the session entry of client {client} holds {other:?}"
            ))),
        }
    }

    /// The keys of `client`'s entries for calls numbered below `below`.
    pub fn calls_below(&self, client: &str, below: u64) -> Vec<RetryKey> {
        let Some((client, _)) = self.clients.get_key_value(client) else {
            return Vec::new();
        };
        let from = RetryKey {
            client: client.clone(),
            call: 0,
        };
        let to = RetryKey {
            client: client.clone(),
            call: below,
        };
        self.entries
            .range(from..to)
            .map(|(k, _)| k.clone())
            .collect()
    }

    pub fn get_key(&self, key: &RetryKey) -> Option<&RetryEntry> {
        self.entries.get(key)
    }

    /// Records `entry` under `key`, storing its client id once; the key
    /// as stored.
    pub fn insert(&mut self, key: RetryKey, entry: RetryEntry) -> RetryKey {
        let client = match self.clients.get_key_value(&*key.client) {
            Some((c, _)) => c.clone(),
            None => key.client,
        };
        let key = RetryKey {
            client: client.clone(),
            call: key.call,
        };
        if self.entries.insert(key.clone(), entry).is_none() {
            *self.clients.entry(client).or_default() += 1;
        }
        key
    }

    /// Adds `sorted` (in key order, each key once, client ids shared
    /// within a client as [`RetryKey::from_bytes_after`] reads them) to
    /// an empty cache in one bulk build: a load's.
    pub fn load_sorted(&mut self, sorted: Vec<(RetryKey, RetryEntry)>) {
        if !self.is_empty() {
            for (key, entry) in sorted {
                self.insert(key, entry);
            }
            return;
        }
        for (key, _) in &sorted {
            match self.clients.get_mut(&*key.client) {
                Some(n) => *n += 1,
                None => {
                    self.clients.insert(key.client.clone(), 1);
                }
            }
        }
        self.entries = sorted.into_iter().collect();
    }

    pub fn remove(&mut self, key: &RetryKey) {
        if self.entries.remove(key).is_none() {
            return;
        }
        if let Some(n) = self.clients.get_mut(&*key.client) {
            *n -= 1;
            if *n == 0 {
                self.clients.remove(&*key.client);
            }
        }
    }

    /// The entries after `after` (from the first when `None`), in key
    /// order.
    pub fn after(
        &self,
        after: Option<&RetryKey>,
    ) -> impl Iterator<Item = (&RetryKey, &RetryEntry)> {
        let from = after.map_or(Bound::Unbounded, Bound::Excluded);
        self.entries.range((from, Bound::Unbounded))
    }

    pub fn keys(&self) -> impl Iterator<Item = &RetryKey> {
        self.entries.keys()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(client: &str, call: u64) -> RetryKey {
        RetryKey::of(&CallKey {
            client: client.into(),
            call,
            answered_below: 0,
        })
    }

    #[test]
    fn keys_order_as_their_checkpoint_bytes_and_survive_them() {
        let clients = [
            "",
            "a",
            "a-b",
            "ab",
            "b",
            "rfs-client-0f",
            "rfs-client-0f0",
            "é",
        ];
        let calls = [0, 1, 255, 256, 1 << 40, u64::MAX];
        let mut keys: Vec<RetryKey> = clients
            .iter()
            .flat_map(|c| calls.iter().map(move |n| key(c, *n)))
            .collect();
        keys.sort();
        let bytes: Vec<Vec<u8>> = keys.iter().map(RetryKey::to_bytes).collect();
        let mut sorted = bytes.clone();
        sorted.sort();
        assert_eq!(bytes, sorted);
        for (k, b) in keys.iter().zip(&bytes) {
            assert_eq!(RetryKey::from_bytes(b).unwrap(), *k);
        }
        assert!(RetryKey::from_bytes(b"xshort").is_err());
        assert!(RetryKey::from_bytes(b"x\xff\xfe\0\0\0\0\0\0\0\0\x01").is_err());
    }

    #[test]
    fn a_client_id_is_stored_once_and_forgotten_with_its_last_entry() {
        let mut cache = RetryCache::default();
        let entry = || RetryEntry::new(5, &Ok(crate::meta_op::MetaResult::Abandoned));
        let a1 = cache.insert(key("a", 1), entry());
        let a2 = cache.insert(key("a", 2), entry());
        cache.insert(key("a", 2), entry());
        cache.insert(key("b", 1), entry());
        assert!(Arc::ptr_eq(&a1.client, &a2.client));
        assert_eq!(
            (cache.len(), cache.clients["a"], cache.clients["b"]),
            (3, 2, 1)
        );
        assert!(cache.get("a", 2).is_some() && cache.get("c", 1).is_none());
        let after: Vec<u64> = cache.after(Some(&a1)).map(|(k, _)| k.call).collect();
        assert_eq!(after, [2, 1]);
        cache.remove(&key("a", 1));
        cache.remove(&key("a", 1));
        assert_eq!(cache.clients["a"], 1);
        cache.remove(&key("a", 2));
        assert!(!cache.clients.contains_key("a") && cache.len() == 1);

        // A load: keys read in order share their client id, and the bulk
        // build counts them as inserts would.
        let mut loaded = RetryCache::default();
        let mut sorted: Vec<(RetryKey, RetryEntry)> = Vec::new();
        for (c, n) in [("a", 1), ("a", 2), ("b", 1)] {
            let previous = sorted.last().map(|(k, _)| k);
            let k = RetryKey::from_bytes_after(&key(c, n).to_bytes(), previous).unwrap();
            sorted.push((k, entry()));
        }
        assert!(Arc::ptr_eq(&sorted[0].0.client, &sorted[1].0.client));
        loaded.load_sorted(sorted);
        assert_eq!(
            (loaded.len(), loaded.clients["a"], loaded.clients["b"]),
            (3, 2, 1)
        );
        assert!(loaded.get("a", 2).is_some());
    }
}
