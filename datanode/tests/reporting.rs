//! A datanode reporting to in-process mock namenodes: registration, full
//! and incremental block reports, heartbeats, the namenode's commands, and
//! fencing (data commands obeyed only from the active namenode of the
//! highest raft term), and the block scanner's bad-replica reports (its
//! paced passes and the replicas a namenode asks it to verify).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use rfs_datanode::{Datanode, DatanodeConfig};
use rfs_proto::common::{DatanodeInfo, ExtendedBlock};
use rfs_proto::datanode::datanode_command::Command;
use rfs_proto::datanode::datanode_protocol_server::{DatanodeProtocol, DatanodeProtocolServer};
use rfs_proto::datanode::*;
use rfs_proto::transfer::{
    Checksums, Frame, Op, Packet, ReadBlockOp, Status as TStatus, WriteBlockOp,
};
use rfs_transport::{BlockTransport, TcpTransport};
use tonic::{Request, Response, Status};

#[derive(Default)]
struct State {
    registered: Vec<DatanodeInfo>,
    /// Each Register's (previous epoch, last command seq).
    register_previous: Vec<(u64, u64)>,
    /// The epoch of every call after Register, by call.
    epochs: Vec<(&'static str, u64)>,
    full_reports: Vec<Vec<ExtendedBlock>>,
    received: Vec<ExtendedBlock>,
    deleted: Vec<ExtendedBlock>,
    bad: Vec<ReportBadReplicaRequest>,
    synced: Vec<CommitBlockSynchronizationRequest>,
    /// Recoveries asked about (every one is confirmed).
    confirmed: Vec<ConfirmRecoveryRequest>,
    heartbeats: Vec<HeartbeatRequest>,
    /// Handed out with the next heartbeat.
    commands: Vec<DatanodeCommand>,
    /// Handed out with every heartbeat (a namenode's queue until the
    /// datanode acknowledges it).
    repeated: Vec<DatanodeCommand>,
    /// `heartbeats.len()` when commands were last handed out: a later
    /// heartbeat means the datanode finished running them.
    delivered_at: usize,
    /// Sent on every response.
    fencing: Option<Fencing>,
    /// When set, incremental reports are answered only once it holds true
    /// (a hung or partitioned namenode).
    gate: Option<tokio::sync::watch::Receiver<bool>>,
}

#[derive(Clone, Default)]
struct Mock(Arc<Mutex<State>>);

fn fencing(term: u64, active: bool) -> Option<Fencing> {
    Some(Fencing { term, active })
}

impl Mock {
    /// Serves a mock namenode answering with `fencing` on 127.0.0.1.
    async fn start(
        fencing: Option<Fencing>,
    ) -> (Mock, std::net::SocketAddr, tokio::task::JoinHandle<()>) {
        let mock = Mock::default();
        mock.0.lock().unwrap().fencing = fencing;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tonic::transport::Server::builder()
            .add_service(DatanodeProtocolServer::new(mock.clone()))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener));
        let task = tokio::spawn(async move {
            let _ = server.await;
        });
        (mock, addr, task)
    }

    fn set_fencing(&self, fencing: Option<Fencing>) {
        self.0.lock().unwrap().fencing = fencing;
    }

    /// Holds every incremental report until the returned sender sends true.
    fn hold_incremental(&self) -> tokio::sync::watch::Sender<bool> {
        let (tx, rx) = tokio::sync::watch::channel(false);
        self.0.lock().unwrap().gate = Some(rx);
        tx
    }

    fn heartbeats(&self) -> usize {
        self.0.lock().unwrap().heartbeats.len()
    }

    /// Queues `commands` for the next heartbeat and waits until the
    /// datanode ran them (it sent another heartbeat after that response).
    async fn send_and_await(&self, commands: Vec<DatanodeCommand>) {
        self.0.lock().unwrap().commands.extend(commands);
        wait_for("commands delivered and run", || {
            let s = self.0.lock().unwrap();
            s.commands.is_empty() && s.heartbeats.len() > s.delivered_at
        })
        .await;
    }

    /// Waits until the datanode acted on a response sent after now: two
    /// more heartbeats (they are sequential, so the first one's response
    /// was handled before the second was sent).
    async fn await_two_heartbeats(&self) {
        let n = self.0.lock().unwrap().heartbeats.len();
        wait_for("two heartbeats", || {
            self.0.lock().unwrap().heartbeats.len() >= n + 2
        })
        .await;
    }

    /// Whether block `id` reached this namenode, incrementally or in a full
    /// report (a block written before registration comes in the latter).
    fn knows(&self, id: u64) -> bool {
        let s = self.0.lock().unwrap();
        s.received.iter().any(|b| b.block_id == id)
            || s.full_reports.iter().flatten().any(|b| b.block_id == id)
    }

    /// How many bad-replica reports of block `id` from `datanode` arrived.
    fn bad_reports(&self, id: u64, datanode: &str) -> usize {
        self.0
            .lock()
            .unwrap()
            .bad
            .iter()
            .filter(|r| r.datanode_id == datanode && r.block.is_some_and(|b| b.block_id == id))
            .count()
    }

    fn deleted(&self, id: u64) -> bool {
        self.0
            .lock()
            .unwrap()
            .deleted
            .iter()
            .any(|b| b.block_id == id)
    }
}

