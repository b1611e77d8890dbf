//! Replacing a datanode lost from a write pipeline: whether to (the
//! policy), and bringing the replacement up to date.

use std::time::Duration;

use rfs_proto::common::{DatanodeInfo, ExtendedBlock};
use rfs_proto::transfer::{pipeline_timeout, CopyBlockOp, Frame, Op, Status};
use tokio::time::timeout;

use crate::client::Client;
use crate::config::ReplaceDatanode;
use crate::datanode::{data_addr, describe};
use crate::error::chain;

/// Slowest copy rate assumed when bounding a prefix copy.
const MIN_COPY_BYTES_PER_SEC: u64 = 10 << 20;

/// How many replacements to ask for when `survivors` of `target` nodes are
/// left (HDFS `replace-datanode-on-failure`). `Default` replaces only
/// where losing more would be risky: replication 3 or more and at most
/// half the nodes left, or data already flushed (readers may rely on it).
pub(crate) fn replacements_wanted(
    policy: ReplaceDatanode,
    target: usize,
    survivors: usize,
    flushed: bool,
) -> usize {
    let missing = target.saturating_sub(survivors);
    match policy {
        ReplaceDatanode::Never => 0,
        ReplaceDatanode::Always => missing,
        ReplaceDatanode::Default => {
            if target >= 3 && (survivors <= target / 2 || flushed) {
                missing
            } else {
                0
            }
        }
    }
}

/// Has `source` cut its replica to `block.num_bytes` under the block's new
/// generation stamp and copy that prefix to `to`, unfinalized.
pub(crate) async fn copy_prefix(
    client: &Client,
    source: &DatanodeInfo,
    to: &DatanodeInfo,
    block: ExtendedBlock,
) -> Result<(), String> {
    let cfg = client.config();
    let limit = pipeline_timeout(cfg.datanode_timeout, 2)
        + Duration::from_secs(block.num_bytes / MIN_COPY_BYTES_PER_SEC);
    let addr = data_addr(source).await?;
    let copy = async {
        let conn = client
            .inner
            .transport
            .connect(addr)
            .await
            .map_err(|e| chain(&e))?;
        let (mut tx, mut rx) = conn.split();
        let op = Op::CopyBlock(CopyBlockOp {
            block: Some(block),
            targets: vec![to.clone()],
            rbw: true,
        });
        tx.send(Frame::Op(op)).await.map_err(|e| chain(&e))?;
        match rx.recv().await {
            Ok(Some(Frame::Response(r))) if r.status() == Status::Success => Ok(()),
            Ok(Some(Frame::Response(r))) => Err(r.message),
            Ok(Some(_)) => Err("unexpected frame instead of the copy's response".to_string()),
            Ok(None) => Err("connection closed before the copy's response".to_string()),
            Err(e) => Err(chain(&e)),
        }
    };
    match timeout(limit, copy).await {
        Ok(r) => r.map_err(|e| format!("copy from {}: {e}", describe(source))),
        Err(_) => Err(format!(
            "copy from {} took over {limit:?}",
            describe(source)
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_matches_hdfs() {
        use ReplaceDatanode::*;
        assert_eq!(replacements_wanted(Never, 3, 1, true), 0);
        assert_eq!(replacements_wanted(Always, 3, 2, false), 1);
        assert_eq!(replacements_wanted(Always, 2, 1, false), 1);
        // Default: 3 replicas, one lost, nothing flushed: go on with two.
        assert_eq!(replacements_wanted(Default, 3, 2, false), 0);
        assert_eq!(replacements_wanted(Default, 3, 2, true), 1);
        assert_eq!(replacements_wanted(Default, 3, 1, false), 2);
        assert_eq!(replacements_wanted(Default, 2, 1, true), 0);
    }
}
