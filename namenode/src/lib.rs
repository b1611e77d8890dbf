//! The rfs namenode: the namespace (inode tree in memory, checkpointed
//! behind a raft group's log, which is the write-ahead log), the block map, the
//! datanode registry, leases and block placement, served over gRPC. It
//! never touches block bytes.
//!
//! [`run`] is the whole daemon; `main.rs` only parses flags and signals, so
//! tests start exactly the code production runs.

pub mod apply;
pub mod bad_replicas;
pub mod blockmap;
pub mod checkpoint;
pub mod clock;
pub mod config;
pub mod datanodes;
pub mod error;
pub mod health;
pub mod http;
pub mod lease_recovery;
pub mod leases;
pub mod meta_op;
pub mod namespace;
pub mod path;
pub mod placement;
pub mod raft;
pub mod reclaim;
pub mod records;
pub mod recovery_check;
pub mod replication;
pub mod reported;
pub mod service;
pub mod state;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use rfs_proto::datanode::datanode_protocol_server::DatanodeProtocolServer;
use rfs_proto::ha::ha_admin_server::HaAdminServer;
use rfs_proto::ha::raft_peer_server::RaftPeerServer;
use rfs_proto::namenode::client_protocol_server::ClientProtocolServer;
use tokio_stream::StreamExt;

pub use config::Config;
pub use error::{NamenodeError, Result};
use namespace::Namespace;
use raft::RaftGroup;
use state::State;

/// Largest gRPC message accepted or sent (a block report of ~1M replicas
/// fits).
const MAX_RPC_MESSAGE: usize = 64 * 1024 * 1024;
/// How long in-flight RPCs get to finish after shutdown is asked for; then
/// the namenode flushes its store and exits regardless (clients retry).
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Runs the namenode on `config.rpc_addr` (with `[ha]`: its member's
/// address) until `shutdown` completes, then flushes the store and returns.
/// Returns the error at once, closing its ports, when a write of the raft
/// log or the metadata store fails: a member that went on could only
/// answer from a state it cannot make durable.
pub async fn run(
    mut config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    config.validate()?;
    config.resolve_member()?;
    let listener = tokio::net::TcpListener::bind(config.rpc_addr)
        .await
        .map_err(|e| NamenodeError::Bind {
            what: "RPC".into(),
            addr: config.rpc_addr,
            reason: e.to_string(),
        })?;
    serve(config, listener, shutdown).await
}

/// [`run`] on an already bound RPC listener (tests bind port 0 and read the
/// address back).
pub async fn serve(
    mut config: Config,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    config.validate()?;
    config.resolve_member()?;
    let rpc_addr = listener.local_addr().map_err(|e| NamenodeError::Bind {
        what: "RPC".into(),
        addr: config.rpc_addr,
        reason: e.to_string(),
    })?;
    let metrics_task = http::serve_metrics(config.http_addr)?;
    let rt = tokio::runtime::Handle::current();
    let opening = config.clone();
    let opened = tokio::task::spawn_blocking(move || open_metadata(&opening, &rt))
        .await
        .map_err(|e| NamenodeError::Store(format!("opening the metadata store: {e}")))
        .and_then(|r| r);
    let (mut group, ns) = match opened {
        Ok(opened) => opened,
        Err(e) => {
            metrics_task.abort();
            return Err(e);
        }
    };
    let raft = group.handle.clone();
    let state = Arc::new(State::new(config.clone(), group.handle.clone(), ns));
    let leader_watch = tokio::spawn(on_election(state.clone()));
    let replication_monitor = tokio::spawn(replication::monitor(state.clone()));
    let lease_monitor = tokio::spawn(lease_recovery::monitor(state.clone()));
    let reclaimer = tokio::spawn(reclaim::monitor(state.clone()));
    tracing::info!(
        "namenode {} ({}) serving RPC on {rpc_addr}, HTTP on {}, metadata in {}",
        state
            .raft
            .member(state.raft.id())
            .map_or("", |m| m.id.as_str()),
        if config.witness { "witness" } else { "voter" },
        config.http_addr,
        config.name_dir.display()
    );

    let client = ClientProtocolServer::new(service::client::ClientService {
        state: state.clone(),
    })
    .max_decoding_message_size(MAX_RPC_MESSAGE)
    .max_encoding_message_size(MAX_RPC_MESSAGE);
    let datanode = DatanodeProtocolServer::new(service::datanode::DatanodeService {
        state: state.clone(),
        namenode_id: rpc_addr.to_string(),
    })
    .max_decoding_message_size(MAX_RPC_MESSAGE)
    .max_encoding_message_size(MAX_RPC_MESSAGE);
    let ha = HaAdminServer::new(service::ha::HaService { state });

    // Shutdown first stops new RPCs; those in flight get a grace period.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut peer_service = std::mem::replace(
        &mut group.peer_service,
        raft::transport::PeerService::closed(),
    );
    peer_service.stopping = stop_rx.clone();
    let peer = RaftPeerServer::new(peer_service)
        .max_decoding_message_size(MAX_RPC_MESSAGE)
        .max_encoding_message_size(MAX_RPC_MESSAGE);
    let signal = async move {
        shutdown.await;
        tracing::info!("shutting down: no new RPCs");
        let _ = stop_tx.send(true);
    };
    // Small gRPC frames must not wait for Nagle + delayed ACK.
    let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener).map(|conn| {
        conn.inspect(|c| {
            let _ = c.set_nodelay(true);
        })
    });
    let server = tonic::transport::Server::builder()
        .add_service(client)
        .add_service(datanode)
        .add_service(peer)
        .add_service(ha)
        .serve_with_incoming_shutdown(incoming, signal);
    let served = tokio::select! {
        r = server => r.map_err(|e| NamenodeError::Server(e.to_string())),
        () = grace_expired(stop_rx) => {
            tracing::warn!("RPCs still running after {SHUTDOWN_GRACE:?}; stopping anyway");
            Ok(())
        }
        e = raft.failed() => Err(e),
    };
    metrics_task.abort();
    leader_watch.abort();
    replication_monitor.abort();
    lease_monitor.abort();
    reclaimer.abort();
    if let Err(e) = tokio::task::spawn_blocking(move || group.stop()).await {
        tracing::error!("stopping the raft loop failed: {e}");
    }
    served?;
    tracing::info!("namenode stopped cleanly");
    Ok(())
}

