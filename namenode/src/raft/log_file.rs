//! The raft log and hard state as one append-only file (`raft.log` in the
//! name dir): what makes an entry durable is one `write` and one
//! `fdatasync` of a file, not a flush of the whole metadata store.
//!
//! The file is a sequence of checksummed records (`records.rs`), each body
//! a kind byte and a protobuf message:
//! - `E`: an `Entry`. An entry at an index the log already holds replaces
//!   that index and everything after it (a new leader overwrote the tail);
//! - `H`: a `HardState` (term, vote, commit), replacing the previous one.
//!
//! Replaying the file in order rebuilds the log in memory, where raft-rs
//! reads it. A crash can leave a torn last record: its checksum or length
//! fails, and the file is cut back to the last whole record (everything in
//! it had not been synced, so nobody was told it was durable).
//!
//! Compaction rewrites the file with the hard state and the entries kept,
//! into a temporary file renamed over the old one, so a crash leaves
//! either the old log or the new.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use raft::prelude::{Entry, HardState};

use crate::error::{NamenodeError, Result};
use crate::records::{frame, records};

const KIND_ENTRY: u8 = b'E';
const KIND_HARD_STATE: u8 = b'H';

pub struct LogFile {
    path: PathBuf,
    /// Shared with the syncer thread, which makes writes durable while
    /// the raft loop goes on ([`SyncHandle`]).
    file: Arc<File>,
    /// Contiguous, in index order; empty after compaction or a snapshot.
    entries: Vec<Entry>,
    hard: HardState,
    /// Records not yet written, so one append is one `write`.
    pending: Vec<u8>,
}

fn io_err(path: &Path, what: &str, e: std::io::Error) -> NamenodeError {
    NamenodeError::Store(format!("{what} raft log {}: {e}", path.display()))
}

fn encode_record(out: &mut Vec<u8>, kind: u8, msg: &impl protobuf::Message) {
    frame(out, |body| {
        body.push(kind);
        msg.write_to_vec(body).expect("raft messages always encode");
    });
}

