//! The witness votes but never keeps the lead (nor serves), and the group
//! survives losing any one member, the witness included.

use anyhow::{ensure, Result};
use rfs_integration::{load::wait_for, HaCluster, NN1, NN2, WITNESS};
use rfs_proto::ha::TransferLeaderRequest;

use std::time::Duration;

use super::support::serial;

/// Checks the witness says it is one, and is not leading.
async fn witness_follows(cluster: &HaCluster) -> Result<()> {
    let s = cluster.member_status(WITNESS).await?;
    ensure!(s.witness, "member {WITNESS} should say it is the witness");
    ensure!(s.role != "leader", "the witness leads: {s:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_witness_never_keeps_the_lead_and_any_one_member_may_fail() -> Result<()> {
    let _serial = serial().await;
    let mut cluster = HaCluster::builder().datanodes(0).start().await?;
    let client = cluster.client().await?;

    // Leadership cannot be handed to the witness.
    let leader = cluster.leader().await?;
    let refused = cluster
        .admin(leader)
        .await?
        .transfer_leader(TransferLeaderRequest {
            target_id: "witness".into(),
        })
        .await
        .expect_err("transfer to the witness must be refused");
    ensure!(
        refused.message().contains("witness"),
        "unexpected refusal: {}",
        refused.message()
    );

    // Each full member dies in turn: the other one leads (with the
    // witness's vote), never the witness, and mutations go on.
    for (k, victim) in [NN1, NN2, NN1].into_iter().enumerate() {
        cluster.kill_member(victim);
        let survivor = if victim == NN1 { NN2 } else { NN1 };
        cluster.new_leader_other_than(victim).await?;
        // The witness may lead for an instant (when it held entries the
        // survivor lacked), only to hand over: the survivor ends up leading.
        let c = &cluster;
        wait_for(
            &format!("round {k}: {survivor} leading after {victim} died"),
            Duration::from_secs(10),
            || async move {
                let s = c.member_status(survivor).await?;
                Ok((s.role == "leader").then_some(()))
            },
        )
        .await?;
        client.mkdirs(&format!("/w/round{k}"), true).await?;
        witness_follows(&cluster).await?;
        cluster.start_member(victim).await?;
        cluster.wait_caught_up(victim).await?;
    }

    // The witness dies: nn1 and nn2 still form a majority and commit.
    cluster.kill_member(WITNESS);
    client.mkdirs("/w/without-witness", true).await?;
    cluster.start_member(WITNESS).await?;
    cluster.wait_caught_up(WITNESS).await?;
    witness_follows(&cluster).await?;

    for k in 0..3 {
        ensure!(client
            .get_file_info(&format!("/w/round{k}"))
            .await?
            .is_some());
    }
    ensure!(client.get_file_info("/w/without-witness").await?.is_some());
    // And the witness's own copy of the log caught up with all of it.
    let leader = cluster.leader().await?;
    let commit = cluster.member_status(leader).await?.commit_index;
    let witness = cluster.member_status(WITNESS).await?;
    ensure!(
        witness.applied_index >= commit,
        "witness applied {} < leader commit {commit}",
        witness.applied_index
    );
    Ok(())
}

/// The case that forces a witness to lead: nn1 misses entries that the
/// leader nn2 and the witness committed, then nn2 dies. Only the witness
/// holds everything, so only it can win; it must hand over to nn1 (after
/// catching it up) rather than leave the group leaderless.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_witness_holding_the_longest_log_hands_it_to_a_full_member() -> Result<()> {
    let _serial = serial().await;
    let mut cluster = HaCluster::builder().datanodes(0).start().await?;
    cluster.leader().await?;
    cluster.transfer_leader(NN2).await?;
    let client = cluster.client().await?;
    client.mkdirs("/h/before", true).await?;
    cluster.wait_caught_up(NN1).await?;

    cluster.pause_member(NN1, true)?;
    for k in 0..20 {
        client
            .mkdirs(&format!("/h/while-nn1-paused/{k}"), true)
            .await?;
    }
    cluster.kill_member(NN2);
    cluster.pause_member(NN1, false)?;

    let c = &cluster;
    wait_for(
        "nn1 leading with the witness's entries",
        Duration::from_secs(20),
        || async move {
            let s = c.member_status(NN1).await?;
            Ok((s.role == "leader").then_some(()))
        },
    )
    .await?;
    for k in 0..20 {
        ensure!(
            client
                .get_file_info(&format!("/h/while-nn1-paused/{k}"))
                .await?
                .is_some(),
            "acknowledged mkdir {k} lost after the handover"
        );
    }
    witness_follows(&cluster).await?;
    client.mkdirs("/h/after", true).await?;
    Ok(())
}
