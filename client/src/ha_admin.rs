//! The HA admin calls every member of a namenode group serves on its RPC
//! address (`HaAdmin`): one member's view of the raft group, and asking
//! the leader to hand leadership over. Each call goes to the one member
//! named, with no failover; which members to ask and how to show their
//! answers is the caller's business (`dfs admin ha`).

use std::future::Future;
use std::time::Duration;

use rfs_proto::ha::ha_admin_client::HaAdminClient;
use rfs_proto::ha::{HaStatusRequest, TransferLeaderRequest};
use tonic::transport::Channel;

pub use rfs_proto::ha::{HaStatusResponse, MemberStatus, Replication, TransferLeaderResponse};

use crate::error::{Error, Result};
use crate::namenode::connect_one;

/// The member at `addr` describes itself (role, term, commit and applied
/// index) and, when it leads, how far each member's log matches.
pub async fn ha_status(addr: &str, timeout: Duration) -> Result<HaStatusResponse> {
    admin_call(addr, "ha status", timeout, |mut c| async move {
        c.status(HaStatusRequest {}).await
    })
    .await
}

/// Asks the leader at `addr` to hand leadership to member `target_id`;
/// answers once it has, with the new leader's id. The member's refusal
/// (not the leader, target unknown or a witness) keeps its text.
pub async fn transfer_leader(
    addr: &str,
    target_id: &str,
    timeout: Duration,
) -> Result<TransferLeaderResponse> {
    let req = TransferLeaderRequest {
        target_id: target_id.to_string(),
    };
    admin_call(addr, "transfer leader", timeout, |mut c| async move {
        c.transfer_leader(req).await
    })
    .await
}

/// Connects to `addr` and runs `f` under `timeout` (each).
async fn admin_call<T, F, Fut>(addr: &str, call: &'static str, timeout: Duration, f: F) -> Result<T>
where
    F: FnOnce(HaAdminClient<Channel>) -> Fut,
    Fut: Future<Output = std::result::Result<tonic::Response<T>, tonic::Status>>,
{
    let channel = connect_one(addr, timeout).await?;
    match tokio::time::timeout(timeout, f(HaAdminClient::new(channel))).await {
        Err(_) => Err(Error::NamenodeTimeout {
            addr: addr.to_string(),
            call,
            timeout,
        }),
        Ok(Err(status)) => Err(Error::from_status(addr, &status)),
        Ok(Ok(resp)) => Ok(resp.into_inner()),
    }
}
