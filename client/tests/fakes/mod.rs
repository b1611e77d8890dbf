//! Small in-process fakes: a namenode speaking ClientProtocol over tonic
//! and datanodes speaking the data-transfer protocol over rfs-transport.
//! They check what a real peer would (contiguous offsets, CRC32C of every
//! packet, block boundaries) and nothing more.

#![allow(dead_code)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use rfs_proto::common::{DatanodeInfo, ExtendedBlock, LocatedBlock};
use rfs_proto::namenode::client_protocol_server::{ClientProtocol, ClientProtocolServer};
use rfs_proto::namenode::*;
use rfs_proto::transfer::{Checksums, Frame, Op, OpResponse, Packet, PipelineAck, Status};
use tonic::{Request, Response};

type Rpc<T> = Result<Response<T>, tonic::Status>;

// ---------------------------------------------------------------- namenode

#[derive(Default)]
pub struct FileEntry {
    pub blocks: Vec<ExtendedBlock>,
    pub block_size: u64,
    pub complete: bool,
}

#[derive(Default)]
pub struct NnState {
    pub files: HashMap<String, FileEntry>,
    pub write_targets: Vec<DatanodeInfo>,
    pub read_locations: Vec<DatanodeInfo>,
    pub next_block: u64,
    pub bad_reports: Vec<(u64, String, String)>,
    pub renewals: u64,
}

#[derive(Clone, Default)]
pub struct FakeNamenode(pub Arc<Mutex<NnState>>);

impl FakeNamenode {
    pub fn state(&self) -> std::sync::MutexGuard<'_, NnState> {
        self.0.lock().unwrap()
    }

    pub async fn serve(&self) -> SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let svc = ClientProtocolServer::new(self.clone());
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(svc)
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
        );
        addr
    }
}

fn status_of(path: &str, f: &FileEntry) -> FileStatus {
    FileStatus {
        path: path.into(),
        file_type: FileType::File as i32,
        length: f.blocks.iter().map(|b| b.num_bytes).sum(),
        block_size: f.block_size,
        replication: 1,
        mode: 0o644,
        under_construction: !f.complete,
        ..Default::default()
    }
}

fn not_found(path: &str) -> tonic::Status {
    rfs_proto::rpc_error::status(
        rfs_proto::rpc_error::RpcErrorKind::NotFound,
        format!("{path}: No such file or directory"),
    )
}

fn set_len(f: &mut FileEntry, b: Option<ExtendedBlock>) {
    if let Some(b) = b {
        if let Some(slot) = f.blocks.iter_mut().find(|x| x.block_id == b.block_id) {
            slot.num_bytes = b.num_bytes;
        }
    }
}

#[tonic::async_trait]
impl ClientProtocol for FakeNamenode {
    async fn create(&self, r: Request<CreateRequest>) -> Rpc<CreateResponse> {
        let r = r.into_inner();
        let mut s = self.state();
        if s.files.contains_key(&r.path) && !r.overwrite {
            return Err(rfs_proto::rpc_error::status(
                rfs_proto::rpc_error::RpcErrorKind::AlreadyExists,
                format!("{}: File exists", r.path),
            ));
        }
        let f = FileEntry {
            block_size: if r.block_size == 0 {
                4096
            } else {
                r.block_size
            },
            ..Default::default()
        };
        let st = status_of(&r.path, &f);
        s.files.insert(r.path, f);
        Ok(Response::new(CreateResponse { status: Some(st) }))
    }

    async fn add_block(&self, r: Request<AddBlockRequest>) -> Rpc<AddBlockResponse> {
        let r = r.into_inner();
        let mut s = self.state();
        s.next_block += 1;
        let block = ExtendedBlock {
            block_id: s.next_block,
            generation_stamp: 1000,
            num_bytes: 0,
        };
        let targets = s.write_targets.clone();
        let f = s.files.get_mut(&r.path).ok_or_else(|| not_found(&r.path))?;
        set_len(f, r.previous);
        let offset = f.blocks.iter().map(|b| b.num_bytes).sum();
        f.blocks.push(block);
        Ok(Response::new(AddBlockResponse {
            block: Some(LocatedBlock {
                block: Some(block),
                offset,
                locations: targets,
                corrupt: false,
            }),
        }))
    }

