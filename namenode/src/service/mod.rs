//! gRPC services of the namenode.
pub mod client;
pub mod datanode;
