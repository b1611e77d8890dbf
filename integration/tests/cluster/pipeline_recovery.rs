//! Pipeline recovery (issue 5): datanodes killed or stalled in the middle
//! of a multi-block write at replication 3. The write goes on without
//! them, the file reads back identical, and replicas left behind at the
//! old generation stamp are never served and get deleted.

use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use rfs_client::{Client, ClientConfig, CreateOptions, FileWriter, ReplaceDatanode};
use rfs_integration::files::report_outcome;
use rfs_integration::load::wait_for;
use rfs_integration::MiniCluster;
use rfs_proto::common::LocatedBlock;
use tokio::io::AsyncWriteExt;

use super::common::{payload, read_file, MIB};

/// The last located block of `path` (the one being written).
async fn last_block(client: &Client, path: &str) -> Result<LocatedBlock> {
    let locs = client.get_block_locations(path, 0, 0).await?;
    locs.blocks
        .last()
        .cloned()
        .with_context(|| format!("{path} has no block yet"))
}

/// Index in the cluster of the datanode at pipeline position `pos` of the
/// block being written.
async fn pipeline_node(
    cluster: &MiniCluster,
    client: &Client,
    path: &str,
    pos: usize,
) -> Result<(u64, u64, usize)> {
    let b = last_block(client, path).await?;
    let block = b.block.context("located block without a block")?;
    ensure!(
        b.locations.len() == 3,
        "block {} should be written to 3 datanodes, is to {:?}",
        block.block_id,
        b.locations
    );
    let port = b.locations[pos].data_port;
    let i = (0..cluster.datanode_count())
        .find(|i| u32::from(cluster.datanode_data_addr(*i).port()) == port)
        .with_context(|| format!("no datanode has data port {port}"))?;
    Ok((block.block_id, block.generation_stamp, i))
}

/// Creates `path`, writes `first` and hflushes it: a pipeline with data
/// every node acknowledged, still open.
async fn start_write(client: &Client, path: &str, first: &[u8]) -> Result<FileWriter> {
    let mut w = client.create(path, CreateOptions::default()).await?;
    write_in_pieces(&mut w, first).await?;
    w.hflush().await?;
    Ok(w)
}

async fn write_in_pieces(w: &mut FileWriter, data: &[u8]) -> Result<()> {
    for piece in data.chunks(64 * 1024 + 17) {
        w.write_all(piece).await?;
    }
    Ok(())
}

fn config(cluster: &MiniCluster, policy: ReplaceDatanode) -> ClientConfig {
    let mut c = cluster.client_config();
    c.replication = Some(3);
    c.replace_datanode_on_failure = policy;
    c
}

/// kill -9 of the middle datanode of the pipeline half way through the
/// second of four blocks: the write completes on the two survivors, the
/// file reads back identical, fsck is healthy once the namenode has
/// re-replicated the block; the killed node's old-stamp replica (made
/// finalized here, as if it had finished the block just before dying) is
/// never served and is deleted when the node returns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn datanode_killed_mid_write_the_write_completes_and_stale_replicas_go() -> Result<()> {
    let mut cluster = MiniCluster::builder().datanodes(4).start().await?;
    let client = Client::connect(config(&cluster, ReplaceDatanode::Default)).await?;
    let path = "/recover/killed";
    let data = payload(3 * MIB + MIB / 2 + 1234, 41);
    let cut = MIB + MIB / 2;
    let mut w = start_write(&client, path, &data[..cut]).await?;
    let (block, old_gs, victim) = pipeline_node(&cluster, &client, path, 1).await?;
    cluster.kill_datanode(victim);
    write_in_pieces(&mut w, &data[cut..]).await?;
    w.shutdown()
        .await
        .context("close after losing a pipeline datanode")?;
    ensure!(
        read_file(&client, path).await? == data,
        "{path} differs after recovery"
    );

    // The recovered block has a new stamp; fsck is healthy (3 live
    // replicas of every block) once the namenode re-replicated it.
    let b = client.get_block_locations(path, 0, 0).await?;
    let recovered = b
        .blocks
        .iter()
        .filter_map(|l| l.block)
        .find(|x| x.block_id == block)
        .context("block is gone")?;
    ensure!(
        recovered.generation_stamp > old_gs,
        "block {block} kept generation stamp {old_gs}"
    );
    wait_healthy(&client, path, 3).await?;

    // The killed node left rbw files at the old stamp. Finalize them by
    // hand (what a node that finished the block just before the failure
    // would hold), restart it: the replica is reported, found stale and
    // deleted, and readers are never sent to it.
    let dir = cluster.datanode_dirs(victim)[0].clone();
    let stale_meta = finalize_rbw(&dir, block, old_gs)?;
    cluster.start_datanode(victim)?;
    wait_for(
        "the stale replica to be deleted",
        Duration::from_secs(30),
        || async { Ok((!stale_meta.exists()).then_some(())) },
    )
    .await?;
    let victim_port = u32::from(cluster.datanode_data_addr(victim).port());
    let b = client.get_block_locations(path, 0, 0).await?;
    for l in &b.blocks {
        let id = l.block.map(|b| b.block_id);
        if id == Some(block) {
            ensure!(
                l.locations.iter().all(|d| d.data_port != victim_port),
                "readers are sent to the stale replica on datanode {victim}"
            );
        }
    }
    ensure!(read_file(&client, path).await? == data, "{path} differs");
    wait_healthy(&client, path, 3).await?;
    let n = data.len() as u64;
    report_outcome("datanode kill -9 mid-write (r=3, 4 blocks)", n, n);
    Ok(())
}