#[tonic::async_trait]
impl DatanodeProtocol for Mock {
    async fn register(
        &self,
        r: Request<RegisterRequest>,
    ) -> Result<Response<RegisterResponse>, Status> {
        let r = r.into_inner();
        let info = r.info.ok_or_else(|| Status::invalid_argument("no info"))?;
        let mut s = self.0.lock().unwrap();
        s.registered.push(info);
        s.register_previous
            .push((r.previous_epoch, r.last_command_seq));
        Ok(Response::new(RegisterResponse {
            namenode_id: "mock".into(),
            fencing: s.fencing,
            epoch: mock_epoch(s.registered.len()),
        }))
    }
    async fn heartbeat(
        &self,
        r: Request<HeartbeatRequest>,
    ) -> Result<Response<HeartbeatResponse>, Status> {
        let mut s = self.0.lock().unwrap();
        let r = r.into_inner();
        s.epochs.push(("heartbeat", r.epoch));
        s.heartbeats.push(r);
        let mut commands = std::mem::take(&mut s.commands);
        if !commands.is_empty() {
            s.delivered_at = s.heartbeats.len();
        }
        commands.extend(s.repeated.iter().cloned());
        Ok(Response::new(HeartbeatResponse {
            commands,
            fencing: s.fencing,
        }))
    }
    async fn block_report(
        &self,
        r: Request<BlockReportRequest>,
    ) -> Result<Response<BlockReportResponse>, Status> {
        let mut s = self.0.lock().unwrap();
        let r = r.into_inner();
        s.epochs.push(("block report", r.epoch));
        s.full_reports.push(r.blocks);
        Ok(Response::new(BlockReportResponse {
            commands: vec![],
            fencing: s.fencing,
        }))
    }
    async fn block_received_and_deleted(
        &self,
        r: Request<BlockReceivedAndDeletedRequest>,
    ) -> Result<Response<BlockReceivedAndDeletedResponse>, Status> {
        let r = r.into_inner();
        let gate = self.0.lock().unwrap().gate.clone();
        if let Some(mut gate) = gate {
            let _ = gate.wait_for(|open| *open).await;
        }
        let mut s = self.0.lock().unwrap();
        s.epochs.push(("incremental report", r.epoch));
        s.received.extend(r.received);
        s.deleted.extend(r.deleted);
        Ok(Response::new(BlockReceivedAndDeletedResponse::default()))
    }
    async fn report_bad_replica(
        &self,
        r: Request<ReportBadReplicaRequest>,
    ) -> Result<Response<ReportBadReplicaResponse>, Status> {
        let r = r.into_inner();
        let mut s = self.0.lock().unwrap();
        s.epochs.push(("bad replica", r.epoch));
        s.bad.push(r);
        Ok(Response::new(ReportBadReplicaResponse::default()))
    }
    async fn commit_block_synchronization(
        &self,
        r: Request<CommitBlockSynchronizationRequest>,
    ) -> Result<Response<CommitBlockSynchronizationResponse>, Status> {
        self.0.lock().unwrap().synced.push(r.into_inner());
        Ok(Response::new(CommitBlockSynchronizationResponse::default()))
    }
    async fn confirm_recovery(
        &self,
        r: Request<ConfirmRecoveryRequest>,
    ) -> Result<Response<ConfirmRecoveryResponse>, Status> {
        self.0.lock().unwrap().confirmed.push(r.into_inner());
        Ok(Response::new(ConfirmRecoveryResponse::default()))
    }
}

/// The epoch the mock hands out to its `n`th registration (from 1).
fn mock_epoch(n: usize) -> u64 {
    1000 + n as u64
}

async fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !f() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn config(namenodes: &[std::net::SocketAddr], dir: &std::path::Path) -> DatanodeConfig {
    DatanodeConfig {
        namenodes: namenodes.iter().map(|a| a.to_string()).collect(),
        data_dirs: vec![dir.to_path_buf()],
        data_addr: Some("127.0.0.1:0".parse().unwrap()),
        http_addr: Some("127.0.0.1:0".parse().unwrap()),
        heartbeat_interval_ms: 50,
        no_fsync: true,
        ..Default::default()
    }
}

const BLOCK_LEN: usize = 1500;

fn data_of(id: u64) -> Vec<u8> {
    vec![id as u8; BLOCK_LEN]
}

/// Writes block `id` (generation stamp 3, `data_of(id)`) through the
/// datanode's WRITE_BLOCK; returns after the last ack.
async fn write_block(dn: &Datanode, id: u64) {
    let mut c = TcpTransport::default().connect(dn.data_addr).await.unwrap();
    c.send(Frame::Op(Op::WriteBlock(WriteBlockOp {
        block: Some(ExtendedBlock {
            block_id: id,
            generation_stamp: 3,
            num_bytes: 0,
        }),
        targets: vec![],
        client_id: "c".into(),
        bytes_per_checksum: 512,
        source_datanode: String::new(),
        ..Default::default()
    })))
    .await
    .unwrap();
    match c.recv().await.unwrap() {
        Some(Frame::Response(r)) => assert_eq!(r.status(), TStatus::Success),
        other => panic!("{other:?}"),
    }
    let data = Bytes::from(data_of(id));
    c.send(Frame::Packet(Packet::new(0, 0, data, &Checksums::new(512))))
        .await
        .unwrap();
    c.send(Frame::Packet(Packet::last(1, BLOCK_LEN as u64)))
        .await
        .unwrap();
    for seq in 0..2 {
        match c.recv().await.unwrap() {
            Some(Frame::Ack(a)) => assert!(a.seqno == seq && a.is_success(), "{a:?}"),
            other => panic!("{other:?}"),
        }
    }
}

fn invalidate(id: u64) -> DatanodeCommand {
    DatanodeCommand {
        command: Some(Command::Invalidate(InvalidateBlocks {
            blocks: vec![ExtendedBlock {
                block_id: id,
                generation_stamp: 3,
                num_bytes: BLOCK_LEN as u64,
            }],
        })),
        ..Default::default()
    }
}

fn block_file(dir: &tempfile::TempDir, id: u64) -> std::path::PathBuf {
    dir.path().join(format!("current/finalized/blk_{id}"))
}

/// The replica is on disk with its bytes and the datanode still serves it.
async fn assert_present(dn: &Datanode, dir: &tempfile::TempDir, id: u64) {
    let path = block_file(dir, id);
    let on_disk = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(on_disk == data_of(id), "block {id} changed on disk");
    let served = read_all(dn, id).await;
    assert!(
        served.as_ref().is_ok_and(|d| *d == data_of(id)),
        "read block {id}: {:?}",
        served.map(|d| d.len())
    );
}

