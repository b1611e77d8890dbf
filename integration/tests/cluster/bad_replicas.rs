//! Bad-replica reports: a client's report is only a suspicion that the
//! replica's datanode checks; a replica its datanode finds bad is kept
//! until the block has its file's replication of good replicas elsewhere;
//! a block whose every replica is bad keeps them all, fsck says CORRUPT,
//! and reads fail at once naming the checksum failures.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use rfs_client::Client;
use rfs_integration::{fetch_metrics, MiniCluster};
use rfs_proto::namenode::client_protocol_client::ClientProtocolClient;
use rfs_proto::namenode::ReportBadBlocksRequest;

use super::common::{block_ids, payload, read_file, write_file, MIB};

const DEADLINE: Duration = Duration::from_secs(30);

/// How many suspect replicas datanode `i` verified with `verdict`.
async fn verified(cluster: &MiniCluster, i: usize, verdict: &str) -> Result<f64> {
    let text = fetch_metrics(cluster.datanode_http_addr(i)).await?;
    let label = format!("verdict=\"{verdict}\"");
    Ok(text
        .lines()
        .filter(|l| l.starts_with("rfs_datanode_suspect_replicas_verified_total{"))
        .filter(|l| l.contains(&label))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum())
}

/// Whether datanode `i` holds block `id` quarantined (in `current/corrupt/`).
fn quarantined(cluster: &MiniCluster, i: usize, id: u64) -> bool {
    cluster
        .datanode_dirs(i)
        .iter()
        .any(|d| d.join("current/corrupt").join(format!("blk_{id}")).exists())
}

/// Whether datanode `i` holds a finalized replica of block `id`.
fn holds(cluster: &MiniCluster, i: usize, id: u64) -> Result<bool> {
    Ok(cluster.replicas_of(id)?.iter().any(|(n, _)| *n == i))
}

/// The index of the datanode serving data on `port`.
fn datanode_at(cluster: &MiniCluster, port: u32) -> Result<usize> {
    (0..cluster.datanode_count())
        .find(|&i| cluster.datanode_data_addr(i).port() as u32 == port)
        .with_context(|| format!("no datanode serves port {port}"))
}

/// Flips one byte of a replica's data file on disk.
fn flip(data: &Path, at: usize) -> Result<()> {
    let mut bytes = std::fs::read(data)?;
    bytes[at] ^= 0x5a;
    std::fs::write(data, &bytes)?;
    Ok(())
}

/// (live good, corrupt) replicas fsck reports for `path`'s first block.
async fn fsck_counts(c: &Client, path: &str) -> Result<(u32, u32)> {
    let r = c.fsck(path).await?;
    let b = r
        .files
        .first()
        .and_then(|f| f.blocks.first())
        .with_context(|| format!("fsck lists no block of {path}"))?;
    Ok((b.live_replicas, b.corrupt_replicas))
}

