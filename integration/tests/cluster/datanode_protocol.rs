//! The datanode protocol spoken by a raw client beside real datanodes: a
//! stand-in datanode that loses a heartbeat reply still gets its excess
//! replica's delete, and a registration from another address cannot take
//! over a live datanode's id.

use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, ensure, Context, Result};
use rfs_integration::{free_port, MiniCluster};
use rfs_proto::common::{DatanodeInfo, ExtendedBlock};
use rfs_proto::datanode::datanode_command::Command;
use rfs_proto::datanode::datanode_protocol_client::DatanodeProtocolClient;
use rfs_proto::datanode::*;
use tonic::transport::Channel;

use super::common::{block_ids, payload, read_file, write_file};

/// A datanode as the namenode sees one: only its protocol calls, no data.
struct RawDatanode {
    client: DatanodeProtocolClient<Channel>,
    info: DatanodeInfo,
    /// Its registration, and the highest command number it says it
    /// received.
    epoch: u64,
    last_command_seq: u64,
}

impl RawDatanode {
    async fn connect(cluster: &MiniCluster, id: &str, data_port: u16) -> Result<RawDatanode> {
        let channel = Channel::from_shared(format!("http://{}", cluster.namenode_addr()))?
            .connect()
            .await?;
        let info = DatanodeInfo {
            datanode_id: id.into(),
            hostname: "127.0.0.1".into(),
            ip: "127.0.0.1".into(),
            data_port: data_port.into(),
            ..Default::default()
        };
        Ok(RawDatanode {
            client: DatanodeProtocolClient::new(channel),
            info,
            epoch: 0,
            last_command_seq: 0,
        })
    }

    async fn register(&mut self) -> Result<RegisterResponse, tonic::Status> {
        let req = RegisterRequest {
            info: Some(self.info.clone()),
            ..Default::default()
        };
        let resp = self.client.register(req).await?.into_inner();
        self.epoch = resp.epoch;
        Ok(resp)
    }

    /// One heartbeat of a nearly full node (so it is the first whose
    /// replicas count as excess); the commands of its reply.
    async fn heartbeat(&mut self) -> Result<Vec<DatanodeCommand>> {
        let req = HeartbeatRequest {
            datanode_id: self.info.datanode_id.clone(),
            storage: Some(StorageReport {
                capacity: 1 << 30,
                used: 1 << 20,
                remaining: 1,
                failed_volumes: 0,
            }),
            epoch: self.epoch,
            last_command_seq: self.last_command_seq,
            ..Default::default()
        };
        Ok(self.client.heartbeat(req).await?.into_inner().commands)
    }

    async fn block_report(&mut self, blocks: Vec<ExtendedBlock>) -> Result<()> {
        let req = BlockReportRequest {
            datanode_id: self.info.datanode_id.clone(),
            blocks,
            epoch: self.epoch,
            ..Default::default()
        };
        self.client.block_report(req).await?;
        Ok(())
    }

    /// Heartbeats until a reply asks to delete block `id`; returns that
    /// command.
    async fn until_invalidated(&mut self, id: u64, limit: Duration) -> Result<DatanodeCommand> {
        let deadline = Instant::now() + limit;
        loop {
            for c in self.heartbeat().await? {
                if let Some(Command::Invalidate(inv)) = &c.command {
                    if inv.blocks.iter().any(|b| b.block_id == id) {
                        return Ok(c);
                    }
                }
            }
            if Instant::now() > deadline {
                bail!("no heartbeat reply within {limit:?} asked to delete block {id}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_excess_replica_delete_is_sent_again_after_its_heartbeat_reply_is_lost() -> Result<()> {
    let cluster = MiniCluster::start().await?;
    let c = cluster.client().await?;
    write_file(&c, "/excess/f", &payload(100_000, 1)).await?;
    let located = c.get_block_locations("/excess/f", 0, 0).await?;
    let block = located.blocks[0].block.context("located block")?;
    cluster
        .wait_replicas(&[block.block_id], 3, |_| true, Duration::from_secs(20))
        .await?;

    // A fourth replica, on a nearly full node: the one to trim.
    let mut dn = RawDatanode::connect(&cluster, "raw-datanode", free_port()?).await?;
    dn.register().await?;
    dn.heartbeat().await?;
    dn.block_report(vec![block]).await?;
    let limit = Duration::from_secs(20);
    let first = dn
        .until_invalidated(block.block_id, limit)
        .await
        .context("the excess replica's delete")?;
    // That reply is lost: the node never saw the command.
    let again = dn
        .until_invalidated(block.block_id, Duration::from_secs(10))
        .await
        .map_err(|e| {
            anyhow!(
                "the delete of block {}'s excess replica was lost with its heartbeat reply: {e:#}",
                block.block_id
            )
        })?;
    ensure!(
        again == first,
        "sent again as it was: {first:?}, then {again:?}"
    );
    // This time it arrived: once the node says so, it stops coming.
    dn.last_command_seq = again.seq;
    for _ in 0..5 {
        let cmds = dn.heartbeat().await?;
        ensure!(
            cmds.is_empty(),
            "after its receipt was acknowledged: {cmds:?}"
        );
    }
    // The real replicas were not touched.
    ensure!(
        cluster.replicas_of(block.block_id)?.len() == 3,
        "block {} lost a real replica",
        block.block_id
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registration_from_another_address_cannot_take_over_a_live_datanode_id() -> Result<()> {
    let cluster = MiniCluster::start().await?;
    let c = cluster.client().await?;
    let data = payload(100_000, 2);
    write_file(&c, "/takeover/f", &data).await?;
    let ids = block_ids(&c, "/takeover/f").await?;
    cluster
        .wait_replicas(&ids, 3, |_| true, Duration::from_secs(20))
        .await?;
    let real = cluster.datanode_data_addr(0);
    let located = c.get_block_locations("/takeover/f", 0, 0).await?;
    let dn0 = located.blocks[0]
        .locations
        .iter()
        .find(|d| d.data_port == u32::from(real.port()))
        .context("dn0 among the block's locations")?
        .clone();

    let impostor_port = free_port()?;
    let mut impostor = RawDatanode::connect(&cluster, &dn0.datanode_id, impostor_port).await?;
    let impostor_addr = format!("127.0.0.1:{impostor_port}");
    match impostor.register().await {
        Ok(_) => bail!(
            "a registration of live datanode {} (at {real}) from {impostor_addr} was accepted",
            dn0.datanode_id
        ),
        Err(s) => {
            let msg = s.message();
            ensure!(
                msg.contains(&real.to_string()) && msg.contains(&impostor_addr),
                "the refusal names both addresses: {msg:?}"
            );
        }
    }
    // Reads keep going to the real node, heartbeat after heartbeat.
    let deadline = Instant::now() + Duration::from_secs(2);
    while Instant::now() < deadline {
        let located = c.get_block_locations("/takeover/f", 0, 0).await?;
        let ports: Vec<u32> = located.blocks[0]
            .locations
            .iter()
            .map(|d| d.data_port)
            .collect();
        ensure!(
            ports.contains(&u32::from(real.port())) && !ports.contains(&u32::from(impostor_port)),
            "block locations {ports:?}: real dn0 {real}, impostor {impostor_addr}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    ensure!(read_file(&c, "/takeover/f").await? == data, "read back");
    Ok(())
}
