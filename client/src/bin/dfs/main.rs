//! `dfs`: the rfs shell. Parses the command line, finds the namenodes and
//! hands off to [`commands`] (file system commands, through one client that
//! follows the group's leader) or [`commands::admin`] (which asks each
//! member itself); every failure is one `dfs: <error>` line and exit
//! status 1.

mod civil_time;
mod cli;
mod commands;
mod listing_format;
mod namenode_addr;
mod progress;
mod remote_path;

use std::path::Path;
use std::process::ExitCode;

use clap::Parser;
use rfs_client::{Client, ClientConfig};

use commands::Report;

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
        Ok(rt) => rt.block_on(run(cli, &mut report)),
        Err(e) => report.fail(anyhow::anyhow!("cannot start the runtime: {e}")),
    }
    if report.failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
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
            let client = match Client::connect(ClientConfig::with_namenodes(addrs)).await {
                Ok(client) => client,
                Err(e) => return report.fail(e.into()),
            };
            report.check(commands::health::admin(&client, cmd).await)
        }
        cli::Cmd::Admin(cmd) => commands::admin::run(&namenodes, cmd, report).await,
        cli::Cmd::Fs(cmd) => {
            let addrs: Vec<String> = namenodes.into_iter().map(|n| n.addr).collect();
            let mut config = ClientConfig::with_namenodes(addrs.clone());
            config.replace_datanode_on_failure = cli.replace_datanode_on_failure;
            let client = match Client::connect(config).await {
                Ok(c) => c,
                Err(e) => return report.fail(e.into()),
            };
            commands::run(&client, &addrs.join(","), cmd, report).await;
        }
    }
}
