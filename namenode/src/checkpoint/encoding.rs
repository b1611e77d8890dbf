//! The checkpoint's keys and values: how the namespace in memory becomes
//! key/value pairs (a checkpoint's ops, a raft snapshot, an image) and
//! back. Keys carry a one-byte prefix:
//!
//! | key                                  | value                      |
//! |--------------------------------------|----------------------------|
//! | `i` inode id (u64 BE)                | [`Inode`] (bincode)        |
//! | `c` parent id (u64 BE) ++ name       | child inode id (u64 BE)    |
//! | `b` block id (u64 BE)                | owning inode id (u64 BE)   |
//! | `m` counter name                     | u64 BE                     |
//! | `x` client id ++ 0 ++ call id (u64 BE) | `RetryEntry::to_value`   |
//! | `d` datanode id                      | empty: being decommissioned |
//! | `r…`                                 | the raft log's own keys (`raft/storage.rs`) |

use std::collections::BTreeMap;

use compact_str::CompactString;

use crate::error::{NamenodeError, Result};
use crate::namespace::retry_cache::RetryKey;
use crate::namespace::tree::{Dirty, Tree};
use crate::namespace::{counter, Counters, Inode, RetryEntry};

/// Checkpoint keys and values: what a raft snapshot carries.
pub type Pairs = Vec<(Vec<u8>, Vec<u8>)>;

/// One key's new value, or None where the key is removed: what a
/// checkpoint writes.
pub type Op = (Vec<u8>, Option<Vec<u8>>);

/// Key prefixes of the state machine (everything but the raft log's
/// keys): what a snapshot carries.
pub const STATE_PREFIXES: &[u8] = b"bcdimx";

/// The prefix of the raft log's keys.
pub const RAFT_PREFIX: u8 = b'r';

