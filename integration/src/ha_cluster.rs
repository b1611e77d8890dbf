//! An HA namenode group (nn1, nn2 and a witness, one raft group) plus
//! datanodes, as real processes.
//!
//! Members are indexed in config order: [`NN1`], [`NN2`], [`WITNESS`]. All
//! share one TOML file (`<root>/rfs.toml`: `[namenode]` and `[ha]`); each
//! keeps its name dir, HTTP port and RPC address across restarts. Datanodes
//! report to nn1 and nn2. Every wait polls the members' `HaAdmin.Status`
//! with a deadline and fails with each member's status and the log tails.
//!
//! With [`HaClusterBuilder::isolated_member`] set, that member runs inside a
//! [`NetNs`] from the start and binds the namespace's address; every other
//! process binds the host end of the link, so [`NetNs::cut`] partitions
//! exactly that member. With [`HaClusterBuilder::tmpfs_name_dir`], a
//! member's name dir is a small [`Tmpfs`] the test can fill.

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use rfs_client::{Client, ClientConfig};
use rfs_proto::ha::ha_admin_client::HaAdminClient;
use rfs_proto::ha::{HaStatusRequest, HaStatusResponse, MemberStatus, TransferLeaderRequest};
use tonic::transport::{Channel, Endpoint};

use crate::netns::NetNs;
use crate::process::{
    check_datanodes_alive, exited, fetch_metrics, free_port_on, kill, pause, replicas_in, signal,
    Daemons, DatanodeSettings, DatanodeSlot,
};
use crate::replica_files::ReplicaFiles;
use crate::tmpfs::Tmpfs;

pub const NN1: usize = 0;
pub const NN2: usize = 1;
pub const WITNESS: usize = 2;
const MEMBER_IDS: [&str; 3] = ["nn1", "nn2", "witness"];

/// How long a start, an election or a catch-up may take before a wait fails.
const DEADLINE: Duration = Duration::from_secs(30);
const POLL: Duration = Duration::from_millis(50);
/// Limit on one admin call (a cut-off member must not stall a poll).
const ADMIN_TIMEOUT: Duration = Duration::from_secs(2);

/// Clients' datanode timeout and the datanodes' ack timeout.
const DATANODE_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone)]
pub struct HaClusterBuilder {
    pub datanodes: usize,
    pub block_size: u64,
    pub replication: u32,
    pub bytes_per_checksum: u32,
    /// Datanode heartbeat interval.
    pub heartbeat_ms: u64,
    pub datanode_dead_ms: u64,
    pub lease_soft_limit_ms: u64,
    /// `[ha]` settings; `None` leaves the key out (the namenode's default).
    pub tick_ms: Option<u64>,
    pub election_ticks: Option<u64>,
    pub heartbeat_ticks: Option<u64>,
    pub snapshot_entries: Option<u64>,
    /// Run this member inside its own network namespace.
    pub isolated_member: Option<usize>,
    /// Parent of the cluster's temp dir (default: the system temp dir).
    pub root_parent: Option<PathBuf>,
    /// Further namenode flags, appended last so they win.
    pub extra_namenode_args: Vec<String>,
    /// `[namenode] name_dir_reserved_mib`; `None` leaves the key out.
    pub name_dir_reserved_mib: Option<u64>,
    /// Members whose name dir is a tmpfs of this many bytes.
    pub tmpfs_name_dirs: Vec<(usize, u64)>,
}

impl Default for HaClusterBuilder {
    /// 3 datanodes, 1 MiB blocks, replication 3, 50 ms raft ticks (elections
    /// after 0.5–1 s).
    fn default() -> Self {
        HaClusterBuilder {
            datanodes: 3,
            block_size: 1024 * 1024,
            replication: 3,
            bytes_per_checksum: 512,
            heartbeat_ms: 200,
            datanode_dead_ms: 3000,
            lease_soft_limit_ms: 60_000,
            tick_ms: Some(50),
            election_ticks: Some(10),
            heartbeat_ticks: Some(2),
            snapshot_entries: None,
            isolated_member: None,
            root_parent: None,
            extra_namenode_args: Vec::new(),
            name_dir_reserved_mib: None,
            tmpfs_name_dirs: Vec::new(),
        }
    }
}

