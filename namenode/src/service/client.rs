//! The client protocol (`ClientProtocol`): validates requests, turns
//! mutations into `MetaOp`s for the log, and answers reads from the
//! namespace and the block map.

use std::sync::Arc;

use rfs_proto::common::{DatanodeInfo, LocatedBlock};
use rfs_proto::namenode::client_protocol_server::ClientProtocol;
use rfs_proto::namenode::*;
use tonic::{Request, Response, Status};

use super::{block_meta, listing, required_block};
use crate::clock::now_ms;
use crate::config::MAX_REPLICATION;
use crate::error::NamenodeError;
use crate::leases::RECOVERY_HOLDER;
use crate::meta_op::{CallKey, MetaOp, MetaResult, Proposal};
use crate::namespace::retry_cache::SESSION_CALL;
use crate::namespace::BlockMeta;
use crate::path;
use crate::placement;
use crate::state::{file_status, readable_replicas, status_with_children, State};

pub struct ClientService {
    pub state: Arc<State>,
}

type R<T> = Result<Response<T>, Status>;

const DEFAULT_LIST_LIMIT: u32 = 1000;
const MAX_LIST_LIMIT: u32 = 10_000;
/// Longest client id, owner or group accepted, in bytes.
const MAX_FIELD_LEN: usize = 1024;
/// Most calls in one `Batch`.
const MAX_BATCH_CALLS: usize = 1024;

/// Counts one call of `method`.
fn rpc(method: &'static str) {
    metrics::counter!("rfs_namenode_rpcs_total", "method" => method).increment(1);
}

/// Refuses identity fields that are oversized or hold control characters.
fn check_field(field: &str, value: &str) -> Result<(), Status> {
    if value.len() > MAX_FIELD_LEN || value.chars().any(char::is_control) {
        return Err(NamenodeError::InvalidArgument(format!(
            "{field} must be at most {MAX_FIELD_LEN} bytes without control characters"
        ))
        .into());
    }
    Ok(())
}

fn or_default(s: &str, d: &str) -> String {
    if s.is_empty() {
        d.to_string()
    } else {
        s.to_string()
    }
}

fn unexpected(r: MetaResult) -> Status {
    NamenodeError::Internal(format!("unexpected log result {r:?}")).into()
}

/// The retry-cache key of a call the client named.
fn call_key(call: &Option<CallId>) -> Result<Option<CallKey>, Status> {
    match call {
        Some(c) if !c.client_id.is_empty() => {
            check_field("call.client_id", &c.client_id)?;
            if c.call_id == SESSION_CALL {
                return Err(NamenodeError::InvalidArgument(format!(
                    "call id {SESSION_CALL} is reserved (client {})",
                    c.client_id
                ))
                .into());
            }
            if c.answered_below > c.call_id {
                return Err(NamenodeError::InvalidArgument(format!(
                    "call {} of client {} says every call below {} was answered, \
                     its own included",
                    c.call_id, c.client_id, c.answered_below
                ))
                .into());
            }
            Ok(Some(CallKey {
                client: c.client_id.clone(),
                call: c.call_id,
                answered_below: c.answered_below,
            }))
        }
        _ => Ok(None),
    }
}

impl ClientService {
    /// Replicates `op` through the raft log and returns its applied result.
    /// A call already in the retry cache gets its recorded result without
    /// a new entry (and `apply` checks again, for a retry that races the
    /// original's apply on a new leader).
    async fn submit(&self, call: Option<CallKey>, op: MetaOp) -> Result<MetaResult, Status> {
        if let Some(key) = &call {
            if let Some(recorded) = self.state.ns.retry_cached(key)? {
                metrics::counter!("rfs_namenode_retry_cache_hits_total").increment(1);
                return Ok(recorded?);
            }
        }
        let proposal = Proposal::new(op).with_call(call);
        Ok(self.state.raft.submit(proposal).await?)
    }

    /// Whether `call` is a retry of one already applied, which
    /// [`ClientService::submit`] answers from the retry cache: a limit
    /// checked before proposing must not refuse it, as the first try
    /// passed.
    fn recorded(&self, call: &Option<CallKey>) -> Result<bool, Status> {
        match call {
            Some(key) => Ok(self.state.ns.retry_cached(key)?.is_some()),
            None => Ok(false),
        }
    }

