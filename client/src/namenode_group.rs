//! The namenode group as one member describes it (`GetNamenodeGroup`,
//! which every member answers, leader or not): asking for it, what the
//! answer adds to the members a failover proxy knows, and whether it
//! still holds members remembered from an earlier run. The proxy itself
//! is [`crate::namenode`].

use std::net::SocketAddr;
use std::time::Duration;

use rfs_proto::namenode::client_protocol_client::ClientProtocolClient;
use rfs_proto::namenode::GetNamenodeGroupRequest;
use tonic::transport::Channel;

use crate::error::{one_line, status_reason};

pub use rfs_proto::namenode::{GetNamenodeGroupResponse as NamenodeGroup, NamenodeMember};

/// The group as the member behind `channel` (at `addr`) knows it; `None`
/// when it cannot say within `timeout` (a namenode older than the call
/// answers Unimplemented), which leaves the proxy with what it was given.
pub(crate) async fn ask(addr: &str, channel: Channel, timeout: Duration) -> Option<NamenodeGroup> {
    let mut client = ClientProtocolClient::new(channel);
    let answer = tokio::time::timeout(
        timeout,
        client.get_namenode_group(GetNamenodeGroupRequest {}),
    )
    .await;
    match answer {
        Ok(Ok(group)) => Some(group.into_inner()),
        Ok(Err(status)) => {
            let reason = one_line(&status_reason(&status));
            tracing::debug!("namenode {addr} did not name its group: {reason}");
            None
        }
        Err(_) => {
            tracing::debug!("namenode {addr} did not name its group within {timeout:?}");
            None
        }
    }
}

/// What one member's answer teaches a proxy that reached it at
/// `answered_at` and knows the members at `known`.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Learnt {
    /// Addresses of the members not known yet, in the group's order.
    pub new: Vec<String>,
    /// Where the leader the member knows is, if it knows one.
    pub leader: Option<String>,
}

pub(crate) fn learn(group: &NamenodeGroup, answered_at: &str, known: &[String]) -> Learnt {
    // The member that answered keeps the address the client reached it
    // by: its configured one may be a name this host cannot use.
    let addr_of = |m: &NamenodeMember| {
        if !group.member_id.is_empty() && m.id == group.member_id {
            Some(answered_at.to_string())
        } else if dialable(&m.rpc_addr) {
            Some(m.rpc_addr.clone())
        } else {
            tracing::debug!("namenode {answered_at} names member {} at {:?}, which cannot be dialed; leaving it out", m.id, m.rpc_addr);
            None
        }
    };
    let mut new: Vec<String> = Vec::new();
    for addr in group.members.iter().filter_map(addr_of) {
        if !known.contains(&addr) && !new.contains(&addr) {
            new.push(addr);
        }
    }
    let leader = match group.leader_id.as_str() {
        "" => None,
        id => group.members.iter().find(|m| m.id == id).and_then(addr_of),
    };
    Learnt { new, leader }
}

/// Whether `group` still has a member at every one of the `remembered`
/// addresses: if not, what was remembered describes another group (the
/// ports were reused, the group changed) and must not be used.
pub(crate) fn holds(group: &NamenodeGroup, remembered: &[String]) -> bool {
    remembered
        .iter()
        .all(|addr| group.members.iter().any(|m| m.rpc_addr == *addr))
}

/// A member address another host can dial: not `0.0.0.0` or `[::]` (a
/// namenode without `[ha]` may listen on every interface), not port 0.
fn dialable(addr: &str) -> bool {
    match addr.parse::<SocketAddr>() {
        Ok(a) => !a.ip().is_unspecified() && a.port() != 0,
        // A host name: the endpoint decides.
        Err(_) => !addr.is_empty(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(id: &str, rpc_addr: &str, witness: bool) -> NamenodeMember {
        NamenodeMember {
            id: id.into(),
            rpc_addr: rpc_addr.into(),
            witness,
        }
    }

    /// nn1, nn2 and a witness on 127.0.0.1:8020-8022, as `answered_by`
    /// describes them with `leader` leading.
    fn quickstart(answered_by: &str, leader: &str) -> NamenodeGroup {
        NamenodeGroup {
            members: vec![
                member("nn1", "127.0.0.1:8020", false),
                member("nn2", "127.0.0.1:8021", false),
                member("witness", "127.0.0.1:8022", true),
            ],
            leader_id: leader.into(),
            member_id: answered_by.into(),
        }
    }

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn one_member_teaches_the_others_and_the_leader() {
        let learnt = learn(
            &quickstart("nn1", "nn2"),
            "127.0.0.1:8020",
            &strings(&["127.0.0.1:8020"]),
        );
        assert_eq!(
            learnt,
            Learnt {
                new: strings(&["127.0.0.1:8021", "127.0.0.1:8022"]),
                leader: Some("127.0.0.1:8021".into()),
            }
        );
        // Reached under another name: that name stands for the member,
        // and leads when the member does.
        let learnt = learn(
            &quickstart("nn1", "nn1"),
            "localhost:8020",
            &strings(&["localhost:8020"]),
        );
        assert_eq!(learnt.new, strings(&["127.0.0.1:8021", "127.0.0.1:8022"]));
        assert_eq!(learnt.leader.as_deref(), Some("localhost:8020"));
        // Members already known are not added again; no leader known.
        let learnt = learn(
            &quickstart("witness", ""),
            "127.0.0.1:8022",
            &strings(&["127.0.0.1:8022", "127.0.0.1:8021"]),
        );
        assert_eq!(learnt.new, strings(&["127.0.0.1:8020"]));
        assert_eq!(learnt.leader, None);
    }

    #[test]
    fn addresses_nobody_can_dial_are_left_out() {
        let group = NamenodeGroup {
            members: vec![
                member("nn1", "0.0.0.0:8020", false),
                member("nn2", "[::]:8021", false),
                member("nn3", "", false),
                member("nn4", "nn4.example:8020", false),
            ],
            leader_id: "nn2".into(),
            member_id: "nn1".into(),
        };
        let learnt = learn(&group, "10.0.0.1:8020", &strings(&["10.0.0.1:8020"]));
        assert_eq!(learnt.new, strings(&["nn4.example:8020"]));
        assert_eq!(learnt.leader, None);
    }

    #[test]
    fn a_remembered_group_counts_only_while_it_holds_every_remembered_member() {
        let group = quickstart("nn2", "nn2");
        assert!(holds(
            &group,
            &strings(&["127.0.0.1:8021", "127.0.0.1:8022"])
        ));
        assert!(holds(&group, &[]));
        assert!(!holds(
            &group,
            &strings(&["127.0.0.1:8021", "127.0.0.1:9020"])
        ));
    }
}
