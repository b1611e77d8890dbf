//! The namespace in memory, as HDFS's FSDirectory and the MooseFS master
//! keep it: inodes by id, each directory's children sorted by name, the
//! block → file index, the id counters and the retry cache. Serving and
//! applying read and change only this; sled is the checkpoint behind the
//! raft log (`checkpoint.rs`).
//!
//! Every change marks what it touched as dirty, so that a checkpoint
//! writes just that, with the values of one applied index.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

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
    PutRetry(Vec<u8>, RetryEntry),
    RemoveRetry(Vec<u8>),
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
    pub retry: HashSet<Vec<u8>>,
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

#[derive(Debug, Default)]
pub struct Tree {
    pub inodes: BTreeMap<u64, Inode>,
    pub children: HashMap<u64, BTreeMap<String, u64>>,
    pub block_owner: HashMap<u64, u64>,
    /// Number of file inodes, kept so that totals need no scan.
    pub files: u64,
    pub counters: Counters,
    /// Keyed by `checkpoint::retry_key`, whose order the sweep's cursor
    /// follows.
    pub retry: BTreeMap<Vec<u8>, RetryEntry>,
    pub decommissioning: BTreeSet<String>,
    pub dirty: Dirty,
}

impl Tree {
    /// Applies one change and marks what it touched.
    pub fn apply(&mut self, change: Change) {
        match change {
            Change::PutInode(inode) => {
                let id = inode.id;
                let is_file = !inode.is_dir();
                let was_file = self.inodes.insert(id, inode).is_some_and(|o| !o.is_dir());
                self.count_file(was_file, is_file);
                self.dirty.inodes.insert(id);
            }
            Change::RemoveInode(id) => {
                if let Some(old) = self.inodes.remove(&id) {
                    if let Some(f) = &old.file {
                        for b in &f.blocks {
                            self.block_owner.remove(&b.id);
                            self.dirty.blocks.insert(b.id);
                        }
                    }
                    self.count_file(!old.is_dir(), false);
                }
                self.children.remove(&id);
                self.dirty.inodes.insert(id);
            }
            Change::Link { parent, name, id } => {
                self.children
                    .entry(parent)
                    .or_default()
                    .insert(name.clone(), id);
                self.dirty.links.insert((parent, name));
            }
            Change::Unlink { parent, name } => {
                if let Some(kids) = self.children.get_mut(&parent) {
                    kids.remove(&name);
                    if kids.is_empty() {
                        self.children.remove(&parent);
                    }
                }
                self.dirty.links.insert((parent, name));
            }
            Change::SetBlockOwner { block, inode } => {
                self.block_owner.insert(block, inode);
                self.dirty.blocks.insert(block);
            }
            Change::RemoveBlockOwner(block) => {
                self.block_owner.remove(&block);
                self.dirty.blocks.insert(block);
            }
            Change::PutRetry(key, entry) => {
                self.retry.insert(key.clone(), entry);
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

    fn count_file(&mut self, was: bool, is: bool) {
        match (was, is) {
            (false, true) => self.files += 1,
            (true, false) => self.files -= 1,
            _ => {}
        }
    }

    /// The inode linked as `name` in `parent`.
    pub fn child(&self, parent: u64, name: &str) -> Option<&Inode> {
        let id = self.children.get(&parent)?.get(name)?;
        self.inodes.get(id)
    }

    pub fn child_count(&self, dir: u64) -> u64 {
        self.children.get(&dir).map_or(0, |c| c.len() as u64)
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
        assert_eq!((t.files, t.child_count(ROOT_ID)), (1, 1));
        assert_eq!(t.child(ROOT_ID, "f").map(|i| i.id), Some(2));
        t.dirty = Dirty::default();
        t.apply(Change::Unlink {
            parent: ROOT_ID,
            name: "f".into(),
        });
        t.apply(Change::RemoveInode(2));
        assert_eq!((t.files, t.child_count(ROOT_ID)), (0, 0));
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
        t.apply(Change::PutInode(inode(2, ROOT_ID, "x", &[])));
        assert_eq!(t.files, 1);
        let mut dir = inode(2, ROOT_ID, "x", &[]);
        dir.file = None;
        t.apply(Change::PutInode(dir));
        assert_eq!(t.files, 0);
    }
}
