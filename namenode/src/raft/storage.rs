//! The raft log in sled: raft-rs's `Storage` over the same tree as the
//! namespace, under keys that start with `r`.
//!
//! | key                 | value                                   |
//! |---------------------|-----------------------------------------|
//! | `re` index (u64 BE) | `eraftpb::Entry` (protobuf)             |
//! | `rh`                | `HardState` (term, vote, commit)        |
//! | `rc`                | `ConfState` (the voters)                |
//! | `rs`                | `SnapshotMetadata` of the last compaction |
//!
//! To ensure correctness, writers uphold raft-rs's contract:
//! - the log has no holes: entries run from `first_index` to `last_index`
//!   without a gap, and an append that overlaps the tail replaces it;
//! - writes come from the one raft task, in order;
//! - entries and the hard state are on disk (`flush`) before any message
//!   that depends on them leaves (`persisted_messages`), and the vote
//!   before a vote is answered;
//! - installing a snapshot replaces the state machine, drops the log and
//!   records the snapshot point in ONE atomic batch.
//!
//! The state machine's applied index lives beside the state it describes
//! (`apply.rs`), so a crash can never leave the two out of step.

use raft::prelude::{ConfState, Entry, HardState, Snapshot, SnapshotMetadata};
use raft::{GetEntriesContext, RaftState, StorageError};

use crate::error::{NamenodeError, Result};
use crate::namespace::{counter, Namespace, STATE_PREFIXES};

const HARD_STATE: &[u8] = b"rh";
const CONF_STATE: &[u8] = b"rc";
const SNAPSHOT_META: &[u8] = b"rs";

fn entry_key(index: u64) -> [u8; 10] {
    let mut k = [0u8; 10];
    k[..2].copy_from_slice(b"re");
    k[2..].copy_from_slice(&index.to_be_bytes());
    k
}

fn store_err(e: impl std::fmt::Display) -> raft::Error {
    raft::Error::Store(StorageError::Other(e.to_string().into()))
}

fn decode<M: protobuf::Message>(bytes: &[u8]) -> Result<M> {
    M::parse_from_bytes(bytes)
        .map_err(|e| NamenodeError::Store(format!("corrupt raft record: {e}")))
}

fn encode<M: protobuf::Message>(m: &M) -> Vec<u8> {
    m.write_to_bytes().expect("raft messages always encode")
}

/// The state machine as a snapshot: every non-raft key and value.
#[derive(serde::Serialize, serde::Deserialize)]
struct SnapshotData {
    pairs: Vec<(Vec<u8>, Vec<u8>)>,
}

pub struct SledStorage {
    ns: Namespace,
    hard: HardState,
    conf: ConfState,
    snap: SnapshotMetadata,
    last: u64,
}

impl SledStorage {
    /// Opens the log in `ns`'s tree. A new store starts with `voters` as
    /// the group; an existing one must hold the same group.
    pub fn open(ns: Namespace, voters: &[u64]) -> Result<SledStorage> {
        let tree = &ns.tree;
        let hard = match tree.get(HARD_STATE)? {
            Some(v) => decode(&v)?,
            None => HardState::default(),
        };
        let snap: SnapshotMetadata = match tree.get(SNAPSHOT_META)? {
            Some(v) => decode(&v)?,
            None => SnapshotMetadata::default(),
        };
        let conf: ConfState = match tree.get(CONF_STATE)? {
            Some(v) => decode(&v)?,
            None => {
                let c = ConfState {
                    voters: voters.to_vec(),
                    ..Default::default()
                };
                tree.insert(CONF_STATE, encode(&c))?;
                c
            }
        };
        let mut stored = conf.voters.clone();
        stored.sort_unstable();
        let mut wanted = voters.to_vec();
        wanted.sort_unstable();
        if stored != wanted {
            return Err(NamenodeError::Config(format!(
                "the metadata store belongs to a group of {} members but [ha] lists {}; \
                 membership changes are not supported (wipe this member's name dir to rejoin)",
                stored.len(),
                wanted.len()
            )));
        }
        let last = match tree.scan_prefix(b"re").next_back() {
            Some(kv) => {
                let (k, _) = kv?;
                u64::from_be_bytes(k[2..10].try_into().expect("entry keys are 10 bytes"))
            }
            None => snap.index,
        }
        .max(snap.index);
        Ok(SledStorage {
            ns,
            hard,
            conf,
            snap,
            last,
        })
    }

    pub fn hard_state(&self) -> &HardState {
        &self.hard
    }

    pub fn snapshot_index(&self) -> u64 {
        self.snap.index
    }

    pub fn last(&self) -> u64 {
        self.last
    }

    /// Appends `entries`, replacing any tail they overlap. Not durable until
    /// [`SledStorage::sync`].
    pub fn append(&mut self, entries: &[Entry]) -> Result<()> {
        let Some(first) = entries.first() else {
            return Ok(());
        };
        let mut batch = sled::Batch::default();
        for stale in first.index..=self.last {
            batch.remove(&entry_key(stale));
        }
        for e in entries {
            batch.insert(&entry_key(e.index), encode(e));
        }
        self.ns.tree.apply_batch(batch)?;
        self.last = entries.last().map_or(self.last, |e| e.index);
        Ok(())
    }

