//! The namespace in memory, as HDFS's FSDirectory and the MooseFS master
//! keep it: inodes by id, each directory's children sorted by name, the
//! block → file index, the id counters and the retry cache. Serving and
//! applying read and change only this; `checkpoint/` keeps it on disk
//! behind the raft log.
//!
//! Every change marks what it touched as dirty, so that a checkpoint
//! writes just that, with the values of one applied index.
//!
//! Each directory's recursive [`Totals`] are kept here too, updated up
//! the ancestor chain by every change, so that `du`, `dfs count` and `df`
//! read one entry instead of walking a subtree (HDFS keeps the same
//! counts for its quotas). They are derived: never checkpointed, rebuilt
//! from the loaded tree ([`Tree::rebuild_derived`]).
//!
//! So is the set of **detached** subtrees: a recursive delete of a large
//! directory only unlinks it (one entry, atomic for every client, as
//! HDFS's `FSDirDeleteOp`), and the leader's `Reclaim` steps free what
//! hangs below it, at most a bounded number of inodes per entry
//! ([`Tree::reclaim_batch`]). A detached root is an inode (not the root)
//! that its parent does not link under its name.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::num::NonZeroU64;

use super::children::Children;
use super::inodes::{InodeRef, Inodes};
use super::pages::Pages;
use super::retry_cache::{RetryCache, RetryKey};
use super::{Inode, RetryEntry, ROOT_ID};

/// The id counters and the applied index: the replicated scalars.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counters {
    pub applied: u64,
    pub next_inode: u64,
    pub next_block: u64,
    pub next_gen_stamp: u64,
}

impl Default for Counters {
    /// A new namespace's: the root is inode 1, generation stamps start
    /// at 1000 (below are reserved, as in HDFS).
    fn default() -> Counters {
        Counters {
            applied: 0,
            next_inode: ROOT_ID + 1,
            next_block: 1,
            next_gen_stamp: 1000,
        }
    }
}

/// One change of an op; an op's changes are applied together, in order.
#[derive(Debug, Clone)]
pub enum Change {
    PutInode(Inode),
    /// Drops the inode and its blocks' entries in the block index.
    RemoveInode(u64),
    Link {
        parent: u64,
        name: String,
        id: u64,
    },
    Unlink {
        parent: u64,
        name: String,
    },
    SetBlockOwner {
        block: u64,
        inode: u64,
    },
    RemoveBlockOwner(u64),
    PutRetry(RetryKey, RetryEntry),
    RemoveRetry(RetryKey),
    Decommission {
        datanode: String,
        on: bool,
    },
}

/// What changed since the last checkpoint (the counters are always
/// written).
#[derive(Debug, Default)]
pub struct Dirty {
    pub inodes: HashSet<u64>,
    pub links: HashSet<(u64, String)>,
    pub blocks: HashSet<u64>,
    pub retry: HashSet<RetryKey>,
    pub decommissioning: HashSet<String>,
}

impl Dirty {
    pub fn len(&self) -> usize {
        self.inodes.len()
            + self.links.len()
            + self.blocks.len()
            + self.retry.len()
            + self.decommissioning.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Adds `other`'s marks (a checkpoint that failed gives its set back).
    pub fn merge(&mut self, other: Dirty) {
        self.inodes.extend(other.inodes);
        self.links.extend(other.links);
        self.blocks.extend(other.blocks);
        self.retry.extend(other.retry);
        self.decommissioning.extend(other.decommissioning);
    }
}

/// What a subtree holds: its files and directories, their bytes as
/// readers see them ([`super::FileMeta::length`]) and the space their
/// replicas take (bytes × replication). A directory's totals leave the
/// directory itself out; its parent counts it in `dirs`.
///
/// Sums use wrapping arithmetic, so that taking a contribution out and
/// putting another in may pass through a value below zero mid-update;
/// every stored total is a true (non-negative) count.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Totals {
    pub files: u64,
    pub dirs: u64,
    pub bytes: u64,
    pub space_consumed: u64,
}

impl Totals {
    fn plus(self, o: Totals) -> Totals {
        Totals {
            files: self.files.wrapping_add(o.files),
            dirs: self.dirs.wrapping_add(o.dirs),
            bytes: self.bytes.wrapping_add(o.bytes),
            space_consumed: self.space_consumed.wrapping_add(o.space_consumed),
        }
    }