impl HaClusterBuilder {
    pub fn datanodes(mut self, n: usize) -> Self {
        self.datanodes = n;
        self
    }

    pub fn snapshot_entries(mut self, n: u64) -> Self {
        self.snapshot_entries = Some(n);
        self
    }

    pub fn isolate(mut self, member: usize) -> Self {
        self.isolated_member = Some(member);
        self
    }

    /// Free space every member's name dir must keep (`name_dir_reserved_mib`).
    pub fn name_dir_reserved_mib(mut self, mib: u64) -> Self {
        self.name_dir_reserved_mib = Some(mib);
        self
    }

    /// Puts `member`'s name dir on a tmpfs of `size` bytes (needs root).
    pub fn tmpfs_name_dir(mut self, member: usize, size: u64) -> Self {
        self.tmpfs_name_dirs.push((member, size));
        self
    }

    /// Starts every member, waits for a leader, starts the datanodes and
    /// waits until the leader counts them all live.
    pub async fn start(self) -> Result<HaCluster> {
        let netns = match self.isolated_member {
            Some(i) if i >= MEMBER_IDS.len() => bail!("no member {i} to isolate"),
            Some(_) => Some(NetNs::create()?),
            None => None,
        };
        let daemons = Daemons::new("rfs-hacluster-", self.root_parent.as_deref())?;
        let host_ip = netns
            .as_ref()
            .map_or(IpAddr::V4(Ipv4Addr::LOCALHOST), NetNs::host_ip);
        let mut members = Vec::new();
        for (i, id) in MEMBER_IDS.iter().enumerate() {
            let (ip, wrapper) = match &netns {
                Some(ns) if self.isolated_member == Some(i) => (ns.ns_ip(), ns.wrapper()),
                _ => (host_ip, Vec::new()),
            };
            // Ports for the namespace's address are probed on the host: the
            // namespace is new, so any port is free there.
            members.push(Member {
                id,
                rpc_addr: SocketAddr::new(ip, free_port_on(host_ip)?),
                http_addr: SocketAddr::new(ip, free_port_on(host_ip)?),
                name_dir: daemons.root().join(format!("name-{id}")),
                witness: i == WITNESS,
                wrapper,
                child: None,
            });
        }
        let mut tmpfs = Vec::new();
        for &(i, size) in &self.tmpfs_name_dirs {
            let Some(m) = members.get(i) else {
                bail!("no member {i} for a tmpfs name dir");
            };
            tmpfs.push((i, Tmpfs::mount(&m.name_dir, size)?));
        }
        let mut cluster = HaCluster {
            config_path: daemons.root().join("rfs.toml"),
            members,
            datanodes: Vec::new(),
            tmpfs,
            daemons,
            netns,
            opts: self,
        };
        cluster.write_config()?;
        cluster.start_members(&[NN1, NN2, WITNESS]).await?;
        cluster.leader().await?;
        // Each datanode's ports are probed just before it starts.
        for i in 0..cluster.opts.datanodes {
            let slot = DatanodeSlot::new(cluster.daemons.root(), i, host_ip)?;
            cluster.datanodes.push(slot);
            cluster.start_datanode(i)?;
        }
        let n = cluster.datanodes.len();
        cluster.wait_live_datanodes(n).await?;
        Ok(cluster)
    }
}

struct Member {
    id: &'static str,
    rpc_addr: SocketAddr,
    http_addr: SocketAddr,
    name_dir: PathBuf,
    witness: bool,
    /// `ip netns exec NS` for the isolated member, else empty.
    wrapper: Vec<String>,
    child: Option<Child>,
}

pub struct HaCluster {
    config_path: PathBuf,
    members: Vec<Member>,
    datanodes: Vec<DatanodeSlot>,
    /// Unmounted before the root dir holding them is removed (field order).
    tmpfs: Vec<(usize, Tmpfs)>,
    daemons: Daemons,
    /// Dropped after the processes inside it are killed (field order).
    netns: Option<NetNs>,
    pub opts: HaClusterBuilder,
}

/// Connects to a member's admin service, time-limited.
async fn admin_at(addr: SocketAddr) -> Result<HaAdminClient<Channel>> {
    let channel = Endpoint::from_shared(format!("http://{addr}"))?
        .connect_timeout(ADMIN_TIMEOUT)
        .timeout(ADMIN_TIMEOUT)
        .connect()
        .await
        .with_context(|| format!("connecting to {addr}"))?;
    Ok(HaAdminClient::new(channel))
}

