//! The namenode's HTTP port: Prometheus metrics at `/metrics` (the web UI
//! arrives in a later issue).

use std::net::SocketAddr;

use crate::error::{NamenodeError, Result};

/// Binds `addr` now (so a busy port fails startup with a clear error) and
/// serves the process's metrics there until the returned task is aborted.
///
/// The `metrics` recorder is process-global: when one is already installed
/// (a second namenode inside one test process), the first keeps recording
/// and this listener serves an empty page.
pub fn serve_metrics(addr: SocketAddr) -> Result<tokio::task::JoinHandle<()>> {
    let (recorder, exporter) = metrics_exporter_prometheus::PrometheusBuilder::new()
        .with_http_listener(addr)
        .build()
        .map_err(|e| NamenodeError::Bind {
            what: "HTTP".into(),
            addr,
            reason: e.to_string(),
        })?;
    if metrics::set_global_recorder(recorder).is_err() {
        tracing::debug!("a metrics recorder is already installed in this process");
    }
    Ok(tokio::spawn(async move {
        if let Err(e) = exporter.await {
            tracing::warn!("metrics HTTP listener on {addr} stopped: {e:?}");
        }
    }))
}