impl LogFile {
    /// Opens (creating if absent) and replays the log at `path`.
    pub fn open(path: &Path) -> Result<LogFile> {
        let started = std::time::Instant::now();
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(path)
            .map_err(|e| io_err(path, "cannot open", e))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)
            .map_err(|e| io_err(path, "cannot read", e))?;
        let mut log = LogFile {
            path: path.to_path_buf(),
            file: Arc::new(file),
            entries: Vec::new(),
            hard: HardState::default(),
            pending: Vec::new(),
        };
        let (bodies, valid) = records(&bytes);
        for body in bodies {
            log.replay(body)?;
        }
        if valid < bytes.len() {
            tracing::warn!(
                "raft log {}: dropping {} bytes of a torn or corrupt tail at offset {valid}",
                path.display(),
                bytes.len() - valid
            );
            log.file
                .set_len(valid as u64)
                .and_then(|()| log.file.sync_all())
                .map_err(|e| io_err(path, "cannot cut the torn tail of", e))?;
        }
        tracing::info!(
            "raft log {} read in {:?}: {} bytes, {} entries",
            path.display(),
            started.elapsed(),
            valid,
            log.entries.len()
        );
        Ok(log)
    }

    fn replay(&mut self, body: &[u8]) -> Result<()> {
        let corrupt = |e: protobuf::ProtobufError| {
            NamenodeError::Store(format!("corrupt raft log record: {e}"))
        };
        match body[0] {
            KIND_ENTRY => {
                let e: Entry = protobuf::Message::parse_from_bytes(&body[1..]).map_err(corrupt)?;
                self.place(e)
            }
            KIND_HARD_STATE => {
                self.hard = protobuf::Message::parse_from_bytes(&body[1..]).map_err(corrupt)?;
                Ok(())
            }
            k => Err(NamenodeError::Store(format!(
                "raft log {}: unknown record kind {k}",
                self.path.display()
            ))),
        }
    }

    /// Puts `e` at its index, dropping whatever the log held from there on.
    fn place(&mut self, e: Entry) -> Result<()> {
        if let Some(first) = self.first_index() {
            if e.index < first {
                self.entries.clear();
            } else if e.index > self.last_index().expect("not empty") + 1 {
                return Err(NamenodeError::Store(format!(
                    "raft log {}: entry {} would leave a hole after {}",
                    self.path.display(),
                    e.index,
                    self.last_index().expect("not empty")
                )));
            } else {
                self.entries.truncate((e.index - first) as usize);
            }
        }
        self.entries.push(e);
        Ok(())
    }

    pub fn first_index(&self) -> Option<u64> {
        self.entries.first().map(|e| e.index)
    }

    pub fn last_index(&self) -> Option<u64> {
        self.entries.last().map(|e| e.index)
    }

    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// The entry at `index`, if the log holds it.
    pub fn entry(&self, index: u64) -> Option<&Entry> {
        let first = self.first_index()?;
        self.entries.get(index.checked_sub(first)? as usize)
    }

    pub fn hard_state(&self) -> &HardState {
        &self.hard
    }

    /// Appends `entries`, replacing any tail they overlap. Written, but not
    /// durable until [`LogFile::sync`].
    pub fn append(&mut self, entries: &[Entry]) -> Result<()> {
        for e in entries {
            self.place(e.clone())?;
            encode_record(&mut self.pending, KIND_ENTRY, e);
        }
        self.write_pending("cannot append entries to")
    }

    pub fn set_hard_state(&mut self, hs: &HardState) -> Result<()> {
        if *hs == self.hard {
            return Ok(());
        }
        self.hard = hs.clone();
        encode_record(&mut self.pending, KIND_HARD_STATE, hs);
        self.write_pending("cannot write the hard state to")
    }

    /// `what` names the write in the error, e.g. "cannot append entries to".
    fn write_pending(&mut self, what: &str) -> Result<()> {
        let r = (&*self.file).write_all(&self.pending);
        self.pending.clear();
        r.map_err(|e| io_err(&self.path, what, e))
    }

    /// Makes everything written so far durable.
    pub fn sync(&self) -> Result<()> {
        self.sync_handle().sync()
    }

    /// What another thread needs to make the writes so far durable.
    pub fn sync_handle(&self) -> SyncHandle {
        SyncHandle {
            path: self.path.clone(),
            file: self.file.clone(),
        }
    }

    /// Drops the entries up to and including `index` and rewrites the file
    /// with what is left (durably, before returning).
    pub fn compact(&mut self, index: u64) -> Result<()> {
        let dropped = self
            .first_index()
            .map_or(0, |first| index.saturating_add(1).saturating_sub(first));
        let dropped = (dropped as usize).min(self.entries.len());
        self.entries.drain(..dropped);
        self.rewrite()
    }

    fn rewrite(&mut self) -> Result<()> {
        let tmp = self.path.with_extension("log.tmp");
        let mut bytes = Vec::new();
        encode_record(&mut bytes, KIND_HARD_STATE, &self.hard);
        for e in &self.entries {
            encode_record(&mut bytes, KIND_ENTRY, e);
        }
        let write = || -> std::io::Result<File> {
            let mut f = File::create(&tmp)?;
            f.write_all(&bytes)?;
            f.sync_all()?;
            std::fs::rename(&tmp, &self.path)?;
            if let Some(dir) = self.path.parent() {
                File::open(dir)?.sync_all()?;
            }
            OpenOptions::new().append(true).open(&self.path)
        };
        let file = write().map_err(|e| io_err(&self.path, "cannot rewrite (compact)", e))?;
        self.file = Arc::new(file);
        Ok(())
    }
}

/// The log file as written so far, to `fdatasync` off the raft thread. A
/// compaction replaces the file with a synced copy holding everything the
/// old one did, so syncing the handle of the newest write covers every
/// earlier one.
#[derive(Clone)]
pub struct SyncHandle {
    path: PathBuf,
    file: Arc<File>,
}

