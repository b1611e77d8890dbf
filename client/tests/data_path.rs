//! Writer and reader against in-process fakes (see `fakes/`).

mod fakes;

use std::io::SeekFrom;
use std::time::Duration;

use fakes::{start_datanode, BlockStore, DnBehaviour, FakeNamenode};
use rfs_client::{Client, ClientConfig, CreateOptions};
use rfs_proto::transfer::Status;
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

const BLOCK: u64 = 4096;
const PACKET: usize = 1024;

fn payload(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u32).wrapping_mul(2_654_435_761).to_be_bytes()[0] ^ seed)
        .collect()
}

struct Setup {
    nn: FakeNamenode,
    client: Client,
    store: BlockStore,
}

/// A fake namenode writing to one good datanode and reading from
/// `bad_first` corrupting datanodes before the good one.
async fn setup(bad_first: usize, good: bool) -> Setup {
    let store = BlockStore::default();
    let how = DnBehaviour {
        max_packet: PACKET,
        ..Default::default()
    };
    let good_dn = start_datanode("dn-good", store.clone(), how.clone()).await;
    let mut read_locations = Vec::new();
    for i in 0..bad_first {
        let bad = DnBehaviour {
            corrupt_reads: true,
            ..how.clone()
        };
        let dn = start_datanode(&format!("dn-bad{i}"), store.clone(), bad).await;
        read_locations.push(dn.info);
    }
    if good {
        read_locations.push(good_dn.info.clone());
    }
    let nn = FakeNamenode::default();
    {
        let mut s = nn.state();
        s.write_targets = vec![good_dn.info.clone()];
        s.read_locations = read_locations;
    }
    let addr = nn.serve().await;
    let mut cfg = ClientConfig::with_namenode(addr.to_string());
    cfg.packet_size = PACKET;
    cfg.block_size = Some(BLOCK);
    cfg.max_packets_in_flight = 3;
    cfg.rpc_timeout = Duration::from_secs(5);
    cfg.datanode_timeout = Duration::from_secs(5);
    cfg.locate_retry_deadline = Duration::from_millis(300);
    let client = Client::connect(cfg)
        .await
        .expect("connect to the fake namenode");
    Setup { nn, client, store }
}

async fn write(client: &Client, path: &str, data: &[u8], piece: usize) {
    let mut w = client.create(path, CreateOptions::default()).await.unwrap();
    for p in data.chunks(piece.max(1)) {
        w.write_all(p).await.unwrap();
    }
    w.shutdown().await.unwrap();
    assert_eq!(w.bytes_written(), data.len() as u64);
    // A second shutdown reports the same outcome.
    w.shutdown().await.unwrap();
}

#[tokio::test]
async fn round_trip_across_packet_and_block_boundaries() {
    let s = setup(0, true).await;
    for (i, size) in [0usize, 1, 1023, 1025, 4095, 4096, 4097, 10000]
        .into_iter()
        .enumerate()
    {
        let path = format!("/f{size}");
        let data = payload(size, i as u8);
        write(&s.client, &path, &data, 777).await;

        // Block layout: full blocks, then the rest; no block for 0 bytes.
        let lens: Vec<u64> = {
            let st = s.nn.state();
            let f = &st.files[&path];
            assert!(f.complete, "{path} completed");
            f.blocks.iter().map(|b| b.num_bytes).collect()
        };
        let want: Vec<u64> = (0..size.div_ceil(BLOCK as usize))
            .map(|b| (size as u64 - b as u64 * BLOCK).min(BLOCK))
            .collect();
        assert_eq!(lens, want, "{path}: block lengths");
        let store = s.store.lock().unwrap().clone();
        let ids: Vec<u64> = s.nn.state().files[&path]
            .blocks
            .iter()
            .map(|b| b.block_id)
            .collect();
        let stored: Vec<u8> = ids.iter().flat_map(|id| store[id].clone()).collect();
        assert!(stored == data, "{path}: stored bytes");

        let mut r = s.client.open(&path).await.unwrap();
        assert_eq!(r.len(), size as u64);
        assert_eq!(r.is_empty(), size == 0);
        let mut back = Vec::new();
        r.read_to_end(&mut back).await.unwrap();
        assert!(back == data, "{path}: read back");

        if size > 10 {
            for (pos, len) in [(0, 10), (size / 2, size / 3), (size - 5, 100)] {
                let mut buf = vec![0u8; len];
                let n = r.read_at(pos as u64, &mut buf).await.unwrap();
                let end = (pos + len).min(size);
                assert_eq!(n, end - pos, "{path}: read_at({pos}, {len})");
                assert!(buf[..n] == data[pos..end]);
            }
            r.seek(SeekFrom::Start(size as u64 / 2 - 1)).await.unwrap();
            let mut two = [0u8; 2];
            r.read_exact(&mut two).await.unwrap();
            assert_eq!(two[..], data[size / 2 - 1..size / 2 + 1]);
            r.seek(SeekFrom::End(-3)).await.unwrap();
            let mut tail = Vec::new();
            r.read_to_end(&mut tail).await.unwrap();
            assert_eq!(tail[..], data[size - 3..]);
        }
    }
    assert!(s.nn.state().bad_reports.is_empty());
}

