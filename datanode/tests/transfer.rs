//! In-process datanodes (port 0, temp dirs) driven directly with
//! rfs-transport frames; no namenode, except a stand-in that answers
//! recovery confirmations for the recovery tests.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use rfs_datanode::{Datanode, DatanodeConfig};
use rfs_proto::common::{DatanodeInfo, ExtendedBlock};
use rfs_proto::datanode::datanode_protocol_server::{DatanodeProtocol, DatanodeProtocolServer};
use rfs_proto::datanode::*;
use rfs_proto::rpc_error::{self, RpcErrorKind};
use rfs_proto::transfer::{
    Checksums, CopyBlockOp, Frame, Op, OpResponse, Packet, PipelineAck, ReadBlockOp, Status,
    WriteBlockOp, WriteStage,
};
use rfs_proto::transfer::{RecoverReplicaOp, RecoveryPhase};
use rfs_transport::{BlockTransport, Connection, TcpTransport};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::{Request, Response};

const BPC: u32 = 512;
const T: Duration = Duration::from_secs(20);

struct Node {
    dn: Datanode,
    dir: PathBuf,
}

impl Node {
    fn info(&self) -> DatanodeInfo {
        DatanodeInfo {
            datanode_id: self.dn.datanode_id.clone(),
            hostname: "127.0.0.1".into(),
            ip: "127.0.0.1".into(),
            data_port: self.dn.data_addr.port() as u32,
            ..Default::default()
        }
    }
    fn finalized(&self, id: u64, gs: u64) -> (PathBuf, PathBuf) {
        let d = self.dir.join("current").join("finalized");
        (
            d.join(format!("blk_{id}")),
            d.join(format!("blk_{id}_{gs}.meta")),
        )
    }
    fn rbw(&self, id: u64) -> PathBuf {
        self.dir
            .join("current")
            .join("rbw")
            .join(format!("blk_{id}"))
    }
}

fn config(dir: &Path) -> DatanodeConfig {
    DatanodeConfig {
        data_dirs: vec![dir.to_path_buf()],
        data_addr: Some("127.0.0.1:0".parse().unwrap()),
        http_addr: Some("127.0.0.1:0".parse().unwrap()),
        idle_timeout_ms: 5_000,
        ack_timeout_ms: 5_000,
        // These tests corrupt replicas on purpose and read them back: no
        // block scanner racing to quarantine them.
        scan_bytes_per_sec: 0,
        ..Default::default()
    }
}

async fn start(root: &Path, name: &str) -> Node {
    start_with(root, name, |_| {}).await
}

async fn start_with(root: &Path, name: &str, tune: impl FnOnce(&mut DatanodeConfig)) -> Node {
    let dir = root.join(name);
    let mut c = config(&dir);
    tune(&mut c);
    let dn = Datanode::start(c).await.expect("datanode starts");
    Node { dn, dir }
}

/// A namenode that only answers ConfirmRecovery: it confirms exactly the
/// (block, stamp, length, kind) it was told to and refuses the rest, as
/// the real leader would. Every other call is unimplemented (datanodes
/// reporting to it just retry).
#[derive(Clone, Default)]
struct Confirmer {
    allowed: Arc<Mutex<Vec<(ExtendedBlock, RecoveryKind)>>>,
    asked: Arc<Mutex<Vec<ConfirmRecoveryRequest>>>,
}

impl Confirmer {
    /// Serves it on 127.0.0.1; returns its address.
    async fn start(&self) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tonic::transport::Server::builder()
            .add_service(DatanodeProtocolServer::new(self.clone()))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener));
        tokio::spawn(server);
        addr.to_string()
    }

    fn allow(&self, b: ExtendedBlock, kind: RecoveryKind) {
        self.allowed.lock().unwrap().push((b, kind));
    }

    fn asked(&self) -> usize {
        self.asked.lock().unwrap().len()
    }
}

type Rpc<T> = Result<Response<T>, tonic::Status>;

fn unimplemented<T>() -> Rpc<T> {
    Err(tonic::Status::unimplemented("a stand-in namenode"))
}