impl HaCluster {
    pub fn builder() -> HaClusterBuilder {
        HaClusterBuilder::default()
    }

    /// The default group: nn1, nn2, a witness and 3 datanodes.
    pub async fn start() -> Result<HaCluster> {
        HaClusterBuilder::default().start().await
    }

    fn write_config(&self) -> Result<()> {
        let o = &self.opts;
        let mut t = String::new();
        writeln!(t, "[namenode]")?;
        writeln!(t, "block_size = {}", o.block_size)?;
        writeln!(t, "replication = {}", o.replication)?;
        writeln!(t, "datanode_dead_ms = {}", o.datanode_dead_ms)?;
        writeln!(t, "lease_soft_limit_ms = {}", o.lease_soft_limit_ms)?;
        if let Some(mib) = o.name_dir_reserved_mib {
            writeln!(t, "name_dir_reserved_mib = {mib}")?;
        }
        writeln!(t, "\n[ha]")?;
        for (key, value) in [
            ("tick_ms", o.tick_ms),
            ("election_ticks", o.election_ticks),
            ("heartbeat_ticks", o.heartbeat_ticks),
            ("snapshot_entries", o.snapshot_entries),
        ] {
            if let Some(v) = value {
                writeln!(t, "{key} = {v}")?;
            }
        }
        for m in &self.members {
            writeln!(t, "\n[[ha.member]]")?;
            writeln!(t, "id = \"{}\"", m.id)?;
            writeln!(t, "rpc_addr = \"{}\"", m.rpc_addr)?;
            if m.witness {
                writeln!(t, "witness = true")?;
            }
        }
        std::fs::write(&self.config_path, t)?;
        Ok(())
    }

    pub fn root(&self) -> &Path {
        self.daemons.root()
    }

    /// The shared config file.
    pub fn config_path(&self) -> &Path {
        &self.config_path
    }

    pub fn member_count(&self) -> usize {
        self.members.len()
    }

