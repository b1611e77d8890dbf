//! The block map: which datanodes hold a replica of each block. Rebuilt
//! after a restart from block reports; never persisted (the block → file
//! mapping is, in the namespace).

//!
//! The map holds an entry per block of the namespace (millions), so an
//! entry is kept small: datanode ids are shared ([`NodeId`], one
//! allocation per datanode), the usual three replicas and pipeline targets
//! sit inline ([`Nodes`]), and corrupt replicas, rare, cost nothing when
//! there are none.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use smallvec::SmallVec;

/// A datanode id, shared by every block entry that names the node.
pub type NodeId = Arc<str>;
/// A few datanodes, without a heap allocation up to three.
pub type Nodes = SmallVec<[NodeId; 3]>;

#[derive(Debug, Default, Clone)]
pub struct BlockInfo {
    pub gen_stamp: u64,
    pub replication: u32,
    /// Datanodes that reported a good replica.
    pub replicas: Nodes,
    /// Replicas reported bad; never offered to readers.
    pub corrupt: Vec<NodeId>,
    /// Pipeline chosen at allocation; offered until replicas are reported.
    pub expected: Nodes,
}

/// Whether `nodes` names `node`.
pub fn names<'a>(nodes: impl IntoIterator<Item = &'a NodeId>, node: &str) -> bool {
    nodes.into_iter().any(|n| &**n == node)
}

/// Block `id`'s entry, created from namespace facts if the map has none.
fn entry(
    blocks: &mut HashMap<u64, BlockInfo>,
    id: u64,
    gen_stamp: u64,
    replication: u32,
) -> &mut BlockInfo {
    blocks.entry(id).or_insert_with(|| BlockInfo {
        gen_stamp,
        replication,
        ..Default::default()
    })
}

#[derive(Default)]
pub struct BlockMap {
    blocks: HashMap<u64, BlockInfo>,
    by_node: HashMap<NodeId, HashSet<u64>>,
    /// Every datanode id the map has named, so each is stored once.
    ids: HashSet<NodeId>,
}

impl BlockMap {
    fn intern(&mut self, node: &str) -> NodeId {
        if let Some(id) = self.ids.get(node) {
            return id.clone();
        }
        let id: NodeId = Arc::from(node);
        self.ids.insert(id.clone());
        id
    }

    fn index_on(&mut self, node: &NodeId, block: u64) {
        self.by_node.entry(node.clone()).or_default().insert(block);
    }

    pub fn allocated(&mut self, id: u64, gen_stamp: u64, replication: u32, expected: Vec<String>) {
        let expected = expected.iter().map(|n| self.intern(n)).collect();
        self.blocks.insert(
            id,
            BlockInfo {
                gen_stamp,
                replication,
                expected,
                ..Default::default()
            },
        );
    }

    pub fn get(&self, id: u64) -> Option<&BlockInfo> {
        self.blocks.get(&id)
    }

    /// Adds a replica (creating the entry from namespace facts if new).
    pub fn add_replica(&mut self, id: u64, gen_stamp: u64, replication: u32, node: &str) {
        let node = self.intern(node);
        let info = entry(&mut self.blocks, id, gen_stamp, replication);
        info.gen_stamp = gen_stamp;
        info.replication = replication;
        if !info.corrupt.contains(&node) && !info.replicas.contains(&node) {
            info.replicas.push(node.clone());
        }
        self.index_on(&node, id);
    }

    /// Records that `node` holds an unfinished replica of block `id` (at
    /// `gen_stamp`, the block's current stamp): a location to recover it
    /// from, never offered to readers as a replica.
    pub fn add_expected(&mut self, id: u64, gen_stamp: u64, replication: u32, node: &str) {
        let node = self.intern(node);
        let info = entry(&mut self.blocks, id, gen_stamp, replication);
        if info.gen_stamp == gen_stamp && !info.expected.contains(&node) {
            info.expected.push(node);
        }
    }

    pub fn remove_replica(&mut self, id: u64, node: &str) {
        if let Some(info) = self.blocks.get_mut(&id) {
            info.replicas.retain(|n| &**n != node);
            info.corrupt.retain(|n| &**n != node);
        }
        if let Some(set) = self.by_node.get_mut(node) {
            set.remove(&id);
        }
    }

