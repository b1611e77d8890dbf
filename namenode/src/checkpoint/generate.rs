//! A namespace of many one-block files written straight into a new name
//! dir's checkpoint image, as HDFS's `CreateEditsLog` writes edits
//! offline: to measure what a namenode of tens of millions of files costs
//! to load and to hold without creating them through the log first
//! (`rfs-bench nn-image`).
//!
//! The image is exactly what a checkpoint of such a namespace would hold
//! at applied index 0 (the root formatted, no log entry yet): a namenode
//! opens it as any other and its raft log starts empty.

use std::path::Path;

use super::encoding::{block_key, child_key, inode_key};
use super::{deltas, image, lock_dir, NEXT_DELTA, STORE_DIR};
use crate::error::{NamenodeError, Result};
use crate::namespace::{counter, BlockMeta, FileMeta, Inode, ROOT_ID};

/// The shape of a generated namespace: `/dNNNNNN/fNNNNNNNNNN`, `files`
/// files of one block of `block_len` bytes at replication 3, `per_dir` to a
/// directory.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    pub files: u64,
    pub per_dir: u64,
    pub block_len: u64,
}

impl Shape {
    pub fn dirs(&self) -> u64 {
        self.files.div_ceil(self.per_dir.max(1))
    }

    pub fn dir_name(d: u64) -> String {
        format!("d{d:06}")
    }

    pub fn file_name(f: u64) -> String {
        format!("f{f:010}")
    }

    fn dir_id(d: u64) -> u64 {
        ROOT_ID + 1 + d
    }

    fn file_id(&self, f: u64) -> u64 {
        ROOT_ID + 1 + self.dirs() + f
    }

    /// Block ids start at 1, one per file in file order.
    fn block(f: u64) -> BlockMeta {
        BlockMeta {
            id: f + 1,
            gen_stamp: 1000 + f,
            len: 0,
        }
    }
}

/// Writes the image of `shape` into `name_dir`, which must hold no
/// checkpoint yet; returns the bytes of keys and values written.
pub fn one_block_files(name_dir: &Path, shape: Shape) -> Result<u64> {
    if shape.per_dir == 0 {
        return Err(NamenodeError::InvalidArgument(
            "files per directory must be at least 1".into(),
        ));
    }
    let dir = name_dir.join(STORE_DIR);
    std::fs::create_dir_all(&dir)
        .map_err(|e| NamenodeError::Store(format!("cannot create {}: {e}", dir.display())))?;
    let _lock = lock_dir(&dir)?;
    if image::Reader::open(&dir)?.is_some() || !deltas::list(&dir)?.is_empty() {
        return Err(NamenodeError::Store(format!(
            "{} already holds a checkpoint; generate into a new name dir",
            dir.display()
        )));
    }
    let mut w = image::Writer::create(&dir, image::INSTALLING)?;
    // Keys in their order: the delta counter, block owners, links,
    // inodes, counters.
    w.pair(NEXT_DELTA, &0u64.to_be_bytes())?;
    for f in 0..shape.files {
        let owner = shape.file_id(f);
        w.pair(&block_key(Shape::block(f).id), &owner.to_be_bytes())?;
    }
    for d in 0..shape.dirs() {
        let id = Shape::dir_id(d);
        w.pair(&child_key(ROOT_ID, &Shape::dir_name(d)), &id.to_be_bytes())?;
    }
    for d in 0..shape.dirs() {
        let parent = Shape::dir_id(d);
        for f in files_of(shape, d) {
            let key = child_key(parent, &Shape::file_name(f));
            w.pair(&key, &shape.file_id(f).to_be_bytes())?;
        }
    }
    let dir_inode = |id, parent, name: String| Inode {
        id,
        parent,
        name,
        owner: "rfs".into(),
        group: "supergroup".into(),
        mode: 0o755,
        mtime_ms: 0,
        atime_ms: 0,
        file: None,
    };
    let encode = |i: &Inode| bincode::serialize(i).map_err(NamenodeError::from);
    let root = dir_inode(ROOT_ID, 0, String::new());
    w.pair(&inode_key(ROOT_ID), &encode(&root)?)?;
    for d in 0..shape.dirs() {
        let i = dir_inode(Shape::dir_id(d), ROOT_ID, Shape::dir_name(d));
        w.pair(&inode_key(i.id), &encode(&i)?)?;
    }
    for d in 0..shape.dirs() {
        for f in files_of(shape, d) {
            let file = Inode {
                mode: 0o644,
                file: Some(FileMeta {
                    replication: 3,
                    block_size: shape.block_len.max(1),
                    blocks: vec![BlockMeta {
                        len: shape.block_len,
                        ..Shape::block(f)
                    }],
                    writer: None,
                }),
                ..dir_inode(shape.file_id(f), Shape::dir_id(d), Shape::file_name(f))
            };
            w.pair(&inode_key(file.id), &encode(&file)?)?;
        }
    }
    for (key, value) in [
        (counter::APPLIED_INDEX, 0),
        (counter::NEXT_BLOCK, shape.files + 1),
        (counter::NEXT_GEN_STAMP, 1000 + shape.files),
        (counter::NEXT_INODE, shape.file_id(shape.files)),
    ] {
        w.pair(key, &value.to_be_bytes())?;
    }
    let bytes = w.bytes;
    w.install()?;
    Ok(bytes)
}

/// The files of directory `d`.
fn files_of(shape: Shape, d: u64) -> std::ops::Range<u64> {
    d * shape.per_dir..((d + 1) * shape.per_dir).min(shape.files)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::namespace::Namespace;

    #[test]
    fn a_generated_image_loads_as_the_namespace_it_describes() {
        let dir = tempfile::tempdir().unwrap();
        let shape = Shape {
            files: 25,
            per_dir: 10,
            block_len: 4096,
        };
        one_block_files(dir.path(), shape).unwrap();
        let ns = Namespace::open(dir.path(), 0).unwrap();
        let (totals, blocks) = ns.totals();
        assert_eq!((totals.files, totals.dirs, blocks), (25, 3, 25));
        assert_eq!(totals.bytes, 25 * 4096);
        assert_eq!(ns.totals_mismatch(), None);
        assert_eq!(ns.detached(), 0);
        let last = ns.get("/d000002/f0000000024").unwrap();
        let f = last.file.as_ref().unwrap();
        assert_eq!((f.blocks.len(), f.blocks[0].len), (1, 4096));
        let owner = ns.block_owner(f.blocks[0].id).unwrap().unwrap();
        assert_eq!(owner.id, last.id);
        assert_eq!(ns.children(ROOT_ID, "", 10).unwrap().0.len(), 3);
        // New ids continue after the generated ones.
        let c = ns.counters();
        assert_eq!((c.next_inode, c.next_block), (last.id + 1, 26));
        assert!(c.next_gen_stamp > f.blocks[0].gen_stamp);
        drop(ns);
        // Never over an existing checkpoint.
        let again = one_block_files(dir.path(), shape).unwrap_err();
        assert!(
            again.to_string().contains("already holds a checkpoint"),
            "{again}"
        );
    }
}
