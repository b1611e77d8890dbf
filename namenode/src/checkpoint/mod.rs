//! The checkpoint behind the raft log: the namespace lives in memory
//! (`namespace/tree.rs`); this is the only code that knows how it is kept
//! on disk, in the `checkpoint/` directory of the name dir, as HDFS keeps
//! an fsimage and MooseFS its `metadata.mfs`:
//!
//! - `image`: every key at one point, sorted, in one LZ4 file
//!   (`image.rs`); restart reads it in one pass;
//! - `delta.<seq>`: one record per checkpoint since then (`deltas.rs`).
//!   Every second the background writer ([`Checkpointer`]) appends what
//!   changed since the last checkpoint, with the applied index the values
//!   belong to, and syncs it: one sequential write;
//! - merges fold the deltas into a new image, from the files alone (no
//!   lock on the namespace, no pause of apply), once they hold half as
//!   many bytes as the image.
//!
//! Keys and values are those of `encoding.rs`; the raft log's own keys
//! (voters, compaction point) are kept among them.
//!
//! Crash story: a delta record is whole or cut off as a torn tail (it was
//! never reported durable), so restart finds the exact state at the last
//! checkpoint's applied index, and the raft log, compacted only up to the
//! last durable checkpoint ([`Store::checkpointed`]), holds every entry
//! after it. An image is renamed into place whole; it names the first
//! delta it does not hold, and older deltas are ignored and removed.
//! Installing a snapshot writes it as the image and drops every delta,
//! under the same lock as checkpoints, so no checkpoint taken before it
//! lands after it.
//!
//! Derived indexes (each directory's totals) are not stored: they are
//! rebuilt from the loaded inodes and links.
//!
//! Values are captured under the tree's write lock (the applier waits for
//! as long as encoding the dirty set takes), so a delta is the state at
//! exactly one index.

mod deltas;
pub mod encoding;
mod folded;
pub mod generate;
mod image;
mod migrate;

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::Duration;

use deltas::DeltaFile;
pub use encoding::{Op, Pairs, STATE_PREFIXES};
use folded::FoldedDeltas;

use crate::error::{NamenodeError, Result};
use crate::namespace::counter;
use crate::namespace::tree::Tree;

/// The checkpoint's directory in the name dir.
pub const STORE_DIR: &str = "checkpoint";

/// The image's key holding the first delta sequence number it does not
/// hold (sorts before every other key).
const NEXT_DELTA: &[u8] = b"#next_delta";

/// Merge the deltas into a new image once they hold this many bytes and
/// half as many as the image: each key is rewritten a bounded number of
/// times, and a small namespace is not rewritten every second.
const MERGE_MIN_BYTES: u64 = 8 << 20;

/// Checkpoint ticks between a failed merge and the next try.
const MERGE_RETRY_TICKS: u32 = 60;

/// How long [`Store::open`] waits for another holder of the name dir to
/// let go (a member restarted in the same process).
const LOCK_WAIT: Duration = Duration::from_secs(3);

/// What the checkpoint writes hold; changed only under [`Store::files`].
struct Files {
    /// The delta checkpoints append to.
    current: DeltaFile,
    /// Sequence numbers of the deltas not in the image yet, oldest first
    /// (the current one last).
    pending: Vec<u64>,
    /// Bytes of the pending deltas and of the image (keys and values).
    delta_bytes: u64,
    image_bytes: u64,
    /// Bumped by each install: a merge started before it is discarded.
    generation: u64,
    /// The raft log's keys, in memory.
    raft: BTreeMap<Vec<u8>, Vec<u8>>,
}

/// The namespace's checkpoint on disk.
pub struct Store {
    dir: PathBuf,
    /// Held while a checkpoint, an install or a raft key write goes to
    /// disk: one at a time, in the order their states were captured.
    files: Mutex<Files>,
    /// One merge at a time.
    merging: Mutex<()>,
    /// Applied index of the last checkpoint made durable.
    durable: AtomicU64,
    /// Keys the last checkpoint wrote.
    last_keys: AtomicUsize,
    /// Held open for its lock: one process per name dir.
    _lock: File,
}

