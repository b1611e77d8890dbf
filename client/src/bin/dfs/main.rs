//! `dfs`: the rfs shell. Parses the command line, finds the namenodes (and
//! remembers their group for later runs, [`group_cache`]) and hands off to
//! [`commands`] (file system commands, through one client that follows the
//! group's leader) or [`commands::admin`] (which asks each member itself);
//! every failure is one `dfs: <error>` line and exit status 1. SIGINT and SIGTERM stop a file system command after deleting
//! the files it was writing under temporary names ([`interrupt`]); the
//! exit status is then 128 + the signal's number.

mod civil_time;
mod cli;
mod commands;
mod group_cache;
mod interrupt;
mod listing_format;
mod namenode_addr;
mod progress;
mod remote_path;
mod writer_lock;

use std::path::Path;
use std::process::ExitCode;

use clap::Parser;
use rfs_client::{Client, ClientConfig};

use commands::Report;
use group_cache::GroupCache;
use interrupt::{Interrupts, Unfinished};
use writer_lock::LockDir;

fn main() -> ExitCode {
    let cli = cli::Cli::parse_from(cli::hdfs_style_args(std::env::args()));
    // `dfs cat big | head`: end quietly when the reader goes away, as Unix
    // tools do, instead of panicking on a closed stdout.
    // SAFETY: called first thing, before any other thread exists.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("error")),
        )
        .with_writer(std::io::stderr)
        // Colour codes only for a person watching; log files stay plain.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let mut report = Report::default();
    match tokio::runtime::Runtime::new() {
        Ok(rt) => {
            rt.block_on(run(cli, &mut report));
            // Without waiting: a put from stdin that was interrupted leaves
            // a blocking read of stdin that nothing can cancel.
            rt.shutdown_background();
        }
        Err(e) => report.fail(anyhow::anyhow!("cannot start the runtime: {e}")),
    }
    match report.signal {
        Some(signal) => ExitCode::from(128u8.saturating_add(signal as u8)),
        None if report.failed => ExitCode::FAILURE,
        None => ExitCode::SUCCESS,
    }
}

async fn run(cli: cli::Cli, report: &mut Report) {
    let namenodes = match namenode_addr::resolve(
        cli.namenode.as_deref(),
        cli.config.as_deref(),
        |k| std::env::var(k).ok(),
        Path::new(namenode_addr::SYSTEM_CONFIG),
    ) {
        Ok(list) => list,
        Err(e) => return report.fail(e),
    };
    match cli.cmd {
        cli::Cmd::Admin(cmd @ (cli::AdminCmd::Report | cli::AdminCmd::Decommission { .. })) => {
            let addrs: Vec<String> = namenodes.into_iter().map(|n| n.addr).collect();
            let client = match connect(ClientConfig::with_namenodes(addrs)).await {
                Ok(client) => client,
                Err(e) => return report.fail(e),
            };
            report.check(commands::health::admin(&client, cmd).await)
        }
        cli::Cmd::Admin(cmd) => commands::admin::run(&namenodes, cmd, report).await,
        cli::Cmd::Fs(cmd) => {
            let addrs: Vec<String> = namenodes.into_iter().map(|n| n.addr).collect();
            let mut config = ClientConfig::with_namenodes(addrs);
            config.replace_datanode_on_failure = cli.replace_datanode_on_failure;
            run_fs(config, cmd, report).await
        }
    }
}

/// Runs a file system command until it ends or SIGINT/SIGTERM stops it;
/// then deletes what it was writing under temporary names.
async fn run_fs(mut config: ClientConfig, cmd: cli::FsCmd, report: &mut Report) {
    // A put writes under a client id locked on this host, so that a later
    // put can tell whether it still runs.
    let locks = matches!(cmd, cli::FsCmd::Put { .. })
        .then(|| LockDir::for_user().map_err(|e| tracing::debug!("no writer locks: {e}")))
        .and_then(Result::ok);
    let mut own_lock = locks.as_ref().and_then(|dir| {
        dir.lock_new_writer()
            .map_err(|e| tracing::debug!("no writer lock: {e}"))
            .ok()
    });
    config.client_id = own_lock.as_ref().map(|l| l.client_id().to_string());
    let namenode = config.namenodes.join(",");
    let client = match connect(config).await {
        Ok(c) => c,
        Err(e) => return report.fail(e),
    };
    let mut interrupts = match Interrupts::listen() {
        Ok(i) => i,
        Err(e) => return report.fail(anyhow::anyhow!("cannot catch signals: {e}")),
    };
    let unfinished = Unfinished::default();
    let writing = commands::Writing {
        locks: locks.as_ref(),
        unfinished: &unfinished,
    };
    let interrupted = tokio::select! {
        () = commands::run(&client, &namenode, cmd, &writing, report) => None,
        signal = interrupts.next() => Some(signal),
    };
    if let Some((number, name)) = interrupted {
        report.interrupted(number, name);
        // A second signal, or a namenode that does not answer, cuts the
        // cleanup short.
        tokio::select! {
            () = unfinished.discard(&client) => {}
            _ = interrupts.next() => {}
            () = tokio::time::sleep(interrupt::CLEANUP_LIMIT) => {}
        }
    }
    for path in unfinished.paths() {
        // Still held under this client's id: the lock file stays, so that
        // a put on this host finds this writer dead and takes it over.
        let hint = match own_lock.as_mut() {
            Some(lock) => {
                lock.keep_file();
                " (a put of the same file on this host takes it over)"
            }
            None => "",
        };
        report.fail(anyhow::anyhow!("{path}: left behind unfinished{hint}"));
    }
}

/// Connects to the namenodes `config` names. When none of them answers,
/// the other members of their group, remembered from an earlier run
/// ([`group_cache`]), stand in; the group learnt is remembered for the
/// next run.
async fn connect(mut config: ClientConfig) -> anyhow::Result<Client> {
    let cache = GroupCache::for_user(|k| std::env::var(k).ok());
    let given = config.namenodes.clone();
    if let Some(cache) = &cache {
        config.remembered_namenodes = cache.remembered(&given);
    }
    let remembered = !config.remembered_namenodes.is_empty();
    match Client::connect(config).await {
        Ok(client) => {
            if let (Some(cache), Some(group)) = (&cache, client.namenode_group()) {
                cache.remember(&given, group);
            }
            Ok(client)
        }
        Err(
            e @ (rfs_client::Error::NamenodeUnreachable { .. }
            | rfs_client::Error::NamenodesUnreachable { .. }),
        ) if !remembered => Err(anyhow::anyhow!(
            "{e}; is the namenode running? If it is an HA member that is down, name another \
             member (--namenode HOST:PORT[,HOST:PORT...] or RFS_NAMENODE): dfs learns the \
             whole group from any member that answers"
        )),
        Err(e) => Err(e.into()),
    }
}
