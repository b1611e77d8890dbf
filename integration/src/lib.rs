//! Multi-process test support for rfs.
//!
//! [`MiniCluster`] starts real `namenode` and `datanode` processes (the
//! binaries of this workspace) on free 127.0.0.1 ports with tiny blocks and
//! temporary directories, and kills them when dropped. Tests reach the
//! cluster through `rfs_client` exactly as users do, and reach into the
//! datanodes' directories to check or damage replicas on disk.

pub mod mini_cluster;
pub mod replica_files;

pub use mini_cluster::{MiniCluster, MiniClusterBuilder};
pub use replica_files::{find_replicas, verify_replica, ReplicaFiles};
