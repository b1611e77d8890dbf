//! The inode tree in sled, and the read-only queries over it.
//!
//! One sled tree holds everything, so that one op's changes go in one
//! atomic `apply_batch` (sled transactions cannot range-scan, which
//! recursive delete needs). Keys carry a one-byte prefix:
//!
//! | key                                  | value                      |
//! |--------------------------------------|----------------------------|
//! | `i` inode id (u64 BE)                | [`Inode`] (bincode)        |
//! | `c` parent id (u64 BE) ++ name       | child inode id (u64 BE)    |
//! | `b` block id (u64 BE)                | owning inode id (u64 BE)   |
//! | `m` counter name                     | u64 BE                     |
//! | `x` client id ++ 0 ++ call id (u64 BE) | [`RetryEntry`] (bincode) |
//! | `d` datanode id                      | empty: being decommissioned |
//! | `rc`, `rs`                           | raft voters and snapshot point (`raft/storage.rs`) |
//!
//! Keeping the snapshot point in the same tree lets installing a snapshot
//! replace the namespace and record where the log restarts in one atomic
//! batch (the log itself is an append-only file, `raft/log_file.rs`).
//! The root directory is inode [`ROOT_ID`]. Writes happen only in
//! `apply.rs`; everything here reads.

use std::ops::Bound;

use serde::{Deserialize, Serialize};

use crate::error::{NamenodeError, Result};
use crate::meta_op::{CallKey, MetaResult};
use crate::path;

/// The sled store's directory in the name dir.
pub const STORE_DIR: &str = "meta.sled";

/// Key prefixes of the state machine (everything but the raft log): what
/// a snapshot carries.
pub const STATE_PREFIXES: &[u8] = b"bcdimx";

/// A retry-cache entry: the result a call got, and when.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RetryEntry {
    pub at_ms: u64,
    pub result: Result<MetaResult>,
}

/// The leading field of a [`RetryEntry`]: its age, read without
/// decoding the recorded result (the sweep looks at every entry).
#[derive(Deserialize)]
struct RetryAge {
    at_ms: u64,
}

/// When the retry-cache entry encoded in `value` was recorded.
fn retry_entry_at_ms(value: &[u8]) -> Result<u64> {
    Ok(bincode::deserialize::<RetryAge>(value)?.at_ms)
}

pub fn decommission_key(datanode_id: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + datanode_id.len());
    k.push(b'd');
    k.extend_from_slice(datanode_id.as_bytes());
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

pub const ROOT_ID: u64 = 1;

pub mod counter {
    pub const APPLIED_INDEX: &[u8] = b"mapplied_index";
    pub const NEXT_INODE: &[u8] = b"mnext_inode";
    pub const NEXT_BLOCK: &[u8] = b"mnext_block";
    pub const NEXT_GEN_STAMP: &[u8] = b"mnext_gen_stamp";
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
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
    /// The length readers see: see [`FileMeta::readable_blocks`].
    pub fn length(&self) -> u64 {
        self.readable_blocks()
            .fold(0, |n, b| n.saturating_add(b.len))
    }

    /// The blocks as readers see them. While the file is under
    /// construction its last block counts 0 bytes: its replicas are not
    /// served until finalized, and the length recorded there is only what
    /// a pipeline recovery acknowledged ([`crate::meta_op::MetaOp::RecoverPipeline`]),
    /// kept to check the datanodes' recoveries against.
    pub fn readable_blocks(&self) -> impl Iterator<Item = BlockMeta> + '_ {
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

fn u64_of(v: &[u8]) -> Result<u64> {
    let a: [u8; 8] = v
        .try_into()
        .map_err(|_| NamenodeError::Internal("corrupt u64 value".into()))?;
    Ok(u64::from_be_bytes(a))
}

/// Read access to the namespace.
#[derive(Clone)]
pub struct Namespace {
    pub tree: sled::Tree,
}

/// A path resolved as far as it exists.
pub struct Resolved {
    /// Inodes along the path that exist, root first.
    pub inodes: Vec<Inode>,
    /// Whether every component exists.
    pub complete: bool,
}

impl Namespace {
    pub fn open(db: &sled::Db) -> Result<Namespace> {
        Ok(Namespace {
            tree: db.open_tree("namespace")?,
        })
    }

