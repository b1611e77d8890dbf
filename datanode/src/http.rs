//! The HTTP listener: `GET /metrics` in the Prometheus text format.
//!
//! A deliberately tiny HTTP/1.0-style responder: one request per
//! connection, the request head bounded in size and time. It owns the
//! process-wide metrics recorder; it serves no block data.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tracing::debug;

const MAX_REQUEST_HEAD: usize = 8 * 1024;
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
const MAX_HTTP_CONNECTIONS: usize = 64;

pub mod names {
    pub const BYTES_WRITTEN: &str = "rfs_datanode_bytes_written_total";
    pub const BYTES_READ: &str = "rfs_datanode_bytes_read_total";
    pub const PACKETS_RECEIVED: &str = "rfs_datanode_packets_received_total";
    pub const PACKETS_SENT: &str = "rfs_datanode_packets_sent_total";
    pub const CHECKSUM_ERRORS: &str = "rfs_datanode_checksum_errors_total";
    pub const BLOCKS_WRITTEN: &str = "rfs_datanode_blocks_written_total";
    pub const BLOCKS_READ: &str = "rfs_datanode_blocks_read_total";
    pub const OPS: &str = "rfs_datanode_ops_total";
    pub const OP_ERRORS: &str = "rfs_datanode_op_errors_total";
    pub const BLOCKS_DELETED: &str = "rfs_datanode_blocks_deleted_total";
    /// Data commands dropped by fencing, labelled `reason`.
    pub const FENCED_COMMANDS: &str = "rfs_datanode_fenced_commands_total";
    /// Bytes the block scanner read and verified.
    pub const SCANNER_BYTES: &str = "rfs_datanode_scanner_bytes_total";
    /// Replicas the block scanner found corrupt and quarantined.
    pub const CORRUPT_REPLICAS: &str = "rfs_datanode_corrupt_replicas_total";
    /// Data-transfer connections closed before sending an op header,
    /// labelled `reason`: `timeout` (none within op_header_timeout_ms) or
    /// `evicted` (the oldest of max_pending_headers waiting ones).
    pub const HEADERLESS_CLOSED: &str = "rfs_datanode_headerless_connections_closed_total";
    /// Suspect replicas (VerifyReplica) checked, labelled `verdict`:
    /// `good`, `corrupt`, `absent` (not served here), `skipped`.
    pub const SUSPECTS_VERIFIED: &str = "rfs_datanode_suspect_replicas_verified_total";
    /// Highest raft term a namenode claimed active at.
    pub const NAMENODE_TERM: &str = "rfs_datanode_namenode_term";
}

/// The process-wide recorder (several in-process datanodes share it).
pub fn metrics_handle() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        // Another recorder may already be installed (embedding process):
        // then our handle renders an empty page rather than failing.
        let _ = metrics::set_global_recorder(recorder);
        handle
    })
}

pub async fn serve(listener: TcpListener, mut shutdown: watch::Receiver<bool>) {
    let handle = metrics_handle();
    let limit = Arc::new(Semaphore::new(MAX_HTTP_CONNECTIONS));
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = shutdown.changed() => return,
        };
        match accepted {
            Ok((stream, peer)) => {
                let Ok(permit) = limit.clone().try_acquire_owned() else {
                    debug!("http: too many connections, dropping {peer}");
                    continue;
                };
                tokio::spawn(async move {
                    if let Err(e) =
                        tokio::time::timeout(REQUEST_TIMEOUT, answer(stream, handle)).await
                    {
                        debug!("http {peer}: {e}");
                    }
                    drop(permit);
                });
            }
            Err(e) => {
                debug!("http accept: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

async fn answer(mut stream: TcpStream, handle: &PrometheusHandle) -> std::io::Result<()> {
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && !head.windows(2).any(|w| w == b"\n\n") {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
        if head.len() > MAX_REQUEST_HEAD {
            return respond(&mut stream, "431 Request Header Fields Too Large", "").await;
        }
    }
    let line = head.split(|b| *b == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut parts = line.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    match (method, path.split('?').next().unwrap_or("")) {
        ("GET", "/metrics") => {
            handle.run_upkeep();
            respond(&mut stream, "200 OK", &handle.render()).await
        }
        ("GET", "/") => respond(&mut stream, "200 OK", "rfs datanode: see /metrics\n").await,
        ("GET", _) => respond(&mut stream, "404 Not Found", "not found\n").await,
        _ => respond(&mut stream, "405 Method Not Allowed", "").await,
    }
}

async fn respond(stream: &mut TcpStream, status: &str, body: &str) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status}\r\ncontent-type: text/plain; version=0.0.4\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body.as_bytes()).await?;
    stream.shutdown().await
}
