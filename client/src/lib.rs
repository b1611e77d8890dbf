//! rfs client library: namenode calls through [`Client`] (to the leader of
//! a namenode group, following it through failovers), file data through
//! [`FileWriter`] (`AsyncWrite`, replication pipeline) and [`FileReader`]
//! (`AsyncRead` + `AsyncSeek` + positional reads, checksum-verified with
//! replica failover). All datanode I/O goes through
//! `rfs_transport::default_transport()`. [`ha_admin`] asks one member of
//! a namenode group about the group, or to hand leadership over.
//!
//! ```no_run
//! # async fn demo() -> rfs_client::Result<()> {
//! use rfs_client::{Client, ClientConfig, CreateOptions};
//! use tokio::io::{AsyncReadExt, AsyncWriteExt};
//!
//! // One namenode, or any member of an HA group: it names the others.
//! let client = Client::connect(ClientConfig::with_namenode("127.0.0.1:8020")).await?;
//! let mut w = client.create("/data/x", CreateOptions::default()).await?;
//! w.write_all(b"hello").await?; // io::Error converts back into rfs_client::Error
//! w.close().await?;
//! let mut r = client.open("/data/x").await?;
//! let mut s = String::new();
//! r.read_to_string(&mut s).await?;
//! # Ok(()) }
//! ```

mod batch;
mod call_ids;
mod client;
mod config;
mod datanode;
mod error;
pub mod ha_admin;
mod lease;
mod listing;
mod namenode;
mod namenode_group;
mod read;
mod write;

pub use client::{Client, CreateOptions};
pub use config::{ClientConfig, ReplaceDatanode};
pub use error::{Error, Result};
pub use listing::ListPages;
pub use namenode_group::{NamenodeGroup, NamenodeMember};
pub use read::FileReader;
pub use rfs_proto::namenode::{
    ContentSummaryResponse as ContentSummary, DatanodeReportEntry, FileStatus, FileType,
    FsStatsResponse as FsStats, FsckBlock, FsckFile, FsckResponse as FsckReport,
    GetBlockLocationsResponse as BlockLocations,
};
pub use write::FileWriter;
