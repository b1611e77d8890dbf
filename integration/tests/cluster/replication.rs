//! Re-replication: a dead datanode's blocks are copied back to the file's
//! replication on other nodes, excess replicas are trimmed when it
//! returns, and `setrep` lowers and raises replica counts the same way; a
//! corrupt replica is found by the scanner, replaced and deleted, and fsck
//! and `dfs admin report` show what happens.

use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use rfs_integration::files::report_outcome;
use rfs_integration::MiniCluster;

use super::common::{block_ids, payload, read_file, write_file, MIB};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_datanode_blocks_are_re_replicated_and_excess_trimmed_on_return() -> Result<()> {
    let mut cluster = MiniCluster::builder().datanodes(4).start().await?;
    cluster.wait_live_datanodes(4).await?;
    let c = cluster.client().await?;
    let data = payload(3 * MIB + 123, 7);
    write_file(&c, "/r/f", &data).await?;
    let ids = block_ids(&c, "/r/f").await?;
    let all = |_| true;
    let placed = cluster
        .wait_replicas(&ids, 3, all, Duration::from_secs(10))
        .await?;

    // The node holding the first block's first replica dies for good.
    let victim = placed[0][0];
    cluster.kill_datanode(victim);
    let others = |i| i != victim;
    // Dead after 3 s, then copies from the survivors.
    cluster
        .wait_replicas(&ids, 3, others, Duration::from_secs(40))
        .await?;
    assert_eq!(
        read_file(&c, "/r/f").await?,
        data,
        "content after re-replication"
    );

    // It comes back with its old replicas: each block now has one too many
    // until the namenode trims them.
    cluster.restart_datanode(victim).await?;
    cluster.wait_live_datanodes(4).await?;
    cluster
        .wait_replicas(&ids, 3, all, Duration::from_secs(30))
        .await?;

    // setrep lowers and raises through the same monitor.
    c.set_replication("/r/f", 2).await?;
    cluster
        .wait_replicas(&ids, 2, all, Duration::from_secs(30))
        .await?;
    c.set_replication("/r/f", 4).await?;
    cluster
        .wait_replicas(&ids, 4, all, Duration::from_secs(30))
        .await?;
    assert_eq!(read_file(&c, "/r/f").await?, data, "content after setrep");
    let n = data.len() as u64;
    report_outcome("datanode kill -9 holding replicas; re-replicated", n, n);
    Ok(())
}

