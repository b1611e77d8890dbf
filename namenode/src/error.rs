//! The namenode's error type and its one mapping onto the wire.

use rfs_proto::rpc_error::{self, RpcErrorKind};

use crate::raft::name_dir_space::mib;

/// Results kept in the retry cache hold these, bincode-encoded by variant
/// index: add variants at the end, never reorder or reshape those that
/// `apply` can return.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, serde::Serialize, serde::Deserialize)]
pub enum NamenodeError {
    #[error("{0}: No such file or directory")]
    NotFound(String),
    #[error("{0}: File exists")]
    AlreadyExists(String),
    #[error("{0}: Directory is not empty")]
    NotEmpty(String),
    #[error("{0}: Is a directory")]
    IsDirectory(String),
    #[error("{0}: Not a directory")]
    NotDirectory(String),
    #[error("invalid path \"{path}\": {reason}")]
    InvalidPath { path: String, reason: String },
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{path}: file is being written by {holder}")]
    LeaseConflict { path: String, holder: String },
    #[error("{path}: no lease held by {client} (the file is not open for writing by this client)")]
    NoLease { path: String, client: String },
    /// No datanode can take a new block of `path`; `why` says why
    /// (`placement::why_none`).
    #[error("{path}: cannot place a new block: {why}")]
    NoLiveDatanodes { path: String, why: String },
    /// This member is not the raft leader; `leader` is the leader's RPC
    /// address when known.
    #[error("{}", not_leader_text(.leader))]
    NotLeader { leader: Option<String> },
    #[error("namenode internal error: {0}")]
    Internal(String),
    /// A configuration value the namenode cannot run with.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// A listening socket could not be bound (port in use, bad address).
    #[error("cannot listen for {what} on {addr}: {reason}")]
    Bind {
        what: String,
        addr: std::net::SocketAddr,
        reason: String,
    },
    /// The name directory cannot be opened, or its log or store is damaged.
    #[error("{0}")]
    Store(String),
    /// The RPC server stopped with an error.
    #[error("RPC server failed: {0}")]
    Server(String),
    /// An admin call named a datanode the registry does not know.
    #[error("no datanode {0}: give its id or its data address ip:port, as `dfs admin report` lists them")]
    UnknownDatanode(String),
    /// This member leads but has not yet applied everything earlier
    /// leaders committed (up to its term's first entry, `needed`): it
    /// serves shortly, so the client asks it again.
    #[error("{member} is catching up: applied {applied} of {needed}")]
    CatchingUp {
        member: String,
        applied: u64,
        needed: u64,
    },
    /// The leader's name dir is below its reserve and no full member with
    /// room can take over: changes are refused, reads go on.
    #[error(
        "low on disk space on {member}: its name dir has {} free, below the reserve of {}; \
         changes are refused until there is room (reads go on)",
        mib(*.free),
        mib(*.reserved)
    )]
    LowOnDisk {
        member: String,
        free: u64,
        reserved: u64,
    },
    /// A datanode may not cut its replica of `block` to the stamp and
    /// length it asked about (see `recovery_check.rs`).
    #[error("recovery of block {block} refused: {reason}")]
    RecoveryRefused { block: u64, reason: String },
    /// A datanode call carried an epoch other than the node's current
    /// registration here (or the node is not registered at all).
    #[error("datanode {datanode} is not registered here under epoch {epoch}; register again")]
    StaleRegistration { datanode: String, epoch: u64 },
    /// A registration for a datanode id that a live datanode holds from
    /// another data address.
    #[error("datanode id {datanode} is held by a live datanode at {live}; registration from {from} refused")]
    DatanodeIdInUse {
        datanode: String,
        live: String,
        from: String,
    },
    /// A call numbered below the mark its client's later calls set
    /// (`CallId.answered_below`): the client had its answer and moved on,
    /// so this copy is not applied (it may have been already).
    #[error(
        "call {call} of client {client} refused: the client has had the answers of every call \
         below {answered_below} and does not send them again (a delayed copy?)"
    )]
    StaleCall {
        client: String,
        call: u64,
        answered_below: u64,
    },
}

pub type Result<T, E = NamenodeError> = std::result::Result<T, E>;

impl NamenodeError {
    pub fn kind(&self) -> RpcErrorKind {
        match self {
            NamenodeError::NotFound(_) | NamenodeError::UnknownDatanode(_) => {
                RpcErrorKind::NotFound
            }
            NamenodeError::AlreadyExists(_) => RpcErrorKind::AlreadyExists,
            NamenodeError::NotEmpty(_) => RpcErrorKind::NotEmpty,
            NamenodeError::IsDirectory(_) => RpcErrorKind::IsDirectory,
            NamenodeError::NotDirectory(_) => RpcErrorKind::NotDirectory,
            NamenodeError::InvalidPath { .. } => RpcErrorKind::InvalidPath,
            NamenodeError::InvalidArgument(_) | NamenodeError::StaleCall { .. } => {
                RpcErrorKind::InvalidArgument
            }
            NamenodeError::LeaseConflict { .. } => RpcErrorKind::LeaseConflict,
            NamenodeError::NoLease { .. } => RpcErrorKind::LeaseExpired,
            NamenodeError::NoLiveDatanodes { .. } => RpcErrorKind::NoLiveDatanodes,
            NamenodeError::NotLeader { .. } => RpcErrorKind::NotLeader,
            NamenodeError::CatchingUp { .. } => RpcErrorKind::CatchingUp,
            NamenodeError::LowOnDisk { .. } => RpcErrorKind::LowOnDisk,
            NamenodeError::RecoveryRefused { .. } => RpcErrorKind::RecoveryRefused,
            NamenodeError::StaleRegistration { .. } => RpcErrorKind::ReRegister,
            NamenodeError::DatanodeIdInUse { .. } => RpcErrorKind::AlreadyExists,
            NamenodeError::Internal(_)
            | NamenodeError::Config(_)
            | NamenodeError::Bind { .. }
            | NamenodeError::Store(_)
            | NamenodeError::Server(_) => RpcErrorKind::Internal,
        }
    }
}

fn not_leader_text(leader: &Option<String>) -> String {
    match leader {
        Some(l) => format!("this namenode is not the leader; the leader is {l}"),
        None => "this namenode is not the leader and no leader is known yet".into(),
    }
}

impl From<NamenodeError> for tonic::Status {
    fn from(e: NamenodeError) -> tonic::Status {
        let mut status = rpc_error::status(e.kind(), e.to_string());
        if let NamenodeError::NotLeader {
            leader: Some(leader),
        } = &e
        {
            if let Ok(v) = leader.parse() {
                status.metadata_mut().insert(rpc_error::LEADER_HINT_KEY, v);
            }
        }
        status
    }
}

impl From<sled::Error> for NamenodeError {
    fn from(e: sled::Error) -> Self {
        NamenodeError::Internal(format!("metadata store: {e}"))
    }
}

impl From<bincode::Error> for NamenodeError {
    fn from(e: bincode::Error) -> Self {
        NamenodeError::Internal(format!("metadata encoding: {e}"))
    }
}
