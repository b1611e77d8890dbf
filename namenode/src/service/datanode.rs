//! The datanode protocol: registration, heartbeats (which carry commands
//! back), full and incremental block reports, bad-replica reports.

use std::sync::Arc;

use rfs_proto::common::ExtendedBlock;
use rfs_proto::datanode::datanode_protocol_server::DatanodeProtocol;
use rfs_proto::datanode::*;
use tonic::{Request, Response, Status};

use crate::error::NamenodeError;
use crate::state::{invalidate_command, State};

pub struct DatanodeService {
    pub state: Arc<State>,
    pub namenode_id: String,
}

type R<T> = Result<Response<T>, Status>;

fn reregister() -> DatanodeCommand {
    DatanodeCommand {
        command: Some(datanode_command::Command::Reregister(ReRegister {})),
    }
}

/// Records one reported replica; returns it back if it must be deleted (no
/// such block any more, or a stale generation stamp).
fn add_reported(
    state: &State,
    node: &str,
    b: &ExtendedBlock,
) -> Result<Option<ExtendedBlock>, NamenodeError> {
    let Some(owner) = state.ns.block_owner(b.block_id)? else {
        return Ok(Some(*b));
    };
    let Some(file) = owner.file else {
        return Ok(Some(*b));
    };
    match file.blocks.iter().find(|m| m.id == b.block_id) {
        Some(m) if m.gen_stamp == b.generation_stamp => {
            state
                .blocks()
                .add_replica(b.block_id, m.gen_stamp, file.replication, node);
            Ok(None)
        }
        _ => Ok(Some(*b)),
    }
}

/// Marks a replica bad; deletes it on its node once a good copy exists.
pub fn record_bad_replica(state: &State, b: &ExtendedBlock, node: &str, reason: &str) {
    tracing::warn!(
        "replica of block {} on datanode {node} reported bad: {reason}",
        b.block_id
    );
    metrics::counter!("rfs_namenode_bad_replicas_total").increment(1);
    let good_elsewhere = state.blocks().mark_corrupt(b.block_id, node);
    if good_elsewhere {
        state.registry().queue(node, invalidate_command(vec![*b]));
    }
}

#[tonic::async_trait]
impl DatanodeProtocol for DatanodeService {
    async fn register(&self, req: Request<RegisterRequest>) -> R<RegisterResponse> {
        let info = req.into_inner().info.ok_or_else(|| {
            NamenodeError::InvalidArgument("registration without datanode info".into())
        })?;
        if info.datanode_id.is_empty() || info.data_port == 0 || info.data_port > u16::MAX as u32 {
            return Err(NamenodeError::InvalidArgument(
                "registration needs a datanode id and a data port".into(),
            )
            .into());
        }
        tracing::info!(
            "datanode {} registered at {}:{}",
            info.datanode_id,
            info.ip,
            info.data_port
        );
        self.state.registry().register(info);
        Ok(Response::new(RegisterResponse {
            namenode_id: self.namenode_id.clone(),
        }))
    }

    async fn heartbeat(&self, req: Request<HeartbeatRequest>) -> R<HeartbeatResponse> {
        let r = req.into_inner();
        let s = r.storage.unwrap_or_default();
        let commands =
            self.state
                .registry()
                .heartbeat(&r.datanode_id, s.capacity, s.used, s.remaining);
        Ok(Response::new(HeartbeatResponse {
            commands: commands.unwrap_or_else(|| vec![reregister()]),
        }))
    }

    async fn block_report(&self, req: Request<BlockReportRequest>) -> R<BlockReportResponse> {
        let r = req.into_inner();
        if !self.state.registry().touch(&r.datanode_id) {
            return Ok(Response::new(BlockReportResponse {
                commands: vec![reregister()],
            }));
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
        let mut stale = Vec::new();
        for b in &r.blocks {
            if let Some(b) = add_reported(&self.state, &r.datanode_id, b)? {
                stale.push(b);
            }
        }
        tracing::info!(
            "block report from {}: {} replicas, {} to delete",
            r.datanode_id,
            r.blocks.len(),
            stale.len()
        );
        let commands = if stale.is_empty() {
            vec![]
        } else {
            vec![invalidate_command(stale)]
        };
        Ok(Response::new(BlockReportResponse { commands }))
    }

    async fn block_received_and_deleted(
        &self,
        req: Request<BlockReceivedAndDeletedRequest>,
    ) -> R<BlockReceivedAndDeletedResponse> {
        let r = req.into_inner();
        if !self.state.registry().touch(&r.datanode_id) {
            return Err(NamenodeError::InvalidArgument(format!(
                "datanode {} is not registered",
                r.datanode_id
            ))
            .into());
        }
        let mut stale = Vec::new();
        for b in &r.received {
            if let Some(b) = add_reported(&self.state, &r.datanode_id, b)? {
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
        let r = req.into_inner();
        let b = r
            .block
            .ok_or_else(|| NamenodeError::InvalidArgument("block is required".into()))?;
        record_bad_replica(&self.state, &b, &r.datanode_id, &r.reason);
        Ok(Response::new(ReportBadReplicaResponse {}))
    }
}
