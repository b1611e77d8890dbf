//! The namespace: inodes, directories, the block → file index, the id
//! counters and the retry cache, held in memory on every member
//! ([`tree`]) and read through [`Namespace`]. Only `apply.rs` changes it,
//! one op's [`Change`]s at a time; `checkpoint/` keeps checkpoints of it behind the
//! raft log (an image and deltas), never touched per op.
//!
//! The root directory is inode [`ROOT_ID`].

use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use serde::{Deserialize, Serialize};

use crate::checkpoint::{Pairs, Store};
use crate::error::{NamenodeError, Result};
use crate::meta_op::{CallKey, MetaResult};
use crate::path;

pub mod children;
pub mod inodes;
pub mod pages;
pub mod retry_cache;
pub mod tree;

pub use inodes::{FileRef, InodeRef};
use retry_cache::RetryKey;
use tree::Tree;
pub use tree::{Change, Counters, Totals};

/// A retry-cache entry: the result a call got, and when.
///
/// The result is kept encoded: it is read back only when the call is
/// retried, while every file's create, add-block and complete leave one
/// each (a whole inode in two of them). Encoded, an entry is one
/// allocation instead of a result's strings and vectors, and loading a
/// checkpoint copies it instead of decoding it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryEntry {
    pub at_ms: u64,
    /// bincode of the call's `Result<MetaResult>`.
    encoded: Box<[u8]>,
}

impl RetryEntry {
    pub fn new(at_ms: u64, result: &Result<MetaResult>) -> RetryEntry {
        RetryEntry {
            at_ms,
            encoded: bincode::serialize(result)
                .expect("results always encode")
                .into_boxed_slice(),
        }
    }

    /// The result the call got.
    pub fn result(&self) -> Result<Result<MetaResult>> {
        bincode::deserialize(&self.encoded)
            .map_err(|e| NamenodeError::Store(format!("corrupt retry-cache entry: {e}")))
    }

    /// As the checkpoint stores it: bincode of `(at_ms, result)`, the
    /// layout of the decoded entry rfs stored before (bincode writes a
    /// u64 as 8 bytes, little-endian, then the next field).
    pub fn to_value(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(8 + self.encoded.len());
        v.extend_from_slice(&self.at_ms.to_le_bytes());
        v.extend_from_slice(&self.encoded);
        v
    }

    /// Reads [`RetryEntry::to_value`]'s layout back, without decoding
    /// the result.
    pub fn from_value(v: &[u8]) -> Result<RetryEntry> {
        if v.len() < 9 {
            return Err(NamenodeError::Store(format!(
                "corrupt retry-cache entry of {} bytes",
                v.len()
            )));
        }
        let (at, encoded) = v.split_at(8);
        Ok(RetryEntry {
            at_ms: u64::from_le_bytes(at.try_into().expect("8 bytes")),
            encoded: encoded.into(),
        })
    }
}

pub const ROOT_ID: u64 = 1;