    /// Only the leader serves; others answer NotLeader with its address.
    fn leading(&self) -> Result<(), Status> {
        Ok(self.state.raft.check_leader()?)
    }

    /// Leader check plus ReadIndex: what the read sees includes every
    /// mutation acknowledged before it arrived, on any member.
    async fn linearizable(&self) -> Result<(), Status> {
        Ok(self.state.raft.read_barrier().await?)
    }

    /// Datanodes for a new block of the file at `p` (placement: writer
    /// local first, never one in `excluded`), or why none can take it.
    fn place(
        &self,
        p: &str,
        replication: u32,
        block_size: u64,
        client_host: &str,
        excluded: &[String],
    ) -> Result<Vec<DatanodeInfo>, NamenodeError> {
        let reg = self.state.registry();
        let targets = placement::choose(
            &reg,
            replication as usize,
            block_size,
            client_host,
            excluded,
        );
        if targets.is_empty() {
            let why = placement::why_none(&reg, block_size, excluded);
            return Err(NamenodeError::NoLiveDatanodes {
                path: p.to_string(),
                why,
            });
        }
        if targets.len() < replication as usize {
            tracing::warn!(
                "{p}: only {} live datanodes for replication {replication}",
                targets.len(),
            );
        }
        Ok(targets)
    }

    /// A block the log just allocated at `offset`: its `targets` become
    /// where the block map expects it (and where readers go until the
    /// datanodes report it), and the writer gets them to open its pipeline.
    fn allocated(
        &self,
        block: &BlockMeta,
        offset: u64,
        targets: Vec<DatanodeInfo>,
    ) -> LocatedBlock {
        let ids = targets.iter().map(|t| t.datanode_id.clone()).collect();
        self.state
            .blocks()
            .allocated(block.id, block.gen_stamp, ids);
        LocatedBlock {
            block: Some(crate::state::extended(block)),
            offset,
            locations: targets,
            corrupt: false,
        }
    }

    fn require_client(id: &str) -> Result<(), Status> {
        if id.is_empty() {
            return Err(NamenodeError::InvalidArgument("client_id is required".into()).into());
        }
        check_field("client_id", id)
    }
}

#[tonic::async_trait]
impl ClientProtocol for ClientService {
    async fn mkdirs(&self, req: Request<MkdirsRequest>) -> R<MkdirsResponse> {
        rpc("mkdirs");
        self.leading()?;
        let r = req.into_inner();
        check_field("owner", &r.owner)?;
        check_field("group", &r.group)?;
        let op = MetaOp::Mkdirs {
            path: path::normalize_new(&r.path)?,
            create_parent: r.create_parent,
            owner: or_default(&r.owner, "rfs"),
            group: or_default(&r.group, "supergroup"),
            mode: if r.mode == 0 { 0o755 } else { r.mode & 0o7777 },
            now_ms: now_ms(),
        };
        match self.submit(call_key(&r.call)?, op).await? {
            MetaResult::Mkdirs { created } => Ok(Response::new(MkdirsResponse { created })),
            other => Err(unexpected(other)),
        }
    }

    async fn batch(&self, req: Request<BatchRequest>) -> R<BatchResponse> {
        rpc("batch");
        let calls = req.into_inner().calls;
        if calls.len() > MAX_BATCH_CALLS {
            return Err(NamenodeError::InvalidArgument(format!(
                "a batch holds at most {MAX_BATCH_CALLS} calls, not {}",
                calls.len()
            ))
            .into());
        }
        // Concurrently, so that the mutations' entries share raft batches.
        let answers =
            futures::future::join_all(calls.into_iter().map(|c| rfs_proto::batch::answer(self, c)))
                .await;
        Ok(Response::new(BatchResponse { answers }))
    }

