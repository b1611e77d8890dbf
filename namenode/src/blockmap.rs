//! The block map: which datanodes hold a replica of each block. Rebuilt
//! after a restart from block reports; never persisted (the block → file
//! mapping is, in the namespace).

use std::collections::{HashMap, HashSet};

#[derive(Debug, Default, Clone)]
pub struct BlockInfo {
    pub gen_stamp: u64,
    pub replication: u32,
    /// Datanodes that reported a good replica.
    pub replicas: HashSet<String>,
    /// Replicas reported bad; never offered to readers.
    pub corrupt: HashSet<String>,
    /// Pipeline chosen at allocation; offered until replicas are reported.
    pub expected: Vec<String>,
}

#[derive(Default)]
pub struct BlockMap {
    blocks: HashMap<u64, BlockInfo>,
    by_node: HashMap<String, HashSet<u64>>,
}

impl BlockMap {
    pub fn allocated(&mut self, id: u64, gen_stamp: u64, replication: u32, expected: Vec<String>) {
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
        let info = self.blocks.entry(id).or_insert_with(|| BlockInfo {
            gen_stamp,
            replication,
            ..Default::default()
        });
        info.gen_stamp = gen_stamp;
        info.replication = replication;
        if !info.corrupt.contains(node) {
            info.replicas.insert(node.to_string());
        }
        self.by_node.entry(node.to_string()).or_default().insert(id);
    }

    /// Records that `node` holds an unfinished replica of block `id` (at
    /// `gen_stamp`, the block's current stamp): a location to recover it
    /// from, never offered to readers as a replica.
    pub fn add_expected(&mut self, id: u64, gen_stamp: u64, replication: u32, node: &str) {
        let info = self.blocks.entry(id).or_insert_with(|| BlockInfo {
            gen_stamp,
            replication,
            ..Default::default()
        });
        if info.gen_stamp == gen_stamp && !info.expected.iter().any(|n| n == node) {
            info.expected.push(node.to_string());
        }
    }

    pub fn remove_replica(&mut self, id: u64, node: &str) {
        if let Some(info) = self.blocks.get_mut(&id) {
            info.replicas.remove(node);
            info.corrupt.remove(node);
        }
        if let Some(set) = self.by_node.get_mut(node) {
            set.remove(&id);
        }
    }

    /// Marks `node`'s replica of block `id` (a block the namespace has,
    /// with `gen_stamp`) bad; returns whether a good one remains elsewhere.
    pub fn mark_corrupt(&mut self, id: u64, gen_stamp: u64, replication: u32, node: &str) -> bool {
        let info = self.blocks.entry(id).or_insert_with(|| BlockInfo {
            gen_stamp,
            replication,
            ..Default::default()
        });
        info.replicas.remove(node);
        info.expected.retain(|n| n != node);
        info.corrupt.insert(node.to_string());
        self.by_node.entry(node.to_string()).or_default().insert(id);
        !info.replicas.is_empty()
    }

    /// Forgets a block; returns the nodes that held it.
    pub fn remove_block(&mut self, id: u64) -> Vec<String> {
        let Some(info) = self.blocks.remove(&id) else {
            return Vec::new();
        };
        let nodes: Vec<String> = info
            .replicas
            .into_iter()
            .chain(info.corrupt)
            .chain(info.expected)
            .collect();
        for n in &nodes {
            if let Some(set) = self.by_node.get_mut(n) {
                set.remove(&id);
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
