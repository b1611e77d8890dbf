//! What the HA tests share: the one-at-a-time lock, raw calls to one
//! member, and namespace snapshots to compare members by. The load that
//! logs what was acknowledged, and its check, are in
//! [`rfs_integration::load`].

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use anyhow::{Context, Result};
use rfs_client::Client;
use rfs_integration::load::list_tree;
use rfs_proto::namenode::client_protocol_client::ClientProtocolClient;
use tonic::transport::{Channel, Endpoint};

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Held for a whole test: HA tests run one at a time (see the crate doc).
pub async fn serial() -> tokio::sync::MutexGuard<'static, ()> {
    SERIAL.lock().await
}

/// The raw client protocol of one namenode, with no failover: for calls
/// whose exact bytes matter (call ids) or that must reach one member.
pub async fn raw_client(addr: &str, timeout: Duration) -> Result<ClientProtocolClient<Channel>> {
    let channel = Endpoint::from_shared(format!("http://{addr}"))?
        .connect_timeout(timeout)
        .timeout(timeout)
        .connect()
        .await
        .with_context(|| format!("connecting to {addr}"))?;
    Ok(ClientProtocolClient::new(channel))
}

/// One entry of a namespace snapshot: what every member must agree on
/// (access times are left out: reads may move them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub file_type: i32,
    pub length: u64,
    pub inode_id: u64,
    pub mtime_ms: u64,
    pub replication: u32,
    pub under_construction: bool,
    pub children: u64,
}

/// The whole namespace as one member serves it.
pub async fn namespace(client: &Client) -> Result<BTreeMap<String, Entry>> {
    Ok(list_tree(client, "/")
        .await?
        .into_iter()
        .map(|(p, s)| {
            let e = Entry {
                file_type: s.file_type,
                length: s.length,
                inode_id: s.inode_id,
                mtime_ms: s.mtime_ms,
                replication: s.replication,
                under_construction: s.under_construction,
                children: s.children,
            };
            (p, e)
        })
        .collect())
}

/// The entries where two namespace snapshots differ (at most 20 lines).
pub fn diff_namespaces(a: &BTreeMap<String, Entry>, b: &BTreeMap<String, Entry>) -> String {
    let paths: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    let lines: Vec<String> = paths
        .into_iter()
        .filter(|p| a.get(*p) != b.get(*p))
        .map(|p| format!("{p}: {:?} vs {:?}", a.get(p), b.get(p)))
        .collect();
    let shown = lines.len().min(20);
    format!(
        "{} of {} paths differ:\n{}",
        lines.len(),
        a.len().max(b.len()),
        lines[..shown].join("\n")
    )
}
