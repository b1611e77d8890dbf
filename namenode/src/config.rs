//! Namenode configuration: the `[namenode]` section of the config file,
//! overridden by command-line flags.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use rfs_proto::defaults;
use serde::Deserialize;

use crate::error::{NamenodeError, Result};

/// Most replicas one file may ask for.
pub const MAX_REPLICATION: u32 = 32;

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub rpc_addr: SocketAddr,
    pub http_addr: SocketAddr,
    /// Metadata directory: the sled store and the write-ahead log.
    pub name_dir: PathBuf,
    pub block_size: u64,
    pub replication: u32,
    /// A datanode silent this long is dead.
    pub datanode_dead_ms: u64,
    /// After this long without renewal another client may take a file over.
    pub lease_soft_limit_ms: u64,
    pub lease_hard_limit_ms: u64,
    /// Ops between checkpoints (sled flush + WAL segment roll).
    pub checkpoint_ops: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            rpc_addr: SocketAddr::from(([127, 0, 0, 1], defaults::NAMENODE_RPC_PORT)),
            http_addr: SocketAddr::from(([127, 0, 0, 1], defaults::NAMENODE_HTTP_PORT)),
            name_dir: PathBuf::from(".rfs/name"),
            block_size: defaults::BLOCK_SIZE,
            replication: defaults::REPLICATION,
            datanode_dead_ms: 30_000,
            lease_soft_limit_ms: 60_000,
            lease_hard_limit_ms: 20 * 60_000,
            checkpoint_ops: 50_000,
        }
    }
}

/// A TOML error as one line: toml's own text draws the offending source
/// over several lines.
fn toml_error(text: &str, e: &toml::de::Error) -> String {
    let message = e.message().trim();
    match e.span() {
        Some(span) => {
            let line = text
                .get(..span.start)
                .map_or(0, |before| before.matches('\n').count())
                + 1;
            format!("line {line}: {message}")
        }
        None => message.to_string(),
    }
}

impl Config {
    /// Reads the `[namenode]` section of a TOML file (absent section: defaults).
    pub fn from_file(path: &std::path::Path) -> Result<Config> {
        let bad = |e: &dyn std::fmt::Display| {
            NamenodeError::Config(format!("config file {}: {e}", path.display()))
        };
        let text = std::fs::read_to_string(path).map_err(|e| bad(&e))?;
        let mut table: toml::Table = text.parse().map_err(|e| bad(&toml_error(&text, &e)))?;
        match table.remove("namenode") {
            None => Ok(Config::default()),
            Some(v) => v
                .try_into()
                .map_err(|e| bad(&format!("[namenode]: {}", toml_error(&text, &e)))),
        }
    }

    /// Checks values the namenode cannot run with, naming the setting.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(NamenodeError::Config(m));
        if self.block_size == 0
            || !self
                .block_size
                .is_multiple_of(defaults::BYTES_PER_CHECKSUM as u64)
        {
            return bad(format!(
                "block-size {} must be a positive multiple of {}",
                self.block_size,
                defaults::BYTES_PER_CHECKSUM
            ));
        }
        if self.replication == 0 || self.replication > MAX_REPLICATION {
            return bad(format!(
                "replication {} must be between 1 and {MAX_REPLICATION}",
                self.replication
            ));
        }
        if self.datanode_dead_ms == 0 {
            return bad("datanode-dead-ms must be positive".into());
        }
        if self.lease_soft_limit_ms == 0 || self.lease_hard_limit_ms < self.lease_soft_limit_ms {
            return bad(format!(
                "lease limits must satisfy 0 < lease-soft-limit-ms ({}) <= lease-hard-limit-ms ({})",
                self.lease_soft_limit_ms, self.lease_hard_limit_ms
            ));
        }
        if self.checkpoint_ops == 0 {
            return bad("checkpoint_ops must be positive".into());
        }
        Ok(())
    }

    pub fn datanode_dead(&self) -> Duration {
        Duration::from_millis(self.datanode_dead_ms)
    }

    pub fn lease_soft_limit(&self) -> Duration {
        Duration::from_millis(self.lease_soft_limit_ms)
    }

    pub fn lease_hard_limit(&self) -> Duration {
        Duration::from_millis(self.lease_hard_limit_ms)
    }
}
