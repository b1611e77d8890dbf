//! Small files in few round trips (issue 15): the create hands out the
//! file's first block, so a one-block file costs the namenode a create and
//! a complete. Calls are counted on the namenode's own per-method counter
//! (`rfs_namenode_rpcs_total{method=…}` at `/metrics`), which counts the
//! datanodes' calls as well.

use std::collections::BTreeMap;

use anyhow::{ensure, Context, Result};
use rfs_client::{Client, CreateOptions};
use rfs_integration::{fetch_metrics, MiniCluster};
use tokio::io::AsyncWriteExt;

use super::common::{block_ids, payload, read_file, write_file, MIB};
use super::dfs::Dfs;

const RPCS: &str = "rfs_namenode_rpcs_total{";

/// Calls on the namenode that the write does not make itself: the
/// datanode protocol's, and the lease renewals of the client's timer;
/// and `batch`, the envelope the client's calls ride in (each call in it
/// is counted under its own method too).
const NOT_THE_WRITERS: [&str; 9] = [
    "batch",
    "register",
    "heartbeat",
    "block_report",
    "block_received_and_deleted",
    "report_bad_replica",
    "commit_block_synchronization",
    "confirm_recovery",
    "renew_lease",
];

/// The namenode's client calls so far, by method.
async fn rpc_counts(cluster: &MiniCluster) -> Result<BTreeMap<String, u64>> {
    let text = fetch_metrics(cluster.namenode_http_addr()).await?;
    let mut counts = BTreeMap::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix(RPCS) else {
            continue;
        };
        let (labels, value) = rest.rsplit_once(' ').context("a sample without a value")?;
        let method = labels
            .split("method=\"")
            .nth(1)
            .and_then(|m| m.split('"').next())
            .with_context(|| format!("no method in {line}"))?;
        counts.insert(method.to_string(), value.parse::<f64>()? as u64);
    }
    Ok(counts)
}

/// The client calls made since `before`, by method (see
/// [`NOT_THE_WRITERS`]).
async fn calls_since(
    cluster: &MiniCluster,
    before: &BTreeMap<String, u64>,
) -> Result<BTreeMap<String, u64>> {
    let mut calls = rpc_counts(cluster).await?;
    calls.retain(|method, n| {
        *n -= before.get(method).copied().unwrap_or(0);
        *n > 0 && !NOT_THE_WRITERS.contains(&method.as_str())
    });
    Ok(calls)
}

fn calls(made: &[(&str, u64)]) -> BTreeMap<String, u64> {
    made.iter().map(|(m, n)| (m.to_string(), *n)).collect()
}

/// Writes `data` to `path`; returns the namenode calls the write made.
async fn counted_write(
    cluster: &MiniCluster,
    client: &Client,
    path: &str,
    data: &[u8],
) -> Result<BTreeMap<String, u64>> {
    let before = rpc_counts(cluster).await?;
    write_file(client, path, data).await?;
    calls_since(cluster, &before).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_one_block_file_costs_the_namenode_a_create_and_a_complete() -> Result<()> {
    let cluster = MiniCluster::start().await?;
    let c = cluster.client().await?;
    ensure!(
        rpc_counts(&cluster)
            .await?
            .contains_key("get_namenode_group"),
        "the namenode counts its calls by method"
    );
    for (path, len) in [("/small/one", MIB - 1000), ("/small/full", MIB)] {
        let data = payload(len, len as u64);
        let made = counted_write(&cluster, &c, path, &data).await?;
        ensure!(
            made == calls(&[("complete", 1), ("create", 1)]),
            "{path} ({len} bytes, one block): namenode calls {made:?}"
        );
        ensure!(read_file(&c, path).await? == data, "{path} differs");
        ensure!(block_ids(&c, path).await?.len() == 1, "{path}: one block");
    }
    // Later blocks still come from add_block.
    let data = payload(2 * MIB + 5, 3);
    let made = counted_write(&cluster, &c, "/small/three", &data).await?;
    ensure!(
        made == calls(&[("add_block", 2), ("complete", 1), ("create", 1)]),
        "three blocks: namenode calls {made:?}"
    );
    ensure!(
        read_file(&c, "/small/three").await? == data,
        "/small/three differs"
    );
    Ok(())
}

/// A file closed without data drops its never-written first block in the
/// completion itself (create + complete, as before create handed out
/// blocks): length 0, no block, nothing fsck could call missing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_file_keeps_no_block_and_fsck_stays_healthy() -> Result<()> {
    let cluster = MiniCluster::start().await?;
    let c = cluster.client().await?;
    let before = rpc_counts(&cluster).await?;
    let mut w = c.create("/small/empty", CreateOptions::default()).await?;
    w.shutdown().await?;
    let made = calls_since(&cluster, &before).await?;
    ensure!(
        made == calls(&[("complete", 1), ("create", 1)]),
        "an empty file: namenode calls {made:?}"
    );
    let dfs = Dfs::new(cluster.namenode_addr());
    dfs.ok(&["touchz", "/small/touched"]);
    for path in ["/small/empty", "/small/touched"] {
        let locs = c.get_block_locations(path, 0, 0).await?;
        let st = locs.status.context("no status")?;
        ensure!(
            locs.blocks.is_empty() && st.length == 0 && !st.under_construction,
            "{path}: {} blocks, length {}, open {}",
            locs.blocks.len(),
            st.length,
            st.under_construction
        );
    }
    let out = dfs.ok(&["fsck", "/small"]);
    ensure!(
        out.contains("Total files:\t2")
            && out.contains("Total blocks:\t0")
            && out.contains("is HEALTHY"),
        "{out}"
    );
    Ok(())
}

/// The create's block takes the path of any new block whose pipeline
/// cannot be set up: given back (abandon) and asked for again without the
/// datanode that failed. Here that datanode is dead but not yet known to
/// be, so placement still picks it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_block_whose_pipeline_fails_is_given_back_for_another() -> Result<()> {
    let mut b = MiniCluster::builder().datanodes(3);
    b.datanode_dead_ms = 600_000;
    let mut cluster = b.start().await?;
    cluster.wait_live_datanodes(3).await?;
    let c = cluster.client().await?;
    let victim = 1;
    cluster.kill_datanode(victim);
    let data = payload(MIB / 2 + 7, 9);
    let made = counted_write(&cluster, &c, "/small/retried", &data).await?;
    ensure!(
        made == calls(&[
            ("abandon_block", 1),
            ("add_block", 1),
            ("complete", 1),
            ("create", 1)
        ]),
        "namenode calls {made:?}"
    );
    ensure!(read_file(&c, "/small/retried").await? == data, "differs");
    let ids = block_ids(&c, "/small/retried").await?;
    ensure!(ids.len() == 1, "blocks {ids:?}");
    let on: Vec<usize> = cluster.replicas_of(ids[0])?.iter().map(|r| r.0).collect();
    ensure!(
        on.len() == 2 && !on.contains(&victim),
        "block {} on datanodes {on:?}",
        ids[0]
    );
    Ok(())
}
