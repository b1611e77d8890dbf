//! `dfs admin ha status|transfer`: the namenode HA group as its members
//! see it. Each member is asked itself (`HaAdmin` on its RPC address), all
//! at once: the members given, then the others of their group as a member
//! names it (`GetNamenodeGroup`, through the client's connect); nothing
//! else goes through the failover client.

use std::time::Duration;

use anyhow::{anyhow, bail, Result};
use rfs_client::ha_admin::{self, MemberStatus};
use rfs_client::{ClientConfig, Error, NamenodeMember};

use super::Report;
use crate::cli::{AdminCmd, HaCmd};
use crate::namenode_addr::Namenode;

/// Limit on reaching and asking one member for its status.
const STATUS_TIMEOUT: Duration = Duration::from_secs(5);
/// Limit on a leadership transfer; the leader answers once the new leader
/// has taken over.
const TRANSFER_TIMEOUT: Duration = Duration::from_secs(30);

pub async fn run(namenodes: &[Namenode], cmd: AdminCmd, report: &mut Report) {
    match cmd {
        AdminCmd::Ha(HaCmd::Status) => report.check(status(namenodes).await),
        AdminCmd::Ha(HaCmd::Transfer { member_id }) => {
            report.check(transfer(namenodes, &member_id).await)
        }
        // These need a client to the leader: `health::admin`.
        AdminCmd::Report | AdminCmd::Decommission { .. } => {
            report.fail(anyhow::anyhow!("this admin command needs a client"))
        }
    }
}

/// One member's answer, or why it gave none.
struct Answer {
    nn: Namenode,
    status: std::result::Result<MemberStatus, String>,
}

/// Asks the members `given` and the others of their group for their
/// status; answers in that order, each member once.
async fn ask_group(given: &[Namenode]) -> Vec<Answer> {
    let mut answers = ask_all(given).await;
    let mut config = ClientConfig::with_namenodes(given.iter().map(|n| n.addr.clone()).collect());
    config.rpc_timeout = STATUS_TIMEOUT;
    let group = match crate::connect(config).await {
        Ok(client) => client.namenode_group().cloned(),
        Err(e) => {
            tracing::debug!("no member named the group: {e:#}");
            None
        }
    };
    let Some(group) = group else {
        return answers;
    };
    // A member given by another name answers with its id.
    let asked = |m: &NamenodeMember| {
        answers.iter().any(|a| {
            a.nn.addr == m.rpc_addr
                || a.nn.id.as_deref() == Some(m.id.as_str())
                || a.status.as_ref().is_ok_and(|s| s.id == m.id)
        })
    };
    let others: Vec<Namenode> = group
        .members
        .iter()
        .filter(|m| !asked(m))
        .map(|m| Namenode {
            addr: m.rpc_addr.clone(),
            id: Some(m.id.clone()),
        })
        .collect();
    answers.extend(ask_all(&others).await);
    answers
}

/// Asks every member for its status, concurrently; answers in the
/// order given.
async fn ask_all(namenodes: &[Namenode]) -> Vec<Answer> {
    let asks = namenodes.iter().cloned().map(|nn| async move {
        let status = match ha_admin::ha_status(&nn.addr, STATUS_TIMEOUT).await {
            Ok(resp) => resp
                .member
                .ok_or_else(|| "answered without its member status".to_string()),
            Err(Error::NamenodeUnreachable { reason, .. }) => Err(reason),
            Err(Error::NamenodeTimeout { timeout, .. }) => {
                Err(format!("no answer within {timeout:?}"))
            }
            Err(e) => Err(e.to_string()),
        };
        Answer { nn, status }
    });
    futures::future::join_all(asks).await
}

/// The member that says it leads, in the highest term when several do
/// (a deposed leader that has not heard yet).
fn leader(answers: &[Answer]) -> Option<(&Namenode, &MemberStatus)> {
    answers
        .iter()
        .filter_map(|a| a.status.as_ref().ok().map(|s| (&a.nn, s)))
        .filter(|(_, s)| s.role == "leader")
        .max_by_key(|(_, s)| s.term)
}

async fn status(namenodes: &[Namenode]) -> Result<()> {
    let answers = ask_group(namenodes).await;
    let leader = leader(&answers).map(|(_, s)| s);
    print!("{}", table(&answers, leader));
    if leader.is_none() {
        let reachable = answers.iter().filter(|a| a.status.is_ok()).count();
        bail!(
            "no leader answered ({reachable} of {} members reachable)",
            answers.len()
        );
    }
    Ok(())
}