async fn metrics_page(dn: &Datanode) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(dn.http_addr).await.unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut out = String::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_string(&mut out))
        .await
        .unwrap()
        .unwrap();
    out
}

/// The value of the first sample of `name` whose labels contain `labels`.
fn sample(page: &str, name: &str, labels: &str) -> Option<f64> {
    page.lines()
        .filter(|l| l.starts_with(name) && l.contains(labels))
        .find_map(|l| l.rsplit(' ').next()?.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn registers_reports_and_obeys_commands() {
    let (mock, nn_addr, server) = Mock::start(fencing(1, true)).await;
    let dir = tempfile::tempdir().unwrap();
    let dn = Datanode::start(config(&[nn_addr], dir.path()))
        .await
        .unwrap();
    let st = mock.0.clone();
    wait_for("registration and first report", || {
        let s = st.lock().unwrap();
        !s.registered.is_empty() && !s.full_reports.is_empty() && !s.heartbeats.is_empty()
    })
    .await;
    {
        let s = st.lock().unwrap();
        let info = &s.registered[0];
        assert_eq!(info.datanode_id, dn.datanode_id);
        assert_eq!(info.ip, "127.0.0.1");
        assert_eq!(info.data_port, dn.data_addr.port() as u32);
        assert_eq!(info.http_port, dn.http_addr.port() as u32);
        let hb = &s.heartbeats[0];
        let storage = hb.storage.as_ref().unwrap();
        assert!(storage.capacity > 0 && storage.remaining > 0);
    }

    // Write a block: the namenode hears of it before the last ack.
    write_block(&dn, 42).await;
    {
        let s = st.lock().unwrap();
        assert!(
            s.received.contains(&ExtendedBlock {
                block_id: 42,
                generation_stamp: 3,
                num_bytes: BLOCK_LEN as u64
            }),
            "block received reported before the last ack: {:?}",
            s.received
        );
    }

    // Invalidate: the replica goes and is reported deleted.
    st.lock().unwrap().commands.push(invalidate(42));
    wait_for("deleted report", || {
        st.lock().unwrap().deleted.iter().any(|b| b.block_id == 42)
    })
    .await;
    assert!(!block_file(&dir, 42).exists());

    // ReRegister: register again and send a full report.
    let (regs, reports) = {
        let s = st.lock().unwrap();
        (s.registered.len(), s.full_reports.len())
    };
    st.lock().unwrap().commands.push(DatanodeCommand {
        command: Some(Command::Reregister(ReRegister {})),
        ..Default::default()
    });
    wait_for("re-registration", || {
        let s = st.lock().unwrap();
        s.registered.len() > regs && s.full_reports.len() > reports
    })
    .await;

    dn.stop().await.unwrap();
    server.abort();
}

/// Every call carries the epoch its registration got; numbered commands
/// are acknowledged by the next heartbeat (and the next Register), run
/// once however often they come.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn calls_carry_the_epoch_and_numbered_commands_are_acknowledged() {
    let (mock, nn_addr, server) = Mock::start(fencing(1, true)).await;
    let dir = tempfile::tempdir().unwrap();
    let dn = Datanode::start(config(&[nn_addr], dir.path()))
        .await
        .unwrap();
    let st = mock.0.clone();
    write_block(&dn, 7).await;
    // The same numbered Invalidate in every reply, as a namenode resends
    // it until acknowledged.
    let numbered = |id: u64, seq: u64| DatanodeCommand {
        seq,
        ..invalidate(id)
    };
    st.lock().unwrap().repeated = vec![numbered(7, 5)];
    wait_for("the command acknowledged", || {
        st.lock()
            .unwrap()
            .heartbeats
            .iter()
            .any(|h| h.last_command_seq == 5)
    })
    .await;
    wait_for("block 7 reported deleted", || mock.deleted(7)).await;
    assert!(!block_file(&dir, 7).exists());
    // A new replica of block 7: running the command again would delete it.
    write_block(&dn, 7).await;
    mock.await_two_heartbeats().await;
    assert_present(&dn, &dir, 7).await;

    // A new registration names the last one and what it received there,
    // and counts commands afresh.
    let regs = st.lock().unwrap().registered.len();
    {
        let mut s = st.lock().unwrap();
        s.repeated.clear();
        s.commands.push(DatanodeCommand {
            command: Some(Command::Reregister(ReRegister {})),
            ..Default::default()
        });
    }
    wait_for("re-registration", || {
        st.lock().unwrap().registered.len() > regs
    })
    .await;
    mock.await_two_heartbeats().await;
    {
        let s = st.lock().unwrap();
        assert_eq!(s.register_previous[0], (0, 0), "a first registration");
        assert_eq!(s.register_previous[regs], (mock_epoch(regs), 5));
        let last = s.heartbeats.last().unwrap();
        assert_eq!(
            (last.epoch, last.last_command_seq),
            (mock_epoch(regs + 1), 0)
        );
        for (call, epoch) in &s.epochs {
            assert!(
                (mock_epoch(1)..=mock_epoch(s.registered.len())).contains(epoch),
                "{call} under epoch {epoch}"
            );
        }
    }
    dn.stop().await.unwrap();
    server.abort();
}

/// Two namenodes hand over leadership: the deposed one's Invalidate is
/// dropped, the new leader's is obeyed.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn deposed_namenode_commands_are_fenced() {
    let (a, a_addr, a_server) = Mock::start(fencing(1, true)).await;
    let (b, b_addr, b_server) = Mock::start(fencing(1, false)).await;
    let dir = tempfile::tempdir().unwrap();
    let dn = Datanode::start(config(&[a_addr, b_addr], dir.path()))
        .await
        .unwrap();
    let (x, y, z) = (101, 102, 103);
    for id in [x, y, z] {
        write_block(&dn, id).await;
        assert_present(&dn, &dir, id).await;
    }
    // Both namenodes hear of the blocks, the standby included (in a full
    // report if the block was written before it registered).
    for nn in [&a, &b] {
        wait_for("both namenodes got the blocks", || {
            [x, y, z].iter().all(|id| nn.knows(*id))
        })
        .await;
    }

    // A leads term 1: its Invalidate runs.
    a.send_and_await(vec![invalidate(x)]).await;
    wait_for("X reported deleted", || a.deleted(x) && b.deleted(x)).await;
    assert!(!block_file(&dir, x).exists(), "X deleted on disk");

    // B wins term 2; A has not noticed and still claims term 1.
    b.set_fencing(fencing(2, true));
    b.await_two_heartbeats().await;
    a.send_and_await(vec![invalidate(y)]).await;
    assert_present(&dn, &dir, y).await;
    assert!(!a.deleted(y) && !b.deleted(y), "Y not reported deleted");

    // B's command at term 2 is obeyed.
    b.send_and_await(vec![invalidate(z)]).await;
    wait_for("Z reported deleted", || a.deleted(z) && b.deleted(z)).await;
    assert!(!block_file(&dir, z).exists(), "Z deleted on disk");
    // ... and A is still fenced after that.
    a.send_and_await(vec![invalidate(y)]).await;
    assert_present(&dn, &dir, y).await;

    // The deposed namenode still gets heartbeats and reports.
    let beats = a.0.lock().unwrap().heartbeats.len();
    a.await_two_heartbeats().await;
    assert!(a.0.lock().unwrap().heartbeats.len() >= beats + 2);

    let page = metrics_page(&dn).await;
    let fenced = sample(
        &page,
        "rfs_datanode_fenced_commands_total",
        "reason=\"deposed\"",
    );
    assert!(fenced.is_some_and(|n| n >= 2.0), "{page}");
    assert!(page.contains("rfs_datanode_namenode_term"), "{page}");

    dn.stop().await.unwrap();
    a_server.abort();
    b_server.abort();
}

