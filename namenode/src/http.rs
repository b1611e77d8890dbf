//! The namenode's HTTP port: Prometheus metrics at `/metrics` (the web UI
//! arrives in a later issue).

use std::net::SocketAddr;

/// Binds `addr` and serves the process's metrics there.
pub fn serve_metrics(addr: SocketAddr) -> Result<(), String> {
    // Bind first so a busy port is a clear error, not a background failure.
    drop(
        std::net::TcpListener::bind(addr)
            .map_err(|e| format!("cannot listen for HTTP on {addr}: {e}"))?,
    );
    metrics_exporter_prometheus::PrometheusBuilder::new()
        .with_http_listener(addr)
        .install()
        .map_err(|e| format!("cannot serve metrics on {addr}: {e}"))
}