/// One row per member, columns padded to their widest cell:
///
/// ```text
/// ID   ADDRESS        ROLE                  TERM  COMMIT  APPLIED  LAG
/// nn1  10.0.0.1:8020  leader (low on disk)  3     120     120      0
/// w    10.0.0.3:8020  follower (witness)    3     120     117      3
/// nn2  10.0.0.2:8020  unreachable: tcp connect error: Connection refused
/// ```
///
/// "low on disk": the member's name dir is below its reserve
/// (`name_dir_reserved_mib`); a leader like that hands over to a member
/// with room, or refuses changes while none has.
fn table(answers: &[Answer], leader: Option<&MemberStatus>) -> String {
    const HEADER: [&str; 7] = ["ID", "ADDRESS", "ROLE", "TERM", "COMMIT", "APPLIED", "LAG"];
    let rows: Vec<Vec<String>> = answers
        .iter()
        .map(|a| {
            let config_id = a.nn.id.clone().unwrap_or_else(|| "-".into());
            match &a.status {
                Err(reason) => vec![
                    config_id,
                    a.nn.addr.clone(),
                    format!("unreachable: {reason}"),
                ],
                Ok(s) => {
                    let notes: Vec<&str> = [(s.witness, "witness"), (s.low_on_disk, "low on disk")]
                        .into_iter()
                        .filter_map(|(on, note)| on.then_some(note))
                        .collect();
                    let role = if notes.is_empty() {
                        s.role.clone()
                    } else {
                        format!("{} ({})", s.role, notes.join(", "))
                    };
                    let lag = leader.map_or("-".to_string(), |l| {
                        l.commit_index.saturating_sub(s.applied_index).to_string()
                    });
                    vec![
                        if s.id.is_empty() {
                            config_id
                        } else {
                            s.id.clone()
                        },
                        a.nn.addr.clone(),
                        role,
                        s.term.to_string(),
                        s.commit_index.to_string(),
                        s.applied_index.to_string(),
                        lag,
                    ]
                }
            }
        })
        .collect();
    // An unreachable row's last cell runs on; it does not widen ROLE.
    let mut widths: Vec<usize> = HEADER.iter().map(|h| h.len()).collect();
    for row in rows.iter().filter(|r| r.len() == HEADER.len()) {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    for row in rows.iter().filter(|r| r.len() < HEADER.len()) {
        for (w, cell) in widths.iter_mut().zip(&row[..row.len() - 1]) {
            *w = (*w).max(cell.len());
        }
    }
    let header: Vec<String> = HEADER.iter().map(|h| h.to_string()).collect();
    let mut out = String::new();
    for row in std::iter::once(&header).chain(&rows) {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}

async fn transfer(namenodes: &[Namenode], target: &str) -> Result<()> {
    let answers = ask_group(namenodes).await;
    let Some((nn, leader)) = leader(&answers) else {
        let asked: Vec<&str> = answers.iter().map(|a| a.nn.addr.as_str()).collect();
        bail!(
            "cannot transfer leadership to {target}: no leader answered (asked {})",
            asked.join(", ")
        );
    };
    if leader.id == target {
        println!("{target} is already the leader (term {})", leader.term);
        return Ok(());
    }
    let resp = ha_admin::transfer_leader(&nn.addr, target, TRANSFER_TIMEOUT)
        .await
        .map_err(|e| anyhow!("cannot transfer leadership to {target}: {e}"))?;
    let new_leader = if resp.leader_id.is_empty() {
        target.to_string()
    } else {
        resp.leader_id
    };
    // The new term: from the answer, else as the members now report it.
    let term = match resp.term {
        0 => ask_all(&answers.iter().map(|a| a.nn.clone()).collect::<Vec<_>>())
            .await
            .iter()
            .filter_map(|a| a.status.as_ref().ok())
            .filter(|s| s.id == new_leader || s.leader_id == new_leader)
            .map(|s| s.term)
            .max(),
        t => Some(t),
    };
    match term {
        Some(t) => println!("leadership transferred to {new_leader} (term {t})"),
        None => println!("leadership transferred to {new_leader} (term unknown)"),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(id: &str, role: &str, witness: bool, commit: u64, applied: u64) -> MemberStatus {
        MemberStatus {
            id: id.into(),
            role: role.into(),
            witness,
            term: 4,
            commit_index: commit,
            applied_index: applied,
            ..Default::default()
        }
    }

    #[test]
    fn table_aligns_and_computes_lag() {
        let nns: Vec<Namenode> = ["nn1", "w", "nn2"]
            .iter()
            .enumerate()
            .map(|(i, id)| Namenode {
                addr: format!("10.0.0.{}:8020", i + 1),
                id: Some(id.to_string()),
            })
            .collect();
        let answers = vec![
            Answer {
                nn: nns[0].clone(),
                status: Ok(MemberStatus {
                    low_on_disk: true,
                    ..member("nn1", "leader", false, 120, 119)
                }),
            },
            Answer {
                nn: nns[1].clone(),
                status: Ok(member("w", "follower", true, 118, 117)),
            },
            Answer {
                nn: nns[2].clone(),
                status: Err("tcp connect error".into()),
            },
        ];
        let leader = leader(&answers).map(|(_, s)| s);
        assert_eq!(leader.map(|l| l.id.as_str()), Some("nn1"));
        assert_eq!(
            table(&answers, leader),
            "ID   ADDRESS        ROLE                  TERM  COMMIT  APPLIED  LAG\n\
             nn1  10.0.0.1:8020  leader (low on disk)  4     120     119      1\n\
             w    10.0.0.2:8020  follower (witness)    4     118     117      3\n\
             nn2  10.0.0.3:8020  unreachable: tcp connect error\n"
        );
        let no_leader = table(&answers[1..], None);
        assert!(
            no_leader.lines().nth(1).unwrap().ends_with("  -"),
            "{no_leader}"
        );
    }
}
