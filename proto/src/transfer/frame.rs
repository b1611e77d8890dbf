//! Frames: the unit of the data-transfer protocol.
//!
//! ```text
//! +-------+-------+---------+------+-------------+----------------+
//! | 'R'   | 'F'   | version | kind | body length | body           |
//! | u8    | u8    | u8      | u8   | u32 BE      | `length` bytes |
//! +-------+-------+---------+------+-------------+----------------+
//! ```
//!
//! `kind` selects the body: an op header or op response (protobuf, at most
//! [`MAX_HEADER_LEN`] bytes), a [`Packet`] or a [`PipelineAck`] (fixed binary
//! layouts, see `packet.rs`). A body longer than its kind allows is rejected
//! from the 8-byte prefix alone, before any buffer is sized from it.

use bytes::{Bytes, BytesMut};
use prost::Message;

use super::ops::{CopyBlockOp, OpResponse, ReadBlockOp, RecoverReplicaOp, WriteBlockOp};
use super::packet::{Packet, PipelineAck};

pub const MAGIC: [u8; 2] = *b"RF";
pub const PROTOCOL_VERSION: u8 = 1;
/// Length of the fixed prefix before every body.
pub const PREFIX_LEN: usize = 8;
/// Largest op header / response body.
pub const MAX_HEADER_LEN: usize = 64 * 1024;
/// Largest frame body of any kind (a packet of up to 16 MiB of data plus its
/// checksums and header).
pub const MAX_FRAME_LEN: usize = 16 * 1024 * 1024 + 256 * 1024;

pub(crate) mod kind {
    pub const WRITE_BLOCK: u8 = 0x50;
    pub const READ_BLOCK: u8 = 0x51;
    pub const COPY_BLOCK: u8 = 0x52;
    pub const RECOVER_REPLICA: u8 = 0x53;
    pub const RESPONSE: u8 = 0x01;
    pub const PACKET: u8 = 0x02;
    pub const ACK: u8 = 0x03;
}

/// Appends the prefix of a frame of `kind` whose body is `body_len` bytes.
pub(crate) fn put_prefix(buf: &mut BytesMut, kind: u8, body_len: usize) {
    buf.extend_from_slice(&MAGIC);
    buf.extend_from_slice(&[PROTOCOL_VERSION, kind]);
    buf.extend_from_slice(&(body_len as u32).to_be_bytes());
}