    async fn complete(&self, r: Request<CompleteRequest>) -> Rpc<CompleteResponse> {
        let r = r.into_inner();
        let mut s = self.state();
        let f = s.files.get_mut(&r.path).ok_or_else(|| not_found(&r.path))?;
        set_len(f, r.last);
        f.complete = true;
        Ok(Response::new(CompleteResponse {
            completed: true,
            status: Some(status_of(&r.path, f)),
        }))
    }

    async fn get_block_locations(
        &self,
        r: Request<GetBlockLocationsRequest>,
    ) -> Rpc<GetBlockLocationsResponse> {
        let r = r.into_inner();
        let s = self.state();
        let f = s.files.get(&r.path).ok_or_else(|| not_found(&r.path))?;
        let mut offset = 0;
        let mut blocks = Vec::new();
        for b in &f.blocks {
            blocks.push(LocatedBlock {
                block: Some(*b),
                offset,
                locations: s.read_locations.clone(),
                corrupt: false,
            });
            offset += b.num_bytes;
        }
        Ok(Response::new(GetBlockLocationsResponse {
            file_length: offset,
            blocks,
            under_construction: !f.complete,
            status: Some(status_of(&r.path, f)),
        }))
    }

    async fn get_file_info(&self, r: Request<GetFileInfoRequest>) -> Rpc<GetFileInfoResponse> {
        let r = r.into_inner();
        let s = self.state();
        Ok(Response::new(GetFileInfoResponse {
            status: s.files.get(&r.path).map(|f| status_of(&r.path, f)),
        }))
    }

    async fn report_bad_blocks(
        &self,
        r: Request<ReportBadBlocksRequest>,
    ) -> Rpc<ReportBadBlocksResponse> {
        let r = r.into_inner();
        self.state()
            .bad_reports
            .push((r.block.map_or(0, |b| b.block_id), r.datanode_id, r.reason));
        Ok(Response::new(ReportBadBlocksResponse {}))
    }

    async fn renew_lease(&self, _: Request<RenewLeaseRequest>) -> Rpc<RenewLeaseResponse> {
        self.state().renewals += 1;
        Ok(Response::new(RenewLeaseResponse {}))
    }

    async fn mkdirs(&self, _: Request<MkdirsRequest>) -> Rpc<MkdirsResponse> {
        Err(tonic::Status::unimplemented("fake"))
    }
    async fn abandon_block(&self, _: Request<AbandonBlockRequest>) -> Rpc<AbandonBlockResponse> {
        Err(tonic::Status::unimplemented("fake"))
    }
    async fn list(&self, _: Request<ListRequest>) -> Rpc<ListResponse> {
        Err(tonic::Status::unimplemented("fake"))
    }
    async fn delete(&self, _: Request<DeleteRequest>) -> Rpc<DeleteResponse> {
        Err(tonic::Status::unimplemented("fake"))
    }
    async fn rename(&self, _: Request<RenameRequest>) -> Rpc<RenameResponse> {
        Err(tonic::Status::unimplemented("fake"))
    }
    async fn set_replication(
        &self,
        _: Request<SetReplicationRequest>,
    ) -> Rpc<SetReplicationResponse> {
        Err(tonic::Status::unimplemented("fake"))
    }
    async fn content_summary(
        &self,
        _: Request<ContentSummaryRequest>,
    ) -> Rpc<ContentSummaryResponse> {
        Err(tonic::Status::unimplemented("fake"))
    }
    async fn fs_stats(&self, _: Request<FsStatsRequest>) -> Rpc<FsStatsResponse> {
        Err(tonic::Status::unimplemented("fake"))
    }
}

// ---------------------------------------------------------------- datanode

/// Block id → finalized bytes, shared by the fake datanodes of a test.
pub type BlockStore = Arc<Mutex<HashMap<u64, Vec<u8>>>>;

#[derive(Clone, Default)]
pub struct DnBehaviour {
    /// Flip a byte of every packet served by READ_BLOCK (after checksumming).
    pub corrupt_reads: bool,
    /// Answer every write packet with this error status and message.
    pub fail_writes: Option<(Status, String)>,
    /// Largest packet data accepted (asserted).
    pub max_packet: usize,
}

