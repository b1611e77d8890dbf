//! Typed datanode configuration: the `[datanode]` section of the config
//! file, with every field defaulted, overridden by command-line flags in
//! `main.rs`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use tonic::transport::Endpoint;

use crate::error::{Error, Result};

/// Largest chunk size a writer may ask for.
pub const MAX_BYTES_PER_CHECKSUM: u32 = 1024 * 1024;

/// A value the config file may give as one string or as a list.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum OneOrMany<T> {
    One(T),
    Many(Vec<T>),
}

fn one_or_many<'de, D, T>(d: D) -> std::result::Result<Vec<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Ok(match OneOrMany::<T>::deserialize(d)? {
        OneOrMany::One(v) => vec![v],
        OneOrMany::Many(v) => v,
    })
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DatanodeConfig {
    /// Namenode RPC addresses (`host:port`); each gets registrations,
    /// heartbeats and block reports. Empty: no reporting.
    #[serde(alias = "namenode", deserialize_with = "one_or_many")]
    pub namenodes: Vec<String>,
    /// Data directories (volumes).
    #[serde(alias = "data_dir", deserialize_with = "one_or_many")]
    pub data_dirs: Vec<PathBuf>,
    /// Data-transfer address; `None`: 127.0.0.1:9866 or the next free port.
    pub data_addr: Option<SocketAddr>,
    /// HTTP (/metrics) address; `None`: 127.0.0.1:9864 or the next free port.
    pub http_addr: Option<SocketAddr>,
    /// Chunk size this node advertises as its default.
    pub bytes_per_checksum: u32,
    pub heartbeat_interval_ms: u64,
    pub block_report_interval_ms: u64,
    /// Skip fsync when finalizing replicas (tests, benchmarks).
    pub no_fsync: bool,
    /// Hostname reported to namenodes; default: the data address' ip.
    pub hostname: Option<String>,
    /// Most data-transfer connections served at once.
    pub max_connections: usize,
    /// A connection with no frame for this long is closed.
    pub idle_timeout_ms: u64,
    /// A new connection must send its complete op header within this long.
    pub op_header_timeout_ms: u64,
    /// Most connections waiting for their op header; one more closes the
    /// one that has waited longest. Below `max_connections`, so silent
    /// connections can never take every slot.
    pub max_pending_headers: usize,
    /// Longest wait for a downstream ack or op response.
    pub ack_timeout_ms: u64,
    /// Timeout of one RPC to a namenode; also the longest wait for a
    /// leader to confirm a recovery (`recovery_check.rs`).
    pub rpc_timeout_ms: u64,
    /// Rate of re-replication copies this node sends (COPY_BLOCK and the
    /// namenode's TransferBlock), all together; 0: unlimited.
    pub transfer_bytes_per_sec: u64,
    /// Block scanner read rate (re-verifying finalized replicas'
    /// checksums), also for replicas a namenode asks to verify; 0 disables
    /// the passes (those replicas are then verified unpaced).
    pub scan_bytes_per_sec: u64,
    /// A full scanner pass starts this long after the previous one started
    /// (at once if that one took longer).
    pub scan_interval_ms: u64,
    /// Failed data dirs the node keeps running with (serving the others);
    /// one more stops it, at start or at run time. Below the number of
    /// data dirs.
    pub failed_volumes_tolerated: usize,
}

impl Default for DatanodeConfig {
    fn default() -> Self {
        DatanodeConfig {
            namenodes: Vec::new(),
            data_dirs: Vec::new(),
            data_addr: None,
            http_addr: None,
            bytes_per_checksum: rfs_proto::defaults::BYTES_PER_CHECKSUM,
            heartbeat_interval_ms: 3000,
            block_report_interval_ms: 3_600_000,
            no_fsync: false,
            hostname: None,
            max_connections: 512,
            idle_timeout_ms: 60_000,
            op_header_timeout_ms: 5_000,
            max_pending_headers: 128,
            ack_timeout_ms: 30_000,
            rpc_timeout_ms: 10_000,
            transfer_bytes_per_sec: 0,
            scan_bytes_per_sec: 8 * 1024 * 1024,
            scan_interval_ms: 6 * 3_600_000,
            failed_volumes_tolerated: 0,
        }
    }
}

/// The config file: only the `[datanode]` section is ours.
#[derive(Debug, Default, Deserialize)]
struct ConfigFile {
    #[serde(default)]
    datanode: DatanodeConfig,
}

