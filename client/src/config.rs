//! Client settings. Where the namenode addresses come from (flags,
//! environment, config file) is the `dfs` shell's business; the library
//! takes a finished [`ClientConfig`].

use std::time::Duration;

use rfs_proto::defaults;
use rfs_proto::transfer::MAX_FRAME_LEN;

use crate::error::{Error, Result};

#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// RPC addresses (`host:port`) of the namenode group, in any order:
    /// one namenode, or members of an HA group (witness included). Any
    /// one member is enough: the first to answer names the others (see
    /// [`crate::Client::namenode_group`]). Calls go to whichever member
    /// leads; see `failover_deadline`.
    pub namenodes: Vec<String>,
    /// The members of the group `namenodes` belonged to when last seen
    /// (the `dfs` shell remembers them between runs). Those not in
    /// `namenodes` are dialed only when none of `namenodes` accepts a
    /// connection, and one is used only if it still names a member at
    /// every one of these addresses.
    pub remembered_namenodes: Vec<String>,
    /// Lease holder name; `None` gives `rfs-client-<uuid>`. One id per
    /// client: its call ids count up from 1, and the namenodes refuse a
    /// call numbered below what the id's later calls said was answered.
    pub client_id: Option<String>,
    /// This machine's host name or address, sent for writer-local placement
    /// and used to prefer a local replica when reading.
    pub client_host: String,
    /// Replication of new files; `None` leaves it to the namenode.
    pub replication: Option<u32>,
    /// Block size of new files; `None` leaves it to the namenode.
    pub block_size: Option<u64>,
    /// Bytes of block data per packet; a multiple of `bytes_per_checksum`.
    pub packet_size: usize,
    /// Bytes covered by one CRC32C when writing.
    pub bytes_per_checksum: u32,
    /// Packets sent down a pipeline before their acks come back.
    pub max_packets_in_flight: usize,
    /// Limit on each attempt of a namenode call; a member that does not
    /// answer in time is left for the next one.
    pub rpc_timeout: Duration,
    /// How long one namenode call keeps trying members (following leader
    /// hints, skipping unreachable ones, backing off) before it fails.
    /// Every member is tried at least once, whatever the deadline.
    pub failover_deadline: Duration,
    /// Limit on each datanode wait: connect, op response, ack, packet.
    pub datanode_timeout: Duration,
    pub lease_renew_interval: Duration,
    /// How long a read retries a block the namenode knows no replica of.
    pub locate_retry_deadline: Duration,
    /// Whether a write pipeline that lost a datanode asks for another.
    pub replace_datanode_on_failure: ReplaceDatanode,
}

/// When a write pipeline that lost datanodes asks the namenode for
/// replacements (HDFS `dfs.client.block.write.replace-datanode-on-failure`).
/// Without one the block goes on with fewer replicas and the namenode
/// re-replicates it once the file is closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ReplaceDatanode {
    /// Never: the block finishes on the survivors.
    Never,
    /// With replication 3 or more, when at most half the nodes are left
    /// or the block was flushed (hflush/hsync).
    #[default]
    Default,
    /// Always bring the pipeline back to the file's replication.
    Always,
}

impl std::str::FromStr for ReplaceDatanode {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "never" => Ok(ReplaceDatanode::Never),
            "default" => Ok(ReplaceDatanode::Default),
            "always" => Ok(ReplaceDatanode::Always),
            other => Err(format!(
                "unknown replace-datanode-on-failure policy {other:?}: use never, default or always"
            )),
        }
    }
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            namenodes: vec![format!("127.0.0.1:{}", defaults::NAMENODE_RPC_PORT)],
            remembered_namenodes: Vec::new(),
            client_id: None,
            client_host: "127.0.0.1".to_string(),
            replication: None,
            block_size: None,
            packet_size: defaults::PACKET_SIZE,
            bytes_per_checksum: defaults::BYTES_PER_CHECKSUM,
            max_packets_in_flight: 16,
            rpc_timeout: Duration::from_secs(30),
            failover_deadline: Duration::from_secs(30),
            datanode_timeout: Duration::from_secs(30),
            lease_renew_interval: Duration::from_secs(10),
            locate_retry_deadline: Duration::from_secs(30),
            replace_datanode_on_failure: ReplaceDatanode::Default,
        }
    }
}

