//! A cluster of real processes on 127.0.0.1 for tests.
//!
//! With [`MiniClusterBuilder::isolate_datanode`], one datanode runs inside a
//! [`NetNs`] on the namespace's address, and the namenode and the other
//! datanodes bind the host end of its link instead of 127.0.0.1, so that
//! [`NetNs::cut`] cuts that datanode off from everything else.
//!
//! Ports are picked by binding port 0 and releasing it just before the
//! daemon binds; readiness is polled with a deadline (the namenode answers
//! `fs_stats`, then reports the expected number of live datanodes), never
//! waited for with a fixed sleep. Every process is killed when the cluster is
//! dropped; logs stay in the cluster's temp dir and their tails are printed
//! when a start times out.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use rfs_client::{Client, ClientConfig};

use crate::netns::NetNs;
/// Kept here too: tests name it by this path.
pub use crate::process::bin_path;
use crate::process::{
    check_datanodes_alive, exited, free_port_on, kill, pause, replicas_in, Daemons,
    DatanodeSettings, DatanodeSlot,
};
use crate::replica_files::ReplicaFiles;

#[derive(Debug, Clone)]
pub struct MiniClusterBuilder {
    pub datanodes: usize,
    pub block_size: u64,
    pub replication: u32,
    pub bytes_per_checksum: u32,
    pub heartbeat_ms: u64,
    pub datanode_dead_ms: u64,
    pub lease_soft_limit_ms: u64,
    /// Clients' datanode timeout and the datanodes' pipeline ack timeout
    /// (kept equal so the node next to a stalled one times out first).
    pub datanode_timeout_ms: u64,
    /// Period of the namenode's re-replication passes; short so that tests
    /// wait seconds.
    pub replication_interval_ms: u64,
    /// The datanode that runs inside its own network namespace.
    pub isolated_datanode: Option<usize>,
    /// Period of the datanodes' full block reports (their default, an
    /// hour, when `None`).
    pub block_report_ms: Option<u64>,
    /// Further namenode flags, appended last so they win.
    pub extra_namenode_args: Vec<String>,
}

impl Default for MiniClusterBuilder {
    fn default() -> Self {
        MiniClusterBuilder {
            datanodes: 3,
            block_size: 1024 * 1024,
            replication: 3,
            bytes_per_checksum: 512,
            heartbeat_ms: 200,
            datanode_dead_ms: 3000,
            lease_soft_limit_ms: 60_000,
            datanode_timeout_ms: 10_000,
            replication_interval_ms: 300,
            isolated_datanode: None,
            block_report_ms: None,
            extra_namenode_args: Vec::new(),
        }
    }
}

impl MiniClusterBuilder {
    pub fn datanodes(mut self, n: usize) -> Self {
        self.datanodes = n;
        self
    }

    /// Runs datanode `i` inside its own network namespace (needs root and
    /// iproute2; see [`crate::netns_unavailable`]).
    pub fn isolate_datanode(mut self, i: usize) -> Self {
        self.isolated_datanode = Some(i);
        self
    }

    pub async fn start(self) -> Result<MiniCluster> {
        let netns = match self.isolated_datanode {
            Some(i) if i >= self.datanodes => bail!("no datanode {i} to isolate"),
            Some(_) => Some(NetNs::create()?),
            None => None,
        };
        let host_ip = netns
            .as_ref()
            .map_or(IpAddr::V4(Ipv4Addr::LOCALHOST), NetNs::host_ip);
        let daemons = Daemons::new("rfs-minicluster-", None)?;
        let mut cluster = MiniCluster {
            nn_rpc: SocketAddr::new(host_ip, free_port_on(host_ip)?),
            nn_http: SocketAddr::new(host_ip, free_port_on(host_ip)?),
            namenode: None,
            datanodes: Vec::new(),
            daemons,
            netns,
            opts: self,
        };
        cluster.start_namenode().await?;
        // Each datanode's ports are probed just before it starts: the
        // shorter the gap, the smaller the chance another process takes them.
        for i in 0..cluster.opts.datanodes {
            let root = cluster.daemons.root();
            let slot = match &cluster.netns {
                Some(ns) if cluster.opts.isolated_datanode == Some(i) => {
                    DatanodeSlot::in_netns(root, i, ns)?
                }
                _ => DatanodeSlot::new(root, i, host_ip)?,
            };
            cluster.datanodes.push(slot);
            cluster.start_datanode(i)?;
        }
        let n = cluster.opts.datanodes;
        cluster.wait_live_datanodes(n).await?;
        Ok(cluster)
    }