    fn minus(self, o: Totals) -> Totals {
        Totals {
            files: self.files.wrapping_sub(o.files),
            dirs: self.dirs.wrapping_sub(o.dirs),
            bytes: self.bytes.wrapping_sub(o.bytes),
            space_consumed: self.space_consumed.wrapping_sub(o.space_consumed),
        }
    }

    fn is_zero(&self) -> bool {
        *self == Totals::default()
    }
}

#[derive(Debug, Default)]
pub struct Tree {
    pub inodes: Inodes,
    /// Each directory's children, ids in their names' order.
    pub children: Children,
    /// Each block's file, by block id (ids come from a counter too).
    pub block_owner: Pages<NonZeroU64>,
    pub counters: Counters,
    pub retry: RetryCache,
    pub decommissioning: BTreeSet<String>,
    pub dirty: Dirty,
    /// Each directory's [`Totals`], by id: for every key of `children`,
    /// the sum of its children's contributions ([`Tree::contribution`]).
    /// A directory with nothing under it has no entry.
    totals: HashMap<u64, Totals>,
    /// Roots of subtrees unlinked but not yet freed, in the order
    /// `Reclaim` steps free them.
    detached: BTreeSet<u64>,
}

impl Tree {
    /// Applies one change and marks what it touched.
    pub fn apply(&mut self, change: Change) {
        match change {
            Change::PutInode(inode) => {
                let id = inode.id;
                // Where the inode is linked (apply.rs never changes a
                // linked inode's parent or name without unlinking it, but
                // the old record is looked at too, to be safe), its new
                // contribution replaces the old one up the chain.
                let now = self.contribution(&inode.as_ref());
                let linked_new = self.links_to(inode.parent, &inode.name, id);
                let new_parent = inode.parent;
                let old = (self.inodes.get(id)).map(|o| {
                    let linked = self.links_to(o.parent, o.name, id);
                    (o.parent, linked, self.contribution(&o))
                });
                self.put_inode(&inode.as_ref());
                let was = old.map_or(Totals::default(), |(_, _, was)| was);
                if linked_new {
                    self.carry(new_parent, now, was);
                } else if let Some((old_parent, true, _)) = old {
                    self.carry(old_parent, now, was);
                }
                self.dirty.inodes.insert(id);
            }
            Change::RemoveInode(id) => {
                // A linked inode leaves its link pointing at nothing,
                // which counts nothing (apply.rs unlinks first).
                let linked = (self.inodes.get(id))
                    .filter(|o| self.links_to(o.parent, o.name, id))
                    .map(|o| (o.parent, self.contribution(&o)));
                if let Some((parent, was)) = linked {
                    self.carry(parent, Totals::default(), was);
                }
                let blocks: Vec<u64> = (self.inodes.get(id))
                    .and_then(|old| old.file)
                    .map(|f| f.blocks.iter().map(|b| b.id).collect())
                    .unwrap_or_default();
                self.remove_inode(id);
                for b in blocks {
                    self.block_owner.remove(b);
                    self.dirty.blocks.insert(b);
                }
                self.children.remove_dir(id);
                self.totals.remove(&id);
                self.detached.remove(&id);
                self.dirty.inodes.insert(id);
            }
            Change::Link { parent, name, id } => {
                self.detached.remove(&id);
                let replaced = self.children.link(&self.inodes, parent, &name, id);
                if replaced != Some(id) {
                    let was = replaced
                        .and_then(|r| self.inodes.get(r))
                        .map_or(Totals::default(), |r| self.contribution(&r));
                    let now =
                        (self.inodes.get(id)).map_or(Totals::default(), |i| self.contribution(&i));
                    self.carry(parent, now, was);
                }
                self.dirty.links.insert((parent, name));
            }
            Change::Unlink { parent, name } => {
                let removed = self.children.unlink(&self.inodes, parent, &name);
                // Under a directory removed already (a recursive delete
                // removes the top first), there is nothing to take from.
                if let Some(id) = removed {
                    let was =
                        (self.inodes.get(id)).map_or(Totals::default(), |i| self.contribution(&i));
                    self.carry(parent, Totals::default(), was);
                    // Unlinked from where it says it lives: detached until
                    // it is linked again (a rename) or removed.
                    if (self.inodes.get(id)).is_some_and(|i| i.parent == parent && i.name == name) {
                        self.detached.insert(id);
                    }
                }
                self.dirty.links.insert((parent, name));
            }
            Change::SetBlockOwner { block, inode } => {
                match NonZeroU64::new(inode) {
                    Some(owner) => self.block_owner.insert(block, owner),
                    // Inode ids start at 1: no file owns a block as 0.
                    None => self.block_owner.remove(block),
                };
                self.dirty.blocks.insert(block);
            }
            Change::RemoveBlockOwner(block) => {
                self.block_owner.remove(block);
                self.dirty.blocks.insert(block);
            }
            Change::PutRetry(key, entry) => {
                let key = self.retry.insert(key, entry);
                self.dirty.retry.insert(key);
            }
            Change::RemoveRetry(key) => {
                self.retry.remove(&key);
                self.dirty.retry.insert(key);
            }
            Change::Decommission { datanode, on } => {
                if on {
                    self.decommissioning.insert(datanode.clone());
                } else {
                    self.decommissioning.remove(&datanode);
                }
                self.dirty.decommissioning.insert(datanode);
            }
        }
    }

