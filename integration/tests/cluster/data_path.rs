//! Round trips through the real pipeline and what lands on disk.

use std::io::SeekFrom;

use rfs_integration::{verify_replica, MiniCluster};
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use super::common::{block_ids, payload, read_file, write_file, MIB};

const CHUNK: usize = 512;
const PACKET: usize = 64 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_trip_replication_3_at_every_boundary() -> anyhow::Result<()> {
    let cluster = MiniCluster::start().await?;
    let client = cluster.client().await?;
    let sizes = [
        0,
        1,
        CHUNK - 1,
        CHUNK + 1,
        PACKET - 1,
        PACKET + 1,
        MIB - 1,
        MIB,
        MIB + 1,
        3 * MIB + MIB / 2,
    ];
    for (i, &size) in sizes.iter().enumerate() {
        let path = format!("/rt/file-{size}");
        let data = payload(size, i as u64);
        write_file(&client, &path, &data).await?;
        let status = client
            .get_file_info(&path)
            .await?
            .expect("file exists after close");
        assert_eq!(status.length, size as u64, "{path}: length");
        assert!(
            !status.under_construction,
            "{path}: still under construction after close"
        );
        let back = read_file(&client, &path).await?;
        assert!(
            back == data,
            "{path}: {} bytes read back differ from the {} written",
            back.len(),
            data.len()
        );

        // Every block has three finalized replicas whose checksums hold and
        // whose bytes are exactly that part of the file.
        let ids = block_ids(&client, &path).await?;
        assert_eq!(ids.len(), size.div_ceil(MIB), "{path}: block count");
        for (b, id) in ids.iter().enumerate() {
            let replicas = cluster.replicas_of(*id)?;
            let nodes: std::collections::BTreeSet<usize> =
                replicas.iter().map(|(dn, _)| *dn).collect();
            assert_eq!(nodes.len(), 3, "{path}: block {id} on datanodes {nodes:?}");
            let want = &data[b * MIB..((b + 1) * MIB).min(size)];
            for (dn, r) in &replicas {
                let on_disk = verify_replica(r)?;
                assert!(
                    on_disk == want,
                    "{path}: block {id} on dn{dn} holds other bytes"
                );
            }
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn positional_reads_and_seeks_cross_blocks() -> anyhow::Result<()> {
    let cluster = MiniCluster::start().await?;
    let client = cluster.client().await?;
    let data = payload(2 * MIB + 12345, 7);
    write_file(&client, "/seek", &data).await?;
    let mut r = client.open("/seek").await?;
    assert_eq!(r.len(), data.len() as u64);

    for &(pos, len) in &[
        (0usize, 10usize),
        (511, 3),
        (MIB - 5, 10),
        (2 * MIB, 12345),
        (777_777, 300_000),
    ] {
        let mut buf = vec![0u8; len];
        let n = r.read_at(pos as u64, &mut buf).await?;
        assert_eq!(n, len, "read_at({pos}, {len})");
        assert!(buf == data[pos..pos + len], "read_at({pos}, {len}) bytes");
    }
    // Past the end: short read, then nothing.
    let mut buf = vec![0u8; 100];
    assert_eq!(r.read_at(data.len() as u64 - 10, &mut buf).await?, 10);
    assert_eq!(r.read_at(data.len() as u64, &mut buf).await?, 0);

    r.seek(SeekFrom::Start(MIB as u64 - 3)).await?;
    let mut buf = vec![0u8; 6];
    r.read_exact(&mut buf).await?;
    assert_eq!(buf, data[MIB - 3..MIB + 3]);
    r.seek(SeekFrom::End(-4)).await?;
    let mut tail = Vec::new();
    r.read_to_end(&mut tail).await?;
    assert_eq!(tail, data[data.len() - 4..]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_on_different_files() -> anyhow::Result<()> {
    let cluster = MiniCluster::start().await?;
    let mut tasks = Vec::new();
    for i in 0..4u64 {
        let client = cluster.client().await?;
        tasks.push(tokio::spawn(async move {
            let data = payload(2 * MIB + 1000 * i as usize, 100 + i);
            let path = format!("/concurrent/{i}");
            write_file(&client, &path, &data).await?;
            anyhow::Ok((path, data))
        }));
    }
    let client = cluster.client().await?;
    for t in tasks {
        let (path, data) = t.await??;
        assert!(read_file(&client, &path).await? == data, "{path} differs");
    }
    assert_eq!(client.list("/concurrent").await?.len(), 4);
    Ok(())
}

/// Index of the datanode serving the first location of `path`'s block `b`.
async fn first_location(
    cluster: &MiniCluster,
    client: &rfs_client::Client,
    path: &str,
    b: usize,
) -> anyhow::Result<usize> {
    let locs = client.get_block_locations(path, 0, 0).await?;
    let first = &locs.blocks[b].locations[0];
    (0..cluster.datanode_count())
        .find(|&i| cluster.datanode_data_addr(i).port() as u32 == first.data_port)
        .ok_or_else(|| anyhow::anyhow!("location {first:?} is no datanode of the cluster"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flipped_byte_in_one_replica_is_detected_and_read_served_elsewhere() -> anyhow::Result<()> {
    let cluster = MiniCluster::start().await?;
    let client = cluster.client().await?;
    let data = payload(MIB + MIB / 2, 3);
    write_file(&client, "/corrupt", &data).await?;
    let ids = block_ids(&client, "/corrupt").await?;

    // Damage the replica the client will try first.
    let victim = first_location(&cluster, &client, "/corrupt", 0).await?;
    let (_, files) = cluster
        .replicas_of(ids[0])?
        .into_iter()
        .find(|(dn, _)| *dn == victim)
        .expect("victim holds a replica");
    let mut bytes = std::fs::read(&files.data)?;
    bytes[1000] ^= 0x20;
    std::fs::write(&files.data, &bytes)?;
    assert!(
        verify_replica(&files).is_err(),
        "the flip must break the on-disk checksum"
    );

    assert!(
        read_file(&client, "/corrupt").await? == data,
        "read must return the good bytes"
    );

    // The client reported the bad replica; once its datanode has verified
    // it and reported it bad, the namenode no longer offers it.
    let victim_port = cluster.datanode_data_addr(victim).port() as u32;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let locs = client.get_block_locations("/corrupt", 0, 0).await?;
        let ports: Vec<u32> = locs.blocks[0]
            .locations
            .iter()
            .map(|l| l.data_port)
            .collect();
        if !ports.contains(&victim_port) {
            assert_eq!(ports.len(), 2);
            return Ok(());
        }
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "corrupt replica on port {victim_port} still offered: {ports:?}\n{}",
            cluster.log_tails()
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_replica_corrupt_is_an_error_not_bad_data() -> anyhow::Result<()> {
    let cluster = MiniCluster::start().await?;
    let client = cluster.client().await?;
    write_file(&client, "/allbad", &payload(4096, 9)).await?;
    let ids = block_ids(&client, "/allbad").await?;
    for (_, files) in cluster.replicas_of(ids[0])? {
        let mut bytes = std::fs::read(&files.data)?;
        bytes[10] ^= 1;
        std::fs::write(&files.data, &bytes)?;
    }
    let err = read_file(&client, "/allbad")
        .await
        .expect_err("corrupt data must not be returned");
    assert!(
        format!("{err:#}").contains("checksum"),
        "error should say why: {err:#}"
    );
    Ok(())
}
