//! A cluster of real processes on 127.0.0.1 for tests.
//!
//! Ports are picked by binding port 0 and releasing it just before the
//! daemon binds; readiness is polled with a deadline (the namenode answers
//! `fs_stats`, then reports the expected number of live datanodes), never
//! waited for with a fixed sleep. Every process is killed when the cluster is
//! dropped; logs stay in the cluster's temp dir and their tails are printed
//! when a start times out.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use rfs_client::{Client, ClientConfig};

use crate::replica_files::{find_replicas, ReplicaFiles};

/// Where the workspace's binaries are: `RFS_BIN_DIR`, else the cargo target
/// dir that holds this test executable (`target/<profile>/deps/..`).
pub fn bin_path(name: &str) -> Result<PathBuf> {
    let dir = match std::env::var_os("RFS_BIN_DIR") {
        Some(d) => PathBuf::from(d),
        None => {
            let exe = std::env::current_exe()?;
            let deps = exe.parent().context("test executable has no parent dir")?;
            deps.parent()
                .context("deps dir has no parent")?
                .to_path_buf()
        }
    };
    let path = dir.join(name);
    if !path.exists() {
        bail!(
            "{} not found: build the daemons first (cargo build --bins)",
            path.display()
        );
    }
    Ok(path)
}

/// Reserves a free port on 127.0.0.1 (released when the returned listener drops).
pub fn free_port() -> Result<u16> {
    let l = TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

#[derive(Debug, Clone)]
pub struct MiniClusterBuilder {
    pub datanodes: usize,
    pub block_size: u64,
    pub replication: u32,
    pub bytes_per_checksum: u32,
    pub heartbeat_ms: u64,
    pub datanode_dead_ms: u64,
    pub lease_soft_limit_ms: u64,
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
            extra_namenode_args: Vec::new(),
        }
    }
}

impl MiniClusterBuilder {
    pub fn datanodes(mut self, n: usize) -> Self {
        self.datanodes = n;
        self
    }

    pub async fn start(self) -> Result<MiniCluster> {
        let root = tempfile::Builder::new()
            .prefix("rfs-minicluster-")
            .tempdir()?;
        let mut cluster = MiniCluster {
            nn_rpc: SocketAddr::from(([127, 0, 0, 1], free_port()?)),
            nn_http: SocketAddr::from(([127, 0, 0, 1], free_port()?)),
            namenode: None,
            datanodes: Vec::new(),
            root,
            opts: self,
            log_seq: 0,
        };
        cluster.start_namenode().await?;
        for i in 0..cluster.opts.datanodes {
            let dn = DatanodeSlot {
                data_dirs: vec![cluster.root.path().join(format!("dn{i}"))],
                data_addr: SocketAddr::from(([127, 0, 0, 1], free_port()?)),
                http_addr: SocketAddr::from(([127, 0, 0, 1], free_port()?)),
                child: None,
            };
            cluster.datanodes.push(dn);
            cluster.start_datanode(i)?;
        }
        let n = cluster.opts.datanodes;
        cluster.wait_live_datanodes(n).await?;
        Ok(cluster)
    }
}

struct DatanodeSlot {
    data_dirs: Vec<PathBuf>,
    data_addr: SocketAddr,
    http_addr: SocketAddr,
    child: Option<Child>,
}

pub struct MiniCluster {
    nn_rpc: SocketAddr,
    nn_http: SocketAddr,
    namenode: Option<Child>,
    datanodes: Vec<DatanodeSlot>,
    root: tempfile::TempDir,
    pub opts: MiniClusterBuilder,
    log_seq: u32,
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

    pub fn root(&self) -> &Path {
        self.root.path()
    }

    pub fn client_config(&self) -> ClientConfig {
        let mut c = ClientConfig::with_namenode(self.namenode_addr());
        c.rpc_timeout = Duration::from_secs(10);
        c.datanode_timeout = Duration::from_secs(10);
        c
    }

    pub async fn client(&self) -> Result<Client> {
        Ok(Client::connect(self.client_config()).await?)
    }

    fn log_file(&mut self, name: &str) -> Result<std::fs::File> {
        self.log_seq += 1;
        let path = self
            .root
            .path()
            .join(format!("{name}.{}.log", self.log_seq));
        Ok(std::fs::File::create(path)?)
    }

