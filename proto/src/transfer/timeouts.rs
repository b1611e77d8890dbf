//! How long each hop of a write pipeline waits for the hops below it.
//!
//! When a datanode stalls, every node upstream of it stops getting acks at
//! about the same moment. The node right above the stalled one must give
//! up first, so that its ack names the stalled node; if an upstream node
//! (or the client) timed out first it would blame its healthy neighbour
//! and pipeline recovery would drop the wrong node. So a hop with `k`
//! nodes below it waits `base + k × step`, as HDFS does: the client, with
//! the whole pipeline below it, waits longest. Client and datanodes should
//! use the same `base` (`datanode_timeout` / `ack_timeout_ms`).

use std::time::Duration;

/// Extra wait per downstream node.
pub const PIPELINE_TIMEOUT_STEP: Duration = Duration::from_secs(2);

/// The wait of a hop with `downstream` nodes below it.
pub fn pipeline_timeout(base: Duration, downstream: usize) -> Duration {
    base + PIPELINE_TIMEOUT_STEP * downstream as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_hops_wait_longer() {
        let base = Duration::from_secs(10);
        assert_eq!(pipeline_timeout(base, 0), base);
        assert!(pipeline_timeout(base, 2) > pipeline_timeout(base, 1));
        assert_eq!(pipeline_timeout(base, 3), Duration::from_secs(16));
    }
}
