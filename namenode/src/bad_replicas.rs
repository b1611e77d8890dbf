//! Bad replicas: who may call a replica corrupt, and when a corrupt one
//! may be deleted (HDFS `BlockManager.markBlockAsCorrupt` and
//! `invalidateCorruptReplicas`).
//!
//! | report                              | what the leader does                             |
//! |-------------------------------------|--------------------------------------------------|
//! | a client's `ReportBadBlocks`        | [`suspect`]: sends that datanode VerifyReplica; marks nothing |
//! | the datanode's own `ReportBadReplica` | [`condemn`]: marks the replica corrupt          |
//!
//! A client's word alone never marks a replica: a buggy client (or one
//! whose own memory flipped a bit) could otherwise have every replica of a
//! block marked and the good ones deleted. The datanode re-reads the
//! replica against its stored checksums first (its scanner, ahead of the
//! paced pass), and only its verdict counts.
//!
//! A marked replica is never offered to readers while a good one is, and
//! is deleted only once the block has at least its file's replication of
//! live replicas not marked corrupt, not counting draining nodes
//! ([`deletable`]). Until then it stays on its node: the replication
//! monitor copies the block from a good replica, and the pass that finds
//! the count reached deletes the marked ones. So a block whose every
//! replica is marked keeps them all, and readers are offered all of them
//! flagged corrupt (`State::located`).
//!
//! Not here: the block map's storage of the marks (`blockmap.rs`), and
//! what readers are offered (`state.rs`).

use rfs_proto::common::ExtendedBlock;
use rfs_proto::datanode::{datanode_command, DatanodeCommand, VerifyReplica};

use crate::blockmap::BlockInfo;
use crate::datanodes::Registry;
use crate::error::Result;
use crate::namespace::BlockMeta;
use crate::state::{invalidate_command, State};

/// A client says its read of `node`'s replica of `b` failed a checksum:
/// asks `node` to verify that replica now. A report for a block the
/// namespace no longer has, an older generation, or a replica already
/// marked is moot.
pub fn suspect(state: &State, b: &ExtendedBlock, node: &str, reason: &str) -> Result<()> {
    let Some((meta, _)) = current(state, b)? else {
        return Ok(());
    };
    if state
        .blocks()
        .get(meta.id)
        .is_some_and(|i| i.is_corrupt(node))
    {
        return Ok(());
    }
    tracing::info!(
        "a client suspects the replica of block {} on datanode {node} ({reason}); asking it to verify",
        b.block_id
    );
    metrics::counter!("rfs_namenode_suspect_replicas_total").increment(1);
    state.registry().queue(node, verify_command(*b));
    Ok(())
}

/// `node` verified its replica of `b` and found it bad: marks it corrupt,
/// and deletes it at once if the block already has enough good replicas
/// (otherwise the replication monitor does, once it has).
pub fn condemn(state: &State, b: &ExtendedBlock, node: &str, reason: &str) -> Result<()> {
    let Some((meta, replication)) = current(state, b)? else {
        return Ok(());
    };
    tracing::warn!(
        "replica of block {} on datanode {node} reported bad: {reason}",
        b.block_id
    );
    metrics::counter!("rfs_namenode_bad_replicas_total").increment(1);
    let mut map = state.blocks();
    map.mark_corrupt(meta.id, meta.gen_stamp, node);
    let Some(info) = map.get(meta.id) else {
        return Ok(());
    };
    let mut reg = state.registry();
    let doomed: Vec<String> = deletable(info, &meta, replication as usize, &reg)
        .map(str::to_string)
        .collect();
    if doomed.is_empty() {
        tracing::info!(
            "block {} has too few good replicas to delete its corrupt ones yet",
            meta.id
        );
    }
    for n in doomed {
        map.remove_replica(meta.id, &n);
        reg.queue(&n, invalidate_command(vec![*b]));
    }
    Ok(())
}

/// The corrupt replicas of block `b` that may be deleted now: all of them
/// once the block has `wanted` live, good replicas at its generation stamp
/// on nodes that are not draining, none before.
pub fn deletable<'a>(
    info: BlockInfo<'a>,
    b: &BlockMeta,
    wanted: usize,
    reg: &Registry,
) -> impl Iterator<Item = &'a str> {
    let good = info
        .replicas()
        .filter(|n| reg.is_live(n) && !reg.is_draining(n))
        .count();
    let covered = info.gen_stamp == b.gen_stamp && info.corrupt_count() > 0 && good >= wanted;
    info.corrupt().filter(move |_| covered)
}

