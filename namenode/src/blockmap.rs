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
        let info = self.blocks.entry(id).or_insert_with(|| BlockInfo {
            gen_stamp,
            replication,
            ..Default::default()
        });
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
        let info = self.blocks.entry(id).or_insert_with(|| BlockInfo {
            gen_stamp,
            replication,
            ..Default::default()
        });
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
        let info = self.blocks.entry(id).or_insert_with(|| BlockInfo {
            gen_stamp,
            replication,
            ..Default::default()
        });
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
