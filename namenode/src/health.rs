//! Operator views of the filesystem's health: `fsck` (every file under a
//! path with each block's good and corrupt replicas) and the datanode
//! report (`dfs admin report`). Read-only.

use rfs_proto::namenode::{
    DatanodeReportEntry, DatanodeReportResponse, FsckBlock, FsckFile, FsckResponse,
};

use crate::error::Result;
use crate::state::{extended, readable_replicas, State};

/// Every file under `path` (or `path` itself) with its blocks' health.
pub fn fsck(state: &State, path: &str) -> Result<FsckResponse> {
    let root = state.ns.get(path)?;
    let inodes = state.ns.subtree(&root)?;
    let mut out = FsckResponse::default();
    let map = state.blocks();
    let reg = state.registry();
    out.live_datanodes = reg.counts().0;
    for inode in inodes {
        let Some(f) = &inode.file else {
            out.directories += 1;
            continue;
        };
        let mut file = FsckFile {
            path: state.ns.path_of(&inode)?,
            length: f.length(),
            replication: f.replication,
            under_construction: f.writer.is_some(),
            blocks: Vec::with_capacity(f.blocks.len()),
        };
        for b in f.readable_blocks() {
            let (live, corrupt) = match map.get(b.id) {
                Some(info) => (
                    readable_replicas(info, b.gen_stamp, &reg)
                        .into_iter()
                        .filter(|n| info.is_replica(n))
                        .map(str::to_string)
                        .collect::<Vec<_>>(),
                    info.corrupt_count() as u32,
                ),
                None => (Vec::new(), 0),
            };
            let locations = live
                .iter()
                .filter_map(|n| reg.get(n))
                .map(|s| format!("{}:{}", s.info.ip, s.info.data_port))
                .collect();
            file.blocks.push(FsckBlock {
                block: Some(extended(&b)),
                live_replicas: live.len() as u32,
                corrupt_replicas: corrupt,
                locations,
            });
        }
        out.files.push(file);
    }
    Ok(out)
}

/// Every datanode this namenode knows, live or dead.
pub fn datanode_report(state: &State) -> DatanodeReportResponse {
    let map = state.blocks();
    let held = map.replica_counts();
    let reg = state.registry();
    let mut datanodes: Vec<DatanodeReportEntry> = reg
        .all()
        .map(|s| DatanodeReportEntry {
            info: Some(s.info.clone()),
            live: reg.is_live(&s.info.datanode_id),
            last_contact_ms: s.last_seen.elapsed().as_millis() as u64,
            failed_volumes: s.failed_volumes,
            blocks: held.get(&*s.info.datanode_id).copied().unwrap_or(0),
            admin_state: reg.admin_state(&s.info.datanode_id).to_string(),
        })
        .collect();
    datanodes.sort_by(|a, b| {
        let key = |e: &DatanodeReportEntry| {
            e.info
                .as_ref()
                .map(|i| (i.ip.clone(), i.data_port))
                .unwrap_or_default()
        };
        (!a.live, key(a)).cmp(&(!b.live, key(b)))
    });
    DatanodeReportResponse { datanodes }
}