impl ClientConfig {
    /// Defaults with the namenodes in `addrs`: one `host:port`, or several
    /// separated by commas (`"nn1:8020,nn2:8020"`). Blanks around the
    /// addresses and empty items are dropped.
    pub fn with_namenode(addrs: impl Into<String>) -> Self {
        Self::with_namenodes(split_addrs(&addrs.into()))
    }

    /// Defaults with the namenode group `addrs`, one `host:port` each.
    pub fn with_namenodes(addrs: Vec<String>) -> Self {
        ClientConfig {
            namenodes: addrs,
            ..Default::default()
        }
    }

    /// Rejects settings the data path cannot honour.
    pub(crate) fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::Config(m));
        if self.namenodes.is_empty() {
            return bad("no namenode address is given".into());
        }
        if let Some(a) = self
            .namenodes
            .iter()
            .find(|a| a.trim().is_empty() || a.contains(|c: char| c == ',' || c.is_whitespace()))
        {
            return bad(format!(
                "invalid namenode address {a:?}: give one host:port per entry"
            ));
        }
        if self.bytes_per_checksum == 0 {
            return bad("bytes_per_checksum must be positive".into());
        }
        let bpc = self.bytes_per_checksum as usize;
        if self.packet_size == 0 || !self.packet_size.is_multiple_of(bpc) {
            return bad(format!(
                "packet_size {} must be a positive multiple of bytes_per_checksum {bpc}",
                self.packet_size
            ));
        }
        // Leave room for the packet header and checksums in one frame.
        if self.packet_size > MAX_FRAME_LEN - 256 * 1024 {
            return bad(format!(
                "packet_size {} exceeds the largest packet ({} bytes)",
                self.packet_size,
                MAX_FRAME_LEN - 256 * 1024
            ));
        }
        if self.max_packets_in_flight == 0 {
            return bad("max_packets_in_flight must be at least 1".into());
        }
        if self.block_size == Some(0) {
            return bad("block_size must be positive".into());
        }
        if self.replication == Some(0) {
            return bad("replication must be at least 1".into());
        }
        for (name, d) in [
            ("rpc_timeout", self.rpc_timeout),
            ("failover_deadline", self.failover_deadline),
            ("datanode_timeout", self.datanode_timeout),
            ("lease_renew_interval", self.lease_renew_interval),
        ] {
            if d.is_zero() {
                return bad(format!("{name} must be positive"));
            }
        }
        Ok(())
    }
}

/// `"a:1, b:2,"` → `["a:1", "b:2"]`.
fn split_addrs(s: &str) -> Vec<String> {
    s.split(',')
        .map(str::trim)
        .filter(|a| !a.is_empty())
        .map(str::to_string)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namenode_lists() {
        assert_eq!(ClientConfig::with_namenode("nn:1").namenodes, ["nn:1"]);
        let c = ClientConfig::with_namenode(" a:1, b:2 ,");
        assert_eq!(c.namenodes, ["a:1", "b:2"]);
        c.validate().expect("a list is valid");
        let c = ClientConfig::with_namenodes(vec!["a:1".into(), "b:2".into()]);
        assert_eq!(c.namenodes, ["a:1", "b:2"]);
        assert_eq!(
            ClientConfig::default().namenodes,
            [format!("127.0.0.1:{}", defaults::NAMENODE_RPC_PORT)]
        );
        let err = ClientConfig::with_namenode(" , ").validate().unwrap_err();
        assert!(err.to_string().contains("no namenode"), "{err}");
        for bad in ["", "a:1,b:2", "a :1"] {
            let err = ClientConfig::with_namenodes(vec![bad.into()])
                .validate()
                .unwrap_err();
            assert!(err.to_string().contains("one host:port"), "{bad:?}: {err}");
        }
    }

    #[test]
    fn defaults_are_valid_and_checked() {
        let c = ClientConfig::with_namenode("nn:1");
        assert_eq!(c.failover_deadline, Duration::from_secs(30));
        assert_eq!(c.packet_size, 64 * 1024);
        c.validate().expect("defaults are valid");
        let mut bad = c.clone();
        bad.packet_size = 1000;
        assert!(bad.validate().unwrap_err().to_string().contains("multiple"));
        let mut bad = c.clone();
        bad.max_packets_in_flight = 0;
        assert!(bad.validate().is_err());
        let mut bad = c;
        bad.failover_deadline = Duration::ZERO;
        let err = bad.validate().unwrap_err().to_string();
        assert!(err.contains("failover_deadline must be positive"), "{err}");
    }
}
