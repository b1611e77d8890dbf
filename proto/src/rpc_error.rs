//! Error kinds that keep their meaning across gRPC.
//!
//! The namenode turns each of its errors into a `tonic::Status` whose
//! message is the one-line, user-facing text (e.g. `/x: No such file or
//! directory`) and whose metadata carries the stable [`RpcErrorKind`] under
//! [`ERROR_KIND_KEY`]; the client turns it back once. Both ends use this
//! module, so the mapping is written once.

use tonic::{Code, Status};

use crate::namenode::CallError;

/// Metadata key that carries the [`RpcErrorKind`] name.
pub const ERROR_KIND_KEY: &str = "rfs-error";
/// Metadata key that carries the current leader's address on `NotLeader`.
pub const LEADER_HINT_KEY: &str = "rfs-leader";

macro_rules! kinds {
    ($($kind:ident => $name:literal, $code:ident;)*) => {
        /// Stable error kinds; the names are part of the wire protocol.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum RpcErrorKind { $($kind),* }

        impl RpcErrorKind {
            pub fn name(self) -> &'static str {
                match self { $(RpcErrorKind::$kind => $name),* }
            }
            pub fn from_name(s: &str) -> Option<Self> {
                match s { $($name => Some(RpcErrorKind::$kind),)* _ => None }
            }
            pub fn code(self) -> Code {
                match self { $(RpcErrorKind::$kind => Code::$code),* }
            }
        }
    };
}

kinds! {
    NotFound => "not-found", NotFound;
    AlreadyExists => "already-exists", AlreadyExists;
    NotEmpty => "not-empty", FailedPrecondition;
    IsDirectory => "is-directory", FailedPrecondition;
    NotDirectory => "not-directory", FailedPrecondition;
    InvalidPath => "invalid-path", InvalidArgument;
    InvalidArgument => "invalid-argument", InvalidArgument;
    LeaseConflict => "lease-conflict", FailedPrecondition;
    LeaseExpired => "lease-expired", FailedPrecondition;
    NoLiveDatanodes => "no-live-datanodes", Unavailable;
    NotLeader => "not-leader", Unavailable;
    CatchingUp => "catching-up", Unavailable;
    LowOnDisk => "low-on-disk", ResourceExhausted;
    // A datanode call under a registration epoch the namenode does not
    // hold (stale, or forgotten in a restart): register again.
    ReRegister => "re-register", FailedPrecondition;
    Internal => "internal", Internal;
    RecoveryRefused => "recovery-refused", FailedPrecondition;
}

/// Builds the status for `kind` with the user-facing `message`.
pub fn status(kind: RpcErrorKind, message: impl Into<String>) -> Status {
    let mut s = Status::new(kind.code(), message);
    s.metadata_mut().insert(
        ERROR_KIND_KEY,
        kind.name().parse().expect("kind names are ASCII"),
    );
    s
}

/// `status` as one call's error in a batch ([`CallError`]), keeping what
/// failover reads.
pub fn to_call_error(status: &Status) -> CallError {
    let md = |key| {
        (status.metadata().get(key))
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    CallError {
        code: status.code() as i32,
        message: status.message().to_string(),
        kind: md(ERROR_KIND_KEY),
        leader_hint: md(LEADER_HINT_KEY),
    }
}

/// The status a batched call's [`CallError`] stands for, as its own RPC
/// would have answered it. Metadata values that are not valid header
/// values (from a namenode that should not send them) are left out.
pub fn from_call_error(e: &CallError) -> Status {
    let mut s = Status::new(Code::from_i32(e.code), e.message.clone());
    for (key, value) in [(ERROR_KIND_KEY, &e.kind), (LEADER_HINT_KEY, &e.leader_hint)] {
        if let (false, Ok(v)) = (value.is_empty(), value.parse()) {
            s.metadata_mut().insert(key, v);
        }
    }
    s
}

/// The kind a status carries; statuses from elsewhere (transport errors,
/// timeouts) map by their code.
pub fn kind_of(s: &Status) -> RpcErrorKind {
    if let Some(k) = s
        .metadata()
        .get(ERROR_KIND_KEY)
        .and_then(|v| v.to_str().ok())
        .and_then(RpcErrorKind::from_name)
    {
        return k;
    }
    match s.code() {
        Code::NotFound => RpcErrorKind::NotFound,
        Code::AlreadyExists => RpcErrorKind::AlreadyExists,
        Code::InvalidArgument => RpcErrorKind::InvalidArgument,
        _ => RpcErrorKind::Internal,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kind_survives_status() {
        let s = status(
            RpcErrorKind::LeaseConflict,
            "/f: file is being written by c1",
        );
        assert_eq!(kind_of(&s), RpcErrorKind::LeaseConflict);
        assert_eq!(s.code(), Code::FailedPrecondition);
        assert_eq!(kind_of(&Status::not_found("x")), RpcErrorKind::NotFound);
    }

    #[test]
    fn a_batched_calls_error_comes_back_as_its_own_rpcs_would() {
        let mut s = status(RpcErrorKind::NotLeader, "nn2 is not the leader");
        s.metadata_mut()
            .insert(LEADER_HINT_KEY, "127.0.0.1:8020".parse().unwrap());
        let back = from_call_error(&to_call_error(&s));
        assert_eq!((back.code(), back.message()), (s.code(), s.message()));
        assert_eq!(kind_of(&back), RpcErrorKind::NotLeader);
        assert_eq!(
            back.metadata().get(LEADER_HINT_KEY).unwrap(),
            "127.0.0.1:8020"
        );
        // A plain status keeps its code and carries no rfs metadata.
        let plain = from_call_error(&to_call_error(&Status::unavailable("gone")));
        assert_eq!(plain.code(), Code::Unavailable);
        assert!(plain.metadata().get(ERROR_KIND_KEY).is_none());
        // A hint that is no header value is dropped, not a panic.
        let odd = CallError {
            leader_hint: "bad\nvalue".into(),
            ..to_call_error(&s)
        };
        assert!(from_call_error(&odd)
            .metadata()
            .get(LEADER_HINT_KEY)
            .is_none());
    }
}