    /// The recorded result of `call`, if it was applied and not expired.
    pub fn retry_cached(&self, call: &CallKey) -> Result<Option<Result<MetaResult>>> {
        match self.tree.get(retry_key(call))? {
            Some(v) => Ok(Some(bincode::deserialize::<RetryEntry>(&v)?.result)),
            None => Ok(None),
        }
    }

    /// Datanodes marked for decommissioning.
    pub fn decommissioning(&self) -> Result<std::collections::HashSet<String>> {
        let mut out = std::collections::HashSet::new();
        for kv in self.tree.scan_prefix(b"d") {
            let (k, _) = kv?;
            out.insert(String::from_utf8_lossy(&k[1..]).into_owned());
        }
        Ok(out)
    }

    /// Retry-cache entries after key `after` (every one when it is
    /// empty), in key order, with when each was recorded.
    pub fn retry_entries_after(
        &self,
        after: &[u8],
    ) -> impl Iterator<Item = Result<(sled::IVec, u64)>> + '_ {
        let from = if after.is_empty() {
            Bound::Included(b"x".to_vec())
        } else {
            Bound::Excluded(after.to_vec())
        };
        self.scan_from(from, b"x").map(|kv| {
            let (k, v) = kv?;
            let at_ms = retry_entry_at_ms(&v)?;
            Ok((k, at_ms))
        })
    }