    /// Puts `inode` in its slot. Renamed or moved, it first leaves its
    /// directory's sorted children, where its old name placed it
    /// ([`Children::unsettle`]). Apply and a checkpoint's load both
    /// change inodes through this and [`Tree::remove_inode`].
    pub fn put_inode(&mut self, inode: &InodeRef<'_>) {
        let moved = (self.inodes.name_and_parent(inode.id))
            .is_some_and(|was| was != (inode.name, inode.parent));
        if moved {
            self.children.unsettle(&self.inodes, inode.id);
        }
        self.inodes.insert(inode);
    }

    /// Removes inode `id`; a link still naming it stays, by name.
    pub fn remove_inode(&mut self, id: u64) {
        self.children.unsettle(&self.inodes, id);
        self.inodes.remove(id);
    }

    /// What `inode` adds to its parent's totals: a file itself, a
    /// directory its totals and itself.
    pub fn contribution(&self, inode: &InodeRef<'_>) -> Totals {
        match &inode.file {
            Some(f) => {
                let bytes = f.length();
                Totals {
                    files: 1,
                    dirs: 0,
                    bytes,
                    space_consumed: bytes.saturating_mul(u64::from(f.replication)),
                }
            }
            None => self.totals(inode.id).plus(Totals {
                dirs: 1,
                ..Totals::default()
            }),
        }
    }

    /// The totals of directory `dir`'s subtree, `dir` itself left out.
    pub fn totals(&self, dir: u64) -> Totals {
        self.totals.get(&dir).copied().unwrap_or_default()
    }

    /// Whether `parent`'s entry `name` is inode `id`.
    fn links_to(&self, parent: u64, name: &str, id: u64) -> bool {
        self.children.get(&self.inodes, parent, name) == Some(id)
    }

    /// Adds `add` to and takes `sub` from the totals of `dir` and of each
    /// directory above it, while the one below is linked in its parent:
    /// a detached subtree (moved mid-op, or being deleted) changes no
    /// live ancestor. The root has no parent entry, so the walk ends there.
    fn carry(&mut self, mut dir: u64, add: Totals, sub: Totals) {
        if add == sub {
            return;
        }
        loop {
            let t = self.totals.entry(dir).or_default();
            *t = t.plus(add).minus(sub);
            if t.is_zero() {
                self.totals.remove(&dir);
            }
            match self.inodes.get(dir) {
                Some(d) if d.is_dir() && self.links_to(d.parent, d.name, dir) => dir = d.parent,
                _ => return,
            }
        }
    }

