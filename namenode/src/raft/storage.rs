//! raft-rs's `Storage`: the log and hard state in an append-only file
//! ([`LogFile`], `raft.log` in the name dir), the group's voters and the
//! last compaction point in the checkpoint beside the state machine they
//! describe (`checkpoint/`).
//!
//! | where                | what                                       |
//! |----------------------|--------------------------------------------|
//! | `raft.log`           | entries after the compaction point, hard state |
//! | checkpoint `rc`      | `ConfState` (the voters)                   |
//! | checkpoint `rs`      | `SnapshotMetadata` of the last compaction  |
//!
//! To ensure correctness, writers uphold raft-rs's contract:
//! - the log has no holes: entries run from `first_index` to `last_index`
//!   without a gap, and an append that overlaps the tail replaces it;
//! - writes come from the one raft task, in order;
//! - entries and the hard state are on disk ([`RaftStorage::sync`]: one
//!   `fdatasync` of the log file) before any message that depends on them
//!   leaves (`persisted_messages`), and the vote before a vote is answered;
//! - the state machine is NOT flushed per entry: the applied index lives
//!   beside the state it describes (`apply.rs`), a checkpoint holds the
//!   state at one applied index, and after a crash the entries past the recovered applied
//!   index are applied again from the log. So the log is compacted only up
//!   to a state flushed first (in [`RaftStorage::compact`]);
//! - installing a snapshot replaces the state machine and records the
//!   snapshot point in ONE image renamed into place, before the log is
//!   emptied. A crash between the two leaves log entries that
//!   [`RaftStorage::open`] keeps only if they continue the snapshot.

use std::path::{Path, PathBuf};

use raft::prelude::{ConfState, Entry, HardState, Snapshot, SnapshotMetadata};
use raft::{GetEntriesContext, RaftState, StorageError};

use super::log_file::LogFile;
use crate::error::{NamenodeError, Result};
use crate::namespace::Namespace;

/// The raft log's file in the name dir.
pub const LOG_FILE: &str = "raft.log";
const CONF_STATE: &[u8] = b"rc";
const SNAPSHOT_META: &[u8] = b"rs";
/// Where rfs before the log file kept entries (`re` index) and the hard
/// state (`rh`), among the checkpoint's keys; moved into the log file on
/// first open.
const OLD_ENTRY_PREFIX: &[u8] = b"re";
const OLD_HARD_STATE: &[u8] = b"rh";

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

pub struct RaftStorage {
    ns: Namespace,
    /// Where `ns` keeps its files, for error messages.
    store_dir: PathBuf,
    log: LogFile,
    conf: ConfState,
    snap: SnapshotMetadata,
    maker: SnapshotMaker,
}

