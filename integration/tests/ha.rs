//! Namenode HA tests (issue 4): an HA group of real processes — nn1, nn2
//! and a witness in one raft group, plus 3 datanodes — through failover,
//! partition, restarts, a wiped member, retried calls, block deletion
//! after failover, a pipeline recovery confirmed by a new leader, a
//! witness that only votes, name dirs that fill up, and `dfs` given one
//! member's address only. Build the daemons first (`cargo build --bins`).
//!
//! The tests take a lock and run one at a time whatever `--test-threads`
//! says: each runs 6 processes with 50 ms raft ticks, and several at once
//! on a 2-core machine would turn scheduling delays into elections.

#[path = "cluster/common.rs"]
mod common;

mod ha {
    pub mod support;

    mod disk_full;
    mod fencing;
    mod kill_leader;
    mod one_address;
    mod partition;
    mod pipeline_recovery;
    mod restart;
    mod retry_cache;
    mod witness;
}