    pub(crate) fn datanode_settings(&self) -> DatanodeSettings {
        DatanodeSettings {
            bytes_per_checksum: self.bytes_per_checksum,
            heartbeat_ms: self.heartbeat_ms,
            ack_timeout_ms: self.datanode_timeout_ms,
            block_report_ms: self.block_report_ms,
        }
    }
}

pub struct MiniCluster {
    nn_rpc: SocketAddr,
    nn_http: SocketAddr,
    namenode: Option<Child>,
    datanodes: Vec<DatanodeSlot>,
    daemons: Daemons,
    /// Where the isolated datanode runs; deleted after [`Drop`] killed the
    /// processes.
    netns: Option<NetNs>,
    pub opts: MiniClusterBuilder,
}

const START_DEADLINE: Duration = Duration::from_secs(30);

impl MiniCluster {
    pub fn builder() -> MiniClusterBuilder {
        MiniClusterBuilder::default()
    }

    /// A 3-datanode cluster with 1 MiB blocks and replication 3.
    pub async fn start() -> Result<MiniCluster> {
        MiniClusterBuilder::default().start().await
    }

    pub fn namenode_addr(&self) -> String {
        self.nn_rpc.to_string()
    }

    pub fn namenode_http_addr(&self) -> SocketAddr {
        self.nn_http
    }

    /// The running namenode's process id (to read its memory, say).
    pub fn namenode_pid(&self) -> Option<u32> {
        self.namenode.as_ref().map(Child::id)
    }

    pub fn datanode_pid(&self, i: usize) -> Option<u32> {
        self.datanodes[i].child.as_ref().map(Child::id)
    }

    pub fn root(&self) -> &Path {
        self.daemons.root()
    }

    /// The isolated datanode's namespace, if the builder asked for one.
    pub fn netns(&self) -> Option<&NetNs> {
        self.netns.as_ref()
    }

    pub fn client_config(&self) -> ClientConfig {
        let mut c = ClientConfig::with_namenode(self.namenode_addr());
        c.rpc_timeout = Duration::from_secs(10);
        c.datanode_timeout = Duration::from_millis(self.opts.datanode_timeout_ms);
        c
    }

    pub async fn client(&self) -> Result<Client> {
        Ok(Client::connect(self.client_config()).await?)
    }

