//! `rfs-bench`: throughput and failover benchmarks, each printed beside the
//! limits that bound it.
//!
//! - `put-get` ([`put_get`]): one file put and got against a running
//!   cluster, beside iperf3 loopback and disk speed.
//! - `failover` and `creates` ([`ha`]): start their own HA group (nn1, nn2,
//!   a witness) from the release binaries next to `rfs-bench`, and measure
//!   the time from a leader's kill -9 to the next acknowledged create, and
//!   committed creates per second.
//!
//! Run them through `bench/run.sh`.

use anyhow::Result;
use clap::{Parser, Subcommand};

mod ha;
mod put_get;

#[derive(Parser)]
#[command(about = "rfs benchmarks, reported beside the limits that bound them")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Put then get one file per replication factor; MB/s beside iperf3 and disk.
    PutGet(put_get::PutGetArgs),
    /// kill -9 the HA leader under a steady stream of creates, N rounds:
    /// time from the kill to the first acknowledged create.
    Failover(ha::FailoverArgs),
    /// Committed creates per second on an HA group, for each client count.
    Creates(ha::CreatesArgs),
}

#[tokio::main]
async fn main() -> Result<()> {
    match Cli::parse().cmd {
        Cmd::PutGet(a) => put_get::run(a).await,
        Cmd::Failover(a) => ha::failover(a).await,
        Cmd::Creates(a) => ha::creates(a).await,
    }
}