#[tokio::test]
async fn packets_never_cross_blocks_and_start_on_chunks() {
    let store = BlockStore::default();
    let how = DnBehaviour {
        max_packet: PACKET,
        ..Default::default()
    };
    let dn = start_datanode("dn", store.clone(), how).await;
    let nn = FakeNamenode::default();
    nn.state().write_targets = vec![dn.info.clone()];
    let addr = nn.serve().await;
    let mut cfg = ClientConfig::with_namenode(addr.to_string());
    cfg.packet_size = PACKET;
    let client = Client::connect(cfg).await.unwrap();
    // 2560 is not a multiple of the packet size.
    let opts = CreateOptions {
        block_size: Some(2560),
        ..Default::default()
    };
    let mut w = client.create("/p", opts).await.unwrap();
    w.write_all(&payload(6000, 1)).await.unwrap();
    w.close().await.unwrap();
    for (_, off, len) in dn.packets_seen.lock().unwrap().iter().filter(|p| p.2 > 0) {
        assert_eq!(off % 512, 0, "packet starts on a chunk");
        assert!(
            off + *len as u64 <= 2560,
            "packet at {off}+{len} crosses the block"
        );
    }
    let lens: Vec<u64> = nn.state().files["/p"]
        .blocks
        .iter()
        .map(|b| b.num_bytes)
        .collect();
    assert_eq!(lens, [2560, 2560, 880]);
}

#[tokio::test]
async fn corrupt_replica_is_reported_and_read_served_by_the_next() {
    let s = setup(1, true).await;
    let data = payload(5000, 9);
    write(&s.client, "/c", &data, 5000).await;
    let mut r = s.client.open("/c").await.unwrap();
    let mut back = Vec::new();
    r.read_to_end(&mut back).await.unwrap();
    assert!(back == data, "good bytes from the second replica");
    let reports = s.nn.state().bad_reports.clone();
    assert_eq!(reports.len(), 2, "one report per block: {reports:?}");
    assert!(reports
        .iter()
        .all(|(_, dn, why)| dn == "dn-bad0" && why.contains("checksum")));

    let mut buf = vec![0u8; 100];
    assert_eq!(r.read_at(4090, &mut buf).await.unwrap(), 100);
    assert!(buf[..] == data[4090..4190]);
}

#[tokio::test]
async fn every_replica_corrupt_is_an_error() {
    let s = setup(2, false).await;
    write(&s.client, "/bad", &payload(100, 2), 100).await;
    let mut r = s.client.open("/bad").await.unwrap();
    let mut back = Vec::new();
    let err = r.read_to_end(&mut back).await.unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.starts_with("could not read block 1 of /bad at offset 0: every replica is corrupt"),
        "{msg}"
    );
    assert!(
        msg.contains("dn-bad0") && msg.contains("dn-bad1") && msg.contains("checksum"),
        "{msg}"
    );
    assert!(!msg.contains('\n'));
}

