//! The HA admin view (`rfs.ha.HaAdmin`): each member's raft state, and
//! graceful leadership transfer (`dfs admin ha status|transfer`).

use std::sync::Arc;

use rfs_proto::ha::ha_admin_server::HaAdmin;
use rfs_proto::ha::*;
use tonic::{Request, Response, Status};

use crate::error::NamenodeError;
use crate::state::State;

pub struct HaService {
    pub state: Arc<State>,
}

type R<T> = Result<Response<T>, Status>;

#[tonic::async_trait]
impl HaAdmin for HaService {
    async fn status(&self, _req: Request<HaStatusRequest>) -> R<HaStatusResponse> {
        let raft = &self.state.raft;
        let s = raft.status();
        let me = raft.member(raft.id()).cloned();
        let name = |id: u64| raft.member(id).map(|m| m.id.clone()).unwrap_or_default();
        let member = MemberStatus {
            id: me.as_ref().map(|m| m.id.clone()).unwrap_or_default(),
            rpc_addr: me
                .as_ref()
                .map(|m| m.rpc_addr.to_string())
                .unwrap_or_default(),
            role: s.role.name().to_string(),
            witness: self.state.config.witness,
            term: s.term,
            leader_id: name(s.leader),
            commit_index: s.commit,
            applied_index: s.applied,
            last_index: s.last_index,
            snapshot_index: s.snapshot_index,
            name_dir_free_bytes: s.name_dir_free,
            low_on_disk: s.low_on_disk,
        };
        let replication = s
            .matched
            .iter()
            .map(|(id, matched)| Replication {
                id: name(*id),
                matched: *matched,
            })
            .collect();
        Ok(Response::new(HaStatusResponse {
            member: Some(member),
            replication,
        }))
    }

    async fn transfer_leader(
        &self,
        req: Request<TransferLeaderRequest>,
    ) -> R<TransferLeaderResponse> {
        let target = req.into_inner().target_id;
        let raft = &self.state.raft;
        let Some(pos) = raft.members().iter().position(|m| m.id == target) else {
            let ids: Vec<&str> = raft.members().iter().map(|m| m.id.as_str()).collect();
            return Err(NamenodeError::InvalidArgument(format!(
                "no member {target:?} in this group (members: {})",
                ids.join(", ")
            ))
            .into());
        };
        if raft.members()[pos].witness {
            return Err(NamenodeError::InvalidArgument(format!(
                "{target} is a witness: it votes but never leads"
            ))
            .into());
        }
        raft.check_leader()?;
        let term = raft.transfer(pos as u64 + 1).await?;
        tracing::info!("leadership transferred to {target} (term {term})");
        Ok(Response::new(TransferLeaderResponse {
            leader_id: target,
            term,
        }))
    }
}
