//! `MetaLog`: the one door every namespace mutation goes through.
//!
//! `submit(op)` returns only after the op is durable in the log AND applied
//! to the sled state machine, with the op's own result. [`LocalMetaLog`]
//! backs it with the local write-ahead log and group commit: one writer
//! thread takes every op queued while the previous fsync ran, appends them
//! all, fsyncs once, applies them in order and answers each. The HA issue
//! swaps this for the raft log behind the same trait; `apply` stays.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use futures::future::BoxFuture;
use tokio::sync::{mpsc, oneshot};

use crate::apply;
use crate::error::{NamenodeError, Result};
use crate::meta_op::{MetaOp, MetaResult};
use crate::namespace::{counter, Namespace};
use crate::wal::{self, Wal};

pub trait MetaLog: Send + Sync + 'static {
    /// Makes `op` durable, applies it, and returns its result.
    fn submit(&self, op: MetaOp) -> BoxFuture<'static, Result<MetaResult>>;
}

/// Most ops one fsync covers; bounds the latency of the batch's first op.
const MAX_BATCH: usize = 4096;
/// Queue in front of the writer thread; a full queue slows submitters.
const QUEUE: usize = 16 * 1024;

type Pending = (MetaOp, oneshot::Sender<Result<MetaResult>>);

pub struct LocalMetaLog {
    tx: Mutex<Option<mpsc::Sender<Pending>>>,
    writer: Mutex<Option<JoinHandle<()>>>,
    stats: Arc<LogStats>,
}

#[derive(Default)]
pub struct LogStats {
    pub ops: AtomicU64,
    pub fsyncs: AtomicU64,
}

pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl LocalMetaLog {
    /// Opens the store under `name_dir`, replays the log past the applied
    /// index, and starts the writer thread.
    pub fn open(name_dir: &Path, checkpoint_ops: u64) -> Result<(LocalMetaLog, Namespace)> {
        let store = |what: &str| {
            let what = what.to_string();
            move |e: NamenodeError| NamenodeError::Store(format!("{what}: {e}"))
        };
        std::fs::create_dir_all(name_dir).map_err(|e| {
            NamenodeError::Store(format!(
                "cannot create name dir {}: {e}",
                name_dir.display()
            ))
        })?;
        let db = sled::Config::new()
            .path(name_dir.join("meta.sled"))
            .open()
            .map_err(|e| {
                NamenodeError::Store(format!(
                    "cannot open metadata store in {}: {e}",
                    name_dir.display()
                ))
            })?;
        let ns = Namespace::open(&db).map_err(store("metadata store"))?;
        apply::format_if_new(&ns, now_ms()).map_err(store("formatting the metadata store"))?;
        let (mut wal, records) = Wal::open(&name_dir.join("wal"))?;
        let applied = ns
            .counter(counter::APPLIED_INDEX)
            .map_err(store("metadata store"))?;
        let mut next = applied + 1;
        let mut replayed = 0;
        for (index, op) in records {
            if index <= applied {
                continue;
            }
            if index != next {
                return Err(NamenodeError::Store(format!(
                    "write-ahead log in {} skips from index {} to {index}",
                    name_dir.display(),
                    next - 1
                )));
            }
            // The op's own validation result was answered before the crash
            // (or never); replay only needs its effect.
            let _ =
                apply::apply(&ns, index, &op).map_err(store(&format!("replaying op {index}")))?;
            next += 1;
            replayed += 1;
        }
        if replayed > 0 {
            tracing::info!(
                "replayed {replayed} ops from the write-ahead log (applied index {})",
                next - 1
            );
        }
        ns.tree
            .flush()
            .map_err(|e| NamenodeError::Store(format!("flushing the metadata store: {e}")))?;
        wal.roll(next)
            .map_err(|e| NamenodeError::Store(e.to_string()))?;

        let (tx, rx) = mpsc::channel(QUEUE);
        let stats = Arc::new(LogStats::default());
        let worker = Writer {
            ns: ns.clone(),
            wal,
            next,
            rx,
            stats: stats.clone(),
            checkpoint_ops,
            since_checkpoint: 0,
        };
        let writer = std::thread::Builder::new()
            .name("wal-writer".into())
            .spawn(move || worker.run())
            .map_err(|e| NamenodeError::Store(format!("cannot start the log writer: {e}")))?;
        Ok((
            LocalMetaLog {
                tx: Mutex::new(Some(tx)),
                writer: Mutex::new(Some(writer)),
                stats,
            },
            ns,
        ))
    }

    pub fn stats(&self) -> &LogStats {
        &self.stats
    }

    /// Stops accepting ops, lets queued ones finish, checkpoints. Blocks
    /// until the writer thread is done (call it from `spawn_blocking` in
    /// async code).
    pub fn close(&self) {
        self.tx.lock().expect("lock").take();
        if let Some(h) = self.writer.lock().expect("lock").take() {
            let _ = h.join();
        }
    }
}