/// Runs the built `dfs` against `cluster`; (exit ok, stdout, stderr).
fn dfs(cluster: &MiniCluster, args: &[&str]) -> Result<(bool, String, String)> {
    let out = std::process::Command::new(rfs_integration::bin_path("dfs")?)
        .args(args)
        .env("RFS_NAMENODE", cluster.namenode_addr())
        .env_remove("RFS_CONF")
        .env("XDG_CACHE_HOME", super::dfs::cache_dir())
        .output()?;
    Ok((
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_replica_is_found_reported_replaced_and_fsck_tracks_it() -> Result<()> {
    let mut cluster = MiniCluster::builder().datanodes(4).start().await?;
    cluster.wait_live_datanodes(4).await?;
    let c = cluster.client().await?;
    let data = payload(2 * MIB - 5, 11);
    write_file(&c, "/c/f", &data).await?;
    let ids = block_ids(&c, "/c/f").await?;
    let all = |_| true;
    let placed = cluster
        .wait_replicas(&ids, 3, all, Duration::from_secs(10))
        .await?;

    let (ok, out, err) = dfs(&cluster, &["fsck", "/c", "-files", "-blocks", "-locations"])?;
    assert!(ok, "fsck of a healthy tree fails: {out}{err}");
    assert!(
        out.contains("/c/f 2097147 bytes, replicated: replication=3, 2 block(s):  OK"),
        "{out}"
    );
    assert!(out.contains("Live_repl=3 ["), "{out}");
    assert!(out.contains("is HEALTHY"), "{out}");
    let (ok, out, err) = dfs(&cluster, &["admin", "report"])?;
    assert!(
        ok && out.contains("Live datanodes (4):") && out.contains("Dead datanodes (0):"),
        "{out}{err}"
    );

    // Flip a byte of one replica on disk; the datanode's scanner finds it
    // on its first pass after a restart, quarantines and reports it.
    let victim = placed[0][0];
    let replica = cluster
        .replicas_of(ids[0])?
        .into_iter()
        .find(|(i, _)| *i == victim)
        .expect("victim holds block 0")
        .1;
    let mut bytes = std::fs::read(&replica.data)?;
    bytes[1000] ^= 0x5a;
    std::fs::write(&replica.data, &bytes)?;
    cluster.restart_datanode(victim).await?;

    // Replaced from a good copy (possibly onto the same, otherwise healthy
    // node once its bad copy is gone); the bad one is deleted.
    cluster
        .wait_replicas(&ids[..1], 3, all, Duration::from_secs(30))
        .await?;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let r = c.fsck("/c").await?;
        let b = &r.files[0].blocks[0];
        let quarantined: usize = cluster
            .datanode_dirs(victim)
            .iter()
            .map(|d| std::fs::read_dir(d.join("current/corrupt")).map_or(0, |e| e.count()))
            .sum();
        if b.live_replicas == 3 && quarantined == 0 && cluster.replicas_of(ids[0])?.len() == 3 {
            break;
        }
        if std::time::Instant::now() > deadline {
            bail!(
                "block 0 not repaired: {b:?}, {quarantined} quarantined files\n{}",
                cluster.log_tails()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(read_file(&c, "/c/f").await?, data);
    let (ok, out, _) = dfs(&cluster, &["fsck", "/"])?;
    assert!(
        ok && out.contains("Corrupt blocks:\t0") && out.contains("is HEALTHY"),
        "{out}"
    );
    let n = data.len() as u64;
    report_outcome("bytes flipped in one replica on disk; repaired", n, n);

    // With every replica of a block corrupt, fsck says CORRUPT (exit 1)
    // and a read fails with a corruption error instead of returning data.
    for (_, r) in cluster.replicas_of(ids[1])? {
        let mut bytes = std::fs::read(&r.data)?;
        bytes[10] ^= 0xff;
        std::fs::write(&r.data, &bytes)?;
    }
    let read = read_file(&c, "/c/f").await;
    let e = read.expect_err("reading a block whose replicas are all corrupt must fail");
    assert!(
        format!("{e:#}").to_lowercase().contains("corrupt")
            || format!("{e:#}").to_lowercase().contains("checksum"),
        "{e:#}"
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let (ok, out, err) = dfs(&cluster, &["fsck", "/c", "-blocks"])?;
        if !ok && out.contains("is CORRUPT") && out.contains(" CORRUPT") {
            assert!(err.contains("corrupt"), "{err}");
            break;
        }
        if std::time::Instant::now() > deadline {
            bail!("fsck never said CORRUPT: {out}{err}");
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_decommissioned_datanode_is_drained_before_it_says_so() -> Result<()> {
    // One file per replication pass: draining is only settled once a
    // cycle over every file has ended.
    let mut builder = MiniCluster::builder().datanodes(4);
    builder.extra_namenode_args = vec!["--replication-files-per-pass".into(), "1".into()];
    let mut cluster = builder.start().await?;
    cluster.wait_live_datanodes(4).await?;
    let c = cluster.client().await?;
    let data = payload(3 * MIB + 1, 5);
    write_file(&c, "/d/f", &data).await?;
    let mut ids = block_ids(&c, "/d/f").await?;
    for name in ["/d/s1", "/d/s2", "/d/wide"] {
        write_file(&c, name, &payload(1000, 6)).await?;
    }
    // A file on every node: while it asks for 4 replicas, no node can
    // leave without leaving it short.
    let (ok, out, err) = dfs(&cluster, &["setrep", "4", "/d/wide"])?;
    assert!(ok, "{out}{err}");
    let wide = block_ids(&c, "/d/wide").await?;
    let all = |_| true;
    cluster
        .wait_replicas(&wide, 4, all, Duration::from_secs(10))
        .await?;
    for name in ["/d/s1", "/d/s2", "/d/wide"] {
        ids.extend(block_ids(&c, name).await?);
    }
    let placed = cluster
        .wait_replicas(&ids[..ids.len() - 1], 3, all, Duration::from_secs(10))
        .await?;
    let victim = placed[0][0];
    let addr = cluster.datanode_data_addr(victim).to_string();

    let (ok, out, err) = dfs(&cluster, &["admin", "decommission", &addr])?;
    assert!(ok && out.contains("is decommissioning"), "{out}{err}");
    // The other files' blocks reach 3 replicas elsewhere, yet over several
    // whole cycles the node stays draining: /d/wide still needs it.
    let others = |i| i != victim;
    cluster
        .wait_replicas(&ids[..ids.len() - 1], 3, others, Duration::from_secs(30))
        .await?;
    let watch_until = Instant::now() + Duration::from_secs(4);
    while Instant::now() < watch_until {
        let (_, out, _) = dfs(&cluster, &["admin", "report"])?;
        assert!(
            !out.contains("Decommission status: decommissioned"),
            "reported decommissioned while /d/wide needs the node:\n{out}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Once it asks for 3, every block has 3 replicas on the other three
    // nodes, and only then does the report call the node decommissioned.
    let (ok, out, err) = dfs(&cluster, &["setrep", "3", "/d/wide"])?;
    assert!(ok, "{out}{err}");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, out, _) = dfs(&cluster, &["admin", "report"])?;
        if out.contains("Decommission status: decommissioned") {
            for id in &ids {
                let elsewhere = cluster
                    .replicas_of(*id)?
                    .iter()
                    .filter(|(i, _)| others(*i))
                    .count();
                assert!(
                    elsewhere >= 3,
                    "reported decommissioned while block {id} has {elsewhere} replicas elsewhere"
                );
            }
            break;
        }
        if Instant::now() > deadline {
            bail!("never reported decommissioned:\n{out}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // New blocks avoid it; switching it off loses nothing.
    write_file(&c, "/d/g", &data).await?;
    for id in block_ids(&c, "/d/g").await? {
        assert!(
            cluster.replicas_of(id)?.iter().all(|(i, _)| *i != victim),
            "a new block went to the decommissioned node"
        );
    }
    cluster.kill_datanode(victim);
    assert_eq!(read_file(&c, "/d/f").await?, data);
    let (ok, out, err) = dfs(&cluster, &["admin", "decommission", "no-such-node"])?;
    assert!(!ok && err.contains("no-such-node"), "{out}{err}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decommission_errors_name_the_datanode_and_the_reason() -> Result<()> {
    let cluster = MiniCluster::builder().datanodes(2).start().await?;
    let c = cluster.client().await?;
    let (ok, out, err) = dfs(&cluster, &["admin", "decommission", "nope"])?;
    assert!(!ok, "{out}{err}");
    assert_eq!(
        err.trim(),
        "dfs: no datanode nope: give its id or its data address ip:port, as `dfs admin report` lists them"
    );
    for i in 0..2 {
        let addr = cluster.datanode_data_addr(i).to_string();
        let (ok, out, err) = dfs(&cluster, &["admin", "decommission", &addr])?;
        assert!(ok && out.contains("is decommissioning"), "{out}{err}");
    }
    let failed = write_file(&c, "/nowhere", b"x")
        .await
        .err()
        .map(|e| e.to_string());
    assert!(
        failed.as_deref().is_some_and(|e| e.contains(
            "/nowhere: cannot place a new block: all 2 live datanodes are decommissioning"
        )),
        "{failed:?}"
    );
    Ok(())
}
