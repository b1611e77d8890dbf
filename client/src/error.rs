//! The client's one error type.
//!
//! Every variant displays as one line a user can act on; namenode errors keep
//! the namenode's own text (`/x: No such file or directory`). All fields are
//! plain values so an error can be cloned and reported more than once (a
//! failed writer answers every later call with the same error).

use std::time::Duration;

use rfs_proto::rpc_error::{self, RpcErrorKind};
use tonic::{Code, Status};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The namenode refused the call; `message` is its user-facing text.
    #[error("{message}")]
    Namenode { kind: RpcErrorKind, message: String },

    #[error("cannot reach namenode at {addr}: {reason}")]
    NamenodeUnreachable { addr: String, reason: String },

    #[error("namenode at {addr} did not answer {call} within {timeout:?}")]
    NamenodeTimeout {
        addr: String,
        call: &'static str,
        timeout: Duration,
    },

    /// No member of a namenode group accepted a connection; `tried` lists
    /// every member with its failure.
    #[error("cannot reach any namenode: {tried}")]
    NamenodesUnreachable { tried: String },

    /// No member of the namenode group answered `call` as its leader
    /// before the failover deadline; `tried` lists every member with its
    /// last failure.
    #[error("no namenode answered {call} within {waited:?}; tried {tried}")]
    NoNamenode {
        call: &'static str,
        waited: Duration,
        tried: String,
    },

    #[error("invalid client configuration: {0}")]
    Config(String),

    #[error("{path}: {message}")]
    Path {
        path: String,
        kind: RpcErrorKind,
        message: String,
    },

    /// A write pipeline failed; `datanode` names the node that failed.
    #[error("{path}: writing block {block} failed at datanode {datanode}: {reason}")]
    Pipeline {
        path: String,
        block: u64,
        datanode: String,
        reason: String,
    },

    /// Every replica of a block failed; `reasons` lists each node's failure.
    #[error("could not read block {block} of {path} at offset {offset}: {reasons}")]
    Read {
        path: String,
        block: u64,
        offset: u64,
        reasons: String,
    },

    /// Every replica of a block failed checksum verification, in the
    /// client's read or by its datanode's own check; `reasons` lists each
    /// node's failure.
    #[error("{path}: all {replicas} replicas of block {block} failed checksum verification (at offset {offset}): {reasons}")]
    CorruptBlock {
        path: String,
        block: u64,
        offset: u64,
        replicas: usize,
        reasons: String,
    },

    /// The namenode knows no live replica of a block, even after retrying.
    #[error("could not read block {block} of {path} at offset {offset}: no datanode holds a replica (waited {waited:?})")]
    NoReplica {
        path: String,
        block: u64,
        offset: u64,
        waited: Duration,
    },

    #[error("{path}: the writer is closed")]
    WriterClosed { path: String },

    #[error("{path}: the writer was dropped before close; the file stays under construction")]
    WriterAbandoned { path: String },

    /// A peer broke the protocol (unexpected frame, bad offsets).
    #[error("{0}")]
    Protocol(String),

    /// A local I/O failure (from `From<std::io::Error>`).
    #[error("{0}")]
    Io(String),
}

/// Unwraps the client error inside an `io::Error` from `FileReader` or
/// `FileWriter`, so `?` on their `AsyncRead`/`AsyncWrite` calls gives back
/// the original error; other I/O errors keep their text.
impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        match e.get_ref().and_then(|inner| inner.downcast_ref::<Error>()) {
            Some(inner) => inner.clone(),
            None => Error::Io(one_line(&e.to_string())),
        }
    }
}

impl Error {
    /// The stable kind of this error; local failures are `Internal`.
    pub fn kind(&self) -> RpcErrorKind {
        match self {
            Error::Namenode { kind, .. } | Error::Path { kind, .. } => *kind,
            Error::Config(_) => RpcErrorKind::InvalidArgument,
            Error::NamenodeUnreachable { .. }
            | Error::NamenodeTimeout { .. }
            | Error::NamenodesUnreachable { .. }
            | Error::NoNamenode { .. }
            | Error::Pipeline { .. }
            | Error::Read { .. }
            | Error::CorruptBlock { .. }
            | Error::NoReplica { .. }
            | Error::WriterClosed { .. }
            | Error::WriterAbandoned { .. }
            | Error::Protocol(_)
            | Error::Io(_) => RpcErrorKind::Internal,
        }
    }