/// Names of the replicated counters, for [`Namespace::counter`] (and
/// their keys in the checkpoint).
pub mod counter {
    pub const APPLIED_INDEX: &[u8] = b"mapplied_index";
    pub const NEXT_INODE: &[u8] = b"mnext_inode";
    pub const NEXT_BLOCK: &[u8] = b"mnext_block";
    pub const NEXT_GEN_STAMP: &[u8] = b"mnext_gen_stamp";
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockMeta {
    pub id: u64,
    pub gen_stamp: u64,
    pub len: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileMeta {
    pub replication: u32,
    pub block_size: u64,
    pub blocks: Vec<BlockMeta>,
    /// Client id of the writer while the file is under construction.
    pub writer: Option<String>,
}

impl FileMeta {
    /// The length readers see: see [`FileRef::readable_blocks`].
    pub fn length(&self) -> u64 {
        self.as_ref().length()
    }

    /// The blocks as readers see them: see [`FileRef::readable_blocks`].
    pub fn readable_blocks(&self) -> impl Iterator<Item = BlockMeta> + '_ {
        self.as_ref().readable_blocks()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Inode {
    pub id: u64,
    pub parent: u64,
    pub name: String,
    pub owner: String,
    pub group: String,
    pub mode: u32,
    pub mtime_ms: u64,
    pub atime_ms: u64,
    /// `None` for a directory.
    pub file: Option<FileMeta>,
}

impl Inode {
    pub fn is_dir(&self) -> bool {
        self.file.is_none()
    }
}

/// The namespace of this member: the tree in memory and the store on
/// disk its checkpoints go to. Clones share both.
#[derive(Clone)]
pub struct Namespace {
    tree: Arc<RwLock<Tree>>,
    store: Arc<Store>,
}

/// A path resolved as far as it exists.
pub struct Resolved {
    /// Inodes along the path that exist, root first.
    pub inodes: Vec<Inode>,
    /// Whether every component exists.
    pub complete: bool,
}

/// How many file inodes [`Namespace::files_after`] copies per lock hold.
const FILES_PER_READ: usize = 1024;

impl Namespace {
    /// Loads the last checkpoint in `name_dir` into memory (moving an
    /// older rfs's sled store over first, with `sled_cache_bytes`).
    pub fn open(name_dir: &std::path::Path, sled_cache_bytes: u64) -> Result<Namespace> {
        let (store, tree) = Store::open(name_dir, sled_cache_bytes)?;
        Ok(Namespace {
            tree: Arc::new(RwLock::new(tree)),
            store: Arc::new(store),
        })
    }

    /// The checkpoint store (the raft log's own keys live there too).
    pub fn store(&self) -> &Store {
        &self.store
    }

    pub(crate) fn read(&self) -> RwLockReadGuard<'_, Tree> {
        // A panic while applying leaves a half-applied op: nothing may
        // read past it, so the poison stays fatal.
        self.tree.read().expect("namespace lock poisoned")
    }

    pub(crate) fn write(&self) -> RwLockWriteGuard<'_, Tree> {
        self.tree.write().expect("namespace lock poisoned")
    }

    /// Applies one op's changes and records its log index and counters,
    /// atomically for every reader.
    pub(crate) fn commit(&self, changes: Vec<Change>, counters: Counters) {
        let mut tree = self.write();
        for c in changes {
            tree.apply(c);
        }
        tree.counters = counters;
    }

    /// Writes what changed since the last checkpoint to disk, as the state
    /// at the applied index now, and makes it durable. Returns that index.
    pub fn checkpoint(&self) -> Result<u64> {
        self.store.checkpoint(&self.tree)
    }

    /// The applied index of the last durable checkpoint: how far the raft
    /// log may be compacted.
    pub fn checkpointed(&self) -> u64 {
        self.store.checkpointed()
    }

    /// The whole state as checkpoint key/value pairs, at the applied index
    /// returned with them: what a checkpoint of everything would write
    /// (tests compare it with the files; raft snapshots are read from them).
    pub fn snapshot(&self) -> (u64, Pairs) {
        let tree = self.read();
        (
            tree.counters.applied,
            crate::checkpoint::encoding::pairs(&tree),
        )
    }

    /// Replaces the whole state with a snapshot's `pairs` at `index`,
    /// durably, with `extra` keys of the raft log's written in the same
    /// batch.
    pub fn install(
        &self,
        index: u64,
        pairs: Pairs,
        extra: Vec<(&'static [u8], Vec<u8>)>,
    ) -> Result<()> {
        self.store.install(&self.tree, index, pairs, extra)
    }

    pub fn counters(&self) -> Counters {
        self.read().counters
    }

    /// The recorded result of `call`, if it was applied and not expired.
    pub fn retry_cached(&self, call: &CallKey) -> Result<Option<Result<MetaResult>>> {
        self.read()
            .retry
            .get(&call.client, call.call)
            .map(RetryEntry::result)
            .transpose()
    }

    /// The number below which every call of `client` was answered, as
    /// its session entry records it (0 without one).
    pub fn calls_answered_below(&self, client: &str) -> Result<u64> {
        self.read().retry.answered_below(client)
    }

    /// The keys of `client`'s retry-cache entries for calls numbered
    /// below `below`.
    pub fn retry_calls_below(&self, client: &str, below: u64) -> Vec<RetryKey> {
        self.read().retry.calls_below(client, below)
    }

    /// Datanodes marked for decommissioning.
    pub fn decommissioning(&self) -> Result<std::collections::HashSet<String>> {
        Ok(self.read().decommissioning.iter().cloned().collect())
    }

    /// Calls in the retry cache.
    pub fn retry_entries(&self) -> usize {
        self.read().retry.len()
    }

    /// Up to `limit` retry-cache entries after the one whose checkpoint
    /// key is `after` (from the first when it is empty), in key order,
    /// with when each was recorded.
    pub fn retry_entries_after(&self, after: &[u8], limit: usize) -> Result<Vec<(RetryKey, u64)>> {
        let after = match after {
            [] => None,
            k => Some(RetryKey::from_bytes(k)?),
        };
        let tree = self.read();
        Ok((tree.retry.after(after.as_ref()))
            .take(limit)
            .map(|(k, e)| (k.clone(), e.at_ms))
            .collect())
    }

    /// A counter by its name in [`counter`]; 0 for an unknown name.
    pub fn counter(&self, key: &[u8]) -> Result<u64> {
        let c = self.counters();
        Ok(match key {
            counter::APPLIED_INDEX => c.applied,
            counter::NEXT_INODE => c.next_inode,
            counter::NEXT_BLOCK => c.next_block,
            counter::NEXT_GEN_STAMP => c.next_gen_stamp,
            _ => 0,
        })
    }

    pub fn inode(&self, id: u64) -> Result<Option<Inode>> {
        Ok(self.read().inodes.get(id).map(|i| i.to_inode()))
    }

    pub fn root(&self) -> Result<Inode> {
        self.inode(ROOT_ID)?
            .ok_or_else(|| NamenodeError::Internal("root inode missing".into()))
    }

    pub fn child(&self, parent: u64, name: &str) -> Result<Option<Inode>> {
        Ok(self.read().child(parent, name).map(|i| i.to_inode()))
    }

    /// Walks `components` from the root; a file met before the last
    /// component is `NotDirectory`.
    pub fn resolve(&self, components: &[&str]) -> Result<Resolved> {
        let mut inodes = Vec::with_capacity(components.len() + 1);
        let complete = walk(&self.read(), components, |inode| {
            inodes.push(inode.to_inode())
        })?;
        Ok(Resolved { inodes, complete })
    }

    /// The inode at `path`, or `None`.
    pub fn lookup(&self, path: &str) -> Result<Option<Inode>> {
        let comps = path::components(path)?;
        Ok(find(&self.read(), &comps)?.map(|i| i.to_inode()))
    }

    /// What the subtree at `path` holds, `path` itself counted (a file is
    /// one file; a directory counts in `dirs`), as `du` and `dfs count`
    /// show it: read from the kept totals, under one read lock.
    pub fn content_summary(&self, path: &str) -> Result<Totals> {
        let comps = path::components(path)?;
        let tree = self.read();
        let inode =
            find(&tree, &comps)?.ok_or_else(|| NamenodeError::NotFound(path.to_string()))?;
        Ok(tree.contribution(&inode))
    }

    /// The inode at `path`, or `NotFound`.
    pub fn get(&self, path: &str) -> Result<Inode> {
        self.lookup(path)?
            .ok_or_else(|| NamenodeError::NotFound(path.to_string()))
    }

    /// Children of `dir` with names after `start_after`, in name order.
    pub fn children(
        &self,
        dir: u64,
        start_after: &str,
        limit: usize,
    ) -> Result<(Vec<Inode>, bool)> {
        self.children_with(dir, start_after, limit, |inode, _| inode.to_inode())
    }

    /// What `f` makes of each child [`Namespace::children`] would return,
    /// in name order, and whether more follow. `f` gets the inode in place
    /// and its entry count (0 for a file), all under one read lock: a
    /// listing page costs no inode copies.
    pub fn children_with<T>(
        &self,
        dir: u64,
        start_after: &str,
        limit: usize,
        mut f: impl FnMut(InodeRef<'_>, u64) -> T,
    ) -> Result<(Vec<T>, bool)> {
        let tree = self.read();
        let after = (!start_after.is_empty()).then_some(start_after);
        let count = tree.children.count(dir) as usize;
        let mut out = Vec::with_capacity(limit.min(count));
        for (_, id) in tree.children.entries_after(&tree.inodes, dir, after) {
            if out.len() == limit {
                return Ok((out, true));
            }
            let child = tree.inodes.get(id).ok_or_else(|| {
                NamenodeError::Internal(format!("dangling child entry under inode {dir}"))
            })?;
            let count = if child.is_dir() {
                tree.child_count(child.id)
            } else {
                0
            };
            out.push(f(child, count));
        }
        Ok((out, false))
    }

    /// Number of entries in directory `dir`.
    pub fn child_count(&self, dir: u64) -> Result<u64> {
        Ok(self.read().child_count(dir))
    }

    /// Every inode of the subtree at `root`, root first.
    pub fn subtree(&self, root: &Inode) -> Result<Vec<Inode>> {
        let tree = self.read();
        let mut out = vec![root.clone()];
        let mut i = 0;
        while i < out.len() {
            let dir = out[i].id;
            if tree.children.has_entries(dir) {
                for (_, id) in tree.children.entries(&tree.inodes, dir) {
                    let child = tree.inodes.get(id).ok_or_else(|| {
                        NamenodeError::Internal(format!("dangling child entry under inode {dir}"))
                    })?;
                    out.push(child.to_inode());
                }
            }
            i += 1;
        }
        Ok(out)
    }

    /// The totals of directory `dir`'s subtree, `dir` itself left out
    /// (zero for a file).
    pub fn dir_totals(&self, dir: u64) -> Totals {
        self.read().totals(dir)
    }

    /// What the next `Reclaim` step of at most `limit` inodes frees
    /// ([`Tree::reclaim_batch`]), each with whether it is a detached root;
    /// and how many detached roots that step leaves.
    pub fn reclaim_batch(&self, limit: usize) -> (Vec<(Inode, bool)>, usize) {
        let tree = self.read();
        let detached = tree.detached();
        let batch: Vec<(Inode, bool)> = tree
            .reclaim_batch(limit)
            .into_iter()
            .map(|i| (i.to_inode(), detached.contains(&i.id)))
            .collect();
        let freed_roots = batch.iter().filter(|(_, root)| *root).count();
        (batch, detached.len() - freed_roots)
    }

    /// Roots of detached subtrees not yet freed.
    pub fn detached(&self) -> usize {
        self.read().detached().len()
    }

    /// Whether the kept detached roots differ from those found by
    /// looking at every inode; both, if so. For tests.
    pub fn detached_mismatch(&self) -> Option<(Vec<u64>, Vec<u64>)> {
        let tree = self.read();
        let found = tree.find_detached();
        (found != *tree.detached()).then(|| {
            (
                tree.detached().iter().copied().collect(),
                found.into_iter().collect(),
            )
        })
    }

    /// Owning inode of a block.
    pub fn block_owner(&self, block_id: u64) -> Result<Option<Inode>> {
        let tree = self.read();
        Ok(tree
            .block_owner
            .get(block_id)
            .and_then(|id| tree.inodes.get(id.get()))
            .map(|i| i.to_inode()))
    }

    /// Block `block_id` as its file records it; `None` when no file
    /// holds it.
    pub fn block_meta(&self, block_id: u64) -> Result<Option<BlockMeta>> {
        let tree = self.read();
        let file = tree
            .block_owner
            .get(block_id)
            .and_then(|id| tree.inodes.get(id.get()))
            .and_then(|i| i.file);
        Ok(file.and_then(|f| f.blocks.iter().find(|b| b.id == block_id).copied()))
    }

    /// Full path of an inode, by walking parents.
    pub fn path_of(&self, inode: &Inode) -> Result<String> {
        let tree = self.read();
        let mut names = vec![inode.name.as_str()];
        let mut parent = inode.parent;
        if inode.id == ROOT_ID {
            names.clear();
        }
        while parent != ROOT_ID && parent != 0 {
            let p = tree.inodes.get(parent).ok_or_else(|| {
                NamenodeError::Internal(format!("inode {parent} is missing from a path"))
            })?;
            names.push(p.name);
            parent = p.parent;
        }
        names.reverse();
        Ok(path::join(&names))
    }

    /// Every file inode, in inode-id order.
    pub fn files(&self) -> FilesAfter<'_> {
        self.files_after(0)
    }

    /// File inodes with ids above `after`, in inode-id order, copied a
    /// batch at a time so that no reader holds the tree for long.
    pub fn files_after(&self, after: u64) -> FilesAfter<'_> {
        FilesAfter {
            ns: self,
            after,
            batch: std::collections::VecDeque::new(),
            done: false,
        }
    }

    /// The totals of the whole namespace (the root left out of `dirs`)
    /// and the number of blocks its files hold.
    pub fn totals(&self) -> (Totals, u64) {
        let tree = self.read();
        (tree.totals(ROOT_ID), tree.block_owner.len() as u64)
    }

    /// Links kept by name, outside their directory's sorted list
    /// ([`children`]): none after any op applied and after a load. For
    /// tests.
    pub fn unsorted_links(&self) -> usize {
        self.read().children.unsorted()
    }

    /// The first directory whose kept totals differ from a count of its
    /// subtree, with the kept and the counted totals; `None` when every
    /// one agrees. For tests.
    pub fn totals_mismatch(&self) -> Option<(u64, Totals, Totals)> {
        self.read().totals_mismatch()
    }
}

/// The inode at `comps` in `tree`; a file met before the last component
/// is `NotDirectory`.
fn find<'t>(tree: &'t Tree, comps: &[&str]) -> Result<Option<InodeRef<'t>>> {
    let mut last = None;
    let complete = walk(tree, comps, |inode| last = Some(inode))?;
    Ok(last.filter(|_| complete))
}