pub fn is_state_key(key: &[u8]) -> bool {
    key.first().is_some_and(|p| STATE_PREFIXES.contains(p))
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

/// `x` ++ client ++ 0 ++ call (big-endian).
pub fn retry_key_bytes(client: &str, call: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(10 + client.len());
    k.push(b'x');
    k.extend_from_slice(client.as_bytes());
    k.push(0);
    k.extend_from_slice(&call.to_be_bytes());
    k
}

/// The client and call of a retry key ([`retry_key_bytes`]).
pub fn parse_retry_key(k: &[u8]) -> Result<(&str, u64)> {
    let bad = || corrupt_key(k);
    if k.len() < 10 || k[0] != b'x' || k[k.len() - 9] != 0 {
        return Err(bad());
    }
    let client = std::str::from_utf8(&k[1..k.len() - 9]).map_err(|_| bad())?;
    Ok((client, u64_of(&k[k.len() - 8..])?))
}

pub fn decommission_key(datanode_id: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + datanode_id.len());
    k.push(b'd');
    k.extend_from_slice(datanode_id.as_bytes());
    k
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

fn corrupt_key(k: &[u8]) -> NamenodeError {
    NamenodeError::Store(format!("corrupt checkpoint key {k:?}"))
}

/// The inode stored under `k`, which must be its own key.
fn inode_of(k: &[u8], v: &[u8]) -> Result<Inode> {
    let inode: Inode = bincode::deserialize(v)?;
    if inode_key(inode.id) != k {
        return Err(corrupt_key(k));
    }
    Ok(inode)
}

/// The directory and name of a child key.
fn link_of(k: &[u8]) -> Result<(u64, &str)> {
    if k.len() < 9 {
        return Err(corrupt_key(k));
    }
    let name = std::str::from_utf8(&k[9..]).map_err(|_| corrupt_key(k))?;
    Ok((u64_of(&k[1..9])?, name))
}

/// Sets one state key of `tree` to `value`, or removes it. Unknown keys
/// are refused: the store was written by something else.
pub fn set_pair(tree: &mut Tree, k: &[u8], value: Option<&[u8]>) -> Result<()> {
    let bad = || corrupt_key(k);
    match (k.first(), value) {
        // A linked inode may be renamed or go before its link does here.
        (Some(b'i'), Some(v)) => {
            tree.put_inode(&inode_of(k, v)?.as_ref());
        }
        (Some(b'i'), None) if k.len() == 9 => {
            tree.remove_inode(u64_of(&k[1..])?);
        }
        (Some(b'c'), _) => {
            let (parent, name) = link_of(k)?;
            match value {
                Some(v) => {
                    let id = u64_of(v)?;
                    tree.children.link(&tree.inodes, parent, name, id);
                }
                None => {
                    tree.children.unlink(&tree.inodes, parent, name);
                }
            }
        }
        (Some(b'b'), _) if k.len() == 9 => {
            let block = u64_of(&k[1..])?;
            match value {
                Some(v) => {
                    let owner = std::num::NonZeroU64::new(u64_of(v)?).ok_or_else(bad)?;
                    tree.block_owner.insert(block, owner)
                }
                None => tree.block_owner.remove(block),
            };
        }
        (Some(b'm'), Some(v)) => {
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
        (Some(b'x'), Some(v)) => {
            tree.retry
                .insert(RetryKey::from_bytes(k)?, RetryEntry::from_value(v)?);
        }
        (Some(b'x'), None) => {
            tree.retry.remove(&RetryKey::from_bytes(k)?);
        }
        (Some(b'd'), _) => {
            let id = std::str::from_utf8(&k[1..]).map_err(|_| bad())?;
            match value {
                Some(_) => tree.decommissioning.insert(id.to_string()),
                None => tree.decommissioning.remove(id),
            };
        }
        _ => return Err(bad()),
    }
    Ok(())
}

/// Loads an image's state keys, which come sorted, into an empty tree:
/// the sorted runs (each directory's children by name, the retry cache
/// by key) are collected and built into their maps in one pass each,
/// instead of one descent of the map per key.
#[derive(Default)]
pub struct SortedLoad {
    retry: Vec<(RetryKey, RetryEntry)>,
    /// The directory whose children are being collected.
    parent: Option<u64>,
    kids: Vec<(CompactString, u64)>,
}

impl SortedLoad {
    pub fn add(&mut self, tree: &mut Tree, k: &[u8], v: &[u8]) -> Result<()> {
        match k.first() {
            Some(b'x') => {
                let key = RetryKey::from_bytes_after(k, self.retry.last().map(|(k, _)| k))?;
                self.retry.push((key, RetryEntry::from_value(v)?));
            }
            Some(b'c') => {
                let (parent, name) = link_of(k)?;
                if self.parent != Some(parent) {
                    self.flush_children(tree);
                    self.parent = Some(parent);
                }
                self.kids.push((name.into(), u64_of(v)?));
            }
            _ => set_pair(tree, k, Some(v))?,
        }
        Ok(())
    }

    fn flush_children(&mut self, tree: &mut Tree) {
        if let Some(parent) = self.parent.take() {
            let kids: BTreeMap<CompactString, u64> =
                std::mem::take(&mut self.kids).into_iter().collect();
            tree.children.add_by_name(&tree.inodes, parent, kids);
        }
    }

    /// Builds the collected runs into `tree`'s maps.
    pub fn finish(mut self, tree: &mut Tree) {
        self.flush_children(tree);
        tree.retry.load_sorted(self.retry);
    }
}

/// The whole of `tree` as checkpoint key/value pairs, encoded as a
/// checkpoint writes them (tests compare it with what the files hold).
pub fn pairs(tree: &Tree) -> Pairs {
    let everything = Dirty {
        inodes: tree.inodes.iter().map(|i| i.id).collect(),
        links: (tree.children.dirs())
            .flat_map(|parent| {
                (tree.children.entries(&tree.inodes, parent))
                    .map(move |(name, _)| (parent, name.to_string()))
            })
            .collect(),
        blocks: tree.block_owner.iter().map(|(block, _)| block).collect(),
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
pub enum Captured {
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

/// `dirty`'s values in `tree` now, in the order [`ops`] walks
/// `dirty` (a set not changed in between iterates the same way).
pub fn capture(tree: &Tree, dirty: &Dirty) -> Result<Vec<Captured>> {
    let mut out = Vec::with_capacity(dirty.len());
    for id in &dirty.inodes {
        out.push(match tree.inodes.get(*id) {
            Some(inode) => Captured::Encoded(bincode::serialize(&inode)?),
            None => Captured::Gone,
        });
    }
    for (parent, name) in &dirty.links {
        out.push(match tree.children.get(&tree.inodes, *parent, name) {
            Some(id) => Captured::Id(id),
            None => Captured::Gone,
        });
    }
    for block in &dirty.blocks {
        out.push(match tree.block_owner.get(*block) {
            Some(inode) => Captured::Id(inode.get()),
            None => Captured::Gone,
        });
    }
    for key in &dirty.retry {
        out.push(match tree.retry.get_key(key) {
            Some(e) => Captured::Encoded(e.to_value()),
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
        .chain(dirty.retry.iter().map(RetryKey::to_bytes))
        .chain(dirty.decommissioning.iter().map(|d| decommission_key(d)));
    keys.zip(captured)
}

/// A checkpoint's ops: `dirty`'s keys with their `captured` values, and
/// `counters`.
pub fn ops(dirty: &Dirty, captured: Vec<Captured>, counters: &Counters) -> Vec<Op> {
    let mut out: Vec<Op> = keyed(dirty, captured)
        .map(|(key, value)| (key, value.into_value()))
        .collect();
    out.extend(counter_values(counters).map(|(k, v)| (k, Some(v))));
    out
}
