//! The block map: which datanodes hold a replica of each block. Rebuilt
//! after a restart from block reports; never persisted (the block → file
//! mapping is, in the namespace).
//!
//! The map holds an entry per block of the namespace (millions), so the
//! entry every block has is 24 bytes: the generation stamp and up to three
//! replicas inline, each a `u32` index into the map's table of datanode
//! ids. What few blocks have (more than three replicas; corrupt replicas;
//! pipeline targets, kept only until every target has reported its
//! replica) lives in side maps that are empty most of the time. There is
//! no per-datanode index: the questions it would answer (a block report's
//! diff, a node's block count) are rare enough to scan for, and an index
//! would cost three hash-set slots per block.

use std::collections::HashMap;

use rfs_proto::interner::Interner;

use crate::namespace::pages::Pages;
use smallvec::SmallVec;

/// A datanode, as an index into [`BlockMap`]'s table of ids.
type Node = u32;
/// A few datanodes, inline up to three.
type Nodes = SmallVec<[Node; 3]>;

/// What every block has: 24 bytes, and 24 as an empty slot of [`Pages`]
/// too (`Option<Entry>` uses [`Len`]'s spare values).
#[derive(Debug, Default, Clone, Copy)]
struct Entry {
    gen_stamp: u64,
    /// Datanodes that reported a good replica: the first `len` of
    /// `inline`, or, when `len` is [`Len::Wide`], the block's list in
    /// [`BlockMap::wide`] (an array, not a `SmallVec`, whose length and
    /// capacity would make every entry 8 bytes bigger).
    inline: [Node; INLINE],
    len: Len,
}

const INLINE: usize = 3;

/// How many of `Entry::inline` hold replicas, or that the block's replicas
/// are all in the wide side map. An enum, so that an `Option<Entry>` needs
/// no byte of its own.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum Len {
    #[default]
    Zero,
    One,
    Two,
    Three,
    Wide,
}

impl Len {
    fn inline(n: usize) -> Len {
        [Len::Zero, Len::One, Len::Two, Len::Three][n]
    }
}

const _: () = assert!(std::mem::size_of::<Option<Entry>>() == 24);

impl Entry {
    fn new(gen_stamp: u64) -> Entry {
        Entry {
            gen_stamp,
            ..Default::default()
        }
    }

    fn replicas<'a>(&'a self, id: u64, wide: &'a HashMap<u64, Nodes>) -> &'a [Node] {
        if self.len == Len::Wide {
            side(wide, id)
        } else {
            &self.inline[..self.len as usize]
        }
    }

    /// Adds `node` unless it is there already.
    fn add(&mut self, id: u64, wide: &mut HashMap<u64, Nodes>, node: Node) {
        if self.replicas(id, wide).contains(&node) {
            return;
        }
        match self.len {
            Len::Wide => wide.entry(id).or_default().push(node),
            Len::Three => {
                let mut all: Nodes = self.inline.iter().copied().collect();
                all.push(node);
                wide.insert(id, all);
                self.len = Len::Wide;
            }
            n => {
                self.inline[n as usize] = node;
                self.len = Len::inline(n as usize + 1);
            }
        }
    }

    fn remove(&mut self, id: u64, wide: &mut HashMap<u64, Nodes>, node: Node) {
        if self.len != Len::Wide {
            let mut kept = 0;
            for i in 0..self.len as usize {
                if self.inline[i] != node {
                    self.inline[kept] = self.inline[i];
                    kept += 1;
                }
            }
            self.len = Len::inline(kept);
            return;
        }
        let Some(all) = wide.get_mut(&id) else {
            self.len = Len::Zero;
            return;
        };
        all.retain(|n| *n != node);
        if all.len() <= INLINE {
            self.len = Len::inline(all.len());
            self.inline[..all.len()].copy_from_slice(all);
            wide.remove(&id);
        }
    }
}

/// One block's entry, with datanode ids resolved.
#[derive(Clone, Copy)]
pub struct BlockInfo<'a> {
    ids: &'a [Box<str>],
    pub gen_stamp: u64,
    replicas: &'a [Node],
    corrupt: &'a [Node],
    expected: &'a [Node],
}