#[tokio::test]
async fn block_without_locations_is_retried_then_fails() {
    let s = setup(0, false).await;
    write(&s.client, "/nowhere", b"abc", 3).await;
    let mut r = s.client.open("/nowhere").await.unwrap();
    let start = std::time::Instant::now();
    let err = r.read_to_end(&mut Vec::new()).await.unwrap_err();
    assert!(start.elapsed() >= Duration::from_millis(300));
    assert!(
        err.to_string().contains("no datanode holds a replica"),
        "{err}"
    );
}

#[tokio::test]
async fn failed_ack_fails_the_write_naming_the_node() {
    let store = BlockStore::default();
    let how = DnBehaviour {
        max_packet: PACKET,
        fail_writes: Some((
            Status::ErrorNoSpace,
            "no space left on device on datanode dn".into(),
        )),
        ..Default::default()
    };
    let dn = start_datanode("dn-full", store, how).await;
    let nn = FakeNamenode::default();
    nn.state().write_targets = vec![dn.info.clone()];
    let addr = nn.serve().await;
    let mut cfg = ClientConfig::with_namenode(addr.to_string());
    cfg.packet_size = PACKET;
    let client = Client::connect(cfg).await.unwrap();
    let mut w = client
        .create("/full", CreateOptions::default())
        .await
        .unwrap();
    let res = async {
        w.write_all(&payload(100_000, 3)).await?;
        w.shutdown().await
    }
    .await;
    let err = res.unwrap_err().to_string();
    assert!(err.contains("no space left on device"), "{err}");
    assert!(err.contains("dn-full") && err.contains("/full"), "{err}");
    assert!(!nn.state().files["/full"].complete);
    // Later calls keep failing with the same error.
    let again = w.write_all(b"x").await.unwrap_err().to_string();
    assert_eq!(again, err);
}

#[tokio::test]
async fn dropped_writer_leaves_file_under_construction_without_hanging() {
    let s = setup(0, true).await;
    let mut w = s
        .client
        .create("/dropped", CreateOptions::default())
        .await
        .unwrap();
    w.write_all(&payload(5000, 1)).await.unwrap();
    drop(w);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!s.nn.state().files["/dropped"].complete);
    // The client still works.
    write(&s.client, "/after", b"ok", 2).await;
}

#[tokio::test]
async fn lease_is_renewed_while_the_client_lives() {
    let nn = FakeNamenode::default();
    let addr = nn.serve().await;
    let mut cfg = ClientConfig::with_namenode(addr.to_string());
    cfg.lease_renew_interval = Duration::from_millis(50);
    let client = Client::connect(cfg).await.unwrap();
    assert!(client.client_id().starts_with("rfs-client-"));
    let _w = client
        .create("/leased", CreateOptions::default())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        nn.state().renewals >= 2,
        "renewals: {}",
        nn.state().renewals
    );
}

#[tokio::test]
async fn namenode_errors_keep_their_text_and_kind() {
    let s = setup(0, true).await;
    let err = s.client.open("/missing").await.err().expect("missing file");
    assert_eq!(err.to_string(), "/missing: No such file or directory");
    assert_eq!(err.kind(), rfs_proto::rpc_error::RpcErrorKind::NotFound);
    write(&s.client, "/x", b"1", 1).await;
    let err = s
        .client
        .create("/x", CreateOptions::default())
        .await
        .err()
        .expect("exists");
    assert_eq!(err.to_string(), "/x: File exists");
}

#[tokio::test]
async fn unreachable_namenode_is_one_clear_line() {
    let cfg = ClientConfig::with_namenode("127.0.0.1:1");
    let err = Client::connect(cfg)
        .await
        .err()
        .expect("nothing listens on port 1");
    let msg = err.to_string();
    assert!(
        msg.starts_with("cannot reach namenode at 127.0.0.1:1: "),
        "{msg}"
    );
    assert!(!msg.contains('\n'), "{msg}");
}
