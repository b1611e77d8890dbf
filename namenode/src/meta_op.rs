//! Typed metadata mutations. Each carries every non-deterministic input
//! (times, chosen targets, lease decisions) so that applying the same
//! sequence of ops always yields the same state — the property that lets a
//! WAL (and later the raft log) rebuild the namespace.

use serde::{Deserialize, Serialize};

use crate::namespace::{BlockMeta, Inode};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MetaOp {
    Mkdirs {
        path: String,
        create_parent: bool,
        owner: String,
        group: String,
        mode: u32,
        now_ms: u64,
    },
    Create {
        path: String,
        client_id: String,
        overwrite: bool,
        replication: u32,
        block_size: u64,
        mode: u32,
        create_parent: bool,
        owner: String,
        group: String,
        now_ms: u64,
        /// A writer whose lease expired, whose file this create may replace.
        take_over_from: Option<String>,
    },
    AddBlock {
        path: String,
        client_id: String,
        previous: Option<BlockMeta>,
        now_ms: u64,
    },
    Complete {
        path: String,
        client_id: String,
        last: Option<BlockMeta>,
        now_ms: u64,
    },
    AbandonBlock {
        path: String,
        client_id: String,
        block_id: u64,
    },
    /// Pipeline recovery: the writer's last block `block_id`, now at
    /// `gen_stamp`, gets a fresh generation stamp.
    UpdatePipeline {
        path: String,
        client_id: String,
        block_id: u64,
        gen_stamp: u64,
    },
    Delete {
        path: String,
        recursive: bool,
        now_ms: u64,
    },
    Rename {
        src: String,
        dst: String,
        now_ms: u64,
    },
    SetReplication {
        path: String,
        replication: u32,
    },
    /// Marks a datanode to be drained (or back in service). Replicated so
    /// that a new leader keeps draining it.
    Decommission {
        datanode_id: String,
        decommission: bool,
    },
    /// Drops retry-cache entries recorded before `before_ms` (proposed by
    /// the leader now and then, so every member forgets the same ones).
    ExpireRetryCache {
        before_ms: u64,
    },
}

/// Names one non-idempotent client call: a retry carries the same key and
/// gets the recorded result instead of applying again.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct CallKey {
    pub client: String,
    pub call: u64,
}

/// One raft log entry: an op, the call it answers (if the client named
/// it), and the leader's clock when proposed (retry-cache age).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Proposal {
    pub call: Option<CallKey>,
    pub now_ms: u64,
    pub op: MetaOp,
}

impl Proposal {
    pub fn new(op: MetaOp) -> Proposal {
        Proposal {
            call: None,
            now_ms: crate::clock::now_ms(),
            op,
        }
    }

    pub fn with_call(mut self, call: Option<CallKey>) -> Proposal {
        self.call = call;
        self
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MetaResult {
    Mkdirs {
        created: bool,
    },
    Created {
        inode: Inode,
        replaced_blocks: Vec<BlockMeta>,
    },
    BlockAdded {
        block: BlockMeta,
        offset: u64,
        replication: u32,
    },
    Completed {
        inode: Inode,
    },
    Abandoned,
    PipelineUpdated {
        block: BlockMeta,
        replication: u32,
    },
    Deleted {
        blocks: Vec<BlockMeta>,
    },
    Renamed {
        final_path: String,
    },
    ReplicationSet {
        changed: bool,
        blocks: Vec<BlockMeta>,
    },
    RetryCacheExpired {
        removed: u64,
    },
    DecommissionSet,
}
