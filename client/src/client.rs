//! [`Client`]: the namenode calls, and the entry points to the data path
//! ([`Client::create`] → [`FileWriter`], [`Client::open`] → [`FileReader`]).

use std::sync::{Arc, Mutex};

use rfs_proto::common::ExtendedBlock;
use rfs_proto::namenode::{
    ContentSummaryRequest, CreateRequest, DeleteRequest, FileStatus, FsStatsRequest,
    GetBlockLocationsRequest, GetFileInfoRequest, ListRequest, ListResponse, MkdirsRequest,
    RenameRequest, ReportBadBlocksRequest, SetReplicationRequest,
};
use rfs_transport::BlockTransport;

use crate::call_ids::{Call, CallIds};
use crate::config::ClientConfig;
use crate::error::{Error, Result};
use crate::lease;
use crate::listing::ListPages;
use crate::namenode::NamenodeRpc;
use crate::namenode_group::NamenodeGroup;
use crate::read::FileReader;
use crate::write::FileWriter;
use crate::{BlockLocations, ContentSummary, FsStats};

/// Mode of new directories and files.
const DIR_MODE: u32 = 0o755;
const FILE_MODE: u32 = 0o644;

/// How to create a file.
#[derive(Clone, Debug)]
pub struct CreateOptions {
    /// Replace an existing file (never a directory).
    pub overwrite: bool,
    /// `None`: the client's configured replication, else the namenode's.
    pub replication: Option<u32>,
    /// `None`: the client's configured block size, else the namenode's.
    pub block_size: Option<u64>,
    /// Create missing parent directories (default `true`).
    pub create_parent: bool,
    /// A writer the caller knows to be dead (its process is gone), whose
    /// file this create (with `overwrite`) takes over at once rather than
    /// after its lease's soft limit; the namenode accepts only while that
    /// writer still holds the file.
    pub take_over_from: Option<String>,
}

impl Default for CreateOptions {
    fn default() -> Self {
        CreateOptions {
            overwrite: false,
            replication: None,
            block_size: None,
            create_parent: true,
            take_over_from: None,
        }
    }
}

/// A connection to a namenode group plus the client's identity (lease
/// holder). Calls go to the group's leader and follow it through failovers
/// (see [`ClientConfig::failover_deadline`]); writers, readers and lease
/// renewal share that. Cheap to clone; clones share the connections, the
/// call ids and the lease renewer.
#[derive(Clone)]
pub struct Client {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) config: ClientConfig,
    pub(crate) client_id: String,
    pub(crate) rpc: NamenodeRpc,
    /// Ids of non-idempotent calls (see [`Client::new_call`]).
    calls: CallIds,
    pub(crate) transport: Arc<dyn BlockTransport>,
    owner: String,
    pub(crate) lease_renewer: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Ok(mut g) = self.lease_renewer.lock() {
            if let Some(h) = g.take() {
                h.abort();
            }
        }
    }
}

impl Client {
    /// Validates `config` and connects to its namenodes, learning their
    /// group from the first that answers ([`Client::namenode_group`]).
    /// Fails at once when no member accepts a connection; once connected,
    /// calls ride out failovers and members going away for up to
    /// `failover_deadline`.
    pub async fn connect(config: ClientConfig) -> Result<Client> {
        config.validate()?;
        let rpc = NamenodeRpc::connect(
            &config.namenodes,
            &config.remembered_namenodes,
            config.rpc_timeout,
            config.failover_deadline,
        )
        .await?;
        let client_id = config
            .client_id
            .clone()
            .unwrap_or_else(|| format!("rfs-client-{}", uuid::Uuid::new_v4()));
        Ok(Client {
            inner: Arc::new(Inner {
                calls: CallIds::new(client_id.clone()),
                client_id,
                rpc,
                transport: rfs_transport::default_transport(),
                owner: std::env::var("USER").unwrap_or_default(),
                lease_renewer: Mutex::new(None),
                config,
            }),
        })
    }

    /// The namenode group as the first member reached described it when
    /// this client connected: every member (id, RPC address, witness or
    /// not) and the leader it knew. `None` when it could not say (a
    /// namenode older than `GetNamenodeGroup`).
    pub fn namenode_group(&self) -> Option<&NamenodeGroup> {
        self.inner.rpc.group()
    }

    /// The lease holder name this client writes under.
    pub fn client_id(&self) -> &str {
        &self.inner.client_id
    }

    pub(crate) fn config(&self) -> &ClientConfig {
        &self.inner.config
    }

    pub(crate) fn rpc(&self) -> &NamenodeRpc {
        &self.inner.rpc
    }

    /// A new id for one non-idempotent call (create, mkdirs, add_block,
    /// complete, abandon_block, delete, rename, ...): every attempt of the
    /// call carries it, and the [`Call`] is kept until the last attempt is
    /// over, as [`crate::call_ids`] says why.
    pub(crate) fn new_call(&self) -> Call {
        self.inner.calls.next()
    }