#[tonic::async_trait]
impl DatanodeProtocol for Confirmer {
    async fn register(&self, _: Request<RegisterRequest>) -> Rpc<RegisterResponse> {
        unimplemented()
    }
    async fn heartbeat(&self, _: Request<HeartbeatRequest>) -> Rpc<HeartbeatResponse> {
        unimplemented()
    }
    async fn block_report(&self, _: Request<BlockReportRequest>) -> Rpc<BlockReportResponse> {
        unimplemented()
    }
    async fn block_received_and_deleted(
        &self,
        _: Request<BlockReceivedAndDeletedRequest>,
    ) -> Rpc<BlockReceivedAndDeletedResponse> {
        unimplemented()
    }
    async fn report_bad_replica(
        &self,
        _: Request<ReportBadReplicaRequest>,
    ) -> Rpc<ReportBadReplicaResponse> {
        unimplemented()
    }
    async fn commit_block_synchronization(
        &self,
        _: Request<CommitBlockSynchronizationRequest>,
    ) -> Rpc<CommitBlockSynchronizationResponse> {
        unimplemented()
    }
    async fn confirm_recovery(
        &self,
        r: Request<ConfirmRecoveryRequest>,
    ) -> Rpc<ConfirmRecoveryResponse> {
        let r = r.into_inner();
        self.asked.lock().unwrap().push(r.clone());
        let b = r.block.unwrap_or_default();
        if self.allowed.lock().unwrap().contains(&(b, r.kind())) {
            return Ok(Response::new(ConfirmRecoveryResponse {}));
        }
        Err(rpc_error::status(
            RpcErrorKind::RecoveryRefused,
            format!("recovery of block {} refused: not started here", b.block_id),
        ))
    }
}

/// `n` datanodes that ask `confirmer` about recoveries.
async fn confirmed_cluster(n: usize, confirmer: &Confirmer) -> (tempfile::TempDir, Vec<Node>) {
    let root = tempfile::tempdir().unwrap();
    let addr = confirmer.start().await;
    let mut nodes = Vec::new();
    for i in 0..n {
        let addr = addr.clone();
        nodes.push(start_with(root.path(), &format!("dn{i}"), |c| c.namenodes = vec![addr]).await);
    }
    (root, nodes)
}

async fn cluster(n: usize) -> (tempfile::TempDir, Vec<Node>) {
    let root = tempfile::tempdir().unwrap();
    let mut nodes = Vec::new();
    for i in 0..n {
        nodes.push(start(root.path(), &format!("dn{i}")).await);
    }
    (root, nodes)
}

async fn connect(node: &Node) -> Connection {
    TcpTransport::default()
        .connect(node.dn.data_addr)
        .await
        .expect("connect")
}

async fn recv(c: &mut Connection) -> Option<Frame> {
    tokio::time::timeout(T, c.recv())
        .await
        .expect("no frame within the deadline")
        .expect("frame error")
}

async fn response(c: &mut Connection) -> OpResponse {
    match recv(c).await {
        Some(Frame::Response(r)) => r,
        other => panic!("expected a response, got {other:?}"),
    }
}

fn block(id: u64, gs: u64, len: u64) -> ExtendedBlock {
    ExtendedBlock {
        block_id: id,
        generation_stamp: gs,
        num_bytes: len,
    }
}

fn payload(n: usize, seed: u8) -> Vec<u8> {
    (0..n)
        .map(|i| {
            (i as u32)
                .wrapping_mul(2654435761)
                .wrapping_add(seed as u32) as u8
        })
        .collect()
}

fn packets(data: &[u8], per_packet: usize) -> Vec<Packet> {
    let sums = Checksums::new(BPC);
    let mut out = Vec::new();
    let mut off = 0;
    for chunk in data.chunks(per_packet) {
        out.push(Packet::new(
            out.len() as u64,
            off as u64,
            Bytes::copy_from_slice(chunk),
            &sums,
        ));
        off += chunk.len();
    }
    out.push(Packet::last(out.len() as u64, off as u64));
    out
}

/// Opens a pipeline to `nodes[0]` with the rest as targets.
async fn open_write(nodes: &[&Node], b: ExtendedBlock) -> (Connection, OpResponse) {
    open_stage(nodes, b, WriteStage::Create, 0).await
}

/// COPY_BLOCK of `from`'s finalized replica of `b` to `to`.
async fn copy(from: &Node, b: ExtendedBlock, to: &Node) -> OpResponse {
    let mut c = connect(from).await;
    c.send(Frame::Op(Op::CopyBlock(CopyBlockOp {
        block: Some(b),
        targets: vec![to.info()],
        ..Default::default()
    })))
    .await
    .unwrap();
    response(&mut c).await
}

/// Sends all packets, then collects acks until the last (or an error).
async fn write(nodes: &[&Node], b: ExtendedBlock, pkts: Vec<Packet>) -> Vec<PipelineAck> {
    let (c, r) = open_write(nodes, b).await;
    assert_eq!(r.status(), Status::Success, "{}", r.message);
    let n = pkts.len();
    let (mut tx, mut rx) = c.split();
    let sender = tokio::spawn(async move {
        for p in pkts {
            if tx.send(Frame::Packet(p)).await.is_err() {
                break;
            }
        }
        tx
    });
    let mut acks = Vec::new();
    while acks.len() < n {
        match tokio::time::timeout(T, rx.recv())
            .await
            .expect("ack deadline")
        {
            Ok(Some(Frame::Ack(a))) => {
                let ok = a.is_success();
                acks.push(a);
                if !ok {
                    break;
                }
            }
            Ok(None) | Err(_) => break,
            Ok(Some(f)) => panic!("unexpected frame {f:?}"),
        }
    }
    let _ = sender.await;
    acks
}