/// A standby's or an unfenced response's data commands are dropped; its
/// ReRegister is still obeyed, and the heartbeats keep coming.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn standby_and_unfenced_commands_are_ignored() {
    let (nn, addr, server) = Mock::start(fencing(5, false)).await;
    let dir = tempfile::tempdir().unwrap();
    let dn = Datanode::start(config(&[addr], dir.path())).await.unwrap();
    let x = 201;
    write_block(&dn, x).await;
    wait_for("the namenode got the block", || nn.knows(x)).await;

    // Standby: Invalidate dropped, ReRegister obeyed.
    let regs = nn.0.lock().unwrap().registered.len();
    nn.send_and_await(vec![
        invalidate(x),
        DatanodeCommand {
            command: Some(Command::Reregister(ReRegister {})),
            ..Default::default()
        },
    ])
    .await;
    wait_for("re-registration with the standby", || {
        nn.0.lock().unwrap().registered.len() > regs
    })
    .await;
    assert_present(&dn, &dir, x).await;

    // No fencing at all: treated as not active.
    nn.set_fencing(None);
    nn.send_and_await(vec![invalidate(x)]).await;
    assert_present(&dn, &dir, x).await;
    assert!(!nn.deleted(x), "X not reported deleted");

    // The same namenode once active: the very same command runs.
    nn.set_fencing(fencing(5, true));
    nn.send_and_await(vec![invalidate(x)]).await;
    wait_for("X reported deleted", || nn.deleted(x)).await;
    assert!(!block_file(&dir, x).exists(), "X deleted on disk");

    dn.stop().await.unwrap();
    server.abort();
}

/// Writes block `id` and returns how long it took to the last ack.
async fn timed_write(dn: &Datanode, id: u64) -> Duration {
    let started = std::time::Instant::now();
    write_block(dn, id).await;
    started.elapsed()
}

/// A standby that never answers incremental reports does not delay the
/// last ack (which waits up to 3 s for the report): only the active
/// namenode's delivery is waited for; the standby still gets the report
/// once it answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hung_standby_does_not_delay_the_last_ack() {
    let (a, a_addr, a_server) = Mock::start(fencing(1, true)).await;
    let (b, b_addr, b_server) = Mock::start(fencing(1, false)).await;
    let release_b = b.hold_incremental();
    let dir = tempfile::tempdir().unwrap();
    let dn = Datanode::start(config(&[a_addr, b_addr], dir.path()))
        .await
        .unwrap();
    // Both registered (and A's active claim was seen) before the write.
    wait_for("both namenodes heartbeating", || {
        a.heartbeats() > 0 && b.heartbeats() > 0
    })
    .await;

    let x = 301;
    let took = timed_write(&dn, x).await;
    assert!(
        took < Duration::from_millis(1500),
        "last ack took {took:?}: waited for the hung standby"
    );
    let got = |m: &Mock| m.0.lock().unwrap().received.iter().any(|b| b.block_id == x);
    assert!(got(&a), "the active namenode got the report before the ack");
    assert!(!got(&b), "the standby is hung");

    // A second write is as quick, with the standby's queue backed up.
    let took = timed_write(&dn, x + 1).await;
    assert!(
        took < Duration::from_millis(1500),
        "second ack took {took:?}"
    );

    // The standby answers again: it gets the reports asynchronously.
    release_b.send(true).unwrap();
    wait_for("the standby got both blocks", || {
        b.knows(x) && b.knows(x + 1)
    })
    .await;

    dn.stop().await.unwrap();
    a_server.abort();
    b_server.abort();
}