    async fn create(&self, req: Request<CreateRequest>) -> R<CreateResponse> {
        rpc("create");
        self.leading()?;
        let r = req.into_inner();
        Self::require_client(&r.client_id)?;
        check_field("owner", &r.owner)?;
        check_field("group", &r.group)?;
        check_field("take_over_from", &r.take_over_from)?;
        let p = path::normalize_new(&r.path)?;
        let cfg = &self.state.config;
        let replication = if r.replication == 0 {
            cfg.replication
        } else {
            r.replication
        };
        let block_size = if r.block_size == 0 {
            cfg.block_size
        } else {
            r.block_size
        };
        if replication > MAX_REPLICATION {
            return Err(NamenodeError::InvalidArgument(format!(
                "replication {replication} is more than {MAX_REPLICATION}"
            ))
            .into());
        }
        if !block_size.is_multiple_of(rfs_proto::defaults::BYTES_PER_CHECKSUM as u64) {
            return Err(NamenodeError::InvalidArgument(format!(
                "block size {block_size} is not a multiple of 512"
            ))
            .into());
        }
        // Config, not replicated state: checked by the leader, so apply never depends on it.
        if block_size < cfg.min_block_size {
            return Err(NamenodeError::InvalidArgument(format!(
                "block size {block_size} is below the namenode's minimum {} (min_block_size)",
                cfg.min_block_size
            ))
            .into());
        }
        // A writer past its soft limit may be taken over, and so may one
        // the caller names as dead (a `dfs put` that found the writer's
        // process gone on its host; see ARCHITECTURE.md). Decided here,
        // because lease clocks are not part of the replicated state; apply
        // checks the writer still holds the file.
        let take_over_from = match self
            .state
            .ns
            .lookup(&p)?
            .and_then(|i| i.file)
            .and_then(|f| f.writer)
        {
            // A file the namenode is recovering is nobody's to take.
            Some(w)
                if w != r.client_id
                    && w != RECOVERY_HOLDER
                    && (w == r.take_over_from || !self.state.leases().is_live(&w)) =>
            {
                Some(w)
            }
            _ => None,
        };
        self.state.leases().renew(&r.client_id);
        let call = call_key(&r.call)?;
        let op = MetaOp::Create {
            path: p.clone(),
            client_id: r.client_id,
            overwrite: r.overwrite,
            replication,
            block_size,
            mode: if r.mode == 0 { 0o644 } else { r.mode & 0o7777 },
            create_parent: r.create_parent,
            owner: or_default(&r.owner, "rfs"),
            group: or_default(&r.group, "supergroup"),
            now_ms: now_ms(),
            take_over_from,
        };
        // The first block, when asked for, is placed now, as `add_block`
        // places a block, and allocated in the create's own entry. With no
        // datanode to take it the file is created without it: the
        // writer's `add_block` then says why, as it would have.
        let first_targets = if r.first_block {
            match self.place(&p, replication, block_size, &r.client_host, &[]) {
                Ok(targets) => Some(targets),
                Err(e) => {
                    tracing::debug!("{e}; creating the file without its first block");
                    None
                }
            }
        } else {
            None
        };
        let op = match first_targets {
            Some(_) => MetaOp::CreateWithBlock {
                create: Box::new(op),
            },
            None => op,
        };
        let (inode, replaced_blocks, block) = match self.submit(call, op).await? {
            MetaResult::Created {
                inode,
                replaced_blocks,
            } => (inode, replaced_blocks, None),
            MetaResult::CreatedWithBlock {
                inode,
                replaced_blocks,
                block,
            } => {
                // A retry answered from the retry cache gets its block
                // back even when placement found no datanode this time:
                // the writer cannot open a pipeline to none, abandons it,
                // and asks `add_block`, which says why.
                let targets = first_targets.unwrap_or_default();
                (
                    inode,
                    replaced_blocks,
                    Some(self.allocated(&block, 0, targets)),
                )
            }
            other => return Err(unexpected(other)),
        };
        self.state.invalidate(&replaced_blocks);
        self.state.under_construction().insert(inode.id);
        Ok(Response::new(CreateResponse {
            status: Some(file_status(p, &inode)),
            block,
        }))
    }

