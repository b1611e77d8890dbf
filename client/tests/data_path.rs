//! Writer and reader against in-process fakes (see `fakes/`), and the
//! namenode failover proxy against a fake HA group.

mod fakes;

use std::io::SeekFrom;
use std::sync::Arc;
use std::time::{Duration, Instant};

use fakes::{start_datanode, BlockStore, DnBehaviour, FakeGroup, FakeNamenode, LostReply};
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

/// Against a namenode that hands out the first block with the create, a
/// one-block file costs create + complete, later blocks come from
/// add_block, and an empty file gives its unused block back before it
/// completes (no block left that no datanode holds). The other tests
/// here use a namenode that does not: the writer asks add_block.
#[tokio::test]
async fn the_first_block_comes_with_the_create() {
    let s = setup(0, true).await;
    s.nn.state().first_block = true;
    let one = ["create", "complete"].as_slice();
    for (size, calls) in [
        (1000, one),
        (BLOCK as usize, one),
        (
            2 * BLOCK as usize + 1,
            &["create", "add_block", "add_block", "complete"],
        ),
        (0, one),
    ] {
        let path = format!("/first{size}");
        let data = payload(size, 7);
        s.nn.state().calls.clear();
        write(&s.client, &path, &data, 333).await;
        let made: Vec<&str> = s.nn.state().calls.iter().map(|c| c.0).collect();
        assert_eq!(made, calls, "{path}: namenode calls");
        let lens: Vec<u64> = s.nn.state().files[&path]
            .blocks
            .iter()
            .map(|b| b.num_bytes)
            .collect();
        let want: Vec<u64> = (0..size.div_ceil(BLOCK as usize))
            .map(|b| (size as u64 - b as u64 * BLOCK).min(BLOCK))
            .collect();
        assert_eq!(lens, want, "{path}: block lengths");
        let mut back = Vec::new();
        let mut r = s.client.open(&path).await.unwrap();
        r.read_to_end(&mut back).await.unwrap();
        assert!(back == data, "{path}: read back");
    }
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
        msg.starts_with(
            "/bad: all 2 replicas of block 1 failed checksum verification (at offset 0): "
        ),
        "{msg}"
    );
    assert!(
        msg.contains("dn-bad0") && msg.contains("dn-bad1") && msg.contains("checksum"),
        "{msg}"
    );
    assert!(!msg.contains('\n'));
}

