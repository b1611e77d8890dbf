//! The namenode over real gRPC, in process: the client protocol's rules and
//! error texts, and the datanode protocol driving the block map (fake
//! datanodes: registration, heartbeats, reports; no block bytes).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rfs_proto::common::{DatanodeInfo, ExtendedBlock, LocatedBlock};
use rfs_proto::datanode::datanode_command::Command;
use rfs_proto::datanode::datanode_protocol_client::DatanodeProtocolClient;
use rfs_proto::datanode::*;
use rfs_proto::ha::raft_peer_client::RaftPeerClient;
use rfs_proto::ha::RaftBatch;
use rfs_proto::namenode::client_protocol_client::ClientProtocolClient;
use rfs_proto::namenode::*;
use rfs_proto::rpc_error::{kind_of, RpcErrorKind};
use tonic::transport::Channel;

struct Namenode {
    client: ClientProtocolClient<Channel>,
    datanode: DatanodeProtocolClient<Channel>,
    peer: RaftPeerClient<Channel>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<rfs_namenode::Result<()>>,
    /// Each fake datanode's registration epoch and the highest command
    /// number it received, as a datanode keeps them.
    epochs: HashMap<String, (u64, u64)>,
    _dir: tempfile::TempDir,
}

impl Namenode {
    async fn start(tweak: impl FnOnce(&mut rfs_namenode::Config)) -> Namenode {
        let dir = tempfile::tempdir().unwrap();
        let mut config = rfs_namenode::Config {
            name_dir: dir.path().join("name"),
            http_addr: "127.0.0.1:0".parse().unwrap(),
            block_size: 1024 * 1024,
            replication: 3,
            ..Default::default()
        };
        tweak(&mut config);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(rfs_namenode::serve(config, listener, async move {
            let _ = stopped.await;
        }));
        let channel = Channel::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect()
            .await
            .unwrap();
        Namenode {
            client: ClientProtocolClient::new(channel.clone()),
            datanode: DatanodeProtocolClient::new(channel.clone()),
            peer: RaftPeerClient::new(channel),
            stop: Some(stop),
            task,
            epochs: HashMap::new(),
            _dir: dir,
        }
    }

    async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        self.task.await.unwrap().unwrap();
    }

    async fn register(&mut self, id: &str, ip: &str, remaining: u64) {
        self.try_register(id, ip).await.unwrap();
        self.heartbeat(id, remaining).await;
    }

    /// Registers `id` at `ip:9866`, naming its last registration.
    async fn try_register(&mut self, id: &str, ip: &str) -> Result<u64, tonic::Status> {
        let info = DatanodeInfo {
            datanode_id: id.into(),
            hostname: format!("host-{ip}"),
            ip: ip.into(),
            data_port: 9866,
            ..Default::default()
        };
        let (previous_epoch, last_command_seq) = self.epochs.get(id).copied().unwrap_or_default();
        let req = RegisterRequest {
            info: Some(info),
            previous_epoch,
            last_command_seq,
        };
        let epoch = self.datanode.register(req).await?.into_inner().epoch;
        self.epochs.insert(id.into(), (epoch, 0));
        Ok(epoch)
    }

    fn epoch(&self, id: &str) -> u64 {
        self.epochs.get(id).map_or(0, |e| e.0)
    }

    /// A heartbeat as a datanode sends it: its epoch, and the commands it
    /// received so far (so none comes twice).
    async fn heartbeat(&mut self, id: &str, remaining: u64) -> Vec<Command> {
        let (epoch, seen) = self.epochs.get(id).copied().unwrap_or_default();
        let commands = self.raw_heartbeat(id, remaining, epoch, seen).await;
        let last = commands.iter().map(|c| c.seq).fold(seen, u64::max);
        if let Some(e) = self.epochs.get_mut(id) {
            e.1 = last;
        }
        commands.into_iter().filter_map(|c| c.command).collect()
    }

    async fn raw_heartbeat(
        &mut self,
        id: &str,
        remaining: u64,
        epoch: u64,
        last_command_seq: u64,
    ) -> Vec<DatanodeCommand> {
        let storage = StorageReport {
            capacity: remaining * 2,
            used: 0,
            remaining,
            failed_volumes: 0,
        };
        self.datanode
            .heartbeat(HeartbeatRequest {
                datanode_id: id.into(),
                storage: Some(storage),
                xceivers: 0,
                epoch,
                last_command_seq,
            })
            .await
            .unwrap()
            .into_inner()
            .commands
    }

    async fn mkdirs(&mut self, path: &str, create_parent: bool) -> Result<bool, tonic::Status> {
        let r = MkdirsRequest {
            path: path.into(),
            create_parent,
            ..Default::default()
        };
        Ok(self.client.mkdirs(r).await?.into_inner().created)
    }

    async fn create(
        &mut self,
        path: &str,
        client: &str,
        overwrite: bool,
    ) -> Result<FileStatus, tonic::Status> {
        let r = CreateRequest {
            path: path.into(),
            client_id: client.into(),
            overwrite,
            create_parent: true,
            ..Default::default()
        };
        Ok(self.client.create(r).await?.into_inner().status.unwrap())
    }

    /// A create by `client` that asks for the first block too, near
    /// `host`, as call `call_id` of that client.
    async fn create_with_block(
        &mut self,
        path: &str,
        client: &str,
        host: &str,
        call_id: u64,
    ) -> Result<CreateResponse, tonic::Status> {
        let r = CreateRequest {
            path: path.into(),
            client_id: client.into(),
            create_parent: true,
            first_block: true,
            client_host: host.into(),
            call: Some(CallId {
                client_id: client.into(),
                call_id,
                ..Default::default()
            }),
            ..Default::default()
        };
        Ok(self.client.create(r).await?.into_inner())
    }

    async fn add_block(
        &mut self,
        path: &str,
        client: &str,
        previous: Option<ExtendedBlock>,
        host: &str,
    ) -> Result<LocatedBlock, tonic::Status> {
        let r = AddBlockRequest {
            call: None,
            path: path.into(),
            client_id: client.into(),
            previous,
            excluded_datanodes: vec![],
            client_host: host.into(),
        };
        Ok(self.client.add_block(r).await?.into_inner().block.unwrap())
    }

    async fn complete(
        &mut self,
        path: &str,
        client: &str,
        last: Option<ExtendedBlock>,
    ) -> Result<FileStatus, tonic::Status> {
        let r = CompleteRequest {
            call: None,
            path: path.into(),
            client_id: client.into(),
            last,
            unwritten: None,
        };
        Ok(self.client.complete(r).await?.into_inner().status.unwrap())
    }

    /// Writes a one-block file of `len` bytes (metadata only).
    async fn write(&mut self, path: &str, len: u64) -> ExtendedBlock {
        self.create(path, "w", false).await.unwrap();
        let b = self.add_block(path, "w", None, "").await.unwrap();
        let mut blk = b.block.unwrap();
        blk.num_bytes = len;
        self.complete(path, "w", Some(blk)).await.unwrap();
        blk
    }

    /// A create with overwrite by `client` that names `holder` as a dead
    /// writer to take the file over from.
    async fn take_over(
        &mut self,
        path: &str,
        client: &str,
        holder: &str,
    ) -> Result<FileStatus, tonic::Status> {
        let r = CreateRequest {
            path: path.into(),
            client_id: client.into(),
            overwrite: true,
            take_over_from: holder.into(),
            ..Default::default()
        };
        Ok(self.client.create(r).await?.into_inner().status.unwrap())
    }

    async fn rename(&mut self, src: &str, dst: &str) -> Result<String, tonic::Status> {
        self.rename_with(src, dst, false).await
    }

    async fn rename_with(
        &mut self,
        src: &str,
        dst: &str,
        overwrite: bool,
    ) -> Result<String, tonic::Status> {
        let r = RenameRequest {
            call: None,
            src: src.into(),
            dst: dst.into(),
            client_id: String::new(),
            overwrite,
        };
        Ok(self.client.rename(r).await?.into_inner().final_path)
    }

    async fn delete(&mut self, path: &str, recursive: bool) -> Result<bool, tonic::Status> {
        let r = DeleteRequest {
            call: None,
            path: path.into(),
            recursive,
            client_id: String::new(),
        };
        Ok(self.client.delete(r).await?.into_inner().deleted)
    }

    async fn locations(&mut self, path: &str, host: &str) -> GetBlockLocationsResponse {
        let r = GetBlockLocationsRequest {
            path: path.into(),
            offset: 0,
            length: 0,
            client_host: host.into(),
        };
        self.client
            .get_block_locations(r)
            .await
            .unwrap()
            .into_inner()
    }

    /// The status of `path`, `None` when nothing is there.
    async fn status(&mut self, path: &str) -> Option<FileStatus> {
        let req = GetFileInfoRequest { path: path.into() };
        self.client
            .get_file_info(req)
            .await
            .unwrap()
            .into_inner()
            .status
    }

    async fn stats(&mut self) -> FsStatsResponse {
        self.client
            .fs_stats(FsStatsRequest {})
            .await
            .unwrap()
            .into_inner()
    }
}