/// Moves `block`'s rbw files at `gs` into finalized/ with a consistent
/// length, as a finalized old-stamp replica; returns its meta path.
fn finalize_rbw(dir: &std::path::Path, block: u64, gs: u64) -> Result<std::path::PathBuf> {
    let current = dir.join("current");
    let (rbw, fin) = (current.join("rbw"), current.join("finalized"));
    let data = rbw.join(format!("blk_{block}"));
    let meta = rbw.join(format!("blk_{block}_{gs}.meta"));
    if !meta.exists() {
        bail!("the killed datanode has no rbw replica {}", meta.display());
    }
    // A kill may land between a packet's data and checksum writes: keep
    // what the checksums cover.
    let chunks = (std::fs::metadata(&meta)?.len() - 8) / 4;
    let len = std::fs::metadata(&data)?.len().min(chunks * 512);
    std::fs::OpenOptions::new()
        .write(true)
        .open(&data)?
        .set_len(len)?;
    std::fs::OpenOptions::new()
        .write(true)
        .open(&meta)?
        .set_len(8 + len.div_ceil(512) * 4)?;
    let to = fin.join(format!("blk_{block}_{gs}.meta"));
    std::fs::rename(&meta, &to)?;
    std::fs::rename(&data, fin.join(format!("blk_{block}")))?;
    Ok(to)
}

/// Waits until fsck shows `path` closed with `n` live replicas per block.
async fn wait_healthy(client: &Client, path: &str, n: u32) -> Result<()> {
    wait_for(
        &format!("fsck {path}: healthy with {n} live replicas per block"),
        Duration::from_secs(30),
        || async {
            let report = client.fsck(path).await?;
            let f = report.files.first().context("fsck lists no file")?;
            let off: Vec<String> = f
                .blocks
                .iter()
                .filter(|b| b.live_replicas != n)
                .map(|b| {
                    format!(
                        "{:?}: {} live",
                        b.block.map(|b| b.block_id),
                        b.live_replicas
                    )
                })
                .collect();
            if f.under_construction || !off.is_empty() {
                bail!(
                    "under construction {}; {}",
                    f.under_construction,
                    off.join(", ")
                );
            }
            Ok(Some(()))
        },
    )
    .await
}

/// With `replace-datanode-on-failure = always` a pipeline that lost its
/// FIRST datanode is brought back to 3 nodes at once: a replacement gets
/// the acknowledged prefix copied from a survivor, and when close returns
/// every block already has 3 finalized replicas at its current stamp (the
/// namenode's re-replication is slowed to a minute here, so it cannot be
/// what put them there).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replacement_datanode_keeps_the_pipeline_at_full_replication() -> Result<()> {
    let mut builder = MiniCluster::builder().datanodes(4);
    builder.replication_interval_ms = 60_000;
    let mut cluster = builder.start().await?;
    let client = Client::connect(config(&cluster, ReplaceDatanode::Always)).await?;
    let path = "/recover/replaced";
    let data = payload(2 * MIB + 777, 42);
    let cut = MIB / 2 + 4096 + 100;
    let mut w = start_write(&client, path, &data[..cut]).await?;
    let (block, old_gs, victim) = pipeline_node(&cluster, &client, path, 0).await?;
    cluster.kill_datanode(victim);
    write_in_pieces(&mut w, &data[cut..]).await?;
    w.shutdown()
        .await
        .context("close after losing the first datanode")?;
    let b = client.get_block_locations(path, 0, 0).await?;
    for l in &b.blocks {
        let x = l.block.context("located block without a block")?;
        let on_disk = cluster.replicas_of(x.block_id)?;
        let current: Vec<usize> = on_disk
            .iter()
            .filter(|(_, f)| f.generation_stamp == x.generation_stamp)
            .map(|(i, _)| *i)
            .collect();
        ensure!(
            current.len() == 3 && !current.contains(&victim),
            "block {} (gs {}) should have 3 replicas off datanode {victim} at close, has {on_disk:?}",
            x.block_id,
            x.generation_stamp
        );
        if x.block_id == block {
            ensure!(x.generation_stamp > old_gs, "block {block} kept its stamp");
        }
    }
    ensure!(read_file(&client, path).await? == data, "{path} differs");
    let n = data.len() as u64;
    report_outcome("first pipeline datanode kill -9, replaced", n, n);
    Ok(())
}

/// A datanode that stalls (SIGSTOP) in the middle of the pipeline is
/// detected by the node above it within the configured timeout, named in
/// its ack, and dropped: the write completes and reads back identical.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_datanode_is_dropped_after_the_timeout() -> Result<()> {
    let mut builder = MiniCluster::builder().datanodes(4);
    builder.datanode_timeout_ms = 2000;
    let mut cluster = builder.start().await?;
    let client = Client::connect(config(&cluster, ReplaceDatanode::Default)).await?;
    let path = "/recover/stalled";
    let data = payload(2 * MIB + MIB / 4, 43);
    let cut = MIB / 4;
    let mut w = start_write(&client, path, &data[..cut]).await?;
    let (_, _, victim) = pipeline_node(&cluster, &client, path, 1).await?;
    cluster.pause_datanode(victim, true)?;
    let written = async {
        write_in_pieces(&mut w, &data[cut..]).await?;
        w.shutdown().await?;
        anyhow::Ok(())
    };
    let res = tokio::time::timeout(Duration::from_secs(60), written).await;
    cluster.pause_datanode(victim, false)?;
    res.context("the write hung on the stalled datanode")?
        .context("write with a stalled datanode")?;
    ensure!(read_file(&client, path).await? == data, "{path} differs");
    let n = data.len() as u64;
    report_outcome("datanode stalled (SIGSTOP) mid-write", n, n);
    Ok(())
}
