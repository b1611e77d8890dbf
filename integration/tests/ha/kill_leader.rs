//! kill -9 of the leader under load.

use std::time::{Duration, Instant};

use rfs_integration::{
    load::{verify_acks, Load},
    HaCluster,
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