impl RaftStorage {
    /// Opens the log file in `name_dir` and the raft keys in `ns`'s tree
    /// (kept in `name_dir` too). A new store starts with `voters` as the
    /// group; an existing one must hold the same group.
    pub fn open(ns: Namespace, name_dir: &Path, voters: &[u64]) -> Result<RaftStorage> {
        let store = ns.store();
        let snap: SnapshotMetadata = match store.raft_key(SNAPSHOT_META) {
            Some(v) => decode(&v)?,
            None => SnapshotMetadata::default(),
        };
        let conf: ConfState = match store.raft_key(CONF_STATE) {
            Some(v) => decode(&v)?,
            None => {
                let c = ConfState {
                    voters: voters.to_vec(),
                    ..Default::default()
                };
                store.put_raft_keys(vec![(CONF_STATE.to_vec(), Some(encode(&c)))])?;
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
        let mut log = LogFile::open(&name_dir.join(LOG_FILE))?;
        migrate_old_log(&ns, &mut log)?;
        let continues = match (log.first_index(), log.entry(snap.index)) {
            (None, _) => true,
            (Some(_), Some(at_snap)) => at_snap.term == snap.term,
            (Some(first), None) => first == snap.index + 1,
        };
        if !continues {
            tracing::warn!(
                "raft log entries {:?}..={:?} do not continue the snapshot at {} (term {}); \
                 dropping them (the leader sends what is missing)",
                log.first_index(),
                log.last_index(),
                snap.index,
                snap.term
            );
            log.compact(u64::MAX)?;
        } else if log.first_index().is_some_and(|f| f <= snap.index) {
            log.compact(snap.index)?;
        }
        Ok(RaftStorage {
            store_dir: ns.store().dir().to_path_buf(),
            ns,
            log,
            conf,
            snap,
            maker: SnapshotMaker::new(),
        })
    }

    /// `what` (e.g. "cannot flush") failed on the metadata store: one line
    /// naming the store's path.
    pub fn state_write_failed(&self, what: &str, e: impl Into<NamenodeError>) -> NamenodeError {
        let reason = match e.into() {
            NamenodeError::Internal(r) | NamenodeError::Store(r) => r,
            other => other.to_string(),
        };
        NamenodeError::Store(format!(
            "{what} the metadata store {}: {reason}",
            self.store_dir.display()
        ))
    }

    pub fn hard_state(&self) -> &HardState {
        self.log.hard_state()
    }

    pub fn snapshot_index(&self) -> u64 {
        self.snap.index
    }

    pub fn last(&self) -> u64 {
        self.log.last_index().unwrap_or(0).max(self.snap.index)
    }

    /// Appends `entries`, replacing any tail they overlap. Not durable until
    /// [`RaftStorage::sync`].
    pub fn append(&mut self, entries: &[Entry]) -> Result<()> {
        self.log.append(entries)
    }

    pub fn set_hard_state(&mut self, hs: &HardState) -> Result<()> {
        self.log.set_hard_state(hs)
    }

    pub fn set_commit(&mut self, commit: u64) -> Result<()> {
        let mut hs = self.log.hard_state().clone();
        hs.commit = commit;
        self.set_hard_state(&hs)
    }

    /// What the syncer thread needs to make the writes so far durable.
    pub fn sync_handle(&self) -> super::log_file::SyncHandle {
        self.log.sync_handle()
    }

    /// Makes the log and hard state written so far durable.
    pub fn sync(&self) -> Result<()> {
        self.log.sync()
    }

    /// Makes the state machine durable (a checkpoint), as at shutdown.
    pub fn flush_state(&self) -> Result<()> {
        self.ns
            .checkpoint()
            .map(drop)
            .map_err(|e| self.state_write_failed("cannot checkpoint", e))
    }

    /// Drops the log up to the last durable checkpoint (at most `applied`):
    /// from then on a member that needs those entries gets a snapshot. The
    /// new snapshot point is flushed before the log goes.
    pub fn compact(&mut self, applied: u64) -> Result<()> {
        let upto = applied.min(self.ns.checkpointed());
        if upto <= self.snap.index {
            return Ok(());
        }
        let term = raft::Storage::term(self, upto)
            .map_err(|e| NamenodeError::Store(format!("compacting the raft log at {upto}: {e}")))?;
        let mut meta = SnapshotMetadata {
            index: upto,
            term,
            ..Default::default()
        };
        meta.set_conf_state(self.conf.clone());
        self.ns
            .store()
            .put_raft_keys(vec![(SNAPSHOT_META.to_vec(), Some(encode(&meta)))])
            .map_err(|e| self.state_write_failed("cannot record the snapshot point in", e))?;
        self.snap = meta;
        self.maker.forget_before(upto);
        self.log.compact(upto)
    }

    /// Installs a snapshot from the leader: the state machine becomes the
    /// snapshot's and the log restarts after it.
    pub fn install(&mut self, snapshot: &Snapshot) -> Result<()> {
        let meta = snapshot.get_metadata();
        let data = decode_snapshot(&snapshot.data)?;
        let conf = meta.get_conf_state().clone();
        let extra = vec![(CONF_STATE, encode(&conf)), (SNAPSHOT_META, encode(meta))];
        self.ns
            .install(meta.index, data.pairs, extra)
            .map_err(|e| self.state_write_failed("cannot install a snapshot into", e))?;
        let mut hard = self.log.hard_state().clone();
        hard.term = hard.term.max(meta.term);
        hard.commit = hard.commit.max(meta.index);
        self.log.set_hard_state(&hard)?;
        self.log.compact(u64::MAX)?;
        self.conf = conf;
        self.snap = meta.clone();
        Ok(())
    }
}

/// Moves a log kept among the checkpoint's keys by an older rfs into the
/// (new, empty) log file, durably, then removes it from there.
fn migrate_old_log(ns: &Namespace, log: &mut LogFile) -> Result<()> {
    let store = ns.store();
    let hard = store.raft_key(OLD_HARD_STATE);
    let old = store.raft_keys(OLD_ENTRY_PREFIX);
    if hard.is_none() && old.is_empty() {
        return Ok(());
    }
    if log.last_index().is_some() {
        return Err(NamenodeError::Store(
            "both the raft log file and an older raft log in the metadata store hold entries; \
             remove one (the file is the newer)"
                .into(),
        ));
    }
    let mut entries = Vec::new();
    let mut removed = Vec::new();
    for (k, v) in old {
        entries.push(decode::<Entry>(&v)?);
        removed.push((k, None));
    }
    log.append(&entries)?;
    if let Some(hs) = hard {
        log.set_hard_state(&decode(&hs)?)?;
    }
    log.sync()?;
    removed.push((OLD_HARD_STATE.to_vec(), None));
    store.put_raft_keys(removed)?;
    tracing::info!(
        "moved {} raft log entries from the metadata store into the log file",
        entries.len()
    );
    Ok(())
}

impl raft::Storage for RaftStorage {
    fn initial_state(&self) -> raft::Result<RaftState> {
        Ok(RaftState::new(
            self.log.hard_state().clone(),
            self.conf.clone(),
        ))
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
        if high > self.last() + 1 {
            return Err(raft::Error::Store(StorageError::Unavailable));
        }
        let max = max_size.into();
        let mut out = Vec::with_capacity((high - low).min(1024) as usize);
        let mut size = 0u64;
        for index in low..high {
            let Some(e) = self.log.entry(index) else {
                break;
            };
            size += u64::from(protobuf::Message::compute_size(e));
            // raft-rs wants at least one entry even past the limit.
            if !out.is_empty() && max.is_some_and(|m| size > m) {
                break;
            }
            out.push(e.clone());
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
        match self.log.entry(index) {
            Some(e) => Ok(e.term),
            None => Err(raft::Error::Store(StorageError::Unavailable)),
        }
    }

    fn first_index(&self) -> raft::Result<u64> {
        Ok(self.snap.index + 1)
    }

    fn last_index(&self) -> raft::Result<u64> {
        Ok(self.last())
    }

    /// A snapshot for a member that needs entries compacted away: the last
    /// durable checkpoint, read from its files and LZ4-compressed on a thread of
    /// its own ([`SnapshotMaker`]). Until it is ready raft-rs is told the
    /// snapshot is temporarily unavailable and asks again on a later
    /// heartbeat, so neither the raft loop nor apply waits for it. The
    /// entries after the checkpoint are still in the log (it is compacted
    /// only up to a checkpoint), so the member catches up from there.
    fn snapshot(&self, request_index: u64, _to: u64) -> raft::Result<Snapshot> {
        let wanted = request_index.max(self.snap.index);
        let Some(built) = self.maker.take_or_start(&self.ns, wanted) else {
            return Err(raft::Error::Store(
                StorageError::SnapshotTemporarilyUnavailable,
            ));
        };
        let mut snapshot = Snapshot {
            data: built.data.clone(),
            ..Default::default()
        };
        let meta = snapshot.mut_metadata();
        meta.index = built.index;
        meta.term = self.term(built.index)?;
        meta.set_conf_state(self.conf.clone());
        Ok(snapshot)
    }
}

/// A snapshot built off the raft thread: the checkpoint at `index`,
/// encoded ([`encode_snapshot`]).
#[derive(Clone)]
struct Built {
    index: u64,
    data: bytes::Bytes,
}

enum Making {
    Idle,
    Building(std::thread::JoinHandle<Result<Built>>),
    Ready(Built),
}

/// Builds snapshots on a thread of its own and keeps the last one for the
/// next member that needs it, while it is recent enough.
struct SnapshotMaker {
    making: std::sync::Mutex<Making>,
}

impl SnapshotMaker {
    fn new() -> SnapshotMaker {
        SnapshotMaker {
            making: std::sync::Mutex::new(Making::Idle),
        }
    }

    /// A snapshot at `wanted` or later if one is ready; else starts
    /// building one (unless a build runs) and returns None.
    fn take_or_start(&self, ns: &Namespace, wanted: u64) -> Option<Built> {
        let mut making = self.making.lock().expect("snapshot maker lock poisoned");
        *making = match std::mem::replace(&mut *making, Making::Idle) {
            Making::Building(h) if !h.is_finished() => {
                *making = Making::Building(h);
                return None;
            }
            Making::Building(h) => match h.join() {
                Ok(Ok(built)) => Making::Ready(built),
                Ok(Err(e)) => {
                    tracing::error!("building a raft snapshot failed: {e}");
                    Making::Idle
                }
                Err(_) => {
                    tracing::error!("building a raft snapshot panicked");
                    Making::Idle
                }
            },
            other => other,
        };
        if let Making::Ready(built) = &*making {
            if built.index >= wanted {
                return Some(built.clone());
            }
        }
        let ns = ns.clone();
        let started = std::thread::Builder::new()
            .name("raft-snapshot".into())
            .spawn(move || build_snapshot(&ns));
        match started {
            Ok(h) => *making = Making::Building(h),
            Err(e) => tracing::error!("cannot start building a raft snapshot: {e}"),
        }
        None
    }

    /// Drops a kept snapshot the log no longer continues.
    fn forget_before(&self, index: u64) {
        let mut making = self.making.lock().expect("snapshot maker lock poisoned");
        if matches!(&*making, Making::Ready(b) if b.index < index) {
            *making = Making::Idle;
        }
    }
}

fn build_snapshot(ns: &Namespace) -> Result<Built> {
    let started = std::time::Instant::now();
    let (index, pairs) = ns.store().checkpoint_pairs()?;
    let data = encode_snapshot(&SnapshotData { pairs })?;
    tracing::info!(
        "raft snapshot at index {index} built from the checkpoint: {} bytes in {:?}",
        data.len(),
        started.elapsed()
    );
    Ok(Built {
        index,
        data: data.into(),
    })
}

/// The first bytes of an LZ4 frame (what [`encode_snapshot`] writes); a
/// snapshot without them is plain bincode, as leaders before LZ4 sent.
const LZ4_FRAME_MAGIC: [u8; 4] = [0x04, 0x22, 0x4d, 0x18];

/// bincode, in an LZ4 frame with its content checksum (fast level: the
/// namespace's keys and names repeat a lot).
fn encode_snapshot(data: &SnapshotData) -> Result<Vec<u8>> {
    use std::io::Write as _;
    let snapshot_err =
        |e: std::io::Error| NamenodeError::Store(format!("encoding a snapshot: {e}"));
    let mut encoder = lz4::EncoderBuilder::new()
        .level(1)
        .checksum(lz4::ContentChecksum::ChecksumEnabled)
        .build(Vec::new())
        .map_err(snapshot_err)?;
    bincode::serialize_into(&mut encoder, data)?;
    encoder.flush().map_err(snapshot_err)?;
    let (out, finished) = encoder.finish();
    finished.map_err(snapshot_err)?;
    Ok(out)
}

/// The state a snapshot carries; a clear error for one that is torn or
/// corrupt, which is then never installed.
fn decode_snapshot(bytes: &[u8]) -> Result<SnapshotData> {
    let corrupt = |e: &dyn std::fmt::Display| {
        NamenodeError::Store(format!(
            "refusing a corrupt raft snapshot ({} bytes): {e}",
            bytes.len()
        ))
    };
    if bytes.starts_with(&LZ4_FRAME_MAGIC) {
        let decoder = lz4::Decoder::new(bytes).map_err(|e| corrupt(&e))?;
        bincode::deserialize_from(decoder).map_err(|e| corrupt(&e))
    } else {
        bincode::deserialize(bytes).map_err(|e| corrupt(&e))
    }
}

#[cfg(test)]
mod tests {
    use raft::Storage as _;

    use super::*;
    use crate::namespace::counter;
    use crate::namespace::test_changes::{counters_at, put_linked_dir};
    use crate::raft::log_file::tests::entry;

    fn open(dir: &std::path::Path) -> RaftStorage {
        RaftStorage::open(Namespace::open(dir, 1 << 20).unwrap(), dir, &[1, 2, 3]).unwrap()
    }

    fn get(s: &RaftStorage, low: u64, high: u64) -> raft::Result<Vec<u64>> {
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

    /// Asks for a snapshot until the maker has one.
    fn snapshot_when_ready(s: &RaftStorage, request_index: u64) -> Snapshot {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            match s.snapshot(request_index, 2) {
                Ok(snap) => return snap,
                Err(raft::Error::Store(StorageError::SnapshotTemporarilyUnavailable)) => {
                    assert!(std::time::Instant::now() < deadline, "no snapshot built");
                    std::thread::sleep(std::time::Duration::from_millis(5));
                }
                Err(e) => panic!("{e}"),
            }
        }
    }

    #[test]
    fn a_torn_or_corrupt_snapshot_is_refused_with_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = open(dir.path());
        s.append(&[entry(1, 1), entry(2, 1)]).unwrap();
        s.ns.commit(put_linked_dir(7, "kept"), counters_at(2));
        s.ns.checkpoint().unwrap();
        let good = snapshot_when_ready(&s, 2);
        let other = tempfile::tempdir().unwrap();
        let mut t = open(other.path());
        t.ns.commit(put_linked_dir(9, "mine"), counters_at(0));
        for (what, data) in [
            ("torn", good.data[..good.data.len() / 2].to_vec()),
            ("flipped", {
                let mut d = good.data.to_vec();
                let mid = d.len() / 2;
                d[mid] ^= 0xff;
                d
            }),
            ("garbage", vec![7u8; 64]),
        ] {
            let mut bad = good.clone();
            bad.data = data.into();
            let e = t.install(&bad).unwrap_err().to_string();
            assert!(
                e.contains("refusing a corrupt raft snapshot"),
                "{what}: {e}"
            );
            assert!(t.ns.inode(9).unwrap().is_some(), "{what}: own state kept");
            assert!(
                t.ns.inode(7).unwrap().is_none(),
                "{what}: nothing installed"
            );
        }
        t.install(&good).unwrap();
        assert!(t.ns.inode(7).unwrap().is_some());
        // A leader from before LZ4 sent plain bincode: still installed.
        let mut plain = good.clone();
        plain.data = bincode::serialize(&decode_snapshot(&good.data).unwrap())
            .unwrap()
            .into();
        assert!(!plain.data.starts_with(&LZ4_FRAME_MAGIC));
        let third = tempfile::tempdir().unwrap();
        let mut u = open(third.path());
        u.install(&plain).unwrap();
        assert!(u.ns.inode(7).unwrap().is_some());
    }

    #[test]
    fn compaction_waits_for_a_checkpoint_and_snapshots_carry_the_state() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = open(dir.path());
        s.append(&(1..=6).map(|i| entry(i, 1)).collect::<Vec<_>>())
            .unwrap();
        s.ns.commit(put_linked_dir(7, "kept"), counters_at(4));
        // Applied but not yet checkpointed: the log is all there is.
        s.compact(4).unwrap();
        assert_eq!(s.first_index().unwrap(), 1);
        assert_eq!(s.ns.checkpoint().unwrap(), 4);
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
        // Applied past the checkpoint: the snapshot is the checkpoint (the
        // log holds what follows), built off the raft thread.
        s.ns.commit(put_linked_dir(8, "later"), counters_at(5));
        assert!(matches!(
            s.snapshot(4, 2),
            Err(raft::Error::Store(
                StorageError::SnapshotTemporarilyUnavailable
            ))
        ));
        let snap = snapshot_when_ready(&s, 4);
        assert_eq!(snap.get_metadata().index, 4);
        assert_eq!(snap.get_metadata().term, 1);
        assert!(snap.data.starts_with(&LZ4_FRAME_MAGIC), "LZ4-compressed");
        // Kept for the next member that needs one.
        assert_eq!(s.snapshot(4, 3).unwrap().data, snap.data);

        // A wiped member installs it: state replaced in memory and on
        // disk, log restarted after it.
        let other = tempfile::tempdir().unwrap();
        let mut t = open(other.path());
        t.append(&[entry(1, 1)]).unwrap();
        t.ns.commit(put_linked_dir(9, "stale"), counters_at(1));
        t.ns.commit(put_linked_dir(10, "stale2"), counters_at(1));
        t.ns.checkpoint().unwrap();
        t.install(&snap).unwrap();
        let held = |ns: &Namespace| (ns.inode(7).unwrap(), ns.inode(9).unwrap());
        assert!(matches!(held(&t.ns), (Some(_), None)));
        // The directories' totals are the snapshot's, counted afresh.
        assert_eq!(t.ns.totals().0.dirs, 1);
        assert_eq!(t.ns.counter(counter::APPLIED_INDEX).unwrap(), 4);
        assert_eq!((t.first_index().unwrap(), t.last_index().unwrap()), (5, 4));
        assert_eq!(t.hard_state().commit, 4);
        drop(t);
        let t = open(other.path());
        assert!(matches!(held(&t.ns), (Some(_), None)));
        assert_eq!(t.ns.counter(counter::APPLIED_INDEX).unwrap(), 4);
    }

    #[test]
    fn after_a_crash_mid_install_only_entries_continuing_the_snapshot_stay() {
        // The checkpoint half of an install landed, the log reset did not: what
        // the log holds past the snapshot stays only if it continues it.
        for (snap_term, kept) in [(1, vec![5, 6]), (2, vec![])] {
            let dir = tempfile::tempdir().unwrap();
            let mut s = open(dir.path());
            s.append(&(1..=6).map(|i| entry(i, 1)).collect::<Vec<_>>())
                .unwrap();
            s.sync().unwrap();
            let meta = SnapshotMetadata {
                index: 4,
                term: snap_term,
                ..Default::default()
            };
            s.ns.store()
                .put_raft_keys(vec![(SNAPSHOT_META.to_vec(), Some(encode(&meta)))])
                .unwrap();
            drop(s);
            let s = open(dir.path());
            let held: Vec<u64> = s.log.entries().iter().map(|e| e.index).collect();
            assert_eq!(held, kept, "snapshot term {snap_term}");
            let last = if kept.is_empty() { 4 } else { 6 };
            assert_eq!(
                (s.first_index().unwrap(), s.last_index().unwrap()),
                (5, last)
            );
        }
    }

    #[test]
    fn a_store_kept_in_sled_by_an_older_rfs_moves_into_the_image_and_the_log_file() {
        let dir = tempfile::tempdir().unwrap();
        {
            // As an older rfs left it: the state and its raft log in sled.
            let db = sled::open(dir.path().join("meta.sled")).unwrap();
            let tree = db.open_tree("namespace").unwrap();
            for i in 1..=3u64 {
                let mut k = OLD_ENTRY_PREFIX.to_vec();
                k.extend_from_slice(&i.to_be_bytes());
                tree.insert(k, encode(&entry(i, 1))).unwrap();
            }
            let hs = HardState {
                term: 1,
                vote: 2,
                commit: 3,
                ..Default::default()
            };
            tree.insert(OLD_HARD_STATE, encode(&hs)).unwrap();
            let scratch = tempfile::tempdir().unwrap();
            let state = Namespace::open(scratch.path(), 1 << 20).unwrap();
            state.commit(put_linked_dir(7, "kept"), counters_at(3));
            for (k, v) in state.snapshot().1 {
                tree.insert(k, v).unwrap();
            }
            tree.flush().unwrap();
        }
        let s = open(dir.path());
        assert_eq!(get(&s, 1, 4).unwrap(), vec![1, 2, 3]);
        assert_eq!(s.hard_state().vote, 2);
        assert!(s.ns.inode(7).unwrap().is_some(), "the state moved over");
        assert_eq!(s.ns.counter(counter::APPLIED_INDEX).unwrap(), 3);
        assert!(s.ns.store().raft_keys(OLD_ENTRY_PREFIX).is_empty());
        assert!(s.ns.store().raft_key(OLD_HARD_STATE).is_none());
        assert!(!dir.path().join("meta.sled").exists(), "moved aside");
        drop(s);
        let s = open(dir.path());
        assert_eq!((s.last_index().unwrap(), s.hard_state().commit), (3, 3));
        assert!(s.ns.inode(7).unwrap().is_some());
    }

    #[test]
    fn a_store_of_another_group_size_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        drop(open(dir.path()));
        let err = RaftStorage::open(
            Namespace::open(dir.path(), 1 << 20).unwrap(),
            dir.path(),
            &[1],
        )
        .err()
        .unwrap();
        assert!(err.to_string().contains("membership"), "{err}");
    }
}