impl DatanodeConfig {
    /// Reads the `[datanode]` section of a TOML file (other sections ignored).
    pub fn from_file(path: &std::path::Path) -> Result<DatanodeConfig> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::Config(format!("cannot read {}: {e}", path.display())))?;
        Self::from_toml(&text).map_err(|e| Error::Config(format!("{}: {e}", path.display())))
    }

    pub fn from_toml(text: &str) -> std::result::Result<DatanodeConfig, String> {
        let file: ConfigFile = toml::from_str(text).map_err(|e| e.to_string())?;
        Ok(file.datanode)
    }

    /// Checks values that would otherwise fail later and less clearly.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::Config(m));
        if self.bytes_per_checksum == 0 || self.bytes_per_checksum > MAX_BYTES_PER_CHECKSUM {
            return bad(format!(
                "bytes-per-checksum {} must be between 1 and {MAX_BYTES_PER_CHECKSUM}",
                self.bytes_per_checksum
            ));
        }
        if self.heartbeat_interval_ms == 0 {
            return bad("heartbeat-interval-ms must be positive".into());
        }
        if self.block_report_interval_ms == 0 {
            return bad("block-report-interval-ms must be positive".into());
        }
        if self.scan_bytes_per_sec > 0 && self.scan_interval_ms == 0 {
            return bad("scan-interval-ms must be positive while the scanner is on".into());
        }
        if self.max_connections == 0 {
            return bad("max-connections must be positive".into());
        }
        if self.max_pending_headers == 0 || self.max_pending_headers >= self.max_connections {
            return bad(format!(
                "max-pending-headers {} must be positive and below max-connections {}",
                self.max_pending_headers, self.max_connections
            ));
        }
        if self.data_dirs.is_empty() {
            return bad("no data directory configured (--data-dir)".into());
        }
        if self.failed_volumes_tolerated >= self.data_dirs.len() {
            return bad(format!(
                "failed-volumes-tolerated {} must be less than the number of data directories ({})",
                self.failed_volumes_tolerated,
                self.data_dirs.len()
            ));
        }
        for nn in &self.namenodes {
            if nn.trim().is_empty() {
                return bad("empty namenode address".into());
            }
        }
        Ok(())
    }

    pub fn heartbeat_interval(&self) -> Duration {
        Duration::from_millis(self.heartbeat_interval_ms)
    }
    pub fn block_report_interval(&self) -> Duration {
        Duration::from_millis(self.block_report_interval_ms)
    }
    pub fn idle_timeout(&self) -> Duration {
        Duration::from_millis(self.idle_timeout_ms.max(1))
    }
    pub fn op_header_timeout(&self) -> Duration {
        Duration::from_millis(self.op_header_timeout_ms.max(1))
    }
    pub fn ack_timeout(&self) -> Duration {
        Duration::from_millis(self.ack_timeout_ms.max(1))
    }
    pub fn rpc_timeout(&self) -> Duration {
        Duration::from_millis(self.rpc_timeout_ms.max(1))
    }
    /// The gRPC endpoint of namenode `addr` (`host:port` or a URI), with
    /// this node's RPC timeouts.
    pub fn namenode_endpoint(&self, addr: &str) -> Result<Endpoint> {
        let uri = if addr.contains("://") {
            addr.to_string()
        } else {
            format!("http://{addr}")
        };
        let endpoint = Endpoint::from_shared(uri)
            .map_err(|e| Error::Config(format!("namenode address {addr:?} is unusable: {e}")))?;
        Ok(endpoint
            .connect_timeout(self.rpc_timeout())
            .timeout(self.rpc_timeout()))
    }
    pub fn scan_interval(&self) -> Duration {
        Duration::from_millis(self.scan_interval_ms.max(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_section_with_defaults_and_aliases() {
        let c = DatanodeConfig::from_toml(
            "[namenode]\nrpc_addr='x'\n[datanode]\nnamenode = '127.0.0.1:8020'\ndata_dirs = ['/a', '/b']\nno_fsync = true\n",
        )
        .unwrap();
        assert_eq!(c.namenodes, vec!["127.0.0.1:8020".to_string()]);
        assert_eq!(c.data_dirs.len(), 2);
        assert!(c.no_fsync);
        assert_eq!(c.bytes_per_checksum, 512);
        assert!(DatanodeConfig::from_toml("[datanode]\nbogus = 1\n").is_err());
    }

    #[test]
    fn the_example_config_is_valid() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../conf/rfs.toml");
        let c = DatanodeConfig::from_file(&path).unwrap();
        c.validate().unwrap();
        assert_eq!(c.namenodes, vec!["127.0.0.1:8020".to_string()]);
    }
}