/// A checkpoint of at least this many keys follows a large change (a bulk
/// load, or the steps freeing a large `rm -r`): some ticks later the memory
/// the change and the batch freed is handed back to the OS.
const TRIM_AFTER_KEYS: usize = 10_000;
const TRIM_AFTER_TICKS: u32 = 3;

/// glibc keeps freed memory in its arenas, so without this a namenode's
/// RSS after a large delete stays at its peak.
fn return_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free pages of the allocator's own
    // arenas; it is safe to call from any thread at any time.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Takes the name dir's lock file, waiting a moment for a holder in this
/// process to let go; another live process keeps it and is refused.
fn lock_dir(dir: &Path) -> Result<File> {
    use std::os::fd::AsRawFd;
    let path = dir.join("lock");
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| NamenodeError::Store(format!("cannot open {}: {e}", path.display())))?;
    let deadline = std::time::Instant::now() + LOCK_WAIT;
    loop {
        // SAFETY: flock on a descriptor this function owns.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
            return Ok(file);
        }
        if std::time::Instant::now() >= deadline {
            return Err(NamenodeError::Store(format!(
                "the metadata in {} is in use by another namenode process",
                dir.display()
            )));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Sets one key read back from disk: a state key in `tree`, a raft key in
/// `raft`, the image's next delta in `next_delta`.
fn load_op(
    tree: &mut Tree,
    raft: &mut BTreeMap<Vec<u8>, Vec<u8>>,
    next_delta: &mut u64,
    key: &[u8],
    value: Option<&[u8]>,
) -> Result<()> {
    if key == NEXT_DELTA {
        let v =
            value.ok_or_else(|| NamenodeError::Store("the image lost its next delta".into()))?;
        *next_delta = u64::from_be_bytes(v.try_into().map_err(|_| {
            NamenodeError::Store("corrupt next delta in the checkpoint image".into())
        })?);
        return Ok(());
    }
    if key.first() == Some(&encoding::RAFT_PREFIX) {
        match value {
            Some(v) => raft.insert(key.to_vec(), v.to_vec()),
            None => raft.remove(key),
        };
        return Ok(());
    }
    encoding::set_pair(tree, key, value)
}

/// Everything a checkpoint holds at one point, opened under the lock so
/// that later writes, merges and installs do not change what is read.
struct Frozen {
    image: Option<(PathBuf, File)>,
    /// Each pending delta, with the bytes of it to read.
    deltas: Vec<(PathBuf, File, u64)>,
}

impl Frozen {
    /// The deltas' ops folded into one: each key's last value.
    fn folded_deltas(&self) -> Result<FoldedDeltas> {
        let bytes = self.deltas.iter().map(|(_, _, len)| *len as usize).sum();
        let mut folded = FoldedDeltas::with_capacity(bytes);
        for (path, file, len) in &self.deltas {
            deltas::read(path, file, Some(*len), false, |k, v| {
                folded.push(k, v);
                Ok(())
            })?;
        }
        Ok(folded)
    }

    /// Every key and value, sorted, with `over` (sorted) taking the place
    /// of the image's pairs: `each` is called once per key that has a
    /// value, NEXT_DELTA excluded.
    fn merged(
        self,
        over: FoldedDeltas,
        each: impl FnMut(Vec<u8>, Vec<u8>) -> Result<()>,
    ) -> Result<()> {
        let mut base = match self.image {
            Some((path, file)) => Some(image::Reader::from_file(path, file)?),
            None => None,
        };
        let next_base = || -> Result<Option<(Vec<u8>, Vec<u8>)>> {
            loop {
                let Some(r) = base.as_mut() else {
                    return Ok(None);
                };
                match r.next_pair()? {
                    Some((k, _)) if k == NEXT_DELTA => continue,
                    other => return Ok(other),
                }
            }
        };
        let over = over.into_sorted().filter(|(k, _)| k != NEXT_DELTA);
        merge_sorted(next_base, over, each)
    }
}

/// Merges two streams sorted by key, each key once per stream, calling
/// `each` in key order: an entry of `over` takes the place of `base`'s
/// with the same key, and one without a value removes it.
fn merge_sorted(
    mut base: impl FnMut() -> Result<Option<(Vec<u8>, Vec<u8>)>>,
    over: impl IntoIterator<Item = (Vec<u8>, Option<Vec<u8>>)>,
    mut each: impl FnMut(Vec<u8>, Vec<u8>) -> Result<()>,
) -> Result<()> {
    let mut b = base()?;
    let mut o = over.into_iter().peekable();
    loop {
        let take_over = match (&b, o.peek()) {
            (None, None) => return Ok(()),
            (Some(_), None) => false,
            (None, Some(_)) => true,
            (Some((bk, _)), Some((ok, _))) => ok <= bk,
        };
        if take_over {
            let (k, v) = o.next().expect("peeked");
            if b.as_ref().is_some_and(|(bk, _)| *bk == k) {
                b = base()?;
            }
            if let Some(v) = v {
                each(k, v)?;
            }
        } else {
            let (k, v) = b.take().expect("checked");
            each(k, v)?;
            b = base()?;
        }
    }
}

impl Store {
    /// Opens the checkpoint in `name_dir` and loads it, moving a store an
    /// older rfs kept in sled over first (`sled_cache_bytes` for that).
    pub fn open(name_dir: &Path, sled_cache_bytes: u64) -> Result<(Store, Tree)> {
        let dir = name_dir.join(STORE_DIR);
        std::fs::create_dir_all(&dir)
            .map_err(|e| NamenodeError::Store(format!("cannot create {}: {e}", dir.display())))?;
        let lock = lock_dir(&dir)?;
        image::remove_temporaries(&dir)?;
        migrate::from_sled(name_dir, &dir, sled_cache_bytes)?;
        let started = std::time::Instant::now();
        let mut tree = Tree::default();
        let mut raft = BTreeMap::new();
        let mut next_delta = 0;
        let mut image_bytes = 0;
        let mut image_keys = 0u64;
        if let Some(mut r) = image::Reader::open(&dir)? {
            let mut load = encoding::SortedLoad::default();
            while let Some((k, v)) = r.next()? {
                image_bytes += (k.len() + v.len()) as u64;
                image_keys += 1;
                if encoding::is_state_key(k) {
                    load.add(&mut tree, k, v)?;
                } else {
                    load_op(&mut tree, &mut raft, &mut next_delta, k, Some(v))?;
                }
            }
            load.finish(&mut tree);
        }
        let image_loaded = started.elapsed();
        let mut pending = Vec::new();
        let mut delta_bytes = 0;
        let mut current = None;
        let found = deltas::list(&dir)?;
        let newest = found.last().map(|(seq, _)| *seq);
        for (seq, path) in found {
            if seq < next_delta {
                // Merged into the image before a crash took it away.
                std::fs::remove_file(&path).map_err(|e| {
                    NamenodeError::Store(format!("cannot remove {}: {e}", path.display()))
                })?;
                continue;
            }
            let file = File::open(&path).map_err(|e| {
                NamenodeError::Store(format!("cannot open {}: {e}", path.display()))
            })?;
            let last = Some(seq) == newest;
            let valid = deltas::read(&path, &file, None, last, |k, v| {
                delta_bytes += (k.len() + v.map_or(0, <[u8]>::len)) as u64;
                load_op(&mut tree, &mut raft, &mut next_delta, k, v)
            })?;
            pending.push(seq);
            if last {
                current = Some(DeltaFile::reopen(path, seq, valid)?);
            }
        }
        let current = match current {
            Some(c) => c,
            None => {
                pending.push(next_delta);
                DeltaFile::create(&dir, next_delta)?
            }
        };
        let deltas_loaded = started.elapsed();
        tree.rebuild_derived();
        // The load's own buffers (each directory's links by name until
        // sorted, the image's blocks, the deltas' records) are freed by
        // now, below the namespace they were built beside.
        return_free_memory();
        tracing::info!(
            "checkpoint at index {} loaded from {} in {:?}: image {image_keys} keys in {image_loaded:?}, \
             deltas {delta_bytes} bytes in {:?}, directory totals in {:?}",
            tree.counters.applied,
            dir.display(),
            started.elapsed(),
            deltas_loaded - image_loaded,
            started.elapsed() - deltas_loaded,
        );
        let store = Store {
            dir,
            files: Mutex::new(Files {
                current,
                pending,
                delta_bytes,
                image_bytes,
                generation: 0,
                raft,
            }),
            merging: Mutex::new(()),
            durable: AtomicU64::new(tree.counters.applied),
            last_keys: Default::default(),
            _lock: lock,
        };
        Ok((store, tree))
    }

    fn files(&self) -> std::sync::MutexGuard<'_, Files> {
        self.files.lock().expect("checkpoint lock poisoned")
    }

    /// Where the checkpoint lives, for messages.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn checkpointed(&self) -> u64 {
        self.durable.load(Ordering::Acquire)
    }

    /// A raft log key's value.
    pub fn raft_key(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.files().raft.get(key).cloned()
    }

    /// The raft log keys starting with `prefix`, in order.
    pub fn raft_keys(&self, prefix: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
        let files = self.files();
        let from = files.raft.range(prefix.to_vec()..);
        from.take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// Sets (or removes) raft log keys, durably, in one write.
    pub fn put_raft_keys(&self, ops: Vec<Op>) -> Result<()> {
        if let Some((k, _)) = ops
            .iter()
            .find(|(k, _)| k.first() != Some(&encoding::RAFT_PREFIX))
        {
            return Err(NamenodeError::Internal(format!("{k:?} is not a raft key")));
        }
        let mut files = self.files();
        files.current.append(&ops)?;
        files.delta_bytes += ops_bytes(&ops);
        for (k, v) in ops {
            match v {
                Some(v) => files.raft.insert(k, v),
                None => files.raft.remove(&k),
            };
        }
        Ok(())
    }

    /// Opens what the checkpoint holds now, under the lock.
    fn freeze(&self, files: &Files) -> Result<Frozen> {
        let open = |path: PathBuf| {
            File::open(&path)
                .map(|f| (path.clone(), f))
                .map_err(|e| NamenodeError::Store(format!("cannot open {}: {e}", path.display())))
        };
        let image_path = self.dir.join(image::IMAGE);
        let image = match File::open(&image_path) {
            Ok(f) => Some((image_path, f)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => {
                return Err(NamenodeError::Store(format!(
                    "cannot open {}: {e}",
                    image_path.display()
                )))
            }
        };
        let mut out = Vec::with_capacity(files.pending.len());
        for seq in &files.pending {
            let (path, file) = open(deltas::path(&self.dir, *seq))?;
            let len = if *seq == files.current.seq {
                files.current.len
            } else {
                u64::MAX
            };
            out.push((path, file, len));
        }
        Ok(Frozen { image, deltas: out })
    }

    /// The last durable checkpoint's state keys and values, sorted, with
    /// the applied index they hold: read from the files (opened under the
    /// lock, read after it), never from memory, so neither the raft loop
    /// nor apply waits for it. A raft snapshot.
    pub fn checkpoint_pairs(&self) -> Result<(u64, Pairs)> {
        let (index, frozen) = {
            let files = self.files();
            (self.checkpointed(), self.freeze(&files)?)
        };
        let over = frozen.folded_deltas()?;
        let mut pairs = Vec::new();
        frozen.merged(over, |k, v| {
            if encoding::is_state_key(&k) {
                pairs.push((k, v));
            }
            Ok(())
        })?;
        Ok((index, pairs))
    }

    /// Whether the last checkpoint was a large one; clears it.
    fn take_large(&self) -> bool {
        self.last_keys.swap(0, Ordering::Relaxed) >= TRIM_AFTER_KEYS
    }

    /// See [`crate::namespace::Namespace::checkpoint`].
    pub fn checkpoint(&self, tree: &RwLock<Tree>) -> Result<u64> {
        let mut files = self.files();
        let (counters, dirty, captured) = {
            let mut t = tree.write().expect("namespace lock poisoned");
            if t.dirty.is_empty() && t.counters.applied == self.checkpointed() {
                return Ok(t.counters.applied);
            }
            let dirty = std::mem::take(&mut t.dirty);
            let captured = encoding::capture(&t, &dirty);
            (t.counters, dirty, captured)
        };
        let applied = counters.applied;
        let ops = captured.map(|c| encoding::ops(&dirty, c, &counters));
        let written = ops.and_then(|ops| {
            files.current.append(&ops)?;
            Ok(ops_bytes(&ops))
        });
        match written {
            Ok(bytes) => files.delta_bytes += bytes,
            Err(e) => {
                // Nothing was lost from memory: mark it again for the next try.
                tree.write()
                    .expect("namespace lock poisoned")
                    .dirty
                    .merge(dirty);
                return Err(NamenodeError::Store(format!("writing a checkpoint: {e}")));
            }
        }
        self.durable.store(applied, Ordering::Release);
        metrics::gauge!("rfs_namenode_checkpoint_index").set(applied as f64);
        self.last_keys.store(dirty.len(), Ordering::Relaxed);
        Ok(applied)
    }

    /// Whether the deltas have grown enough to fold into the image.
    pub fn merge_due(&self) -> bool {
        let files = self.files();
        files.delta_bytes >= MERGE_MIN_BYTES.max(files.image_bytes / 2)
    }

    /// Folds every delta written so far into a new image. Runs from the
    /// files, beside checkpoints (which go to a new delta meanwhile); an
    /// install that lands meanwhile wins and this merge is discarded.
    pub fn merge(&self) -> Result<()> {
        let _one = self.merging.lock().expect("merge lock poisoned");
        let started = std::time::Instant::now();
        let (frozen, folded, generation, next) = {
            let mut files = self.files();
            let next = files.current.seq + 1;
            let frozen = self.freeze(&files)?;
            let folded = files.pending.clone();
            files.current = DeltaFile::create(&self.dir, next)?;
            files.pending.push(next);
            (frozen, folded, files.generation, next)
        };
        let over = frozen.folded_deltas()?;
        let mut writer = image::Writer::create(&self.dir, image::MERGING)?;
        writer.pair(NEXT_DELTA, &next.to_be_bytes())?;
        frozen.merged(over, |k, v| writer.pair(&k, &v))?;
        let mut files = self.files();
        if files.generation != generation {
            // A snapshot was installed meanwhile: this state is older.
            return writer.discard();
        }
        let image_bytes = writer.bytes;
        writer.install()?;
        files.pending.retain(|s| !folded.contains(s));
        for seq in &folded {
            let path = deltas::path(&self.dir, *seq);
            if let Err(e) = std::fs::remove_file(&path) {
                // Harmless: the image names the first delta it lacks.
                tracing::warn!("cannot remove the merged delta {}: {e}", path.display());
            }
        }
        files.image_bytes = image_bytes;
        files.delta_bytes = files.current.len;
        drop(files);
        tracing::info!(
            "checkpoint image written: {image_bytes} bytes of keys and values in {:?}",
            started.elapsed()
        );
        Ok(())
    }

    /// Replaces the checkpoint and `tree` with a snapshot's `pairs` at
    /// `index`, plus the raft log's `extra` keys, durably in one rename.
    pub fn install(
        &self,
        tree: &RwLock<Tree>,
        index: u64,
        mut pairs: Pairs,
        extra: Vec<(&'static [u8], Vec<u8>)>,
    ) -> Result<()> {
        if let Some((k, _)) = pairs.iter().find(|(k, _)| !encoding::is_state_key(k)) {
            return Err(NamenodeError::Store(format!(
                "refusing a snapshot holding the key {k:?}, which is not namespace state"
            )));
        }
        let mut files = self.files();
        let mut fresh = Tree::default();
        pairs.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        pairs.dedup_by(|a, b| a.0 == b.0);
        let mut over: BTreeMap<Vec<u8>, Option<Vec<u8>>> = BTreeMap::new();
        for (k, v) in &files.raft {
            over.insert(k.clone(), Some(v.clone()));
        }
        for (k, v) in extra {
            over.insert(k.to_vec(), Some(v));
        }
        over.insert(
            counter::APPLIED_INDEX.to_vec(),
            Some(index.to_be_bytes().to_vec()),
        );
        let next = files.current.seq + 1;
        let mut writer = image::Writer::create(&self.dir, image::INSTALLING)?;
        writer.pair(NEXT_DELTA, &next.to_be_bytes())?;
        let mut raft = BTreeMap::new();
        let mut ignored = 0;
        let mut pairs = pairs.into_iter();
        merge_sorted(
            || Ok(pairs.next()),
            over,
            |k, v| {
                writer.pair(&k, &v)?;
                load_op(&mut fresh, &mut raft, &mut ignored, &k, Some(&v))
            },
        )?;
        drop(pairs);
        let image_bytes = writer.bytes;
        writer.install()?;
        for seq in std::mem::take(&mut files.pending) {
            let path = deltas::path(&self.dir, seq);
            if let Err(e) = std::fs::remove_file(&path) {
                tracing::warn!("cannot remove the replaced delta {}: {e}", path.display());
            }
        }
        files.current = DeltaFile::create(&self.dir, next)?;
        files.pending = vec![next];
        files.image_bytes = image_bytes;
        files.delta_bytes = 0;
        files.generation += 1;
        files.raft = raft;
        fresh.counters.applied = index;
        fresh.rebuild_derived();
        *tree.write().expect("namespace lock poisoned") = fresh;
        // The snapshot's pairs and the namespace it replaced are gone.
        return_free_memory();
        self.durable.store(index, Ordering::Release);
        Ok(())
    }
}

/// Bytes of keys and values in `ops`.
fn ops_bytes(ops: &[Op]) -> u64 {
    ops.iter()
        .map(|(k, v)| (k.len() + v.as_ref().map_or(0, Vec::len)) as u64)
        .sum()
}

/// Writes checkpoints in the background, every `every`.
pub struct Checkpointer {
    stop: Arc<(Mutex<bool>, Condvar)>,
    thread: Option<JoinHandle<()>>,
}

impl Checkpointer {
    pub fn start(ns: crate::namespace::Namespace, every: Duration) -> Result<Checkpointer> {
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let signal = stop.clone();
        let thread = std::thread::Builder::new()
            .name("checkpoint".into())
            .spawn(move || {
                let (lock, cv) = &*signal;
                let mut stopped = lock.lock().expect("checkpointer lock poisoned");
                // Ticks until the memory freed around a large checkpoint is
                // handed back.
                let mut trim_in: Option<u32> = None;
                // Ticks until a merge may be tried again after one failed.
                let mut merge_wait = 0u32;
                while !*stopped {
                    stopped = cv
                        .wait_timeout(stopped, every)
                        .expect("checkpointer lock poisoned")
                        .0;
                    if *stopped {
                        break;
                    }
                    drop(stopped);
                    let checkpointed = ns.checkpoint();
                    merge_wait = merge_wait.saturating_sub(1);
                    if checkpointed.is_ok() && merge_wait == 0 && ns.store().merge_due() {
                        if let Err(e) = ns.store().merge() {
                            // The deltas stay and are read at restart. A
                            // merge reads the whole image: a failing one
                            // (a full disk) is not retried every second.
                            tracing::error!(
                                "merging the checkpoint: {e}; retrying in {MERGE_RETRY_TICKS} ticks"
                            );
                            merge_wait = MERGE_RETRY_TICKS;
                        }
                        trim_in = Some(TRIM_AFTER_TICKS);
                    }
                    metrics::gauge!("rfs_namenode_retry_cache_entries")
                        .set(ns.retry_entries() as f64);
                    if let Err(e) = checkpointed {
                        // The log keeps everything since the last one, so
                        // nothing is lost; it only cannot be compacted.
                        tracing::error!("{e}; retrying in {every:?}");
                    }
                    if ns.store().take_large() {
                        trim_in = Some(TRIM_AFTER_TICKS);
                    }
                    trim_in = match trim_in {
                        Some(0) => {
                            return_free_memory();
                            None
                        }
                        other => other.map(|n| n - 1),
                    };
                    stopped = lock.lock().expect("checkpointer lock poisoned");
                }
            })
            .map_err(|e| NamenodeError::Store(format!("cannot start the checkpointer: {e}")))?;
        Ok(Checkpointer {
            stop,
            thread: Some(thread),
        })
    }

    pub fn stop(&mut self) {
        let (lock, cv) = &*self.stop;
        *lock.lock().expect("checkpointer lock poisoned") = true;
        cv.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::namespace::test_changes::{counters_at, put_linked_dir};
    use crate::namespace::{Change, Namespace, ROOT_ID};

    fn open(dir: &Path) -> Result<Namespace> {
        Namespace::open(dir, 1 << 20)
    }

    /// Links directory `id` under the root as `name` at applied `index`.
    fn mkdir(ns: &Namespace, id: u64, name: &str, index: u64) {
        ns.commit(put_linked_dir(id, name), counters_at(index));
    }

    fn names(ns: &Namespace) -> Vec<String> {
        let mut out: Vec<String> = (2..20)
            .filter_map(|id| ns.inode(id).unwrap().map(|i| i.name))
            .collect();
        out.sort();
        out
    }

    fn newest_delta(dir: &Path) -> PathBuf {
        deltas::list(&dir.join(STORE_DIR)).unwrap().pop().unwrap().1
    }

    #[test]
    fn a_torn_last_delta_is_cut_and_what_came_before_it_loads() {
        let dir = tempfile::tempdir().unwrap();
        let ns = open(dir.path()).unwrap();
        mkdir(&ns, 2, "a", 1);
        ns.checkpoint().unwrap();
        mkdir(&ns, 3, "b", 2);
        ns.checkpoint().unwrap();
        drop(ns);
        // A crash in the middle of a third append.
        let delta = newest_delta(dir.path());
        let whole = std::fs::metadata(&delta).unwrap().len();
        let mut f = File::options().append(true).open(&delta).unwrap();
        std::io::Write::write_all(&mut f, &[9, 0, 0, 0, 1, 2, 3]).unwrap();
        drop(f);
        let ns = open(dir.path()).unwrap();
        assert_eq!(names(&ns), ["a", "b"]);
        assert_eq!(ns.counters().applied, 2);
        assert_eq!(std::fs::metadata(&delta).unwrap().len(), whole, "tail cut");
        // Appends go on after the cut.
        mkdir(&ns, 4, "c", 3);
        ns.checkpoint().unwrap();
        drop(ns);
        assert_eq!(names(&open(dir.path()).unwrap()), ["a", "b", "c"]);
    }

    #[test]
    fn a_corrupt_image_or_older_delta_is_refused_with_its_path() {
        let dir = tempfile::tempdir().unwrap();
        let ns = open(dir.path()).unwrap();
        mkdir(&ns, 2, "a", 1);
        ns.checkpoint().unwrap();
        ns.store().merge().unwrap();
        mkdir(&ns, 3, "b", 2);
        ns.checkpoint().unwrap();
        // Start a newer delta, as a merge does, so that this one is not
        // the newest (whose tail a crash may tear) any more.
        let first = newest_delta(dir.path());
        {
            let mut files = ns.store().files();
            files.current = DeltaFile::create(&dir.path().join(STORE_DIR), 99).unwrap();
            files.pending.push(99);
        }
        mkdir(&ns, 4, "c", 3);
        ns.checkpoint().unwrap();
        drop(ns);

        let mut bytes = std::fs::read(&first).unwrap();
        let good = bytes.clone();
        bytes[12] ^= 0x40;
        std::fs::write(&first, &bytes).unwrap();
        let err = open(dir.path()).err().expect("refused").to_string();
        assert!(
            err.contains("refusing the corrupt checkpoint delta"),
            "{err}"
        );
        assert!(err.contains(&first.display().to_string()), "{err}");
        std::fs::write(&first, &good).unwrap();
        assert_eq!(names(&open(dir.path()).unwrap()), ["a", "b", "c"]);

        let image = dir.path().join(STORE_DIR).join(image::IMAGE);
        let mut bytes = std::fs::read(&image).unwrap();
        let at = bytes.len() / 2;
        bytes[at] ^= 0x01;
        std::fs::write(&image, &bytes).unwrap();
        let err = open(dir.path()).err().expect("refused").to_string();
        assert!(
            err.contains("refusing the corrupt checkpoint image"),
            "{err}"
        );
    }

    #[test]
    fn a_crash_in_a_merge_leaves_the_old_image_or_the_new_never_a_mix() {
        let dir = tempfile::tempdir().unwrap();
        let store_dir = dir.path().join(STORE_DIR);
        let ns = open(dir.path()).unwrap();
        mkdir(&ns, 2, "a", 1);
        ns.checkpoint().unwrap();
        let merged = newest_delta(dir.path());
        let old_delta = std::fs::read(&merged).unwrap();
        ns.store().merge().unwrap();
        assert!(!merged.exists(), "a merged delta is removed");
        mkdir(&ns, 3, "b", 2);
        ns.checkpoint().unwrap();
        drop(ns);
        // Before the rename: a temporary image is left, and ignored.
        std::fs::write(store_dir.join(image::MERGING), b"half an image").unwrap();
        // After the rename, before the merged deltas went: a delta older
        // than the image is ignored (it would bring "b" back otherwise,
        // after the removal below).
        let ns = open(dir.path()).unwrap();
        assert!(!store_dir.join(image::MERGING).exists());
        ns.commit(
            vec![
                Change::Unlink {
                    parent: ROOT_ID,
                    name: "a".into(),
                },
                Change::RemoveInode(2),
            ],
            counters_at(3),
        );
        ns.checkpoint().unwrap();
        ns.store().merge().unwrap();
        drop(ns);
        std::fs::write(&merged, &old_delta).unwrap();
        let ns = open(dir.path()).unwrap();
        assert_eq!(names(&ns), ["b"]);
        assert_eq!(ns.counters().applied, 3);
        assert!(!merged.exists(), "the stale delta is removed at open");
    }

    #[test]
    fn a_snapshot_with_keys_outside_the_namespace_is_refused_and_nothing_changes() {
        let dir = tempfile::tempdir().unwrap();
        let ns = open(dir.path()).unwrap();
        mkdir(&ns, 2, "a", 1);
        ns.checkpoint().unwrap();
        let mut pairs = ns.snapshot().1;
        pairs.push((b"rs".to_vec(), vec![1]));
        let err = ns.install(5, pairs, Vec::new()).unwrap_err().to_string();
        assert!(err.contains("not namespace state"), "{err}");
        assert_eq!(names(&ns), ["a"]);
        drop(ns);
        let ns = open(dir.path()).unwrap();
        assert_eq!(
            (names(&ns), ns.counters().applied),
            (vec!["a".to_string()], 1)
        );
    }

    #[test]
    fn a_second_process_on_the_same_name_dir_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let _held = open(dir.path()).unwrap();
        let err = open(dir.path()).err().expect("refused").to_string();
        assert!(err.contains("in use by another namenode process"), "{err}");
    }
}