    /// Computes what is derived from the inodes and links (every
    /// directory's totals, the detached roots): after a checkpoint or a
    /// snapshot is loaded.
    pub fn rebuild_derived(&mut self) {
        self.children.settle(&self.inodes);
        // One pass over the inodes (in id order, no lookup of one by id):
        // each linked inode adds itself to its parent's own sum, each
        // unlinked one is a detached root. Then every directory's totals
        // are its own sum plus those of the directories linked below it,
        // summed children first. Tests compare the result with
        // `recount_totals` and `find_detached`.
        let mut own: HashMap<u64, Totals> = HashMap::new();
        let mut subdirs: HashMap<u64, Vec<u64>> = HashMap::new();
        let mut detached = BTreeSet::new();
        for inode in self.inodes.iter() {
            if inode.id == ROOT_ID {
                continue;
            }
            if !self.links_to(inode.parent, inode.name, inode.id) {
                detached.insert(inode.id);
                continue;
            }
            let sum = own.entry(inode.parent).or_default();
            if inode.is_dir() {
                *sum = sum.plus(Totals {
                    dirs: 1,
                    ..Totals::default()
                });
                subdirs.entry(inode.parent).or_default().push(inode.id);
            } else {
                *sum = sum.plus(self.contribution(&inode));
            }
        }
        let mut totals: HashMap<u64, Totals> = HashMap::with_capacity(own.len());
        for &top in own.keys() {
            // Post-order over the directories below `top` not summed yet.
            let mut stack = vec![(top, false)];
            while let Some((dir, below_done)) = stack.pop() {
                if totals.contains_key(&dir) {
                    continue;
                }
                let below = subdirs.get(&dir).map(Vec::as_slice).unwrap_or_default();
                if !below_done {
                    stack.push((dir, true));
                    stack.extend(below.iter().map(|d| (*d, false)));
                    continue;
                }
                let sum = below
                    .iter()
                    .fold(own.get(&dir).copied().unwrap_or_default(), |s, d| {
                        s.plus(totals.get(d).copied().unwrap_or_default())
                    });
                totals.insert(dir, sum);
            }
        }
        totals.retain(|_, t| !t.is_zero());
        self.totals = totals;
        self.detached = detached;
    }

    /// Every inode but the root that its parent does not link under its
    /// name (what [`Tree::apply`] keeps in `detached`: tests compare).
    pub fn find_detached(&self) -> BTreeSet<u64> {
        self.inodes
            .iter()
            .filter(|i| i.id != ROOT_ID && !self.links_to(i.parent, i.name, i.id))
            .map(|i| i.id)
            .collect()
    }

    /// The roots of subtrees detached and not yet freed.
    pub fn detached(&self) -> &BTreeSet<u64> {
        &self.detached
    }