    /// Maps a namenode status back to an error, keeping its message.
    /// Statuses without an rfs kind (tonic transport failures) that mean
    /// the namenode cannot be reached say so with its address.
    pub(crate) fn from_status(addr: &str, s: &Status) -> Error {
        let tagged = s.metadata().get(rpc_error::ERROR_KIND_KEY).is_some();
        if !tagged && matches!(s.code(), Code::Unavailable | Code::Unknown) {
            return Error::NamenodeUnreachable {
                addr: addr.to_string(),
                reason: one_line(&status_reason(s)),
            };
        }
        let kind = rpc_error::kind_of(s);
        let message = if tagged
            || matches!(
                s.code(),
                Code::NotFound | Code::AlreadyExists | Code::InvalidArgument
            ) {
            s.message().to_string()
        } else {
            format!("namenode at {addr}: {}", status_reason(s))
        };
        Error::Namenode {
            kind,
            message: one_line(&message),
        }
    }

    /// Wraps the error for `AsyncRead`/`AsyncWrite`, keeping its message.
    pub(crate) fn into_io(self) -> std::io::Error {
        std::io::Error::other(self)
    }
}

/// The status message plus its source chain (tonic puts the interesting
/// part, e.g. "Connection refused", in the source).
pub(crate) fn status_reason(s: &Status) -> String {
    let mut out = s.message().to_string();
    let mut src: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(s);
    while let Some(e) = src {
        let text = e.to_string();
        if !out.contains(&text) {
            if !out.is_empty() {
                out.push_str(": ");
            }
            out.push_str(&text);
        }
        src = e.source();
    }
    if out.is_empty() {
        out = format!("{:?}", s.code());
    }
    out
}

/// Errors display as one line: inner newlines become spaces.
pub(crate) fn one_line(s: &str) -> String {
    if s.contains('\n') {
        s.split_whitespace().collect::<Vec<_>>().join(" ")
    } else {
        s.to_string()
    }
}

/// Text of an error and its sources, joined by ": ".
pub(crate) fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        let t = s.to_string();
        if !out.contains(&t) {
            out.push_str(": ");
            out.push_str(&t);
        }
        src = s.source();
    }
    one_line(&out)
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tagged_status_keeps_kind_and_message() {
        let s = rpc_error::status(RpcErrorKind::NotFound, "/x: No such file or directory");
        let e = Error::from_status("nn:8020", &s);
        assert_eq!(e.kind(), RpcErrorKind::NotFound);
        assert_eq!(e.to_string(), "/x: No such file or directory");
        let s = rpc_error::status(RpcErrorKind::NotEmpty, "/d: Directory is not empty");
        assert_eq!(
            Error::from_status("nn:8020", &s).kind(),
            RpcErrorKind::NotEmpty
        );
        let s = rpc_error::status(RpcErrorKind::NoLiveDatanodes, "no live datanodes");
        let e = Error::from_status("nn:8020", &s);
        assert_eq!(e.kind(), RpcErrorKind::NoLiveDatanodes);
        assert_eq!(e.to_string(), "no live datanodes");
    }

    #[test]
    fn untagged_statuses_map_by_code() {
        let e = Error::from_status("nn:8020", &Status::already_exists("/f: File exists"));
        assert_eq!(e.kind(), RpcErrorKind::AlreadyExists);
        assert_eq!(e.to_string(), "/f: File exists");
        let e = Error::from_status("10.0.0.1:8020", &Status::unavailable("tcp connect error"));
        assert!(matches!(e, Error::NamenodeUnreachable { .. }));
        assert_eq!(
            e.to_string(),
            "cannot reach namenode at 10.0.0.1:8020: tcp connect error"
        );
        let e = Error::from_status("nn:8020", &Status::unimplemented("no such method"));
        assert_eq!(e.kind(), RpcErrorKind::Internal);
        assert_eq!(e.to_string(), "namenode at nn:8020: no such method");
    }

    #[test]
    fn messages_are_one_line() {
        let e = Error::from_status("nn", &Status::internal("a\nb"));
        assert!(!e.to_string().contains('\n'));
        let io = Error::Protocol("x".into()).into_io();
        assert_eq!(io.to_string(), "x");
        let nf = Error::Namenode {
            kind: RpcErrorKind::NotFound,
            message: "/x: No such file or directory".into(),
        };
        let back: Error = nf.clone().into_io().into();
        assert_eq!(back, nf);
        let local: Error = std::io::Error::other("disk gone").into();
        assert_eq!(local.to_string(), "disk gone");
    }
}
