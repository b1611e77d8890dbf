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
        .filter(|s| !reg.is_draining(&s.info.datanode_id))
        // Before its first heartbeat a node's free space is unknown: allow it.
        .filter(|s| !s.reported || s.info.remaining >= block_size)
        .map(|s| &s.info)
        .collect();
    candidates.shuffle(&mut rand::thread_rng());
    // Stable sort: the writer's own node first, the rest in shuffled order.
    candidates.sort_by_key(|d| !is_local(d, client_host));
    candidates.into_iter().take(replication).cloned().collect()
}

/// Why [`choose`] found no target for a block of `block_size` bytes, in
/// the words a writer can act on.
pub fn why_none(reg: &Registry, block_size: u64, excluded: &[String]) -> String {
    let live: Vec<_> = reg.live().collect();
    let n = live.len();
    if n == 0 {
        return "no live datanodes".into();
    }
    let draining = live
        .iter()
        .filter(|s| reg.is_draining(&s.info.datanode_id))
        .count();
    if draining == n {
        return format!("all {n} live datanodes are decommissioning");
    }
    let excluded = live
        .iter()
        .filter(|s| excluded.contains(&s.info.datanode_id))
        .count();
    let full = live
        .iter()
        .filter(|s| s.reported && s.info.remaining < block_size)
        .count();
    let reasons: Vec<String> = [
        (draining, "decommissioning"),
        (excluded, "excluded by this writer after failing it"),
        (full, "without room for the block"),
    ]
    .iter()
    .filter(|(k, _)| *k > 0)
    .map(|(k, what)| format!("{k} {what}"))
    .collect();
    format!(
        "none of the {n} live datanodes can take a block of {block_size} bytes: {}",
        reasons.join(", ")
    )
}

/// Whether `d` runs on the client's host.
pub fn is_local(d: &DatanodeInfo, client_host: &str) -> bool {
    d.ip == client_host || d.hostname == client_host
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn node(id: &str, ip: &str) -> DatanodeInfo {
        DatanodeInfo {
            datanode_id: id.into(),
            hostname: ip.into(),
            ip: ip.into(),
            data_port: 1,
            ..Default::default()
        }
    }

    #[test]
    fn writer_local_first_never_full_never_excluded() {
        let mut reg = Registry::new(Duration::from_secs(60));
        for (id, ip) in [
            ("a", "10.0.0.1"),
            ("b", "10.0.0.2"),
            ("c", "10.0.0.3"),
            ("full", "10.0.0.4"),
        ] {
            let epoch = reg.register(node(id, ip), (0, 0)).expect("registers");
            let remaining = if id == "full" { 10 } else { 1 << 30 };
            let beat = rfs_proto::datanode::HeartbeatRequest {
                datanode_id: id.into(),
                epoch,
                storage: Some(rfs_proto::datanode::StorageReport {
                    capacity: 1 << 31,
                    used: 0,
                    remaining,
                    failed_volumes: 0,
                }),
                ..Default::default()
            };
            reg.heartbeat(&beat, true).expect("registered");
        }
        for _ in 0..20 {
            let t = choose(&reg, 3, 1 << 20, "10.0.0.2", &[]);
            let ids: Vec<_> = t.iter().map(|d| d.datanode_id.as_str()).collect();
            assert_eq!(ids.len(), 3);
            assert_eq!(ids[0], "b", "writer-local node first");
            assert!(
                !ids.contains(&"full"),
                "a node without room for a block is never chosen"
            );
        }
        let t = choose(&reg, 3, 1 << 20, "10.9.9.9", &["a".to_string()]);
        let ids: Vec<_> = t.iter().map(|d| d.datanode_id.as_str()).collect();
        assert_eq!(
            ids.len(),
            2,
            "fewer candidates than replication: take what there is"
        );
        assert!(!ids.contains(&"a") && !ids.contains(&"full"));
    }

    #[test]
    fn no_target_says_why() {
        let mut reg = Registry::new(Duration::from_secs(60));
        assert_eq!(why_none(&reg, 1, &[]), "no live datanodes");
        for (id, ip) in [("a", "10.0.0.1"), ("b", "10.0.0.2")] {
            reg.register(node(id, ip), (0, 0)).expect("registers");
        }
        reg.set_draining(["a".to_string(), "b".to_string()].into());
        assert!(choose(&reg, 3, 1, "", &[]).is_empty());
        assert_eq!(
            why_none(&reg, 1, &[]),
            "all 2 live datanodes are decommissioning"
        );
        reg.set_draining(["a".to_string()].into());
        assert_eq!(
            why_none(&reg, 1, &["b".to_string()]),
            "none of the 2 live datanodes can take a block of 1 bytes: \
             1 decommissioning, 1 excluded by this writer after failing it"
        );
    }

    #[test]
    fn dead_nodes_are_never_chosen() {
        let mut reg = Registry::new(Duration::from_millis(1));
        reg.register(node("a", "10.0.0.1"), (0, 0))
            .expect("registers");
        std::thread::sleep(Duration::from_millis(5));
        assert!(choose(&reg, 3, 1, "10.0.0.1", &[]).is_empty());
    }
}