/// Opens the store in the name dir and starts the raft loop (blocking);
/// peers are reached from `rt`.
pub fn open_metadata(
    config: &Config,
    rt: &tokio::runtime::Handle,
) -> Result<(RaftGroup, Namespace)> {
    let dir = &config.name_dir;
    std::fs::create_dir_all(dir).map_err(|e| {
        NamenodeError::Store(format!("cannot create name dir {}: {e}", dir.display()))
    })?;
    let ns = Namespace::open(dir, config.cache_mib.saturating_mul(1 << 20))
        .map_err(|e| NamenodeError::Store(format!("metadata store: {e}")))?;
    // Every member formats identically (no clock), so their states match.
    apply::format_if_new(&ns, 0)
        .map_err(|e| NamenodeError::Store(format!("formatting the metadata store: {e}")))?;
    let group = RaftGroup::start(config, ns.clone(), rt, MAX_RPC_MESSAGE)?;
    Ok((group, ns))
}

/// What a member does when it starts to serve as leader: count every
/// writer's lease from now (it heard no renewals while following), and
/// settle the block map it filled from reports while its namespace lagged.
async fn on_election(state: Arc<State>) {
    let mut watch = state.raft.watch();
    let mut led = false;
    while watch.changed().await.is_ok() {
        let leads = state.raft.is_leader();
        if leads && !led {
            state.leases().restart_clocks();
            let s = state.clone();
            let settled = tokio::task::spawn_blocking(move || s.reconcile_block_map()).await;
            if let Ok(Err(e)) | Err(e) = settled.map_err(|e| NamenodeError::Internal(e.to_string()))
            {
                tracing::error!("settling the block map after election failed: {e}");
            }
        }
        led = leads;
    }
}

/// Completes [`SHUTDOWN_GRACE`] after shutdown was asked for.
async fn grace_expired(mut stop: tokio::sync::watch::Receiver<bool>) {
    if stop.wait_for(|s| *s).await.is_err() {
        // The sender lives as long as the server future; gone means done.
        return std::future::pending().await;
    }
    tokio::time::sleep(SHUTDOWN_GRACE).await;
}
