//! The rfs namenode: the namespace (inode tree in sled behind a write-ahead
//! log), the block map, the datanode registry, leases and block placement,
//! served over gRPC. It never touches block bytes.
//!
//! [`run`] is the whole daemon; `main.rs` only parses flags and signals, so
//! tests start exactly the code production runs.

pub mod apply;
pub mod blockmap;
pub mod config;
pub mod datanodes;
pub mod error;
pub mod http;
pub mod leases;
pub mod meta_log;
pub mod meta_op;
pub mod namespace;
pub mod path;
pub mod placement;
pub mod service;
pub mod state;
pub mod wal;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use rfs_proto::datanode::datanode_protocol_server::DatanodeProtocolServer;
use rfs_proto::namenode::client_protocol_server::ClientProtocolServer;

pub use config::Config;
pub use error::{NamenodeError, Result};
use meta_log::LocalMetaLog;
use state::State;

/// Largest gRPC message accepted or sent (a block report of ~1M replicas
/// fits).
const MAX_RPC_MESSAGE: usize = 64 * 1024 * 1024;
/// How long in-flight RPCs get to finish after shutdown is asked for; then
/// the namenode checkpoints and exits regardless (clients retry).
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Runs the namenode on `config.rpc_addr` until `shutdown` completes, then
/// checkpoints the metadata and returns.
pub async fn run(
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    config.validate()?;
    let listener = tokio::net::TcpListener::bind(config.rpc_addr)
        .await
        .map_err(|e| NamenodeError::Bind {
            what: "RPC",
            addr: config.rpc_addr,
            reason: e.to_string(),
        })?;
    serve(config, listener, shutdown).await
}

/// [`run`] on an already bound RPC listener (tests bind port 0 and read the
/// address back).
pub async fn serve(
    config: Config,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    config.validate()?;
    let rpc_addr = listener.local_addr().map_err(|e| NamenodeError::Bind {
        what: "RPC",
        addr: config.rpc_addr,
        reason: e.to_string(),
    })?;
    let metrics_task = http::serve_metrics(config.http_addr)?;
    let name_dir = config.name_dir.clone();
    let checkpoint_ops = config.checkpoint_ops;
    let opened = tokio::task::spawn_blocking(move || LocalMetaLog::open(&name_dir, checkpoint_ops))
        .await
        .map_err(|e| NamenodeError::Store(format!("opening the metadata store: {e}")))
        .and_then(|r| r);
    let (log, ns) = match opened {
        Ok(opened) => opened,
        Err(e) => {
            metrics_task.abort();
            return Err(e);
        }
    };
    let log = Arc::new(log);
    let state = Arc::new(State::new(config.clone(), log.clone(), ns));
    tracing::info!(
        "namenode serving RPC on {rpc_addr}, HTTP on {}, metadata in {}",
        config.http_addr,
        config.name_dir.display()
    );

    let client = ClientProtocolServer::new(service::client::ClientService {
        state: state.clone(),
    })
    .max_decoding_message_size(MAX_RPC_MESSAGE)
    .max_encoding_message_size(MAX_RPC_MESSAGE);
    let datanode = DatanodeProtocolServer::new(service::datanode::DatanodeService {
        state,
        namenode_id: rpc_addr.to_string(),
    })
    .max_decoding_message_size(MAX_RPC_MESSAGE)
    .max_encoding_message_size(MAX_RPC_MESSAGE);

    // Shutdown first stops new RPCs; those in flight get a grace period.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let signal = async move {
        shutdown.await;
        tracing::info!("shutting down: no new RPCs");
        let _ = stop_tx.send(true);
    };
    let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
    let server = tonic::transport::Server::builder()
        .add_service(client)
        .add_service(datanode)
        .serve_with_incoming_shutdown(incoming, signal);
    let served = tokio::select! {
        r = server => r.map_err(|e| NamenodeError::Server(e.to_string())),
        () = grace_expired(stop_rx) => {
            tracing::warn!("RPCs still running after {SHUTDOWN_GRACE:?}; stopping anyway");
            Ok(())
        }
    };
    metrics_task.abort();
    let closing = log.clone();
    if let Err(e) = tokio::task::spawn_blocking(move || closing.close()).await {
        tracing::error!("closing the metadata log failed: {e}");
    }
    served?;
    tracing::info!("namenode stopped cleanly");
    Ok(())
}

/// Completes [`SHUTDOWN_GRACE`] after shutdown was asked for.
async fn grace_expired(mut stop: tokio::sync::watch::Receiver<bool>) {
    if stop.wait_for(|s| *s).await.is_err() {
        // The sender lives as long as the server future; gone means done.
        return std::future::pending().await;
    }
    tokio::time::sleep(SHUTDOWN_GRACE).await;
}