    async fn add_block(&self, req: Request<AddBlockRequest>) -> R<AddBlockResponse> {
        rpc("add_block");
        self.leading()?;
        let r = req.into_inner();
        Self::require_client(&r.client_id)?;
        let p = path::normalize(&r.path)?;
        let inode = self.state.ns.get(&p)?;
        let file = inode
            .file
            .as_ref()
            .ok_or_else(|| NamenodeError::IsDirectory(p.clone()))?;
        // Checked again in apply; checked here so that a writer without
        // the lease hears that, not that no datanode is free.
        match &file.writer {
            Some(w) if *w == r.client_id => {}
            Some(w) => {
                return Err(NamenodeError::LeaseConflict {
                    path: p,
                    holder: w.clone(),
                }
                .into())
            }
            None => {
                return Err(NamenodeError::NoLease {
                    path: p,
                    client: r.client_id,
                }
                .into())
            }
        }
        let call = call_key(&r.call)?;
        // Config, not replicated state: checked by the leader, so apply never depends on it.
        let max_blocks = self.state.config.max_blocks_per_file;
        let count = file.blocks.len() as u64 + 1;
        if count > max_blocks && !self.recorded(&call)? {
            return Err(NamenodeError::InvalidArgument(format!(
                "{p}: block {count} would exceed the namenode's limit of {max_blocks} blocks \
                 per file (max_blocks_per_file)"
            ))
            .into());
        }
        let targets = match self.place(
            &p,
            file.replication,
            file.block_size,
            &r.client_host,
            &r.excluded_datanodes,
        ) {
            Ok(targets) => targets,
            Err(e) => {
                tracing::warn!("{e}");
                return Err(e.into());
            }
        };
        self.state.leases().renew(&r.client_id);
        let op = MetaOp::AddBlock {
            path: p,
            client_id: r.client_id,
            previous: r.previous.as_ref().map(block_meta),
            now_ms: now_ms(),
        };
        match self.submit(call, op).await? {
            MetaResult::BlockAdded { block, offset, .. } => Ok(Response::new(AddBlockResponse {
                block: Some(self.allocated(&block, offset, targets)),
            })),
            other => Err(unexpected(other)),
        }
    }

    async fn complete(&self, req: Request<CompleteRequest>) -> R<CompleteResponse> {
        rpc("complete");
        self.leading()?;
        let r = req.into_inner();
        Self::require_client(&r.client_id)?;
        let p = path::normalize(&r.path)?;
        let call = call_key(&r.call)?;
        let unwritten = r.unwritten.as_ref().map(block_meta);
        let op = match (&r.last, unwritten) {
            (Some(_), Some(_)) => {
                return Err(NamenodeError::InvalidArgument(format!(
                    "{p}: complete names both a last block and an unwritten one"
                ))
                .into())
            }
            (_, Some(b)) => MetaOp::CompleteDroppingBlock {
                path: p.clone(),
                client_id: r.client_id,
                block_id: b.id,
                now_ms: now_ms(),
            },
            (last, None) => MetaOp::Complete {
                path: p.clone(),
                client_id: r.client_id,
                last: last.as_ref().map(block_meta),
                now_ms: now_ms(),
            },
        };
        let completed = self.submit(call, op).await?;
        if let Some(b) = unwritten {
            self.state.invalidate(&[b]);
        }
        match completed {
            MetaResult::Completed { inode } => Ok(Response::new(CompleteResponse {
                completed: true,
                status: Some(file_status(p, &inode)),
            })),
            other => Err(unexpected(other)),
        }
    }

