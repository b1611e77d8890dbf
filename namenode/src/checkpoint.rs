//! sled as the checkpoint behind the raft log: the namespace lives in
//! memory (`namespace/tree.rs`); this is the only code that knows its sled
//! keys. A background writer ([`Checkpointer`]) stores what changed since
//! the last checkpoint in one atomic batch that also records the applied
//! index the values belong to; restart loads that and replays the log from
//! the next index. No op writes sled.
//!
//! One sled tree holds everything. Keys carry a one-byte prefix:
//!
//! | key                                  | value                      |
//! |--------------------------------------|----------------------------|
//! | `i` inode id (u64 BE)                | [`Inode`] (bincode)        |
//! | `c` parent id (u64 BE) ++ name       | child inode id (u64 BE)    |
//! | `b` block id (u64 BE)                | owning inode id (u64 BE)   |
//! | `m` counter name                     | u64 BE                     |
//! | `x` client id ++ 0 ++ call id (u64 BE) | `RetryEntry` (bincode)   |
//! | `d` datanode id                      | empty: being decommissioned |
//! | `rc`, `rs`                           | raft voters and snapshot point (`raft/storage.rs`) |
//!
//! Crash story: a checkpoint is one `apply_batch` then a flush, so sled
//! recovers either the previous checkpoint or this one, each the exact
//! state at its applied index. The raft log is compacted only up to the
//! last checkpoint made durable ([`Store::checkpointed`]), so the entries
//! after it are always there to replay. Installing a snapshot replaces the
//! state and records the snapshot point in one batch, under the same lock
//! as checkpoints, so no checkpoint taken before it lands after it.
//!
//! Derived indexes (each directory's totals) are not stored: they are
//! rebuilt from the loaded inodes and links.
//!
//! Values are captured under the tree's write lock (the applier waits for
//! as long as encoding the dirty set takes), so the batch is the state at
//! exactly one index.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::error::{NamenodeError, Result};
use crate::meta_op::CallKey;
use crate::namespace::tree::{Dirty, Tree};
use crate::namespace::{counter, Counters, Inode};

/// Checkpoint keys and values: what a raft snapshot carries.
pub type Pairs = Vec<(Vec<u8>, Vec<u8>)>;

/// The sled store's directory in the name dir.
pub const STORE_DIR: &str = "meta.sled";

/// Key prefixes of the state machine (everything but the raft log's
/// keys): what a snapshot carries.
pub const STATE_PREFIXES: &[u8] = b"bcdimx";

pub fn inode_key(id: u64) -> [u8; 9] {
    let mut k = [b'i'; 9];
    k[1..].copy_from_slice(&id.to_be_bytes());
    k
}

pub fn child_key(parent: u64, name: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(9 + name.len());
    k.push(b'c');
    k.extend_from_slice(&parent.to_be_bytes());
    k.extend_from_slice(name.as_bytes());
    k
}

pub fn block_key(id: u64) -> [u8; 9] {
    let mut k = [b'b'; 9];
    k[1..].copy_from_slice(&id.to_be_bytes());
    k
}

pub fn retry_key(call: &CallKey) -> Vec<u8> {
    let mut k = Vec::with_capacity(10 + call.client.len());
    k.push(b'x');
    k.extend_from_slice(call.client.as_bytes());
    k.push(0);
    k.extend_from_slice(&call.call.to_be_bytes());
    k
}

pub fn decommission_key(datanode_id: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + datanode_id.len());
    k.push(b'd');
    k.extend_from_slice(datanode_id.as_bytes());
    k
}

/// How long [`open_db`] waits for sled's directory lock.
const LOCK_WAIT: Duration = Duration::from_secs(3);

/// Opens the sled store in `name_dir`. sled lets go of its directory lock
/// from a background thread after the last handle drops, so a member
/// reopened at once (a restart in the same process, tests) may find it
/// held for a moment; a second live process keeps it and is refused.
pub fn open_db(name_dir: &std::path::Path, cache_bytes: u64) -> sled::Result<sled::Db> {
    let deadline = std::time::Instant::now() + LOCK_WAIT;
    loop {
        let opened = sled::Config::new()
            .path(name_dir.join(STORE_DIR))
            .cache_capacity(cache_bytes)
            .open();
        match opened {
            Err(sled::Error::Io(e))
                if e.to_string().contains("could not acquire lock")
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(20));
            }
            other => return other,
        }
    }
}