async fn read(
    node: &Node,
    b: ExtendedBlock,
    offset: u64,
    length: u64,
) -> (OpResponse, Vec<Packet>) {
    let mut c = connect(node).await;
    c.send(Frame::Op(Op::ReadBlock(ReadBlockOp {
        block: Some(b),
        offset,
        length,
        client_id: "test-client".into(),
    })))
    .await
    .unwrap();
    let r = response(&mut c).await;
    let mut pkts = Vec::new();
    if r.status() != Status::Success {
        return (r, pkts);
    }
    loop {
        match recv(&mut c).await {
            Some(Frame::Packet(p)) => {
                let last = p.is_last();
                pkts.push(p);
                if last {
                    break;
                }
            }
            other => panic!("expected a packet, got {other:?}"),
        }
    }
    (r, pkts)
}

fn check_replica(node: &Node, id: u64, gs: u64, data: &[u8]) {
    let (d, m) = node.finalized(id, gs);
    let on_disk = std::fs::read(&d).unwrap_or_else(|e| panic!("{}: {e}", d.display()));
    assert!(
        on_disk == data,
        "data of block {id} differs on {}",
        d.display()
    );
    let meta = std::fs::read(&m).unwrap();
    assert_eq!(&meta[..8], &[0, 1, 0, 0, 2, 0, 0, 0], "meta header");
    let sums = Checksums::new(BPC);
    sums.verify(data, &meta[8..], 0)
        .expect("meta checksums valid");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_node_pipeline_writes_and_reads_back() {
    let (_root, nodes) = cluster(3).await;
    let all: Vec<&Node> = nodes.iter().collect();
    // 2.5 MB spans several of the reader's 1 MiB disk reads.
    for (i, size) in [0usize, 1, 511, 513, 200_000, 2_500_123]
        .into_iter()
        .enumerate()
    {
        let id = 1000 + i as u64;
        let data = payload(size, i as u8);
        let pkts = packets(&data, 64 * 1024);
        let n = pkts.len();
        let acks = write(&all, block(id, 7, 0), pkts).await;
        assert_eq!(acks.len(), n, "size {size}: every packet acknowledged");
        for (seq, a) in acks.iter().enumerate() {
            assert_eq!(a.seqno, seq as u64);
            assert_eq!(a.replies, vec![Status::Success; 3], "{}", a.message);
        }
        for node in &nodes {
            check_replica(node, id, 7, &data);
        }
        // Reads, from every node, of whole and partial ranges.
        let ranges = [
            (0u64, 0u64),
            (0, size as u64),
            (size as u64 / 2, 0),
            (700, 1000),
            (513, 1),
            (1000, 2_200_000),
        ];
        for node in &nodes {
            for &(off, len) in &ranges {
                let (r, pkts) = read(node, block(id, 7, 0), off, len).await;
                if off > size as u64 {
                    assert_eq!(r.status(), Status::ErrorInvalid, "{}", r.message);
                    continue;
                }
                assert_eq!(r.status(), Status::Success, "{}", r.message);
                assert_eq!(r.bytes_per_checksum, BPC);
                assert_eq!(r.replica_length, size as u64);
                let first = off / BPC as u64 * BPC as u64;
                assert_eq!(r.first_chunk_offset, first);
                let sums = Checksums::new(BPC);
                let mut got = Vec::new();
                let mut pos = first;
                for p in &pkts {
                    assert_eq!(p.offset_in_block, pos);
                    p.verify(&sums).expect("served checksums valid");
                    got.extend_from_slice(&p.data);
                    pos += p.data.len() as u64;
                    assert!(p.data.len() <= 64 * 1024);
                }
                assert!(pkts.last().unwrap().is_last());
                let end = if len == 0 {
                    size as u64
                } else {
                    (off + len).min(size as u64)
                };
                assert!(pos >= end, "range [{off}, {end}) covered (got to {pos})");
                let want = &data[off as usize..end as usize];
                let skip = (off - first) as usize;
                assert!(
                    &got[skip..skip + want.len()] == want,
                    "bytes of range {off}+{len}"
                );
            }
        }
    }
    // A second write of a finalized block is refused.
    let (_c, r) = open_write(&all[..1], block(1004, 7, 0)).await;
    assert_eq!(r.status(), Status::ErrorExists, "{}", r.message);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn corrupt_packet_is_rejected_and_nothing_finalized() {
    let (_root, nodes) = cluster(3).await;
    let all: Vec<&Node> = nodes.iter().collect();
    let data = payload(150_000, 3);
    let mut pkts = packets(&data, 64 * 1024);
    let mut bad = pkts[1].data.to_vec();
    bad[100] ^= 0x40;
    pkts[1].data = Bytes::from(bad);
    let acks = write(&all, block(77, 1, 0), pkts).await;
    let last = acks.last().expect("an ack");
    assert_eq!(last.seqno, 1);
    assert_eq!(last.replies[0], Status::ErrorChecksum, "{last:?}");
    assert!(
        last.message
            .contains("checksum mismatch in block 77 at offset 65536"),
        "{}",
        last.message
    );
    assert!(
        last.message.contains(&nodes[0].dn.data_addr.to_string()),
        "names the node: {}",
        last.message
    );
    // The first node deleted its partial replica; nobody finalized.
    let deadline = tokio::time::Instant::now() + T;
    while nodes[0].rbw(77).exists() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        !nodes[0].rbw(77).exists(),
        "corrupt partial replica deleted"
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    for n in &nodes {
        assert!(!n.finalized(77, 1).0.exists(), "no finalized replica");
    }
    // The block can be written again, correctly.
    let data = payload(1000, 4);
    let acks = write(&all, block(77, 2, 0), packets(&data, 64 * 1024)).await;
    assert!(acks.iter().all(|a| a.is_success()), "{acks:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_downstream_is_named_as_first_bad_link() {
    let (_root, nodes) = cluster(1).await;
    let mut dead = nodes[0].info();
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    dead.data_port = l.local_addr().unwrap().port() as u32;
    drop(l);
    let mut c = connect(&nodes[0]).await;
    c.send(Frame::Op(Op::WriteBlock(WriteBlockOp {
        block: Some(block(5, 1, 0)),
        targets: vec![dead.clone()],
        client_id: "c".into(),
        bytes_per_checksum: BPC,
        source_datanode: String::new(),
        ..Default::default()
    })))
    .await
    .unwrap();
    let r = response(&mut c).await;
    assert_eq!(r.status(), Status::Error);
    assert_eq!(r.first_bad_link, format!("127.0.0.1:{}", dead.data_port));
}

async fn poke(node: &Node, bytes: &[u8]) -> Vec<u8> {
    let mut s = tokio::net::TcpStream::connect(node.dn.data_addr)
        .await
        .unwrap();
    let _ = s.write_all(bytes).await;
    let _ = s.shutdown().await;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(T, s.read_to_end(&mut out))
        .await
        .expect("node closes");
    out
}

fn first_response(bytes: &[u8]) -> Option<OpResponse> {
    use tokio_util_codec::decode_first;
    decode_first(bytes)
}

mod tokio_util_codec {
    use rfs_proto::transfer::{Frame, OpResponse};
    pub fn decode_first(bytes: &[u8]) -> Option<OpResponse> {
        if bytes.len() < 8 {
            return None;
        }
        let (kind, len) = Frame::parse_prefix(bytes[..8].try_into().ok()?).ok()?;
        let body = bytes.get(8..8 + len)?;
        match Frame::decode_body(kind, bytes::Bytes::copy_from_slice(body)).ok()? {
            Frame::Response(r) => Some(r),
            _ => None,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn garbage_frames_get_errors_and_node_keeps_serving() {
    let (_root, nodes) = cluster(1).await;
    let data = payload(3000, 9);
    let acks = write(&[&nodes[0]], block(9, 1, 0), packets(&data, 1024)).await;
    assert!(acks.iter().all(|a| a.is_success()));

    let mut oversized = b"RF\x01\x51".to_vec();
    oversized.extend_from_slice(&u32::MAX.to_be_bytes());
    let r = first_response(&poke(&nodes[0], &oversized).await).expect("an error response");
    assert_eq!(r.status(), Status::ErrorInvalid);
    assert!(r.message.contains("exceeds"), "{}", r.message);

    let r = first_response(&poke(&nodes[0], b"GET / HTTP/1.1\r\n\r\n").await).expect("response");
    assert_eq!(r.status(), Status::ErrorInvalid);
    assert!(r.message.contains("magic"), "{}", r.message);

    let r = first_response(&poke(&nodes[0], b"RF\x01\x51\x00\x00\x00\x10short").await)
        .expect("response");
    assert_eq!(r.status(), Status::ErrorInvalid);
    assert!(r.message.contains("closed in the middle"), "{}", r.message);

    // A packet as the first frame.
    let p = Frame::Packet(Packet::last(0, 0)).encode_to_bytes();
    let r = first_response(&poke(&nodes[0], &p).await).expect("response");
    assert_eq!(r.status(), Status::ErrorInvalid);
    assert!(r.message.contains("op header"), "{}", r.message);

    let mut junk: Vec<u8> = b"RF\x01\x02\x00\x00\x00\x30".to_vec();
    junk.extend(std::iter::repeat_n(0xff, 0x30));
    poke(&nodes[0], &junk).await;
    poke(&nodes[0], &payload(100_000, 1)).await;
    poke(&nodes[0], &[]).await;
    // A silent connection does not block others.
    let _idle = tokio::net::TcpStream::connect(nodes[0].dn.data_addr)
        .await
        .unwrap();

    let (r, pkts) = read(&nodes[0], block(9, 1, 0), 0, 0).await;
    assert_eq!(r.status(), Status::Success);
    let got: Vec<u8> = pkts.iter().flat_map(|p| p.data.to_vec()).collect();
    assert!(got == data);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn flipped_byte_on_disk_breaks_served_checksums() {
    let (_root, nodes) = cluster(1).await;
    let data = payload(5000, 5);
    let acks = write(&[&nodes[0]], block(11, 3, 0), packets(&data, 64 * 1024)).await;
    assert!(acks.iter().all(|a| a.is_success()));
    let (path, _) = nodes[0].finalized(11, 3);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[2100] ^= 1;
    std::fs::write(&path, bytes).unwrap();
    let (r, pkts) = read(&nodes[0], block(11, 3, 0), 0, 0).await;
    assert_eq!(r.status(), Status::Success);
    let sums = Checksums::new(BPC);
    let err = pkts
        .iter()
        .find_map(|p| p.verify(&sums).err())
        .expect("the reader detects the flip");
    assert_eq!(err.offset, 2048);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_block_file_cut_short_on_disk_ends_the_read_and_the_node_keeps_serving() {
    let (_root, nodes) = cluster(1).await;
    let data = payload(300_000, 9);
    write(&[&nodes[0]], block(14, 2, 0), packets(&data, 64 * 1024)).await;
    let other = payload(4000, 10);
    write(&[&nodes[0]], block(15, 2, 0), packets(&other, 64 * 1024)).await;
    let (path, _) = nodes[0].finalized(14, 2);
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(100_000)
        .unwrap();
    let mut c = connect(&nodes[0]).await;
    c.send(Frame::Op(Op::ReadBlock(ReadBlockOp {
        block: Some(block(14, 2, 0)),
        offset: 0,
        length: 0,
        client_id: "test-client".into(),
    })))
    .await
    .unwrap();
    assert_eq!(response(&mut c).await.status(), Status::Success);
    let mut got = Vec::new();
    // The stream ends (or breaks) without the last packet: the reader
    // never takes a short block for a whole one.
    loop {
        match tokio::time::timeout(T, c.recv())
            .await
            .expect("no frame within the deadline")
        {
            Ok(Some(Frame::Packet(p))) => {
                assert!(!p.is_last(), "a cut block ended like a whole one");
                got.extend_from_slice(&p.data);
            }
            Ok(None) | Err(_) => break,
            Ok(Some(f)) => panic!("unexpected {f:?}"),
        }
    }
    assert!(got.len() <= 100_000 && got[..] == data[..got.len()]);
    let (r, pkts) = read(&nodes[0], block(15, 2, 0), 0, 0).await;
    assert_eq!(r.status(), Status::Success);
    let served: Vec<u8> = pkts.iter().flat_map(|p| p.data.to_vec()).collect();
    assert!(served == other, "the other block is served whole");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn read_errors_name_the_problem() {
    let (_root, nodes) = cluster(1).await;
    let data = payload(700, 6);
    write(&[&nodes[0]], block(12, 5, 0), packets(&data, 64 * 1024)).await;
    let (r, _) = read(&nodes[0], block(12, 4, 0), 0, 0).await;
    assert_eq!(r.status(), Status::ErrorNotFound);
    assert!(
        r.message.contains("block 12") && r.message.contains("stamp 4"),
        "{}",
        r.message
    );
    let (r, _) = read(&nodes[0], block(13, 5, 0), 0, 0).await;
    assert_eq!(r.status(), Status::ErrorNotFound);
    let (r, _) = read(&nodes[0], block(12, 5, 0), 701, 0).await;
    assert_eq!(r.status(), Status::ErrorInvalid);
    let (r, pkts) = read(&nodes[0], block(12, 5, 0), 700, 0).await;
    assert_eq!(
        r.status(),
        Status::Success,
        "offset == length is a valid (empty tail) read"
    );
    assert!(pkts.last().unwrap().is_last());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn copy_block_replicates_and_restart_keeps_replicas() {
    let root = tempfile::tempdir().unwrap();
    let a = start(root.path(), "a").await;
    let b = start(root.path(), "b").await;
    let data = payload(150_001, 8);
    let acks = write(&[&a], block(21, 9, 0), packets(&data, 64 * 1024)).await;
    assert!(acks.iter().all(|x| x.is_success()));
    let r = copy(&a, block(21, 9, 0), &b).await;
    assert_eq!(r.status(), Status::Success, "{}", r.message);
    check_replica(&b, 21, 9, &data);

    // Restart b on the same dir: same id, replica still served.
    let id = b.dn.datanode_id.clone();
    b.dn.stop().await.unwrap();
    let b = start(root.path(), "b").await;
    assert_eq!(b.dn.datanode_id, id);
    let (r, pkts) = read(&b, block(21, 9, 0), 0, 0).await;
    assert_eq!(r.status(), Status::Success, "{}", r.message);
    let got: Vec<u8> = pkts.iter().flat_map(|p| p.data.to_vec()).collect();
    assert!(got == data);
    // A replica with a broken meta file is not served after a restart.
    let (_, meta) = b.finalized(21, 9);
    std::fs::write(&meta, b"junk").unwrap();
    b.dn.stop().await.unwrap();
    let b = start(root.path(), "b").await;
    let (r, _) = read(&b, block(21, 9, 0), 0, 0).await;
    assert_eq!(r.status(), Status::ErrorNotFound);
    assert!(b.finalized(21, 9).0.exists(), "nothing is deleted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn metrics_are_served_over_http() {
    let (_root, nodes) = cluster(1).await;
    let data = payload(2000, 1);
    write(&[&nodes[0]], block(31, 1, 0), packets(&data, 64 * 1024)).await;
    let mut s = tokio::net::TcpStream::connect(nodes[0].dn.http_addr)
        .await
        .unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut out = String::new();
    tokio::time::timeout(T, s.read_to_string(&mut out))
        .await
        .unwrap()
        .unwrap();
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    assert!(out.contains("rfs_datanode_bytes_written_total"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hflushed_partial_chunk_may_be_resent() {
    let (_root, nodes) = cluster(2).await;
    let all: Vec<&Node> = nodes.iter().collect();
    let data = payload(1500, 2);
    let sums = Checksums::new(BPC);
    let mut first = Packet::new(0, 0, Bytes::copy_from_slice(&data[..700]), &sums);
    first.flags = rfs_proto::transfer::packet::FLAG_SYNC;
    let pkts = vec![
        first,
        Packet::new(1, 512, Bytes::copy_from_slice(&data[512..]), &sums),
        Packet::last(2, 1500),
    ];
    let acks = write(&all, block(50, 1, 0), pkts).await;
    assert_eq!(acks.len(), 3);
    assert!(acks.iter().all(|a| a.is_success()), "{acks:?}");
    for n in &nodes {
        check_replica(n, 50, 1, &data);
    }
}

/// Mounts a small tmpfs; `None` where that is not permitted (not root).
fn tmpfs(path: &Path, size: &str) -> Option<impl Drop> {
    struct Mounted(PathBuf);
    impl Drop for Mounted {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount")
                .arg("-l")
                .arg(&self.0)
                .status();
        }
    }
    std::fs::create_dir_all(path).ok()?;
    let ok = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
        .arg(path)
        .stderr(std::process::Stdio::null())
        .status()
        .ok()?
        .success();
    ok.then(|| Mounted(path.to_path_buf()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn full_disk_fails_with_no_space_and_keeps_finalized_blocks() {
    let root = tempfile::tempdir().unwrap();
    let disk = root.path().join("disk");
    let Some(_mount) = tmpfs(&disk, "1m") else {
        eprintln!("skipping: cannot mount a tmpfs here");
        return;
    };
    let node = start(&disk, "dn").await;
    let kept = payload(100_000, 1);
    let acks = write(&[&node], block(1, 1, 0), packets(&kept, 64 * 1024)).await;
    assert!(acks.iter().all(|a| a.is_success()));
    // Bigger than what is left: fails mid-write.
    let big = payload(2_000_000, 2);
    let acks = write(&[&node], block(2, 1, 0), packets(&big, 64 * 1024)).await;
    let last = acks.last().expect("an ack");
    assert_eq!(last.replies[0], Status::ErrorNoSpace, "{last:?}");
    assert!(
        last.message.contains("no space left on device on datanode"),
        "{}",
        last.message
    );
    assert!(!node.rbw(2).exists(), "partial replica deleted");
    check_replica(&node, 1, 1, &kept);
    let (r, pkts) = read(&node, block(1, 1, 0), 0, 0).await;
    assert_eq!(r.status(), Status::Success);
    let got: Vec<u8> = pkts.iter().flat_map(|p| p.data.to_vec()).collect();
    assert!(got == kept);
    node.dn.stop().await.unwrap();
}

/// Opens a WRITE_BLOCK of `stage` on `nodes[0]` with the rest as targets.
async fn open_stage(
    nodes: &[&Node],
    b: ExtendedBlock,
    stage: WriteStage,
    keep: u64,
) -> (Connection, OpResponse) {
    let mut c = connect(nodes[0]).await;
    let op = WriteBlockOp {
        block: Some(b),
        targets: nodes[1..].iter().map(|n| n.info()).collect(),
        client_id: "test-client".into(),
        bytes_per_checksum: BPC,
        stage: stage as i32,
        recover_length: keep,
        ..Default::default()
    };
    c.send(Frame::Op(Op::WriteBlock(op))).await.unwrap();
    let r = response(&mut c).await;
    (c, r)
}

async fn expect_acks(c: &mut Connection, n: usize, replies: usize) {
    for _ in 0..n {
        match recv(c).await {
            Some(Frame::Ack(a)) => {
                assert!(a.is_success(), "{a:?}");
                assert_eq!(a.replies.len(), replies, "{a:?}");
            }
            other => panic!("expected an ack, got {other:?}"),
        }
    }
}

/// Pipeline recovery on the datanodes: a survivor (`a`) whose old writer is
/// still open is stopped, its replica cut to the acknowledged length and
/// given the new generation stamp; a replacement (`c`) gets that prefix
/// from `a` (COPY_BLOCK rbw), and the RECOVER pipeline [a, c] finishes the
/// block from the acknowledged offset. The bytes past it that `a` had
/// received (a partial chunk) are replaced, not kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn recovery_keeps_the_acknowledged_prefix_under_a_new_generation_stamp() {
    let confirmer = Confirmer::default();
    for (id, gs, len) in [(60, 2, 2048), (61, 6, 3000), (60, 3, 4000)] {
        confirmer.allow(block(id, gs, len), RecoveryKind::Pipeline);
    }
    let (_root, nodes) = confirmed_cluster(3, &confirmer).await;
    let (a, b, c) = (&nodes[0], &nodes[1], &nodes[2]);
    let data = payload(5000, 7);
    let sums = Checksums::new(BPC);
    let pkt = |seq: u64, from: usize, to: usize| {
        Packet::new(
            seq,
            from as u64,
            Bytes::copy_from_slice(&data[from..to]),
            &sums,
        )
    };
    // Old pipeline a → b, gs 1: two packets acknowledged, a third (ending
    // in a partial chunk, with bytes that will differ) only received.
    let (mut old, r) = open_stage(&[a, b], block(60, 1, 0), WriteStage::Create, 0).await;
    assert_eq!(r.status(), Status::Success, "{}", r.message);
    old.send(Frame::Packet(pkt(0, 0, 1024))).await.unwrap();
    old.send(Frame::Packet(pkt(1, 1024, 2048))).await.unwrap();
    expect_acks(&mut old, 2, 2).await;
    let wrong = vec![0xEEu8; 300];
    old.send(Frame::Packet(Packet::new(
        2,
        2048,
        Bytes::from(wrong),
        &sums,
    )))
    .await
    .unwrap();
    expect_acks(&mut old, 1, 2).await;

    // The replacement c gets a's first 2048 bytes at gs 2; the old writer
    // on a (its connection still open) is stopped for it.
    let mut cp = connect(a).await;
    cp.send(Frame::Op(Op::CopyBlock(CopyBlockOp {
        block: Some(block(60, 2, 2048)),
        targets: vec![c.info()],
        rbw: true,
    })))
    .await
    .unwrap();
    let r = response(&mut cp).await;
    assert_eq!(r.status(), Status::Success, "{}", r.message);
    assert_eq!(std::fs::metadata(c.rbw(60)).unwrap().len(), 2048);

    let (mut new, r) = open_stage(&[a, c], block(60, 2, 0), WriteStage::Recover, 2048).await;
    assert_eq!(r.status(), Status::Success, "{}", r.message);
    new.send(Frame::Packet(pkt(3, 2048, 5000))).await.unwrap();
    new.send(Frame::Packet(Packet::last(4, 5000)))
        .await
        .unwrap();
    expect_acks(&mut new, 2, 2).await;
    check_replica(a, 60, 2, &data);
    check_replica(c, 60, 2, &data);
    assert!(!a.finalized(60, 1).1.exists(), "no gs-1 replica left on a");
    // The old pipeline was dropped for the recovery.
    match tokio::time::timeout(T, old.recv()).await {
        Ok(Ok(None)) | Ok(Err(_)) => {}
        other => panic!("the old pipeline should be closed, got {other:?}"),
    }

    // A finalized replica (the failure hit the last packet's ack) is
    // recovered too: same bytes, new stamp, old stamp gone.
    let full = payload(3000, 9);
    let acks = write(&[a, b], block(61, 5, 0), packets(&full, 1024)).await;
    assert!(acks.iter().all(|x| x.is_success()));
    let (mut c61, r) = open_stage(&[a], block(61, 6, 0), WriteStage::Recover, 3000).await;
    assert_eq!(r.status(), Status::Success, "{}", r.message);
    c61.send(Frame::Packet(Packet::last(4, 3000)))
        .await
        .unwrap();
    expect_acks(&mut c61, 1, 1).await;
    check_replica(a, 61, 6, &full);
    assert!(!a.finalized(61, 5).1.exists());
    // Asking to keep more than a replica holds is refused by name.
    let (_c, r) = open_stage(&[b], block(60, 3, 0), WriteStage::Recover, 4000).await;
    assert_ne!(r.status(), Status::Success);
    assert!(r.message.contains("fewer than the 4000"), "{}", r.message);
    // Every cut was confirmed first: the copy, a and c for block 60, a
    // for block 61, b for the refused one.
    assert_eq!(confirmer.asked(), 5);
}

/// Sends a RECOVER_REPLICA COMMIT of `b` to `node` and returns the answer.
async fn commit(node: &Node, b: ExtendedBlock) -> OpResponse {
    let mut c = connect(node).await;
    c.send(Frame::Op(Op::RecoverReplica(RecoverReplicaOp {
        block: Some(b),
        phase: RecoveryPhase::Commit as i32,
    })))
    .await
    .unwrap();
    response(&mut c).await
}

/// Recoveries the namenode did not confirm (WRITE_BLOCK RECOVER, COPY_BLOCK
/// rbw, RECOVER_REPLICA COMMIT) are answered with its refusal and leave
/// the finalized replica as it was; so are they on a node with no
/// namenode to ask; and a confirmed RECOVER is still refused at the
/// finalized replica's own stamp.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn recoveries_the_namenode_did_not_confirm_change_nothing() {
    let confirmer = Confirmer::default();
    let (_root, nodes) = confirmed_cluster(2, &confirmer).await;
    let (a, b) = (&nodes[0], &nodes[1]);
    let data = payload(3000, 3);
    let acks = write(&[a], block(80, 4, 0), packets(&data, 1024)).await;
    assert!(acks.iter().all(|x| x.is_success()));
    let cut = block(80, 5, 0);
    let (_c, r) = open_stage(&[a], cut, WriteStage::Recover, 0).await;
    let mut answers = vec![("WRITE_BLOCK RECOVER", r)];
    let mut cp = connect(a).await;
    cp.send(Frame::Op(Op::CopyBlock(CopyBlockOp {
        block: Some(cut),
        targets: vec![b.info()],
        rbw: true,
    })))
    .await
    .unwrap();
    answers.push(("COPY_BLOCK rbw", response(&mut cp).await));
    answers.push(("RECOVER_REPLICA COMMIT", commit(a, cut).await));
    for (what, r) in &answers {
        assert_ne!(r.status(), Status::Success, "{what}");
        assert!(
            r.message.contains("did not confirm")
                && r.message.contains("refused: not started here"),
            "{what}: {}",
            r.message
        );
    }
    assert_eq!(confirmer.asked(), 3);
    check_replica(a, 80, 4, &data);

    // The leader's word does not cover cutting a finalized replica at
    // its own stamp (an open file's finished last block).
    confirmer.allow(block(80, 4, 0), RecoveryKind::Pipeline);
    let (_c, r) = open_stage(&[a], block(80, 4, 0), WriteStage::Recover, 0).await;
    assert_ne!(r.status(), Status::Success);
    assert!(
        r.message
            .contains("finalized at generation stamp 4 already"),
        "{}",
        r.message
    );
    check_replica(a, 80, 4, &data);

    // Nobody to ask: refused as well.
    let root = tempfile::tempdir().unwrap();
    let alone = start(root.path(), "alone").await;
    let acks = write(&[&alone], block(81, 4, 0), packets(&data, 1024)).await;
    assert!(acks.iter().all(|x| x.is_success()));
    let (_c, r) = open_stage(&[&alone], block(81, 5, 0), WriteStage::Recover, 0).await;
    assert_ne!(r.status(), Status::Success);
    assert!(r.message.contains("no namenode to ask"), "{}", r.message);
    check_replica(&alone, 81, 4, &data);
}

/// Re-replication copies are paced to `transfer_bytes_per_sec`: 1.5 MiB
/// at 1 MiB/s takes at least 1.4 s (the bucket starts empty).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn copies_are_paced_to_the_transfer_rate() {
    let root = tempfile::tempdir().unwrap();
    let a = start_with(root.path(), "a", |c| c.transfer_bytes_per_sec = 1 << 20).await;
    let b = start(root.path(), "b").await;
    let data = payload(3 << 19, 5);
    let acks = write(&[&a], block(70, 3, 0), packets(&data, 64 * 1024)).await;
    assert!(acks.iter().all(|x| x.is_success()));
    let t = std::time::Instant::now();
    let r = copy(&a, block(70, 3, 0), &b).await;
    assert_eq!(r.status(), Status::Success, "{}", r.message);
    assert!(
        t.elapsed() >= Duration::from_millis(1400),
        "1.5 MiB copied in {:?} at 1 MiB/s",
        t.elapsed()
    );
    check_replica(&b, 70, 3, &data);
}
