//! The datanode protocol: registration, heartbeats (which carry commands
//! back), full and incremental block reports, bad-replica reports (a
//! datanode's own verdict, see `bad_replicas.rs`), and the leader's word
//! on whether a replica may be cut for a recovery (`ConfirmRecovery`,
//! decided in `recovery_check.rs`).
//!
//! Datanodes report to every member, so a standby's block map is as hot
//! as the leader's. Every response that can carry commands says whether
//! this member leads and in which raft term ([`Fencing`]); only the leader
//! sends data commands, and datanodes ignore any from a lower term. Every
//! call after Register carries the registration's epoch; one under
//! another epoch is answered "re-register" (the registry's rules, in
//! `datanodes.rs`). What a reported replica is worth is `reported.rs`'s
//! call.

use std::collections::HashSet;
use std::sync::Arc;

use rfs_proto::common::ExtendedBlock;
use rfs_proto::datanode::datanode_protocol_server::DatanodeProtocol;
use rfs_proto::datanode::*;
use tonic::{Request, Response, Status};

use super::{block_meta, required_block};
use crate::error::NamenodeError;
use crate::meta_op::{MetaOp, MetaResult, Proposal};
use crate::recovery_check::{self, Recovery};
use crate::reported::{Judge, Judgement};
use crate::state::{invalidate_command, State};

pub struct DatanodeService {
    pub state: Arc<State>,
    pub namenode_id: String,
}

type R<T> = Result<Response<T>, Status>;

/// Counts one call of `method`.
fn rpc(method: &'static str) {
    metrics::counter!("rfs_namenode_rpcs_total", "method" => method).increment(1);
}

impl DatanodeService {
    /// This member's raft term and whether it leads.
    fn fencing(&self) -> Fencing {
        let status = self.state.raft.status();
        Fencing {
            term: status.term,
            active: self.state.raft.is_leader(),
        }
    }

    /// Records a sign of life of `datanode` under `epoch`; a stale or
    /// unknown registration is `StaleRegistration` (re-register).
    fn registered(&self, datanode: &str, epoch: u64) -> Result<(), NamenodeError> {
        if self.state.registry().touch(datanode, epoch) {
            return Ok(());
        }
        Err(NamenodeError::StaleRegistration {
            datanode: datanode.to_string(),
            epoch,
        })
    }

    /// `commands` as this member may send them: a non-leader keeps only
    /// re-registration (its own bookkeeping), never data commands.
    fn fenced(&self, commands: Vec<DatanodeCommand>) -> (Vec<DatanodeCommand>, Option<Fencing>) {
        let fencing = self.fencing();
        let commands = if fencing.active {
            commands
        } else {
            commands
                .into_iter()
                .filter(|c| matches!(c.command, Some(datanode_command::Command::Reregister(_))))
                .collect()
        };
        (commands, Some(fencing))
    }
}

fn reregister() -> DatanodeCommand {
    DatanodeCommand {
        command: Some(datanode_command::Command::Reregister(ReRegister {})),
        ..Default::default()
    }
}

/// Records one reported finalized replica; returns it back if it must be
/// deleted (see `reported.rs`).
fn add_reported(
    state: &State,
    judge: &Judge,
    node: &str,
    b: &ExtendedBlock,
) -> Result<Option<ExtendedBlock>, NamenodeError> {
    let (id, gen_stamp) = (b.block_id, b.generation_stamp);
    match judge.judge(b)? {
        Judgement::Current => state.blocks().add_replica(id, gen_stamp, node),
        // A standby records replicas as reported; its reconciliation on
        // election drops what turns out stale.
        Judgement::Unjudged if !judge.leading() => {
            state.blocks().add_unjudged_replica(id, gen_stamp, node)
        }
        Judgement::Stale => return Ok(Some(*b)),
        Judgement::Recovering | Judgement::Unjudged => {}
    }
    Ok(None)
}

