//! Namenode configuration: the `[namenode]` section of the config file,
//! overridden by command-line flags.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use rfs_proto::defaults;
use serde::Deserialize;

use crate::error::{NamenodeError, Result};

pub use rfs_proto::defaults::MAX_REPLICATION;

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub rpc_addr: SocketAddr,
    pub http_addr: SocketAddr,
    /// Metadata directory: the checkpoint (`checkpoint/`) and the raft log.
    pub name_dir: PathBuf,
    /// Cache for reading a sled store an older rfs left in the name dir,
    /// once, when it is moved into the checkpoint image, in MiB.
    pub cache_mib: u64,
    /// Free space the name dir must keep, in MiB (HDFS's
    /// `dfs.namenode.resource.du.reserved`; 0: no check). A leader below
    /// it hands leadership to a full member above it, or, while none is,
    /// refuses mutations and goes on serving reads.
    pub name_dir_reserved_mib: u64,
    pub block_size: u64,
    pub replication: u32,
    /// Smallest block size a new file may have, in bytes (HDFS's
    /// `dfs.namenode.fs-limits.min-block-size`): every block costs the
    /// namenode the same metadata however little it holds.
    pub min_block_size: u64,
    /// Most blocks one file may have (HDFS's
    /// `dfs.namenode.fs-limits.max-blocks-per-file`): a file's inode holds
    /// its whole block list.
    pub max_blocks_per_file: u64,
    /// Most inodes one entry of a recursive delete frees (HDFS's
    /// `dfs.namenode.block.deletion.increment`): a larger subtree is
    /// detached in one entry and freed in steps of this many, so no entry
    /// holds the raft loop for long.
    pub delete_step: u32,
    /// A datanode silent this long is dead.
    pub datanode_dead_ms: u64,
    /// After this long without renewal another client may take a file over.
    pub lease_soft_limit_ms: u64,
    /// After this long without renewal the leader recovers the file itself
    /// (lease recovery) and closes it.
    pub lease_hard_limit_ms: u64,
    /// How often the leader looks for files whose writer passed the hard
    /// limit.
    pub lease_recovery_interval_ms: u64,
    /// A lease recovery not committed by then is started again (with a new
    /// generation stamp).
    pub lease_recovery_retry_ms: u64,
    /// How often the leader checks closed files' replica counts.
    pub replication_interval_ms: u64,
    /// Files one replication pass looks at; a cycle over the namespace
    /// takes as many passes as it needs, so a pass costs the same however
    /// many files there are.
    pub replication_files_per_pass: usize,
    /// Re-replication copies one datanode sources at a time.
    pub max_replication_streams: usize,
    /// A scheduled copy whose replicas are not reported by then is
    /// scheduled again.
    pub replication_pending_timeout_ms: u64,
    /// This member's id in `[ha]`; empty for a namenode without `[ha]`.
    pub id: String,
    /// This member votes and keeps the log but never serves or leads.
    pub witness: bool,
    /// The raft group (the `[ha]` section). Without it the namenode is a
    /// group of one: same log, same code, no failover.
    #[serde(skip)]
    pub ha: HaConfig,
}

/// The `[ha]` section: the members of the raft group and its timing.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct HaConfig {
    /// Raft tick, in milliseconds.
    pub tick_ms: u64,
    /// Followers call an election after between this many and twice this
    /// many ticks without hearing from a leader.
    pub election_ticks: usize,
    /// The leader sends heartbeats every this many ticks.
    pub heartbeat_ticks: usize,
    /// Applied entries between snapshots; the log before a snapshot is
    /// dropped.
    pub snapshot_entries: u64,
    /// Every member, in the same order on every member: a member's raft id
    /// is its position (from 1).
    pub member: Vec<Member>,
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Member {
    pub id: String,
    pub rpc_addr: SocketAddr,
    #[serde(default)]
    pub witness: bool,
}

impl Default for HaConfig {
    fn default() -> Self {
        HaConfig {
            tick_ms: 100,
            election_ticks: 6,
            heartbeat_ticks: 2,
            snapshot_entries: 50_000,
            member: Vec::new(),
        }
    }
}

