//! The inodes, compact: a file with one block is one 96-byte slot.
//!
//! Inode ids come from a counter and are never reused, so the inodes live
//! in slots addressed by id ([`Pages`]). A slot holds the name inline (up
//! to 24 bytes, no allocation), the owner and group as indexes into a
//! table of the names seen ([`Interner`]), and a file's first block
//! inline. What few inodes have (a second block, a writer while the file
//! is open) lives in side maps. Readers get an [`InodeRef`] in place, or
//! an owned [`Inode`] from [`InodeRef::to_inode`].
//!
//! HDFS's FSDirectory keeps inodes in a hash set by id, with names as
//! byte arrays and owner and group packed through its serial-number
//! table; this is the same shape with ids dense enough to page.

use std::collections::HashMap;

use compact_str::CompactString;
use rfs_proto::interner::Interner;
use serde::Serialize;

use super::pages::Pages;
use super::{BlockMeta, FileMeta, Inode};
use crate::config::MAX_REPLICATION;

/// A slot's flags.
const DIR: u8 = 1;
/// The file's blocks are in [`Inodes::blocks`] (more than one), not
/// in the slot.
const MANY: u8 = 2;
/// The file has exactly one block, in [`Node::first`].
const ONE: u8 = 4;

#[derive(Default)]
struct Node {
    parent: u64,
    mtime_ms: u64,
    atime_ms: u64,
    block_size: u64,
    first: BlockMeta,
    name: CompactString,
    /// HDFS's permission is a short too; the client service keeps only
    /// the low 12 bits of a mode it is sent.
    mode: u16,
    /// At most [`MAX_REPLICATION`], checked where it enters.
    replication: u16,
    owner: u32,
    group: u32,
    flags: u8,
}

/// An empty slot costs no more than a full one (the name's niche), and
/// the small fields share one word.
const _: () = assert!(std::mem::size_of::<Option<Node>>() == std::mem::size_of::<Node>());
const _: () = assert!(std::mem::size_of::<Node>() == 96);
const _: () = assert!(MAX_REPLICATION <= u16::MAX as u32);

#[derive(Default)]
pub struct Inodes {
    nodes: Pages<Node>,
    /// Owners and groups, a handful per cluster, each stored once (as
    /// HDFS's serial-number table).
    interned: Interner,
    /// The blocks of files with more than one.
    blocks: HashMap<u64, Box<[BlockMeta]>>,
    /// The writer of each file under construction.
    writers: HashMap<u64, Box<str>>,
}

/// An inode read in place. Serialized, it is byte for byte the
/// [`Inode`] it stands for (the checkpoint encodes inodes from here).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct InodeRef<'a> {
    pub id: u64,
    pub parent: u64,
    pub name: &'a str,
    pub owner: &'a str,
    pub group: &'a str,
    pub mode: u32,
    pub mtime_ms: u64,
    pub atime_ms: u64,
    /// `None` for a directory.
    pub file: Option<FileRef<'a>>,
}

/// A file's part of an [`InodeRef`]; [`FileMeta`] borrowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct FileRef<'a> {
    pub replication: u32,
    pub block_size: u64,
    pub blocks: &'a [BlockMeta],
    pub writer: Option<&'a str>,
}

impl<'a> InodeRef<'a> {
    pub fn is_dir(&self) -> bool {
        self.file.is_none()
    }

    pub fn to_inode(&self) -> Inode {
        Inode {
            id: self.id,
            parent: self.parent,
            name: self.name.to_string(),
            owner: self.owner.to_string(),
            group: self.group.to_string(),
            mode: self.mode,
            mtime_ms: self.mtime_ms,
            atime_ms: self.atime_ms,
            file: self.file.map(|f| FileMeta {
                replication: f.replication,
                block_size: f.block_size,
                blocks: f.blocks.to_vec(),
                writer: f.writer.map(str::to_string),
            }),
        }
    }
}

impl<'a> FileRef<'a> {
    /// The length readers see: see [`FileRef::readable_blocks`].
    pub fn length(&self) -> u64 {
        self.readable_blocks()
            .fold(0, |n, b| n.saturating_add(b.len))
    }

    /// The blocks as readers see them. While the file is under
    /// construction its last block counts 0 bytes: its replicas are not
    /// served until finalized, and the length recorded there is only what
    /// a pipeline recovery acknowledged ([`crate::meta_op::MetaOp::RecoverPipeline`]),
    /// kept to check the datanodes' recoveries against.
    pub fn readable_blocks(&self) -> impl Iterator<Item = BlockMeta> + 'a {
        let open = if self.writer.is_some() {
            self.blocks.len().checked_sub(1)
        } else {
            None
        };
        self.blocks.iter().enumerate().map(move |(i, b)| {
            if Some(i) == open {
                BlockMeta { len: 0, ..*b }
            } else {
                *b
            }
        })
    }
}

impl Inode {
    pub fn as_ref(&self) -> InodeRef<'_> {
        InodeRef {
            id: self.id,
            parent: self.parent,
            name: &self.name,
            owner: &self.owner,
            group: &self.group,
            mode: self.mode,
            mtime_ms: self.mtime_ms,
            atime_ms: self.atime_ms,
            file: self.file.as_ref().map(FileMeta::as_ref),
        }
    }
}

impl FileMeta {
    pub fn as_ref(&self) -> FileRef<'_> {
        FileRef {
            replication: self.replication,
            block_size: self.block_size,
            blocks: &self.blocks,
            writer: self.writer.as_deref(),
        }
    }
}

impl std::fmt::Debug for Inodes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inodes").field("len", &self.len()).finish()
    }
}