    /// Entries from `from` on, in key order, while their keys start with
    /// `prefix`.
    fn scan_from(
        &self,
        from: Bound<Vec<u8>>,
        prefix: &'static [u8],
    ) -> impl Iterator<Item = sled::Result<(sled::IVec, sled::IVec)>> + '_ {
        self.tree
            .range((from, Bound::Unbounded))
            .take_while(move |kv| kv.as_ref().map_or(true, |(k, _)| k.starts_with(prefix)))
    }

    pub fn counter(&self, key: &[u8]) -> Result<u64> {
        match self.tree.get(key)? {
            Some(v) => u64_of(&v),
            None => Ok(0),
        }
    }

    pub fn inode(&self, id: u64) -> Result<Option<Inode>> {
        match self.tree.get(inode_key(id))? {
            Some(v) => Ok(Some(bincode::deserialize(&v)?)),
            None => Ok(None),
        }
    }

    pub fn root(&self) -> Result<Inode> {
        self.inode(ROOT_ID)?
            .ok_or_else(|| NamenodeError::Internal("root inode missing".into()))
    }

    pub fn child(&self, parent: u64, name: &str) -> Result<Option<Inode>> {
        match self.tree.get(child_key(parent, name))? {
            Some(id) => self.inode(u64_of(&id)?),
            None => Ok(None),
        }
    }

    /// Walks `components` from the root; a file met before the last
    /// component is `NotDirectory`.
    pub fn resolve(&self, components: &[&str]) -> Result<Resolved> {
        let mut inodes = vec![self.root()?];
        for (i, name) in components.iter().enumerate() {
            let cur = inodes.last().expect("root is always there");
            if !cur.is_dir() {
                return Err(NamenodeError::NotDirectory(path::join(&components[..i])));
            }
            match self.child(cur.id, name)? {
                Some(next) => inodes.push(next),
                None => {
                    return Ok(Resolved {
                        inodes,
                        complete: false,
                    })
                }
            }
        }
        Ok(Resolved {
            inodes,
            complete: true,
        })
    }

    /// The inode at `path`, or `None`.
    pub fn lookup(&self, path: &str) -> Result<Option<Inode>> {
        let comps = path::components(path)?;
        let r = self.resolve(&comps)?;
        Ok(if r.complete {
            r.inodes.last().cloned()
        } else {
            None
        })
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
        let prefix = child_key(dir, "");
        let mut start = child_key(dir, start_after);
        if !start_after.is_empty() {
            start.push(0); // names hold no NUL, so this is the next name up
        }
        let mut end = prefix.clone();
        end.extend_from_slice(&[0xff; 1]);
        let mut out = Vec::new();
        for item in self.tree.range(start..) {
            let (k, v) = item?;
            if !k.starts_with(&prefix) {
                break;
            }
            if out.len() == limit {
                return Ok((out, true));
            }
            let child = self.inode(u64_of(&v)?)?.ok_or_else(|| {
                NamenodeError::Internal(format!("dangling child entry under inode {dir}"))
            })?;
            out.push(child);
        }
        Ok((out, false))
    }

    /// Number of entries in directory `dir`.
    pub fn child_count(&self, dir: u64) -> Result<u64> {
        let mut n = 0;
        for item in self.tree.scan_prefix(child_key(dir, "")) {
            item?;
            n += 1;
        }
        Ok(n)
    }

    /// Every inode of the subtree at `root`, root first.
    pub fn subtree(&self, root: &Inode) -> Result<Vec<Inode>> {
        let mut out = vec![root.clone()];
        let mut i = 0;
        while i < out.len() {
            if out[i].is_dir() {
                let mut after = String::new();
                loop {
                    let (kids, more) = self.children(out[i].id, &after, 1024)?;
                    if let Some(last) = kids.last() {
                        after = last.name.clone();
                    }
                    out.extend(kids);
                    if !more {
                        break;
                    }
                }
            }
            i += 1;
        }
        Ok(out)
    }

    /// Owning inode of a block.
    pub fn block_owner(&self, block_id: u64) -> Result<Option<Inode>> {
        match self.tree.get(block_key(block_id))? {
            Some(v) => self.inode(u64_of(&v)?),
            None => Ok(None),
        }
    }

    /// Block `block_id` as its file records it; `None` when no file
    /// holds it.
    pub fn block_meta(&self, block_id: u64) -> Result<Option<BlockMeta>> {
        let Some(file) = self.block_owner(block_id)?.and_then(|o| o.file) else {
            return Ok(None);
        };
        Ok(file.blocks.into_iter().find(|b| b.id == block_id))
    }

    /// Full path of an inode, by walking parents.
    pub fn path_of(&self, inode: &Inode) -> Result<String> {
        let mut names = Vec::new();
        let mut cur = inode.clone();
        while cur.id != ROOT_ID {
            names.push(cur.name.clone());
            cur = self.inode(cur.parent)?.ok_or_else(|| {
                NamenodeError::Internal(format!("inode {} has no parent", cur.id))
            })?;
        }
        names.reverse();
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        Ok(path::join(&refs))
    }

    /// Every file inode, in inode-id order.
    pub fn files(&self) -> impl Iterator<Item = Result<Inode>> + '_ {
        self.files_after(0)
    }

    /// File inodes with ids above `after`, in inode-id order.
    pub fn files_after(&self, after: u64) -> impl Iterator<Item = Result<Inode>> + '_ {
        let from = Bound::Included(inode_key(after.saturating_add(1)).to_vec());
        self.scan_from(from, b"i").filter_map(|item| {
            let inode = item
                .map_err(NamenodeError::from)
                .and_then(|(_, v)| Ok(bincode::deserialize::<Inode>(&v)?));
            match inode {
                Ok(i) if i.is_dir() => None,
                other => Some(other),
            }
        })
    }

    /// Count of files and of blocks.
    pub fn totals(&self) -> Result<(u64, u64)> {
        let mut files = 0;
        for item in self.tree.scan_prefix(b"i") {
            let (_, v) = item?;
            let inode: Inode = bincode::deserialize(&v)?;
            if !inode.is_dir() {
                files += 1;
            }
        }
        Ok((files, self.tree.scan_prefix(b"b").count() as u64))
    }
}