fn u64_of(v: &[u8]) -> Result<u64> {
    let a: [u8; 8] = v
        .try_into()
        .map_err(|_| NamenodeError::Store("corrupt u64 value in the checkpoint".into()))?;
    Ok(u64::from_be_bytes(a))
}

/// The counters as checkpoint pairs.
fn counter_values(c: &Counters) -> impl Iterator<Item = (Vec<u8>, Vec<u8>)> {
    [
        (counter::APPLIED_INDEX, c.applied),
        (counter::NEXT_INODE, c.next_inode),
        (counter::NEXT_BLOCK, c.next_block),
        (counter::NEXT_GEN_STAMP, c.next_gen_stamp),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_vec(), v.to_be_bytes().to_vec()))
}

/// Adds one checkpoint entry to `tree`. Unknown keys are refused: the
/// store was written by something else.
fn load_pair(tree: &mut Tree, k: &[u8], v: &[u8]) -> Result<()> {
    let bad = || NamenodeError::Store(format!("corrupt checkpoint key {k:?}"));
    match k.first() {
        Some(b'i') => {
            let inode: Inode = bincode::deserialize(v)?;
            if inode_key(inode.id) != k {
                return Err(bad());
            }
            tree.inodes.insert(inode.id, inode);
        }
        Some(b'c') if k.len() >= 9 => {
            let parent = u64_of(&k[1..9])?;
            let name = std::str::from_utf8(&k[9..]).map_err(|_| bad())?;
            tree.children
                .entry(parent)
                .or_default()
                .insert(name.to_string(), u64_of(v)?);
        }
        Some(b'b') if k.len() == 9 => {
            tree.block_owner.insert(u64_of(&k[1..])?, u64_of(v)?);
        }
        Some(b'm') => {
            let value = u64_of(v)?;
            let c = &mut tree.counters;
            match k {
                counter::APPLIED_INDEX => c.applied = value,
                counter::NEXT_INODE => c.next_inode = value,
                counter::NEXT_BLOCK => c.next_block = value,
                counter::NEXT_GEN_STAMP => c.next_gen_stamp = value,
                _ => return Err(bad()),
            }
        }
        Some(b'x') => {
            tree.retry.insert(k.to_vec(), bincode::deserialize(v)?);
        }
        Some(b'd') => {
            let id = std::str::from_utf8(&k[1..]).map_err(|_| bad())?;
            tree.decommissioning.insert(id.to_string());
        }
        _ => return Err(bad()),
    }
    Ok(())
}

/// The whole of `tree` as checkpoint key/value pairs, encoded as a
/// checkpoint writes them (tests compare it with what sled holds).
pub fn pairs(tree: &Tree) -> Pairs {
    let everything = Dirty {
        inodes: tree.inodes.keys().copied().collect(),
        links: (tree.children.iter())
            .flat_map(|(parent, kids)| kids.keys().map(|name| (*parent, name.clone())))
            .collect(),
        blocks: tree.block_owner.keys().copied().collect(),
        retry: tree.retry.keys().cloned().collect(),
        decommissioning: tree.decommissioning.iter().cloned().collect(),
    };
    let captured = capture(tree, &everything).expect("the namespace always encodes");
    let mut out: Pairs = keyed(&everything, captured)
        .filter_map(|(key, value)| Some((key, value.into_value()?)))
        .collect();
    out.extend(counter_values(&tree.counters));
    out
}

/// A dirty key's value, captured under the tree's lock: a removal costs
/// nothing there, and the keys are built after the lock is released.
enum Captured {
    Gone,
    Id(u64),
    Encoded(Vec<u8>),
    Present,
}