    async fn update_pipeline(
        &self,
        req: Request<UpdatePipelineRequest>,
    ) -> R<UpdatePipelineResponse> {
        rpc("update_pipeline");
        self.leading()?;
        let r = req.into_inner();
        Self::require_client(&r.client_id)?;
        let p = path::normalize(&r.path)?;
        let b = block_meta(&required_block(r.block)?);
        let block_size = self
            .state
            .ns
            .get(&p)?
            .file
            .as_ref()
            .ok_or_else(|| NamenodeError::IsDirectory(p.clone()))?
            .block_size;
        let mut locations = Vec::new();
        {
            let reg = self.state.registry();
            for id in &r.survivors {
                let node = reg.get(id).ok_or_else(|| {
                    NamenodeError::InvalidArgument(format!("{p}: unknown datanode {id}"))
                })?;
                locations.push(node.info.clone());
            }
            if r.replacements > 0 {
                let mut excluded = r.excluded.clone();
                excluded.extend(r.survivors.iter().cloned());
                let extra = placement::choose(
                    &reg,
                    r.replacements as usize,
                    block_size,
                    &r.client_host,
                    &excluded,
                );
                locations.extend(extra);
            }
        }
        self.state.leases().renew(&r.client_id);
        let op = MetaOp::RecoverPipeline {
            path: p.clone(),
            client_id: r.client_id,
            block_id: b.id,
            gen_stamp: b.gen_stamp,
            acked_len: r.acked_length,
        };
        match self.submit(call_key(&r.call)?, op).await? {
            MetaResult::PipelineUpdated { block, .. } => {
                tracing::info!(
                    "{p}: pipeline of block {} recovered at {} acknowledged bytes: generation stamp {} -> {}, {} datanodes",
                    block.id,
                    block.len,
                    b.gen_stamp,
                    block.gen_stamp,
                    locations.len()
                );
                let ids = locations.iter().map(|t| t.datanode_id.clone()).collect();
                self.state
                    .blocks()
                    .allocated(block.id, block.gen_stamp, ids);
                Ok(Response::new(UpdatePipelineResponse {
                    block: Some(rfs_proto::common::LocatedBlock {
                        block: Some(crate::state::extended(&block)),
                        offset: 0,
                        locations,
                        corrupt: false,
                    }),
                }))
            }
            other => Err(unexpected(other)),
        }
    }

    async fn abandon_block(&self, req: Request<AbandonBlockRequest>) -> R<AbandonBlockResponse> {
        rpc("abandon_block");
        self.leading()?;
        let r = req.into_inner();
        let b = block_meta(&required_block(r.block)?);
        let op = MetaOp::AbandonBlock {
            path: path::normalize(&r.path)?,
            client_id: r.client_id,
            block_id: b.id,
        };
        self.submit(call_key(&r.call)?, op).await?;
        self.state.invalidate(&[b]);
        Ok(Response::new(AbandonBlockResponse {}))
    }

    async fn get_block_locations(
        &self,
        req: Request<GetBlockLocationsRequest>,
    ) -> R<GetBlockLocationsResponse> {
        rpc("get_block_locations");
        self.linearizable().await?;
        let r = req.into_inner();
        let p = path::normalize(&r.path)?;
        let inode = self.state.ns.get(&p)?;
        let file = inode
            .file
            .as_ref()
            .ok_or_else(|| NamenodeError::IsDirectory(p.clone()))?;
        let end = if r.length == 0 {
            u64::MAX
        } else {
            r.offset.saturating_add(r.length)
        };
        let mut blocks = Vec::new();
        let mut offset = 0u64;
        for b in file.readable_blocks() {
            let b_end = offset.saturating_add(b.len);
            // A zero-length (still being written) last block overlaps its offset.
            if (b_end > r.offset || (b.len == 0 && offset >= r.offset)) && offset < end {
                blocks.push(self.state.located(&b, offset, &r.client_host));
            }
            offset = b_end;
        }
        Ok(Response::new(GetBlockLocationsResponse {
            file_length: file.length(),
            blocks,
            under_construction: file.writer.is_some(),
            status: Some(file_status(p, &inode)),
        }))
    }

    async fn get_file_info(&self, req: Request<GetFileInfoRequest>) -> R<GetFileInfoResponse> {
        rpc("get_file_info");
        self.linearizable().await?;
        let p = path::normalize(&req.into_inner().path)?;
        let status = match self.state.ns.lookup(&p)? {
            Some(i) => Some(status_with_children(&self.state.ns, p, &i)?),
            None => None,
        };
        Ok(Response::new(GetFileInfoResponse { status }))
    }

    async fn list(&self, req: Request<ListRequest>) -> R<ListResponse> {
        rpc("list");
        self.linearizable().await?;
        let r = req.into_inner();
        let p = path::normalize(&r.path)?;
        let inode = self.state.ns.get(&p)?;
        if !inode.is_dir() {
            return Ok(Response::new(listing::file_page(p, inode.as_ref())));
        }
        let limit = match r.limit {
            0 => DEFAULT_LIST_LIMIT,
            n => n.min(MAX_LIST_LIMIT),
        };
        let page =
            listing::directory_page(&self.state.ns, p, inode.id, &r.start_after, limit as usize)?;
        Ok(Response::new(page))
    }

