//! kill -9 of the leader under load.

use std::time::{Duration, Instant};

use rfs_integration::{
    load::{verify_acks, wait_for, Load},
    metric_value, HaCluster, HaClusterBuilder, NN1, NN2, WITNESS,
};

use super::support::serial;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_leader_under_load_loses_and_duplicates_no_acknowledged_op() -> anyhow::Result<()> {
    let _serial = serial().await;
    let mut cluster = HaCluster::start().await?;
    let old = cluster.leader().await?;
    let load = Load::start(cluster.client_config(), "/load", 4);
    load.wait_acked(8, Duration::from_secs(30)).await?;

    let acked_at_kill = load.acked();
    let killed_at = Instant::now();
    cluster.kill_member(old);
    let new = cluster.new_leader_other_than(old).await?;
    eprintln!(
        "{} killed after {acked_at_kill} acks; {} leader {:?} later",
        cluster.member_id(old),
        cluster.member_id(new),
        killed_at.elapsed()
    );
    // The load goes on through the new leader.
    load.wait_acked(acked_at_kill + 12, Duration::from_secs(40))
        .await?;
    let (logs, errors) = load.finish().await?;

    let client = cluster.client().await?;
    let verified = verify_acks(&client, "/load", &logs).await;
    assert!(
        errors.is_empty(),
        "errors surfaced to clients across the failover:\n{}",
        errors.join("\n")
    );
    verified?;

    // The killed member comes back as a follower and catches up.
    cluster.start_member(old).await?;
    cluster.wait_caught_up(old).await?;
    let st = cluster.member_status(old).await?;
    assert_eq!(st.role, "follower", "{st:?}");
    Ok(())
}

/// kill -9 of the leader while it frees a large `rm -r` step by step
/// (`delete_step` 1 here, so 801 steps): the new leader carries the
/// reclaim on to the end, every member ends with no detached subtree, and
/// nothing outside the deleted directory changes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_leader_finishes_freeing_what_a_killed_leader_began() -> anyhow::Result<()> {
    let _serial = serial().await;
    let mut cluster = HaClusterBuilder {
        extra_namenode_args: vec!["--delete-step".into(), "1".into()],
        ..HaClusterBuilder::default()
    }
    .start()
    .await?;
    let client = cluster.client().await?;
    client.mkdirs("/kept", true).await?;
    let mut tasks = Vec::new();
    for t in 0..4 {
        let config = cluster.client_config();
        tasks.push(tokio::spawn(async move {
            let c = rfs_client::Client::connect(config).await?;
            for k in (t..800).step_by(4) {
                c.mkdirs(&format!("/big/d{k}"), true).await?;
            }
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    let metric = |text: &str, name: &str| metric_value(text, name).unwrap_or(-1.0);
    let old = cluster.leader().await?;
    assert!(client.delete("/big", true).await?);
    assert!(client.get_file_info("/big").await?.is_none());
    // Some steps done, far from all: then the leader dies.
    let c = &cluster;
    wait_for(
        "the first reclaim steps",
        Duration::from_secs(20),
        || async move {
            let text = c.member_metrics(old).await?;
            Ok((metric(&text, "rfs_namenode_reclaim_steps_total") >= 20.0).then_some(()))
        },
    )
    .await?;
    cluster.kill_member(old);
    let new = cluster.new_leader_other_than(old).await?;
    let c = &cluster;
    let text = wait_for(
        "the new leader to free the rest",
        Duration::from_secs(60),
        || async move {
            let text = c.member_metrics(new).await?;
            Ok((metric(&text, "rfs_namenode_detached_subtrees") == 0.0
                && metric(&text, "rfs_namenode_reclaim_steps_total") > 0.0)
                .then_some(text))
        },
    )
    .await?;
    let freed = metric(&text, "rfs_namenode_reclaimed_inodes_total");
    assert!(freed > 0.0 && freed < 801.0, "the new leader freed {freed}");
    cluster.start_member(old).await?;
    cluster.wait_caught_up(old).await?;
    for m in [NN1, NN2, WITNESS] {
        let c = &cluster;
        wait_for(
            "no detached subtree left",
            Duration::from_secs(20),
            || async move {
                let text = c.member_metrics(m).await?;
                Ok((metric(&text, "rfs_namenode_detached_subtrees") == 0.0).then_some(()))
            },
        )
        .await?;
    }
    let client = cluster.client().await?;
    assert!(client.get_file_info("/kept").await?.is_some());
    assert!(client.get_file_info("/big").await?.is_none());
    let summary = client.content_summary("/").await?;
    assert_eq!(summary.directory_count, 2, "/ and /kept");
    Ok(())
}
