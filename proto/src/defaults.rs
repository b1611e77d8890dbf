//! Well-known ports and sizes. Daemons and the client use these as their
//! defaults so that a cluster started with no configuration is reachable by
//! a client started with no configuration.

/// Namenode client/datanode RPC (gRPC) port, as in HDFS.
pub const NAMENODE_RPC_PORT: u16 = 8020;
/// Namenode HTTP (web UI, /metrics) port.
pub const NAMENODE_HTTP_PORT: u16 = 9870;
/// First datanode's data-transfer port; further datanodes take the next free.
pub const DATANODE_DATA_PORT: u16 = 9866;
/// First datanode's HTTP (/metrics) port.
pub const DATANODE_HTTP_PORT: u16 = 9864;

/// Default block size: 512 MiB.
pub const BLOCK_SIZE: u64 = 512 * 1024 * 1024;
/// Default replication factor.
pub const REPLICATION: u32 = 3;
/// Most replicas one file may ask for: the namenode refuses more, and
/// `dfs` refuses them before asking.
pub const MAX_REPLICATION: u32 = 32;
/// Bytes covered by one CRC32C checksum.
pub const BYTES_PER_CHECKSUM: u32 = 512;
/// Largest amount of block data in one packet sent down a pipeline.
pub const PACKET_SIZE: usize = 64 * 1024;