    /// Creates `path` and returns a writer for it. The file is complete
    /// (visible with its length, lease released) once the writer is shut
    /// down or closed.
    pub async fn create(&self, path: &str, opts: CreateOptions) -> Result<FileWriter> {
        let cfg = self.config();
        let replication = opts.replication.or(cfg.replication).unwrap_or(0);
        let block_size = opts.block_size.or(cfg.block_size).unwrap_or(0);
        let call = self.new_call();
        let req = CreateRequest {
            call: call.id(),
            path: path.to_string(),
            client_id: self.inner.client_id.clone(),
            overwrite: opts.overwrite,
            replication,
            block_size,
            mode: FILE_MODE,
            create_parent: opts.create_parent,
            owner: self.inner.owner.clone(),
            group: String::new(),
            take_over_from: opts.take_over_from.unwrap_or_default(),
            // The first block comes with the file: a one-block file is
            // then create + complete.
            first_block: true,
            client_host: cfg.client_host.clone(),
        };
        let resp = self.rpc().batched("create", req).await?;
        let status = resp.status.ok_or_else(|| {
            Error::Protocol(format!("{path}: namenode answered create without a status"))
        })?;
        let block_size = match (status.block_size, block_size) {
            (0, 0) => rfs_proto::defaults::BLOCK_SIZE,
            (0, asked) => asked,
            (bs, _) => bs,
        };
        lease::ensure_renewer(self);
        Ok(FileWriter::start(
            self.clone(),
            status.path_or(path),
            block_size,
            resp.block,
        ))
    }

    /// Opens `path` for reading (positional or streaming).
    pub async fn open(&self, path: &str) -> Result<FileReader> {
        let locs = self.get_block_locations(path, 0, 0).await?;
        if let Some(st) = &locs.status {
            if st.file_type() == crate::FileType::Directory {
                return Err(Error::Path {
                    path: path.to_string(),
                    kind: rfs_proto::rpc_error::RpcErrorKind::IsDirectory,
                    message: "Is a directory".into(),
                });
            }
        }
        Ok(FileReader::new(self.clone(), path.to_string(), locs))
    }

    /// Creates the directory `path`; `false` when it already exists.
    pub async fn mkdirs(&self, path: &str, create_parent: bool) -> Result<bool> {
        let call = self.new_call();
        let req = MkdirsRequest {
            call: call.id(),
            path: path.to_string(),
            mode: DIR_MODE,
            create_parent,
            owner: self.inner.owner.clone(),
            group: String::new(),
        };
        let r = self.rpc().batched("mkdirs", req).await?;
        Ok(r.created)
    }

    /// The status of `path`, or `None` when nothing is there.
    pub async fn get_file_info(&self, path: &str) -> Result<Option<FileStatus>> {
        let req = GetFileInfoRequest {
            path: path.to_string(),
        };
        let r = self.rpc().batched("get_file_info", req).await?;
        Ok(r.status)
    }

    /// Every entry of a directory in name order (all pages); a file lists
    /// as itself. [`Client::list_pages`] hands them out a page at a time.
    pub async fn list(&self, path: &str) -> Result<Vec<FileStatus>> {
        let mut out = Vec::new();
        let mut pages = self.list_pages(path);
        while let Some(page) = pages.next_page().await? {
            out.extend(page);
        }
        Ok(out)
    }

    /// The entries of a directory in name order, a page at a time, each
    /// page asked for when the one before is taken; a file lists as itself.
    pub fn list_pages(&self, path: &str) -> ListPages {
        ListPages::new(self.clone(), path)
    }

    /// Up to `limit` entries whose names sort after `start_after` (a name,
    /// not a path), each with its full path, owner and group (rebuilt from
    /// the namenode's compact page), and whether more follow.
    pub async fn list_page(
        &self,
        path: &str,
        start_after: &str,
        limit: u32,
    ) -> Result<(Vec<FileStatus>, bool)> {
        crate::listing::statuses(self.list_compact(path, start_after, limit).await?)
    }

    /// [`Client::list_page`]'s page as the namenode sends it (compact).
    pub(crate) async fn list_compact(
        &self,
        path: &str,
        start_after: &str,
        limit: u32,
    ) -> Result<ListResponse> {
        let req = ListRequest {
            path: path.to_string(),
            start_after: start_after.to_string(),
            limit,
        };
        self.rpc()
            .call("list", req, |mut c, req| async move { c.list(req).await })
            .await
    }

    pub async fn delete(&self, path: &str, recursive: bool) -> Result<bool> {
        let call = self.new_call();
        let req = DeleteRequest {
            call: call.id(),
            path: path.to_string(),
            recursive,
            client_id: self.inner.client_id.clone(),
        };
        let r = self.rpc().batched("delete", req).await?;
        Ok(r.deleted)
    }

    /// Renames `src` to `dst` (into `dst` when it is a directory); returns
    /// the final path.
    pub async fn rename(&self, src: &str, dst: &str) -> Result<String> {
        self.rename_with(src, dst, false).await
    }

