//! Block placement: `replication` distinct live datanodes with room for a
//! block, the writer's own datanode first when there is one.

use rand::seq::SliceRandom;
use rfs_proto::common::DatanodeInfo;

use crate::datanodes::Registry;

/// Chooses targets; may return fewer than `replication` (even none).
pub fn choose(
    reg: &Registry,
    replication: usize,
    block_size: u64,
    client_host: &str,
    excluded: &[String],
) -> Vec<DatanodeInfo> {
    let mut candidates: Vec<&DatanodeInfo> = reg
        .live()
        .filter(|s| !excluded.contains(&s.info.datanode_id))
        // Before its first heartbeat a node's free space is unknown: allow it.
        .filter(|s| !s.reported || s.info.remaining >= block_size)
        .map(|s| &s.info)
        .collect();
    candidates.shuffle(&mut rand::thread_rng());
    // Stable sort keeps the shuffle among equals: local node first.
    candidates.sort_by_key(|d| !(d.ip == client_host || d.hostname == client_host));
    let local_first = candidates
        .first()
        .is_some_and(|d| d.ip == client_host || d.hostname == client_host);
    if local_first {
        // Only one writer-local replica: the rest spread (random order).
        let (first, rest) = candidates.split_at_mut(1);
        let _ = first;
        rest.shuffle(&mut rand::thread_rng());
    }
    candidates.into_iter().take(replication).cloned().collect()
}