    /// Marks `node`'s replica of block `id` (a block the namespace has,
    /// with `gen_stamp`) bad; returns whether a good one remains elsewhere.
    pub fn mark_corrupt(&mut self, id: u64, gen_stamp: u64, replication: u32, node: &str) -> bool {
        let node = self.intern(node);
        let info = entry(&mut self.blocks, id, gen_stamp, replication);
        info.replicas.retain(|n| *n != node);
        info.expected.retain(|n| *n != node);
        if !info.corrupt.contains(&node) {
            info.corrupt.push(node.clone());
        }
        let good_left = !info.replicas.is_empty();
        self.index_on(&node, id);
        good_left
    }

    /// Forgets a block; returns the nodes that held it.
    pub fn remove_block(&mut self, id: u64) -> Vec<String> {
        let Some(info) = self.blocks.remove(&id) else {
            return Vec::new();
        };
        let mut nodes: Vec<String> = Vec::new();
        for n in info
            .replicas
            .iter()
            .chain(&info.corrupt)
            .chain(&info.expected)
        {
            if let Some(set) = self.by_node.get_mut(n) {
                set.remove(&id);
            }
            if !nodes.iter().any(|m| m == &**n) {
                nodes.push(n.to_string());
            }
        }
        nodes
    }

    pub fn set_replication(&mut self, id: u64, replication: u32) {
        if let Some(info) = self.blocks.get_mut(&id) {
            info.replication = replication;
        }
    }

    /// Blocks `node` holds according to the map.
    pub fn blocks_of(&self, node: &str) -> Vec<u64> {
        self.by_node
            .get(node)
            .map(|s| s.iter().copied().collect())
            .unwrap_or_default()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&u64, &BlockInfo)> {
        self.blocks.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nodes(ns: &Nodes) -> Vec<&str> {
        ns.iter().map(|n| &**n).collect()
    }

    #[test]
    fn replicas_corrupt_and_targets_keep_their_rules_with_shared_ids() {
        let mut map = BlockMap::default();
        map.allocated(1, 1000, 3, vec!["a".into(), "b".into(), "c".into()]);
        map.add_replica(1, 1000, 3, "a");
        map.add_replica(1, 1000, 3, "a");
        map.add_replica(1, 1000, 3, "b");
        map.add_replica(2, 1000, 3, "a");
        let info = map.get(1).unwrap();
        assert_eq!(nodes(&info.replicas), vec!["a", "b"], "no duplicates");
        assert_eq!(nodes(&info.expected), vec!["a", "b", "c"]);
        // One allocation per datanode, shared by every block naming it.
        let a1 = &map.get(1).unwrap().replicas[0];
        let a2 = &map.get(2).unwrap().replicas[0];
        assert!(Arc::ptr_eq(a1, a2));
        assert!(Arc::ptr_eq(a1, &map.get(1).unwrap().expected[0]));

        // A corrupt replica leaves replicas and targets, and is never
        // counted again until removed.
        assert!(map.mark_corrupt(1, 1000, 3, "b"), "a is still good");
        map.add_replica(1, 1000, 3, "b");
        let info = map.get(1).unwrap();
        assert_eq!(nodes(&info.replicas), vec!["a"]);
        assert_eq!(nodes(&info.expected), vec!["a", "c"]);
        assert!(names(&info.corrupt, "b"));
        assert!(!map.mark_corrupt(1, 1000, 3, "a"), "no good replica left");
        map.remove_replica(1, "b");
        assert!(!names(&map.get(1).unwrap().corrupt, "b"));
        assert_eq!(map.blocks_of("b"), Vec::<u64>::new());

        let mut held = map.blocks_of("a");
        held.sort_unstable();
        assert_eq!(held, vec![1, 2]);
        let mut gone = map.remove_block(1);
        gone.sort();
        assert_eq!(gone, vec!["a", "c"]);
        assert_eq!(map.blocks_of("a"), vec![2]);
        assert!(map.get(1).is_none());
    }

    #[test]
    fn an_entry_holds_three_replicas_and_targets_without_the_heap() {
        let mut map = BlockMap::default();
        map.allocated(7, 1000, 3, vec!["x".into(), "y".into(), "z".into()]);
        for n in ["x", "y", "z"] {
            map.add_replica(7, 1000, 3, n);
        }
        let info = map.get(7).unwrap();
        assert!(!info.replicas.spilled() && !info.expected.spilled());
        assert_eq!(info.corrupt.capacity(), 0);
    }
}