/// While no namenode is known active the last ack waits (bounded) for
/// every namenode, as it cannot tell which one the client completes with.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn without_a_known_active_namenode_the_ack_waits_for_all_bounded() {
    let (a, a_addr, a_server) = Mock::start(fencing(1, false)).await;
    let (b, b_addr, b_server) = Mock::start(fencing(1, false)).await;
    let release_b = b.hold_incremental();
    let dir = tempfile::tempdir().unwrap();
    let dn = Datanode::start(config(&[a_addr, b_addr], dir.path()))
        .await
        .unwrap();
    wait_for("both namenodes heartbeating", || {
        a.heartbeats() > 0 && b.heartbeats() > 0
    })
    .await;
    let took = timed_write(&dn, 401).await;
    assert!(
        took >= Duration::from_millis(2500) && took < Duration::from_secs(10),
        "last ack took {took:?}: expected the bounded wait for the hung namenode"
    );
    assert!(a.knows(401));
    release_b.send(true).unwrap();
    wait_for("the other namenode got the block", || b.knows(401)).await;

    dn.stop().await.unwrap();
    a_server.abort();
    b_server.abort();
}

/// Flips one byte of `path` in place.
fn flip_byte(path: &std::path::Path, offset: u64) {
    use std::os::unix::fs::FileExt;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    let mut b = [0u8; 1];
    f.read_exact_at(&mut b, offset).unwrap();
    f.write_all_at(&[!b[0]], offset).unwrap();
}

/// READ_BLOCK of block `id` (stamp 3): the op response.
async fn read_response(dn: &Datanode, id: u64, len: u64) -> rfs_proto::transfer::OpResponse {
    let mut c = TcpTransport::default().connect(dn.data_addr).await.unwrap();
    c.send(Frame::Op(Op::ReadBlock(ReadBlockOp {
        block: Some(ExtendedBlock {
            block_id: id,
            generation_stamp: 3,
            num_bytes: len,
        }),
        offset: 0,
        length: len,
        client_id: "c".into(),
    })))
    .await
    .unwrap();
    match c.recv().await.unwrap() {
        Some(Frame::Response(r)) => r,
        other => panic!("{other:?}"),
    }
}

fn scanning(mut c: DatanodeConfig, bytes_per_sec: u64, interval_ms: u64) -> DatanodeConfig {
    c.scan_bytes_per_sec = bytes_per_sec;
    c.scan_interval_ms = interval_ms;
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn scanner_quarantines_and_reports_a_corrupt_replica() {
    let (mock, nn_addr, server) = Mock::start(fencing(1, true)).await;
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = scanning(config(&[nn_addr], dir.path()), 64 << 20, 50);
    cfg.block_report_interval_ms = 100;
    let dn = Datanode::start(cfg).await.unwrap();
    // Block ids order a pass: the clean block 1 is verified before block 2
    // in every pass that finds block 2 corrupt.
    write_block(&dn, 1).await;
    write_block(&dn, 2).await;
    flip_byte(&block_file(&dir, 2), 700);

    wait_for("bad replica report of block 2", || {
        mock.bad_reports(2, &dn.datanode_id) > 0
    })
    .await;
    assert_eq!(
        mock.bad_reports(1, &dn.datanode_id),
        0,
        "clean block reported"
    );
    {
        let s = mock.0.lock().unwrap();
        let r = s
            .bad
            .iter()
            .find(|r| r.block.unwrap().block_id == 2)
            .unwrap();
        assert_eq!(r.block.unwrap().generation_stamp, 3);
        assert!(r.reason.contains("checksum mismatch"), "{}", r.reason);
    }

    // Never served again; the clean one still is.
    let r = read_response(&dn, 2, BLOCK_LEN as u64).await;
    assert_eq!(r.status(), TStatus::ErrorChecksum, "{r:?}");
    assert!(r.message.contains("corrupt"), "{}", r.message);
    assert_present(&dn, &dir, 1).await;

    // Kept on disk (in corrupt/) until invalidated; left out of later full
    // reports and reported bad again after them.
    let quarantined = dir.path().join("current/corrupt/blk_2");
    assert!(quarantined.exists());
    assert!(!block_file(&dir, 2).exists());
    let reports = mock.0.lock().unwrap().full_reports.len();
    wait_for("a later full report and a repeated bad report", || {
        mock.0.lock().unwrap().full_reports.len() > reports + 1
            && mock.bad_reports(2, &dn.datanode_id) >= 2
    })
    .await;
    {
        let s = mock.0.lock().unwrap();
        let last = s.full_reports.last().unwrap();
        assert!(last.iter().any(|b| b.block_id == 1));
        assert!(!last.iter().any(|b| b.block_id == 2), "{last:?}");
    }

    let page = metrics_page(&dn).await;
    assert!(sample(&page, "rfs_datanode_corrupt_replicas_total", "").unwrap_or(0.0) >= 1.0);
    assert!(
        sample(&page, "rfs_datanode_scanner_bytes_total", "").unwrap_or(0.0)
            >= 2.0 * BLOCK_LEN as f64
    );

    mock.send_and_await(vec![invalidate(2)]).await;
    wait_for("deletion of block 2 reported", || mock.deleted(2)).await;
    assert!(!quarantined.exists());
    assert!(!dir.path().join("current/corrupt/blk_2_3.meta").exists());
    dn.stop().await.unwrap();
    server.abort();
}

fn verify(id: u64) -> DatanodeCommand {
    DatanodeCommand {
        command: Some(Command::Verify(VerifyReplica {
            block: Some(ExtendedBlock {
                block_id: id,
                generation_stamp: 3,
                num_bytes: BLOCK_LEN as u64,
            }),
        })),
        ..Default::default()
    }
}

/// A namenode's VerifyReplica (a client suspects the replica) is checked
/// at once, with the paced scanner off: a bad replica is quarantined and
/// reported, a good one is left alone, and a standby's request is fenced.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_suspect_replica_is_verified_now_and_reported_only_if_bad() {
    let (mock, nn_addr, server) = Mock::start(fencing(1, true)).await;
    let dir = tempfile::tempdir().unwrap();
    let dn = Datanode::start(scanning(config(&[nn_addr], dir.path()), 0, 1))
        .await
        .unwrap();
    for id in 1..=4 {
        write_block(&dn, id).await;
    }
    for id in 2..=4 {
        flip_byte(&block_file(&dir, id), 700);
    }

    // Suspects are verified in order: once block 2's report is in, block
    // 1 was found good.
    mock.send_and_await(vec![verify(1), verify(2)]).await;
    wait_for("bad replica report of block 2", || {
        mock.bad_reports(2, &dn.datanode_id) > 0
    })
    .await;
    assert_eq!(
        mock.bad_reports(1, &dn.datanode_id),
        0,
        "good block reported"
    );
    assert_present(&dn, &dir, 1).await;
    assert!(dir.path().join("current/corrupt/blk_2").exists());
    let r = read_response(&dn, 2, BLOCK_LEN as u64).await;
    assert_eq!(r.status(), TStatus::ErrorChecksum, "{r:?}");

    // A standby may not ask: block 3 is not verified (block 4, asked for
    // by the active namenode afterwards, is, so 3 would have been first).
    mock.set_fencing(fencing(1, false));
    mock.send_and_await(vec![verify(3)]).await;
    mock.set_fencing(fencing(1, true));
    mock.send_and_await(vec![verify(4)]).await;
    wait_for("bad replica report of block 4", || {
        mock.bad_reports(4, &dn.datanode_id) > 0
    })
    .await;
    assert_eq!(
        mock.bad_reports(3, &dn.datanode_id),
        0,
        "fenced request obeyed"
    );
    assert!(block_file(&dir, 3).exists(), "block 3 quarantined");
    dn.stop().await.unwrap();
    server.abort();
}