/// Every replica marked corrupt: the namenode still lists them (flagged),
/// the client tries each, reports none (the namenode knows) and fails at
/// once with the checksum error, not after waiting for locations. A
/// replica its datanode refuses as corrupt is not reported either.
#[tokio::test]
async fn a_block_with_every_replica_marked_fails_at_once_without_reports() {
    let s = setup(0, false).await;
    write(&s.client, "/marked", &payload(100, 4), 100).await;
    let refusing = DnBehaviour {
        max_packet: PACKET,
        quarantined: true,
        ..Default::default()
    };
    let bad_bytes = DnBehaviour {
        max_packet: PACKET,
        corrupt_reads: true,
        ..Default::default()
    };
    let mut dns = Vec::new();
    for (i, how) in [refusing.clone(), refusing, bad_bytes]
        .into_iter()
        .enumerate()
    {
        dns.push(
            start_datanode(&format!("dn-q{i}"), s.store.clone(), how)
                .await
                .info,
        );
    }
    let expected =
        "/marked: all 2 replicas of block 1 failed checksum verification (at offset 0): ";
    for (locations, marked) in [
        (&dns[..2], true),  // refused, flagged
        (&dns[..2], false), // refused by the datanodes, not flagged
        (&dns[1..], true),  // one refused, one bad bytes; flagged
    ] {
        {
            let mut st = s.nn.state();
            st.read_locations = locations.to_vec();
            st.read_corrupt = marked;
        }
        let mut r = s.client.open("/marked").await.unwrap();
        let err = r
            .read_to_end(&mut Vec::new())
            .await
            .unwrap_err()
            .to_string();
        assert!(err.starts_with(expected), "{err}");
        for dn in locations {
            assert!(err.contains(&dn.datanode_id), "{err}");
        }
        assert!(
            s.nn.state().bad_reports.is_empty(),
            "reported although known: {:?}",
            s.nn.state().bad_reports
        );
    }
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

/// A listing whose second page fails: the next call asks for that page
/// again, so a caller that retries gets every entry, none twice.
#[tokio::test]
async fn a_failed_list_page_is_asked_for_again_by_the_next_call() {
    let s = setup(0, true).await;
    for name in ["a", "b", "c", "d", "e"] {
        write(&s.client, &format!("/d/{name}"), b"1", 1).await;
    }
    {
        let mut st = s.nn.state();
        st.dirs.insert("/d".into());
        st.list_page_cap = Some(2);
        st.list_pages_before_failure = Some(1);
    }
    let mut pages = s.client.list_pages("/d");
    let mut next = async || -> rfs_client::Result<Vec<String>> {
        let page = pages.next_page().await?.unwrap_or_default();
        Ok(page.into_iter().map(|st| st.path).collect())
    };
    assert_eq!(next().await.unwrap(), ["/d/a", "/d/b"]);
    let err = next().await.unwrap_err();
    assert_eq!(err.to_string(), "/d: No such file or directory");
    s.nn.state().list_pages_before_failure = None;
    assert_eq!(next().await.unwrap(), ["/d/c", "/d/d"]);
    assert_eq!(next().await.unwrap(), ["/d/e"]);
    assert!(next().await.unwrap().is_empty());
}

/// Calls from one task go out at once, one per batch; calls from many
/// share batches, never more than two on the wire; a caller dropped
/// mid-call gives its place back.
#[tokio::test]
async fn calls_share_batches_only_when_they_must_wait() {
    let s = setup(0, true).await;
    s.nn.state().batches = Some(fakes::Batches::default());
    for _ in 0..10 {
        assert!(s.client.get_file_info("/").await.unwrap().is_some());
    }
    assert_eq!(s.nn.state().batches.as_ref().unwrap().sizes, [1; 10]);

    *s.nn.state().batches.as_mut().unwrap() = fakes::Batches {
        delay: Duration::from_millis(50),
        ..Default::default()
    };
    let client = Arc::new(s.client);
    let stats: Vec<_> = (0..64)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(async move { client.get_file_info("/").await })
        })
        .collect();
    for st in stats {
        assert!(st.await.unwrap().unwrap().is_some());
    }
    {
        let st = s.nn.state();
        let b = st.batches.as_ref().unwrap();
        assert_eq!(b.sizes.iter().sum::<usize>(), 64, "{b:?}");
        assert!(b.sizes.len() < 10, "{b:?}");
        assert_eq!(b.most_in_flight, 2, "{b:?}");
    }

    // Callers that give up while their batches are out: the slots come
    // back when those answers do, and later calls go through.
    s.nn.state().batches.as_mut().unwrap().delay = Duration::from_millis(300);
    for _ in 0..4 {
        let gave_up = tokio::time::timeout(Duration::from_millis(20), client.get_file_info("/"));
        assert!(gave_up.await.is_err());
    }
    s.nn.state().batches.as_mut().unwrap().delay = Duration::ZERO;
    let later = tokio::time::timeout(Duration::from_secs(5), client.get_file_info("/"));
    assert!(later.await.expect("a slot came back").unwrap().is_some());
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

// ---------------------------------------------------------------- failover

/// Client settings for a fake group at `addrs` (`a,b,c`).
fn ha_config(addrs: &str) -> ClientConfig {
    let mut cfg = ClientConfig::with_namenode(addrs);
    cfg.packet_size = PACKET;
    cfg.block_size = Some(BLOCK);
    cfg.max_packets_in_flight = 3;
    cfg.rpc_timeout = Duration::from_secs(2);
    cfg.datanode_timeout = Duration::from_secs(5);
    cfg.failover_deadline = Duration::from_secs(3);
    cfg
}

/// A fake namenode whose blocks go to and come from one fake datanode.
async fn namenode_with_datanode() -> FakeNamenode {
    let how = DnBehaviour {
        max_packet: PACKET,
        ..Default::default()
    };
    let dn = start_datanode("dn", BlockStore::default(), how).await;
    let nn = FakeNamenode::default();
    {
        let mut s = nn.state();
        s.write_targets = vec![dn.info.clone()];
        s.read_locations = vec![dn.info];
    }
    nn
}