/// Records a full report's unfinished replicas: those at their block's
/// stamp are lease recovery's locations; the stale ones are returned for
/// deletion if this node's previous full report held them stale too.
fn add_being_written(
    state: &State,
    judge: &Judge,
    node: &str,
    being_written: &[ExtendedBlock],
) -> Result<Vec<ExtendedBlock>, NamenodeError> {
    let mut stale = HashSet::new();
    for b in being_written {
        match judge.judge(b)? {
            // Only at the block's current stamp: a node dropped from a
            // pipeline holds an older, possibly shorter copy that lease
            // recovery must not cut the block down to.
            Judgement::Current => {
                state
                    .blocks()
                    .add_expected(b.block_id, b.generation_stamp, node);
            }
            Judgement::Stale => {
                stale.insert((b.block_id, b.generation_stamp));
            }
            Judgement::Recovering | Judgement::Unjudged => {}
        }
    }
    let before = state.registry().swap_stale_rbw(node, stale.clone());
    let mut twice: Vec<ExtendedBlock> = stale
        .intersection(&before)
        .map(|&(block_id, generation_stamp)| ExtendedBlock {
            block_id,
            generation_stamp,
            num_bytes: 0,
        })
        .collect();
    twice.sort_by_key(|b| b.block_id);
    Ok(twice)
}

#[tonic::async_trait]
impl DatanodeProtocol for DatanodeService {
    async fn register(&self, req: Request<RegisterRequest>) -> R<RegisterResponse> {
        rpc("register");
        let r = req.into_inner();
        let info = r.info.ok_or_else(|| {
            NamenodeError::InvalidArgument("registration without datanode info".into())
        })?;
        if info.datanode_id.is_empty() || info.data_port == 0 || info.data_port > u16::MAX as u32 {
            return Err(NamenodeError::InvalidArgument(
                "registration needs a datanode id and a data port".into(),
            )
            .into());
        }
        let (id, ip, port) = (info.datanode_id.clone(), info.ip.clone(), info.data_port);
        let registered = self
            .state
            .registry()
            .register(info, (r.previous_epoch, r.last_command_seq));
        let epoch = match registered {
            Ok(epoch) => epoch,
            Err(e) => {
                tracing::warn!("{e}");
                return Err(e.into());
            }
        };
        tracing::info!("datanode {id} registered at {ip}:{port} (epoch {epoch:016x})");
        Ok(Response::new(RegisterResponse {
            namenode_id: self.namenode_id.clone(),
            fencing: Some(self.fencing()),
            epoch,
        }))
    }

    async fn heartbeat(&self, req: Request<HeartbeatRequest>) -> R<HeartbeatResponse> {
        rpc("heartbeat");
        let r = req.into_inner();
        let leading = self.state.raft.is_leader();
        let commands = self.state.registry().heartbeat(&r, leading);
        let (commands, fencing) = self.fenced(commands.unwrap_or_else(|| vec![reregister()]));
        Ok(Response::new(HeartbeatResponse { commands, fencing }))
    }

    async fn block_report(&self, req: Request<BlockReportRequest>) -> R<BlockReportResponse> {
        rpc("block_report");
        let r = req.into_inner();
        if !self.state.registry().touch(&r.datanode_id, r.epoch) {
            let (commands, fencing) = self.fenced(vec![reregister()]);
            return Ok(Response::new(BlockReportResponse { commands, fencing }));
        }
        let reported: std::collections::HashSet<u64> =
            r.blocks.iter().map(|b| b.block_id).collect();
        {
            let mut map = self.state.blocks();
            for id in map.blocks_of(&r.datanode_id) {
                if !reported.contains(&id) {
                    map.remove_replica(id, &r.datanode_id);
                }
            }
        }
        let judge = Judge::new(&self.state)?;
        let mut stale = Vec::new();
        for b in &r.blocks {
            if let Some(b) = add_reported(&self.state, &judge, &r.datanode_id, b)? {
                stale.push(b);
            }
        }
        let stale_rbw = add_being_written(&self.state, &judge, &r.datanode_id, &r.being_written)?;
        tracing::info!(
            "block report from {}: {} replicas, {} being written, {} to delete ({} unfinished)",
            r.datanode_id,
            r.blocks.len(),
            r.being_written.len(),
            stale.len() + stale_rbw.len(),
            stale_rbw.len()
        );
        stale.extend(stale_rbw);
        let commands = if stale.is_empty() {
            vec![]
        } else {
            vec![invalidate_command(stale)]
        };
        let (commands, fencing) = self.fenced(commands);
        Ok(Response::new(BlockReportResponse { commands, fencing }))
    }