    pub fn set_hard_state(&mut self, hs: &HardState) -> Result<()> {
        self.ns.tree.insert(HARD_STATE, encode(hs))?;
        self.hard = hs.clone();
        Ok(())
    }

    pub fn set_commit(&mut self, commit: u64) -> Result<()> {
        let mut hs = self.hard.clone();
        hs.commit = commit;
        self.set_hard_state(&hs)
    }

    /// Makes every write so far durable (one fsync covers the log and the
    /// state machine: they share the store).
    pub fn sync(&self) -> Result<()> {
        self.ns.tree.flush()?;
        Ok(())
    }

    /// Drops the log up to the applied index, which must be durable first
    /// (the caller flushes): from now on a member that needs those entries
    /// gets a snapshot.
    pub fn compact(&mut self, applied: u64) -> Result<()> {
        if applied <= self.snap.index {
            return Ok(());
        }
        let term = raft::Storage::term(self, applied).map_err(|e| {
            NamenodeError::Store(format!("compacting the raft log at {applied}: {e}"))
        })?;
        let mut meta = SnapshotMetadata {
            index: applied,
            term,
            ..Default::default()
        };
        meta.set_conf_state(self.conf.clone());
        let mut batch = sled::Batch::default();
        for index in self.snap.index + 1..=applied {
            batch.remove(&entry_key(index));
        }
        batch.insert(SNAPSHOT_META, encode(&meta));
        self.ns.tree.apply_batch(batch)?;
        self.snap = meta;
        self.last = self.last.max(applied);
        Ok(())
    }

    /// Installs a snapshot from the leader: the state machine becomes the
    /// snapshot's and the log restarts after it, atomically.
    pub fn install(&mut self, snapshot: &Snapshot) -> Result<()> {
        let meta = snapshot.get_metadata();
        let data: SnapshotData = bincode::deserialize(&snapshot.data)?;
        let tree = &self.ns.tree;
        let mut batch = sled::Batch::default();
        for prefix in STATE_PREFIXES.iter().chain(b"r".iter()) {
            for kv in tree.scan_prefix([*prefix]) {
                batch.remove(kv?.0);
            }
        }
        for (k, v) in data.pairs {
            if k.first().is_some_and(|p| STATE_PREFIXES.contains(p)) {
                batch.insert(k, v);
            }
        }
        batch.insert(counter::APPLIED_INDEX, &meta.index.to_be_bytes());
        let mut hard = self.hard.clone();
        hard.term = hard.term.max(meta.term);
        hard.commit = hard.commit.max(meta.index);
        let conf = meta.get_conf_state().clone();
        batch.insert(HARD_STATE, encode(&hard));
        batch.insert(CONF_STATE, encode(&conf));
        batch.insert(SNAPSHOT_META, encode(meta));
        tree.apply_batch(batch)?;
        self.hard = hard;
        self.conf = conf;
        self.snap = meta.clone();
        self.last = meta.index;
        Ok(())
    }

    fn entry(&self, index: u64) -> raft::Result<Entry> {
        match self.ns.tree.get(entry_key(index)).map_err(store_err)? {
            Some(v) => decode(&v).map_err(store_err),
            None => Err(raft::Error::Store(StorageError::Unavailable)),
        }
    }
}