impl HaConfig {
    pub fn tick(&self) -> Duration {
        Duration::from_millis(self.tick_ms)
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            rpc_addr: SocketAddr::from(([127, 0, 0, 1], defaults::NAMENODE_RPC_PORT)),
            http_addr: SocketAddr::from(([127, 0, 0, 1], defaults::NAMENODE_HTTP_PORT)),
            name_dir: PathBuf::from(".rfs/name"),
            cache_mib: 16,
            name_dir_reserved_mib: 100,
            block_size: defaults::BLOCK_SIZE,
            replication: defaults::REPLICATION,
            min_block_size: 1 << 20,
            max_blocks_per_file: 10_000,
            delete_step: 1000,
            datanode_dead_ms: 30_000,
            lease_soft_limit_ms: 60_000,
            lease_hard_limit_ms: 20 * 60_000,
            lease_recovery_interval_ms: 2000,
            lease_recovery_retry_ms: 60_000,
            replication_interval_ms: 3000,
            replication_files_per_pass: 50_000,
            max_replication_streams: 2,
            replication_pending_timeout_ms: 30_000,
            id: String::new(),
            witness: false,
            ha: HaConfig::default(),
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
        let mut config: Config = match table.remove("namenode") {
            None => Config::default(),
            Some(v) => v
                .try_into()
                .map_err(|e| bad(&format!("[namenode]: {}", toml_error(&text, &e))))?,
        };
        if let Some(v) = table.remove("ha") {
            config.ha = v
                .try_into()
                .map_err(|e| bad(&format!("[ha]: {}", toml_error(&text, &e))))?;
        }
        Ok(config)
    }

    /// The members of the raft group; without `[ha]`, just this namenode.
    pub fn members(&self) -> Vec<Member> {
        if self.ha.member.is_empty() {
            vec![Member {
                id: if self.id.is_empty() {
                    "nn1".into()
                } else {
                    self.id.clone()
                },
                rpc_addr: self.rpc_addr,
                witness: false,
            }]
        } else {
            self.ha.member.clone()
        }
    }

    /// This member's raft id (its position in [`Config::members`], from 1).
    pub fn raft_id(&self) -> u64 {
        let members = self.members();
        if members.len() == 1 {
            return 1;
        }
        members
            .iter()
            .position(|m| m.id == self.id)
            .map_or(0, |i| i as u64 + 1)
    }

    /// With `[ha]`, this member's address comes from its entry there.
    pub fn resolve_member(&mut self) -> Result<()> {
        if self.ha.member.is_empty() {
            if self.witness {
                return Err(NamenodeError::Config(
                    "--witness needs an [ha] section naming the group's members".into(),
                ));
            }
            return Ok(());
        }
        let ids: Vec<&str> = self.ha.member.iter().map(|m| m.id.as_str()).collect();
        let Some(me) = self.ha.member.iter().find(|m| m.id == self.id) else {
            return Err(NamenodeError::Config(if self.id.is_empty() {
                format!("[ha] lists members {ids:?}: start with --id naming one of them")
            } else {
                format!("--id {:?} is not a member in [ha] ({ids:?})", self.id)
            }));
        };
        if me.witness != self.witness {
            return Err(NamenodeError::Config(if me.witness {
                format!(
                    "member {} is a witness in [ha]: start it with --witness",
                    me.id
                )
            } else {
                format!("member {} is not a witness in [ha]: drop --witness", me.id)
            }));
        }
        self.rpc_addr = me.rpc_addr;
        Ok(())
    }

