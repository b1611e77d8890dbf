//! `namenode`: parses flags and the config file, then runs the library.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;
use rfs_namenode::Config;

/// The rfs namenode: keeps the namespace and the block map; clients and
/// datanodes talk to it over gRPC.
///
/// With an [ha] section in the config file, namenodes form a raft group:
/// start each member with --id naming its entry there (nn1, nn2, ...),
/// and the witness with --id <its id> --witness. The leader serves; the
/// others stay hot and take over within seconds if it fails.
#[derive(Parser, Debug)]
#[command(version, about, long_about = None)]
struct Args {
    /// TOML config file; its [namenode] section sets defaults for the flags
    /// below, its [ha] section lists the raft group's members.
    #[arg(long)]
    config: Option<PathBuf>,
    /// This member's id in the config's [ha] section (e.g. nn1).
    #[arg(long)]
    id: Option<String>,
    /// Run as the group's witness: votes and keeps the raft log, never
    /// leads or serves clients (its [ha] entry must say witness = true).
    #[arg(long)]
    witness: bool,
    /// Address for client and datanode RPC [default: 127.0.0.1:8020;
    /// with [ha]: this member's rpc_addr there].
    #[arg(long)]
    rpc_addr: Option<SocketAddr>,
    /// Address for HTTP (/metrics) [default: 127.0.0.1:9870].
    #[arg(long)]
    http_addr: Option<SocketAddr>,
    /// Directory for the metadata store and raft log [default: .rfs/name].
    #[arg(long)]
    name_dir: Option<PathBuf>,
    /// Cache for moving an older rfs's sled store (meta.sled/) into the
    /// checkpoint image, once, in MiB [default: 16].
    #[arg(long)]
    cache_mib: Option<u64>,
    /// Free space the name dir must keep, in MiB (0: no check). Below it a
    /// leader hands over to a member with room, or, while none has,
    /// refuses changes and serves only reads [default: 100].
    #[arg(long)]
    name_dir_reserved_mib: Option<u64>,
    /// Default block size of new files, in bytes [default: 536870912].
    #[arg(long)]
    block_size: Option<u64>,
    /// Default replication of new files [default: 3].
    #[arg(long)]
    replication: Option<u32>,
    /// Smallest block size a new file may have, in bytes [default: 1048576].
    #[arg(long)]
    min_block_size: Option<u64>,
    /// Most blocks one file may have [default: 10000].
    #[arg(long)]
    max_blocks_per_file: Option<u64>,
    /// Most inodes one raft entry of a recursive delete frees; a larger
    /// subtree is unlinked at once and freed in steps [default: 1000].
    #[arg(long)]
    delete_step: Option<u32>,
    /// Milliseconds without a heartbeat after which a datanode is dead [default: 30000].
    #[arg(long)]
    datanode_dead_ms: Option<u64>,
    /// Milliseconds without renewal after which another client may take a file over [default: 60000].
    #[arg(long)]
    lease_soft_limit_ms: Option<u64>,
    /// Milliseconds without renewal after which the namenode recovers and
    /// closes the file itself [default: 1200000].
    #[arg(long)]
    lease_hard_limit_ms: Option<u64>,
    /// How often the leader looks for files past the hard limit, in
    /// milliseconds [default: 2000].
    #[arg(long)]
    lease_recovery_interval_ms: Option<u64>,
    /// How often the leader checks replica counts and schedules copies or
    /// deletions, in milliseconds [default: 3000].
    #[arg(long)]
    replication_interval_ms: Option<u64>,
    /// Files one replication check looks at; a cycle over the whole
    /// namespace takes as many checks as it needs [default: 50000].
    #[arg(long)]
    replication_files_per_pass: Option<usize>,
}

/// The config file's `[namenode]` section (or the defaults), then flags.
fn config(args: Args) -> Result<Config, rfs_namenode::NamenodeError> {
    let mut c = match &args.config {
        Some(p) => Config::from_file(p)?,
        None => Config::default(),
    };
    macro_rules! set {
        ($($f:ident),*) => { $(if let Some(v) = args.$f { c.$f = v; })* };
    }
    set!(
        rpc_addr,
        http_addr,
        name_dir,
        cache_mib,
        name_dir_reserved_mib,
        block_size,
        replication,
        min_block_size,
        max_blocks_per_file,
        delete_step,
        datanode_dead_ms,
        lease_soft_limit_ms,
        lease_hard_limit_ms,
        lease_recovery_interval_ms,
        replication_interval_ms,
        replication_files_per_pass
    );
    if let Some(id) = args.id {
        c.id = id;
    }
    c.witness |= args.witness;
    c.validate()?;
    c.resolve_member()?;
    Ok(c)
}

async fn shutdown_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!("cannot watch SIGTERM ({e}); only SIGINT stops the namenode");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

#[tokio::main]
async fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        // Colour codes only for a person watching; log files stay plain.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    if let Err(e) = start(Args::parse()).await {
        // One line, whatever the error's own formatting.
        let text = format!("{e:#}");
        let line: Vec<&str> = text.split_whitespace().collect();
        eprintln!("namenode: {}", line.join(" "));
        std::process::exit(1);
    }
}

async fn start(args: Args) -> anyhow::Result<()> {
    let config = config(args)?;
    rfs_namenode::run(config, shutdown_signal()).await?;
    Ok(())
}