impl<'a> BlockInfo<'a> {
    fn names(self, nodes: &'a [Node]) -> impl Iterator<Item = &'a str> {
        nodes.iter().map(move |n| &*self.ids[*n as usize])
    }

    /// Datanodes that reported a good replica.
    pub fn replicas(self) -> impl Iterator<Item = &'a str> {
        self.names(self.replicas)
    }

    /// Replicas their datanodes found bad: offered to readers only when
    /// no good one is (`State::located`).
    pub fn corrupt(self) -> impl Iterator<Item = &'a str> {
        self.names(self.corrupt)
    }

    /// Pipeline targets chosen at allocation that have not yet reported a
    /// replica (offered until one is reported; lease recovery's
    /// candidates).
    pub fn expected(self) -> impl Iterator<Item = &'a str> {
        self.names(self.expected)
    }

    pub fn is_replica(self, node: &str) -> bool {
        self.replicas().any(|n| n == node)
    }

    pub fn is_corrupt(self, node: &str) -> bool {
        self.corrupt().any(|n| n == node)
    }

    pub fn corrupt_count(self) -> usize {
        self.corrupt.len()
    }
}

/// Every block's [`Entry`]: in pages by id ([`Pages`]: no key stored, no
/// hash slack), except the ids a member records before its namespace has
/// them (a standby's unjudged reports), kept by hash until judged, so that
/// no datanode can make the map spend a page on an id nobody allocated.
#[derive(Default)]
struct Table {
    paged: Pages<Entry>,
    stray: HashMap<u64, Entry>,
}

impl Table {
    fn get(&self, id: u64) -> Option<&Entry> {
        self.paged.get(id).or_else(|| self.stray.get(&id))
    }

    fn get_mut(&mut self, id: u64) -> Option<&mut Entry> {
        match self.paged.get_mut(id) {
            Some(e) => Some(e),
            None => self.stray.get_mut(&id),
        }
    }

    /// Block `id`'s entry, created with `gen_stamp` if there is none: in
    /// the pages for a block the namespace has (`known`), where a stray
    /// entry for it moves too.
    fn entry(&mut self, id: u64, gen_stamp: u64, known: bool) -> &mut Entry {
        if known || self.paged.has_page_of(id) {
            if self.paged.get(id).is_none() && !self.settle(id) {
                self.paged.insert(id, Entry::new(gen_stamp));
            }
            return self.paged.get_mut(id).expect("just inserted");
        }
        self.stray
            .entry(id)
            .or_insert_with(|| Entry::new(gen_stamp))
    }

    /// Moves `id`'s stray entry, if it has one, to the pages.
    fn settle(&mut self, id: u64) -> bool {
        let Some(e) = self.stray.remove(&id) else {
            return false;
        };
        self.paged.insert(id, e);
        true
    }

    fn insert(&mut self, id: u64, entry: Entry) {
        self.stray.remove(&id);
        self.paged.insert(id, entry);
    }

    fn remove(&mut self, id: u64) -> Option<Entry> {
        self.paged.remove(id).or_else(|| self.stray.remove(&id))
    }

    fn iter(&self) -> impl Iterator<Item = (u64, &Entry)> + '_ {
        (self.paged.iter()).chain(self.stray.iter().map(|(id, e)| (*id, e)))
    }
}

#[derive(Default)]
pub struct BlockMap {
    blocks: Table,
    /// Replicas of blocks with more than [`INLINE`].
    wide: HashMap<u64, Nodes>,
    corrupt: HashMap<u64, Nodes>,
    expected: HashMap<u64, Nodes>,
    /// Datanode ids by index, each stored once.
    ids: Interner,
}

impl BlockMap {
    fn intern(&mut self, node: &str) -> Node {
        self.ids.index(node)
    }

    /// `node`'s index, if the map has ever named it.
    fn known(&self, node: &str) -> Option<Node> {
        self.ids.get(node)
    }

    /// A block was allocated (or its pipeline rebuilt) at `gen_stamp`
    /// with these targets; replicas reported before are forgotten.
    pub fn allocated(&mut self, id: u64, gen_stamp: u64, expected: Vec<String>) {
        let expected: Nodes = expected.iter().map(|n| self.intern(n)).collect();
        self.blocks.insert(id, Entry::new(gen_stamp));
        self.wide.remove(&id);
        self.corrupt.remove(&id);
        if expected.is_empty() {
            self.expected.remove(&id);
        } else {
            self.expected.insert(id, expected);
        }
    }