/// Walks `comps` from the root, handing `visit` the root and each inode
/// found; whether every component exists. A file met before the last
/// component is `NotDirectory`.
fn walk<'t>(tree: &'t Tree, comps: &[&str], mut visit: impl FnMut(InodeRef<'t>)) -> Result<bool> {
    let mut cur = tree
        .inodes
        .get(ROOT_ID)
        .ok_or_else(|| NamenodeError::Internal("root inode missing".into()))?;
    visit(cur);
    for (i, name) in comps.iter().enumerate() {
        if !cur.is_dir() {
            return Err(NamenodeError::NotDirectory(path::join(&comps[..i])));
        }
        match tree.child(cur.id, name) {
            Some(next) => cur = next,
            None => return Ok(false),
        }
        visit(cur);
    }
    Ok(true)
}

/// See [`Namespace::files_after`].
pub struct FilesAfter<'a> {
    ns: &'a Namespace,
    after: u64,
    batch: std::collections::VecDeque<Inode>,
    done: bool,
}

impl Iterator for FilesAfter<'_> {
    type Item = Result<Inode>;

    fn next(&mut self) -> Option<Result<Inode>> {
        while self.batch.is_empty() && !self.done {
            let tree = self.ns.read();
            let mut seen = 0;
            for inode in tree.inodes.range_from(self.after.saturating_add(1)) {
                seen += 1;
                self.after = inode.id;
                if !inode.is_dir() {
                    self.batch.push_back(inode.to_inode());
                }
                if seen == FILES_PER_READ * 4 || self.batch.len() == FILES_PER_READ {
                    break;
                }
            }
            if seen == 0 {
                self.done = true;
            }
        }
        self.batch.pop_front().map(Ok)
    }
}