impl Inodes {
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Inode `id`'s name and parent, read from its slot alone (what a
    /// directory's sorted children compare).
    pub fn name_and_parent(&self, id: u64) -> Option<(&str, u64)> {
        self.nodes.get(id).map(|n| (n.name.as_str(), n.parent))
    }

    pub fn get(&self, id: u64) -> Option<InodeRef<'_>> {
        self.nodes.get(id).map(|node| self.view(id, node))
    }

    fn view<'a>(&'a self, id: u64, node: &'a Node) -> InodeRef<'a> {
        let file = (node.flags & DIR == 0).then(|| FileRef {
            replication: u32::from(node.replication),
            block_size: node.block_size,
            blocks: if node.flags & MANY != 0 {
                self.blocks.get(&id).map(|b| &b[..]).unwrap_or_default()
            } else if node.flags & ONE != 0 {
                std::slice::from_ref(&node.first)
            } else {
                &[]
            },
            writer: self.writers.get(&id).map(|w| &w[..]),
        });
        InodeRef {
            id,
            parent: node.parent,
            name: &node.name,
            owner: self.interned.name(node.owner),
            group: self.interned.name(node.group),
            mode: u32::from(node.mode),
            mtime_ms: node.mtime_ms,
            atime_ms: node.atime_ms,
            file,
        }
    }

    /// Puts `inode` in its slot, replacing what was there.
    pub fn insert(&mut self, inode: &InodeRef<'_>) {
        let id = inode.id;
        self.blocks.remove(&id);
        self.writers.remove(&id);
        let mut node = Node {
            parent: inode.parent,
            mtime_ms: inode.mtime_ms,
            atime_ms: inode.atime_ms,
            name: CompactString::new(inode.name),
            // Both fit (see the fields): a wider value would be cut, the
            // same way on every member.
            mode: inode.mode as u16,
            owner: self.interned.index(inode.owner),
            group: self.interned.index(inode.group),
            ..Node::default()
        };
        match &inode.file {
            None => node.flags |= DIR,
            Some(f) => {
                node.replication = f.replication as u16;
                node.block_size = f.block_size;
                match f.blocks {
                    [] => {}
                    [one] => {
                        node.first = *one;
                        node.flags |= ONE;
                    }
                    many => {
                        self.blocks.insert(id, many.into());
                        node.flags |= MANY;
                    }
                }
                if let Some(w) = f.writer {
                    self.writers.insert(id, w.into());
                }
            }
        }
        self.nodes.insert(id, node);
    }

    /// Empties inode `id`'s slot; whether it held one.
    pub fn remove(&mut self, id: u64) -> bool {
        self.blocks.remove(&id);
        self.writers.remove(&id);
        self.nodes.remove(id).is_some()
    }

    /// The inodes with ids from `from` on, in id order.
    pub fn range_from(&self, from: u64) -> impl Iterator<Item = InodeRef<'_>> + '_ {
        (self.nodes.range_from(from)).map(|(id, node)| self.view(id, node))
    }

    /// Every inode, in id order.
    pub fn iter(&self) -> impl Iterator<Item = InodeRef<'_>> + '_ {
        self.range_from(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(id: u64, name: &str, blocks: &[u64], writer: Option<&str>) -> Inode {
        Inode {
            id,
            parent: 1,
            name: name.into(),
            owner: "alice".into(),
            group: "staff".into(),
            mode: 0o640,
            mtime_ms: 5,
            atime_ms: 6,
            file: Some(FileMeta {
                replication: 3,
                block_size: 1 << 20,
                blocks: blocks
                    .iter()
                    .map(|&b| BlockMeta {
                        id: b,
                        gen_stamp: 1000 + b,
                        len: 10 * b,
                    })
                    .collect(),
                writer: writer.map(str::to_string),
            }),
        }
    }

    #[test]
    fn every_shape_of_inode_reads_back_as_it_went_in_and_encodes_the_same() {
        let long = "a name longer than the twenty-four bytes kept inline";
        let dir = Inode {
            file: None,
            ..file(2, "d", &[], None)
        };
        let all = [
            dir,
            file(3, "empty", &[], Some("client-1")),
            file(64, "one", &[7], None),
            file(65, long, &[8, 9, 10], Some("client-2")),
            file(1000, "", &[11], Some("client-1")),
        ];
        let mut inodes = Inodes::default();
        for i in &all {
            inodes.insert(&i.as_ref());
        }
        assert_eq!(inodes.len(), all.len());
        for i in &all {
            let read = inodes.get(i.id).expect("inserted");
            assert_eq!(read.to_inode(), *i);
            assert_eq!(
                bincode::serialize(&read).unwrap(),
                bincode::serialize(i).unwrap()
            );
        }
        let ids: Vec<u64> = inodes.iter().map(|i| i.id).collect();
        assert_eq!(ids, [2, 3, 64, 65, 1000]);
        let ids: Vec<u64> = inodes.range_from(64).map(|i| i.id).collect();
        assert_eq!(ids, [64, 65, 1000]);
    }

    #[test]
    fn replacing_and_removing_drop_the_side_entries_and_empty_pages() {
        let mut inodes = Inodes::default();
        inodes.insert(&file(3, "f", &[1, 2], Some("w")).as_ref());
        inodes.insert(&file(3, "f", &[1], None).as_ref());
        assert!(inodes.blocks.is_empty() && inodes.writers.is_empty());
        assert_eq!(inodes.len(), 1);
        inodes.insert(&file(4, "g", &[5, 6], Some("w")).as_ref());
        assert!(inodes.remove(4));
        assert!(!inodes.remove(4));
        assert!(inodes.blocks.is_empty() && inodes.writers.is_empty());
        assert!(inodes.get(4).is_none() && inodes.get(3).is_some());
        assert!(inodes.remove(3));
        assert!(inodes.is_empty());
    }
}
