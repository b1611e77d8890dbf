//! Multi-process tests: every test starts its own MiniCluster of real
//! `namenode` and `datanode` processes (build them first: `cargo build --bins`).

mod cluster {
    mod bad_replicas;
    pub mod common;
    mod data_path;
    mod datanode_protocol;
    mod dfs;
    mod durability;
    mod failures;
    mod lease_recovery;
    mod listing;
    mod names;
    mod namespace;
    mod pipeline_recovery;
    mod put;
    mod quickstart;
    mod raw_recovery;
    mod replication;
    mod shell;
    mod small_files;
    mod stale_replicas;
    pub mod writer_process;
}
