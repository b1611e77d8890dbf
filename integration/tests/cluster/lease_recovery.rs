//! Lease recovery after the hard limit: a writer killed -9 after an hflush
//! leaves its file under construction; once its lease passes the hard
//! limit the namenode recovers the last block through a primary datanode
//! and closes the file, keeping at least every hflushed byte.

use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};
use rfs_integration::files::report_outcome;
use rfs_integration::load::wait_for;
use rfs_integration::MiniCluster;

use super::common::{payload, read_file, MIB};
use super::writer_process::HflushWriter;

/// [`wait_for`], with the cluster's logs in the error.
async fn wait_until<T, F, Fut>(
    cluster: &MiniCluster,
    what: &str,
    limit: Duration,
    check: F,
) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Option<T>>>,
{
    wait_for(what, limit, check)
        .await
        .map_err(|e| anyhow!("{e:#}\n{}", cluster.log_tails()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_writer_file_is_recovered_and_closed_after_the_hard_limit() -> Result<()> {
    killed_writer_is_recovered(false).await
}

/// The same with the namenode also killed -9 and restarted after the
/// writer died: it no longer knows where the unfinished last block lives
/// until the datanodes' block reports name their rbw replicas; without
/// them the block (and its hflushed bytes) would be dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_writer_file_is_recovered_across_a_namenode_restart() -> Result<()> {
    killed_writer_is_recovered(true).await
}

async fn killed_writer_is_recovered(restart_namenode: bool) -> Result<()> {
    let mut b = MiniCluster::builder();
    b.lease_soft_limit_ms = 1000;
    b.extra_namenode_args = ["--lease-hard-limit-ms", "3000"]
        .into_iter()
        .chain(["--lease-recovery-interval-ms", "300"])
        .map(String::from)
        .collect();
    let mut cluster = b.start().await?;
    cluster.wait_live_datanodes(3).await?;
    let c = cluster.client().await?;

    let (path, seed) = ("/lr/f", 11u64);
    let flushed = MIB + MIB / 2 + 1000;
    let extra = 100 * 1024 + 7;
    let mut writer =
        HflushWriter::start(&cluster.namenode_addr(), path, flushed, extra, seed).await?;
    let st = c.get_file_info(path).await?.context("file exists")?;
    assert!(st.under_construction, "open while its writer lives");

    // Let the unflushed bytes get as far as they get, then kill -9.
    tokio::time::sleep(Duration::from_millis(300)).await;
    writer.kill9()?;
    let killed = Instant::now();
    if restart_namenode {
        cluster.restart_namenode().await?;
        cluster.wait_live_datanodes(3).await?;
    }

    let st = wait_until(
        &cluster,
        "the namenode closes the dead writer's file",
        Duration::from_secs(60),
        || async {
            let st = c.get_file_info(path).await?.context("file vanished")?;
            Ok((!st.under_construction).then_some(st))
        },
    )
    .await?;
    assert!(
        killed.elapsed() >= Duration::from_millis(2500),
        "closed {:?} after the kill, before the hard limit could pass",
        killed.elapsed()
    );
    let len = st.length as usize;
    assert!(
        (flushed..=flushed + extra).contains(&len),
        "recovered length {len}: not between the hflushed {flushed} and the written {}",
        flushed + extra
    );
    let data = read_file(&c, path).await?;
    assert_eq!(data.len(), len, "bytes read vs. the file's length");
    let written = payload(flushed + extra, seed);
    assert!(
        data == written[..len],
        "recovered content differs from what was written"
    );
    // hflushed bytes are the acknowledged ones; what followed was not.
    report_outcome(
        if restart_namenode {
            "writer kill -9 after hflush, then namenode kill -9"
        } else {
            "writer kill -9 after hflush"
        },
        flushed as u64,
        (len.min(flushed)) as u64,
    );

    // The recovered replicas are registered: fsck finds every block on
    // the three datanodes and the file closed.
    wait_until(
        &cluster,
        "fsck: /lr healthy",
        Duration::from_secs(30),
        || async {
            let report = c.fsck("/lr").await?;
            let f = report
                .files
                .iter()
                .find(|f| f.path == path)
                .context("in fsck")?;
            let healthy = !f.under_construction
                && f.blocks.len() == 2
                && f.blocks
                    .iter()
                    .all(|b| b.live_replicas == 3 && b.corrupt_replicas == 0);
            Ok(healthy.then_some(()))
        },
    )
    .await?;
    Ok(())
}