impl raft::Storage for SledStorage {
    fn initial_state(&self) -> raft::Result<RaftState> {
        Ok(RaftState::new(self.hard.clone(), self.conf.clone()))
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        _context: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        if low <= self.snap.index {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        if high > self.last + 1 {
            return Err(raft::Error::Store(StorageError::Unavailable));
        }
        let max = max_size.into();
        let mut out = Vec::with_capacity((high - low).min(1024) as usize);
        let mut size = 0u64;
        for kv in self.ns.tree.range(entry_key(low)..entry_key(high)) {
            let (_, v) = kv.map_err(store_err)?;
            size += v.len() as u64;
            // raft-rs wants at least one entry even past the limit.
            if !out.is_empty() && max.is_some_and(|m| size > m) {
                break;
            }
            out.push(decode(&v).map_err(store_err)?);
        }
        if out.is_empty() && low < high {
            return Err(raft::Error::Store(StorageError::Unavailable));
        }
        Ok(out)
    }

    fn term(&self, index: u64) -> raft::Result<u64> {
        if index == self.snap.index {
            return Ok(self.snap.term);
        }
        if index < self.snap.index {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        if index > self.last {
            return Err(raft::Error::Store(StorageError::Unavailable));
        }
        Ok(self.entry(index)?.term)
    }

    fn first_index(&self) -> raft::Result<u64> {
        Ok(self.snap.index + 1)
    }

    fn last_index(&self) -> raft::Result<u64> {
        Ok(self.last)
    }

    /// The current state machine as a snapshot. Called on the raft task,
    /// which also applies entries, so the state cannot move meanwhile.
    fn snapshot(&self, _request_index: u64, _to: u64) -> raft::Result<Snapshot> {
        let applied = self.ns.counter(counter::APPLIED_INDEX).map_err(store_err)?;
        let term = self.term(applied)?;
        let mut pairs = Vec::new();
        for prefix in STATE_PREFIXES {
            for kv in self.ns.tree.scan_prefix([*prefix]) {
                let (k, v) = kv.map_err(store_err)?;
                pairs.push((k.to_vec(), v.to_vec()));
            }
        }
        let mut snapshot = Snapshot {
            data: bincode::serialize(&SnapshotData { pairs })
                .map_err(store_err)?
                .into(),
            ..Default::default()
        };
        let meta = snapshot.mut_metadata();
        meta.index = applied;
        meta.term = term;
        meta.set_conf_state(self.conf.clone());
        Ok(snapshot)
    }
}

#[cfg(test)]
mod tests {
    use raft::Storage as _;

    use super::*;

    fn entry(index: u64, term: u64) -> Entry {
        Entry {
            index,
            term,
            data: vec![index as u8].into(),
            ..Default::default()
        }
    }

    fn open(dir: &std::path::Path) -> SledStorage {
        let db = sled::Config::new().path(dir).open().unwrap();
        SledStorage::open(Namespace::open(&db).unwrap(), &[1, 2, 3]).unwrap()
    }

    fn get(s: &SledStorage, low: u64, high: u64) -> raft::Result<Vec<u64>> {
        let ctx = GetEntriesContext::empty(false);
        Ok(s.entries(low, high, None, ctx)?
            .iter()
            .map(|e| e.index)
            .collect())
    }

    #[test]
    fn appends_replace_the_overlapped_tail_and_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = open(dir.path());
        s.append(&(1..=5).map(|i| entry(i, 1)).collect::<Vec<_>>())
            .unwrap();
        // A new leader overwrites 4.. with a shorter tail of term 2.
        s.append(&[entry(4, 2)]).unwrap();
        assert_eq!(s.last_index().unwrap(), 4);
        assert_eq!(get(&s, 1, 5).unwrap(), vec![1, 2, 3, 4]);
        assert_eq!(s.term(4).unwrap(), 2);
        assert!(matches!(
            get(&s, 1, 6),
            Err(raft::Error::Store(StorageError::Unavailable))
        ));
        s.set_hard_state(&HardState {
            term: 2,
            vote: 1,
            commit: 3,
            ..Default::default()
        })
        .unwrap();
        s.sync().unwrap();
        drop(s);
        let s = open(dir.path());
        assert_eq!(s.last_index().unwrap(), 4);
        assert_eq!(s.term(4).unwrap(), 2);
        let state = s.initial_state().unwrap();
        assert_eq!((state.hard_state.term, state.hard_state.vote), (2, 1));
        assert_eq!(state.conf_state.voters, vec![1, 2, 3]);
    }

    #[test]
    fn compaction_drops_the_prefix_and_snapshots_carry_the_state() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = open(dir.path());
        s.append(&(1..=6).map(|i| entry(i, 1)).collect::<Vec<_>>())
            .unwrap();
        s.ns.tree.insert(b"i-some-inode", b"v".as_slice()).unwrap();
        s.ns.tree
            .insert(counter::APPLIED_INDEX, &4u64.to_be_bytes())
            .unwrap();
        s.compact(4).unwrap();
        assert_eq!(s.first_index().unwrap(), 5);
        assert_eq!(s.term(4).unwrap(), 1, "the snapshot point keeps its term");
        assert!(matches!(
            s.term(3),
            Err(raft::Error::Store(StorageError::Compacted))
        ));
        assert!(matches!(
            get(&s, 2, 6),
            Err(raft::Error::Store(StorageError::Compacted))
        ));
        assert_eq!(get(&s, 5, 7).unwrap(), vec![5, 6]);
        let snap = s.snapshot(4, 2).unwrap();
        assert_eq!(snap.get_metadata().index, 4);

        // A wiped member installs it: state replaced, log restarted after it.
        let other = tempfile::tempdir().unwrap();
        let mut t = open(other.path());
        t.append(&[entry(1, 1)]).unwrap();
        t.ns.tree.insert(b"i-stale", b"x".as_slice()).unwrap();
        t.install(&snap).unwrap();
        assert_eq!(t.ns.tree.get(b"i-some-inode").unwrap().unwrap(), b"v");
        assert!(t.ns.tree.get(b"i-stale").unwrap().is_none());
        assert_eq!(t.ns.counter(counter::APPLIED_INDEX).unwrap(), 4);
        assert_eq!((t.first_index().unwrap(), t.last_index().unwrap()), (5, 4));
        assert_eq!(t.hard_state().commit, 4);
    }

    #[test]
    fn a_store_of_another_group_size_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        drop(open(dir.path()));
        let db = sled::Config::new().path(dir.path()).open().unwrap();
        let err = SledStorage::open(Namespace::open(&db).unwrap(), &[1])
            .err()
            .unwrap();
        assert!(err.to_string().contains("membership"), "{err}");
    }
}
