//! Typed metadata mutations. Each carries every non-deterministic input
//! (times, chosen targets, lease decisions) so that applying the same
//! sequence of ops always yields the same state — the property that lets a
//! WAL (and later the raft log) rebuild the namespace.
//!
//! The raft log and the retry cache hold ops and results bincode-encoded,
//! where a variant is its position: new variants go at the end and a
//! variant's fields never change, so that entries written by earlier
//! versions still apply (a new option is a new variant, as
//! [`MetaOp::RenameOverwrite`] beside [`MetaOp::Rename`]).

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
    /// Pipeline recovery without an acknowledged length. Written by
    /// earlier versions (and still applied from their logs, recording no
    /// length); the service now proposes [`MetaOp::RecoverPipeline`].
    UpdatePipeline {
        path: String,
        client_id: String,
        block_id: u64,
        gen_stamp: u64,
    },
    /// Lease recovery, proposed by the leader once `holder`'s lease on
    /// file `inode_id` passed the hard limit (or, `holder` being
    /// [`crate::leases::RECOVERY_HOLDER`], to restart a recovery that never
    /// committed). A file with nothing to recover is closed at once: no
    /// blocks, or `drop_last` (the leader knows no datanode that could
    /// hold its empty last block; the block is dropped). Otherwise the last
    /// block gets a fresh generation stamp, so the dead writer's pipeline
    /// cannot go on, and the file is held by the recovery holder until
    /// [`MetaOp::CommitBlockSync`] closes it.
    RecoverLease {
        inode_id: u64,
        holder: String,
        drop_last: bool,
        now_ms: u64,
    },
    /// A lease recovery's outcome, from its primary datanode: the file's
    /// last block is `block` (the recovery's generation stamp, the length
    /// every kept replica was cut to), and the file is closed. With
    /// `delete_block`, no datanode held a replica: the block is dropped.
    /// Refused unless the file is still held by the recovery holder at that
    /// generation stamp; a repeat after it closed is answered the same.
    CommitBlockSync {
        block: BlockMeta,
        delete_block: bool,
        now_ms: u64,
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
    /// Drops every retry-cache entry recorded before `before_ms` in one
    /// op. Written by earlier versions (and still applied from their
    /// logs); the leader now proposes [`MetaOp::SweepRetryCache`] steps,
    /// because one pass over the whole cache stalled every member's raft
    /// thread and grew its memory by the size of the batch.
    ExpireRetryCache {
        before_ms: u64,
    },
    /// One bounded step of the leader's retry-cache sweep: looks at the
    /// next `limit` entries after key `after` (empty: from the first) and
    /// drops those recorded before `before_ms`. Every member applies it to
    /// the same state, so all forget the same entries; the result says
    /// where the next step starts.
    SweepRetryCache {
        before_ms: u64,
        after: Vec<u8>,
        limit: u32,
    },
    /// HDFS `rename2` with `OVERWRITE`: `dst` is the final path, never a
    /// directory to move into. A closed file at `dst` (when `src` is a
    /// file) or an empty directory (when `src` is one) is replaced in the
    /// same entry, so `dst` is never missing; the replaced file's blocks
    /// are freed as by a delete.
    RenameOverwrite {
        src: String,
        dst: String,
        now_ms: u64,
    },
    /// Pipeline recovery: the writer's last block `block_id`, now at
    /// `gen_stamp`, gets a fresh generation stamp, and `acked_len` (the
    /// bytes the whole old pipeline acknowledged) is recorded as its
    /// length. Datanodes cut replicas only to a stamp and length recorded
    /// here (`recovery_check.rs`); readers never see this length while the
    /// file is open ([`crate::namespace::FileMeta::length`]). After the
    /// variants of earlier versions, so that their logs keep decoding.
    RecoverPipeline {
        path: String,
        client_id: String,
        block_id: u64,
        gen_stamp: u64,
        acked_len: u64,
    },
    /// `create` (a [`MetaOp::Create`]; anything else is refused) and the
    /// new file's first block, added as [`MetaOp::AddBlock`] adds it, in
    /// one entry: no crash or failover leaves the file without the block
    /// its writer was given, and a retry of the call gets both back from
    /// the retry cache. Where the block goes (its targets) is the leader's
    /// choice outside the log, as for `AddBlock`.
    CreateWithBlock {
        create: Box<MetaOp>,
    },
    /// Closes a file whose last block `block_id` was never written (an
    /// empty file created with its first block): drops that block as
    /// [`MetaOp::AbandonBlock`] would and completes as
    /// [`MetaOp::Complete`] with no last block, in one entry, so an empty
    /// file costs two entries as before create handed out blocks.
    CompleteDroppingBlock {
        path: String,
        client_id: String,
        block_id: u64,
        now_ms: u64,
    },
    /// [`MetaOp::Delete`], except that a subtree of more than `step`
    /// inodes is only unlinked (detached, in this one entry) and then
    /// freed by [`MetaOp::Reclaim`] steps; its blocks are deleted as they
    /// are freed. A new variant rather than a change of `Delete`, so that
    /// an old log replays as it applied.
    DeleteInSteps {
        path: String,
        recursive: bool,
        now_ms: u64,
        step: u32,
    },
    /// Frees at most `limit` inodes of the detached subtrees
    /// ([`crate::namespace::Namespace::reclaim_batch`]): proposed by the
    /// leader while any are left.
    Reclaim {
        limit: u32,
    },
}