    pub fn get(&self, id: u64) -> Option<BlockInfo<'_>> {
        let entry = self.blocks.get(id)?;
        Some(BlockInfo {
            ids: self.ids.names(),
            gen_stamp: entry.gen_stamp,
            replicas: entry.replicas(id, &self.wide),
            corrupt: side(&self.corrupt, id),
            expected: side(&self.expected, id),
        })
    }

    /// Adds a replica at `gen_stamp` (creating the entry if new). A target
    /// that reports leaves the pipeline's list, which goes once empty.
    pub fn add_replica(&mut self, id: u64, gen_stamp: u64, node: &str) {
        self.add(id, gen_stamp, node, true)
    }

    /// [`BlockMap::add_replica`] for a block this member's namespace does
    /// not have (yet): a standby's report it could not judge.
    pub fn add_unjudged_replica(&mut self, id: u64, gen_stamp: u64, node: &str) {
        self.add(id, gen_stamp, node, false)
    }

    fn add(&mut self, id: u64, gen_stamp: u64, node: &str, known: bool) {
        let node = self.intern(node);
        let corrupt = self.corrupt.get(&id).is_some_and(|c| c.contains(&node));
        let entry = self.blocks.entry(id, gen_stamp, known);
        entry.gen_stamp = gen_stamp;
        if !corrupt {
            entry.add(id, &mut self.wide, node);
        }
        if let Some(expected) = self.expected.get_mut(&id) {
            expected.retain(|n| *n != node);
            if expected.is_empty() {
                self.expected.remove(&id);
            }
        }
    }

    /// Records that `node` holds an unfinished replica of block `id` (at
    /// `gen_stamp`, the block's current stamp): a location to recover it
    /// from, never offered to readers as a replica.
    pub fn add_expected(&mut self, id: u64, gen_stamp: u64, node: &str) {
        let node = self.intern(node);
        let entry = *self.blocks.entry(id, gen_stamp, true);
        if entry.gen_stamp != gen_stamp || entry.replicas(id, &self.wide).contains(&node) {
            return;
        }
        let expected = self.expected.entry(id).or_default();
        if !expected.contains(&node) {
            expected.push(node);
        }
    }

    /// `node` no longer holds block `id` (good, bad or unfinished).
    pub fn remove_replica(&mut self, id: u64, node: &str) {
        let Some(node) = self.known(node) else {
            return;
        };
        if let Some(entry) = self.blocks.get_mut(id) {
            entry.remove(id, &mut self.wide, node);
        }
        remove_from(&mut self.corrupt, id, node);
        remove_from(&mut self.expected, id, node);
    }

    /// Marks `node`'s replica of block `id` (a block the namespace has,
    /// with `gen_stamp`) bad: it leaves the good replicas and the targets
    /// until the node deletes it (`remove_replica`).
    pub fn mark_corrupt(&mut self, id: u64, gen_stamp: u64, node: &str) {
        let node = self.intern(node);
        (self.blocks.entry(id, gen_stamp, true)).remove(id, &mut self.wide, node);
        remove_from(&mut self.expected, id, node);
        let corrupt = self.corrupt.entry(id).or_default();
        if !corrupt.contains(&node) {
            corrupt.push(node);
        }
    }

    /// The namespace has these blocks: entries recorded unjudged move to
    /// the pages.
    pub fn settle(&mut self, ids: &[u64]) {
        for &id in ids {
            self.blocks.settle(id);
        }
    }

    /// Forgets a block; returns the nodes that held it.
    pub fn remove_block(&mut self, id: u64) -> Vec<String> {
        let Some(entry) = self.blocks.remove(id) else {
            return Vec::new();
        };
        let replicas: Nodes = entry.replicas(id, &self.wide).iter().copied().collect();
        self.wide.remove(&id);
        let corrupt = self.corrupt.remove(&id).unwrap_or_default();
        let expected = self.expected.remove(&id).unwrap_or_default();
        let mut nodes: Vec<Node> = Vec::new();
        for n in replicas.iter().chain(&corrupt).chain(&expected) {
            if !nodes.contains(n) {
                nodes.push(*n);
            }
        }
        nodes
            .into_iter()
            .map(|n| self.ids.name(n).to_string())
            .collect()
    }

    /// Blocks `node` holds a replica of, good or bad (a scan of the map:
    /// for block reports, which are rare).
    pub fn blocks_of(&self, node: &str) -> Vec<u64> {
        let Some(node) = self.known(node) else {
            return Vec::new();
        };
        let mut out: Vec<u64> = self
            .blocks
            .iter()
            .filter(|(id, e)| e.replicas(*id, &self.wide).contains(&node))
            .map(|(id, _)| id)
            .collect();
        out.extend(
            self.corrupt
                .iter()
                .filter(|(_, c)| c.contains(&node))
                .map(|(id, _)| *id),
        );
        out
    }

    /// How many good replicas each datanode holds (one scan).
    pub fn replica_counts(&self) -> HashMap<&str, u64> {
        let mut per_node = vec![0u64; self.ids.names().len()];
        for (id, e) in self.blocks.iter() {
            for n in e.replicas(id, &self.wide) {
                per_node[*n as usize] += 1;
            }
        }
        (self.ids.names().iter())
            .map(|id| &**id)
            .zip(per_node)
            .collect()
    }

    /// Every block with its generation stamp.
    pub fn gen_stamps(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.blocks.iter().map(|(id, e)| (id, e.gen_stamp))
    }
}

