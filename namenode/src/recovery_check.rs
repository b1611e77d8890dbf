//! Whether a datanode may cut its replica of a block to a new generation
//! stamp and length (`DatanodeProtocol.ConfirmRecovery`).
//!
//! A WRITE_BLOCK RECOVER, COPY_BLOCK rbw or RECOVER_REPLICA COMMIT reaches
//! a datanode from anyone on the network, and each cuts a replica short.
//! The datanode asks the leader first; only recoveries the namespace
//! itself started pass:
//!
//! | the block is …                                    | confirmed for                                              |
//! |---------------------------------------------------|------------------------------------------------------------|
//! | the last block of a file a client is writing      | pipeline recovery at the stamp and acknowledged length its `UpdatePipeline` recorded |
//! | the last block of a file under lease recovery     | lease recovery at the stamp the recovery allocated, any length |
//! | an earlier block, a closed file's block, unknown  | nothing: the namenode committed it (or never had it)       |
//!
//! A lease recovery's length is the primary's pick from the replicas it
//! found, which the namenode cannot know ahead; its stamp is enough, as
//! only the leader allocates it. Block tokens (a later issue) replace
//! this check. Not here: the RPC itself (`service/datanode.rs`), the
//! leader check and read barrier in front of it.

use crate::error::{NamenodeError, Result};
use crate::leases::RECOVERY_HOLDER;
use crate::namespace::{BlockMeta, Inode};

/// Which recovery a datanode is about to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recovery {
    /// WRITE_BLOCK RECOVER or COPY_BLOCK rbw for a writer's pipeline.
    Pipeline,
    /// RECOVER_REPLICA COMMIT of the namenode's lease recovery.
    Lease,
}

/// Confirms cutting a replica of `b.id` to generation stamp `b.gen_stamp`
/// and `b.len` bytes, `owner` being the file that holds the block (if
/// any); otherwise `RecoveryRefused` says why.
pub fn confirm(owner: Option<&Inode>, b: &BlockMeta, kind: Recovery) -> Result<()> {
    let refuse = |reason: String| {
        Err(NamenodeError::RecoveryRefused {
            block: b.id,
            reason,
        })
    };
    let Some((inode, f)) = owner.and_then(|i| Some((i, i.file.as_ref()?))) else {
        return refuse("no file holds the block".into());
    };
    let Some(writer) = f.writer.as_deref() else {
        return refuse(format!(
            "it belongs to the closed file of inode {}, whose blocks are never cut",
            inode.id
        ));
    };
    let Some(last) = f.blocks.last().filter(|l| l.id == b.id) else {
        return refuse(format!(
            "it is a committed block of inode {}, not the last one being written",
            inode.id
        ));
    };
    if last.gen_stamp != b.gen_stamp {
        return refuse(format!(
            "generation stamp {} is not the block's current {}",
            b.gen_stamp, last.gen_stamp
        ));
    }
    match kind {
        Recovery::Pipeline if writer == RECOVERY_HOLDER => {
            refuse("the file is under lease recovery, not pipeline recovery".into())
        }
        Recovery::Pipeline if last.len != b.len => refuse(format!(
            "the writer's pipeline acknowledged {} bytes at generation stamp {}, not {}",
            last.len, last.gen_stamp, b.len
        )),
        Recovery::Lease if writer != RECOVERY_HOLDER => {
            refuse("no lease recovery of its file is under way".into())
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::namespace::FileMeta;

    fn file(writer: Option<&str>, blocks: &[(u64, u64, u64)]) -> Inode {
        Inode {
            id: 7,
            parent: 1,
            name: "f".into(),
            owner: "o".into(),
            group: "g".into(),
            mode: 0o644,
            mtime_ms: 0,
            atime_ms: 0,
            file: Some(FileMeta {
                replication: 3,
                block_size: 1 << 20,
                blocks: blocks
                    .iter()
                    .map(|&(id, gen_stamp, len)| BlockMeta { id, gen_stamp, len })
                    .collect(),
                writer: writer.map(str::to_string),
            }),
        }
    }

    fn block(id: u64, gen_stamp: u64, len: u64) -> BlockMeta {
        BlockMeta { id, gen_stamp, len }
    }

    fn reason(r: Result<()>) -> String {
        match r {
            Err(NamenodeError::RecoveryRefused { reason, .. }) => reason,
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn a_pipeline_recovery_passes_at_the_recorded_stamp_and_length_only() {
        let f = file(Some("client-1"), &[(1, 10, 1 << 20), (2, 12, 3000)]);
        assert_eq!(
            confirm(Some(&f), &block(2, 12, 3000), Recovery::Pipeline),
            Ok(())
        );
        let r = confirm(Some(&f), &block(2, 12, 0), Recovery::Pipeline);
        assert!(reason(r).contains("acknowledged 3000 bytes"));
        let r = confirm(Some(&f), &block(2, 13, 3000), Recovery::Pipeline);
        assert!(reason(r).contains("not the block's current 12"));
    }

    #[test]
    fn committed_blocks_are_never_confirmed() {
        let closed = file(None, &[(1, 10, 1 << 20), (2, 12, 3000)]);
        for kind in [Recovery::Pipeline, Recovery::Lease] {
            let r = confirm(Some(&closed), &block(2, 12, 3000), kind);
            assert!(reason(r).contains("closed file"));
        }
        let open = file(Some("client-1"), &[(1, 10, 1 << 20), (2, 12, 0)]);
        let r = confirm(Some(&open), &block(1, 10, 1 << 20), Recovery::Pipeline);
        assert!(reason(r).contains("committed block"));
        let r = confirm(None, &block(9, 10, 0), Recovery::Pipeline);
        assert!(reason(r).contains("no file holds"));
    }

    #[test]
    fn a_lease_recovery_passes_at_its_stamp_with_any_length() {
        let f = file(Some(RECOVERY_HOLDER), &[(2, 15, 3000)]);
        assert_eq!(
            confirm(Some(&f), &block(2, 15, 1234), Recovery::Lease),
            Ok(())
        );
        let r = confirm(Some(&f), &block(2, 14, 1234), Recovery::Lease);
        assert!(reason(r).contains("generation stamp 14"));
        let r = confirm(Some(&f), &block(2, 15, 3000), Recovery::Pipeline);
        assert!(reason(r).contains("under lease recovery"));
        let writing = file(Some("client-1"), &[(2, 15, 0)]);
        let r = confirm(Some(&writing), &block(2, 15, 0), Recovery::Lease);
        assert!(reason(r).contains("no lease recovery"));
    }
}
