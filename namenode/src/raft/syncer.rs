//! `fdatasync` of the raft log off the raft thread (raft-rs's async
//! persistence: `advance_append_async`, then `on_persist_ready`).
//!
//! The loop writes each Ready's hard state and entries to the log file
//! (so raft-rs can read them back) and hands the Ready's number, with the
//! messages that may leave only once it is durable, to this thread. While
//! one `fdatasync` runs the loop goes on: it steps acknowledgements,
//! applies, takes new proposals and writes the next Readies, whose jobs
//! queue here. Each wake takes every queued job and syncs once for all of
//! them, so a burst costs one `fdatasync` however many Readies it spans
//! (group commit), then reports the highest number persisted; Readies are
//! persisted in order, as raft-rs requires.

use std::sync::mpsc::{self, Receiver, Sender};
use std::thread::JoinHandle;

use raft::prelude::Message;

use super::log_file::SyncHandle;
use super::node::Inbox;
use crate::error::{NamenodeError, Result};

/// One Ready waiting to be durable.
pub struct Job {
    pub number: u64,
    /// Whether it wrote something that must reach the disk (else it only
    /// waits its turn behind those that did).
    pub must_sync: bool,
    pub file: SyncHandle,
    /// Sent only once the Ready is durable (votes, append responses).
    pub messages: Vec<Message>,
}

/// What the syncer tells the loop.
pub struct Persisted {
    /// Every Ready up to this number is durable.
    pub number: u64,
    pub messages: Vec<Message>,
    /// Whether an `fdatasync` ran for it.
    pub synced: bool,
}

pub struct Syncer {
    jobs: Option<Sender<Job>>,
    /// Jobs handed over and not yet reported back.
    in_flight: usize,
    thread: Option<JoinHandle<()>>,
}

impl Syncer {
    /// Starts the thread; it reports to the loop's `inbox`.
    pub fn start(inbox: Sender<Inbox>) -> Result<Syncer> {
        let (tx, rx) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("raft-sync".into())
            .spawn(move || run(rx, inbox))
            .map_err(|e| NamenodeError::Store(format!("cannot start the raft log syncer: {e}")))?;
        Ok(Syncer {
            jobs: Some(tx),
            in_flight: 0,
            thread: Some(thread),
        })
    }

    pub fn idle(&self) -> bool {
        self.in_flight == 0
    }

    pub fn submit(&mut self, job: Job) -> Result<()> {
        let jobs = self.jobs.as_ref().expect("submit before stop");
        jobs.send(job)
            .map_err(|_| NamenodeError::Store("the raft log syncer has stopped".into()))?;
        self.in_flight += 1;
        Ok(())
    }

    /// `n` jobs were reported persisted.
    pub fn done(&mut self, n: usize) {
        self.in_flight = self.in_flight.saturating_sub(n);
    }
}

impl Drop for Syncer {
    fn drop(&mut self) {
        self.jobs.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn run(rx: Receiver<Job>, inbox: Sender<Inbox>) {
    while let Ok(first) = rx.recv() {
        let mut jobs = vec![first];
        jobs.extend(rx.try_iter());
        let must_sync = jobs.iter().any(|j| j.must_sync);
        let last = jobs.last().expect("at least one");
        let (number, file, count) = (last.number, last.file.clone(), jobs.len());
        let report = if must_sync {
            file.sync().map(|()| true)
        } else {
            Ok(false)
        };
        let msg = match report {
            Ok(synced) => Inbox::Persisted {
                persisted: Persisted {
                    number,
                    messages: jobs.into_iter().flat_map(|j| j.messages).collect(),
                    synced,
                },
                jobs: count,
            },
            Err(e) => Inbox::PersistFailed(e.to_string()),
        };
        if inbox.send(msg).is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raft::log_file::tests::entry;
    use crate::raft::log_file::LogFile;

    #[test]
    fn queued_readies_share_one_sync_and_are_reported_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = LogFile::open(&dir.path().join("raft.log")).unwrap();
        let (jobs, queue) = mpsc::channel();
        for n in 1..=50u64 {
            log.append(&[entry(n, 1)]).unwrap();
            let job = Job {
                number: n,
                must_sync: n % 2 == 1,
                file: log.sync_handle(),
                messages: vec![Message {
                    index: n,
                    ..Default::default()
                }],
            };
            jobs.send(job).unwrap();
        }
        drop(jobs);
        // Everything queued before the syncer wakes goes in one sync.
        let (inbox, reports) = mpsc::channel();
        run(queue, inbox);
        let reports: Vec<Inbox> = reports.try_iter().collect();
        assert_eq!(reports.len(), 1);
        let Inbox::Persisted { persisted, jobs } = &reports[0] else {
            panic!("unexpected report")
        };
        assert_eq!((persisted.number, *jobs, persisted.synced), (50, 50, true));
        let sent: Vec<u64> = persisted.messages.iter().map(|m| m.index).collect();
        assert_eq!(
            sent,
            (1..=50).collect::<Vec<u64>>(),
            "messages keep their order"
        );
    }

    #[test]
    fn readies_with_nothing_to_sync_are_reported_without_a_sync() {
        let dir = tempfile::tempdir().unwrap();
        let log = LogFile::open(&dir.path().join("raft.log")).unwrap();
        let (inbox, reports) = mpsc::channel();
        let mut syncer = Syncer::start(inbox).unwrap();
        let job = Job {
            number: 7,
            must_sync: false,
            file: log.sync_handle(),
            messages: Vec::new(),
        };
        syncer.submit(job).unwrap();
        assert!(!syncer.idle());
        match reports.recv().unwrap() {
            Inbox::Persisted { persisted, jobs } => {
                assert_eq!((persisted.number, jobs, persisted.synced), (7, 1, false));
                syncer.done(jobs);
            }
            _ => panic!("unexpected report"),
        }
        assert!(syncer.idle());
    }
}
