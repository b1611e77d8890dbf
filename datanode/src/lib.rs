//! The rfs datanode: stores block replicas as data + `.meta` checksum files,
//! serves the data-transfer protocol (WRITE_BLOCK pipelines, READ_BLOCK,
//! COPY_BLOCK) over an `rfs_transport::BlockTransport`, and reports to every
//! configured namenode (registration, heartbeats, block reports), obeying
//! data commands only from the active namenode of the highest raft term
//! (see `fencing`), and cutting a replica for a recovery only once the
//! leader confirms it (`recovery_check`). A background `scanner`
//! re-verifies stored checksums (replicas a namenode suspects first) and
//! quarantines and reports corrupt replicas. A failed data directory is
//! taken out of service (its replicas reported deleted, counted in
//! heartbeats' `failed_volumes`); more than `failed_volumes_tolerated`
//! stop the node with [`Error::TooManyFailedVolumes`].
//!
//! It owns no namespace: which blocks belong to which file is the
//! namenode's business.
//!
//! `main.rs` parses flags into a [`DatanodeConfig`] and calls [`run`];
//! tests start the same code with [`Datanode::start`].

pub mod config;
pub mod error;
mod fencing;
mod http;
mod recovery_check;
mod reporting;
mod scanner;
mod storage;
mod throttle;
mod transfer;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;

use rfs_proto::common::DatanodeInfo;
use rfs_proto::defaults::{DATANODE_DATA_PORT, DATANODE_HTTP_PORT};
use rfs_transport::{BlockListener, BlockTransport, TransportError};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{error, info, warn};

pub use config::DatanodeConfig;
pub use error::{Error, Result};

use reporting::Reporter;
use storage::Storage;

/// How many ports past the default a datanode started without explicit
/// addresses tries.
const PORT_SEARCH: u16 = 100;

/// State shared by every task of one datanode.
pub(crate) struct Node {
    pub config: DatanodeConfig,
    pub storage: Arc<Storage>,
    pub transport: Arc<dyn BlockTransport>,
    pub reporter: Reporter,
    /// Highest raft term claimed active: whose data commands to obey.
    pub fence: fencing::Fence,
    /// Replicas a namenode asked to verify now (VerifyReplica).
    pub suspects: scanner::Suspects,
    /// Asks the leader before a replica is cut for a recovery.
    pub recovery_check: recovery_check::RecoveryCheck,
    /// How this node describes itself to namenodes.
    pub info: DatanodeInfo,
    /// `ip:port` of the data-transfer listener, for messages.
    pub addr: String,
    /// Data-transfer connections being served.
    pub xceivers: AtomicUsize,
    /// Bounds COPY_BLOCK / TransferBlock pushes running at once.
    pub transfers: tokio::sync::Semaphore,
    /// Paces those pushes (all of them together) to
    /// `transfer_bytes_per_sec`; `None`: unlimited.
    pub transfer_rate: Option<tokio::sync::Mutex<throttle::TokenBucket>>,
    /// Set (once) to why the node must stop: too many failed volumes.
    pub fatal: watch::Sender<Option<String>>,
}

/// A running datanode.
pub struct Datanode {
    pub data_addr: SocketAddr,
    pub http_addr: SocketAddr,
    pub datanode_id: String,
    shutdown: watch::Sender<bool>,
    fatal: watch::Receiver<Option<String>>,
    task: JoinHandle<()>,
}

impl Datanode {
    /// Opens storage, binds the listeners and starts serving and reporting.
    pub async fn start(config: DatanodeConfig) -> Result<Datanode> {
        Self::start_with_transport(config, rfs_transport::default_transport()).await
    }

    pub async fn start_with_transport(
        config: DatanodeConfig,
        transport: Arc<dyn BlockTransport>,
    ) -> Result<Datanode> {
        config.validate()?;
        let dirs = config.data_dirs.clone();
        let fsync = !config.no_fsync;
        let tolerated = config.failed_volumes_tolerated;
        let storage = Arc::new(
            tokio::task::spawn_blocking(move || Storage::open(&dirs, fsync, tolerated)).await??,
        );
        let listener = bind_data(&*transport, config.data_addr).await?;
        let data_addr = listener.local_addr();
        let http_listener = bind_http(config.http_addr).await?;
        let http_addr = http_listener.local_addr()?;
        info!(
            "data transfer listening on {data_addr} ({})",
            transport.name()
        );
        info!("http listening on {http_addr} (/metrics)");
        let _ = http::metrics_handle();

        let ip = data_addr.ip().to_string();
        let info = DatanodeInfo {
            datanode_id: storage.datanode_id.clone(),
            hostname: config.hostname.clone().unwrap_or_else(|| ip.clone()),
            ip,
            data_port: data_addr.port() as u32,
            http_port: http_addr.port() as u32,
            ..Default::default()
        };
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        let (fatal_tx, fatal_rx) = watch::channel(None);
        let reporter = Reporter::new(config.namenodes.len());
        let node = Arc::new(Node {
            addr: data_addr.to_string(),
            storage,
            transport,
            reporter,
            fence: fencing::Fence::new(),
            suspects: scanner::Suspects::default(),
            recovery_check: recovery_check::RecoveryCheck::new(&config),
            info,
            xceivers: AtomicUsize::new(0),
            transfers: tokio::sync::Semaphore::new(8),
            transfer_rate: (config.transfer_bytes_per_sec > 0).then(|| {
                tokio::sync::Mutex::new(throttle::TokenBucket::new(
                    config.transfer_bytes_per_sec,
                    config.transfer_bytes_per_sec.min(1 << 20),
                ))
            }),
            fatal: fatal_tx,
            config,
        });
        let datanode_id = node.storage.datanode_id.clone();
        let mut background = Vec::new();
        background.push(tokio::spawn(http::serve(
            http_listener,
            shutdown_rx.clone(),
        )));
        for i in 0..node.config.namenodes.len() {
            background.push(tokio::spawn(reporting::namenode_task(
                node.clone(),
                i,
                shutdown_rx.clone(),
            )));
        }
        background.push(tokio::spawn(scanner::run(
            node.clone(),
            shutdown_rx.clone(),
        )));
        background.push(tokio::spawn(scanner::run_suspects(
            node.clone(),
            shutdown_rx.clone(),
        )));
        background.push(tokio::spawn(watch_volumes(
            node.clone(),
            shutdown_tx.clone(),
            shutdown_rx.clone(),
        )));
        let server = transfer::serve(node.clone(), listener, shutdown_rx);
        let task = tokio::spawn(async move {
            server.await;
            // Servers first, then background workers (they saw the same
            // signal; wait for them briefly).
            for t in background {
                let abort = t.abort_handle();
                if tokio::time::timeout(std::time::Duration::from_secs(5), t)
                    .await
                    .is_err()
                {
                    abort.abort();
                }
            }
            info!("datanode {} stopped", node.storage.datanode_id);
        });
        Ok(Datanode {
            data_addr,
            http_addr,
            datanode_id,
            shutdown: shutdown_tx,
            fatal: fatal_rx,
            task,
        })
    }

