//! Asking the active namenode before a replica is cut for a recovery.
//!
//! WRITE_BLOCK RECOVER, COPY_BLOCK rbw and RECOVER_REPLICA COMMIT each cut
//! a replica to a new generation stamp and a length that may be shorter,
//! and any peer can send them. Before cutting, the datanode asks the
//! namenodes (`ConfirmRecovery`) and goes on only once the leader confirms
//! that stamp and length (its rules: the namenode's `recovery_check.rs`).
//! A refusal is answered to whoever sent the op, and nothing on disk
//! changes. Block tokens (a later issue) replace this.
//!
//! Every configured namenode is asked in turn: one that answers
//! not-leader, or cannot be reached, passes the question on to the next.
//! While none leads (an election) the round is repeated, with growing
//! pauses, until `rpc_timeout` has passed. A node without namenodes
//! refuses every recovery: nobody can vouch for one.
//!
//! Not here: fencing (`fencing.rs`) judges commands namenodes send; this
//! is a question the datanode asks.

use std::time::Duration;

use rfs_proto::common::ExtendedBlock;
use rfs_proto::datanode::datanode_protocol_client::DatanodeProtocolClient;
use rfs_proto::datanode::{ConfirmRecoveryRequest, RecoveryKind};
use tokio::time::Instant;
use tonic::transport::Channel;
use tonic::Code;
use tracing::{debug, warn};

use crate::config::DatanodeConfig;
use crate::error::{Error, Result};

/// Longest pause between two rounds over the namenodes.
const MAX_PAUSE: Duration = Duration::from_secs(1);

/// The namenodes to ask, and how long to keep asking.
pub struct RecoveryCheck {
    namenodes: Vec<(String, DatanodeProtocolClient<Channel>)>,
    limit: Duration,
}

impl RecoveryCheck {
    pub fn new(config: &DatanodeConfig) -> RecoveryCheck {
        let namenodes = config
            .namenodes
            .iter()
            .filter_map(|addr| match config.namenode_endpoint(addr) {
                Ok(e) => Some((addr.clone(), DatanodeProtocolClient::new(e.connect_lazy()))),
                Err(e) => {
                    warn!("{e}; not asking it about recoveries");
                    None
                }
            })
            .collect();
        RecoveryCheck {
            namenodes,
            limit: config.rpc_timeout(),
        }
    }

    /// `Ok` once the leader confirms cutting this node's replica of
    /// `block.block_id` to `block.generation_stamp` and `block.num_bytes`
    /// bytes for a recovery of `kind`; `datanode_id` names this node to
    /// the namenode.
    pub async fn confirm(
        &self,
        block: ExtendedBlock,
        kind: RecoveryKind,
        datanode_id: &str,
    ) -> Result<()> {
        let deadline = Instant::now() + self.limit;
        let mut pause = Duration::from_millis(50);
        let mut why = String::from("this datanode has no namenode to ask");
        loop {
            for (addr, client) in &self.namenodes {
                let req = ConfirmRecoveryRequest {
                    datanode_id: datanode_id.to_string(),
                    block: Some(block),
                    kind: kind as i32,
                };
                let mut client = client.clone();
                let answer = tokio::time::timeout_at(deadline, client.confirm_recovery(req)).await;
                match answer {
                    Ok(Ok(_)) => return Ok(()),
                    Ok(Err(s)) if ask_elsewhere(&s) => {
                        debug!("namenode {addr} cannot confirm a recovery: {}", s.message());
                        why = format!("namenode {addr}: {}", s.message());
                    }
                    Ok(Err(s)) => {
                        return Err(Error::RecoveryRefused {
                            block: block.block_id,
                            gen_stamp: block.generation_stamp,
                            length: block.num_bytes,
                            namenode: addr.clone(),
                            reason: s.message().to_string(),
                        })
                    }
                    Err(_) => why = format!("namenode {addr} did not answer in time"),
                }
            }
            if self.namenodes.is_empty() || Instant::now() + pause >= deadline {
                return Err(Error::RecoveryUnconfirmed {
                    block: block.block_id,
                    gen_stamp: block.generation_stamp,
                    length: block.num_bytes,
                    why,
                });
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(MAX_PAUSE);
        }
    }
}

/// Whether another namenode (or a later round) may answer instead: this
/// one does not lead (`not-leader` travels as `Unavailable`) or could not
/// be reached. Anything else is the leader's answer.
fn ask_elsewhere(s: &tonic::Status) -> bool {
    matches!(
        s.code(),
        Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled | Code::Unknown
    )
}
