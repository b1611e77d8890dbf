//! Small in-process fakes: a namenode speaking ClientProtocol over tonic
//! (alone, or as the shared namespace of a fake HA group whose followers
//! answer NotLeader), members serving HaAdmin, and datanodes speaking the
//! data-transfer protocol over rfs-transport. They check what a real peer
//! would (contiguous offsets, CRC32C of every packet, block boundaries)
//! and nothing more.

#![allow(dead_code)]

use std::any::Any;
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use rfs_proto::common::{DatanodeInfo, ExtendedBlock, LocatedBlock};
use rfs_proto::listing::PageNames;
use rfs_proto::namenode::client_protocol_server::{ClientProtocol, ClientProtocolServer};
use rfs_proto::namenode::*;
use rfs_proto::rpc_error::{self, RpcErrorKind};
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

/// What happens to the answer of a call the fake has applied.
#[derive(Clone, Copy, Debug)]
pub enum LostReply {
    /// Answer `Unavailable` as a broken connection would.
    Unavailable,
    /// Answer only after this long (longer than the client waits).
    Late(Duration),
}

#[derive(Default)]
pub struct NnState {
    pub files: HashMap<String, FileEntry>,
    pub dirs: HashSet<String>,
    /// Every attempt of a non-idempotent call, in arrival order.
    pub calls: Vec<(&'static str, Option<CallId>)>,
    /// Answers by (client id, call id), as a namenode's retry cache.
    retry_cache: HashMap<(String, u64), Box<dyn Any + Send>>,
    /// The next call of this method is applied, then its answer is lost.
    pub lose_reply: Option<(&'static str, LostReply)>,
    pub write_targets: Vec<DatanodeInfo>,
    /// Answer `CreateRequest.first_block` with a block, as namenodes that
    /// know the field do; `false`: as one that does not.
    pub first_block: bool,
    pub read_locations: Vec<DatanodeInfo>,
    /// Located blocks say every replica is marked corrupt.
    pub read_corrupt: bool,
    pub next_block: u64,
    pub bad_reports: Vec<(u64, String, String)>,
    pub renewals: u64,
    /// Most entries in one `List` page (as the namenode's own cap); `None`
    /// leaves the client's limit.
    pub list_page_cap: Option<usize>,
    /// `List` pages answered before every later `List` fails with
    /// NotFound, as when the directory is deleted mid-listing.
    pub list_pages_before_failure: Option<usize>,
    /// `Some`: `Batch` is answered (each call by its own handler), and
    /// recorded here; `None`: answered Unimplemented, as an older namenode.
    pub batches: Option<Batches>,
}

#[derive(Default, Debug)]
pub struct Batches {
    /// Calls in each batch, in arrival order.
    pub sizes: Vec<usize>,
    pub in_flight: usize,
    pub most_in_flight: usize,
    /// How long each batch takes to answer.
    pub delay: Duration,
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

impl FakeNamenode {
    /// Records an attempt of a non-idempotent call; a repeated call id gets
    /// the first answer back.
    fn replay<T: Clone + 'static>(&self, method: &'static str, call: &Option<CallId>) -> Option<T> {
        let mut s = self.state();
        s.calls.push((method, call.clone()));
        let key = call.as_ref().map(|c| (c.client_id.clone(), c.call_id))?;
        s.retry_cache.get(&key)?.downcast_ref::<T>().cloned()
    }

    /// Remembers the answer of `call` and sends it, unless a lost reply was
    /// asked for.
    async fn answer<T: Clone + Send + 'static>(
        &self,
        method: &'static str,
        call: &Option<CallId>,
        resp: T,
    ) -> Rpc<T> {
        let lost = {
            let mut s = self.state();
            if let Some(c) = call {
                s.retry_cache
                    .insert((c.client_id.clone(), c.call_id), Box::new(resp.clone()));
            }
            match s.lose_reply {
                Some((m, how)) if m == method => {
                    s.lose_reply = None;
                    Some(how)
                }
                _ => None,
            }
        };
        match lost {
            None => {}
            Some(LostReply::Unavailable) => {
                return Err(tonic::Status::unavailable("fake: connection reset"))
            }
            Some(LostReply::Late(d)) => tokio::time::sleep(d).await,
        }
        Ok(Response::new(resp))
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

fn dir_status(path: &str) -> FileStatus {
    FileStatus {
        path: path.into(),
        file_type: FileType::Directory as i32,
        mode: 0o755,
        ..Default::default()
    }
}

/// Every entry directly in directory `dir`, in name order.
fn entries_in(s: &NnState, dir: &str) -> Vec<FileStatus> {
    let files = s.files.iter().filter(|(p, _)| directly_in(dir, p));
    let dirs = s.dirs.iter().filter(|p| directly_in(dir, p));
    let mut entries: Vec<FileStatus> = files
        .map(|(p, f)| status_of(p, f))
        .chain(dirs.map(|p| dir_status(p)))
        .collect();
    entries.sort_by(|a, b| a.path.cmp(&b.path));
    entries
}

/// A `List` page as the namenode sends it: entries by name, owners and
/// groups in tables.
fn compact_page(dir: &str, entries: Vec<FileStatus>, has_more: bool) -> ListResponse {
    let mut names = PageNames::default();
    let items = entries
        .into_iter()
        .map(|e| ListEntry {
            name: name_of(&e.path).to_string(),
            file_type: e.file_type,
            length: e.length,
            owner: names.owner(&e.owner),
            group: names.group(&e.group),
            mode: e.mode,
            mtime_ms: e.mtime_ms,
            atime_ms: e.atime_ms,
            replication: e.replication,
            block_size: e.block_size,
            inode_id: e.inode_id,
            under_construction: e.under_construction,
            children: e.children,
            writer: e.writer,
        })
        .collect();
    names.page(dir.to_string(), items, has_more)
}

/// The last component of `path`.
fn name_of(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// Whether `path` lies directly in directory `dir`.
fn directly_in(dir: &str, path: &str) -> bool {
    let parent = match path.rfind('/') {
        Some(0) => "/",
        Some(i) => &path[..i],
        None => return false,
    };
    parent == dir && path != dir
}

fn not_found(path: &str) -> tonic::Status {
    rfs_proto::rpc_error::status(
        rfs_proto::rpc_error::RpcErrorKind::NotFound,
        format!("{path}: No such file or directory"),
    )
}

/// A new last block of `path`, to be written to the write targets.
fn allocate(s: &mut NnState, path: &str) -> Result<LocatedBlock, tonic::Status> {
    s.next_block += 1;
    let block = ExtendedBlock {
        block_id: s.next_block,
        generation_stamp: 1000,
        num_bytes: 0,
    };
    let locations = s.write_targets.clone();
    let f = s.files.get_mut(path).ok_or_else(|| not_found(path))?;
    let offset = f.blocks.iter().map(|b| b.num_bytes).sum();
    f.blocks.push(block);
    Ok(LocatedBlock {
        block: Some(block),
        offset,
        locations,
        corrupt: false,
    })
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
    /// Unless `batches` is set, as a namenode older than `Batch` answers:
    /// the client then sends each call as its own RPC, so most tests
    /// against this fake drive that fallback (and the real namenode's
    /// tests the batches).
    async fn batch(&self, r: Request<BatchRequest>) -> Rpc<BatchResponse> {
        let calls = r.into_inner().calls;
        let delay = {
            let mut s = self.state();
            let Some(b) = s.batches.as_mut() else {
                return Err(tonic::Status::unimplemented("this fake has no Batch"));
            };
            b.sizes.push(calls.len());
            b.in_flight += 1;
            b.most_in_flight = b.most_in_flight.max(b.in_flight);
            b.delay
        };
        tokio::time::sleep(delay).await;
        let mut answers = Vec::new();
        for call in calls {
            answers.push(rfs_proto::batch::answer(self, call).await);
        }
        self.state().batches.as_mut().expect("set above").in_flight -= 1;
        Ok(Response::new(BatchResponse { answers }))
    }

    async fn create(&self, r: Request<CreateRequest>) -> Rpc<CreateResponse> {
        let r = r.into_inner();
        if let Some(done) = self.replay("create", &r.call) {
            return Ok(Response::new(done));
        }
        let resp = {
            let mut s = self.state();
            if s.files.contains_key(&r.path) && !r.overwrite {
                return Err(rpc_error::status(
                    RpcErrorKind::AlreadyExists,
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
            s.files.insert(r.path.clone(), f);
            let block = (r.first_block && s.first_block).then(|| allocate(&mut s, &r.path));
            CreateResponse {
                status: Some(st),
                block: block.transpose()?,
            }
        };
        self.answer("create", &r.call, resp).await
    }

    async fn add_block(&self, r: Request<AddBlockRequest>) -> Rpc<AddBlockResponse> {
        let r = r.into_inner();
        if let Some(done) = self.replay("add_block", &r.call) {
            return Ok(Response::new(done));
        }
        let resp = {
            let mut s = self.state();
            let f = s.files.get_mut(&r.path).ok_or_else(|| not_found(&r.path))?;
            set_len(f, r.previous);
            AddBlockResponse {
                block: Some(allocate(&mut s, &r.path)?),
            }
        };
        self.answer("add_block", &r.call, resp).await
    }

    async fn complete(&self, r: Request<CompleteRequest>) -> Rpc<CompleteResponse> {
        let r = r.into_inner();
        if let Some(done) = self.replay("complete", &r.call) {
            return Ok(Response::new(done));
        }
        let resp = {
            let mut s = self.state();
            let f = s.files.get_mut(&r.path).ok_or_else(|| not_found(&r.path))?;
            if let Some(unwritten) = r.unwritten {
                if f.blocks.last().map(|b| b.block_id) != Some(unwritten.block_id) {
                    return Err(tonic::Status::invalid_argument(format!(
                        "{}: block {} is not the file's last block",
                        r.path, unwritten.block_id
                    )));
                }
                f.blocks.pop();
            }
            set_len(f, r.last);
            f.complete = true;
            CompleteResponse {
                completed: true,
                status: Some(status_of(&r.path, f)),
            }
        };
        self.answer("complete", &r.call, resp).await
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
                corrupt: s.read_corrupt,
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
        let status = match s.files.get(&r.path) {
            Some(f) => Some(status_of(&r.path, f)),
            None if r.path == "/" || s.dirs.contains(&r.path) => Some(FileStatus {
                children: entries_in(&s, &r.path).len() as u64,
                ..dir_status(&r.path)
            }),
            None => None,
        };
        Ok(Response::new(GetFileInfoResponse { status }))
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

    async fn fsck(
        &self,
        _: Request<rfs_proto::namenode::FsckRequest>,
    ) -> Rpc<rfs_proto::namenode::FsckResponse> {
        Err(tonic::Status::unimplemented("fsck is not faked"))
    }

    async fn datanode_report(
        &self,
        _: Request<rfs_proto::namenode::DatanodeReportRequest>,
    ) -> Rpc<rfs_proto::namenode::DatanodeReportResponse> {
        Err(tonic::Status::unimplemented("datanode_report is not faked"))
    }

    async fn decommission(
        &self,
        _: Request<rfs_proto::namenode::DecommissionRequest>,
    ) -> Rpc<rfs_proto::namenode::DecommissionResponse> {
        Err(tonic::Status::unimplemented("decommission is not faked"))
    }

    async fn renew_lease(&self, _: Request<RenewLeaseRequest>) -> Rpc<RenewLeaseResponse> {
        self.state().renewals += 1;
        Ok(Response::new(RenewLeaseResponse {}))
    }

    /// Directories are names only; parents are not checked.
    async fn mkdirs(&self, r: Request<MkdirsRequest>) -> Rpc<MkdirsResponse> {
        let r = r.into_inner();
        if let Some(done) = self.replay("mkdirs", &r.call) {
            return Ok(Response::new(done));
        }
        let created = self.state().dirs.insert(r.path);
        self.answer("mkdirs", &r.call, MkdirsResponse { created })
            .await
    }
    async fn abandon_block(&self, r: Request<AbandonBlockRequest>) -> Rpc<AbandonBlockResponse> {
        let r = r.into_inner();
        if let Some(done) = self.replay("abandon_block", &r.call) {
            return Ok(Response::new(done));
        }
        {
            let mut s = self.state();
            let f = s.files.get_mut(&r.path).ok_or_else(|| not_found(&r.path))?;
            let id = r.block.map(|b| b.block_id);
            if f.blocks.last().map(|b| b.block_id) != id {
                return Err(tonic::Status::invalid_argument(format!(
                    "{}: block {id:?} is not the file's last block",
                    r.path
                )));
            }
            f.blocks.pop();
        }
        self.answer("abandon_block", &r.call, AbandonBlockResponse {})
            .await
    }
    async fn update_pipeline(
        &self,
        _: Request<UpdatePipelineRequest>,
    ) -> Rpc<UpdatePipelineResponse> {
        Err(tonic::Status::unimplemented("fake"))
    }
    /// The entries directly in the directory after `start_after`, in name
    /// order, up to the request's limit and `list_page_cap`.
    async fn list(&self, r: Request<ListRequest>) -> Rpc<ListResponse> {
        let r = r.into_inner();
        let mut s = self.state();
        if r.path != "/" && !s.dirs.contains(&r.path) {
            return Err(not_found(&r.path));
        }
        match &mut s.list_pages_before_failure {
            Some(0) => return Err(not_found(&r.path)),
            Some(n) => *n -= 1,
            None => {}
        }
        let limit = match (r.limit as usize, s.list_page_cap) {
            (0, cap) => cap.unwrap_or(usize::MAX),
            (n, cap) => n.min(cap.unwrap_or(usize::MAX)),
        };
        let mut entries: Vec<FileStatus> = entries_in(&s, &r.path)
            .into_iter()
            .filter(|e| name_of(&e.path) > r.start_after.as_str())
            .collect();
        let has_more = entries.len() > limit;
        entries.truncate(limit);
        Ok(Response::new(compact_page(&r.path, entries, has_more)))
    }
    async fn delete(&self, r: Request<DeleteRequest>) -> Rpc<DeleteResponse> {
        let r = r.into_inner();
        if let Some(done) = self.replay("delete", &r.call) {
            return Ok(Response::new(done));
        }
        let deleted = {
            let mut s = self.state();
            s.files.remove(&r.path).is_some() || s.dirs.remove(&r.path)
        };
        self.answer("delete", &r.call, DeleteResponse { deleted })
            .await
    }
    /// Files only; `dst` is the final path.
    async fn rename(&self, r: Request<RenameRequest>) -> Rpc<RenameResponse> {
        let r = r.into_inner();
        if let Some(done) = self.replay("rename", &r.call) {
            return Ok(Response::new(done));
        }
        {
            let mut s = self.state();
            let f = s.files.remove(&r.src).ok_or_else(|| not_found(&r.src))?;
            s.files.insert(r.dst.clone(), f);
        }
        let resp = RenameResponse {
            renamed: true,
            final_path: r.dst,
        };
        self.answer("rename", &r.call, resp).await
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
    /// A member of a [`FakeGroup`] names the group (members `m0`, `m1`,
    /// ...); a namenode served alone answers as one from before the call,
    /// so clients go on with the addresses they were given.
    async fn get_namenode_group(
        &self,
        r: Request<GetNamenodeGroupRequest>,
    ) -> Rpc<GetNamenodeGroupResponse> {
        let Some(asked) = r.extensions().get::<AskedMember>() else {
            return Err(tonic::Status::unimplemented("fake"));
        };
        let g = asked.group.lock().unwrap();
        if !g.names_group {
            return Err(tonic::Status::unimplemented("fake"));
        }
        let id = |i: usize| format!("m{i}");
        Ok(Response::new(GetNamenodeGroupResponse {
            members: (0..g.addrs.len())
                .map(|i| NamenodeMember {
                    id: id(i),
                    rpc_addr: g.addrs[i].to_string(),
                    witness: false,
                })
                .collect(),
            leader_id: g.leader.map(id).unwrap_or_default(),
            member_id: id(asked.me),
        }))
    }
}

// ---------------------------------------------------------------- HA group

/// Who leads a [`FakeGroup`] and what its members have been asked.
struct GroupState {
    addrs: Vec<SocketAddr>,
    leader: Option<usize>,
    /// Whether NotLeader answers carry the leader's address.
    hints: bool,
    /// Whether members answer GetNamenodeGroup (else as namenodes from
    /// before the call).
    names_group: bool,
    /// ClientProtocol requests that reached each member, but for
    /// GetNamenodeGroup (every member answers it) and Batch (none does).
    requests: Vec<u64>,
}

/// Tells the shared fake namespace which member of which group a
/// GetNamenodeGroup reached (a request extension).
#[derive(Clone)]
struct AskedMember {
    group: Arc<Mutex<GroupState>>,
    me: usize,
}

/// Member `me` of a [`FakeGroup`]: GetNamenodeGroup goes through to the
/// namespace marked with the member asked; any other call is counted and
/// answered NotLeader unless `me` leads, with the leader's address when
/// hints are on.
#[derive(Clone)]
struct GatedMember {
    inner: ClientProtocolServer<FakeNamenode>,
    asked: AskedMember,
}

impl tonic::server::NamedService for GatedMember {
    const NAME: &'static str =
        <ClientProtocolServer<FakeNamenode> as tonic::server::NamedService>::NAME;
}

impl tonic::codegen::Service<tonic::codegen::http::Request<tonic::body::Body>> for GatedMember {
    type Response = tonic::codegen::http::Response<tonic::body::Body>;
    type Error = std::convert::Infallible;
    type Future = tonic::codegen::BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut req: tonic::codegen::http::Request<tonic::body::Body>) -> Self::Future {
        if req.uri().path().ends_with("/GetNamenodeGroup") {
            req.extensions_mut().insert(self.asked.clone());
        } else if req.uri().path().ends_with("/Batch") {
            // Unimplemented from every member (as from namenodes older
            // than the call), not counted: the calls then come one by one.
        } else if let Err(status) = self.gate() {
            return Box::pin(async move { Ok(status.into_http()) });
        }
        Box::pin(self.inner.call(req))
    }
}

impl GatedMember {
    fn gate(&self) -> Result<(), tonic::Status> {
        let mut g = self.asked.group.lock().unwrap();
        let me = self.asked.me;
        g.requests[me] += 1;
        if g.leader == Some(me) {
            return Ok(());
        }
        let mut s = rpc_error::status(
            RpcErrorKind::NotLeader,
            format!("member {me} is not the leader"),
        );
        if let (true, Some(l)) = (g.hints, g.leader) {
            let hint = g.addrs[l].to_string().parse().unwrap();
            s.metadata_mut().insert(rpc_error::LEADER_HINT_KEY, hint);
        }
        Err(s)
    }
}

/// A namenode HA group in one process: every member serves ClientProtocol
/// on its own port, the leader from the shared namespace `nn` (as
/// replicated state would be), the others answer NotLeader, with the
/// leader's address when hints are on. Every member names the group
/// unless told not to.
pub struct FakeGroup {
    pub nn: FakeNamenode,
    pub addrs: Vec<SocketAddr>,
    state: Arc<Mutex<GroupState>>,
    servers: Vec<Option<Server>>,
}

struct Server {
    stop: tokio::sync::oneshot::Sender<()>,
    /// Breaks the member's open connections.
    kill: tokio_util::sync::CancellationToken,
    done: tokio::task::JoinHandle<()>,
}

/// A served connection that fails every read and write once its member is
/// stopped, as the socket of a dead process would: a stopped tonic server
/// only stops accepting, and open HTTP/2 connections would go on serving.
struct Killable {
    inner: tokio::net::TcpStream,
    killed: std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>,
}

impl Killable {
    fn new(inner: tokio::net::TcpStream, kill: &tokio_util::sync::CancellationToken) -> Self {
        let kill = kill.clone();
        Killable {
            inner,
            killed: Box::pin(async move { kill.cancelled().await }),
        }
    }

    fn check(&mut self, cx: &mut std::task::Context<'_>) -> std::io::Result<()> {
        match self.killed.as_mut().poll(cx) {
            std::task::Poll::Ready(()) => Err(std::io::Error::new(
                std::io::ErrorKind::ConnectionReset,
                "fake member stopped",
            )),
            std::task::Poll::Pending => Ok(()),
        }
    }
}

impl tokio::io::AsyncRead for Killable {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        self.check(cx)?;
        std::pin::Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for Killable {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        self.check(cx)?;
        std::pin::Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

impl tonic::transport::server::Connected for Killable {
    type ConnectInfo = <tokio::net::TcpStream as tonic::transport::server::Connected>::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.connect_info()
    }
}

impl FakeGroup {
    /// Starts `members` members led by member `leader`, hints on.
    pub async fn start(members: usize, leader: Option<usize>, nn: FakeNamenode) -> FakeGroup {
        let mut listeners = Vec::new();
        for _ in 0..members {
            listeners.push(tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap());
        }
        let addrs: Vec<SocketAddr> = listeners.iter().map(|l| l.local_addr().unwrap()).collect();
        let state = Arc::new(Mutex::new(GroupState {
            addrs: addrs.clone(),
            leader,
            hints: true,
            names_group: true,
            requests: vec![0; members],
        }));
        let mut servers = Vec::new();
        for (i, listener) in listeners.into_iter().enumerate() {
            let svc = GatedMember {
                inner: ClientProtocolServer::new(nn.clone()),
                asked: AskedMember {
                    group: state.clone(),
                    me: i,
                },
            };
            let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
            let kill = tokio_util::sync::CancellationToken::new();
            let conn_kill = kill.clone();
            let incoming = tokio_stream::StreamExt::map(
                tokio_stream::wrappers::TcpListenerStream::new(listener),
                move |conn| conn.map(|c| Killable::new(c, &conn_kill)),
            );
            let done = tokio::spawn(async move {
                tonic::transport::Server::builder()
                    .add_service(svc)
                    .serve_with_incoming_shutdown(incoming, async {
                        let _ = stopped.await;
                    })
                    .await
                    .unwrap();
            });
            servers.push(Some(Server { stop, kill, done }));
        }
        FakeGroup {
            nn,
            addrs,
            state,
            servers,
        }
    }

    /// The member addresses as `dfs` and `ClientConfig::with_namenode`
    /// take them: `a,b,c`.
    pub fn addr_list(&self) -> String {
        let all: Vec<String> = self.addrs.iter().map(|a| a.to_string()).collect();
        all.join(",")
    }

    pub fn set_leader(&self, leader: Option<usize>) {
        self.state.lock().unwrap().leader = leader;
    }

    pub fn set_hints(&self, on: bool) {
        self.state.lock().unwrap().hints = on;
    }

    pub fn set_names_group(&self, on: bool) {
        self.state.lock().unwrap().names_group = on;
    }

    /// ClientProtocol requests that reached each member so far.
    pub fn requests(&self) -> Vec<u64> {
        self.state.lock().unwrap().requests.clone()
    }

    /// Shuts member `i` down: its open connections break and its port
    /// refuses new ones once this returns.
    pub async fn stop(&mut self, i: usize) {
        if let Some(server) = self.servers[i].take() {
            server.kill.cancel();
            let _ = server.stop.send(());
            tokio::time::timeout(Duration::from_secs(5), server.done)
                .await
                .expect("the fake member shuts down")
                .unwrap();
            // A child process forked by a parallel test may hold the listening
            // socket until it execs, so allow a moment.
            let deadline = std::time::Instant::now() + Duration::from_secs(2);
            while tokio::net::TcpStream::connect(self.addrs[i]).await.is_ok() {
                assert!(
                    std::time::Instant::now() < deadline,
                    "member {i} still accepts connections"
                );
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

/// Members serving HaAdmin, sharing one view of the group: `Status` on
/// member `i` answers `members[i]`; `TransferLeader` on the leader makes
/// the target lead in the next term, and refuses a witness, an unknown id,
/// or a call to a member that does not lead.
#[derive(Clone)]
pub struct FakeHaAdmin {
    pub members: Arc<Mutex<Vec<rfs_proto::ha::MemberStatus>>>,
    me: usize,
}

impl FakeHaAdmin {
    /// Serves each member on its own port; the addresses in member order.
    pub async fn start(members: Vec<rfs_proto::ha::MemberStatus>) -> Vec<SocketAddr> {
        let shared = Arc::new(Mutex::new(members));
        let n = shared.lock().unwrap().len();
        let mut addrs = Vec::new();
        for me in 0..n {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            addrs.push(listener.local_addr().unwrap());
            let svc = rfs_proto::ha::ha_admin_server::HaAdminServer::new(FakeHaAdmin {
                members: shared.clone(),
                me,
            });
            tokio::spawn(
                tonic::transport::Server::builder()
                    .add_service(svc)
                    .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
            );
        }
        addrs
    }
}

#[tonic::async_trait]
impl rfs_proto::ha::ha_admin_server::HaAdmin for FakeHaAdmin {
    async fn status(
        &self,
        _: Request<rfs_proto::ha::HaStatusRequest>,
    ) -> Rpc<rfs_proto::ha::HaStatusResponse> {
        let member = self.members.lock().unwrap()[self.me].clone();
        Ok(Response::new(rfs_proto::ha::HaStatusResponse {
            member: Some(member),
            ..Default::default()
        }))
    }

    async fn transfer_leader(
        &self,
        r: Request<rfs_proto::ha::TransferLeaderRequest>,
    ) -> Rpc<rfs_proto::ha::TransferLeaderResponse> {
        let target = r.into_inner().target_id;
        let mut members = self.members.lock().unwrap();
        let refuse = |m: String| Err(rpc_error::status(RpcErrorKind::InvalidArgument, m));
        if members[self.me].role != "leader" {
            return Err(rpc_error::status(
                RpcErrorKind::NotLeader,
                format!("{} is not the leader", members[self.me].id),
            ));
        }
        let Some(t) = members.iter().position(|m| m.id == target) else {
            return refuse(format!("no member {target} in the group"));
        };
        if members[t].witness {
            return refuse(format!("{target} is a witness and cannot lead"));
        }
        for (i, m) in members.iter_mut().enumerate() {
            m.term += 1;
            m.role = if i == t { "leader" } else { "follower" }.into();
            m.leader_id = target.clone();
        }
        let term = members[t].term;
        Ok(Response::new(rfs_proto::ha::TransferLeaderResponse {
            leader_id: target,
            term,
        }))
    }
}

// ---------------------------------------------------------------- datanode

/// Block id → finalized bytes, shared by the fake datanodes of a test.
pub type BlockStore = Arc<Mutex<HashMap<u64, Vec<u8>>>>;

#[derive(Clone, Default)]
pub struct DnBehaviour {
    /// Flip a byte of every packet served by READ_BLOCK (after checksumming).
    pub corrupt_reads: bool,
    /// Refuse READ_BLOCK with ERROR_CHECKSUM, as a datanode that found its
    /// replica corrupt and quarantined it.
    pub quarantined: bool,
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
        Some(Frame::Op(Op::ReadBlock(_))) if how.quarantined => {
            c.send(Frame::Response(OpResponse {
                status: Status::ErrorChecksum as i32,
                message: "replica is corrupt and quarantined".into(),
                ..Default::default()
            }))
            .await?;
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