    /// Why the node stopped itself (too many failed volumes), if it did.
    pub fn fatal_error(&self) -> Option<String> {
        self.fatal.borrow().clone()
    }

    /// Stops accepting, lets in-flight transfers end (or aborts them after
    /// a grace period) and stops reporting.
    pub async fn stop(self) -> Result<()> {
        let _ = self.shutdown.send(true);
        self.task.await?;
        Ok(())
    }
}

/// Runs a datanode until `shutdown` resolves.
pub async fn run(config: DatanodeConfig, shutdown: impl Future<Output = ()>) -> Result<()> {
    let dn = Datanode::start(config).await?;
    let mut fatal = dn.fatal.clone();
    tokio::select! {
        _ = shutdown => info!("shutting down"),
        // The sender lives in `Node`, which outlives this wait.
        _ = fatal.wait_for(|f| f.is_some()) => {}
    }
    let fatal = dn.fatal_error();
    dn.stop().await?;
    match fatal {
        Some(why) => Err(Error::Fatal(why)),
        None => Ok(()),
    }
}

/// Reports the replicas of newly failed volumes as deleted (namenodes
/// then re-replicate them) and stops the node when more volumes failed
/// than tolerated.
async fn watch_volumes(
    node: Arc<Node>,
    stop: watch::Sender<bool>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut failures = node.storage.watch_failures();
    loop {
        tokio::select! {
            r = failures.changed() => if r.is_err() { return },
            _ = shutdown.changed() => return,
        }
        let storage = node.storage.clone();
        let dropped = storage.take_dropped();
        if !dropped.is_empty() {
            info!(
                "{} replicas on failed volumes reported deleted",
                dropped.len()
            );
            node.reporter.blocks_deleted(&dropped);
        }
        if let Err(e) = storage.check_failures() {
            error!("stopping: {e}");
            node.fatal.send_replace(Some(e.to_string()));
            let _ = stop.send(true);
            return;
        }
    }
}

fn addr_in_use(e: &TransportError) -> bool {
    matches!(e, TransportError::Io(io) if io.kind() == std::io::ErrorKind::AddrInUse)
}

async fn bind_data(
    transport: &dyn BlockTransport,
    addr: Option<SocketAddr>,
) -> Result<Box<dyn BlockListener>> {
    let bind_err = |addr, e: TransportError| match e {
        TransportError::Io(source) => Error::Bind { addr, source },
        other => Error::Transport(other),
    };
    if let Some(addr) = addr {
        return transport.bind(addr).await.map_err(|e| bind_err(addr, e));
    }
    let first = DATANODE_DATA_PORT;
    let last = first.saturating_add(PORT_SEARCH);
    for port in first..=last {
        let a = SocketAddr::from(([127, 0, 0, 1], port));
        match transport.bind(a).await {
            Ok(l) => return Ok(l),
            Err(e) if addr_in_use(&e) => continue,
            Err(e) => return Err(bind_err(a, e)),
        }
    }
    Err(Error::NoFreePort {
        what: "data transfer",
        first,
        last,
    })
}

async fn bind_http(addr: Option<SocketAddr>) -> Result<tokio::net::TcpListener> {
    if let Some(addr) = addr {
        return tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| Error::Bind { addr, source });
    }
    let first = DATANODE_HTTP_PORT;
    let last = first.saturating_add(PORT_SEARCH);
    for port in first..=last {
        // 9866 is the default data port: a default http search must not
        // take it from a later datanode's data listener.
        if (DATANODE_DATA_PORT..=DATANODE_DATA_PORT + PORT_SEARCH).contains(&port) {
            continue;
        }
        let a = SocketAddr::from(([127, 0, 0, 1], port));
        match tokio::net::TcpListener::bind(a).await {
            Ok(l) => return Ok(l),
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => continue,
            Err(source) => return Err(Error::Bind { addr: a, source }),
        }
    }
    warn!("no free http port near {first}");
    Err(Error::NoFreePort {
        what: "http",
        first,
        last,
    })
}