    /// Renames `src` to exactly `dst`, replacing in the same step a closed
    /// file there (when `src` is a file) or an empty directory (when `src`
    /// is one), as HDFS `rename2` with `OVERWRITE`: a reader finds the old
    /// `dst` or the new one, never neither. The replaced file's blocks are
    /// deleted.
    pub async fn rename_overwrite(&self, src: &str, dst: &str) -> Result<String> {
        self.rename_with(src, dst, true).await
    }

    async fn rename_with(&self, src: &str, dst: &str, overwrite: bool) -> Result<String> {
        let call = self.new_call();
        let req = RenameRequest {
            call: call.id(),
            src: src.to_string(),
            dst: dst.to_string(),
            client_id: self.inner.client_id.clone(),
            overwrite,
        };
        let r = self
            .rpc()
            .call(
                "rename",
                req,
                |mut c, req| async move { c.rename(req).await },
            )
            .await?;
        if r.final_path.is_empty() {
            Ok(dst.to_string())
        } else {
            Ok(r.final_path)
        }
    }

    pub async fn set_replication(&self, path: &str, replication: u32) -> Result<bool> {
        let req = SetReplicationRequest {
            path: path.to_string(),
            replication,
        };
        let r = self
            .rpc()
            .call("set_replication", req, |mut c, req| async move {
                c.set_replication(req).await
            })
            .await?;
        Ok(r.changed)
    }

    pub async fn content_summary(&self, path: &str) -> Result<ContentSummary> {
        let req = ContentSummaryRequest {
            path: path.to_string(),
        };
        self.rpc()
            .call("content_summary", req, |mut c, req| async move {
                c.content_summary(req).await
            })
            .await
    }

    /// Every file under `path` with each block's live and corrupt replicas
    /// (what `dfs fsck` prints).
    pub async fn fsck(&self, path: &str) -> Result<crate::FsckReport> {
        let req = rfs_proto::namenode::FsckRequest { path: path.into() };
        self.rpc()
            .call("fsck", req, |mut c, req| async move { c.fsck(req).await })
            .await
    }

    /// Every datanode the namenode knows, live ones first.
    pub async fn datanode_report(&self) -> Result<Vec<crate::DatanodeReportEntry>> {
        let req = rfs_proto::namenode::DatanodeReportRequest {};
        let r = self
            .rpc()
            .call("datanode_report", req, |mut c, req| async move {
                c.datanode_report(req).await
            })
            .await?;
        Ok(r.datanodes)
    }

    /// Starts draining a datanode (`datanode`: its id or data address
    /// `ip:port`), or with `cancel` puts it back in service; returns its
    /// id and admin state.
    pub async fn decommission(
        &self,
        datanode: &str,
        cancel: bool,
    ) -> Result<rfs_proto::namenode::DecommissionResponse> {
        let call = self.new_call();
        let req = rfs_proto::namenode::DecommissionRequest {
            datanode: datanode.into(),
            cancel,
            call: call.id(),
        };
        self.rpc()
            .call("decommission", req, |mut c, req| async move {
                c.decommission(req).await
            })
            .await
    }

    pub async fn fs_stats(&self) -> Result<FsStats> {
        self.rpc()
            .call("fs_stats", FsStatsRequest {}, |mut c, req| async move {
                c.fs_stats(req).await
            })
            .await
    }

    /// Blocks of `path` overlapping `[offset, offset + length)`; length 0
    /// means to the end of the file.
    pub async fn get_block_locations(
        &self,
        path: &str,
        offset: u64,
        length: u64,
    ) -> Result<BlockLocations> {
        let req = GetBlockLocationsRequest {
            path: path.to_string(),
            offset,
            length,
            client_host: self.config().client_host.clone(),
        };
        self.rpc()
            .call("get_block_locations", req, |mut c, req| async move {
                c.get_block_locations(req).await
            })
            .await
    }

    /// Tells the namenode a replica failed its checksums.
    pub(crate) async fn report_bad_block(
        &self,
        block: &ExtendedBlock,
        datanode_id: &str,
        reason: &str,
    ) -> Result<()> {
        let req = ReportBadBlocksRequest {
            block: Some(*block),
            datanode_id: datanode_id.to_string(),
            reason: reason.to_string(),
        };
        self.rpc()
            .call("report_bad_blocks", req, |mut c, req| async move {
                c.report_bad_blocks(req).await
            })
            .await
            .map(|_| ())
    }
}

trait PathOr {
    fn path_or(&self, fallback: &str) -> String;
}

impl PathOr for FileStatus {
    fn path_or(&self, fallback: &str) -> String {
        if self.path.is_empty() {
            fallback.to_string()
        } else {
            self.path.clone()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_options_default_creates_parents() {
        let o = CreateOptions::default();
        assert!(o.create_parent && !o.overwrite);
    }
}
