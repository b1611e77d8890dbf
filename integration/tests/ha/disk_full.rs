//! Name dirs that fill up (issue 14, item 11), on small tmpfs name dirs:
//! a member whose metadata write fails exits non-zero and the group goes
//! on without losing what it acknowledged; a leader below its free-space
//! reserve hands leadership to a member with room; with no such member it
//! refuses changes at once and still serves reads.

use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use rfs_client::Client;
use rfs_integration::{load::wait_for, require_tmpfs, HaCluster, Tmpfs, NN1, NN2};
use rfs_proto::rpc_error::RpcErrorKind;

use super::support::serial;

const MIB: u64 = 1024 * 1024;
/// How long the group may take to notice a full disk and act on it.
const NOTICE: Duration = Duration::from_secs(30);

fn tmpfs(cluster: &HaCluster, member: usize) -> &Tmpfs {
    cluster
        .name_dir_tmpfs(member)
        .expect("the builder put this member's name dir on a tmpfs")
}

/// Fails naming every path in `paths` that `client` does not find.
async fn check_exist(client: &Client, paths: &[String], whose: &str) -> Result<()> {
    let mut missing = Vec::new();
    for p in paths {
        if client.get_file_info(p).await?.is_none() {
            missing.push(p.as_str());
        }
    }
    ensure!(
        missing.is_empty(),
        "{} of {} acknowledged mkdirs missing on {whose}: {missing:?}",
        missing.len(),
        paths.len()
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_whose_metadata_write_fails_exits_non_zero_and_nothing_acknowledged_is_lost(
) -> Result<()> {
    require_tmpfs()?;
    let _serial = serial().await;
    let mut cluster = HaCluster::builder()
        .datanodes(0)
        .name_dir_reserved_mib(0)
        .tmpfs_name_dir(NN1, 32 * MIB)
        .start()
        .await?;
    cluster.transfer_leader(NN1).await?;
    let client = cluster.client().await?;
    let mut acked = Vec::new();
    for i in 0..5 {
        let p = format!("/before/{i}");
        client.mkdirs(&p, true).await?;
        acked.push(p);
    }

    // nn1 leads on a full disk: some write of its log or its store fails
    // (a few log records may still fit in the file's last page). Every
    // mkdir must be acknowledged, by nn1 or after failing over.
    let left = tmpfs(&cluster, NN1).fill_leaving(0)?;
    let filled = Instant::now();
    let mut after_fill = 0;
    let status = loop {
        let p = format!("/after/{after_fill}");
        client
            .mkdirs(&p, true)
            .await
            .with_context(|| format!("mkdir {p}"))?;
        acked.push(p);
        after_fill += 1;
        if !cluster.member_running(NN1) {
            break cluster.wait_member_exit(NN1, Duration::ZERO).await?;
        }
        if filled.elapsed() > NOTICE {
            bail!(
                "nn1 still runs {NOTICE:?} after its name dir filled ({left} bytes left); \
                 {after_fill} mkdirs acknowledged since\n{}\n{}",
                cluster.describe().await,
                cluster.log_tails()
            );
        }
    };
    eprintln!("nn1 exited with {status} after {after_fill} mkdirs on a full name dir");
    ensure!(status.code() == Some(1), "nn1 exited with {status}, not 1");
    let log = cluster.member_log(NN1)?;
    let last = log
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("");
    let name_dir = cluster.member_name_dir(NN1).display().to_string();
    ensure!(
        last.starts_with("namenode: ") && last.contains(&name_dir),
        "nn1's last line does not name the failed write in {name_dir}: {last:?}"
    );

    // The others go on, with everything acknowledged.
    let new = cluster.new_leader_other_than(NN1).await?;
    ensure!(new == NN2, "{} leads, not nn2", cluster.member_id(new));
    client.mkdirs("/after-exit", false).await?;
    acked.push("/after-exit".into());
    check_exist(&client, &acked, "the group").await?;

    // nn1 comes back once there is room, with its own copy intact.
    tmpfs(&cluster, NN1).unfill()?;
    cluster.start_member(NN1).await?;
    cluster.wait_caught_up(NN1).await?;
    cluster.transfer_leader(NN1).await?;
    let nn1 = Client::connect(cluster.client_config_for(NN1)).await?;
    check_exist(&nn1, &acked, "nn1 after its restart").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_low_on_disk_hands_leadership_to_a_member_with_room() -> Result<()> {
    require_tmpfs()?;
    let _serial = serial().await;
    let mut cluster = HaCluster::builder()
        .datanodes(0)
        .name_dir_reserved_mib(8)
        .tmpfs_name_dir(NN1, 32 * MIB)
        .start()
        .await?;
    cluster.transfer_leader(NN1).await?;
    let client = cluster.client().await?;
    client.mkdirs("/before", false).await?;

    let left = tmpfs(&cluster, NN1).fill_leaving(2 * MIB)?;
    let new = cluster
        .new_leader_other_than(NN1)
        .await
        .with_context(|| format!("nn1 has {left} bytes free, below its 8 MiB reserve"))?;
    ensure!(new == NN2, "{} leads, not nn2", cluster.member_id(new));
    // Changes go on through nn2; nn1 stays a follower that votes and
    // keeps its log.
    client.mkdirs("/after", false).await?;
    ensure!(cluster.member_running(NN1), "nn1 exited");
    let st = cluster.member_status(NN1).await?;
    ensure!(st.role == "follower" && st.low_on_disk, "nn1: {st:?}");
    ensure!(client.get_file_info("/before").await?.is_some());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_every_full_member_low_on_disk_changes_fail_at_once_and_reads_go_on() -> Result<()> {
    require_tmpfs()?;
    let _serial = serial().await;
    let mut cluster = HaCluster::builder()
        .datanodes(0)
        .name_dir_reserved_mib(8)
        .tmpfs_name_dir(NN1, 32 * MIB)
        .tmpfs_name_dir(NN2, 32 * MIB)
        .start()
        .await?;
    let leader = cluster.leader().await?;
    let other = if leader == NN1 { NN2 } else { NN1 };
    // A failover deadline far beyond the wait below: a refusal that
    // comes back in time was not a client giving up.
    let mut config = cluster.client_config();
    config.failover_deadline = Duration::from_secs(600);
    let client = Client::connect(config).await?;
    client.mkdirs("/kept/sub", true).await?;

    for member in [NN1, NN2] {
        tmpfs(&cluster, member).fill_leaving(2 * MIB)?;
    }
    let mut probe = 0;
    let refused = wait_for("a change refused for low disk space", NOTICE, || {
        probe += 1;
        let client = &client;
        async move {
            match client.mkdirs(&format!("/probe-{probe}"), false).await {
                Ok(_) => Ok(None),
                Err(e) => Ok(Some(e)),
            }
        }
    })
    .await?;
    let now = cluster.leader().await?;
    let leader_id = cluster.member_id(now);
    ensure!(
        refused.kind() == RpcErrorKind::LowOnDisk
            && refused
                .to_string()
                .starts_with(&format!("low on disk space on {leader_id}")),
        "expected \"low on disk space on {leader_id}\", got: {refused:?}"
    );
    // Reads go on.
    ensure!(client.get_file_info("/kept/sub").await?.is_some());
    let listed = client.list("/kept").await?;
    ensure!(listed.len() == 1, "{listed:?}");

    // Once a full member has room again, it takes over and changes work.
    tmpfs(&cluster, other).unfill()?;
    wait_for(
        "a change accepted once a full member has room",
        NOTICE,
        || {
            let client = &client;
            async move { Ok(client.mkdirs("/after-room", false).await.ok()) }
        },
    )
    .await?;
    let now = cluster.leader().await?;
    ensure!(
        now == other,
        "{} leads, not {}",
        cluster.member_id(now),
        cluster.member_id(other)
    );
    Ok(())
}
