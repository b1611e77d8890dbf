//! `rfs-bench`: throughput and failover benchmarks, each printed beside the
//! limits that bound it.
//!
//! - `limits` ([`limits`]): the machine's own limits (loopback TCP, disk,
//!   memcpy, CRC32C), measured in the same run as what they bound.
//! - `put-get` ([`put_get`]) and `meta` ([`meta`]): throughput and
//!   small-file metadata rates against a running cluster.
//! - `log-fsync` ([`log_fsync`]): the raft log's write + fdatasync on
//!   the name dirs' filesystem, appending vs preallocated vs zero-filled
//!   segments, 1 and 3 concurrent writers (also part of `limits`).
//! - `report` ([`report`]): one run's figures (rfs, MooseFS from
//!   `bench/peers/moosefs.sh`, limits) as a Markdown and JSON table and
//!   PNG charts ([`plot`]).
//! - `failover` and `creates` ([`ha`]): start their own HA group (nn1, nn2,
//!   a witness) from the release binaries next to `rfs-bench`, and measure
//!   the time from a leader's kill -9 to the next acknowledged create, and
//!   committed creates per second.
//! - `nn-memory` ([`nn_memory`]): a namenode's resident memory per file
//!   after N files of one block each, written by fake datanodes.
//!
//! Run them through `bench/run.sh`.

use anyhow::Result;
use clap::{Parser, Subcommand};

mod cpu;
mod figures;
mod ha;
mod limits;
mod log_fsync;
mod meta;
mod nn_image;
mod nn_memory;
mod plot;
mod put_get;
mod report;

#[derive(Parser)]
#[command(about = "rfs benchmarks, reported beside the limits that bound them")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// The machine's limits: loopback TCP, disk write (fsync) and cold
    /// read, the disk in each put's shape (fio), the raft log's fdatasync
    /// per file layout, memcpy, CRC32C on one core.
    Limits(limits::LimitsArgs),
    /// The raft log's write + fdatasync per file layout (appending,
    /// preallocated, zero-filled segments) with 1 and 3 concurrent
    /// writers; `limits` runs it too.
    LogFsync(log_fsync::LogFsyncArgs),
    /// Put then get one file per replication factor, then N clients at once.
    PutGet(put_get::PutGetArgs),
    /// Create, stat, list, delete N empty files with 1 and 16 tasks.
    Meta(meta::MetaArgs),
    /// Table (Markdown and JSON) and PNG charts of one run's `name value
    /// unit` lines.
    Report(report::ReportArgs),
    /// kill -9 the HA leader under a steady stream of creates, N rounds:
    /// time from the kill to the first acknowledged create.
    Failover(ha::FailoverArgs),
    /// Committed creates per second on an HA group, for each client count.
    Creates(ha::CreatesArgs),
    /// Wipe a follower of an HA group holding N files and restart it empty
    /// under a steady stream of creates: time to catch up (snapshot + log)
    /// and the longest commit pause meanwhile.
    Rebuild(ha::RebuildArgs),
    /// Namenode resident memory per file after N one-block files (fake
    /// datanodes; no data moves).
    NnMemory(nn_memory::NnMemoryArgs),
    /// A namenode loading N one-block files written offline into its
    /// checkpoint image (default 10M): time to serving and RSS per file.
    NnImage(nn_image::NnImageArgs),
}

#[tokio::main]
async fn main() -> Result<()> {
    let figures = match Cli::parse().cmd {
        Cmd::Limits(a) => return limits::run(&a),
        Cmd::LogFsync(a) => {
            return log_fsync::run(&a, std::path::Path::new(limits::DEFAULT_SCRATCH))
        }
        Cmd::PutGet(a) => put_get::run(&a).await?,
        Cmd::Meta(a) => meta::run(&a).await?,
        Cmd::NnMemory(a) => nn_memory::run(&a).await?,
        Cmd::NnImage(a) => nn_image::run(&a).await?,
        Cmd::Report(a) => return report::run(&a),
        Cmd::Failover(a) => return ha::failover(a).await,
        Cmd::Creates(a) => return ha::creates(a).await,
        Cmd::Rebuild(a) => return ha::rebuild(a).await,
    };
    figures::print(&figures);
    Ok(())
}