    async fn delete(&self, req: Request<DeleteRequest>) -> R<DeleteResponse> {
        rpc("delete");
        self.leading()?;
        let r = req.into_inner();
        let op = MetaOp::DeleteInSteps {
            path: path::normalize(&r.path)?,
            recursive: r.recursive,
            now_ms: now_ms(),
            step: self.state.config.delete_step,
        };
        match self.submit(call_key(&r.call)?, op).await? {
            MetaResult::Deleted { blocks } => {
                self.state.invalidate(&blocks);
                Ok(Response::new(DeleteResponse { deleted: true }))
            }
            other => Err(unexpected(other)),
        }
    }

    async fn rename(&self, req: Request<RenameRequest>) -> R<RenameResponse> {
        rpc("rename");
        self.leading()?;
        let r = req.into_inner();
        let (src, dst) = (path::normalize(&r.src)?, path::normalize_new(&r.dst)?);
        let now_ms = now_ms();
        let op = if r.overwrite {
            MetaOp::RenameOverwrite { src, dst, now_ms }
        } else {
            MetaOp::Rename { src, dst, now_ms }
        };
        let final_path = match self.submit(call_key(&r.call)?, op).await? {
            MetaResult::Renamed { final_path } => final_path,
            MetaResult::RenamedOverwriting {
                final_path,
                replaced_blocks,
            } => {
                self.state.invalidate(&replaced_blocks);
                final_path
            }
            other => return Err(unexpected(other)),
        };
        Ok(Response::new(RenameResponse {
            renamed: true,
            final_path,
        }))
    }

    async fn set_replication(
        &self,
        req: Request<SetReplicationRequest>,
    ) -> R<SetReplicationResponse> {
        rpc("set_replication");
        self.leading()?;
        let r = req.into_inner();
        if r.replication == 0 || r.replication > MAX_REPLICATION {
            return Err(NamenodeError::InvalidArgument(format!(
                "replication {} must be between 1 and {MAX_REPLICATION}",
                r.replication
            ))
            .into());
        }
        let op = MetaOp::SetReplication {
            path: path::normalize(&r.path)?,
            replication: r.replication,
        };
        match self.submit(None, op).await? {
            MetaResult::ReplicationSet { changed, .. } => {
                Ok(Response::new(SetReplicationResponse { changed }))
            }
            other => Err(unexpected(other)),
        }
    }

    async fn content_summary(
        &self,
        req: Request<ContentSummaryRequest>,
    ) -> R<ContentSummaryResponse> {
        rpc("content_summary");
        self.linearizable().await?;
        let p = path::normalize(&req.into_inner().path)?;
        // One entry of the kept totals: no walk of the subtree.
        let t = self.state.ns.content_summary(&p)?;
        Ok(Response::new(ContentSummaryResponse {
            length: t.bytes,
            file_count: t.files,
            directory_count: t.dirs,
            space_consumed: t.space_consumed,
        }))
    }

    async fn fs_stats(&self, _req: Request<FsStatsRequest>) -> R<FsStatsResponse> {
        rpc("fs_stats");
        self.linearizable().await?;
        // Counts from the kept totals; used space as the datanodes report
        // it (what their disks hold), as HDFS's df; the block health
        // counts need each complete file's blocks and replication.
        let (totals, blocks) = self.state.ns.totals();
        let mut s = FsStatsResponse {
            total_files: totals.files,
            total_blocks: blocks,
            ..FsStatsResponse::default()
        };
        // Blocks of files being written are left out of the health counts:
        // their replicas are still arriving.
        let mut complete_blocks = Vec::new();
        for inode in self.state.ns.files() {
            let Some(f) = inode?.file else { continue };
            if f.writer.is_none() {
                complete_blocks.extend(f.blocks.iter().map(|b| (*b, f.replication)));
            }
        }
        // Lock order: block map, then registry (as everywhere).
        let map = self.state.blocks();
        let reg = self.state.registry();
        for d in reg.live() {
            s.capacity = s.capacity.saturating_add(d.info.capacity);
            s.used = s.used.saturating_add(d.info.used);
            s.remaining = s.remaining.saturating_add(d.info.remaining);
        }
        (s.live_datanodes, s.dead_datanodes) = reg.counts();
        for (b, replication) in complete_blocks {
            let info = map.get(b.id);
            let good = info.map_or(0, |i| readable_replicas(i, b.gen_stamp, &reg).len());
            if good == 0 {
                s.missing_blocks += 1;
            }
            if good < replication as usize {
                s.under_replicated_blocks += 1;
            }
            if info.is_some_and(|i| i.corrupt_count() > 0) {
                s.corrupt_blocks += 1;
            }
        }
        Ok(Response::new(s))
    }