    pub fn member_id(&self, i: usize) -> &'static str {
        self.members[i].id
    }

    /// Member `i`'s RPC address (client, datanode, raft and admin services).
    pub fn member_addr(&self, i: usize) -> String {
        self.members[i].rpc_addr.to_string()
    }

    pub fn member_http_addr(&self, i: usize) -> SocketAddr {
        self.members[i].http_addr
    }

    pub fn member_name_dir(&self, i: usize) -> &Path {
        &self.members[i].name_dir
    }

    /// The tmpfs under member `i`'s name dir, if the builder asked for one.
    pub fn name_dir_tmpfs(&self, i: usize) -> Option<&Tmpfs> {
        self.tmpfs.iter().find(|(j, _)| *j == i).map(|(_, t)| t)
    }

    /// The log of member `i`'s latest start (stdout and stderr).
    pub fn member_log(&self, i: usize) -> Result<String> {
        self.daemons.latest_log(self.members[i].id)
    }

    /// The member index with this id.
    pub fn member_index(&self, id: &str) -> Option<usize> {
        self.members.iter().position(|m| m.id == id)
    }

    /// Whether member `i`'s process is running (it may still be cut off).
    pub fn member_running(&mut self, i: usize) -> bool {
        match self.members[i].child.as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// The network namespace of the isolated member, if the builder asked for one.
    pub fn netns(&self) -> Option<&NetNs> {
        self.netns.as_ref()
    }

    /// A client configuration naming every member (the client finds the leader).
    pub fn client_config(&self) -> ClientConfig {
        let all: Vec<String> = (0..self.members.len())
            .map(|i| self.member_addr(i))
            .collect();
        Self::timeouts(ClientConfig::with_namenode(all.join(",")))
    }

    /// A client configuration naming member `i` only.
    pub fn client_config_for(&self, i: usize) -> ClientConfig {
        Self::timeouts(ClientConfig::with_namenode(self.member_addr(i)))
    }

    fn timeouts(mut c: ClientConfig) -> ClientConfig {
        c.rpc_timeout = Duration::from_secs(10);
        c.datanode_timeout = DATANODE_TIMEOUT;
        c
    }

    pub async fn client(&self) -> Result<Client> {
        Ok(Client::connect(self.client_config()).await?)
    }

    /// Member `i`'s admin service.
    pub async fn admin(&self, i: usize) -> Result<HaAdminClient<Channel>> {
        admin_at(self.members[i].rpc_addr).await
    }

    /// Member `i`'s full status (on the leader, with replication progress).
    pub async fn ha_status(&self, i: usize) -> Result<HaStatusResponse> {
        let mut admin = self.admin(i).await?;
        let resp = admin
            .status(HaStatusRequest {})
            .await
            .with_context(|| format!("{} status", self.members[i].id))?;
        Ok(resp.into_inner())
    }

    /// Member `i`'s own view: role, term, leader, indexes.
    pub async fn member_status(&self, i: usize) -> Result<MemberStatus> {
        self.ha_status(i)
            .await?
            .member
            .with_context(|| format!("{} status without a member", self.members[i].id))
    }

    /// Starts member `i` (not running) and waits until it answers Status.
    pub async fn start_member(&mut self, i: usize) -> Result<()> {
        self.start_members(&[i]).await
    }

    /// Starts the given members together (none waits for another), then
    /// waits until each answers Status.
    pub async fn start_members(&mut self, which: &[usize]) -> Result<()> {
        for &i in which {
            if self.member_running(i) {
                bail!("{} is already running", self.members[i].id);
            }
            let m = &self.members[i];
            let mut args = vec![
                "--config".to_string(),
                self.config_path.display().to_string(),
                "--id".into(),
                m.id.to_string(),
                "--http-addr".into(),
                m.http_addr.to_string(),
                "--name-dir".into(),
                m.name_dir.display().to_string(),
            ];
            if m.witness {
                args.push("--witness".into());
            }
            args.extend(self.opts.extra_namenode_args.iter().cloned());
            let wrapper = m.wrapper.clone();
            let child = self.daemons.spawn("namenode", m.id, &args, &wrapper)?;
            self.members[i].child = Some(child);
        }
        let deadline = Instant::now() + DEADLINE;
        for &i in which {
            loop {
                match self.member_status(i).await {
                    Ok(_) => break,
                    Err(e) => {
                        self.check_alive()?;
                        if Instant::now() > deadline {
                            bail!(
                                "{} did not answer Status within {DEADLINE:?}: {e:#}\n{}",
                                self.members[i].id,
                                self.log_tails()
                            );
                        }
                    }
                }
                tokio::time::sleep(POLL).await;
            }
        }
        Ok(())
    }

    /// Waits until member `i` exits by itself and returns how; fails if
    /// it still runs after `within`.
    pub async fn wait_member_exit(&mut self, i: usize, within: Duration) -> Result<ExitStatus> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = exited(&mut self.members[i].child)? {
                return Ok(status);
            }
            if self.members[i].child.is_none() {
                bail!("{} is not running", self.members[i].id);
            }
            if Instant::now() > deadline {
                bail!(
                    "{} still runs after {within:?}\n{}{}",
                    self.members[i].id,
                    self.describe().await,
                    self.log_tails()
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// kill -9 member `i`.
    pub fn kill_member(&mut self, i: usize) {
        kill(&mut self.members[i].child);
    }

    /// Freezes (SIGSTOP) or thaws (SIGCONT) member `i`: a member that
    /// misses traffic without dying or losing its connections.
    pub fn pause_member(&mut self, i: usize, paused: bool) -> Result<()> {
        pause(&self.members[i].child, paused, &format!("member {i}"))
    }

    /// Asks member `i` to stop (SIGTERM), as `quickstart.sh stop` does;
    /// see [`Self::wait_member_exit`].
    pub fn terminate_member(&mut self, i: usize) -> Result<()> {
        signal(
            &self.members[i].child,
            libc::SIGTERM,
            &format!("member {i}"),
        )
    }

    /// kill -9 every member at once.
    pub fn kill_all_members(&mut self) {
        for m in &mut self.members {
            kill(&mut m.child);
        }
    }

    /// kill -9 member `i` (if running), start it again, wait until it answers.
    pub async fn restart_member(&mut self, i: usize) -> Result<()> {
        self.kill_member(i);
        self.start_member(i).await
    }

    /// kill -9 member `i` (if running) and delete its name dir: its raft
    /// log, snapshots and state. Start it again with [`Self::start_member`].
    pub fn wipe_member(&mut self, i: usize) -> Result<()> {
        self.kill_member(i);
        let dir = &self.members[i].name_dir;
        if dir.exists() {
            std::fs::remove_dir_all(dir).with_context(|| format!("removing {}", dir.display()))?;
        }
        Ok(())
    }

    /// Fails naming any process that exited without being killed.
    fn check_alive(&mut self) -> Result<()> {
        for i in 0..self.members.len() {
            if let Some(status) = exited(&mut self.members[i].child)? {
                bail!(
                    "{} exited with {status}\n{}",
                    self.members[i].id,
                    self.log_tails()
                );
            }
        }
        check_datanodes_alive(&mut self.datanodes, &self.daemons)
    }

    /// The status of every running member that answers, by index.
    async fn statuses(&self) -> Vec<(usize, MemberStatus)> {
        let mut out = Vec::new();
        for i in 0..self.members.len() {
            if self.members[i].child.is_none() {
                continue;
            }
            if let Ok(s) = self.member_status(i).await {
                out.push((i, s));
            }
        }
        out
    }

    /// One line per member, for failure messages.
    pub async fn describe(&self) -> String {
        let statuses = self.statuses().await;
        let mut out = String::new();
        for (i, m) in self.members.iter().enumerate() {
            let line = match statuses.iter().find(|(j, _)| *j == i) {
                Some((_, s)) => format!(
                    "role={} term={} leader={:?} commit={} applied={} last={} snapshot={}",
                    s.role,
                    s.term,
                    s.leader_id,
                    s.commit_index,
                    s.applied_index,
                    s.last_index,
                    s.snapshot_index
                ),
                None if m.child.is_none() => "not running".into(),
                None => "no answer".into(),
            };
            let _ = writeln!(out, "{} ({}): {line}", m.id, m.rpc_addr);
        }
        out
    }

    /// The member that is leader: it says so, and a majority of the group
    /// (itself included) reports the same term and leader. Members that are
    /// killed or do not answer (cut off) count against the majority. Polls
    /// until one is, or fails after the deadline.
    pub async fn leader(&mut self) -> Result<usize> {
        self.leader_within(DEADLINE).await
    }

    pub async fn leader_within(&mut self, limit: Duration) -> Result<usize> {
        let deadline = Instant::now() + limit;
        let majority = self.members.len() / 2 + 1;
        loop {
            let statuses = self.statuses().await;
            let best = statuses
                .iter()
                .filter(|(_, s)| s.role == "leader")
                .max_by_key(|(_, s)| s.term);
            if let Some((i, s)) = best {
                let agree = statuses
                    .iter()
                    .filter(|(_, o)| o.term == s.term && o.leader_id == s.id)
                    .count();
                if agree >= majority {
                    return Ok(*i);
                }
            }
            self.check_alive()?;
            if Instant::now() > deadline {
                bail!(
                    "no leader within {limit:?}\n{}{}",
                    self.describe().await,
                    self.log_tails()
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Waits until a leader other than `old` is elected.
    pub async fn new_leader_other_than(&mut self, old: usize) -> Result<usize> {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let l = self.leader_within(left).await?;
            if l != old {
                return Ok(l);
            }
            if Instant::now() > deadline {
                bail!(
                    "{} is still leader\n{}",
                    self.members[old].id,
                    self.describe().await
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Waits until member `i` has applied everything the leader had
    /// committed when this was called.
    pub async fn wait_caught_up(&mut self, i: usize) -> Result<()> {
        self.wait_caught_up_within(i, DEADLINE).await
    }

    /// [`HaCluster::wait_caught_up`] with its own limit (a member rebuilt
    /// from a snapshot of millions of files takes longer than tests wait).
    pub async fn wait_caught_up_within(&mut self, i: usize, limit: Duration) -> Result<()> {
        let leader = self.leader().await?;
        let commit = self.member_status(leader).await?.commit_index;
        let deadline = Instant::now() + limit;
        loop {
            if let Ok(s) = self.member_status(i).await {
                if s.applied_index >= commit {
                    return Ok(());
                }
            }
            self.check_alive()?;
            if Instant::now() > deadline {
                bail!(
                    "{} did not apply up to the leader's commit index {commit} within {limit:?}\n{}{}",
                    self.members[i].id,
                    self.describe().await,
                    self.log_tails()
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Hands leadership to member `to` through the current leader's
    /// TransferLeader, retried until `to` is leader or the deadline passes.
    pub async fn transfer_leader(&mut self, to: usize) -> Result<()> {
        let deadline = Instant::now() + DEADLINE;
        let target_id = self.members[to].id.to_string();
        let mut last_err = String::new();
        loop {
            let l = self.leader().await?;
            if l == to {
                return Ok(());
            }
            let mut admin = self.admin(l).await?;
            let req = TransferLeaderRequest {
                target_id: target_id.clone(),
            };
            // The leader's own wait is bounded by the admin timeout; the
            // loop below sees the outcome either way.
            if let Err(e) = admin.transfer_leader(req).await {
                last_err = format!("{}: {}", self.members[l].id, e.message());
            }
            let settle = Instant::now() + Duration::from_secs(3);
            while Instant::now() < settle {
                if let Ok(now) = self.leader_within(Duration::from_millis(500)).await {
                    if now == to {
                        return Ok(());
                    }
                }
                tokio::time::sleep(POLL).await;
            }
            if Instant::now() > deadline {
                bail!(
                    "leadership did not move to {target_id} within {DEADLINE:?} (last error: {last_err})\n{}{}",
                    self.describe().await,
                    self.log_tails()
                );
            }
        }
    }

    /// Waits until the leader counts exactly `n` live datanodes.
    pub async fn wait_live_datanodes(&mut self, n: usize) -> Result<()> {
        let deadline = Instant::now() + DEADLINE;
        let mut last = None;
        loop {
            let leader = self.leader().await?;
            if let Ok(c) = Client::connect(self.client_config_for(leader)).await {
                if let Ok(s) = c.fs_stats().await {
                    if s.live_datanodes as usize == n {
                        return Ok(());
                    }
                    last = Some(s.live_datanodes);
                }
            }
            self.check_alive()?;
            if Instant::now() > deadline {
                bail!(
                    "expected {n} live datanodes, the leader reports {last:?}\n{}",
                    self.log_tails()
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Member `i`'s Prometheus metrics text (GET /metrics on its HTTP port).
    pub async fn member_metrics(&self, i: usize) -> Result<String> {
        fetch_metrics(self.members[i].http_addr).await
    }

    /// Datanode `i`'s Prometheus metrics text.
    pub async fn datanode_metrics(&self, i: usize) -> Result<String> {
        fetch_metrics(self.datanodes[i].http_addr).await
    }

    pub fn datanode_count(&self) -> usize {
        self.datanodes.len()
    }

    pub fn datanode_data_addr(&self, i: usize) -> SocketAddr {
        self.datanodes[i].data_addr
    }

    /// Starts datanode `i`, reporting to nn1 and nn2 (not the witness).
    pub fn start_datanode(&mut self, i: usize) -> Result<()> {
        let settings = DatanodeSettings {
            bytes_per_checksum: self.opts.bytes_per_checksum,
            heartbeat_ms: self.opts.heartbeat_ms,
            ack_timeout_ms: DATANODE_TIMEOUT.as_millis() as u64,
            block_report_ms: None,
        };
        let namenodes: Vec<String> = self
            .members
            .iter()
            .filter(|m| !m.witness)
            .map(|m| m.rpc_addr.to_string())
            .collect();
        self.datanodes[i].start(&mut self.daemons, i, &namenodes, &settings)
    }

    /// kill -9 datanode `i`.
    pub fn kill_datanode(&mut self, i: usize) {
        kill(&mut self.datanodes[i].child);
    }

    /// Finalized replicas of `block_id` on every datanode, as (datanode index, files).
    pub fn replicas_of(&self, block_id: u64) -> Result<Vec<(usize, ReplicaFiles)>> {
        replicas_in(&self.datanodes, block_id)
    }

    /// Last lines of every log, for failure messages.
    pub fn log_tails(&self) -> String {
        self.daemons.log_tails()
    }
}

impl Drop for HaCluster {
    fn drop(&mut self) {
        self.kill_all_members();
        for d in &mut self.datanodes {
            kill(&mut d.child);
        }
        self.daemons.keep_if_panicking();
    }
}