    async fn block_received_and_deleted(
        &self,
        req: Request<BlockReceivedAndDeletedRequest>,
    ) -> R<BlockReceivedAndDeletedResponse> {
        rpc("block_received_and_deleted");
        let r = req.into_inner();
        self.registered(&r.datanode_id, r.epoch)?;
        let judge = Judge::new(&self.state)?;
        let mut stale = Vec::new();
        for b in &r.received {
            if let Some(b) = add_reported(&self.state, &judge, &r.datanode_id, b)? {
                stale.push(b);
            }
        }
        {
            let mut map = self.state.blocks();
            for b in &r.deleted {
                map.remove_replica(b.block_id, &r.datanode_id);
            }
        }
        if !stale.is_empty() {
            self.state
                .registry()
                .queue(&r.datanode_id, invalidate_command(stale));
        }
        Ok(Response::new(BlockReceivedAndDeletedResponse {}))
    }

    async fn report_bad_replica(
        &self,
        req: Request<ReportBadReplicaRequest>,
    ) -> R<ReportBadReplicaResponse> {
        rpc("report_bad_replica");
        let r = req.into_inner();
        self.registered(&r.datanode_id, r.epoch)?;
        let b = required_block(r.block)?;
        crate::bad_replicas::condemn(&self.state, &b, &r.datanode_id, &r.reason)?;
        Ok(Response::new(ReportBadReplicaResponse {}))
    }

    async fn commit_block_synchronization(
        &self,
        req: Request<CommitBlockSynchronizationRequest>,
    ) -> R<CommitBlockSynchronizationResponse> {
        rpc("commit_block_synchronization");
        let r = req.into_inner();
        let block = block_meta(&required_block(r.block)?);
        let op = MetaOp::CommitBlockSync {
            block,
            delete_block: r.delete_block,
            now_ms: crate::clock::now_ms(),
        };
        match self.state.raft.submit(Proposal::new(op)).await? {
            MetaResult::LeaseRecovered { inode, dropped } => {
                if let Some(d) = dropped {
                    self.state.invalidate(&[d]);
                } else {
                    let mut map = self.state.blocks();
                    for node in &r.datanode_ids {
                        map.add_replica(block.id, block.gen_stamp, node);
                    }
                }
                self.state.under_construction().remove(&inode.id);
                tracing::info!(
                    "lease recovery of inode {} committed: block {} {} at generation stamp {} on {:?}; file closed",
                    inode.id,
                    block.id,
                    if r.delete_block {
                        "dropped".to_string()
                    } else {
                        format!("{} bytes", block.len)
                    },
                    block.gen_stamp,
                    r.datanode_ids
                );
                Ok(Response::new(CommitBlockSynchronizationResponse {}))
            }
            other => Err(NamenodeError::Internal(format!(
                "commit block synchronization got {other:?}"
            ))
            .into()),
        }
    }

    async fn confirm_recovery(
        &self,
        req: Request<ConfirmRecoveryRequest>,
    ) -> R<ConfirmRecoveryResponse> {
        rpc("confirm_recovery");
        // Only the leader, and only on state that includes every
        // UpdatePipeline or RecoverLease acknowledged before this call.
        self.state.raft.read_barrier().await?;
        let r = req.into_inner();
        let block = block_meta(&required_block(r.block)?);
        let kind = match r.kind() {
            RecoveryKind::Pipeline => Recovery::Pipeline,
            RecoveryKind::Lease => Recovery::Lease,
        };
        let owner = self.state.ns.block_owner(block.id)?;
        if let Err(e) = recovery_check::confirm(owner.as_ref(), &block, kind) {
            tracing::warn!(
                "datanode {} may not recover block {} to generation stamp {} and {} bytes ({kind:?}): {e}",
                r.datanode_id,
                block.id,
                block.gen_stamp,
                block.len
            );
            return Err(e.into());
        }
        Ok(Response::new(ConfirmRecoveryResponse {}))
    }
}
