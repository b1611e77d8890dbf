//! Unfinished replicas nobody will finish: the rbw files of a killed
//! writer whose file is gone, and the empty ones of a WRITE_BLOCK cut off
//! before its first packet, are deleted from the datanodes' disks (across
//! restarts, whatever a namenode forgot), while a live writer's never are.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{anyhow, ensure, Context, Result};
use futures::{SinkExt, StreamExt};
use rfs_client::CreateOptions;
use rfs_integration::load::wait_for;
use rfs_integration::{fetch_metrics, MiniCluster};
use rfs_proto::common::ExtendedBlock;
use rfs_proto::transfer::{Frame, FrameCodec, Op, Status, WriteBlockOp};
use tokio::io::AsyncWriteExt;
use tokio_util::codec::Framed;

use super::common::{block_ids, payload, read_file, MIB};
use super::writer_process::HflushWriter;

/// Full block reports every second: the namenode judges an unfinished
/// replica only after two of them.
const REPORT_MS: u64 = 1000;

/// A block id far above any the test's namenode allocates: no namenode
/// may judge a replica of it, so only the datanode itself can drop it.
const UNALLOCATED: u64 = 1 << 40;

async fn cluster() -> Result<MiniCluster> {
    let mut b = MiniCluster::builder();
    b.block_report_ms = Some(REPORT_MS);
    b.start().await
}

/// Waits until no datanode has an rbw file of any of `ids`.
async fn wait_rbw_gone(cluster: &MiniCluster, ids: &[u64], limit: Duration) -> Result<()> {
    let what = format!("rbw files of blocks {ids:?} deleted on every datanode");
    wait_for(&what, limit, || async {
        let mut left: Vec<(usize, PathBuf)> = Vec::new();
        for id in ids {
            left.extend(cluster.rbw_files(Some(*id))?);
        }
        match left.is_empty() {
            true => Ok(Some(())),
            false => Err(anyhow!("still on disk (datanode, file): {left:?}")),
        }
    })
    .await
    .map_err(|e| anyhow!("{e:#}\n{}", cluster.log_tails()))
}