    /// Checks values the namenode cannot run with, naming the setting.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(NamenodeError::Config(m));
        if self.cache_mib == 0 {
            return bad("cache_mib must be positive".into());
        }
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
        if self.min_block_size == 0 || self.max_blocks_per_file == 0 {
            return bad("min_block_size and max_blocks_per_file must be positive".into());
        }
        if self.delete_step == 0 {
            return bad("delete_step must be positive".into());
        }
        if self.block_size < self.min_block_size {
            return bad(format!(
                "block-size {} is below min_block_size {}: every file created with the \
                 default block size would be refused",
                self.block_size, self.min_block_size
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
        if self.lease_recovery_interval_ms == 0 || self.lease_recovery_retry_ms == 0 {
            return bad(
                "lease_recovery_interval_ms and lease_recovery_retry_ms must be positive".into(),
            );
        }
        if self.replication_interval_ms == 0
            || self.replication_files_per_pass == 0
            || self.max_replication_streams == 0
            || self.replication_pending_timeout_ms == 0
        {
            return bad("replication_interval_ms, replication_files_per_pass, \
                 max_replication_streams and replication_pending_timeout_ms \
                 must be positive"
                .into());
        }
        let ha = &self.ha;
        if ha.tick_ms == 0 || ha.heartbeat_ticks == 0 || ha.election_ticks <= ha.heartbeat_ticks {
            return bad(format!(
                "[ha] needs tick_ms > 0 and 0 < heartbeat_ticks ({}) < election_ticks ({})",
                ha.heartbeat_ticks, ha.election_ticks
            ));
        }
        if ha.snapshot_entries == 0 {
            return bad("[ha] snapshot_entries must be positive".into());
        }
        if !ha.member.is_empty() {
            let mut seen = std::collections::HashSet::new();
            for m in &ha.member {
                if m.id.is_empty() || !seen.insert(&m.id) {
                    return bad(format!(
                        "[ha] member ids must be unique and non-empty ({:?})",
                        m.id
                    ));
                }
            }
            if ha.member.iter().filter(|m| !m.witness).count() == 0 {
                return bad("[ha] needs at least one member that is not a witness".into());
            }
            if ha.member.len() == 2 {
                tracing::warn!(
                    "[ha] has two members: a two-voter raft group cannot elect a leader after \
                     losing either; add a witness"
                );
            }
        }
        Ok(())
    }

    /// [`Config::name_dir_reserved_mib`] in bytes.
    pub fn name_dir_reserved_bytes(&self) -> u64 {
        self.name_dir_reserved_mib.saturating_mul(1 << 20)
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

    pub fn lease_recovery_interval(&self) -> Duration {
        Duration::from_millis(self.lease_recovery_interval_ms)
    }

    pub fn lease_recovery_retry(&self) -> Duration {
        Duration::from_millis(self.lease_recovery_retry_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fs_limits_default_as_hdfs_and_must_be_positive() {
        let c = Config::default();
        assert_eq!(c.min_block_size, 1024 * 1024);
        assert_eq!(c.max_blocks_per_file, 10_000);
        c.validate().unwrap();
        for tweak in [
            |c: &mut Config| c.min_block_size = 0,
            |c: &mut Config| c.max_blocks_per_file = 0,
        ] {
            let mut c = Config::default();
            tweak(&mut c);
            let e = c.validate().unwrap_err().to_string();
            assert!(
                e.contains("min_block_size and max_blocks_per_file must be positive"),
                "{e}"
            );
        }
    }

    #[test]
    fn the_default_block_size_may_not_be_below_the_minimum() {
        let c = Config {
            block_size: 64 * 1024,
            ..Config::default()
        };
        let e = c.validate().unwrap_err().to_string();
        assert!(
            e.contains("block-size 65536 is below min_block_size 1048576"),
            "{e}"
        );
        // Tests lower the floor, as HDFS's MiniDFSCluster does.
        let c = Config {
            min_block_size: 512,
            ..c
        };
        c.validate().unwrap();
    }

    #[test]
    fn fs_limits_are_read_from_the_namenode_section() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rfs.toml");
        std::fs::write(
            &path,
            "[namenode]\nmin_block_size = 4096\nmax_blocks_per_file = 3\ndelete_step = 7\n",
        )
        .unwrap();
        let c = Config::from_file(&path).unwrap();
        assert_eq!((c.min_block_size, c.max_blocks_per_file), (4096, 3));
        assert_eq!(c.delete_step, 7);
    }
}