/// Ways a frame can be wrong. Each closes the connection after an error
/// response; none is a panic.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("bad frame magic {0:02x?} (not an rfs data-transfer peer?)")]
    BadMagic([u8; 2]),
    #[error(
        "unsupported data-transfer protocol version {0} (this node speaks {PROTOCOL_VERSION})"
    )]
    UnsupportedVersion(u8),
    #[error("unknown frame kind 0x{0:02x}")]
    UnknownKind(u8),
    #[error("frame body of {len} bytes exceeds the limit of {max} bytes")]
    TooLong { len: usize, max: usize },
    #[error("malformed {what}: {why}")]
    Malformed { what: &'static str, why: String },
    #[error("connection closed in the middle of a frame")]
    Truncated,
    #[error("invalid op header: {0}")]
    Decode(#[from] prost::DecodeError),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// The first frame of a connection: what the initiator wants.
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    WriteBlock(WriteBlockOp),
    ReadBlock(ReadBlockOp),
    CopyBlock(CopyBlockOp),
    RecoverReplica(RecoverReplicaOp),
}

impl Op {
    pub fn name(&self) -> &'static str {
        match self {
            Op::WriteBlock(_) => "WRITE_BLOCK",
            Op::ReadBlock(_) => "READ_BLOCK",
            Op::CopyBlock(_) => "COPY_BLOCK",
            Op::RecoverReplica(_) => "RECOVER_REPLICA",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Frame {
    Op(Op),
    Response(OpResponse),
    Packet(Packet),
    Ack(PipelineAck),
}

impl Frame {
    /// Parses the fixed prefix: returns (kind, body length) after checking
    /// magic, version, kind and the length limit for that kind.
    pub fn parse_prefix(prefix: &[u8; PREFIX_LEN]) -> Result<(u8, usize), FrameError> {
        if prefix[..2] != MAGIC {
            return Err(FrameError::BadMagic([prefix[0], prefix[1]]));
        }
        if prefix[2] != PROTOCOL_VERSION {
            return Err(FrameError::UnsupportedVersion(prefix[2]));
        }
        let kind = prefix[3];
        let len = u32::from_be_bytes([prefix[4], prefix[5], prefix[6], prefix[7]]) as usize;
        let max = match kind {
            kind::WRITE_BLOCK
            | kind::READ_BLOCK
            | kind::COPY_BLOCK
            | kind::RECOVER_REPLICA
            | kind::RESPONSE => MAX_HEADER_LEN,
            kind::PACKET => MAX_FRAME_LEN,
            kind::ACK => PipelineAck::MAX_ENCODED_LEN,
            other => return Err(FrameError::UnknownKind(other)),
        };
        if len > max {
            return Err(FrameError::TooLong { len, max });
        }
        Ok((kind, len))
    }

    /// Decodes a body whose prefix [`Frame::parse_prefix`] accepted.
    pub fn decode_body(kind: u8, body: Bytes) -> Result<Frame, FrameError> {
        Ok(match kind {
            kind::WRITE_BLOCK => Frame::Op(Op::WriteBlock(WriteBlockOp::decode(body)?)),
            kind::READ_BLOCK => Frame::Op(Op::ReadBlock(ReadBlockOp::decode(body)?)),
            kind::COPY_BLOCK => Frame::Op(Op::CopyBlock(CopyBlockOp::decode(body)?)),
            kind::RECOVER_REPLICA => Frame::Op(Op::RecoverReplica(RecoverReplicaOp::decode(body)?)),
            kind::RESPONSE => Frame::Response(OpResponse::decode(body)?),
            kind::PACKET => Frame::Packet(Packet::decode(body)?),
            kind::ACK => Frame::Ack(PipelineAck::decode(&body)?),
            other => return Err(FrameError::UnknownKind(other)),
        })
    }

    /// Encodes the frame as a prefix-plus-header buffer and, for packets, the
    /// checksum and data buffers that follow it unchanged (so a transport can
    /// write them with one vectored write and no copy).
    pub fn encode_parts(&self) -> (BytesMut, Option<(Bytes, Bytes)>) {
        let (kind, mut head, tail) = match self {
            Frame::Op(Op::WriteBlock(op)) => (kind::WRITE_BLOCK, op.encode_to_vec(), None),
            Frame::Op(Op::ReadBlock(op)) => (kind::READ_BLOCK, op.encode_to_vec(), None),
            Frame::Op(Op::CopyBlock(op)) => (kind::COPY_BLOCK, op.encode_to_vec(), None),
            Frame::Op(Op::RecoverReplica(op)) => (kind::RECOVER_REPLICA, op.encode_to_vec(), None),
            Frame::Response(r) => (kind::RESPONSE, r.encode_to_vec(), None),
            Frame::Ack(a) => (kind::ACK, a.encode(), None),
            Frame::Packet(p) => (
                kind::PACKET,
                p.encode_header(),
                Some((p.checksums.clone(), p.data.clone())),
            ),
        };
        let body_len = head.len() + tail.as_ref().map_or(0, |(c, d)| c.len() + d.len());
        let mut buf = BytesMut::with_capacity(PREFIX_LEN + head.len());
        put_prefix(&mut buf, kind, body_len);
        buf.extend_from_slice(&head);
        head.clear();
        (buf, tail)
    }

    /// Encodes the whole frame into one buffer (copies packet data; for tests
    /// and small frames).
    pub fn encode_to_bytes(&self) -> Bytes {
        let (mut buf, tail) = self.encode_parts();
        if let Some((c, d)) = tail {
            buf.extend_from_slice(&c);
            buf.extend_from_slice(&d);
        }
        buf.freeze()
    }
}
