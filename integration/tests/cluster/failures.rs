//! Crashes, restarts, hostile bytes and full disks.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use bytes::BytesMut;
use rfs_client::CreateOptions;
use rfs_integration::{verify_replica, MiniCluster};
use rfs_proto::transfer::{Frame, FrameCodec, Status};
use tokio::io::AsyncWriteExt;
use tokio_util::codec::Decoder;

use super::common::{block_ids, payload, read_file, write_file, MIB};

/// The first frame in `buf`, if a whole valid one is there.
fn first_frame(buf: &[u8]) -> Option<Frame> {
    FrameCodec::default()
        .decode(&mut BytesMut::from(buf))
        .ok()
        .flatten()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namenode_kill_9_keeps_every_acknowledged_change() -> anyhow::Result<()> {
    let mut cluster = MiniCluster::start().await?;
    let c = cluster.client().await?;
    let mut files = Vec::new();
    for i in 0..5u64 {
        let data = payload(i as usize * MIB / 2 + 100, i);
        let path = format!("/keep/f{i}");
        write_file(&c, &path, &data).await?;
        files.push((path, data));
    }
    c.mkdirs("/keep/empty/dir", true).await?;
    c.rename("/keep/f0", "/keep/renamed").await?;
    files[0].0 = "/keep/renamed".into();
    write_file(&c, "/keep/gone", b"x").await?;
    c.delete("/keep/gone", false).await?;
    let before = c.list("/keep").await?;

    cluster.restart_namenode().await?;
    cluster.wait_live_datanodes(3).await?;
    let c = cluster.client().await?;
    let after = c.list("/keep").await?;
    let names = |v: &Vec<rfs_client::FileStatus>| {
        v.iter()
            .map(|s| (s.path.clone(), s.length))
            .collect::<Vec<_>>()
    };
    assert_eq!(names(&after), names(&before));
    assert!(c.get_file_info("/keep/gone").await?.is_none());
    assert!(c.get_file_info("/keep/empty/dir").await?.is_some());
    for (path, data) in &files {
        assert!(read_file(&c, path).await? == *data, "{path} after restart");
    }
    // And the restarted namenode accepts new work: ids are not reissued.
    write_file(&c, "/keep/after", &payload(MIB + 1, 99)).await?;
    assert!(read_file(&c, "/keep/after").await? == payload(MIB + 1, 99));
    for (path, data) in &files {
        assert!(
            read_file(&c, path).await? == *data,
            "{path} after a new write"
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn datanode_restart_keeps_and_serves_its_blocks() -> anyhow::Result<()> {
    let mut cluster = MiniCluster::start().await?;
    let c = cluster.client().await?;
    let data = payload(2 * MIB + 7, 5);
    write_file(&c, "/dn-restart", &data).await?;
    let ids = block_ids(&c, "/dn-restart").await?;

    cluster.kill_datanode(0);
    cluster.restart_datanode(0).await?;
    for id in &ids {
        let on_dn0: Vec<_> = cluster
            .replicas_of(*id)?
            .into_iter()
            .filter(|(dn, _)| *dn == 0)
            .collect();
        assert_eq!(on_dn0.len(), 1, "block {id} survived the restart on dn0");
        verify_replica(&on_dn0[0].1)?;
    }
    // Only the restarted node is left: the file must come from it.
    cluster.kill_datanode(1);
    cluster.kill_datanode(2);
    assert!(read_file(&c, "/dn-restart").await? == data);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fewer_live_datanodes_than_replication_still_writes() -> anyhow::Result<()> {
    let mut cluster = MiniCluster::start().await?;
    cluster.kill_datanode(2);
    cluster.wait_live_datanodes(2).await?;
    let c = cluster.client().await?;
    let data = payload(MIB + 5, 1);
    write_file(&c, "/two", &data).await?;
    assert!(read_file(&c, "/two").await? == data);
    for id in block_ids(&c, "/two").await? {
        assert_eq!(cluster.replicas_of(id)?.len(), 2, "block {id}");
    }
    Ok(())
}

/// Sends `bytes` to `addr`, half-closes, and returns what came back.
fn poke(addr: std::net::SocketAddr, bytes: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let _ = s.write_all(bytes);
    let _ = s.shutdown(std::net::Shutdown::Write);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_on_data_and_rpc_ports_leaves_nodes_serving() -> anyhow::Result<()> {
    let cluster = MiniCluster::start().await?;
    let c = cluster.client().await?;
    write_file(&c, "/before", &payload(MIB + 3, 1)).await?;
    let dn = cluster.datanode_data_addr(0);
    let nn: std::net::SocketAddr = cluster.namenode_addr().parse()?;

    let oversized = {
        let mut f = b"RF\x01\x51".to_vec();
        f.extend_from_slice(&u32::MAX.to_be_bytes());
        f
    };
    let reply = tokio::task::spawn_blocking(move || poke(dn, &oversized)).await?;
    match first_frame(&reply) {
        Some(Frame::Response(r)) => {
            assert_eq!(r.status(), Status::ErrorInvalid);
            assert!(
                r.message.contains("exceeds"),
                "message names the problem: {}",
                r.message
            );
        }
        other => panic!("expected an error response to an oversized frame, got {other:?}"),
    }
    let mut junk: Vec<Vec<u8>> = vec![
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
        payload(100_000, 42),
        b"RF\x01\x51\x00\x00\x00\x10short".to_vec(),
        b"RF\x01\x02\x00\x00\x00\x30"
            .iter()
            .copied()
            .chain(std::iter::repeat_n(0xff, 0x30))
            .collect(),
    ];
    junk.push(Vec::new());
    for bytes in junk {
        let b2 = bytes.clone();
        tokio::task::spawn_blocking(move || poke(dn, &b2)).await?;
        tokio::task::spawn_blocking(move || poke(nn, &bytes)).await?;
    }
    // A connection that opens and goes silent must not block others either.
    let _idle = TcpStream::connect(dn)?;
    let _idle_nn = TcpStream::connect(nn)?;

    let data = payload(2 * MIB + 1, 2);
    write_file(&c, "/after", &data).await?;
    assert!(read_file(&c, "/after").await? == data);
    assert!(read_file(&c, "/before").await? == payload(MIB + 3, 1));
    Ok(())
}

/// Mounts a small tmpfs (we are root in CI and on dev machines).
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    fn mount(path: std::path::PathBuf, size: &str) -> anyhow::Result<Tmpfs> {
        std::fs::create_dir_all(&path)?;
        let st = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&path)
            .status()?;
        anyhow::ensure!(
            st.success(),
            "mounting a tmpfs at {} failed: this test needs root",
            path.display()
        );
        Ok(Tmpfs(path))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_disk_fails_the_write_clearly_and_keeps_finalized_blocks() -> anyhow::Result<()> {
    // Slow heartbeats keep the namenode's view of free space stale, so the
    // write reaches the datanode and meets the full disk itself.
    let mut b = MiniCluster::builder().datanodes(1);
    b.replication = 1;
    b.heartbeat_ms = 60_000;
    b.datanode_dead_ms = 600_000;
    let mut cluster = b.start().await?;
    let disk = Tmpfs::mount(cluster.root().join("small-disk"), "8m")?;
    cluster.set_datanode_dirs(0, vec![disk.0.clone()]);
    cluster.restart_datanode(0).await?;

    let c = cluster.client().await?;
    let kept = payload(2 * MIB, 11);
    write_file(&c, "/kept", &kept).await?;
    // Fill the disk behind the datanode's back.
    let filler = disk.0.join("filler");
    let mut f = std::fs::File::create(&filler)?;
    let chunk = vec![0u8; 64 * 1024];
    while f.write_all(&chunk).is_ok() {}
    drop(f);

    let mut w = c.create("/overflow", CreateOptions::default()).await?;
    let res = async {
        w.write_all(&payload(3 * MIB, 12)).await?;
        w.shutdown().await
    }
    .await;
    let err = res.expect_err("writing to a full disk must fail");
    assert!(
        err.to_string().to_lowercase().contains("no space"),
        "error should say no space: {err}"
    );

    std::fs::remove_file(&filler)?;
    assert!(
        read_file(&c, "/kept").await? == kept,
        "finalized blocks survive a full disk"
    );
    for id in block_ids(&c, "/kept").await? {
        for (_, r) in cluster.replicas_of(id)? {
            verify_replica(&r)?;
        }
    }
    drop(cluster);
    drop(disk);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_datanode_on_a_running_ones_data_dir_refuses_to_start() -> anyhow::Result<()> {
    let cluster = MiniCluster::start().await?;
    let c = cluster.client().await?;
    let dir = cluster.datanode_dirs(0)[0].clone();
    let addr_of = |report: &[rfs_client::DatanodeReportEntry]| -> Vec<(String, String)> {
        let mut v: Vec<_> = report
            .iter()
            .filter_map(|e| e.info.as_ref())
            .map(|i| (i.datanode_id.clone(), format!("{}:{}", i.ip, i.data_port)))
            .collect();
        v.sort();
        v
    };
    let before = addr_of(&c.datanode_report().await?);

    let port = |p: u16| format!("127.0.0.1:{p}");
    let mut second = std::process::Command::new(rfs_integration::bin_path("datanode")?)
        .args(["--namenode", &cluster.namenode_addr()])
        .args(["--data-dir", &dir.display().to_string()])
        .args(["--data-addr", &port(rfs_integration::free_port()?)])
        .args(["--http-addr", &port(rfs_integration::free_port()?)])
        .args(["--heartbeat-interval-ms", "200"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()?;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = second.try_wait()? {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = second.kill();
            let _ = second.wait();
            panic!(
                "a second datanode on {} kept running; the namenode now lists {:?} (was {before:?})",
                dir.display(),
                addr_of(&c.datanode_report().await?)
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let mut stderr = String::new();
    second
        .stderr
        .take()
        .expect("piped")
        .read_to_string(&mut stderr)?;
    assert!(!status.success(), "exit status {status}");
    assert!(
        stderr.contains(&format!("data directory {} is in use", dir.display()))
            && stderr.contains(&format!("process {}@", cluster.datanode_pid(0).unwrap())),
        "stderr: {stderr}"
    );
    // The running datanode keeps its id, its address and its data.
    assert_eq!(addr_of(&c.datanode_report().await?), before);
    let data = payload(MIB + 3, 14);
    write_file(&c, "/after-second", &data).await?;
    assert!(read_file(&c, "/after-second").await? == data);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_connections_neither_stall_reads_nor_stay_open() -> anyhow::Result<()> {
    let cluster = MiniCluster::start().await?;
    let c = cluster.client().await?;
    // One replica: a read has no other datanode to fall back on.
    let data = payload(MIB + 11, 15);
    let one = CreateOptions {
        replication: Some(1),
        ..CreateOptions::default()
    };
    rfs_integration::files::write_file_with(&c, "/one-replica", &data, one).await?;
    let located = c.get_block_locations("/one-replica", 0, 0).await?;
    let holder = located.blocks[0].locations[0].clone();
    let addr: std::net::SocketAddr = format!("{}:{}", holder.ip, holder.data_port).parse()?;

    // More silent connections than the datanode serves at once (512).
    let mut silent = Vec::new();
    for _ in 0..600 {
        silent.push(tokio::net::TcpStream::connect(addr).await?);
    }
    // The client gives up on a datanode after 10 s; before, the read
    // waited for a slot until a silent connection's 60 s idle timeout.
    let read = tokio::time::timeout(Duration::from_secs(30), read_file(&c, "/one-replica")).await;
    assert!(
        matches!(&read, Ok(Ok(d)) if *d == data),
        "read beside 600 silent connections: {:?}",
        read.map(|r| r.map(|d| d.len()))
    );

    // The newest silent connection is never evicted; the op-header
    // deadline (5 s) closes it, long before the 60 s idle timeout.
    let mut last = silent.pop().expect("600 connections");
    let mut buf = [0u8; 16];
    let closed = tokio::time::timeout(
        Duration::from_secs(30),
        tokio::io::AsyncReadExt::read(&mut last, &mut buf),
    )
    .await;
    assert!(
        matches!(closed, Ok(Ok(0)) | Ok(Err(_))),
        "a connection that sent nothing was still open after 30 s: {closed:?}"
    );
    Ok(())
}
