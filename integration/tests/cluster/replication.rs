//! Re-replication: a dead datanode's blocks are copied back to the file's
//! replication on other nodes, excess replicas are trimmed when it
//! returns, and `setrep` lowers and raises replica counts the same way.

use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use rfs_integration::MiniCluster;

use super::common::{block_ids, payload, read_file, write_file, MIB};

/// Waits until every block in `ids` has exactly `n` finalized replicas on
/// the datanodes `ok` accepts; returns where they are.
async fn wait_replicas(
    cluster: &MiniCluster,
    ids: &[u64],
    n: usize,
    ok: impl Fn(usize) -> bool,
    limit: Duration,
) -> Result<Vec<Vec<usize>>> {
    let deadline = Instant::now() + limit;
    loop {
        let mut placed = Vec::new();
        for id in ids {
            let nodes: Vec<usize> = cluster
                .replicas_of(*id)?
                .into_iter()
                .map(|(i, _)| i)
                .filter(|i| ok(*i))
                .collect();
            placed.push(nodes);
        }
        if placed.iter().all(|nodes| nodes.len() == n) {
            return Ok(placed);
        }
        if Instant::now() > deadline {
            bail!(
                "blocks {ids:?} should have {n} replicas each, have {placed:?} after {limit:?}\n{}",
                cluster.log_tails()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_datanode_blocks_are_re_replicated_and_excess_trimmed_on_return() -> Result<()> {
    let mut cluster = MiniCluster::builder().datanodes(4).start().await?;
    cluster.wait_live_datanodes(4).await?;
    let c = cluster.client().await?;
    let data = payload(3 * MIB + 123, 7);
    write_file(&c, "/r/f", &data).await?;
    let ids = block_ids(&c, "/r/f").await?;
    let all = |_| true;
    let placed = wait_replicas(&cluster, &ids, 3, all, Duration::from_secs(10)).await?;

    // The node holding the first block's first replica dies for good.
    let victim = placed[0][0];
    cluster.kill_datanode(victim);
    let others = |i| i != victim;
    // Dead after 3 s, then copies from the survivors.
    wait_replicas(&cluster, &ids, 3, others, Duration::from_secs(40)).await?;
    assert_eq!(
        read_file(&c, "/r/f").await?,
        data,
        "content after re-replication"
    );

    // It comes back with its old replicas: each block now has one too many
    // until the namenode trims them.
    cluster.restart_datanode(victim).await?;
    cluster.wait_live_datanodes(4).await?;
    wait_replicas(&cluster, &ids, 3, all, Duration::from_secs(30)).await?;

    // setrep lowers and raises through the same monitor.
    c.set_replication("/r/f", 2).await?;
    wait_replicas(&cluster, &ids, 2, all, Duration::from_secs(30)).await?;
    c.set_replication("/r/f", 4).await?;
    wait_replicas(&cluster, &ids, 4, all, Duration::from_secs(30)).await?;
    assert_eq!(read_file(&c, "/r/f").await?, data, "content after setrep");
    Ok(())
}