impl MetaLog for LocalMetaLog {
    fn submit(&self, op: MetaOp) -> BoxFuture<'static, Result<MetaResult>> {
        let tx = self.tx.lock().expect("lock").clone();
        Box::pin(async move {
            let tx =
                tx.ok_or_else(|| NamenodeError::Internal("namenode is shutting down".into()))?;
            let (done, wait) = oneshot::channel();
            tx.send((op, done))
                .await
                .map_err(|_| NamenodeError::Internal("metadata log has stopped".into()))?;
            wait.await
                .map_err(|_| NamenodeError::Internal("metadata log has stopped".into()))?
        })
    }
}

struct Writer {
    ns: Namespace,
    wal: Wal,
    next: u64,
    rx: mpsc::Receiver<Pending>,
    stats: Arc<LogStats>,
    checkpoint_ops: u64,
    since_checkpoint: u64,
}

impl Writer {
    fn run(mut self) {
        while let Some(first) = self.rx.blocking_recv() {
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH {
                match self.rx.try_recv() {
                    Ok(p) => batch.push(p),
                    Err(_) => break,
                }
            }
            if let Err(e) = self.commit(batch) {
                // An op we cannot make durable must never be acknowledged,
                // and later ops must not be applied on top of a gap.
                tracing::error!("metadata log failed, refusing further mutations: {e}");
                self.rx.close();
                while let Ok((_, done)) = self.rx.try_recv() {
                    let _ = done.send(Err(NamenodeError::Internal(format!(
                        "metadata log failed: {e}"
                    ))));
                }
                return;
            }
        }
        self.checkpoint();
    }

    fn commit(&mut self, batch: Vec<Pending>) -> Result<(), String> {
        // An op too large for one log record is refused alone, before it
        // takes an index: writing it would make the log unreadable.
        let batch: Vec<Pending> = batch
            .into_iter()
            .filter_map(|(op, done)| match wal::record_fits(&op) {
                Ok(()) => Some((op, done)),
                Err(e) => {
                    let _ = done.send(Err(e));
                    None
                }
            })
            .collect();
        if batch.is_empty() {
            return Ok(());
        }
        let first = self.next;
        let records: Vec<(u64, &MetaOp)> = batch
            .iter()
            .enumerate()
            .map(|(i, (op, _))| (first + i as u64, op))
            .collect();
        let written = self.wal.append(&records).and_then(|_| self.wal.sync());
        if let Err(e) = written {
            let msg = e.to_string();
            for (_, done) in batch {
                let _ = done.send(Err(NamenodeError::Internal(format!(
                    "metadata log failed: {msg}"
                ))));
            }
            return Err(msg);
        }
        self.stats.fsyncs.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("rfs_namenode_wal_fsyncs_total").increment(1);
        metrics::counter!("rfs_namenode_ops_total").increment(batch.len() as u64);
        for (op, done) in batch {
            let index = self.next;
            self.next += 1;
            match apply::apply(&self.ns, index, &op) {
                Ok(result) => {
                    let _ = done.send(result);
                }
                Err(e) => {
                    let msg = e.to_string();
                    let _ = done.send(Err(e));
                    return Err(format!("applying op {index}: {msg}"));
                }
            }
            self.stats.ops.fetch_add(1, Ordering::Relaxed);
            self.since_checkpoint += 1;
        }
        if self.since_checkpoint >= self.checkpoint_ops {
            self.checkpoint();
        }
        Ok(())
    }

    /// Makes sled durable up to the applied index, then drops the log
    /// before it.
    fn checkpoint(&mut self) {
        if let Err(e) = self.ns.tree.flush() {
            tracing::warn!("checkpoint: flushing the store failed, keeping the log: {e}");
            return;
        }
        match self.wal.roll(self.next) {
            Ok(()) => self.since_checkpoint = 0,
            Err(e) => tracing::warn!("checkpoint: rolling the log failed: {e}"),
        }
    }
}