#[track_caller]
fn assert_err<T: std::fmt::Debug>(r: Result<T, tonic::Status>, kind: RpcErrorKind, message: &str) {
    let s = r.expect_err(message);
    assert_eq!(kind_of(&s), kind, "{}", s.message());
    assert_eq!(s.message(), message);
}

fn ids(b: &LocatedBlock) -> Vec<&str> {
    b.locations.iter().map(|d| d.datanode_id.as_str()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespace_rules_and_error_texts() {
    let mut nn = Namenode::start(|_| {}).await;
    nn.register("dn1", "10.0.0.1", 1 << 30).await;
    assert!(nn.mkdirs("/a/b", true).await.unwrap());
    assert!(
        !nn.mkdirs("/a/b/", true).await.unwrap(),
        "exists: not created"
    );
    assert_err(
        nn.mkdirs("/x/y", false).await,
        RpcErrorKind::NotFound,
        "/x: No such file or directory",
    );
    assert_err(
        nn.mkdirs("/a//b", true).await,
        RpcErrorKind::InvalidPath,
        "invalid path \"/a//b\": empty path component",
    );
    assert_err(
        nn.mkdirs("rel", true).await,
        RpcErrorKind::InvalidPath,
        "invalid path \"rel\": paths must be absolute (start with /)",
    );

    nn.write("/a/f", 5).await;
    assert_err(
        nn.create("/a/f", "w2", false).await,
        RpcErrorKind::AlreadyExists,
        "/a/f: File exists",
    );
    assert_err(
        nn.create("/a/b", "w2", true).await,
        RpcErrorKind::IsDirectory,
        "/a/b: Is a directory",
    );
    assert_err(
        nn.mkdirs("/a/f/g", true).await,
        RpcErrorKind::NotDirectory,
        "/a/f: Not a directory",
    );
    assert_err(
        nn.mkdirs("/a/f", true).await,
        RpcErrorKind::AlreadyExists,
        "/a/f: File exists",
    );

    // rename
    assert_eq!(nn.rename("/a/f", "/a/g").await.unwrap(), "/a/g");
    assert_eq!(nn.rename("/a/g", "/a/b").await.unwrap(), "/a/b/g");
    assert_eq!(nn.rename("/a/b/g", "/a/b").await.unwrap(), "/a/b/g");
    assert_eq!(nn.rename("/a/b/g", "/a/b/g").await.unwrap(), "/a/b/g");
    nn.write("/a/h", 1).await;
    assert_err(
        nn.rename("/a/h", "/a/b/g").await,
        RpcErrorKind::AlreadyExists,
        "/a/b/g: File exists",
    );
    assert_err(
        nn.rename("/a", "/a/b").await,
        RpcErrorKind::InvalidArgument,
        "cannot move /a into its own subtree /a/b",
    );
    assert_err(
        nn.rename("/a/h", "/nodir/h").await,
        RpcErrorKind::NotFound,
        "/nodir: No such file or directory",
    );
    assert_err(
        nn.rename("/zz", "/a/zz").await,
        RpcErrorKind::NotFound,
        "/zz: No such file or directory",
    );
    assert!(nn.rename("/", "/q").await.is_err());

    // listing and status
    let info = nn.status("/a").await.unwrap();
    assert_eq!((info.path.as_str(), info.children), ("/a", 2));
    assert!(nn.status("/nope").await.is_none());
    let list = nn
        .client
        .list(ListRequest {
            path: "/a".into(),
            start_after: "b".into(),
            limit: 0,
        })
        .await
        .unwrap()
        .into_inner();
    let names: Vec<_> = list.items.iter().map(|e| e.name.as_str()).collect();
    assert_eq!((list.path.as_str(), &names[..]), ("/a", &["h"][..]));
    let list = nn
        .client
        .list(ListRequest {
            path: "/a/h".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(list.items.len(), 1, "listing a file gives the file");
    assert_eq!(list.path, "/a/h");
    assert_eq!((list.items[0].name.as_str(), list.items[0].length), ("", 1));

    // delete
    assert_err(
        nn.delete("/a", false).await,
        RpcErrorKind::NotEmpty,
        "/a: Directory is not empty",
    );
    assert!(nn.delete("/a/h", false).await.unwrap());
    assert_err(
        nn.delete("/a/h", false).await,
        RpcErrorKind::NotFound,
        "/a/h: No such file or directory",
    );
    assert_eq!(
        kind_of(&nn.delete("/", true).await.unwrap_err()),
        RpcErrorKind::InvalidArgument
    );
    assert!(nn.delete("/a", true).await.unwrap());

    // set_replication and content summary
    nn.write("/s/one", 1000).await;
    nn.write("/s/d/two", 3000).await;
    let r = SetReplicationRequest {
        path: "/s/one".into(),
        replication: 2,
    };
    assert!(
        nn.client
            .set_replication(r)
            .await
            .unwrap()
            .into_inner()
            .changed
    );
    let r = SetReplicationRequest {
        path: "/s".into(),
        replication: 2,
    };
    assert_err(
        nn.client.set_replication(r).await,
        RpcErrorKind::IsDirectory,
        "/s: Is a directory",
    );
    let cs = nn
        .client
        .content_summary(ContentSummaryRequest { path: "/s".into() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (
            cs.length,
            cs.file_count,
            cs.directory_count,
            cs.space_consumed
        ),
        (4000, 2, 2, 1000 * 2 + 3000 * 3)
    );
    nn.stop().await;
}

/// A `List` page's entries as the full statuses `GetFileInfo` gives.
fn full_statuses(page: &ListResponse) -> Vec<FileStatus> {
    rfs_proto::listing::statuses(page.clone()).unwrap().0
}

impl Namenode {
    async fn mkdir_as(&mut self, path: &str, owner: &str, group: &str) {
        let r = MkdirsRequest {
            path: path.into(),
            create_parent: true,
            owner: owner.into(),
            group: group.into(),
            ..Default::default()
        };
        assert!(self.client.mkdirs(r).await.unwrap().into_inner().created);
    }

    async fn list_page(&mut self, path: &str, start_after: &str, limit: u32) -> ListResponse {
        let r = ListRequest {
            path: path.into(),
            start_after: start_after.into(),
            limit,
        };
        self.client.list(r).await.unwrap().into_inner()
    }

    async fn info(&mut self, path: &str) -> FileStatus {
        let r = GetFileInfoRequest { path: path.into() };
        let status = self.client.get_file_info(r).await.unwrap().into_inner();
        status.status.unwrap()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_pages_carry_names_and_each_owner_and_group_once() {
    let mut nn = Namenode::start(|_| {}).await;
    nn.mkdir_as("/m/a/x", "alice", "staff").await;
    nn.mkdir_as("/m/b", "bob", "staff").await;
    nn.mkdir_as("/m/c", "alice", "wheel").await;
    let create = CreateRequest {
        path: "/m/f".into(),
        client_id: "w".into(),
        owner: "carol".into(),
        group: "staff".into(),
        ..Default::default()
    };
    nn.client.create(create).await.unwrap();

    let page = nn.list_page("/m/", "", 0).await;
    assert_eq!(page.path, "/m", "the listed path, normalised");
    let names: Vec<&str> = page.items.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names, ["a", "b", "c", "f"], "names, not paths");
    assert_eq!(page.owners, ["alice", "bob", "carol"], "each owner once");
    assert_eq!(page.groups, ["staff", "wheel"], "each group once");
    let owned: Vec<(u32, u32)> = page.items.iter().map(|e| (e.owner, e.group)).collect();
    assert_eq!(owned, [(0, 0), (1, 0), (0, 1), (2, 0)]);
    // Entry by entry, what GetFileInfo says of the same path: entry counts
    // of directories, the writer of a file being written.
    for full in full_statuses(&page) {
        assert_eq!(full, nn.info(&full.path).await);
    }
    assert_eq!(page.items[0].children, 1);
    assert_eq!(page.items[3].writer, "w");
    assert!(!page.has_more);

    // A later page names only its own entries' owners and groups.
    let page = nn.list_page("/m", "a", 2).await;
    let names: Vec<&str> = page.items.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names, ["b", "c"]);
    assert!(page.has_more);
    assert_eq!(
        (&page.owners[..], &page.groups[..]),
        (
            &["bob".to_string(), "alice".into()][..],
            &["staff".to_string(), "wheel".into()][..]
        )
    );

    // Under the root, and a file listed as itself.
    let root = nn.list_page("/", "", 0).await;
    assert_eq!(full_statuses(&root)[0].path, "/m");
    let file = nn.list_page("/m/f", "", 0).await;
    assert_eq!((file.path.as_str(), file.items.len()), ("/m/f", 1));
    assert_eq!(full_statuses(&file)[0], nn.info("/m/f").await);
    nn.stop().await;
}

/// `ListResponse` as it was before compact listings: every entry a full
/// `FileStatus`, path, owner and group included.
#[derive(Clone, PartialEq, prost::Message)]
struct FullListResponse {
    #[prost(message, repeated, tag = "1")]
    entries: Vec<FileStatus>,
    #[prost(bool, tag = "2")]
    has_more: bool,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_of_1000_files_leaves_out_paths_owners_and_groups() {
    use prost::Message;
    let mut nn = Namenode::start(|c| c.block_size = 128 << 20).await;
    for i in 0..3 {
        nn.register(&format!("dn{i}"), &format!("10.0.0.{i}"), 1 << 40)
            .await;
    }
    for i in 0..1000 {
        let path = format!("/user/alice/data/part-{i:05}.parquet");
        nn.write(&path, 100_000_000 + i).await;
    }
    let page = nn.list_page("/user/alice/data", "", 1000).await;
    assert_eq!(page.items.len(), 1000);
    let full = FullListResponse {
        entries: full_statuses(&page),
        has_more: page.has_more,
    };
    let (compact, before) = (page.encoded_len(), full.encoded_len());
    eprintln!("a List page of 1000 files: {before} bytes as full statuses, {compact} compact");
    // Each entry sheds its 17-byte directory prefix, its owner (5 bytes
    // with tag and length) and its group (12).
    assert!(
        compact + 1000 * 34 <= before + 100,
        "{compact} bytes compact, {before} as full statuses"
    );
    nn.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fs_limits_refuse_small_blocks_and_a_block_past_the_limit() {
    let mut nn = Namenode::start(|c| c.max_blocks_per_file = 2).await;
    nn.register("dn1", "10.0.0.1", 1 << 30).await;
    let create = |path: &str, block_size: u64| CreateRequest {
        path: path.into(),
        client_id: "w".into(),
        block_size,
        ..Default::default()
    };
    assert_err(
        nn.client.create(create("/small", 4096)).await,
        RpcErrorKind::InvalidArgument,
        "block size 4096 is below the namenode's minimum 1048576 (min_block_size)",
    );
    let small = GetFileInfoRequest {
        path: "/small".into(),
    };
    let info = nn.client.get_file_info(small).await.unwrap().into_inner();
    assert!(info.status.is_none(), "nothing was made");
    nn.client.create(create("/f", 1 << 20)).await.unwrap();

    let b1 = nn.add_block("/f", "w", None, "").await.unwrap();
    // The file's last allowed block, asked for with a call id.
    let second = AddBlockRequest {
        call: Some(CallId {
            client_id: "w".into(),
            call_id: 7,
            ..Default::default()
        }),
        path: "/f".into(),
        client_id: "w".into(),
        previous: b1.block,
        excluded_datanodes: vec![],
        client_host: String::new(),
    };
    let b2 = nn.client.add_block(second.clone()).await.unwrap();
    let b2 = b2.into_inner().block.unwrap();
    assert_err(
        nn.add_block("/f", "w", b2.block, "").await,
        RpcErrorKind::InvalidArgument,
        "/f: block 3 would exceed the namenode's limit of 2 blocks per file (max_blocks_per_file)",
    );
    // A retry of the call that made the last allowed block passed the
    // limit the first time: it gets its block again, not a refusal.
    let again = nn.client.add_block(second).await.unwrap();
    assert_eq!(again.into_inner().block.unwrap().block, b2.block);
    let st = nn.complete("/f", "w", b2.block).await.unwrap();
    assert!(!st.under_construction);
    nn.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_leases_and_placement() {
    let mut nn = Namenode::start(|c| c.lease_soft_limit_ms = 300).await;
    nn.create("/f", "w1", false).await.unwrap();
    assert_err(
        nn.add_block("/f", "w1", None, "").await,
        RpcErrorKind::NoLiveDatanodes,
        "/f: cannot place a new block: no live datanodes",
    );
    assert_err(
        nn.add_block("/f", "w2", None, "").await,
        RpcErrorKind::LeaseConflict,
        "/f: file is being written by w1",
    );
    assert_err(
        nn.create("/f", "w2", true).await,
        RpcErrorKind::LeaseConflict,
        "/f: file is being written by w1",
    );

    nn.register("dn1", "10.0.0.1", 1 << 30).await;
    nn.register("dn2", "10.0.0.2", 1 << 30).await;
    nn.register("full", "10.0.0.3", 10).await;
    let b1 = nn.add_block("/f", "w1", None, "10.0.0.2").await.unwrap();
    assert_eq!(b1.offset, 0);
    assert_eq!(ids(&b1), ["dn2", "dn1"], "writer-local first, never full");
    let mut prev = b1.block.unwrap();
    prev.num_bytes = 1024 * 1024;
    let b2 = nn
        .add_block("/f", "w1", Some(prev), "10.0.0.1")
        .await
        .unwrap();
    assert_eq!(b2.offset, 1024 * 1024);
    assert_eq!(ids(&b2)[0], "dn1");
    let mut last = b2.block.unwrap();
    last.num_bytes = 10;
    // Too long a block is refused, not stored.
    let mut huge = last;
    huge.num_bytes = u64::MAX;
    assert_eq!(
        kind_of(&nn.complete("/f", "w1", Some(huge)).await.unwrap_err()),
        RpcErrorKind::InvalidArgument
    );
    let st = nn.complete("/f", "w1", Some(last)).await.unwrap();
    assert_eq!(
        (st.length, st.under_construction),
        (1024 * 1024 + 10, false)
    );
    assert!(
        nn.complete("/f", "w1", Some(last)).await.is_ok(),
        "complete is idempotent"
    );

    // Readable at once from the pipeline targets, local first.
    let locs = nn.locations("/f", "10.0.0.1").await;
    assert_eq!(locs.file_length, 1024 * 1024 + 10);
    assert_eq!(locs.blocks.len(), 2);
    assert_eq!(ids(&locs.blocks[0])[0], "dn1");
    let range = nn
        .client
        .get_block_locations(GetBlockLocationsRequest {
            path: "/f".into(),
            offset: 1024 * 1024 + 5,
            length: 1,
            client_host: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(range.blocks.len(), 1);
    assert_eq!(range.blocks[0].offset, 1024 * 1024);

    // A writer silent past the soft limit loses the file to a new writer.
    nn.create("/g", "w1", false).await.unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    nn.create("/g", "w2", true).await.unwrap();
    assert_err(
        nn.add_block("/g", "w1", None, "").await,
        RpcErrorKind::LeaseConflict,
        "/g: file is being written by w2",
    );

    // A writer the caller names as dead loses the file at once, inside
    // the soft limit, but only while it still holds it.
    let st = nn.create("/h", "w1", false).await.unwrap();
    assert_eq!((st.under_construction, st.writer.as_str()), (true, "w1"));
    assert_err(
        nn.take_over("/h", "w3", "w2").await,
        RpcErrorKind::LeaseConflict,
        "/h: file is being written by w1",
    );
    let st = nn.take_over("/h", "w3", "w1").await.unwrap();
    assert_eq!(st.writer, "w3");
    assert_err(
        nn.add_block("/h", "w1", None, "").await,
        RpcErrorKind::LeaseConflict,
        "/h: file is being written by w3",
    );
    nn.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_create_hands_out_the_first_block_once_however_often_it_is_retried() {
    let mut nn = Namenode::start(|_| {}).await;
    // No datanode to place it on: the file is created without it, and
    // the writer's add_block says why.
    let r = nn.create_with_block("/none", "w", "", 1).await.unwrap();
    assert!(r.block.is_none(), "{r:?}");
    assert!(r.status.unwrap().under_construction);

    nn.register("dn1", "10.0.0.1", 1 << 30).await;
    nn.register("dn2", "10.0.0.2", 1 << 30).await;
    nn.register("dn3", "10.0.0.3", 1 << 30).await;
    let first = nn
        .create_with_block("/f", "w", "10.0.0.2", 2)
        .await
        .unwrap();
    let st = first.status.clone().unwrap();
    assert_eq!(
        (st.length, st.under_construction, st.writer.as_str()),
        (0, true, "w")
    );
    let b = first.block.clone().expect("the first block");
    assert_eq!(b.offset, 0);
    assert_eq!(ids(&b).len(), 3, "placed for replication 3");
    assert_eq!(ids(&b)[0], "dn2", "writer-local first, as add_block places");
    let blk = b.block.unwrap();
    // The file holds it, and readers are sent to its targets.
    let locs = nn.locations("/f", "").await;
    assert_eq!(locs.blocks.len(), 1);
    assert_eq!(locs.blocks[0].block.unwrap().block_id, blk.block_id);
    assert_eq!(locs.blocks[0].locations.len(), 3);

    // The same call again (a lost answer, a failover): the same file and
    // the same block, and nothing new allocated.
    let again = nn
        .create_with_block("/f", "w", "10.0.0.2", 2)
        .await
        .unwrap();
    assert_eq!(again.status.unwrap().inode_id, st.inode_id);
    let again = again.block.unwrap();
    assert_eq!(
        again.block.unwrap(),
        blk,
        "same block id and generation stamp"
    );
    assert_eq!(again.offset, 0);
    assert_eq!(nn.stats().await.total_blocks, 1);
    let next = nn.add_block("/none", "w", None, "").await.unwrap();
    let next = next.block.unwrap();
    assert_eq!(
        (next.block_id, next.generation_stamp),
        (blk.block_id + 1, blk.generation_stamp + 1),
        "the retry allocated no block id or generation stamp"
    );

    // A one-block file is then only complete away.
    let mut last = blk;
    last.num_bytes = 10;
    let st = nn.complete("/f", "w", Some(last)).await.unwrap();
    assert_eq!((st.length, st.under_construction), (10, false));
    let locs = nn.locations("/f", "").await;
    assert_eq!(locs.file_length, 10);
    assert_eq!(locs.blocks.len(), 1);
    // A new call id is a new create: the file exists now.
    assert_err(
        nn.create_with_block("/f", "w", "", 3).await,
        RpcErrorKind::AlreadyExists,
        "/f: File exists",
    );
    assert_eq!(nn.stats().await.total_blocks, 2);
    nn.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn block_reports_corruption_and_invalidation() {
    let mut nn = Namenode::start(|c| {
        c.replication = 2;
        c.replication_interval_ms = 50;
    })
    .await;
    nn.register("dn1", "10.0.0.1", 1 << 30).await;
    nn.register("dn2", "10.0.0.2", 1 << 30).await;
    let blk = nn.write("/f", 100).await;
    let gone = nn.write("/gone", 10).await;
    assert!(nn.delete("/gone", false).await.unwrap());
    for dn in ["dn1", "dn2"] {
        let cmds = nn.heartbeat(dn, 1 << 30).await;
        assert!(matches!(&cmds[..], [Command::Invalidate(_)]), "{cmds:?}");
    }

    // Unknown datanodes are told to register again.
    let cmds = nn.heartbeat("stranger", 1).await;
    assert!(matches!(cmds[..], [Command::Reregister(_)]));

    // A full report: the real block is kept, one of a deleted file is
    // deleted, one this namenode never allocated is left alone.
    let unallocated = ExtendedBlock {
        block_id: 999_999,
        generation_stamp: 1,
        num_bytes: 1,
    };
    for dn in ["dn1", "dn2"] {
        let resp = nn
            .datanode
            .block_report(BlockReportRequest {
                datanode_id: dn.into(),
                blocks: vec![blk, gone, unallocated],
                epoch: nn.epoch(dn),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        let Some(Command::Invalidate(inv)) = &resp.commands[0].command else {
            panic!("expected an invalidation, got {resp:?}");
        };
        assert_eq!(inv.blocks, [gone]);
    }
    let stats = nn.stats().await;
    assert_eq!(
        (stats.total_files, stats.total_blocks, stats.missing_blocks),
        (1, 1, 0)
    );
    assert_eq!(stats.under_replicated_blocks, 0);

    // A client's report is a suspicion: its datanode is asked to verify
    // the replica, and nothing is marked, hidden or deleted, even when
    // every replica is reported.
    for dn in ["dn1", "dn2"] {
        nn.client
            .report_bad_blocks(ReportBadBlocksRequest {
                block: Some(blk),
                datanode_id: dn.into(),
                reason: "checksum".into(),
            })
            .await
            .unwrap();
    }
    let locs = nn.locations("/f", "10.0.0.1").await;
    assert_eq!(ids(&locs.blocks[0]), ["dn1", "dn2"], "after client reports");
    assert!(!locs.blocks[0].corrupt);
    for dn in ["dn1", "dn2"] {
        let cmds = nn.heartbeat(dn, 1 << 30).await;
        assert!(
            matches!(&cmds[..], [Command::Verify(v)] if v.block == Some(blk)),
            "{dn}: {cmds:?}"
        );
    }
    assert_eq!(nn.stats().await.corrupt_blocks, 0);

    // The datanode's own verdict marks it: no longer offered, but kept
    // while the block has fewer good replicas than its replication.
    let condemn = |dn: &str, epoch: u64| ReportBadReplicaRequest {
        datanode_id: dn.into(),
        block: Some(blk),
        reason: "checksum mismatch".into(),
        epoch,
    };
    nn.datanode
        .report_bad_replica(condemn("dn1", nn.epoch("dn1")))
        .await
        .unwrap();
    let locs = nn.locations("/f", "10.0.0.1").await;
    assert_eq!(ids(&locs.blocks[0]), ["dn2"]);
    assert_eq!(nn.stats().await.corrupt_blocks, 1);
    nn.datanode
        .report_bad_replica(condemn("dn2", nn.epoch("dn2")))
        .await
        .unwrap();
    // Every replica marked: all are listed, flagged, for the client to
    // try; none is deleted.
    let locs = nn.locations("/f", "10.0.0.1").await;
    assert_eq!(ids(&locs.blocks[0]), ["dn1", "dn2"]);
    assert!(locs.blocks[0].corrupt);
    assert_eq!(nn.stats().await.missing_blocks, 1);
    for dn in ["dn1", "dn2"] {
        let cmds = nn.heartbeat(dn, 1 << 30).await;
        assert!(
            !cmds.iter().any(|c| matches!(c, Command::Invalidate(_))),
            "{dn}: {cmds:?}"
        );
    }

    // Once two good replicas exist elsewhere, the replication monitor
    // deletes the marked ones.
    for dn in ["dn3", "dn4"] {
        nn.register(dn, "10.0.0.3", 1 << 30).await;
        nn.datanode
            .block_received_and_deleted(BlockReceivedAndDeletedRequest {
                datanode_id: dn.into(),
                received: vec![blk],
                deleted: vec![],
                epoch: nn.epoch(dn),
            })
            .await
            .unwrap();
    }
    let mut invalidated = std::collections::HashSet::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while invalidated.len() < 2 {
        assert!(std::time::Instant::now() < deadline, "{invalidated:?}");
        for dn in ["dn1", "dn2"] {
            let cmds = nn.heartbeat(dn, 1 << 30).await;
            if cmds.iter().any(
                |c| matches!(c, Command::Invalidate(i) if i.blocks.iter().any(|b| b.block_id == blk.block_id)),
            ) {
                invalidated.insert(dn);
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let locs = nn.locations("/f", "").await;
    let mut good = ids(&locs.blocks[0]);
    good.sort_unstable();
    assert_eq!(good, ["dn3", "dn4"]);
    assert!(!locs.blocks[0].corrupt);
    assert_eq!(nn.stats().await.corrupt_blocks, 0);

    // Deleting a file queues its replicas for deletion.
    let b2 = nn.write("/g", 7).await;
    nn.datanode
        .block_received_and_deleted(BlockReceivedAndDeletedRequest {
            datanode_id: "dn2".into(),
            received: vec![b2],
            deleted: vec![],
            epoch: nn.epoch("dn2"),
        })
        .await
        .unwrap();
    nn.heartbeat("dn2", 1 << 30).await;
    assert!(nn.delete("/g", false).await.unwrap());
    let cmds = nn.heartbeat("dn2", 1 << 30).await;
    assert!(
        cmds.iter().any(
            |c| matches!(c, Command::Invalidate(i) if i.blocks.iter().any(|b| b.block_id == b2.block_id))
        ),
        "{cmds:?}"
    );

    // So does replacing a file by an overwriting rename.
    let old = nn.write("/h", 5).await;
    nn.write("/h.new", 6).await;
    nn.datanode
        .block_received_and_deleted(BlockReceivedAndDeletedRequest {
            datanode_id: "dn2".into(),
            received: vec![old],
            deleted: vec![],
            epoch: nn.epoch("dn2"),
        })
        .await
        .unwrap();
    nn.heartbeat("dn2", 1 << 30).await;
    assert_eq!(nn.rename_with("/h.new", "/h", true).await.unwrap(), "/h");
    let cmds = nn.heartbeat("dn2", 1 << 30).await;
    assert!(
        cmds.iter().any(
            |c| matches!(c, Command::Invalidate(i) if i.blocks.iter().any(|b| b.block_id == old.block_id))
        ),
        "{cmds:?}"
    );
    assert_eq!(nn.locations("/h", "").await.file_length, 6);
    nn.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_datanodes_are_left_out() {
    let mut nn = Namenode::start(|c| c.datanode_dead_ms = 200).await;
    nn.register("dn1", "10.0.0.1", 1 << 30).await;
    nn.register("dn2", "10.0.0.2", 1 << 30).await;
    nn.create("/f", "w", false).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    nn.heartbeat("dn2", 1 << 30).await;
    let b = nn.add_block("/f", "w", None, "10.0.0.1").await.unwrap();
    assert_eq!(ids(&b), ["dn2"], "a dead node is never a target");
    let stats = nn.stats().await;
    assert_eq!((stats.live_datanodes, stats.dead_datanodes), (1, 1));
    assert_eq!(stats.capacity, 2 << 30);
    nn.stop().await;
}

/// Whether `commands` ask to delete block `id`.
fn invalidates(commands: &[DatanodeCommand], id: u64) -> bool {
    commands.iter().any(|c| {
        matches!(&c.command, Some(Command::Invalidate(i)) if i.blocks.iter().any(|b| b.block_id == id))
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registrations_have_epochs_and_commands_wait_for_their_receipt() {
    let mut nn = Namenode::start(|c| {
        c.replication = 1;
        c.datanode_dead_ms = 500;
    })
    .await;
    nn.register("dn1", "10.0.0.1", 1 << 30).await;
    let e1 = nn.epoch("dn1");

    // Another address cannot take a live id; the refusal names both.
    let refused = nn.try_register("dn1", "10.0.0.9").await;
    assert_err(
        refused,
        RpcErrorKind::AlreadyExists,
        "datanode id dn1 is held by a live datanode at 10.0.0.1:9866; registration from 10.0.0.9:9866 refused",
    );
    assert!(
        nn.heartbeat("dn1", 1 << 30).await.is_empty(),
        "dn1 still registered"
    );

    // The same address is a restart: a new epoch, and the old one is stale
    // for every call.
    nn.try_register("dn1", "10.0.0.1").await.unwrap();
    let e2 = nn.epoch("dn1");
    assert_ne!(e1, e2);
    let cmds = nn.raw_heartbeat("dn1", 1 << 30, e1, 0).await;
    assert!(matches!(&cmds[..], [c] if matches!(c.command, Some(Command::Reregister(_)))));
    let resp = nn
        .datanode
        .block_report(BlockReportRequest {
            datanode_id: "dn1".into(),
            epoch: e1,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(matches!(&resp.commands[..], [c] if matches!(c.command, Some(Command::Reregister(_)))));
    let stale = "datanode dn1 is not registered here under epoch";
    let r = nn
        .datanode
        .block_received_and_deleted(BlockReceivedAndDeletedRequest {
            datanode_id: "dn1".into(),
            epoch: e1,
            ..Default::default()
        })
        .await;
    let s = r.expect_err("a stale incremental report");
    assert_eq!(kind_of(&s), RpcErrorKind::ReRegister);
    assert!(s.message().starts_with(stale), "{}", s.message());
    let r = nn
        .datanode
        .report_bad_replica(ReportBadReplicaRequest {
            datanode_id: "dn1".into(),
            epoch: e1,
            ..Default::default()
        })
        .await;
    assert_eq!(
        kind_of(&r.expect_err("a stale bad-replica report")),
        RpcErrorKind::ReRegister
    );
    assert!(nn.heartbeat("dn1", 1 << 30).await.is_empty());

    // A queued command comes with every reply until a heartbeat says it
    // was received.
    let blk = nn.write("/a", 10).await;
    nn.datanode
        .block_received_and_deleted(BlockReceivedAndDeletedRequest {
            datanode_id: "dn1".into(),
            received: vec![blk],
            deleted: vec![],
            epoch: e2,
        })
        .await
        .unwrap();
    assert!(nn.delete("/a", false).await.unwrap());
    let first = nn.raw_heartbeat("dn1", 1 << 30, e2, 0).await;
    assert!(invalidates(&first, blk.block_id), "{first:?}");
    let seq = first[0].seq;
    assert!(seq > 0);
    let lost = nn.raw_heartbeat("dn1", 1 << 30, e2, 0).await;
    assert_eq!(lost, first, "sent again after a lost reply");
    assert!(nn.raw_heartbeat("dn1", 1 << 30, e2, seq).await.is_empty());

    // A Register naming its previous epoch drops what it received there;
    // the rest carry over.
    let b2 = nn.write("/b", 10).await;
    let b3 = nn.write("/c", 10).await;
    nn.datanode
        .block_received_and_deleted(BlockReceivedAndDeletedRequest {
            datanode_id: "dn1".into(),
            received: vec![b2, b3],
            deleted: vec![],
            epoch: e2,
        })
        .await
        .unwrap();
    assert!(nn.delete("/b", false).await.unwrap());
    let got = nn.heartbeat("dn1", 1 << 30).await;
    assert!(matches!(&got[..], [Command::Invalidate(_)]), "{got:?}");
    assert!(nn.delete("/c", false).await.unwrap());
    nn.try_register("dn1", "10.0.0.1").await.unwrap();
    let after = nn.raw_heartbeat("dn1", 1 << 30, nn.epoch("dn1"), 0).await;
    assert!(
        !invalidates(&after, b2.block_id) && invalidates(&after, b3.block_id),
        "{after:?}"
    );

    // Once dn1 is dead, its id may register from anywhere.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match nn.try_register("dn1", "10.0.0.9").await {
            Ok(_) => break,
            Err(s) => assert!(Instant::now() < deadline, "{}", s.message()),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    nn.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unfinished_replicas_are_deleted_only_when_two_reports_in_a_row_find_them_stale() {
    let mut nn = Namenode::start(|c| c.replication = 1).await;
    nn.register("dn1", "10.0.0.1", 1 << 30).await;
    // A deleted file's block, and an open file's.
    let gone = nn.write("/gone", 10).await;
    assert!(nn.delete("/gone", false).await.unwrap());
    nn.heartbeat("dn1", 1 << 30).await;
    nn.create("/open", "w", false).await.unwrap();
    let open = nn
        .add_block("/open", "w", None, "")
        .await
        .unwrap()
        .block
        .unwrap();
    let unallocated = ExtendedBlock {
        block_id: 999_999,
        generation_stamp: 1,
        num_bytes: 0,
    };
    let report = |being_written: Vec<ExtendedBlock>| {
        let req = BlockReportRequest {
            datanode_id: "dn1".into(),
            being_written,
            epoch: nn.epoch("dn1"),
            ..Default::default()
        };
        let mut dn = nn.datanode.clone();
        async move {
            let resp = dn.block_report(req).await.unwrap().into_inner();
            resp.commands
        }
    };
    let all = vec![gone, open, unallocated];
    assert!(
        report(all.clone()).await.is_empty(),
        "one stale report is not enough"
    );
    assert!(report(vec![open]).await.is_empty());
    assert!(report(all.clone()).await.is_empty(), "not two in a row");
    let cmds = report(all.clone()).await;
    let [c] = &cmds[..] else {
        panic!("one invalidation expected: {cmds:?}");
    };
    let Some(Command::Invalidate(inv)) = &c.command else {
        panic!("{c:?}");
    };
    assert_eq!(inv.blocks.len(), 1);
    assert_eq!(
        inv.blocks[0].block_id, gone.block_id,
        "only the deleted file's"
    );
    nn.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_namenode_without_ha_names_itself_as_its_group_and_leader() {
    let mut nn = Namenode::start(|c| {
        c.id = "solo".into();
        c.rpc_addr = "127.0.0.1:18020".parse().unwrap();
    })
    .await;
    let group = nn
        .client
        .get_namenode_group(GetNamenodeGroupRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        group,
        GetNamenodeGroupResponse {
            members: vec![NamenodeMember {
                id: "solo".into(),
                rpc_addr: "127.0.0.1:18020".into(),
                witness: false,
            }],
            leader_id: "solo".into(),
            member_id: "solo".into(),
        }
    );
    nn.stop().await;
}

/// What a raft stream opened by a stranger gets back for `batches`: the
/// error that ends it, or None if the namenode took them all.
async fn stream_reply(nn: &mut Namenode, batches: Vec<RaftBatch>) -> Option<tonic::Status> {
    let (tx, rx) = tokio::sync::mpsc::channel(batches.len().max(1));
    for b in batches {
        tx.send(b).await.unwrap();
    }
    drop(tx);
    let stream = tokio_stream::wrappers::ReceiverStream::new(rx);
    let mut acks = nn.peer.stream(stream).await.unwrap().into_inner();
    tokio::time::timeout(Duration::from_secs(5), acks.message())
        .await
        .expect("the stream ends")
        .err()
}

#[tokio::test]
async fn raft_streams_and_snapshot_pieces_refuse_strangers_and_garbage_with_the_reason() {
    let mut nn = Namenode::start(|_| {}).await;
    let from_stranger = RaftBatch {
        from: 7,
        messages: vec![],
        low_on_disk: false,
    };
    let e = stream_reply(&mut nn, vec![from_stranger])
        .await
        .expect("refused");
    assert_eq!(e.code(), tonic::Code::PermissionDenied);
    assert_eq!(
        e.message(),
        "raft batch from 7 which is not a member of this group"
    );
    let garbage = RaftBatch {
        from: 1,
        messages: vec![vec![0xff; 16]],
        low_on_disk: false,
    };
    let e = stream_reply(&mut nn, vec![garbage]).await.expect("refused");
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    assert!(e.message().starts_with("bad raft message"), "{e:?}");
    // Snapshot pieces: the same rules.
    let piece = |from: u64, message: Vec<u8>| rfs_proto::ha::SnapshotChunk {
        from,
        message,
        data: vec![1; 64].into(),
    };
    let install = |pieces: Vec<rfs_proto::ha::SnapshotChunk>| {
        let mut peer = nn.peer.clone();
        async move {
            peer.install_snapshot(tokio_stream::iter(pieces))
                .await
                .expect_err("refused")
        }
    };
    let e = install(vec![piece(7, vec![1, 2, 3])]).await;
    assert_eq!(e.code(), tonic::Code::PermissionDenied);
    assert_eq!(
        e.message(),
        "raft snapshot from 7 which is not a member of this group"
    );
    let e = install(vec![piece(1, vec![0xff; 16])]).await;
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    assert!(
        e.message().starts_with("bad raft snapshot message"),
        "{e:?}"
    );
    let e = install(vec![piece(1, vec![])]).await;
    assert_eq!(
        e.message(),
        "a snapshot stream must begin with its raft message"
    );
    // The namenode goes on serving.
    assert!(nn.mkdirs("/after", false).await.unwrap());
    nn.stop().await;
}

/// One batched call's answer: its response, or its error as a status.
fn batched(a: &Answer) -> Result<&answer::Answer, tonic::Status> {
    match a.answer.as_ref().expect("every call is answered") {
        answer::Answer::Error(e) => Err(rfs_proto::rpc_error::from_call_error(e)),
        other => Ok(other),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_answers_each_call_as_its_own_rpc_would_in_order() {
    let mut nn = Namenode::start(|_| {}).await;
    let create = |path: &str, call_id: u64| {
        call::Call::Create(CreateRequest {
            path: path.into(),
            client_id: "w".into(),
            create_parent: true,
            call: Some(CallId {
                client_id: "w".into(),
                call_id,
                ..Default::default()
            }),
            ..Default::default()
        })
    };
    let calls = vec![
        create("/b/one", 1),
        create("/b/two", 2),
        // The same path under a new call id: one of the two wins.
        create("/b/one", 3),
        create("relative", 4),
        call::Call::GetFileInfo(GetFileInfoRequest {
            path: "/nothing".into(),
        }),
        call::Call::Mkdirs(MkdirsRequest {
            path: "/b/dir".into(),
            create_parent: true,
            ..Default::default()
        }),
    ];
    let request = |calls: &[call::Call]| BatchRequest {
        calls: calls
            .iter()
            .map(|c| Call {
                call: Some(c.clone()),
            })
            .collect(),
    };
    let answers = nn
        .client
        .batch(request(&calls))
        .await
        .unwrap()
        .into_inner()
        .answers;
    assert_eq!(answers.len(), calls.len());
    let created = |a: &Answer| match batched(a) {
        Ok(answer::Answer::Create(r)) => Ok(r.status.clone().unwrap()),
        Ok(other) => panic!("a create answered {other:?}"),
        Err(e) => Err(e),
    };
    let two = created(&answers[1]).unwrap();
    assert_eq!((two.path.as_str(), two.writer.as_str()), ("/b/two", "w"));
    // Exactly one of the two creates of /b/one made the file.
    let (first, third) = (created(&answers[0]), created(&answers[2]));
    assert!(first.is_ok() != third.is_ok(), "{first:?} {third:?}");
    let lost = first.err().or(third.err()).unwrap();
    assert_err::<()>(
        Err(lost),
        RpcErrorKind::AlreadyExists,
        "/b/one: File exists",
    );
    assert_eq!(
        kind_of(&batched(&answers[3]).unwrap_err()),
        RpcErrorKind::InvalidPath
    );
    assert!(matches!(
        batched(&answers[4]),
        Ok(answer::Answer::GetFileInfo(GetFileInfoResponse {
            status: None
        }))
    ));
    assert!(matches!(
        batched(&answers[5]),
        Ok(answer::Answer::Mkdirs(MkdirsResponse { created: true }))
    ));

    // A retry of a batched call, batched or not, gets the recorded result.
    let again = nn
        .client
        .batch(request(&calls[1..2]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(created(&again.answers[0]).unwrap().inode_id, two.inode_id);
    let CreateResponse { status, .. } = nn
        .client
        .create(match create("/b/two", 2) {
            call::Call::Create(r) => r,
            _ => unreachable!(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(status.unwrap().inode_id, two.inode_id);

    // What a buggy or hostile client may send: a call naming no
    // operation, an empty batch, and one past the limit.
    let empty = nn
        .client
        .batch(BatchRequest {
            calls: vec![Call { call: None }],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        kind_of(&batched(&empty.answers[0]).unwrap_err()),
        RpcErrorKind::InvalidArgument
    );
    let none = nn
        .client
        .batch(BatchRequest { calls: vec![] })
        .await
        .unwrap();
    assert!(none.into_inner().answers.is_empty());
    let too_many = vec![call::Call::GetFileInfo(GetFileInfoRequest { path: "/".into() }); 1025];
    assert_err(
        nn.client.batch(request(&too_many)).await,
        RpcErrorKind::InvalidArgument,
        "a batch holds at most 1024 calls, not 1025",
    );
    // Nothing stored was lost on the way.
    let listing = nn.client.list(ListRequest {
        path: "/b".into(),
        ..Default::default()
    });
    let names: Vec<String> = listing
        .await
        .unwrap()
        .into_inner()
        .items
        .into_iter()
        .map(|e| e.name)
        .collect();
    assert_eq!(names, ["dir", "one", "two"]);
    nn.stop().await;
}

/// `CallId.answered_below` from a raw caller: a mark above the call's own
/// id, or the session entry's reserved id, is refused with the reason; a
/// call below the mark a later call set is refused and not applied.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn call_marks_from_a_raw_caller_are_checked_and_stale_copies_refused() {
    let mut nn = Namenode::start(|_| {}).await;
    let mkdirs = |path: &str, call_id: u64, answered_below: u64| MkdirsRequest {
        path: path.into(),
        create_parent: true,
        call: Some(CallId {
            client_id: "m".into(),
            call_id,
            answered_below,
        }),
        ..Default::default()
    };
    assert_err(
        nn.client.mkdirs(mkdirs("/x", 4, 5)).await,
        RpcErrorKind::InvalidArgument,
        "call 4 of client m says every call below 5 was answered, its own included",
    );
    assert_err(
        nn.client.mkdirs(mkdirs("/x", u64::MAX, 0)).await,
        RpcErrorKind::InvalidArgument,
        "call id 18446744073709551615 is reserved (client m)",
    );
    assert!(nn.client.mkdirs(mkdirs("/a", 1, 1)).await.is_ok());
    assert!(nn.client.mkdirs(mkdirs("/b", 2, 2)).await.is_ok());
    assert_err(
        nn.client.mkdirs(mkdirs("/late", 1, 1)).await,
        RpcErrorKind::InvalidArgument,
        "call 1 of client m refused: the client has had the answers of every call below 2 \
         and does not send them again (a delayed copy?)",
    );
    assert!(
        nn.status("/late").await.is_none(),
        "the stale call was not applied"
    );
    // Call 2, not yet answered as far as the namenode knows, still gets
    // its recorded result.
    let again = nn.client.mkdirs(mkdirs("/b", 2, 2)).await.unwrap();
    assert!(again.into_inner().created);
    nn.stop().await;
}