pub struct FakeDatanode {
    pub info: DatanodeInfo,
    pub packets_seen: Arc<Mutex<Vec<(u64, u64, usize)>>>,
}

pub async fn start_datanode(id: &str, store: BlockStore, how: DnBehaviour) -> FakeDatanode {
    let t = rfs_transport::default_transport();
    let mut l = t.bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let addr = l.local_addr();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let seen2 = seen.clone();
    tokio::spawn(async move {
        while let Ok(c) = l.accept().await {
            let (store, how, seen) = (store.clone(), how.clone(), seen2.clone());
            tokio::spawn(async move {
                let _ = serve(c, store, how, seen).await;
            });
        }
    });
    FakeDatanode {
        info: DatanodeInfo {
            datanode_id: id.into(),
            hostname: "localhost".into(),
            ip: "127.0.0.1".into(),
            data_port: addr.port() as u32,
            ..Default::default()
        },
        packets_seen: seen,
    }
}

async fn serve(
    mut c: rfs_transport::Connection,
    store: BlockStore,
    how: DnBehaviour,
    seen: Arc<Mutex<Vec<(u64, u64, usize)>>>,
) -> anyhow::Result<()> {
    let ok = OpResponse {
        status: Status::Success as i32,
        ..Default::default()
    };
    match c.recv().await? {
        Some(Frame::Op(Op::WriteBlock(op))) => {
            let block = op.block.unwrap();
            let sums = Checksums::new(op.bytes_per_checksum);
            c.send(Frame::Response(ok)).await?;
            let mut data = Vec::new();
            let mut seqno = 0;
            while let Some(Frame::Packet(p)) = c.recv().await? {
                assert_eq!(p.seqno, seqno, "seqnos run from 0");
                assert_eq!(p.offset_in_block, data.len() as u64, "contiguous offsets");
                assert!(p.data.len() <= how.max_packet, "packet of {}", p.data.len());
                p.verify(&sums).expect("client checksums are right");
                seen.lock()
                    .unwrap()
                    .push((block.block_id, p.offset_in_block, p.data.len()));
                seqno += 1;
                if let Some((status, msg)) = &how.fail_writes {
                    c.send(Frame::Ack(PipelineAck {
                        seqno: p.seqno,
                        replies: vec![*status],
                        message: msg.clone(),
                    }))
                    .await?;
                    return Ok(());
                }
                data.extend_from_slice(&p.data);
                let last = p.is_last();
                if last {
                    store
                        .lock()
                        .unwrap()
                        .insert(block.block_id, std::mem::take(&mut data));
                }
                c.send(Frame::Ack(PipelineAck::success(p.seqno, 1))).await?;
                if last {
                    return Ok(());
                }
            }
        }
        Some(Frame::Op(Op::ReadBlock(op))) => {
            let block = op.block.unwrap();
            let Some(data) = store.lock().unwrap().get(&block.block_id).cloned() else {
                c.send(Frame::Response(OpResponse {
                    status: Status::ErrorNotFound as i32,
                    message: "no such replica".into(),
                    ..Default::default()
                }))
                .await?;
                return Ok(());
            };
            let bpc = 512u64;
            let start = op.offset - op.offset % bpc;
            let end = (op.offset + op.length).min(data.len() as u64);
            c.send(Frame::Response(OpResponse {
                bytes_per_checksum: bpc as u32,
                first_chunk_offset: start,
                replica_length: data.len() as u64,
                ..ok
            }))
            .await?;
            let sums = Checksums::new(bpc as u32);
            let mut off = start;
            let mut seqno = 0;
            while off < end {
                let n = 1024.min(data.len() as u64 - off);
                let chunk = Bytes::copy_from_slice(&data[off as usize..(off + n) as usize]);
                let mut p = Packet::new(seqno, off, chunk, &sums);
                if how.corrupt_reads {
                    let mut d = p.data.to_vec();
                    d[0] ^= 0x20;
                    p.data = Bytes::from(d);
                }
                c.send(Frame::Packet(p)).await?;
                off += n;
                seqno += 1;
            }
            c.send(Frame::Packet(Packet::last(seqno, off))).await?;
        }
        _ => {}
    }
    Ok(())
}