/// Names one non-idempotent client call: a retry carries the same key and
/// gets the recorded result instead of applying again.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct CallKey {
    pub client: String,
    pub call: u64,
    /// Every call of `client` numbered below this was answered and is never
    /// sent again: apply forgets their results and refuses them
    /// ([`crate::namespace::retry_cache`]). 0 promises nothing.
    pub answered_below: u64,
}

/// One raft log entry: an op, the call it answers (if the client named
/// it), and the leader's clock when proposed (retry-cache age).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Proposal {
    pub call: Option<CallKey>,
    pub now_ms: u64,
    pub op: MetaOp,
}

/// The first byte of a log entry whose call carries `answered_below`. An
/// entry of earlier versions starts with its `Option<CallKey>` tag, 0 or 1.
const WITH_ANSWERED_BELOW: u8 = 2;

/// A log entry as versions before `answered_below` wrote it.
#[derive(Deserialize)]
struct ProposalWithoutAnswered {
    call: Option<(String, u64)>,
    now_ms: u64,
    op: MetaOp,
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

    /// The raft log entry's bytes.
    pub fn encode(&self) -> bincode::Result<Vec<u8>> {
        let mut out = vec![WITH_ANSWERED_BELOW];
        bincode::serialize_into(&mut out, self)?;
        Ok(out)
    }