    async fn renew_lease(&self, req: Request<RenewLeaseRequest>) -> R<RenewLeaseResponse> {
        rpc("renew_lease");
        self.leading()?;
        let r = req.into_inner();
        Self::require_client(&r.client_id)?;
        self.state.leases().renew(&r.client_id);
        Ok(Response::new(RenewLeaseResponse {}))
    }

    async fn report_bad_blocks(
        &self,
        req: Request<ReportBadBlocksRequest>,
    ) -> R<ReportBadBlocksResponse> {
        rpc("report_bad_blocks");
        self.leading()?;
        let r = req.into_inner();
        let b = required_block(r.block)?;
        if r.datanode_id.is_empty() {
            return Err(NamenodeError::InvalidArgument("datanode_id is required".into()).into());
        }
        crate::bad_replicas::suspect(&self.state, &b, &r.datanode_id, &r.reason)?;
        Ok(Response::new(ReportBadBlocksResponse {}))
    }

    async fn fsck(&self, req: Request<FsckRequest>) -> R<FsckResponse> {
        rpc("fsck");
        self.linearizable().await?;
        let p = path::normalize(&req.into_inner().path)?;
        let state = self.state.clone();
        let report = tokio::task::spawn_blocking(move || crate::health::fsck(&state, &p))
            .await
            .map_err(|e| NamenodeError::Internal(format!("fsck: {e}")))??;
        Ok(Response::new(report))
    }

    /// Every member answers, leading or not, from what it knows now.
    async fn get_namenode_group(
        &self,
        _req: Request<GetNamenodeGroupRequest>,
    ) -> R<GetNamenodeGroupResponse> {
        rpc("get_namenode_group");
        let raft = &self.state.raft;
        let id_of = |raft_id: u64| raft.member(raft_id).map(|m| m.id.clone());
        let members = raft
            .members()
            .iter()
            .map(|m| NamenodeMember {
                id: m.id.clone(),
                rpc_addr: m.rpc_addr.to_string(),
                witness: m.witness,
            })
            .collect();
        Ok(Response::new(GetNamenodeGroupResponse {
            members,
            leader_id: id_of(raft.status().leader).unwrap_or_default(),
            member_id: id_of(raft.id()).unwrap_or_default(),
        }))
    }

    async fn datanode_report(
        &self,
        _req: Request<DatanodeReportRequest>,
    ) -> R<DatanodeReportResponse> {
        rpc("datanode_report");
        self.leading()?;
        Ok(Response::new(crate::health::datanode_report(&self.state)))
    }

    async fn decommission(&self, req: Request<DecommissionRequest>) -> R<DecommissionResponse> {
        rpc("decommission");
        self.leading()?;
        let r = req.into_inner();
        let found = {
            let reg = self.state.registry();
            let id = reg
                .all()
                .find(|s| {
                    s.info.datanode_id == r.datanode
                        || format!("{}:{}", s.info.ip, s.info.data_port) == r.datanode
                })
                .map(|s| s.info.datanode_id.clone());
            id
        };
        let id = found.ok_or_else(|| NamenodeError::UnknownDatanode(r.datanode.clone()))?;
        let op = MetaOp::Decommission {
            datanode_id: id.clone(),
            decommission: !r.cancel,
        };
        self.submit(call_key(&r.call)?, op).await?;
        let draining = self.state.ns.decommissioning()?;
        let mut reg = self.state.registry();
        reg.set_draining(draining);
        tracing::info!(
            "datanode {id} ({}) is now {}",
            r.datanode,
            reg.admin_state(&id)
        );
        Ok(Response::new(DecommissionResponse {
            admin_state: reg.admin_state(&id).to_string(),
            datanode_id: id,
        }))
    }
}