    /// The next at most `limit` inodes a `Reclaim` step frees: the
    /// detached subtrees in order of their roots, each in post-order
    /// (children before their directory), so that what a step leaves is
    /// still a tree under its root. Deterministic: every member frees the
    /// same inodes for the same step.
    pub fn reclaim_batch(&self, limit: usize) -> Vec<InodeRef<'_>> {
        let mut out: Vec<InodeRef<'_>> = Vec::new();
        for &root in &self.detached {
            let Some(top) = self.inodes.get(root) else {
                continue;
            };
            let mut stack = vec![(top, self.children.entries(&self.inodes, root))];
            while let Some((dir, kids)) = stack.last_mut() {
                if out.len() >= limit {
                    return out;
                }
                let dir = *dir;
                match kids.next() {
                    Some((_, id)) => {
                        if let Some(child) = self.inodes.get(id) {
                            if self.children.has_entries(id) {
                                stack.push((child, self.children.entries(&self.inodes, id)));
                            } else {
                                out.push(child);
                            }
                        }
                    }
                    None => {
                        out.push(dir);
                        stack.pop();
                    }
                }
            }
            if out.len() >= limit {
                break;
            }
        }
        out
    }

    /// Every directory's totals, counted from `children` and `inodes`
    /// alone (what [`Tree::apply`] keeps: tests compare the two).
    pub fn recount_totals(&self) -> HashMap<u64, Totals> {
        let mut totals: HashMap<u64, Totals> = HashMap::new();
        let mut seen = HashSet::new();
        for top in self.children.dirs() {
            if !seen.insert(top) {
                continue;
            }
            // A directory is summed once each directory below it is.
            let mut stack = vec![(top, false)];
            while let Some((dir, below_done)) = stack.pop() {
                if !self.children.has_entries(dir) {
                    continue;
                }
                let kids = || self.children.entries(&self.inodes, dir).map(|(_, id)| id);
                if !below_done {
                    stack.push((dir, true));
                    for id in kids() {
                        if self.children.has_entries(id) && seen.insert(id) {
                            stack.push((id, false));
                        }
                    }
                    continue;
                }
                let mut sum = Totals::default();
                for id in kids() {
                    if let Some(child) = self.inodes.get(id) {
                        sum = sum.plus(match &child.file {
                            Some(_) => self.contribution(&child),
                            None => totals.get(&id).copied().unwrap_or_default().plus(Totals {
                                dirs: 1,
                                ..Totals::default()
                            }),
                        });
                    }
                }
                if !sum.is_zero() {
                    totals.insert(dir, sum);
                }
            }
        }
        totals
    }

    /// The first directory whose kept totals differ from a recount
    /// ([`Tree::recount_totals`]), with both; `None` when all agree,
    /// entries of removed directories included. For tests.
    pub fn totals_mismatch(&self) -> Option<(u64, Totals, Totals)> {
        let recounted = self.recount_totals();
        let ids: BTreeSet<u64> = recounted
            .keys()
            .chain(self.totals.keys())
            .copied()
            .collect();
        ids.into_iter()
            .map(|id| {
                (
                    id,
                    self.totals(id),
                    recounted.get(&id).copied().unwrap_or_default(),
                )
            })
            .find(|(_, kept, counted)| kept != counted)
    }

    /// The inode linked as `name` in `parent`.
    pub fn child(&self, parent: u64, name: &str) -> Option<InodeRef<'_>> {
        let id = self.children.get(&self.inodes, parent, name)?;
        self.inodes.get(id)
    }

    pub fn child_count(&self, dir: u64) -> u64 {
        self.children.count(dir)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::namespace::{BlockMeta, FileMeta};

    fn inode(id: u64, parent: u64, name: &str, blocks: &[u64]) -> Inode {
        Inode {
            id,
            parent,
            name: name.into(),
            owner: "u".into(),
            group: "g".into(),
            mode: 0o644,
            mtime_ms: 0,
            atime_ms: 0,
            file: Some(FileMeta {
                replication: 3,
                block_size: 1 << 20,
                blocks: blocks
                    .iter()
                    .map(|&id| BlockMeta {
                        id,
                        gen_stamp: 1000,
                        len: 0,
                    })
                    .collect(),
                writer: None,
            }),
        }
    }

    #[test]
    fn removing_a_file_drops_its_blocks_link_and_count_and_marks_each() {
        let mut t = Tree::default();
        t.apply(Change::PutInode(inode(2, ROOT_ID, "f", &[7, 8])));
        t.apply(Change::Link {
            parent: ROOT_ID,
            name: "f".into(),
            id: 2,
        });
        for b in [7, 8] {
            t.apply(Change::SetBlockOwner { block: b, inode: 2 });
        }
        assert_eq!((t.totals(ROOT_ID).files, t.child_count(ROOT_ID)), (1, 1));
        assert_eq!(t.child(ROOT_ID, "f").map(|i| i.id), Some(2));
        t.dirty = Dirty::default();
        t.apply(Change::Unlink {
            parent: ROOT_ID,
            name: "f".into(),
        });
        t.apply(Change::RemoveInode(2));
        assert_eq!((t.totals(ROOT_ID).files, t.child_count(ROOT_ID)), (0, 0));
        assert!(t.block_owner.is_empty());
        assert!(t.child(ROOT_ID, "f").is_none());
        // Each removal is marked, so the checkpoint deletes the keys.
        assert_eq!(t.dirty.len(), 4);
        assert!(t.dirty.blocks.contains(&7) && t.dirty.inodes.contains(&2));
    }

    #[test]
    fn replacing_a_file_with_a_directory_keeps_the_file_count_right() {
        let mut t = Tree::default();
        t.apply(Change::PutInode(inode(2, ROOT_ID, "x", &[])));
        t.apply(Change::Link {
            parent: ROOT_ID,
            name: "x".into(),
            id: 2,
        });
        t.apply(Change::PutInode(inode(2, ROOT_ID, "x", &[])));
        assert_eq!(t.totals(ROOT_ID).files, 1);
        let mut dir = inode(2, ROOT_ID, "x", &[]);
        dir.file = None;
        t.apply(Change::PutInode(dir));
        assert_eq!(t.totals(ROOT_ID).files, 0);
    }

    fn dir(id: u64, parent: u64, name: &str) -> Inode {
        Inode {
            file: None,
            ..inode(id, parent, name, &[])
        }
    }

    /// A file of blocks with lengths `lens`, replication `replication`,
    /// under construction when `open`.
    fn file(id: u64, parent: u64, name: &str, lens: &[u64], replication: u32, open: bool) -> Inode {
        let mut i = inode(id, parent, name, &[]);
        let f = i.file.as_mut().expect("a file");
        f.replication = replication;
        f.writer = open.then(|| "w".to_string());
        f.blocks = lens
            .iter()
            .enumerate()
            .map(|(n, &len)| BlockMeta {
                id: id * 100 + n as u64,
                gen_stamp: 1000,
                len,
            })
            .collect();
        i
    }

    fn put_linked(t: &mut Tree, i: Inode) {
        let (parent, name, id) = (i.parent, i.name.clone(), i.id);
        t.apply(Change::PutInode(i));
        t.apply(Change::Link { parent, name, id });
    }

    fn unlink(t: &mut Tree, parent: u64, name: &str) {
        t.apply(Change::Unlink {
            parent,
            name: name.into(),
        });
    }

    fn totals(files: u64, dirs: u64, bytes: u64, space_consumed: u64) -> Totals {
        Totals {
            files,
            dirs,
            bytes,
            space_consumed,
        }
    }

    /// Applies `changes` one at a time, checking after each that the kept
    /// totals equal a recount.
    fn apply_checked(t: &mut Tree, changes: Vec<Change>) {
        for c in changes {
            let what = format!("{c:?}");
            t.apply(c);
            assert_eq!(t.totals_mismatch(), None, "after {what}");
        }
    }

    /// /a/b/f (open, then closed), /a/g, /c: every change in the orders
    /// apply.rs makes them, checked against a recount after each.
    fn sample() -> Tree {
        let mut t = Tree::default();
        t.apply(Change::PutInode(dir(ROOT_ID, 0, "")));
        put_linked(&mut t, dir(2, ROOT_ID, "a"));
        put_linked(&mut t, dir(3, 2, "b"));
        put_linked(&mut t, file(4, 3, "f", &[100, 50], 3, true));
        put_linked(&mut t, file(5, 2, "g", &[7], 1, false));
        put_linked(&mut t, dir(6, ROOT_ID, "c"));
        t
    }

    #[test]
    fn totals_count_files_dirs_readable_bytes_and_replicas_up_the_chain() {
        let mut t = sample();
        assert_eq!(t.totals_mismatch(), None);
        // The open file's last block is not readable yet.
        assert_eq!(t.totals(3), totals(1, 0, 100, 300));
        assert_eq!(t.totals(2), totals(2, 1, 107, 307));
        assert_eq!(t.totals(ROOT_ID), totals(2, 3, 107, 307));
        assert_eq!(
            t.contribution(&t.inodes.get(2).expect("/a")),
            totals(2, 2, 107, 307)
        );
        // Complete: the last block counts, in /a/b, /a and the root.
        apply_checked(
            &mut t,
            vec![Change::PutInode(file(4, 3, "f", &[100, 50], 3, false))],
        );
        assert_eq!(t.totals(ROOT_ID), totals(2, 3, 157, 457));
        // Set replication.
        apply_checked(
            &mut t,
            vec![Change::PutInode(file(4, 3, "f", &[100, 50], 1, false))],
        );
        assert_eq!(t.totals(2), totals(2, 1, 157, 157));
        // A directory's mtime changes nothing.
        apply_checked(&mut t, vec![Change::PutInode(dir(2, ROOT_ID, "a"))]);
        assert_eq!(t.totals(ROOT_ID), totals(2, 3, 157, 157));
        // An empty directory has no entry.
        assert!(!t.totals.contains_key(&6));
    }

    #[test]
    fn a_move_takes_the_subtree_out_of_one_chain_and_into_another() {
        let mut t = sample();
        // mv /a/b /c/b2, as move_node: unlink, put the moved inode, link,
        // then both parents' mtimes.
        apply_checked(
            &mut t,
            vec![
                Change::Unlink {
                    parent: 2,
                    name: "b".into(),
                },
                Change::PutInode(dir(3, 6, "b2")),
                Change::Link {
                    parent: 6,
                    name: "b2".into(),
                    id: 3,
                },
                Change::PutInode(dir(2, ROOT_ID, "a")),
                Change::PutInode(dir(6, ROOT_ID, "c")),
            ],
        );
        assert_eq!(t.totals(2), totals(1, 0, 7, 7));
        assert_eq!(t.totals(6), totals(1, 1, 100, 300));
        assert_eq!(t.totals(ROOT_ID), totals(2, 3, 107, 307));
    }

    #[test]
    fn a_change_inside_a_detached_subtree_leaves_the_live_ancestors_alone() {
        let mut t = sample();
        unlink(&mut t, ROOT_ID, "a");
        assert_eq!(t.totals(ROOT_ID), totals(0, 1, 0, 0));
        // /a/b/f closes while /a is out of the tree (as mid-move).
        apply_checked(
            &mut t,
            vec![Change::PutInode(file(4, 3, "f", &[100, 50], 3, false))],
        );
        assert_eq!(t.totals(ROOT_ID), totals(0, 1, 0, 0));
        assert_eq!(t.totals(2), totals(2, 1, 157, 457));
        // Linked again, /a brings what it holds now.
        apply_checked(
            &mut t,
            vec![Change::Link {
                parent: ROOT_ID,
                name: "a".into(),
                id: 2,
            }],
        );
        assert_eq!(t.totals(ROOT_ID), totals(2, 3, 157, 457));
    }

    #[test]
    fn a_recursive_delete_unlinks_the_top_then_removes_every_inode() {
        let mut t = sample();
        // As apply.rs: each inode of the subtree, top first, unlinked
        // then removed; nothing below the top reaches the root.
        let mut changes = Vec::new();
        for (parent, name, id) in [(ROOT_ID, "a", 2), (2, "b", 3), (2, "g", 5), (3, "f", 4)] {
            changes.push(Change::Unlink {
                parent,
                name: name.into(),
            });
            changes.push(Change::RemoveInode(id));
        }
        apply_checked(&mut t, changes);
        assert_eq!(t.totals(ROOT_ID), totals(0, 1, 0, 0));
        assert_eq!(t.totals.len(), 1, "only the root holds something");
    }

    #[test]
    fn an_overwrite_replaces_the_old_contribution_with_the_new() {
        let mut t = sample();
        // create -f /a/g: unlink and remove the old file, put and link a
        // new (open, empty) one.
        apply_checked(
            &mut t,
            vec![
                Change::Unlink {
                    parent: 2,
                    name: "g".into(),
                },
                Change::RemoveInode(5),
                Change::PutInode(file(7, 2, "g", &[], 2, true)),
                Change::Link {
                    parent: 2,
                    name: "g".into(),
                    id: 7,
                },
            ],
        );
        assert_eq!(t.totals(ROOT_ID), totals(2, 3, 100, 300));
        // A link over an entry without an unlink first counts the same,
        // and so does removing a still-linked inode.
        let mut u = sample();
        apply_checked(
            &mut u,
            vec![
                Change::PutInode(file(7, 2, "g", &[], 2, true)),
                Change::Link {
                    parent: 2,
                    name: "g".into(),
                    id: 7,
                },
                Change::RemoveInode(3),
            ],
        );
        assert_eq!(u.totals(ROOT_ID), totals(1, 2, 0, 0));
    }

    #[test]
    fn totals_are_rebuilt_from_a_loaded_tree() {
        let mut t = sample();
        let kept = t.totals.clone();
        t.totals.clear();
        t.rebuild_derived();
        assert_eq!(t.totals, kept);
        unlink(&mut t, ROOT_ID, "c");
        t.apply(Change::RemoveInode(6));
        assert_eq!(t.totals_mismatch(), None);
    }
}
