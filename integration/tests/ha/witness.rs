//! The witness votes but never leads, and the group survives losing any
//! one member, the witness included.

use anyhow::{ensure, Result};
use rfs_integration::{HaCluster, NN1, NN2, WITNESS};
use rfs_proto::ha::TransferLeaderRequest;

use super::support::serial;

/// Checks the witness says it is one, and is not leading.
async fn witness_follows(cluster: &HaCluster) -> Result<()> {
    let s = cluster.member_status(WITNESS).await?;
    ensure!(s.witness, "member {WITNESS} should say it is the witness");
    ensure!(s.role != "leader", "the witness leads: {s:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_witness_never_leads_and_any_one_member_may_fail() -> Result<()> {
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
        let leader = cluster.new_leader_other_than(victim).await?;
        ensure!(
            leader == survivor,
            "round {k}: member {leader} leads after {victim} died, expected {survivor}"
        );
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
