//! `datanode`: parses flags (and the `[datanode]` section of `--config`)
//! into a `DatanodeConfig` and runs it until SIGINT/SIGTERM.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use rfs_datanode::DatanodeConfig;

#[derive(Debug, Parser)]
#[command(
    name = "datanode",
    version,
    about = "rfs datanode: stores and serves block replicas"
)]
struct Cli {
    /// Config file; its [datanode] section sets defaults that flags override.
    #[arg(long, value_name = "F")]
    config: Option<PathBuf>,
    /// Namenode RPC address (repeatable: report to every one).
    #[arg(long = "namenode", value_name = "ADDR")]
    namenodes: Vec<String>,
    /// Data directory (repeatable: one volume each).
    #[arg(long = "data-dir", value_name = "DIR")]
    data_dirs: Vec<PathBuf>,
    /// Data-transfer address [default: 127.0.0.1:9866 or the next free port].
    #[arg(long)]
    data_addr: Option<SocketAddr>,
    /// HTTP (/metrics) address [default: 127.0.0.1:9864 or the next free port].
    #[arg(long)]
    http_addr: Option<SocketAddr>,
    /// Default bytes per CRC32C chunk [default: 512].
    #[arg(long)]
    bytes_per_checksum: Option<u32>,
    /// Heartbeat period [default: 3000].
    #[arg(long)]
    heartbeat_interval_ms: Option<u64>,
    /// Full block report period [default: 3600000].
    #[arg(long)]
    block_report_interval_ms: Option<u64>,
    /// Do not fsync replicas when finalizing them.
    #[arg(long)]
    no_fsync: bool,
    /// Hostname reported to namenodes [default: the data address' ip].
    #[arg(long)]
    hostname: Option<String>,
    /// Re-replication copies sent, bytes/s all together; 0 = unlimited [default: 0].
    #[arg(long)]
    transfer_bytes_per_sec: Option<u64>,
    /// Block scanner read rate, bytes/s; 0 disables its passes (replicas a
    /// namenode asks to verify are still verified) [default: 8388608].
    #[arg(long)]
    scan_bytes_per_sec: Option<u64>,
    /// Period of full block scanner passes [default: 21600000].
    #[arg(long)]
    scan_interval_ms: Option<u64>,
    /// Failed data directories tolerated before the node stops [default: 0].
    #[arg(long)]
    failed_volumes_tolerated: Option<usize>,
    /// Most data-transfer connections served at once [default: 512].
    #[arg(long)]
    max_connections: Option<usize>,
    /// A new data-transfer connection must send its op header within this
    /// long or it is closed [default: 5000].
    #[arg(long)]
    op_header_timeout_ms: Option<u64>,
    /// Most connections waiting for their op header; one more closes the
    /// one that waited longest (below --max-connections) [default: 128].
    #[arg(long)]
    max_pending_headers: Option<usize>,
    /// Wait for a downstream datanode in a write pipeline, plus 2 s per
    /// further node; match the clients' datanode timeout [default: 30000].
    #[arg(long)]
    ack_timeout_ms: Option<u64>,
}

fn config(cli: Cli) -> Result<DatanodeConfig, rfs_datanode::Error> {
    let mut c = match &cli.config {
        Some(path) => DatanodeConfig::from_file(path)?,
        None => DatanodeConfig::default(),
    };
    if !cli.namenodes.is_empty() {
        c.namenodes = cli.namenodes;
    }
    if !cli.data_dirs.is_empty() {
        c.data_dirs = cli.data_dirs;
    }
    if c.data_dirs.is_empty() {
        c.data_dirs = vec![PathBuf::from(".rfs/data")];
    }
    c.data_addr = cli.data_addr.or(c.data_addr);
    c.http_addr = cli.http_addr.or(c.http_addr);
    if let Some(v) = cli.bytes_per_checksum {
        c.bytes_per_checksum = v;
    }
    if let Some(v) = cli.heartbeat_interval_ms {
        c.heartbeat_interval_ms = v;
    }
    if let Some(v) = cli.max_connections {
        c.max_connections = v;
    }
    if let Some(v) = cli.op_header_timeout_ms {
        c.op_header_timeout_ms = v;
    }
    if let Some(v) = cli.max_pending_headers {
        c.max_pending_headers = v;
    }
    if let Some(v) = cli.ack_timeout_ms {
        c.ack_timeout_ms = v;
    }
    if let Some(v) = cli.block_report_interval_ms {
        c.block_report_interval_ms = v;
    }
    if let Some(v) = cli.transfer_bytes_per_sec {
        c.transfer_bytes_per_sec = v;
    }
    if let Some(v) = cli.scan_bytes_per_sec {
        c.scan_bytes_per_sec = v;
    }
    if let Some(v) = cli.scan_interval_ms {
        c.scan_interval_ms = v;
    }
    if let Some(v) = cli.failed_volumes_tolerated {
        c.failed_volumes_tolerated = v;
    }
    c.no_fsync |= cli.no_fsync;
    if cli.hostname.is_some() {
        c.hostname = cli.hostname;
    }
    c.validate()?;
    Ok(c)
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        // Colour codes only for a person watching; log files stay plain.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let config = match config(cli) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("datanode: {e}");
            return ExitCode::FAILURE;
        }
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("datanode: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(rfs_datanode::run(config, shutdown_signal())) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("datanode: {e}");
            ExitCode::FAILURE
        }
    }
}
