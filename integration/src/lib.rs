//! Multi-process test support for rfs.
//!
//! [`MiniCluster`] starts real `namenode` and `datanode` processes (the
//! binaries of this workspace) on free 127.0.0.1 ports with tiny blocks and
//! temporary directories, and kills them when dropped; one datanode may run
//! inside a network namespace ([`NetNs`]) so a test can cut it off. [`HaCluster`] does the
//! same for an HA group (nn1, nn2 and a witness in one raft group), with one
//! member optionally inside a network namespace ([`NetNs`]) so a test can cut
//! it off. Tests reach the clusters through `rfs_client` exactly as users
//! do, and reach into the datanodes' directories to check or damage replicas
//! on disk. [`files`] writes and reads whole files of deterministic bytes;
//! [`load`] runs concurrent clients that log what was acknowledged and
//! checks that log against the namespace after a crash or a partition.
//! [`Tmpfs`] gives a namenode a small disk a test can fill.

pub mod files;
pub mod ha_cluster;
pub mod load;
pub mod mini_cluster;
pub mod netns;
mod process;
pub mod replica_files;
pub mod tmpfs;

pub use ha_cluster::{HaCluster, HaClusterBuilder, NN1, NN2, WITNESS};
pub use mini_cluster::{MiniCluster, MiniClusterBuilder};
pub use netns::{netns_unavailable, require_netns, NetNs};
pub use process::{bin_path, fetch_metrics, free_port, free_port_on, metric_value};
pub use replica_files::{find_replicas, rbw_files, verify_replica, ReplicaFiles};
pub use tmpfs::{require_tmpfs, Tmpfs};