/// Polls `cond` every 10 ms for up to 5 s.
async fn wait_until(what: &str, cond: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn calls_find_the_leader_and_stay_with_it() {
    let group = FakeGroup::start(3, Some(2), FakeNamenode::default()).await;
    let client = Client::connect(ha_config(&group.addr_list()))
        .await
        .unwrap();
    // The group named at connect says who leads: the first call goes there.
    assert_eq!(client.get_file_info("/none").await.unwrap(), None);
    let first = group.requests();
    assert_eq!(first, [0, 0, 1]);
    for _ in 0..5 {
        client.get_file_info("/none").await.unwrap();
    }
    assert_eq!(group.requests(), [first[0], first[1], first[2] + 5]);

    // Without hints: the members in turn until the new leader answers,
    // which every later call goes to first.
    group.set_hints(false);
    group.set_leader(Some(1));
    client.mkdirs("/d", true).await.unwrap();
    let found = group.requests();
    assert_eq!(found[1], first[1] + 1, "{found:?}");
    for _ in 0..3 {
        client.get_file_info("/d").await.unwrap();
    }
    assert_eq!(group.requests(), [found[0], found[1] + 3, found[2]]);

    // A hint may name a member the client was not given (by namenodes
    // that do not name their group).
    group.set_hints(true);
    group.set_names_group(false);
    let partial = Client::connect(ha_config(&group.addrs[0].to_string()))
        .await
        .unwrap();
    assert!(partial.namenode_group().is_none());
    assert!(partial.get_file_info("/none").await.unwrap().is_none());
    let before = group.requests();
    partial.get_file_info("/none").await.unwrap();
    assert_eq!(group.requests(), [before[0], before[1] + 1, before[2]]);
}

/// One member's address is enough: it names the others, so the calls go
/// on once it is gone, to whichever member leads, even without hints.
#[tokio::test]
async fn a_client_given_one_member_learns_the_group_and_outlives_that_member() {
    let mut group = FakeGroup::start(3, Some(0), FakeNamenode::default()).await;
    group.set_hints(false);
    let given = group.addrs[0].to_string();
    let client = Client::connect(ha_config(&given)).await.unwrap();
    let named = client.namenode_group().expect("the member named its group");
    assert_eq!(named.members.len(), 3);
    assert_eq!(
        (named.leader_id.as_str(), named.member_id.as_str()),
        ("m0", "m0")
    );
    client.mkdirs("/a", true).await.unwrap();

    group.stop(0).await;
    group.set_leader(Some(2));
    client.mkdirs("/b", true).await.unwrap();
    assert!(client.get_file_info("/a").await.unwrap().is_some());

    // A later client given only the dead member: the members remembered
    // stand in once one confirms the group still holds them.
    let mut cfg = ha_config(&given);
    cfg.remembered_namenodes = named.members.iter().map(|m| m.rpc_addr.clone()).collect();
    let later = Client::connect(cfg).await.unwrap();
    assert!(later.get_file_info("/b").await.unwrap().is_some());
    // Remembered members that no longer match the group do not.
    let mut cfg = ha_config(&given);
    cfg.remembered_namenodes = vec![group.addrs[1].to_string(), "127.0.0.1:1".into()];
    let err = Client::connect(cfg).await.err().expect("no stand-in");
    assert!(
        err.to_string().contains(&format!(
            "{}: in another group than the one remembered",
            group.addrs[1]
        )),
        "{err}"
    );
}

#[tokio::test]
async fn open_writer_and_reader_survive_failovers() {
    let nn = namenode_with_datanode().await;
    let mut group = FakeGroup::start(3, Some(0), nn.clone()).await;
    let mut cfg = ha_config(&group.addr_list());
    cfg.lease_renew_interval = Duration::from_millis(30);
    let client = Client::connect(cfg).await.unwrap();
    let data = payload(3 * BLOCK as usize + 100, 5);

    let mut w = client
        .create("/ha", CreateOptions::default())
        .await
        .unwrap();
    w.write_all(&data[..BLOCK as usize + 10]).await.unwrap();
    let first_block = || nn.state().files["/ha"].blocks.len() == 1;
    wait_until("the first block is allocated by member 0", first_block).await;
    assert_eq!(group.requests()[1], 0);

    // Leader 0 goes away in the middle of the file, while it works on the
    // next block's add_block; member 1 takes over and answers the repeat.
    nn.state().lose_reply = Some(("add_block", LostReply::Late(Duration::from_secs(10))));
    let rest = data[BLOCK as usize + 10..].to_vec();
    let writer = tokio::spawn(async move {
        w.write_all(&rest).await?;
        w.shutdown().await
    });
    let add_blocks = || {
        nn.state()
            .calls
            .iter()
            .filter(|c| c.0 == "add_block")
            .count()
    };
    wait_until("member 0 works on the second add_block", || {
        add_blocks() == 2
    })
    .await;
    group.set_leader(Some(1));
    group.stop(0).await;
    writer.await.unwrap().unwrap();
    let ids: Vec<u64> = nn.state().calls[1..4]
        .iter()
        .map(|(m, c)| {
            assert_eq!(*m, "add_block");
            c.as_ref().unwrap().call_id
        })
        .collect();
    assert_eq!(ids[0] + 1, ids[1]);
    assert_eq!(ids[1], ids[2], "the interrupted add_block is repeated");
    let lens: Vec<u64> = nn.state().files["/ha"]
        .blocks
        .iter()
        .map(|b| b.num_bytes)
        .collect();
    assert_eq!(lens, [BLOCK, BLOCK, BLOCK, 100]);
    assert!(nn.state().files["/ha"].complete);
    // Lease renewal follows the leader too.
    let renewals = nn.state().renewals;
    let on_1 = group.requests()[1];
    wait_until("the lease is renewed twice at member 1", || {
        nn.state().renewals >= renewals + 2
    })
    .await;
    assert!(group.requests()[1] >= on_1 + 2);

    let mut r = client.open("/ha").await.unwrap();
    let mut head = vec![0u8; 100];
    r.read_exact(&mut head).await.unwrap();
    // Member 1 goes as well; member 2 leads and gives no hints.
    group.set_hints(false);
    group.set_leader(Some(2));
    group.stop(1).await;
    let mut rest = Vec::new();
    r.read_to_end(&mut rest).await.unwrap();
    head.extend(rest);
    assert!(head == data, "the open reader read the whole file");
    let on_2 = group.requests()[2];
    let mut again = Vec::new();
    let mut r = client.open("/ha").await.unwrap();
    r.read_to_end(&mut again).await.unwrap();
    assert!(again == data, "a reader opened after the failover");
    assert!(group.requests()[2] > on_2);
}

#[tokio::test]
async fn lost_replies_are_retried_with_the_same_call_id() {
    let nn = namenode_with_datanode().await;
    let _group = FakeGroup::start(2, Some(0), nn.clone()).await;
    let mut cfg = ha_config(&_group.addr_list());
    // Long enough that only the delayed answer below times out.
    cfg.rpc_timeout = Duration::from_secs(1);
    let client = Client::connect(cfg).await.unwrap();

    // Applied, then the connection broke: the repeat must not say
    // "File exists".
    nn.state().lose_reply = Some(("create", LostReply::Unavailable));
    let mut w = client
        .create("/once", CreateOptions::default())
        .await
        .expect("the repeat is answered from the retry cache");
    w.write_all(b"hello").await.unwrap();
    w.shutdown().await.unwrap();
    // Applied, then answered too late: the repeat gets the first answer.
    nn.state().lose_reply = Some(("mkdirs", LostReply::Late(Duration::from_secs(5))));
    assert!(
        client.mkdirs("/d", true).await.unwrap(),
        "first answer kept"
    );
    assert_eq!(client.rename("/once", "/twice").await.unwrap(), "/twice");
    assert!(client.delete("/twice", false).await.unwrap());

    let calls = nn.state().calls.clone();
    let seen: Vec<(&str, u64)> = calls
        .iter()
        .map(|(method, call)| {
            let call = call.as_ref().expect("non-idempotent calls carry a call id");
            assert_eq!(call.client_id, client.client_id());
            (*method, call.call_id)
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("create", 1),
            ("create", 1),
            ("add_block", 2),
            ("complete", 3),
            ("mkdirs", 4),
            ("mkdirs", 4),
            ("rename", 5),
            ("delete", 6),
        ]
    );
}

#[tokio::test]
async fn no_leader_or_no_member_fails_after_the_deadline_naming_each() {
    let deadline = Duration::from_millis(500);
    let mut group = FakeGroup::start(3, Some(0), FakeNamenode::default()).await;
    let mut cfg = ha_config(&group.addr_list());
    cfg.failover_deadline = deadline;
    let client = Client::connect(cfg.clone()).await.unwrap();
    client.get_file_info("/x").await.unwrap();
    let addrs: Vec<String> = group.addrs.iter().map(|a| a.to_string()).collect();

    // An election that does not end.
    group.set_leader(None);
    let start = Instant::now();
    let err = client.get_file_info("/x").await.unwrap_err();
    let took = start.elapsed();
    assert!(took >= deadline && took < deadline * 4, "{took:?}");
    let msg = err.to_string();
    assert!(
        msg.starts_with("no namenode answered get_file_info within "),
        "{msg}"
    );
    for a in &addrs {
        assert!(
            msg.contains(&format!("{a}: not the leader (no leader known)")),
            "{msg}"
        );
    }

    // Every member gone.
    for i in 0..3 {
        group.stop(i).await;
    }
    let start = Instant::now();
    let err = client.mkdirs("/x", true).await.unwrap_err();
    let took = start.elapsed();
    assert!(took >= deadline && took < deadline * 4, "{took:?}");
    let msg = err.to_string();
    assert!(
        msg.starts_with("no namenode answered mkdirs within "),
        "{msg}"
    );
    assert!(addrs.iter().all(|a| msg.contains(a.as_str())), "{msg}");
    assert!(!msg.contains('\n'), "{msg}");

    // A new client finds nobody to connect to, and says so at once.
    let start = Instant::now();
    let err = Client::connect(cfg).await.err().expect("nobody listens");
    assert!(start.elapsed() < deadline, "{:?}", start.elapsed());
    let msg = err.to_string();
    assert!(msg.starts_with("cannot reach any namenode: "), "{msg}");
    assert!(addrs.iter().all(|a| msg.contains(a.as_str())), "{msg}");
}