impl SyncHandle {
    pub fn sync(&self) -> Result<()> {
        self.file
            .sync_data()
            .map_err(|e| io_err(&self.path, "cannot sync", e))
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// An entry whose data names its index (shared with the storage tests).
    pub(in crate::raft) fn entry(index: u64, term: u64) -> Entry {
        Entry {
            index,
            term,
            data: vec![index as u8; 10].into(),
            ..Default::default()
        }
    }

    fn indexes(log: &LogFile) -> Vec<(u64, u64)> {
        log.entries().iter().map(|e| (e.index, e.term)).collect()
    }

    fn hs(term: u64, vote: u64, commit: u64) -> HardState {
        HardState {
            term,
            vote,
            commit,
            ..Default::default()
        }
    }

    #[test]
    fn replay_rebuilds_overwritten_tails_and_the_last_hard_state() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("raft.log");
        let mut log = LogFile::open(&path).unwrap();
        log.append(&(1..=5).map(|i| entry(i, 1)).collect::<Vec<_>>())
            .unwrap();
        log.set_hard_state(&hs(1, 1, 3)).unwrap();
        log.append(&[entry(4, 2), entry(5, 2), entry(6, 2)])
            .unwrap();
        log.append(&[entry(6, 3)]).unwrap();
        log.set_hard_state(&hs(3, 2, 5)).unwrap();
        log.sync().unwrap();
        let expected = vec![(1, 1), (2, 1), (3, 1), (4, 2), (5, 2), (6, 3)];
        assert_eq!(indexes(&log), expected);
        drop(log);
        let log = LogFile::open(&path).unwrap();
        assert_eq!(indexes(&log), expected);
        assert_eq!(*log.hard_state(), hs(3, 2, 5));
        assert_eq!(log.entry(4).unwrap().term, 2);
        assert!(log.entry(7).is_none() && log.entry(0).is_none());
    }

    #[test]
    fn a_hole_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = LogFile::open(&dir.path().join("raft.log")).unwrap();
        log.append(&[entry(1, 1)]).unwrap();
        let err = log.append(&[entry(3, 1)]).unwrap_err();
        assert!(err.to_string().contains("hole"), "{err}");
    }

    #[test]
    fn a_torn_tail_is_cut_and_the_whole_records_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("raft.log");
        let mut log = LogFile::open(&path).unwrap();
        log.append(&(1..=3).map(|i| entry(i, 1)).collect::<Vec<_>>())
            .unwrap();
        drop(log);
        let whole = std::fs::metadata(&path).unwrap().len();
        // A crash in the middle of writing entry 4: half its record.
        let mut partial = Vec::new();
        encode_record(&mut partial, KIND_ENTRY, &entry(4, 1));
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(&partial[..partial.len() / 2]).unwrap();
        drop(f);
        let mut log = LogFile::open(&path).unwrap();
        assert_eq!(indexes(&log), vec![(1, 1), (2, 1), (3, 1)]);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), whole);
        // And the log goes on from there.
        log.append(&[entry(4, 1)]).unwrap();
        drop(log);
        assert_eq!(LogFile::open(&path).unwrap().last_index(), Some(4));

        // A flipped byte inside a record ends the log there too.
        let mut bytes = std::fs::read(&path).unwrap();
        let last = bytes.len() - 3;
        bytes[last] ^= 0xff;
        std::fs::write(&path, &bytes).unwrap();
        assert_eq!(LogFile::open(&path).unwrap().last_index(), Some(3));
    }

    #[test]
    fn compaction_keeps_the_rest_and_the_hard_state_across_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("raft.log");
        let mut log = LogFile::open(&path).unwrap();
        log.append(&(1..=10).map(|i| entry(i, 1)).collect::<Vec<_>>())
            .unwrap();
        log.set_hard_state(&hs(1, 1, 8)).unwrap();
        let before = std::fs::metadata(&path).unwrap().len();
        log.compact(7).unwrap();
        assert_eq!(indexes(&log), vec![(8, 1), (9, 1), (10, 1)]);
        assert!(std::fs::metadata(&path).unwrap().len() < before);
        log.append(&[entry(11, 1)]).unwrap();
        drop(log);
        let log = LogFile::open(&path).unwrap();
        assert_eq!(log.first_index(), Some(8));
        assert_eq!(log.last_index(), Some(11));
        assert_eq!(*log.hard_state(), hs(1, 1, 8));

        // Compacting past the end empties it; the next entry starts anew.
        let mut log = log;
        log.compact(20).unwrap();
        assert!(log.entries().is_empty());
        log.append(&[entry(21, 2)]).unwrap();
        drop(log);
        assert_eq!(LogFile::open(&path).unwrap().first_index(), Some(21));
    }
}
