//! The rfs namenode: the namespace (inode tree in sled behind a write-ahead
//! log), the block map, the datanode registry, leases and block placement,
//! served over gRPC. It never touches block bytes.

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

use rfs_proto::datanode::datanode_protocol_server::DatanodeProtocolServer;
use rfs_proto::namenode::client_protocol_server::ClientProtocolServer;

pub use config::Config;
use meta_log::LocalMetaLog;
use state::State;

/// Largest gRPC message accepted (a block report of ~1M replicas fits).
const MAX_RPC_MESSAGE: usize = 64 * 1024 * 1024;

/// Runs the namenode until `shutdown` completes, then checkpoints.
pub async fn run(
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), String> {
    config.validate()?;
    let listener = tokio::net::TcpListener::bind(config.rpc_addr)
        .await
        .map_err(|e| format!("cannot listen for RPC on {}: {e}", config.rpc_addr))?;
    http::serve_metrics(config.http_addr)?;
    let (log, ns) = LocalMetaLog::open(&config.name_dir, config.checkpoint_ops)?;
    let log = Arc::new(log);
    let state = Arc::new(State::new(config.clone(), log.clone(), ns));
    tracing::info!(
        "namenode serving RPC on {}, HTTP on {}, metadata in {}",
        config.rpc_addr,
        config.http_addr,
        config.name_dir.display()
    );

    let client = ClientProtocolServer::new(service::client::ClientService {
        state: state.clone(),
    })
    .max_decoding_message_size(MAX_RPC_MESSAGE);
    let datanode = DatanodeProtocolServer::new(service::datanode::DatanodeService {
        state,
        namenode_id: config.rpc_addr.to_string(),
    })
    .max_decoding_message_size(MAX_RPC_MESSAGE);
    let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
    let served = tonic::transport::Server::builder()
        .add_service(client)
        .add_service(datanode)
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await;
    log.close();
    served.map_err(|e| format!("RPC server failed: {e}"))?;
    tracing::info!("namenode stopped cleanly");
    Ok(())
}
