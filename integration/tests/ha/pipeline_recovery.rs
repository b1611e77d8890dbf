//! A pipeline recovery's new generation stamp and acknowledged length are
//! recorded through the raft log (issue 14, item 6), so a new leader
//! confirms to datanodes exactly the recovery the old one started.

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use rfs_client::{Client, ReplaceDatanode};
use rfs_integration::HaCluster;
use rfs_proto::common::ExtendedBlock;
use rfs_proto::datanode::datanode_protocol_client::DatanodeProtocolClient;
use rfs_proto::datanode::{ConfirmRecoveryRequest, RecoveryKind};
use rfs_proto::rpc_error::{kind_of, RpcErrorKind};
use tokio::io::AsyncWriteExt;
use tonic::transport::Endpoint;

use super::support::serial;
use crate::common::{payload, read_file, MIB};

/// Member `i`'s answer to ConfirmRecovery for `block`, asked again while
/// it is still taking up the lead (answers not-leader).
async fn confirm_at(
    cluster: &HaCluster,
    i: usize,
    block: ExtendedBlock,
) -> Result<std::result::Result<(), tonic::Status>> {
    let channel = Endpoint::from_shared(format!("http://{}", cluster.member_addr(i)))?
        .timeout(Duration::from_secs(10))
        .connect()
        .await?;
    let mut nn = DatanodeProtocolClient::new(channel);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let req = ConfirmRecoveryRequest {
            datanode_id: "probe".into(),
            block: Some(block),
            kind: RecoveryKind::Pipeline as i32,
        };
        match nn.confirm_recovery(req).await {
            Ok(_) => return Ok(Ok(())),
            Err(s) if kind_of(&s) == RpcErrorKind::NotLeader && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await
            }
            Err(s) => return Ok(Err(s)),
        }
    }
}

/// The last block of open file `path`, as located now.
async fn last_block(client: &Client, path: &str) -> Result<ExtendedBlock> {
    let locs = client.get_block_locations(path, 0, 0).await?;
    locs.blocks
        .last()
        .and_then(|l| l.block)
        .context("the file has no block")
}

/// A datanode of the pipeline dies after an hflush; the next hflush
/// recovers the pipeline (new stamp, the hflushed length recorded). The
/// leader is then killed: the new leader confirms that stamp and length to
/// a datanode, refuses the same stamp with length 0, and the write goes on
/// and reads back whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_leader_confirms_the_recovery_the_old_one_recorded_and_nothing_shorter() -> Result<()>
{
    let _serial = serial().await;
    let mut cluster = HaCluster::start().await?;
    let mut config = cluster.client_config();
    config.replication = Some(3);
    config.replace_datanode_on_failure = ReplaceDatanode::Never;
    let client = Client::connect(config).await?;
    let path = "/recovered";
    let data = payload(MIB / 2 + 3000, 17);
    let cut = MIB / 4 + 100;
    let mut w = client.create(path, Default::default()).await?;
    w.write_all(&data[..cut]).await?;
    w.hflush().await?;
    let before = last_block(&client, path).await?;
    cluster.kill_datanode(1);
    w.write_all(&data[cut..cut + 5000]).await?;
    w.hflush().await.context("hflush across a lost datanode")?;
    let recovered = last_block(&client, path).await?;
    if recovered.generation_stamp <= before.generation_stamp {
        bail!("no pipeline recovery after losing a datanode: {before:?} then {recovered:?}");
    }

    let old = cluster.leader().await?;
    cluster.kill_member(old);
    let new = cluster.new_leader_other_than(old).await?;
    let recorded = ExtendedBlock {
        num_bytes: cut as u64,
        ..recovered
    };
    confirm_at(&cluster, new, recorded)
        .await?
        .map_err(|s| anyhow::anyhow!("the new leader refused the recorded recovery: {s:?}"))?;
    let shorter = ExtendedBlock {
        num_bytes: 0,
        ..recovered
    };
    match confirm_at(&cluster, new, shorter).await? {
        Err(s) if kind_of(&s) == RpcErrorKind::RecoveryRefused => {}
        other => bail!("a recovery to length 0 got {other:?}"),
    }

    w.write_all(&data[cut + 5000..]).await?;
    w.shutdown().await.context("close through the new leader")?;
    assert!(read_file(&client, path).await? == data, "{path} differs");
    Ok(())
}
