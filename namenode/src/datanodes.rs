//! The datanode registry: who is registered, their storage figures from
//! heartbeats, liveness, and the commands queued for each.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use rfs_proto::common::DatanodeInfo;
use rfs_proto::datanode::{DatanodeCommand, StorageReport};

pub struct DatanodeState {
    pub info: DatanodeInfo,
    pub last_seen: Instant,
    /// Storage figures are known once a heartbeat arrived.
    pub reported: bool,
    /// Data directories the node has taken out of service.
    pub failed_volumes: u32,
    pub pending: Vec<DatanodeCommand>,
}

pub struct Registry {
    nodes: HashMap<String, DatanodeState>,
    dead_after: Duration,
    /// Nodes being decommissioned (mirrors the namespace's `d` keys): no
    /// new replicas go there and their replicas do not count.
    draining: HashSet<String>,
    /// Draining nodes whose every block has enough replicas elsewhere.
    drained: HashSet<String>,
}

impl Registry {
    pub fn new(dead_after: Duration) -> Registry {
        Registry {
            nodes: HashMap::new(),
            dead_after,
            draining: HashSet::new(),
            drained: HashSet::new(),
        }
    }

    pub fn register(&mut self, info: DatanodeInfo) {
        let id = info.datanode_id.clone();
        let pending = self
            .nodes
            .remove(&id)
            .map(|s| s.pending)
            .unwrap_or_default();
        self.nodes.insert(
            id,
            DatanodeState {
                info,
                last_seen: Instant::now(),
                reported: false,
                failed_volumes: 0,
                pending,
            },
        );
    }

    /// Records a heartbeat; `None` if the node is unknown (must re-register).
    pub fn heartbeat(&mut self, id: &str, storage: &StorageReport) -> Option<Vec<DatanodeCommand>> {
        let s = self.nodes.get_mut(id)?;
        s.last_seen = Instant::now();
        s.reported = true;
        s.info.capacity = storage.capacity;
        s.info.used = storage.used;
        s.info.remaining = storage.remaining;
        s.failed_volumes = storage.failed_volumes;
        Some(std::mem::take(&mut s.pending))
    }

    pub fn touch(&mut self, id: &str) -> bool {
        match self.nodes.get_mut(id) {
            Some(s) => {
                s.last_seen = Instant::now();
                true
            }
            None => false,
        }
    }

    pub fn is_live(&self, id: &str) -> bool {
        self.nodes
            .get(id)
            .is_some_and(|s| s.last_seen.elapsed() < self.dead_after)
    }

    pub fn get(&self, id: &str) -> Option<&DatanodeState> {
        self.nodes.get(id)
    }

    /// Every known node, live or dead.
    pub fn all(&self) -> impl Iterator<Item = &DatanodeState> {
        self.nodes.values()
    }

    pub fn live(&self) -> impl Iterator<Item = &DatanodeState> {
        self.nodes
            .values()
            .filter(|s| s.last_seen.elapsed() < self.dead_after)
    }

    pub fn counts(&self) -> (u32, u32) {
        let live = self.live().count() as u32;
        (live, self.nodes.len() as u32 - live)
    }

    pub fn set_draining(&mut self, draining: HashSet<String>) {
        self.drained.retain(|id| draining.contains(id));
        self.draining = draining;
    }

    pub fn set_drained(&mut self, drained: HashSet<String>) {
        self.drained = drained;
    }

    pub fn is_draining(&self, id: &str) -> bool {
        self.draining.contains(id)
    }

    /// `in-service`, `decommissioning` or `decommissioned`.
    pub fn admin_state(&self, id: &str) -> &'static str {
        if self.drained.contains(id) {
            "decommissioned"
        } else if self.draining.contains(id) {
            "decommissioning"
        } else {
            "in-service"
        }
    }

    pub fn queue(&mut self, id: &str, cmd: DatanodeCommand) {
        if let Some(s) = self.nodes.get_mut(id) {
            s.pending.push(cmd);
        }
    }
}