    fn spawn(&mut self, bin: &str, log: &str, args: &[String]) -> Result<Child> {
        let out = self.log_file(log)?;
        let err = out.try_clone()?;
        Command::new(bin_path(bin)?)
            .args(args)
            .env(
                "RUST_LOG",
                std::env::var("RFS_TEST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .with_context(|| format!("spawning {bin}"))
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
            self.root.path().join("name").display().to_string(),
            "--block-size".into(),
            o.block_size.to_string(),
            "--replication".into(),
            o.replication.to_string(),
            "--datanode-dead-ms".into(),
            o.datanode_dead_ms.to_string(),
            "--lease-soft-limit-ms".into(),
            o.lease_soft_limit_ms.to_string(),
        ];
        args.extend(o.extra_namenode_args.iter().cloned());
        let child = self.spawn("namenode", "namenode", &args)?;
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
        if let Some(child) = self.namenode.as_mut() {
            if let Some(status) = child.try_wait()? {
                bail!("namenode exited with {status}\n{}", self.log_tails());
            }
        }
        Ok(())
    }

    /// kill -9 the namenode.
    pub fn kill_namenode(&mut self) {
        if let Some(mut c) = self.namenode.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
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

    /// Replaces datanode `i`'s data dirs (takes effect at its next start).
    pub fn set_datanode_dirs(&mut self, i: usize, dirs: Vec<PathBuf>) {
        self.datanodes[i].data_dirs = dirs;
    }

    pub fn start_datanode(&mut self, i: usize) -> Result<()> {
        let o = &self.opts;
        let slot = &self.datanodes[i];
        let mut args = vec![
            "--namenode".into(),
            self.nn_rpc.to_string(),
            "--data-addr".into(),
            slot.data_addr.to_string(),
            "--http-addr".into(),
            slot.http_addr.to_string(),
            "--bytes-per-checksum".into(),
            o.bytes_per_checksum.to_string(),
            "--heartbeat-interval-ms".into(),
            o.heartbeat_ms.to_string(),
        ];
        for d in &slot.data_dirs {
            args.push("--data-dir".into());
            args.push(d.display().to_string());
        }
        let child = self.spawn("datanode", &format!("dn{i}"), &args)?;
        self.datanodes[i].child = Some(child);
        Ok(())
    }

    /// kill -9 datanode `i`.
    pub fn kill_datanode(&mut self, i: usize) {
        if let Some(mut c) = self.datanodes[i].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub async fn restart_datanode(&mut self, i: usize) -> Result<()> {
        self.kill_datanode(i);
        self.start_datanode(i)?;
        let n = self.datanodes.iter().filter(|d| d.child.is_some()).count();
        self.wait_live_datanodes(n).await
    }

    pub fn datanode_running(&mut self, i: usize) -> bool {
        match self.datanodes[i].child.as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Waits until the namenode counts exactly `n` live datanodes.
    pub async fn wait_live_datanodes(&mut self, n: usize) -> Result<()> {
        let deadline = Instant::now() + START_DEADLINE;
        let mut last = None;
        loop {
            if let Ok(c) = Client::connect(self.client_config()).await {
                if let Ok(s) = c.fs_stats().await {
                    if s.live_datanodes as usize == n {
                        return Ok(());
                    }
                    last = Some(s.live_datanodes);
                }
            }
            self.check_alive_namenode()?;
            for (i, d) in self.datanodes.iter_mut().enumerate() {
                if let Some(c) = d.child.as_mut() {
                    if let Some(status) = c.try_wait()? {
                        d.child = None;
                        bail!("datanode {i} exited with {status}\n{}", self.log_tails());
                    }
                }
            }
            if Instant::now() > deadline {
                bail!(
                    "expected {n} live datanodes, namenode reports {last:?}\n{}",
                    self.log_tails()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Finalized replicas of `block_id` on every datanode, as (datanode index, files).
    pub fn replicas_of(&self, block_id: u64) -> Result<Vec<(usize, ReplicaFiles)>> {
        let mut out = Vec::new();
        for (i, d) in self.datanodes.iter().enumerate() {
            for dir in &d.data_dirs {
                for r in find_replicas(dir, block_id)? {
                    out.push((i, r));
                }
            }
        }
        Ok(out)
    }

    /// Last lines of every log, for failure messages.
    pub fn log_tails(&self) -> String {
        let mut out = String::new();
        if let Ok(entries) = std::fs::read_dir(self.root.path()) {
            let mut logs: Vec<_> = entries
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|e| e == "log"))
                .collect();
            logs.sort();
            for p in logs {
                let text = std::fs::read_to_string(&p).unwrap_or_default();
                let lines: Vec<&str> = text.lines().collect();
                let tail = &lines[lines.len().saturating_sub(15)..];
                out.push_str(&format!("--- {} ---\n{}\n", p.display(), tail.join("\n")));
            }
        }
        out
    }
}

impl Drop for MiniCluster {
    fn drop(&mut self) {
        self.kill_namenode();
        for i in 0..self.datanodes.len() {
            self.kill_datanode(i);
        }
        if std::thread::panicking() && std::env::var_os("RFS_KEEP_CLUSTER").is_some() {
            let kept = self.root.path().to_path_buf();
            eprintln!("keeping cluster dir {}", kept.display());
            std::mem::forget(std::mem::replace(
                &mut self.root,
                tempfile::tempdir().expect("tempdir"),
            ));
        }
    }
}