/// Lays out a finalized replica of block `id` (stamp 3, 512-byte chunks)
/// directly on disk, its checksums matching `data`.
fn put_replica(dir: &std::path::Path, id: u64, data: &[u8]) {
    let fin = dir.join("current/finalized");
    std::fs::create_dir_all(&fin).unwrap();
    let mut meta = vec![0, 1, 0, 0, 2, 0, 0, 0];
    for chunk in data.chunks(512) {
        meta.extend_from_slice(&crc32c::crc32c(chunk).to_be_bytes());
    }
    std::fs::write(fin.join(format!("blk_{id}")), data).unwrap();
    std::fs::write(fin.join(format!("blk_{id}_3.meta")), meta).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn scanner_honours_its_rate_and_quarantine_survives_restart() {
    let (mock, nn_addr, server) = Mock::start(fencing(1, true)).await;
    let dir = tempfile::tempdir().unwrap();
    const LEN: u64 = 2 << 20;
    const RATE: u64 = 1 << 20;
    let data: Vec<u8> = (0..LEN).map(|i| (i % 251) as u8).collect();
    put_replica(dir.path(), 7, &data);
    // Corrupt the last chunk: the scanner must read all LEN bytes first.
    flip_byte(&dir.path().join("current/finalized/blk_7"), LEN - 1);

    let started = std::time::Instant::now();
    let dn = Datanode::start(scanning(config(&[nn_addr], dir.path()), RATE, 3_600_000))
        .await
        .unwrap();
    wait_for("bad replica report of block 7", || {
        mock.bad_reports(7, &dn.datanode_id) > 0
    })
    .await;
    let took = started.elapsed();
    // LEN bytes at RATE from an empty bucket: at least LEN / RATE seconds
    // (a 64 KiB slice of slack). A lower bound only.
    let min = Duration::from_secs_f64((LEN - 64 * 1024) as f64 / RATE as f64);
    assert!(took >= min, "scanned {LEN} bytes at {RATE}/s in {took:?}");
    let id = dn.datanode_id.clone();
    dn.stop().await.unwrap();

    // After a restart (scanner off) the replica is still quarantined: not
    // served, not in the full report, and reported bad again.
    let before = mock.bad_reports(7, &id);
    let dn = Datanode::start(scanning(config(&[nn_addr], dir.path()), 0, 1))
        .await
        .unwrap();
    wait_for("bad replica re-reported after restart", || {
        mock.bad_reports(7, &id) > before
    })
    .await;
    {
        let s = mock.0.lock().unwrap();
        assert!(!s
            .full_reports
            .last()
            .unwrap()
            .iter()
            .any(|b| b.block_id == 7));
    }
    let r = read_response(&dn, 7, LEN).await;
    assert_eq!(r.status(), TStatus::ErrorChecksum, "{r:?}");
    dn.stop().await.unwrap();
    server.abort();
}

/// READ_BLOCK of the whole block `id` (stamp 3, `BLOCK_LEN` bytes): its
/// data, or the error response.
async fn read_all(dn: &Datanode, id: u64) -> Result<Vec<u8>, TStatus> {
    let mut c = TcpTransport::default().connect(dn.data_addr).await.unwrap();
    c.send(Frame::Op(Op::ReadBlock(ReadBlockOp {
        block: Some(ExtendedBlock {
            block_id: id,
            generation_stamp: 3,
            num_bytes: BLOCK_LEN as u64,
        }),
        offset: 0,
        length: BLOCK_LEN as u64,
        client_id: "c".into(),
    })))
    .await
    .unwrap();
    match c.recv().await.unwrap() {
        Some(Frame::Response(r)) if r.status() == TStatus::Success => {}
        Some(Frame::Response(r)) => return Err(r.status()),
        other => panic!("{other:?}"),
    }
    let mut data = Vec::new();
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(20), c.recv())
            .await
            .expect("packet within the deadline");
        match frame.unwrap() {
            Some(Frame::Packet(p)) if p.is_last() => return Ok(data),
            Some(Frame::Packet(p)) => data.extend_from_slice(&p.data),
            other => panic!("{other:?}"),
        }
    }
}

/// A datanode with data dirs `<root>/d0` and `<root>/d1`.
fn two_dirs(nn: std::net::SocketAddr, root: &std::path::Path, tolerated: usize) -> DatanodeConfig {
    DatanodeConfig {
        data_dirs: vec![root.join("d0"), root.join("d1")],
        failed_volumes_tolerated: tolerated,
        scan_bytes_per_sec: 0,
        ..config(&[nn], root)
    }
}

