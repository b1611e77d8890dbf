//! The datanode's one error type. Each variant names what failed (block,
//! offset, node, path) so its text can go straight to a peer or a log.

use std::net::SocketAddr;
use std::path::PathBuf;

use rfs_proto::transfer::Status;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("config: {0}")]
    Config(String),
    #[error("data directory {path}: {source}")]
    DataDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("data directory {path} is in use by another datanode ({holder} holds {path}/in_use.lock); refusing to start")]
    DirInUse { path: PathBuf, holder: String },
    #[error("data directory {path} failed ({why}); taken out of service")]
    VolumeFailed { path: PathBuf, why: String },
    #[error("{failed} failed data directories, {tolerated} tolerated (failed_volumes_tolerated): {dirs}")]
    TooManyFailedVolumes {
        failed: usize,
        tolerated: usize,
        dirs: String,
    },
    /// The node stopped itself (message of the cause).
    #[error("{0}")]
    Fatal(String),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("no free port for {what} in {first}..={last}")]
    NoFreePort {
        what: &'static str,
        first: u16,
        last: u16,
    },
    #[error("no space left on device on datanode {datanode}{detail}")]
    NoSpace { datanode: String, detail: String },
    #[error("checksum mismatch in block {block} at offset {offset} on datanode {node}")]
    ChecksumMismatch {
        block: u64,
        offset: u64,
        node: String,
    },
    #[error("block {block} already has a finalized replica on datanode {node}")]
    ReplicaExists { block: u64, node: String },
    #[error(
        "replica of block {block} with generation stamp {gen_stamp} not found on datanode {node}"
    )]
    ReplicaNotFound {
        block: u64,
        gen_stamp: u64,
        node: String,
    },
    #[error("replica of block {block} with generation stamp {gen_stamp} on datanode {node} is corrupt ({reason}) and no longer served")]
    ReplicaCorrupt {
        block: u64,
        gen_stamp: u64,
        node: String,
        reason: String,
    },
    #[error("corrupt replica file {path}: {why}")]
    CorruptReplica { path: PathBuf, why: String },
    #[error("invalid request: {0}")]
    Invalid(String),
    /// The leader did not confirm a recovery (see `recovery_check.rs`);
    /// the replica was left as it was.
    #[error("namenode {namenode} did not confirm cutting the replica of block {block} to generation stamp {gen_stamp} and {length} bytes: {reason}")]
    RecoveryRefused {
        block: u64,
        gen_stamp: u64,
        length: u64,
        namenode: String,
        reason: String,
    },
    /// No namenode that leads could be asked about a recovery in time;
    /// the replica was left as it was.
    #[error("no active namenode confirmed cutting the replica of block {block} to generation stamp {gen_stamp} and {length} bytes ({why})")]
    RecoveryUnconfirmed {
        block: u64,
        gen_stamp: u64,
        length: u64,
        why: String,
    },
    #[error("{0}")]
    Pipeline(String),
    #[error("timed out: {0}")]
    Timeout(String),
    #[error("transport: {0}")]
    Transport(#[from] rfs_transport::TransportError),
    #[error("rpc to namenode {namenode}: {status}")]
    Rpc {
        namenode: String,
        status: Box<tonic::Status>,
    },
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("background task failed: {0}")]
    Join(#[from] tokio::task::JoinError),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// The wire status that tells a peer what kind of failure this was.
    pub fn status(&self) -> Status {
        match self {
            Error::NoSpace { .. } => Status::ErrorNoSpace,
            Error::ChecksumMismatch { .. } => Status::ErrorChecksum,
            Error::ReplicaExists { .. } => Status::ErrorExists,
            Error::ReplicaNotFound { .. } => Status::ErrorNotFound,
            Error::ReplicaCorrupt { .. } => Status::ErrorChecksum,
            Error::Invalid(_) | Error::RecoveryRefused { .. } => Status::ErrorInvalid,
            Error::Transport(rfs_transport::TransportError::Frame(_)) => Status::ErrorInvalid,
            _ => Status::Error,
        }
    }
}

/// Whether an I/O error means the disk is full.
pub fn is_no_space(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOSPC) | Some(libc::EDQUOT))
}