/// Changes the unit tests of the checkpoint and the raft storage build
/// state from.
#[cfg(test)]
pub(crate) mod test_changes {
    use super::{Change, Counters, Inode, ROOT_ID};

    /// A directory inode `name` under `parent`.
    pub fn dir_inode(id: u64, parent: u64, name: &str) -> Inode {
        Inode {
            id,
            parent,
            name: name.into(),
            owner: "u".into(),
            group: "g".into(),
            mode: 0o755,
            mtime_ms: 0,
            atime_ms: 0,
            file: None,
        }
    }

    /// A directory under the root, linked there.
    pub fn put_linked_dir(id: u64, name: &str) -> Vec<Change> {
        let dir = dir_inode(id, ROOT_ID, name);
        let link = Change::Link {
            parent: ROOT_ID,
            name: name.into(),
            id,
        };
        vec![Change::PutInode(dir), link]
    }

    pub fn counters_at(applied: u64) -> Counters {
        Counters {
            applied,
            ..Default::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_retry_entry_is_stored_as_rfs_stored_it_decoded() {
        /// The entry as rfs kept it before results stayed encoded.
        #[derive(Serialize)]
        struct Decoded {
            at_ms: u64,
            result: Result<MetaResult>,
        }
        let results = [
            Ok(MetaResult::Mkdirs { created: true }),
            Err(NamenodeError::NotFound("/a/b".into())),
        ];
        for result in results {
            let old = bincode::serialize(&Decoded {
                at_ms: 1234,
                result: result.clone(),
            })
            .unwrap();
            let entry = RetryEntry::new(1234, &result);
            assert_eq!(entry.to_value(), old);
            let back = RetryEntry::from_value(&old).unwrap();
            assert_eq!(back, entry);
            assert_eq!(
                format!("{:?}", back.result().unwrap()),
                format!("{result:?}")
            );
        }
        assert!(RetryEntry::from_value(&[1, 2, 3]).is_err());
    }
}