/// Block `id`'s list in a side map (empty when it has none).
fn side(map: &HashMap<u64, Nodes>, id: u64) -> &[Node] {
    map.get(&id).map_or(&[], |n| &n[..])
}

/// Drops `node` from block `id`'s list in a side map, and the list once
/// empty.
fn remove_from(side: &mut HashMap<u64, Nodes>, id: u64, node: Node) {
    if let Some(nodes) = side.get_mut(&id) {
        nodes.retain(|n| *n != node);
        if nodes.is_empty() {
            side.remove(&id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sorted<'a>(it: impl Iterator<Item = &'a str>) -> Vec<&'a str> {
        let mut v: Vec<&str> = it.collect();
        v.sort_unstable();
        v
    }

    #[test]
    fn replicas_corrupt_and_targets_keep_their_rules() {
        let mut map = BlockMap::default();
        map.allocated(1, 1000, vec!["a".into(), "b".into(), "c".into()]);
        map.add_replica(1, 1000, "a");
        map.add_replica(1, 1000, "a");
        map.add_replica(1, 1000, "b");
        map.add_replica(2, 1000, "a");
        let info = map.get(1).unwrap();
        assert_eq!(sorted(info.replicas()), vec!["a", "b"], "no duplicates");
        assert_eq!(sorted(info.expected()), vec!["c"], "reported targets leave");
        assert_eq!(map.ids.names().len(), 3, "each datanode id stored once");

        // A corrupt replica leaves replicas and targets, and is never
        // counted again until removed.
        map.mark_corrupt(1, 1000, "c");
        assert!(map.get(1).unwrap().expected().next().is_none());
        map.mark_corrupt(1, 1000, "b");
        map.add_replica(1, 1000, "b");
        let info = map.get(1).unwrap();
        assert_eq!(sorted(info.replicas()), vec!["a"]);
        assert!(info.is_corrupt("b") && info.is_corrupt("c"));
        assert_eq!(info.corrupt_count(), 2);
        map.mark_corrupt(1, 1000, "a");
        assert!(map.get(1).unwrap().replicas().next().is_none());
        map.remove_replica(1, "b");
        assert!(!map.get(1).unwrap().is_corrupt("b"));
        assert_eq!(map.blocks_of("b"), Vec::<u64>::new());

        let mut held = map.blocks_of("a");
        held.sort_unstable();
        assert_eq!(held, vec![1, 2], "good or bad");
        assert_eq!(map.replica_counts()["a"], 1, "only block 2's is good");
        let mut gone = map.remove_block(1);
        gone.sort();
        assert_eq!(gone, vec!["a", "c"]);
        assert_eq!(map.blocks_of("a"), vec![2]);
        assert!(map.get(1).is_none());
        assert!(map.corrupt.is_empty() && map.expected.is_empty());
    }

    #[test]
    fn a_new_pipeline_replaces_the_old_ones_replicas_and_targets() {
        let mut map = BlockMap::default();
        map.allocated(5, 1000, vec!["a".into(), "b".into()]);
        map.add_replica(5, 1000, "a");
        map.allocated(5, 1001, vec!["b".into(), "c".into()]);
        let info = map.get(5).unwrap();
        assert_eq!(info.gen_stamp, 1001);
        assert!(info.replicas().next().is_none());
        assert_eq!(sorted(info.expected()), vec!["b", "c"]);
        // An unfinished replica at another stamp is no candidate.
        map.add_expected(5, 1000, "d");
        map.add_expected(5, 1001, "e");
        assert_eq!(sorted(map.get(5).unwrap().expected()), vec!["b", "c", "e"]);
    }

    #[test]
    fn a_fully_reported_block_costs_one_small_entry() {
        let mut map = BlockMap::default();
        map.allocated(7, 1000, vec!["x".into(), "y".into(), "z".into()]);
        for n in ["x", "y", "z"] {
            map.add_replica(7, 1000, n);
        }
        assert!(map.expected.is_empty() && map.corrupt.is_empty() && map.wide.is_empty());
        assert_eq!(sorted(map.get(7).unwrap().replicas()), vec!["x", "y", "z"]);
        assert_eq!(std::mem::size_of::<Entry>(), 24);
    }

    #[test]
    fn more_than_three_replicas_move_to_the_side_and_back() {
        let mut map = BlockMap::default();
        map.allocated(9, 1000, Vec::new());
        for n in ["a", "b", "c", "d", "e"] {
            map.add_replica(9, 1000, n);
        }
        map.add_replica(9, 1000, "d");
        assert_eq!(
            sorted(map.get(9).unwrap().replicas()),
            vec!["a", "b", "c", "d", "e"]
        );
        assert_eq!(map.replica_counts()["e"], 1);
        assert_eq!(map.blocks_of("e"), vec![9]);
        map.remove_replica(9, "a");
        map.mark_corrupt(9, 1000, "e");
        assert_eq!(sorted(map.get(9).unwrap().replicas()), vec!["b", "c", "d"]);
        assert!(map.wide.is_empty(), "three fit inline again");
        map.add_replica(9, 1000, "f");
        map.add_replica(9, 1000, "g");
        assert_eq!(
            sorted(map.get(9).unwrap().replicas()),
            vec!["b", "c", "d", "f", "g"]
        );
        let mut gone = map.remove_block(9);
        gone.sort();
        assert_eq!(gone, vec!["b", "c", "d", "e", "f", "g"]);
        assert!(map.wide.is_empty() && map.corrupt.is_empty());
        // A new pipeline forgets the old replicas, wide ones included.
        for n in ["a", "b", "c", "d"] {
            map.add_replica(10, 1000, n);
        }
        map.allocated(10, 1001, vec!["a".into()]);
        assert!(map.get(10).unwrap().replicas().next().is_none());
        assert!(map.wide.is_empty());
    }

    #[test]
    fn unjudged_ids_take_no_page_until_the_namespace_has_them() {
        let mut map = BlockMap::default();
        // A standby told of ids far apart: no page for any of them.
        for id in [1 << 20, 1 << 30, 1 << 40] {
            map.add_unjudged_replica(id, 1000, "a");
        }
        assert_eq!((map.blocks.paged.len(), map.blocks.stray.len()), (0, 3));
        assert_eq!(map.blocks_of("a").len(), 3);
        // Its namespace caught up: the next report moves the entry to the
        // pages, replicas kept.
        map.add_replica(1 << 20, 1000, "b");
        assert_eq!(sorted(map.get(1 << 20).unwrap().replicas()), ["a", "b"]);
        assert_eq!((map.blocks.paged.len(), map.blocks.stray.len()), (1, 2));
        // An unjudged id beside a paged one uses the page already there.
        map.add_unjudged_replica((1 << 20) + 1, 1000, "a");
        assert_eq!(map.blocks.paged.len(), 2);
        // Elected, the member settles the ones its namespace has.
        map.settle(&[1 << 30]);
        assert_eq!((map.blocks.paged.len(), map.blocks.stray.len()), (3, 1));
        assert_eq!(sorted(map.get(1 << 30).unwrap().replicas()), ["a"]);
        assert_eq!(map.remove_block(1 << 40), ["a"]);
        assert!(map.blocks.stray.is_empty());
        let counts = map.replica_counts();
        assert_eq!((counts["a"], counts["b"]), (3, 1));
    }
}
