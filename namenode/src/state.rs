//! What the services share: the raft group, the namespace, and the
//! in-memory maps (block map, datanode registry, lease clocks), which each
//! member rebuilds from datanode reports rather than replicating.
//! Locks are std mutexes held for short, non-async sections only. When both
//! are needed, take the block map before the registry (never the reverse),
//! so two such sections cannot deadlock.

use std::collections::HashSet;
use std::sync::{Mutex, MutexGuard};

use rfs_proto::common::{DatanodeInfo, ExtendedBlock, LocatedBlock};
use rfs_proto::datanode::{datanode_command, DatanodeCommand, InvalidateBlocks};
use rfs_proto::namenode::{FileStatus, FileType};

use crate::blockmap::{BlockInfo, BlockMap};
use crate::config::Config;
use crate::datanodes::Registry;
use crate::leases::Leases;
use crate::namespace::{BlockMeta, FileMeta, FileRef, Inode, Namespace};
use crate::raft::RaftHandle;

pub struct State {
    pub config: Config,
    pub raft: RaftHandle,
    pub ns: Namespace,
    pub registry: Mutex<Registry>,
    pub blocks: Mutex<BlockMap>,
    pub leases: Mutex<Leases>,
    /// Inodes of files that may be under construction, kept by the leader
    /// for lease recovery (filled from the namespace when it starts to
    /// lead, added to by `create`, pruned as files turn out closed), so
    /// that finding expired leases never scans the whole namespace.
    pub under_construction: Mutex<HashSet<u64>>,
}

impl State {
    pub fn new(config: Config, raft: RaftHandle, ns: Namespace) -> State {
        State {
            registry: Mutex::new(Registry::new(config.datanode_dead())),
            leases: Mutex::new(Leases::new(
                config.lease_soft_limit(),
                config.lease_hard_limit(),
            )),
            blocks: Mutex::new(BlockMap::default()),
            under_construction: Mutex::new(HashSet::new()),
            config,
            raft,
            ns,
        }
    }

    pub fn registry(&self) -> MutexGuard<'_, Registry> {
        self.registry.lock().expect("registry lock")
    }
    pub fn blocks(&self) -> MutexGuard<'_, BlockMap> {
        self.blocks.lock().expect("block map lock")
    }
    pub fn leases(&self) -> MutexGuard<'_, Leases> {
        self.leases.lock().expect("lease lock")
    }
    pub fn under_construction(&self) -> MutexGuard<'_, HashSet<u64>> {
        self.under_construction
            .lock()
            .expect("under-construction lock")
    }

    /// Forgets deleted blocks and asks their datanodes to delete replicas.
    pub fn invalidate(&self, blocks: &[BlockMeta]) {
        let mut per_node: std::collections::HashMap<String, Vec<ExtendedBlock>> =
            Default::default();
        {
            let mut map = self.blocks();
            for b in blocks {
                for node in map.remove_block(b.id) {
                    per_node.entry(node).or_default().push(extended(b));
                }
            }
        }
        let mut reg = self.registry();
        for (node, blocks) in per_node {
            reg.queue(&node, invalidate_command(blocks));
        }
    }

    /// On becoming leader: the block map was filled while following, from
    /// reports the namespace may not have caught up with. Replicas of
    /// blocks the (now complete) namespace does not hold, or holds with
    /// another generation stamp, are dropped and their datanodes told to
    /// delete them.
    pub fn reconcile_block_map(&self) -> crate::error::Result<()> {
        let ids: Vec<(u64, u64)> = self.blocks().gen_stamps().collect();
        let mut stale = Vec::new();
        let mut current = Vec::new();
        for (id, gen_stamp) in ids {
            if self.ns.block_meta(id)?.map(|m| m.gen_stamp) != Some(gen_stamp) {
                stale.push(BlockMeta {
                    id,
                    gen_stamp,
                    len: 0,
                });
            } else {
                current.push(id);
            }
        }
        self.blocks().settle(&current);
        if !stale.is_empty() {
            tracing::info!(
                "new leader: {} reported blocks are not (or no longer) in the namespace; deleting them",
                stale.len()
            );
        }
        self.invalidate(&stale);
        Ok(())
    }

    /// Where readers should go for `b`: live good replicas, local first;
    /// when every replica is marked corrupt, all the live ones, flagged
    /// `corrupt` (HDFS `createLocatedBlock`): the client tries each and
    /// fails at once if all fail, rather than waiting for locations that
    /// will not come.
    pub fn located(&self, b: &BlockMeta, offset: u64, client_host: &str) -> LocatedBlock {
        let map = self.blocks();
        let reg = self.registry();
        let (ids, corrupt) = match map.get(b.id) {
            Some(info) => {
                let ids = readable_replicas(info, b.gen_stamp, &reg);
                if ids.is_empty() && info.corrupt_count() > 0 {
                    let marked = info
                        .corrupt()
                        .filter(|n| info.gen_stamp == b.gen_stamp && reg.is_live(n))
                        .collect();
                    (marked, true)
                } else {
                    (ids, false)
                }
            }
            None => (Vec::new(), false),
        };
        let mut locations: Vec<DatanodeInfo> = ids
            .into_iter()
            .filter_map(|id| reg.get(id).map(|s| s.info.clone()))
            .collect();
        locations.sort_by_key(|d| !crate::placement::is_local(d, client_host));
        LocatedBlock {
            block: Some(extended(b)),
            offset,
            locations,
            corrupt,
        }
    }
}

