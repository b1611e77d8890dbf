//! Every member restarted at once; one member wiped and rebuilt from a
//! snapshot plus the log.

use std::time::Duration;

use anyhow::{ensure, Result};
use rfs_client::{Client, ClientConfig};
use rfs_integration::{load::wait_for, metric_value, HaCluster, NN1, NN2};

use super::support::{diff_namespaces, namespace, serial};
use crate::common::{block_ids, payload, read_file, write_file, MIB};

/// Files every test here writes: (path, payload seed, length).
const FILES: [(&str, u64, usize); 3] = [
    ("/keep/multi-block", 1, 2 * MIB + 17),
    ("/keep/small", 2, 4000),
    ("/keep/empty", 3, 0),
];

async fn write_files(client: &Client) -> Result<()> {
    for (path, seed, len) in FILES {
        write_file(client, path, &payload(len, seed)).await?;
    }
    client.mkdirs("/keep/dir/sub", true).await?;
    write_file(client, "/keep/to-rename", b"renamed").await?;
    client.rename("/keep/to-rename", "/keep/renamed").await?;
    write_file(client, "/keep/to-delete", b"deleted").await?;
    client.delete("/keep/to-delete", false).await?;
    Ok(())
}

async fn check_files(client: &Client) -> Result<()> {
    for (path, seed, len) in FILES {
        ensure!(
            read_file(client, path).await? == payload(len, seed),
            "{path}: content differs"
        );
    }
    ensure!(read_file(client, "/keep/renamed").await? == b"renamed");
    ensure!(client.get_file_info("/keep/to-rename").await?.is_none());
    ensure!(client.get_file_info("/keep/to-delete").await?.is_none());
    ensure!(client.get_file_info("/keep/dir/sub").await?.is_some());
    Ok(())
}

/// `n` mkdirs `<prefix>/d<k>` from 4 concurrent clients.
async fn many_mkdirs(config: &ClientConfig, prefix: &str, n: usize) -> Result<()> {
    let mut tasks = Vec::new();
    for t in 0..4 {
        let (config, prefix) = (config.clone(), prefix.to_string());
        tasks.push(tokio::spawn(async move {
            let c = Client::connect(config).await?;
            for k in (t..n).step_by(4) {
                c.mkdirs(&format!("{prefix}/d{k}"), true).await?;
            }
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_of_every_member_at_once_keeps_the_namespace() -> Result<()> {
    let _serial = serial().await;
    let mut cluster = HaCluster::start().await?;
    let client = cluster.client().await?;
    write_files(&client).await?;
    let before = namespace(&client).await?;

    cluster.kill_all_members();
    cluster.start_members(&[0, 1, 2]).await?;
    cluster.leader().await?;
    cluster.wait_live_datanodes(3).await?;
    let client = cluster.client().await?;
    let after = namespace(&client).await?;
    ensure!(
        after == before,
        "namespace changed across the restart:\n{}",
        diff_namespaces(&before, &after)
    );
    check_files(&client).await?;
    // New ids do not collide with old ones.
    let data = payload(MIB + 3, 9);
    write_file(&client, "/keep/after-restart", &data).await?;
    ensure!(read_file(&client, "/keep/after-restart").await? == data);
    check_files(&client).await?;
    Ok(())
}

/// SIGTERM, as `quickstart.sh stop` sends it, stops a member at once and
/// cleanly: the long-lived raft streams its peers keep open to it end with
/// the shutdown instead of holding it for the whole grace period.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_asked_to_stop_exits_cleanly_without_waiting_out_its_grace() -> Result<()> {
    let _serial = serial().await;
    let mut cluster = HaCluster::start().await?;
    let client = cluster.client().await?;
    write_files(&client).await?;
    let leader = cluster.leader().await?;
    let follower = if leader == NN1 { NN2 } else { NN1 };
    for member in [follower, leader] {
        cluster.terminate_member(member)?;
        let status = cluster
            .wait_member_exit(member, Duration::from_secs(30))
            .await?;
        let log = cluster.member_log(member)?;
        ensure!(status.success(), "{member}: {status}\n{log}");
        ensure!(
            log.contains("namenode stopped cleanly") && !log.contains("RPCs still running"),
            "member {member} did not stop at once:\n{log}"
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wiped_member_is_rebuilt_from_a_snapshot_plus_the_log() -> Result<()> {
    let _serial = serial().await;
    const SNAPSHOT_ENTRIES: u64 = 200;
    let mut cluster = HaCluster::builder()
        .snapshot_entries(SNAPSHOT_ENTRIES)
        .start()
        .await?;
    let client = cluster.client().await?;
    write_files(&client).await?;
    let blocks = block_ids(&client, FILES[0].0).await?;
    let replicas = |c: &HaCluster| -> Result<usize> {
        let mut n = 0;
        for id in &blocks {
            n += c.replicas_of(*id)?.len();
        }
        Ok(n)
    };
    let replicas_before = replicas(&cluster)?;
    let leader = cluster.leader().await?;
    let wiped = if leader == NN1 { NN2 } else { NN1 };
    cluster.wipe_member(wiped)?;

    // More entries than a snapshot's worth while it is gone: the leader
    // compacts its log, so the wiped member needs the snapshot.
    many_mkdirs(&cluster.client_config(), "/many", 300).await?;
    let compacted = wait_for(
        "the leader's log compacted",
        Duration::from_secs(20),
        || {
            let c = &cluster;
            async move {
                let st = c.member_status(leader).await?;
                Ok((st.snapshot_index > 0).then_some(st))
            }
        },
    )
    .await?;
    eprintln!("leader before the wiped member returns: {compacted:?}");

    cluster.start_member(wiped).await?;
    cluster.wait_caught_up(wiped).await?;
    let st = cluster.member_status(wiped).await?;
    ensure!(
        st.snapshot_index > 0,
        "{} caught up without a snapshot: {st:?}",
        cluster.member_id(wiped)
    );
    // A member that does not know a block yet may answer its report with
    // a delete; not being the leader, it must not be obeyed.
    let mut fenced = 0.0;
    for i in 0..cluster.datanode_count() {
        let text = cluster.datanode_metrics(i).await?;
        fenced += metric_value(&text, "rfs_datanode_fenced_commands_total").unwrap_or(0.0);
    }
    ensure!(
        replicas(&cluster)? == replicas_before,
        "replicas of {} went from {replicas_before} to {} ({fenced} commands fenced)",
        FILES[0].0,
        replicas(&cluster)?
    );
    eprintln!("data commands the datanodes dropped as fenced: {fenced}");
    // And the log after it.
    many_mkdirs(&cluster.client_config(), "/after", 20).await?;
    write_file(&client, "/after/file", &payload(MIB + 1, 7)).await?;
    cluster.wait_caught_up(wiped).await?;

    let expected = namespace(&client).await?;
    cluster.transfer_leader(wiped).await?;
    let pinned = Client::connect(cluster.client_config_for(wiped)).await?;
    let served = namespace(&pinned).await?;
    ensure!(
        served == expected,
        "the rebuilt member serves a different namespace:\n{}",
        diff_namespaces(&expected, &served)
    );
    check_files(&pinned).await?;
    ensure!(read_file(&pinned, "/after/file").await? == payload(MIB + 1, 7));
    Ok(())
}