/// Polls `done` every 100 ms until it holds, failing with `what` and the
/// daemons' logs after `limit`.
async fn wait_until<F, Fut>(
    cluster: &MiniCluster,
    what: &str,
    limit: Duration,
    mut done: F,
) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<bool>>,
{
    let deadline = Instant::now() + limit;
    while !done().await? {
        if Instant::now() > deadline {
            bail!("{what} not within {limit:?}\n{}", cluster.log_tails());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_reports_against_every_replica_delete_nothing() -> Result<()> {
    let cluster = MiniCluster::start().await?;
    let c = cluster.client().await?;
    let data = payload(MIB + 4321, 21);
    write_file(&c, "/forged", &data).await?;
    let id = block_ids(&c, "/forged").await?[0];
    cluster
        .wait_replicas(&[id], 3, |_| true, Duration::from_secs(10))
        .await?;

    // A buggy client, over the raw protocol, says every replica is bad.
    let located = c.get_block_locations("/forged", 0, 0).await?.blocks[0].clone();
    let block = located.block.context("located block without a block")?;
    let mut raw =
        ClientProtocolClient::connect(format!("http://{}", cluster.namenode_addr())).await?;
    for dn in &located.locations {
        raw.report_bad_blocks(ReportBadBlocksRequest {
            block: Some(block),
            datanode_id: dn.datanode_id.clone(),
            reason: "forged".into(),
        })
        .await?;
    }
    let after = c.get_block_locations("/forged", 0, 0).await?.blocks[0].clone();
    assert!(
        after.locations.len() == 3 && !after.corrupt,
        "block locations after three client reports: {after:?}"
    );

    // Each datanode checks its replica and finds it good; nothing is
    // marked, hidden or deleted.
    wait_until(
        &cluster,
        "every datanode verified its replica good",
        DEADLINE,
        || async {
            let mut good = 0;
            for i in 0..3 {
                if verified(&cluster, i, "good").await? >= 1.0 {
                    good += 1;
                }
            }
            Ok(good == 3)
        },
    )
    .await?;
    assert_eq!(fsck_counts(&c, "/forged").await?, (3, 0));
    assert_eq!(cluster.replicas_of(id)?.len(), 3, "a replica was deleted");
    assert!((0..3).all(|i| !quarantined(&cluster, i, id)));
    assert!(
        read_file(&c, "/forged").await? == data,
        "content after the reports"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_corrupt_replica_is_kept_until_replaced_then_deleted() -> Result<()> {
    let mut cluster = MiniCluster::builder().datanodes(4).start().await?;
    // The fourth node is away while the file is written and read, so the
    // block has no node to be copied to yet.
    cluster.kill_datanode(3);
    cluster.wait_live_datanodes(3).await?;
    let c = cluster.client().await?;
    let data = payload(MIB / 2 + 77, 22);
    write_file(&c, "/one", &data).await?;
    let id = block_ids(&c, "/one").await?[0];
    cluster
        .wait_replicas(&[id], 3, |_| true, Duration::from_secs(10))
        .await?;

    // Damage the replica the client reads first: the read is served by
    // another, and the client reports the bad one.
    let first = c.get_block_locations("/one", 0, 0).await?.blocks[0].locations[0].clone();
    let victim = datanode_at(&cluster, first.data_port)?;
    let (_, files) = cluster
        .replicas_of(id)?
        .into_iter()
        .find(|(i, _)| *i == victim)
        .context("the first location holds no replica")?;
    flip(&files.data, 1000)?;
    assert!(
        read_file(&c, "/one").await? == data,
        "read must return the good bytes"
    );

    // Its datanode verifies it, quarantines and reports it; the namenode
    // marks it and keeps it: two good replicas of three wanted.
    wait_until(
        &cluster,
        "the victim's own verdict marking its replica",
        DEADLINE,
        || async {
            Ok(verified(&cluster, victim, "corrupt").await? >= 1.0
                && quarantined(&cluster, victim, id)
                && fsck_counts(&c, "/one").await? == (2, 1))
        },
    )
    .await?;

    // The fourth node returns: the block is copied to it, and only then is
    // the bad copy deleted.
    cluster.restart_datanode(3).await?;
    wait_until(
        &cluster,
        "the replacement, then the deletion",
        DEADLINE,
        || async {
            // Quarantine first: a copy made before the deletion is already
            // there when the quarantined one is seen gone.
            let kept = quarantined(&cluster, victim, id);
            let copied = holds(&cluster, 3, id)?;
            assert!(
                kept || copied,
                "the bad replica went before a good one replaced it"
            );
            Ok(!kept && copied && fsck_counts(&c, "/one").await? == (3, 0))
        },
    )
    .await?;
    assert_eq!(cluster.replicas_of(id)?.len(), 3);
    assert!(read_file(&c, "/one").await? == data);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_replica_corrupt_keeps_them_all_and_reads_fail_at_once() -> Result<()> {
    let cluster = MiniCluster::start().await?;
    // Long enough that a reader waiting for locations would show.
    let mut cfg = cluster.client_config();
    cfg.locate_retry_deadline = Duration::from_secs(120);
    let c = Client::connect(cfg).await?;
    write_file(&c, "/all", &payload(MIB / 4, 23)).await?;
    let id = block_ids(&c, "/all").await?[0];
    cluster
        .wait_replicas(&[id], 3, |_| true, Duration::from_secs(10))
        .await?;
    for (_, r) in cluster.replicas_of(id)? {
        flip(&r.data, 10)?;
    }
    let expected = format!("all 3 replicas of block {id} failed checksum verification");
    let e = read_file(&c, "/all")
        .await
        .expect_err("corrupt data returned");
    assert!(format!("{e:#}").contains(&expected), "{e:#}");

    // Each datanode finds its replica bad: fsck says CORRUPT, and every
    // replica is kept (there is no good one to copy from).
    wait_until(
        &cluster,
        "fsck counting 3 corrupt replicas",
        Duration::from_secs(20),
        || async { Ok(fsck_counts(&c, "/all").await? == (0, 3)) },
    )
    .await?;
    for i in 0..3 {
        assert!(
            quarantined(&cluster, i, id),
            "datanode {i} lost its replica"
        );
    }

    // The namenode still lists all three, flagged, so a reader tries them
    // and fails at once, rather than waiting for locations.
    let located = c.get_block_locations("/all", 0, 0).await?.blocks[0].clone();
    assert!(
        located.locations.len() == 3 && located.corrupt,
        "{located:?}"
    );
    let again = tokio::time::timeout(Duration::from_secs(60), read_file(&c, "/all"))
        .await
        .context("a read of a block with every replica corrupt waited for locations")?;
    let e = again.expect_err("corrupt data returned");
    assert!(format!("{e:#}").contains(&expected), "{e:#}");
    Ok(())
}