    /// Reads an entry [`Proposal::encode`] wrote, or one of a version
    /// before it (whose calls promise nothing about earlier ones).
    pub fn decode(data: &[u8]) -> bincode::Result<Proposal> {
        if let Some((&WITH_ANSWERED_BELOW, rest)) = data.split_first() {
            return bincode::deserialize(rest);
        }
        let old: ProposalWithoutAnswered = bincode::deserialize(data)?;
        Ok(Proposal {
            call: old.call.map(|(client, call)| CallKey {
                client,
                call,
                answered_below: 0,
            }),
            now_ms: old.now_ms,
            op: old.op,
        })
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
    /// A lease recovery began: `block` (the file's last) now carries the
    /// recovery's generation stamp.
    LeaseRecoveryStarted {
        inode: Inode,
        block: BlockMeta,
        replication: u32,
    },
    /// A lease recovery closed the file; `dropped` is the last block it
    /// removed, if any.
    LeaseRecovered {
        inode: Inode,
        dropped: Option<BlockMeta>,
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
    /// A sweep step: entries dropped, and the key the next step starts
    /// after (`None`: the sweep reached the end).
    RetryCacheSwept {
        removed: u64,
        next: Option<Vec<u8>>,
    },
    /// A [`MetaOp::RenameOverwrite`]: the blocks of the file it replaced,
    /// if any, to delete from the datanodes.
    RenamedOverwriting {
        final_path: String,
        replaced_blocks: Vec<BlockMeta>,
    },
    /// A [`MetaOp::CreateWithBlock`]: the new file (holding `block`), the
    /// blocks of the file it replaced, if any, and its first block (at
    /// offset 0).
    CreatedWithBlock {
        inode: Inode,
        replaced_blocks: Vec<BlockMeta>,
        block: BlockMeta,
    },
    /// A [`MetaOp::Reclaim`] step: inodes freed, their blocks (to delete
    /// from the datanodes), and whether detached subtrees are left.
    Reclaimed {
        freed: u64,
        blocks: Vec<BlockMeta>,
        more: bool,
    },
    /// Not a call's result: what a client's session entry in the retry
    /// cache holds, the number below which every call of the client was
    /// answered ([`crate::namespace::retry_cache`]).
    CallsAnswered {
        below: u64,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A rename and its result as versions before `RenameOverwrite`
    /// logged them (bincode: u32 LE variant index, u64 LE lengths and
    /// integers). Both must still decode to the same values: a log entry
    /// or retry-cache entry from such a version applies unchanged.
    #[test]
    fn a_rename_logged_before_overwrite_existed_still_decodes() {
        #[rustfmt::skip]
        let logged: &[u8] = &[
            1,                                  // call: Some
            1, 0, 0, 0, 0, 0, 0, 0, b'c',       //   client "c"
            7, 0, 0, 0, 0, 0, 0, 0,             //   call 7
            5, 0, 0, 0, 0, 0, 0, 0,             // now_ms 5
            9, 0, 0, 0,                         // op: MetaOp::Rename
            2, 0, 0, 0, 0, 0, 0, 0, b'/', b'a', //   src "/a"
            2, 0, 0, 0, 0, 0, 0, 0, b'/', b'b', //   dst "/b"
            9, 0, 0, 0, 0, 0, 0, 0,             //   now_ms 9
        ];
        let mut proposal = Proposal {
            call: Some(CallKey {
                client: "c".into(),
                call: 7,
                answered_below: 0,
            }),
            now_ms: 5,
            op: MetaOp::Rename {
                src: "/a".into(),
                dst: "/b".into(),
                now_ms: 9,
            },
        };
        assert_eq!(Proposal::decode(logged).unwrap(), proposal);
        // Today's entries: a marker, then the call with `answered_below`
        // after its number.
        proposal.call.as_mut().unwrap().answered_below = 6;
        let encoded = proposal.encode().unwrap();
        assert_eq!(encoded[..1], [WITH_ANSWERED_BELOW]);
        assert_eq!(encoded[1..19], logged[..18]);
        assert_eq!(encoded[19..27], 6u64.to_le_bytes());
        assert_eq!(encoded[27..], logged[18..]);
        assert_eq!(Proposal::decode(&encoded).unwrap(), proposal);
        let without_call = Proposal {
            call: None,
            ..proposal
        };
        let encoded = without_call.encode().unwrap();
        assert_eq!(Proposal::decode(&encoded).unwrap(), without_call);
        assert_eq!(Proposal::decode(&encoded[1..]).unwrap(), without_call);

        #[rustfmt::skip]
        let recorded: &[u8] = &[
            9, 0, 0, 0,                         // MetaResult::Renamed
            2, 0, 0, 0, 0, 0, 0, 0, b'/', b'b', //   final_path "/b"
        ];
        let result = MetaResult::Renamed {
            final_path: "/b".into(),
        };
        assert_eq!(
            bincode::deserialize::<MetaResult>(recorded).unwrap(),
            result
        );
        assert_eq!(bincode::serialize(&result).unwrap(), recorded);
    }

    /// `CreateWithBlock` and its result came after every variant of the
    /// versions before them (16 ops, 15 results), and the op holds the
    /// create exactly as a `Create` entry logs it.
    #[test]
    fn a_create_with_its_block_is_a_new_variant_holding_a_logged_create() {
        let create = MetaOp::Create {
            path: "/f".into(),
            client_id: "c".into(),
            overwrite: false,
            replication: 3,
            block_size: 1 << 20,
            mode: 0o644,
            create_parent: true,
            owner: "u".into(),
            group: "g".into(),
            now_ms: 9,
            take_over_from: None,
        };
        let logged = bincode::serialize(&create).unwrap();
        let op = MetaOp::CreateWithBlock {
            create: Box::new(create),
        };
        let bytes = bincode::serialize(&op).unwrap();
        assert_eq!(bytes[..4], [16, 0, 0, 0]);
        assert_eq!(bytes[4..], logged[..]);
        assert_eq!(bincode::deserialize::<MetaOp>(&bytes).unwrap(), op);

        let block = BlockMeta {
            id: 1,
            gen_stamp: 2,
            len: 0,
        };
        let result = MetaResult::CreatedWithBlock {
            inode: Inode {
                id: 2,
                parent: 1,
                name: "f".into(),
                owner: "u".into(),
                group: "g".into(),
                mode: 0o644,
                mtime_ms: 9,
                atime_ms: 9,
                file: None,
            },
            replaced_blocks: Vec::new(),
            block,
        };
        let bytes = bincode::serialize(&result).unwrap();
        assert_eq!(bytes[..4], [15, 0, 0, 0]);
        assert_eq!(bincode::deserialize::<MetaResult>(&bytes).unwrap(), result);
    }

    /// `CompleteDroppingBlock` came after `CreateWithBlock` (17 ops before
    /// it).
    #[test]
    fn a_completion_dropping_its_unwritten_block_is_the_newest_op() {
        let op = MetaOp::CompleteDroppingBlock {
            path: "/f".into(),
            client_id: "c".into(),
            block_id: 7,
            now_ms: 9,
        };
        let bytes = bincode::serialize(&op).unwrap();
        assert_eq!(bytes[..4], [17, 0, 0, 0]);
        assert_eq!(bincode::deserialize::<MetaOp>(&bytes).unwrap(), op);
    }
}
