//! The datanode registry: who is registered (under which epoch), their
//! storage figures from heartbeats, liveness, and the commands queued for
//! each.
//!
//! **Registrations.** Each Register starts a new *epoch* for its datanode
//! id (a random number, so an epoch of an earlier namenode process never
//! matches); the node's heartbeats and reports carry it, and one with any
//! other epoch is answered "re-register". While an id's current
//! registration is live, a Register for it from another data address is
//! refused: a stale process, or a node started on a copy of another's
//! data dir, must not take over the id (and the reads sent to it). From the
//! same address it is a restart, accepted.
//!
//! **Commands.** Commands queued for a node are numbered and sent with
//! every heartbeat reply until a heartbeat says the node received them
//! (`last_command_seq`), so a lost reply loses no command. A Register
//! that names the previous epoch drops those it says it received; the rest
//! carry over to the new registration.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use rfs_proto::common::DatanodeInfo;
use rfs_proto::datanode::{DatanodeCommand, HeartbeatRequest};

use crate::error::NamenodeError;

pub struct DatanodeState {
    pub info: DatanodeInfo,
    /// The current registration (see the module doc).
    pub epoch: u64,
    pub last_seen: Instant,
    /// Storage figures are known once a heartbeat arrived.
    pub reported: bool,
    /// Data directories the node has taken out of service.
    pub failed_volumes: u32,
    /// Commands not yet known received, in sequence order.
    pending: Vec<DatanodeCommand>,
    /// The sequence number the next queued command gets.
    next_seq: u64,
    /// Unfinished replicas (block id, stamp) the last full report held
    /// that the leader found stale: deleted if the next report holds them
    /// still.
    stale_rbw: HashSet<(u64, u64)>,
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

    /// Registers `info` under a new epoch, which it returns.
    /// `previous` is the node's last (epoch, received command seq) here:
    /// commands it received are dropped. A live registration of the same
    /// id from another data address is `DatanodeIdInUse`.
    pub fn register(
        &mut self,
        info: DatanodeInfo,
        previous: (u64, u64),
    ) -> Result<u64, NamenodeError> {
        let id = info.datanode_id.clone();
        if let Some(old) = self.nodes.get(&id) {
            let (live, from) = (data_address(&old.info), data_address(&info));
            if live != from && self.is_live(&id) {
                return Err(NamenodeError::DatanodeIdInUse {
                    datanode: id,
                    live,
                    from,
                });
            }
        }
        let mut epoch = 0;
        // 0 means "no registration"; the old epoch must go stale.
        while epoch == 0 || self.nodes.get(&id).is_some_and(|old| old.epoch == epoch) {
            epoch = rand::random();
        }
        let (mut pending, mut next_seq, mut stale_rbw) = (Vec::new(), 1, HashSet::new());
        if let Some(old) = self.nodes.remove(&id) {
            pending = old.pending;
            if previous.0 == old.epoch {
                pending.retain(|c| c.seq > previous.1);
            }
            next_seq = old.next_seq;
            stale_rbw = old.stale_rbw;
        }
        self.nodes.insert(
            id,
            DatanodeState {
                info,
                epoch,
                last_seen: Instant::now(),
                reported: false,
                failed_volumes: 0,
                pending,
                next_seq,
                stale_rbw,
            },
        );
        Ok(epoch)
    }

    /// Records a heartbeat; returns the commands to send (every queued
    /// one the node has not said it received), or `None` if the node must
    /// re-register (unknown id or another epoch). A member that does not
    /// lead sends no data commands, and what it queued while it led is
    /// stale: `leading` false drops them.
    pub fn heartbeat(
        &mut self,
        r: &HeartbeatRequest,
        leading: bool,
    ) -> Option<Vec<DatanodeCommand>> {
        let s = self
            .nodes
            .get_mut(&r.datanode_id)
            .filter(|s| s.epoch == r.epoch)?;
        let storage = r.storage.unwrap_or_default();
        s.last_seen = Instant::now();
        s.reported = true;
        s.info.capacity = storage.capacity;
        s.info.used = storage.used;
        s.info.remaining = storage.remaining;
        s.failed_volumes = storage.failed_volumes;
        s.pending.retain(|c| c.seq > r.last_command_seq);
        if !leading {
            s.pending.clear();
        }
        Some(s.pending.clone())
    }

    /// Records a sign of life from `id` under `epoch`; false if the node
    /// must re-register.
    pub fn touch(&mut self, id: &str, epoch: u64) -> bool {
        match self.nodes.get_mut(id) {
            Some(s) if s.epoch == epoch => {
                s.last_seen = Instant::now();
                true
            }
            _ => false,
        }
    }

    /// Replaces the stale unfinished replicas remembered from `id`'s last
    /// full report with `now`'s; returns the ones remembered.
    pub fn swap_stale_rbw(&mut self, id: &str, now: HashSet<(u64, u64)>) -> HashSet<(u64, u64)> {
        match self.nodes.get_mut(id) {
            Some(s) => std::mem::replace(&mut s.stale_rbw, now),
            None => HashSet::new(),
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

    /// Queues `cmd` for `id` under the next sequence number.
    pub fn queue(&mut self, id: &str, mut cmd: DatanodeCommand) {
        if let Some(s) = self.nodes.get_mut(id) {
            cmd.seq = s.next_seq;
            s.next_seq += 1;
            s.pending.push(cmd);
        }
    }
}

/// `ip:port` of a datanode's data address, as registrations compare them.
fn data_address(info: &DatanodeInfo) -> String {
    format!("{}:{}", info.ip, info.data_port)
}