impl Captured {
    /// The value written, or None for a removed key.
    fn into_value(self) -> Option<Vec<u8>> {
        match self {
            Captured::Gone => None,
            Captured::Id(id) => Some(id.to_be_bytes().to_vec()),
            Captured::Encoded(v) => Some(v),
            Captured::Present => Some(Vec::new()),
        }
    }
}

/// `dirty`'s values in `tree` now, in the order [`dirty_batch`] walks
/// `dirty` (a set not changed in between iterates the same way).
fn capture(tree: &Tree, dirty: &Dirty) -> Result<Vec<Captured>> {
    let mut out = Vec::with_capacity(dirty.len());
    for id in &dirty.inodes {
        out.push(match tree.inodes.get(id) {
            Some(inode) => Captured::Encoded(bincode::serialize(inode)?),
            None => Captured::Gone,
        });
    }
    for (parent, name) in &dirty.links {
        out.push(match tree.children.get(parent).and_then(|k| k.get(name)) {
            Some(id) => Captured::Id(*id),
            None => Captured::Gone,
        });
    }
    for block in &dirty.blocks {
        out.push(match tree.block_owner.get(block) {
            Some(inode) => Captured::Id(*inode),
            None => Captured::Gone,
        });
    }
    for key in &dirty.retry {
        out.push(match tree.retry.get(key) {
            Some(e) => Captured::Encoded(bincode::serialize(e)?),
            None => Captured::Gone,
        });
    }
    for id in &dirty.decommissioning {
        out.push(match tree.decommissioning.contains(id) {
            true => Captured::Present,
            false => Captured::Gone,
        });
    }
    Ok(out)
}

/// `dirty`'s keys, each with its `captured` value.
fn keyed(dirty: &Dirty, captured: Vec<Captured>) -> impl Iterator<Item = (Vec<u8>, Captured)> + '_ {
    let keys = (dirty.inodes.iter().map(|id| inode_key(*id).to_vec()))
        .chain(dirty.links.iter().map(|(p, name)| child_key(*p, name)))
        .chain(dirty.blocks.iter().map(|b| block_key(*b).to_vec()))
        .chain(dirty.retry.iter().cloned())
        .chain(dirty.decommissioning.iter().map(|d| decommission_key(d)));
    keys.zip(captured)
}

/// The batch writing `dirty` with the `captured` values and `counters`.
fn dirty_batch(dirty: &Dirty, captured: Vec<Captured>, counters: &Counters) -> sled::Batch {
    let mut batch = sled::Batch::default();
    for (key, value) in keyed(dirty, captured) {
        match value.into_value() {
            Some(v) => batch.insert(key, v),
            None => batch.remove(key),
        }
    }
    for (k, v) in counter_values(counters) {
        batch.insert(k, v);
    }
    batch
}

/// The sled side of the namespace.
pub struct Store {
    tree: sled::Tree,
    /// Held while a checkpoint or an install writes: one at a time, in
    /// the order their states were captured.
    writing: Mutex<()>,
    /// Applied index of the last checkpoint made durable.
    durable: AtomicU64,
    /// Keys the last checkpoint wrote.
    last_keys: std::sync::atomic::AtomicUsize,
}

/// A checkpoint of at least this many keys follows a large change (a bulk
/// load, or the steps freeing a large `rm -r`): some ticks later the memory
/// the change and the batch freed is handed back to the OS.
const TRIM_AFTER_KEYS: usize = 10_000;
/// sled frees a batch's memory only once its epochs move on, a little
/// after the batch is written.
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

impl Store {
    /// Opens the store in `db` and loads its last checkpoint.
    pub fn open(db: &sled::Db) -> Result<(Store, Tree)> {
        let sled_tree = db.open_tree("namespace")?;
        let mut tree = Tree::default();
        for prefix in STATE_PREFIXES {
            for kv in sled_tree.scan_prefix([*prefix]) {
                let (k, v) = kv?;
                load_pair(&mut tree, &k, &v)?;
            }
        }
        tree.rebuild_derived();
        let store = Store {
            tree: sled_tree,
            writing: Mutex::new(()),
            durable: AtomicU64::new(tree.counters.applied),
            last_keys: Default::default(),
        };
        Ok((store, tree))
    }

