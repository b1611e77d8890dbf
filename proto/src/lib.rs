//! Everything that crosses the rfs wire.
//!
//! - [`common`], [`namenode`], [`datanode`]: the gRPC messages and services
//!   (tonic/prost) between clients, namenodes and datanodes.
//! - [`ha`]: raft traffic between the namenodes of an HA group, and the
//!   admin view of the group.
//! - [`transfer`]: the binary framing of the data-transfer protocol (op
//!   headers, packets of block data with their CRC32C checksums, pipeline
//!   acks), shared by datanodes and clients.
//! - [`defaults`]: the well-known ports and sizes every party agrees on.
//! - [`names`]: what a name in the namespace may hold.
//! - [`batch`]: one call of a `Batch` answered by a `ClientProtocol`
//!   service as its own RPC would be.
//!
//! This crate owns no I/O: moving frames over a socket or RDMA is
//! `rfs-transport`'s job.

/// Shared message types. Compiled by hand from `hdfs_common.proto` through
/// `extern_path`, so nested modules can name them absolutely.
pub mod common {
    include!(concat!(env!("OUT_DIR"), "/common/rfs.common.rs"));
}
pub mod namenode {
    tonic::include_proto!("rfs.namenode");
}
pub mod datanode {
    tonic::include_proto!("rfs.datanode");
}
pub mod ha {
    tonic::include_proto!("rfs.ha");
}
pub mod batch;
pub mod defaults;
pub mod interner;
pub mod listing;
pub mod names;
pub mod rpc_error;
pub mod transfer;