fn finalized_in(dir: &std::path::Path, id: u64) -> bool {
    dir.join(format!("current/finalized/blk_{id}")).exists()
}

/// Makes a data dir fail its next replica creation, even for root: its
/// `current/rbw` becomes a regular file.
fn break_rbw(dir: &std::path::Path) {
    let rbw = dir.join("current/rbw");
    std::fs::remove_dir_all(&rbw).unwrap();
    std::fs::write(&rbw, b"not a directory").unwrap();
}

fn last_failed_volumes(mock: &Mock) -> Option<u32> {
    let s = mock.0.lock().unwrap();
    s.heartbeats.last()?.storage.map(|r| r.failed_volumes)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn failed_volume_is_taken_out_of_service_and_the_node_keeps_serving() {
    let (mock, nn_addr, server) = Mock::start(fencing(1, true)).await;
    let root = tempfile::tempdir().unwrap();
    let (d0, d1) = (root.path().join("d0"), root.path().join("d1"));
    let dn = Datanode::start(two_dirs(nn_addr, root.path(), 1))
        .await
        .unwrap();
    wait_for("a heartbeat with no failed volume", || {
        last_failed_volumes(&mock) == Some(0)
    })
    .await;
    for id in 1..=4 {
        write_block(&dn, id).await;
    }
    let (on_d0, on_d1): (Vec<u64>, Vec<u64>) = (1..=4).partition(|&id| finalized_in(&d0, id));
    assert!(
        !on_d0.is_empty() && !on_d1.is_empty(),
        "round robin spreads blocks: d0 {on_d0:?}, d1 {on_d1:?}"
    );
    assert!(on_d1.iter().all(|&id| finalized_in(&d1, id)));

    break_rbw(&d1);
    // Every write succeeds: the one that finds d1 broken moves to d0.
    for id in 11..=16 {
        write_block(&dn, id).await;
        assert!(finalized_in(&d0, id), "block {id} not on the good dir");
    }
    wait_for("a heartbeat with one failed volume", || {
        last_failed_volumes(&mock) == Some(1)
    })
    .await;
    // The failed dir's replicas are reported deleted (the namenode
    // re-replicates them) and no longer served.
    for &id in &on_d1 {
        wait_for(&format!("block {id} reported deleted"), || mock.deleted(id)).await;
        assert_eq!(read_all(&dn, id).await, Err(TStatus::ErrorNotFound));
    }
    // What the good dir holds, old and new, still reads back.
    for id in on_d0.iter().copied().chain(11..=16) {
        assert_eq!(read_all(&dn, id).await, Ok(data_of(id)), "block {id}");
        assert!(!mock.deleted(id), "block {id} wrongly reported deleted");
    }
    assert_eq!(dn.fatal_error(), None);
    dn.stop().await.unwrap();
    server.abort();
}

/// WRITE_BLOCK of block `id` that may fail (the node may be stopping).
async fn try_write_block(dn: &Datanode, id: u64) {
    let _ = tokio::time::timeout(Duration::from_secs(10), async {
        let Ok(mut c) = TcpTransport::default().connect(dn.data_addr).await else {
            return;
        };
        let op = Frame::Op(Op::WriteBlock(WriteBlockOp {
            block: Some(ExtendedBlock {
                block_id: id,
                generation_stamp: 3,
                num_bytes: 0,
            }),
            targets: vec![],
            client_id: "c".into(),
            bytes_per_checksum: 512,
            source_datanode: String::new(),
            ..Default::default()
        }));
        if c.send(op).await.is_err() {
            return;
        }
        let data = Bytes::from(data_of(id));
        let _ = c.recv().await;
        let _ = c
            .send(Frame::Packet(Packet::new(0, 0, data, &Checksums::new(512))))
            .await;
        let _ = c
            .send(Frame::Packet(Packet::last(1, BLOCK_LEN as u64)))
            .await;
        while let Ok(Some(_)) = c.recv().await {}
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn more_failed_volumes_than_tolerated_stop_the_node() {
    let (_mock, nn_addr, server) = Mock::start(fencing(1, true)).await;
    let root = tempfile::tempdir().unwrap();
    let d1 = root.path().join("d1");
    let dn = Datanode::start(two_dirs(nn_addr, root.path(), 0))
        .await
        .unwrap();
    break_rbw(&d1);
    // Round robin reaches d1 within two writes.
    for id in 1..=2 {
        try_write_block(&dn, id).await;
    }
    wait_for("the node to stop itself", || dn.fatal_error().is_some()).await;
    let why = dn.fatal_error().unwrap();
    assert!(
        why.contains(&d1.display().to_string()) && !why.contains('\n'),
        "{why}"
    );
    let addr = dn.data_addr;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while TcpTransport::default().connect(addr).await.is_ok() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "still accepting after stopping"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    dn.stop().await.unwrap();
    server.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_unusable_dir_at_start_is_refused_unless_tolerated() {
    let (mock, nn_addr, server) = Mock::start(fencing(1, true)).await;
    let root = tempfile::tempdir().unwrap();
    let d1 = root.path().join("d1");
    // A regular file where a data dir should be: unusable even for root.
    std::fs::write(&d1, b"not a directory").unwrap();

    let err = match Datanode::start(two_dirs(nn_addr, root.path(), 0)).await {
        Ok(_) => panic!("started with an unusable data dir and none tolerated"),
        Err(e) => e.to_string(),
    };
    assert!(
        err.contains(&d1.display().to_string()) && !err.contains('\n'),
        "{err}"
    );
    assert!(err.contains("failed_volumes_tolerated"), "{err}");

    let dn = Datanode::start(two_dirs(nn_addr, root.path(), 1))
        .await
        .unwrap();
    wait_for("a heartbeat with one failed volume", || {
        last_failed_volumes(&mock) == Some(1)
    })
    .await;
    write_block(&dn, 1).await;
    assert_eq!(read_all(&dn, 1).await, Ok(data_of(1)));
    dn.stop().await.unwrap();
    server.abort();
}

/// Starts writing block `id` at generation stamp `gs` on `dn` alone and
/// sends `data` without the last packet; returns once it is acknowledged,
/// with the writer still open (a writer that died after an hflush).
async fn write_unfinished(
    dn: &Datanode,
    id: u64,
    gs: u64,
    data: &[u8],
) -> rfs_transport::Connection {
    let mut c = TcpTransport::default().connect(dn.data_addr).await.unwrap();
    c.send(Frame::Op(Op::WriteBlock(WriteBlockOp {
        block: Some(ExtendedBlock {
            block_id: id,
            generation_stamp: gs,
            num_bytes: 0,
        }),
        client_id: "dead-writer".into(),
        bytes_per_checksum: 512,
        ..Default::default()
    })))
    .await
    .unwrap();
    match c.recv().await.unwrap() {
        Some(Frame::Response(r)) => assert_eq!(r.status(), TStatus::Success, "{}", r.message),
        other => panic!("{other:?}"),
    }
    let packet = Packet::new(0, 0, Bytes::copy_from_slice(data), &Checksums::new(512));
    c.send(Frame::Packet(packet)).await.unwrap();
    match tokio::time::timeout(Duration::from_secs(20), c.recv()).await {
        Ok(Ok(Some(Frame::Ack(a)))) => assert!(a.is_success(), "{a:?}"),
        other => panic!("expected an ack, got {other:?}"),
    }
    c
}

fn location(dn: &Datanode) -> DatanodeInfo {
    DatanodeInfo {
        datanode_id: dn.datanode_id.clone(),
        hostname: "127.0.0.1".into(),
        ip: "127.0.0.1".into(),
        data_port: dn.data_addr.port() as u32,
        ..Default::default()
    }
}

/// The replica of `id` on disk is finalized at `gs` with exactly `data` and
/// checksums that verify, and nothing of it is left in rbw/.
fn assert_finalized(dir: &std::path::Path, id: u64, gs: u64, data: &[u8]) {
    let cur = dir.join("current");
    let on_disk = std::fs::read(cur.join(format!("finalized/blk_{id}"))).unwrap();
    assert_eq!(
        on_disk.len(),
        data.len(),
        "length of block {id} in {}",
        dir.display()
    );
    assert!(on_disk == data, "bytes of block {id} in {}", dir.display());
    let meta = std::fs::read(cur.join(format!("finalized/blk_{id}_{gs}.meta"))).unwrap();
    Checksums::new(512)
        .verify(data, &meta[8..], 0)
        .expect("checksums of the recovered replica verify");
    let rbw_left: Vec<_> = std::fs::read_dir(cur.join("rbw"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .filter(|n| n.to_string_lossy().starts_with(&format!("blk_{id}")))
        .collect();
    assert!(rbw_left.is_empty(), "rbw files left: {rbw_left:?}");
}

/// Lease recovery driven by the namenode's RecoverBlock command: the
/// primary stops both writers, keeps the shorter length (the bytes both
/// replicas hold), finalizes both replicas there at the new generation
/// stamp, and reports back with CommitBlockSynchronization.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn recover_block_command_keeps_the_shortest_replica_length() {
    let (mock, nn_addr, server) = Mock::start(fencing(1, true)).await;
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = Datanode::start(config(&[nn_addr], da.path()))
        .await
        .unwrap();
    let b = Datanode::start(config(&[nn_addr], db.path()))
        .await
        .unwrap();
    let st = mock.0.clone();
    wait_for("both datanodes registered", || {
        st.lock().unwrap().registered.len() >= 2
    })
    .await;
    let data: Vec<u8> = (0..3000u32).map(|i| (i * 7 + 1) as u8).collect();
    // b's writer got fewer bytes, and not a whole chunk's worth at the end.
    let _wa = write_unfinished(&a, 40, 5, &data).await;
    let _wb = write_unfinished(&b, 40, 5, &data[..2148]).await;
    mock.send_and_await(vec![DatanodeCommand {
        command: Some(Command::Recover(RecoverBlock {
            block: Some(ExtendedBlock {
                block_id: 40,
                generation_stamp: 7,
                num_bytes: 0,
            }),
            locations: vec![location(&a), location(&b)],
        })),
        ..Default::default()
    }])
    .await;
    wait_for("CommitBlockSynchronization", || {
        !st.lock().unwrap().synced.is_empty()
    })
    .await;
    let req = st.lock().unwrap().synced[0].clone();
    assert_eq!(
        req.block,
        Some(ExtendedBlock {
            block_id: 40,
            generation_stamp: 7,
            num_bytes: 2148
        })
    );
    assert!(!req.delete_block);
    let mut ids = req.datanode_ids.clone();
    ids.sort();
    let mut want = vec![a.datanode_id.clone(), b.datanode_id.clone()];
    want.sort();
    assert_eq!(ids, want);
    assert_finalized(da.path(), 40, 7, &data[..2148]);
    assert_finalized(db.path(), 40, 7, &data[..2148]);
    // Each COMMIT asked the namenode first, as a lease recovery.
    let asked: Vec<_> = st
        .lock()
        .unwrap()
        .confirmed
        .iter()
        .map(|c| (c.block, c.kind()))
        .collect();
    assert_eq!(asked, vec![(req.block, RecoveryKind::Lease); 2]);
    wait_for("both recovered replicas reported", || {
        let s = st.lock().unwrap();
        s.received
            .iter()
            .filter(|r| r.block_id == 40 && r.generation_stamp == 7 && r.num_bytes == 2148)
            .count()
            >= 2
    })
    .await;
    a.stop().await.unwrap();
    b.stop().await.unwrap();
    server.abort();
}
