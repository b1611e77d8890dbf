//! A datanode reporting to an in-process mock namenode: registration, full
//! and incremental block reports, heartbeats, and the namenode's commands.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use rfs_datanode::{Datanode, DatanodeConfig};
use rfs_proto::common::{DatanodeInfo, ExtendedBlock};
use rfs_proto::datanode::datanode_command::Command;
use rfs_proto::datanode::datanode_protocol_server::{DatanodeProtocol, DatanodeProtocolServer};
use rfs_proto::datanode::*;
use rfs_proto::transfer::{Checksums, Frame, Op, Packet, Status as TStatus, WriteBlockOp};
use rfs_transport::{BlockTransport, TcpTransport};
use tonic::{Request, Response, Status};

#[derive(Default)]
struct State {
    registered: Vec<DatanodeInfo>,
    full_reports: Vec<Vec<ExtendedBlock>>,
    received: Vec<ExtendedBlock>,
    deleted: Vec<ExtendedBlock>,
    heartbeats: Vec<HeartbeatRequest>,
    commands: Vec<DatanodeCommand>,
}

#[derive(Clone, Default)]
struct Mock(Arc<Mutex<State>>);

#[tonic::async_trait]
impl DatanodeProtocol for Mock {
    async fn register(
        &self,
        r: Request<RegisterRequest>,
    ) -> Result<Response<RegisterResponse>, Status> {
        let info = r
            .into_inner()
            .info
            .ok_or_else(|| Status::invalid_argument("no info"))?;
        self.0.lock().unwrap().registered.push(info);
        Ok(Response::new(RegisterResponse {
            namenode_id: "mock".into(),
            fencing: None,
        }))
    }
    async fn heartbeat(
        &self,
        r: Request<HeartbeatRequest>,
    ) -> Result<Response<HeartbeatResponse>, Status> {
        let mut s = self.0.lock().unwrap();
        s.heartbeats.push(r.into_inner());
        let commands = std::mem::take(&mut s.commands);
        Ok(Response::new(HeartbeatResponse {
            commands,
            fencing: None,
        }))
    }
    async fn block_report(
        &self,
        r: Request<BlockReportRequest>,
    ) -> Result<Response<BlockReportResponse>, Status> {
        self.0
            .lock()
            .unwrap()
            .full_reports
            .push(r.into_inner().blocks);
        Ok(Response::new(BlockReportResponse::default()))
    }
    async fn block_received_and_deleted(
        &self,
        r: Request<BlockReceivedAndDeletedRequest>,
    ) -> Result<Response<BlockReceivedAndDeletedResponse>, Status> {
        let r = r.into_inner();
        let mut s = self.0.lock().unwrap();
        s.received.extend(r.received);
        s.deleted.extend(r.deleted);
        Ok(Response::new(BlockReceivedAndDeletedResponse::default()))
    }
    async fn report_bad_replica(
        &self,
        _r: Request<ReportBadReplicaRequest>,
    ) -> Result<Response<ReportBadReplicaResponse>, Status> {
        Ok(Response::new(ReportBadReplicaResponse::default()))
    }
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

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn registers_reports_and_obeys_commands() {
    let mock = Mock::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let nn_addr = listener.local_addr().unwrap();
    let server = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(DatanodeProtocolServer::new(mock.clone()))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    let dir = tempfile::tempdir().unwrap();
    let dn = Datanode::start(DatanodeConfig {
        namenodes: vec![nn_addr.to_string()],
        data_dirs: vec![dir.path().to_path_buf()],
        data_addr: Some("127.0.0.1:0".parse().unwrap()),
        http_addr: Some("127.0.0.1:0".parse().unwrap()),
        heartbeat_interval_ms: 50,
        no_fsync: true,
        ..Default::default()
    })
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
    let mut c = TcpTransport::default().connect(dn.data_addr).await.unwrap();
    c.send(Frame::Op(Op::WriteBlock(WriteBlockOp {
        block: Some(ExtendedBlock {
            block_id: 42,
            generation_stamp: 3,
            num_bytes: 0,
        }),
        targets: vec![],
        client_id: "c".into(),
        bytes_per_checksum: 512,
        source_datanode: String::new(),
    })))
    .await
    .unwrap();
    match c.recv().await.unwrap() {
        Some(Frame::Response(r)) => assert_eq!(r.status(), TStatus::Success),
        other => panic!("{other:?}"),
    }
    let data = Bytes::from(vec![7u8; 1500]);
    c.send(Frame::Packet(Packet::new(0, 0, data, &Checksums::new(512))))
        .await
        .unwrap();
    c.send(Frame::Packet(Packet::last(1, 1500))).await.unwrap();
    for seq in 0..2 {
        match c.recv().await.unwrap() {
            Some(Frame::Ack(a)) => assert!(a.seqno == seq && a.is_success(), "{a:?}"),
            other => panic!("{other:?}"),
        }
    }
    {
        let s = st.lock().unwrap();
        assert!(
            s.received.contains(&ExtendedBlock {
                block_id: 42,
                generation_stamp: 3,
                num_bytes: 1500
            }),
            "block received reported before the last ack: {:?}",
            s.received
        );
    }

    // Invalidate: the replica goes and is reported deleted.
    st.lock().unwrap().commands.push(DatanodeCommand {
        command: Some(Command::Invalidate(InvalidateBlocks {
            blocks: vec![ExtendedBlock {
                block_id: 42,
                generation_stamp: 3,
                num_bytes: 1500,
            }],
        })),
    });
    wait_for("deleted report", || {
        st.lock().unwrap().deleted.iter().any(|b| b.block_id == 42)
    })
    .await;
    assert!(!dir.path().join("current/finalized/blk_42").exists());

    // ReRegister: register again and send a full report.
    let (regs, reports) = {
        let s = st.lock().unwrap();
        (s.registered.len(), s.full_reports.len())
    };
    st.lock().unwrap().commands.push(DatanodeCommand {
        command: Some(Command::Reregister(ReRegister {})),
    });
    wait_for("re-registration", || {
        let s = st.lock().unwrap();
        s.registered.len() > regs && s.full_reports.len() > reports
    })
    .await;

    dn.stop().await.unwrap();
    server.abort();
}