/// Datanodes a reader may use for a block with generation stamp
/// `gen_stamp`: live, non-corrupt replicas that were reported; until any
/// is reported, the live targets chosen at `add_block` (a file read right
/// after it was closed, before the datanodes' reports arrive).
pub fn readable_replicas<'a>(info: BlockInfo<'a>, gen_stamp: u64, reg: &Registry) -> Vec<&'a str> {
    if info.gen_stamp != gen_stamp {
        return Vec::new();
    }
    let reported: Vec<&str> = info.replicas().filter(|n| reg.is_live(n)).collect();
    if !reported.is_empty() {
        return reported;
    }
    info.expected()
        .filter(|n| reg.is_live(n) && !info.is_corrupt(n))
        .collect()
}

pub fn extended(b: &BlockMeta) -> ExtendedBlock {
    ExtendedBlock {
        block_id: b.id,
        generation_stamp: b.gen_stamp,
        num_bytes: b.len,
    }
}

pub fn invalidate_command(blocks: Vec<ExtendedBlock>) -> DatanodeCommand {
    DatanodeCommand {
        command: Some(datanode_command::Command::Invalidate(InvalidateBlocks {
            blocks,
        })),
        ..Default::default()
    }
}

/// The status of `inode` at `path`, with the entry count of a directory.
pub fn status_with_children(
    ns: &Namespace,
    path: String,
    inode: &Inode,
) -> crate::error::Result<FileStatus> {
    let mut st = file_status(path, inode);
    if inode.is_dir() {
        st.children = ns.child_count(inode.id)?;
    }
    Ok(st)
}

/// The status of `inode` at `path` (a directory's `children` left 0).
pub fn file_status(path: String, inode: &Inode) -> FileStatus {
    let (file_type, length, replication, block_size, writer) =
        type_fields(inode.file.as_ref().map(FileMeta::as_ref));
    FileStatus {
        path,
        file_type: file_type as i32,
        length,
        owner: inode.owner.clone(),
        group: inode.group.clone(),
        mode: inode.mode,
        mtime_ms: inode.mtime_ms,
        atime_ms: inode.atime_ms,
        replication,
        block_size,
        inode_id: inode.id,
        under_construction: writer.is_some(),
        writer: writer.unwrap_or_default(),
        children: 0,
    }
}

/// What a status says of an inode as a file (`file`) or a directory: its type,
/// readable length, replication, block size and writer (all 0 or `None`
/// for a directory).
pub fn type_fields(file: Option<FileRef<'_>>) -> (FileType, u64, u32, u64, Option<String>) {
    match file {
        Some(f) => (
            FileType::File,
            f.length(),
            f.replication,
            f.block_size,
            f.writer.map(str::to_string),
        ),
        None => (FileType::Directory, 0, 0, 0, None),
    }
}