/// Datanodes (by index) holding an rbw file of block `id`.
fn rbw_holders(cluster: &MiniCluster, id: u64) -> Result<Vec<usize>> {
    let mut nodes: Vec<usize> = cluster
        .rbw_files(Some(id))?
        .into_iter()
        .map(|(i, _)| i)
        .collect();
    nodes.dedup();
    Ok(nodes)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_writers_rbw_replicas_are_deleted_with_their_file_across_restarts() -> Result<()> {
    let mut cluster = cluster().await?;
    let c = cluster.client().await?;
    let nn = cluster.namenode_addr();
    let mut a = HflushWriter::start(&nn, "/stale/a", MIB / 2 + 100, 1000, 1).await?;
    let mut b = HflushWriter::start(&nn, "/stale/b", MIB / 2 + 200, 1000, 2).await?;
    let ids_a = block_ids(&c, "/stale/a").await?;
    let ids_b = block_ids(&c, "/stale/b").await?;
    a.kill9()?;
    b.kill9()?;
    for id in ids_a.iter().chain(&ids_b) {
        // hflushed: the whole pipeline holds the bytes.
        ensure!(
            rbw_holders(&cluster, *id)? == vec![0, 1, 2],
            "block {id}: rbw on {:?}, not on all three datanodes",
            rbw_holders(&cluster, *id)?
        );
    }

    // While every datanode runs, deleting the file deletes its replicas.
    ensure!(c.delete("/stale/a", false).await?, "delete /stale/a");
    wait_rbw_gone(&cluster, &ids_a, Duration::from_secs(20)).await?;

    // dn0 is down when /stale/b goes, and the namenode restarts before dn0
    // returns: the delete meant for dn0 is lost with it. Only dn0's block
    // reports can tell the new namenode about the leftover.
    cluster.kill_datanode(0);
    ensure!(c.delete("/stale/b", false).await?, "delete /stale/b");
    // And beside it a replica of a block no namenode has allocated yet:
    // not the namenode's to judge.
    let dn0 = cluster.datanode_dirs(0)[0].join("current").join("rbw");
    let mut planted = Vec::new();
    for (_, from) in cluster
        .rbw_files(Some(ids_b[0]))?
        .into_iter()
        .filter(|(i, _)| *i == 0)
    {
        let name = from.file_name().context("rbw file name")?.to_string_lossy();
        let to =
            dn0.join(name.replace(&format!("blk_{}", ids_b[0]), &format!("blk_{UNALLOCATED}")));
        std::fs::copy(&from, &to)?;
        planted.push(to);
    }
    ensure!(planted.len() == 2, "planted {planted:?}");
    cluster.restart_namenode().await?;
    cluster.wait_live_datanodes(2).await?;
    cluster.restart_datanode(0).await?;
    cluster.wait_live_datanodes(3).await?;
    wait_rbw_gone(&cluster, &ids_b, Duration::from_secs(30)).await?;
    for p in &planted {
        ensure!(p.exists(), "{} was deleted", p.display());
    }
    Ok(())
}

/// Sends a WRITE_BLOCK header for a new replica of `block_id` to `addr`.
async fn write_block_header(
    addr: std::net::SocketAddr,
    block_id: u64,
) -> Result<Framed<tokio::net::TcpStream, FrameCodec>> {
    let stream = tokio::net::TcpStream::connect(addr).await?;
    let mut conn = Framed::new(stream, FrameCodec::default());
    let op = WriteBlockOp {
        block: Some(ExtendedBlock {
            block_id,
            generation_stamp: 1001,
            num_bytes: 0,
        }),
        client_id: "raw-test-client".into(),
        bytes_per_checksum: 512,
        ..Default::default()
    };
    conn.send(Frame::Op(Op::WriteBlock(op))).await?;
    Ok(conn)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_aborted_write_block_leaves_no_rbw_file() -> Result<()> {
    let cluster = cluster().await?;
    let addr = cluster.datanode_data_addr(0);

    // Header, then the response read, then the connection dropped: the
    // response says the replica was created.
    let dropped = UNALLOCATED + 1;
    let mut conn = write_block_header(addr, dropped).await?;
    match tokio::time::timeout(Duration::from_secs(10), conn.next()).await? {
        Some(Ok(Frame::Response(r))) => ensure!(
            r.status() == Status::Success,
            "WRITE_BLOCK refused: {}",
            r.message
        ),
        other => return Err(anyhow!("WRITE_BLOCK answered {other:?}")),
    }
    drop(conn);

    // Header, then a half-close, then whatever comes back until the
    // datanode closes too: by then it has done with the replica.
    let closed = UNALLOCATED + 2;
    let conn = write_block_header(addr, closed).await?;
    let mut stream = conn.into_inner();
    stream.shutdown().await?;
    let mut rest = Vec::new();
    tokio::time::timeout(
        Duration::from_secs(10),
        tokio::io::AsyncReadExt::read_to_end(&mut stream, &mut rest),
    )
    .await??;
    ensure!(!rest.is_empty(), "the datanode answered nothing");

    wait_rbw_gone(&cluster, &[dropped, closed], Duration::from_secs(10)).await?;
    // The datanode still takes writes.
    let c = cluster.client().await?;
    super::common::write_file(&c, "/after-abort", &payload(1000, 3)).await?;
    Ok(())
}

/// Full block reports the namenode has received so far.
async fn block_reports(cluster: &MiniCluster) -> Result<u64> {
    let text = fetch_metrics(cluster.namenode_http_addr()).await?;
    let line = text
        .lines()
        .find(|l| {
            l.starts_with("rfs_namenode_rpcs_total{") && l.contains("method=\"block_report\"")
        })
        .context("no block_report count in the namenode's metrics")?;
    let n = line.rsplit(' ').next().unwrap_or_default();
    Ok(n.parse::<f64>()
        .with_context(|| format!("count in {line:?}"))? as u64)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_writers_rbw_replicas_survive_full_block_reports() -> Result<()> {
    let cluster = cluster().await?;
    let c = cluster.client().await?;
    let path = "/stale/live";
    let data = payload(MIB / 2 + 4321, 5);
    let (head, tail) = data.split_at(MIB / 4 + 17);
    let mut w = c.create(path, CreateOptions::default()).await?;
    w.write_all(head).await?;
    w.hflush().await?;
    let ids = block_ids(&c, path).await?;
    ensure!(ids.len() == 1, "blocks {ids:?}");
    ensure!(
        rbw_holders(&cluster, ids[0])? == vec![0, 1, 2],
        "rbw of block {} on {:?}",
        ids[0],
        rbw_holders(&cluster, ids[0])?
    );

    // Three more full reports from each datanode while the writer idles:
    // at least two consecutive ones each.
    let before = block_reports(&cluster).await?;
    wait_for(
        "nine more full block reports",
        Duration::from_secs(30),
        || async { Ok((block_reports(&cluster).await? >= before + 9).then_some(())) },
    )
    .await?;
    ensure!(
        rbw_holders(&cluster, ids[0])? == vec![0, 1, 2],
        "a live writer's rbw of block {} is left only on {:?}",
        ids[0],
        rbw_holders(&cluster, ids[0])?
    );
    w.write_all(tail).await?;
    w.shutdown().await?;
    ensure!(read_file(&c, path).await? == data, "{path} read back");
    cluster
        .wait_replicas(&ids, 3, |_| true, Duration::from_secs(20))
        .await?;
    Ok(())
}
