//! After a failover exactly one member is active, and the datanodes obey
//! the new leader's commands. (That they ignore a deposed leader's commands
//! is the datanode's unit test: here no deposed leader can be made to send
//! one while the datanodes still reach it.)

use std::time::Duration;

use anyhow::{ensure, Result};
use rfs_integration::{load::wait_for, metric_value, HaCluster};

use super::support::serial;
use crate::common::{block_ids, payload, write_file, MIB};

/// Exactly one member says it is leader, and it is `expected`.
async fn only_leader_is(cluster: &mut HaCluster, expected: usize) -> Result<()> {
    let mut leaders = Vec::new();
    for i in 0..cluster.member_count() {
        if !cluster.member_running(i) {
            continue;
        }
        let st = cluster.member_status(i).await?;
        if st.role == "leader" {
            leaders.push(st.id);
        }
    }
    ensure!(
        leaders == [cluster.member_id(expected)],
        "members saying leader: {leaders:?}, expected only {}\n{}",
        cluster.member_id(expected),
        cluster.describe().await
    );
    Ok(())
}

/// Each running member's `rfs_namenode_raft_leader` gauge is 1 on
/// `expected` alone (polled: the gauge follows the role).
async fn only_leader_active_in_metrics(cluster: &HaCluster, expected: usize) -> Result<()> {
    let others: Vec<usize> = (0..cluster.member_count())
        .filter(|&i| i != expected)
        .collect();
    wait_for(
        "rfs_namenode_raft_leader = 1 on the leader only",
        Duration::from_secs(10),
        || {
            let others = others.clone();
            async move {
                let gauge = |text: &str| metric_value(text, "rfs_namenode_raft_leader");
                let leader = gauge(&cluster.member_metrics(expected).await?);
                let mut gauges = Vec::new();
                for i in others {
                    // A killed member has no metrics: it is not active.
                    if let Ok(text) = cluster.member_metrics(i).await {
                        gauges.push(gauge(&text));
                    }
                }
                Ok((leader == Some(1.0) && gauges.iter().all(|g| *g == Some(0.0))).then_some(()))
            }
        },
    )
    .await
}

/// Data commands the datanodes dropped as fenced, summed.
async fn fenced_commands(cluster: &HaCluster) -> Result<f64> {
    let mut n = 0.0;
    for i in 0..cluster.datanode_count() {
        let text = cluster.datanode_metrics(i).await?;
        n += metric_value(&text, "rfs_datanode_fenced_commands_total").unwrap_or(0.0);
    }
    Ok(n)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_failover_one_member_is_active_and_its_block_deletions_are_obeyed() -> Result<()> {
    let _serial = serial().await;
    let mut cluster = HaCluster::start().await?;
    let client = cluster.client().await?;
    write_file(&client, "/fence/f", &payload(2 * MIB + 5, 3)).await?;
    let ids = block_ids(&client, "/fence/f").await?;
    ensure!(ids.len() == 3, "blocks: {ids:?}");
    let all_replicas = |c: &HaCluster| -> Result<usize> {
        let mut n = 0;
        for id in &ids {
            n += c.replicas_of(*id)?.len();
        }
        Ok(n)
    };
    ensure!(all_replicas(&cluster)? == 9, "3 blocks × 3 replicas");
    let old = cluster.leader().await?;
    only_leader_is(&mut cluster, old).await?;
    only_leader_active_in_metrics(&cluster, old).await?;

    cluster.kill_member(old);
    let new = cluster.new_leader_other_than(old).await?;
    let new_term = cluster.member_status(new).await?.term;
    // The deposed leader comes back: it must follow, not lead.
    cluster.start_member(old).await?;
    wait_for(
        "the old leader following at the new term",
        Duration::from_secs(20),
        || {
            let c = &cluster;
            async move {
                let st = c.member_status(old).await?;
                Ok((st.role == "follower" && st.term >= new_term).then_some(()))
            }
        },
    )
    .await?;
    only_leader_is(&mut cluster, new).await?;
    only_leader_active_in_metrics(&cluster, new).await?;

    // A delete through the new leader reaches the datanodes as commands.
    ensure!(client.delete("/fence/f", false).await?, "delete");
    wait_for(
        "every replica of the deleted file removed",
        Duration::from_secs(30),
        || {
            let n = all_replicas(&cluster);
            async move { n.map(|n| (n == 0).then_some(())) }
        },
    )
    .await?;
    only_leader_is(&mut cluster, new).await?;
    eprintln!(
        "data commands the datanodes dropped as fenced: {}",
        fenced_commands(&cluster).await?
    );
    Ok(())
}