    /// Starts (or restarts) the namenode on its fixed ports and waits until it
    /// answers RPCs.
    pub async fn start_namenode(&mut self) -> Result<()> {
        let o = &self.opts;
        let mut args = vec![
            "--rpc-addr".into(),
            self.nn_rpc.to_string(),
            "--http-addr".into(),
            self.nn_http.to_string(),
            "--name-dir".into(),
            self.root().join("name").display().to_string(),
            "--block-size".into(),
            o.block_size.to_string(),
            "--replication".into(),
            o.replication.to_string(),
            "--datanode-dead-ms".into(),
            o.datanode_dead_ms.to_string(),
            "--lease-soft-limit-ms".into(),
            o.lease_soft_limit_ms.to_string(),
            "--replication-interval-ms".into(),
            o.replication_interval_ms.to_string(),
        ];
        args.extend(o.extra_namenode_args.iter().cloned());
        let child = self.daemons.spawn("namenode", "namenode", &args, &[])?;
        self.namenode = Some(child);
        let deadline = Instant::now() + START_DEADLINE;
        loop {
            if let Ok(c) = Client::connect(self.client_config()).await {
                if c.fs_stats().await.is_ok() {
                    return Ok(());
                }
            }
            self.check_alive_namenode()?;
            if Instant::now() > deadline {
                bail!(
                    "namenode did not answer within {START_DEADLINE:?}\n{}",
                    self.log_tails()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn check_alive_namenode(&mut self) -> Result<()> {
        if let Some(status) = exited(&mut self.namenode)? {
            bail!("namenode exited with {status}\n{}", self.log_tails());
        }
        Ok(())
    }

    /// kill -9 the namenode.
    pub fn kill_namenode(&mut self) {
        kill(&mut self.namenode);
    }

    pub async fn restart_namenode(&mut self) -> Result<()> {
        self.kill_namenode();
        self.start_namenode().await
    }

    pub fn datanode_count(&self) -> usize {
        self.datanodes.len()
    }

    pub fn datanode_dirs(&self, i: usize) -> &[PathBuf] {
        &self.datanodes[i].data_dirs
    }

    pub fn datanode_data_addr(&self, i: usize) -> SocketAddr {
        self.datanodes[i].data_addr
    }

    /// Where datanode `i` serves `/metrics`.
    pub fn datanode_http_addr(&self, i: usize) -> SocketAddr {
        self.datanodes[i].http_addr
    }

    /// Replaces datanode `i`'s data dirs (takes effect at its next start).
    pub fn set_datanode_dirs(&mut self, i: usize, dirs: Vec<PathBuf>) {
        self.datanodes[i].data_dirs = dirs;
    }

    pub fn start_datanode(&mut self, i: usize) -> Result<()> {
        let settings = self.opts.datanode_settings();
        let namenodes = [self.nn_rpc.to_string()];
        self.datanodes[i].start(&mut self.daemons, i, &namenodes, &settings)
    }

    /// Freezes (SIGSTOP) or thaws (SIGCONT) datanode `i`: a stalled node.
    pub fn pause_datanode(&mut self, i: usize, paused: bool) -> Result<()> {
        pause(&self.datanodes[i].child, paused, &format!("datanode {i}"))
    }

    /// kill -9 datanode `i`.
    pub fn kill_datanode(&mut self, i: usize) {
        kill(&mut self.datanodes[i].child);
    }

    pub async fn restart_datanode(&mut self, i: usize) -> Result<()> {
        self.kill_datanode(i);
        self.start_datanode(i)?;
        self.datanodes[i].wait_serving(START_DEADLINE).await?;
        // At least: a node restarted on new data dirs registers under a new
        // id while its old one still counts until declared dead.
        let n = self.datanodes.iter().filter(|d| d.child.is_some()).count();
        self.wait_live(&format!("at least {n}"), |live| live >= n)
            .await
    }

    pub fn datanode_running(&mut self, i: usize) -> bool {
        match self.datanodes[i].child.as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Waits until the namenode counts exactly `n` live datanodes.
    pub async fn wait_live_datanodes(&mut self, n: usize) -> Result<()> {
        self.wait_live(&n.to_string(), |live| live == n).await
    }

    /// Waits until the namenode's live datanode count is `ok` (`expected`
    /// says which, for the error).
    async fn wait_live(&mut self, expected: &str, ok: impl Fn(usize) -> bool) -> Result<()> {
        let deadline = Instant::now() + START_DEADLINE;
        let mut last = None;
        loop {
            if let Ok(c) = Client::connect(self.client_config()).await {
                if let Ok(s) = c.fs_stats().await {
                    if ok(s.live_datanodes as usize) {
                        return Ok(());
                    }
                    last = Some(s.live_datanodes);
                }
            }
            self.check_alive_namenode()?;
            check_datanodes_alive(&mut self.datanodes, &self.daemons)?;
            if Instant::now() > deadline {
                bail!(
                    "expected {expected} live datanodes, namenode reports {last:?}\n{}",
                    self.log_tails()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Finalized replicas of `block_id` on every datanode, as (datanode index, files).
    pub fn replicas_of(&self, block_id: u64) -> Result<Vec<(usize, ReplicaFiles)>> {
        replicas_in(&self.datanodes, block_id)
    }

    /// Files of unfinished replicas (in `rbw/`) on every datanode, of block
    /// `block_id` only when given, as (datanode index, path).
    pub fn rbw_files(&self, block_id: Option<u64>) -> Result<Vec<(usize, PathBuf)>> {
        let mut out = Vec::new();
        for (i, d) in self.datanodes.iter().enumerate() {
            for dir in &d.data_dirs {
                for p in crate::replica_files::rbw_files(dir, block_id)? {
                    out.push((i, p));
                }
            }
        }
        Ok(out)
    }

    /// Waits until every block in `ids` has exactly `n` finalized replicas
    /// on disk on the datanodes `ok` accepts; returns where they are, by
    /// datanode index, one list per block.
    pub async fn wait_replicas(
        &self,
        ids: &[u64],
        n: usize,
        ok: impl Fn(usize) -> bool,
        limit: Duration,
    ) -> Result<Vec<Vec<usize>>> {
        let deadline = Instant::now() + limit;
        loop {
            let mut placed = Vec::new();
            for id in ids {
                let nodes: Vec<usize> = self
                    .replicas_of(*id)?
                    .into_iter()
                    .map(|(i, _)| i)
                    .filter(|i| ok(*i))
                    .collect();
                placed.push(nodes);
            }
            if placed.iter().all(|nodes| nodes.len() == n) {
                return Ok(placed);
            }
            if Instant::now() > deadline {
                bail!(
                    "blocks {ids:?} should have {n} replicas each, have {placed:?} after {limit:?}\n{}",
                    self.log_tails()
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Last lines of every log, for failure messages.
    pub fn log_tails(&self) -> String {
        self.daemons.log_tails()
    }
}

impl Drop for MiniCluster {
    fn drop(&mut self) {
        self.kill_namenode();
        for i in 0..self.datanodes.len() {
            self.kill_datanode(i);
        }
        self.daemons.keep_if_panicking();
    }
}