/// The block `b` names, as the namespace has it, with its file's
/// replication; `None` (logged) when the report is moot: no such block any
/// more, or an older generation stamp.
fn current(state: &State, b: &ExtendedBlock) -> Result<Option<(BlockMeta, u32)>> {
    let file = state.ns.block_owner(b.block_id)?.and_then(|i| i.file);
    let Some((meta, replication)) = file.and_then(|f| {
        let replication = f.replication;
        f.blocks
            .into_iter()
            .find(|m| m.id == b.block_id)
            .map(|m| (m, replication))
    }) else {
        tracing::info!(
            "bad replica report for deleted block {} ignored",
            b.block_id
        );
        return Ok(None);
    };
    if meta.gen_stamp != b.generation_stamp {
        tracing::info!(
            "bad replica report for block {} with stale generation stamp {} ignored",
            b.block_id,
            b.generation_stamp
        );
        return Ok(None);
    }
    Ok(Some((meta, replication)))
}

fn verify_command(block: ExtendedBlock) -> DatanodeCommand {
    DatanodeCommand {
        command: Some(datanode_command::Command::Verify(VerifyReplica {
            block: Some(block),
        })),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use rfs_proto::common::DatanodeInfo;

    use super::*;
    use crate::blockmap::BlockMap;

    fn registry(live: &[&str]) -> Registry {
        registry_dead_after(live, Duration::from_secs(60))
    }

    fn registry_dead_after(live: &[&str], dead_after: Duration) -> Registry {
        let mut reg = Registry::new(dead_after);
        for id in live {
            let info = DatanodeInfo {
                datanode_id: id.to_string(),
                ..Default::default()
            };
            reg.register(info, (0, 0)).expect("registers");
        }
        reg
    }

    fn doomed(map: &BlockMap, b: &BlockMeta, wanted: usize, reg: &Registry) -> Vec<String> {
        let mut v: Vec<String> = deletable(map.get(b.id).unwrap(), b, wanted, reg)
            .map(str::to_string)
            .collect();
        v.sort();
        v
    }

    #[test]
    fn corrupt_replicas_go_only_once_the_good_ones_reach_the_replication() {
        let b = BlockMeta {
            id: 1,
            gen_stamp: 1000,
            len: 10,
        };
        let mut map = BlockMap::default();
        for n in ["a", "b", "c"] {
            map.add_replica(1, 1000, n);
        }
        let mut reg = registry(&["a", "b", "c", "d", "e"]);
        map.mark_corrupt(1, 1000, "a");
        map.mark_corrupt(1, 1000, "b");
        assert!(doomed(&map, &b, 3, &reg).is_empty(), "one good of three");
        assert!(doomed(&map, &b, 1, &reg) == ["a", "b"], "one good of one");

        map.add_replica(1, 1000, "d");
        assert!(doomed(&map, &b, 3, &reg).is_empty(), "two good of three");
        // A draining node's replica serves, but does not count.
        map.add_replica(1, 1000, "e");
        reg.set_draining(["e".to_string()].into());
        assert!(doomed(&map, &b, 3, &reg).is_empty(), "e is draining");
        reg.set_draining(Default::default());
        assert_eq!(doomed(&map, &b, 3, &reg), ["a", "b"]);
        // Dead nodes' replicas do not count either.
        let all_dead = registry_dead_after(&["a", "b", "c", "d", "e"], Duration::ZERO);
        assert!(doomed(&map, &b, 1, &all_dead).is_empty());

        // Nothing to delete for another generation of the block.
        let older = BlockMeta {
            gen_stamp: 999,
            ..b
        };
        assert!(doomed(&map, &older, 3, &reg).is_empty());
    }

    #[test]
    fn a_block_without_corrupt_replicas_has_nothing_to_delete() {
        let b = BlockMeta {
            id: 2,
            gen_stamp: 5,
            len: 1,
        };
        let mut map = BlockMap::default();
        map.add_replica(2, 5, "a");
        assert!(doomed(&map, &b, 1, &registry(&["a"])).is_empty());
    }
}