    /// The raw sled tree, for the raft log's own keys (`rc`, `rs`).
    pub fn raw(&self) -> &sled::Tree {
        &self.tree
    }

    pub fn checkpointed(&self) -> u64 {
        self.durable.load(Ordering::Acquire)
    }

    /// The last durable checkpoint as key/value pairs, with the applied
    /// index it holds: read from sled under the checkpoint lock (no
    /// checkpoint or install lands meanwhile), never from memory, so
    /// neither the raft loop nor apply waits for it. A raft snapshot.
    pub fn checkpoint_pairs(&self) -> Result<(u64, Pairs)> {
        let _writing = self.writing.lock().expect("checkpoint lock poisoned");
        let mut pairs = Vec::new();
        for prefix in STATE_PREFIXES {
            for kv in self.tree.scan_prefix([*prefix]) {
                let (k, v) = kv?;
                pairs.push((k.to_vec(), v.to_vec()));
            }
        }
        Ok((self.checkpointed(), pairs))
    }

    /// Whether the last checkpoint was a large one; clears it.
    fn take_large(&self) -> bool {
        self.last_keys.swap(0, Ordering::Relaxed) >= TRIM_AFTER_KEYS
    }

    /// See [`crate::namespace::Namespace::checkpoint`].
    pub fn checkpoint(&self, tree: &RwLock<Tree>) -> Result<u64> {
        let _writing = self.writing.lock().expect("checkpoint lock poisoned");
        let (counters, dirty, captured) = {
            let mut t = tree.write().expect("namespace lock poisoned");
            if t.dirty.is_empty() && t.counters.applied == self.checkpointed() {
                return Ok(t.counters.applied);
            }
            let dirty = std::mem::take(&mut t.dirty);
            let captured = capture(&t, &dirty);
            (t.counters, dirty, captured)
        };
        let applied = counters.applied;
        let batch = captured.map(|c| dirty_batch(&dirty, c, &counters));
        let written = batch.and_then(|b| {
            self.tree.apply_batch(b)?;
            self.tree.flush()?;
            Ok(())
        });
        if let Err(e) = written {
            // Nothing was lost from memory: mark it again for the next try.
            tree.write()
                .expect("namespace lock poisoned")
                .dirty
                .merge(dirty);
            return Err(NamenodeError::Store(format!("writing a checkpoint: {e}")));
        }
        self.durable.store(applied, Ordering::Release);
        metrics::gauge!("rfs_namenode_checkpoint_index").set(applied as f64);
        self.last_keys.store(dirty.len(), Ordering::Relaxed);
        Ok(applied)
    }

    /// Replaces the checkpoint and `tree` with a snapshot's `pairs` at
    /// `index`, plus the raft log's `extra` keys, in one durable batch.
    pub fn install(
        &self,
        tree: &RwLock<Tree>,
        index: u64,
        pairs: Pairs,
        extra: Vec<(&'static [u8], Vec<u8>)>,
    ) -> Result<()> {
        let _writing = self.writing.lock().expect("checkpoint lock poisoned");
        let mut fresh = Tree::default();
        let mut batch = sled::Batch::default();
        for prefix in STATE_PREFIXES {
            for kv in self.tree.scan_prefix([*prefix]) {
                batch.remove(kv?.0);
            }
        }
        for (k, v) in pairs {
            load_pair(&mut fresh, &k, &v)?;
            batch.insert(k, v);
        }
        fresh.counters.applied = index;
        fresh.rebuild_derived();
        batch.insert(counter::APPLIED_INDEX, &index.to_be_bytes());
        for (k, v) in extra {
            batch.insert(k, v);
        }
        self.tree.apply_batch(batch)?;
        self.tree.flush()?;
        *tree.write().expect("namespace lock poisoned") = fresh;
        self.durable.store(index, Ordering::Release);
        Ok(())
    }
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
                while !*stopped {
                    stopped = cv
                        .wait_timeout(stopped, every)
                        .expect("checkpointer lock poisoned")
                        .0;
                    if *stopped {
                        break;
                    }
                    drop(stopped);
                    if let Err(e) = ns.checkpoint() {
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
