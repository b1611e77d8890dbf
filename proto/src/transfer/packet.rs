//! Packets of block data and the acks that flow back up a pipeline.
//!
//! Packet body (after the frame prefix):
//! ```text
//! +-----------+-----------------+-------+----------+-----------+-----------+--------+
//! | seqno     | offset in block | flags | data len | checksums | checksums | data   |
//! | u64 BE    | u64 BE          | u8    | u32 BE   | len u32BE | bytes     | bytes  |
//! +-----------+-----------------+-------+----------+-----------+-----------+--------+
//! ```
//! The header is [`Packet::HEADER_LEN`] bytes; the checksum and data lengths
//! must add up exactly to the frame's body length. Whether the checksum
//! count matches the data is checked by [`Packet::verify`], which needs the
//! stream's `bytes_per_checksum`.
//!
//! Ack body:
//! ```text
//! +--------+-----------+---------------------+-----------+-------------+
//! | seqno  | n replies | n × status u8       | msg len   | msg (UTF-8) |
//! | u64 BE | u8        | (first = this node) | u16 BE    |             |
//! +--------+-----------+---------------------+-----------+-------------+
//! ```

use bytes::{Buf, Bytes};

use super::checksum::{ChecksumError, Checksums};
use super::frame::FrameError;
use super::ops::Status;

/// Flag: the last (empty) packet of a block; the receiver finalizes on it.
pub const FLAG_LAST: u8 = 0x01;
/// Flag: the receiver must fsync before acknowledging (hsync).
pub const FLAG_SYNC: u8 = 0x02;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet {
    pub seqno: u64,
    pub offset_in_block: u64,
    pub flags: u8,
    pub checksums: Bytes,
    pub data: Bytes,
}

impl Packet {
    pub const HEADER_LEN: usize = 8 + 8 + 1 + 4 + 4;

    /// A packet of `data` (starting on a chunk boundary) with its checksums.
    pub fn new(seqno: u64, offset_in_block: u64, data: Bytes, sums: &Checksums) -> Packet {
        Packet {
            seqno,
            offset_in_block,
            flags: 0,
            checksums: sums.compute(&data),
            data,
        }
    }

    /// The empty packet that closes a block.
    pub fn last(seqno: u64, offset_in_block: u64) -> Packet {
        Packet {
            seqno,
            offset_in_block,
            flags: FLAG_LAST,
            checksums: Bytes::new(),
            data: Bytes::new(),
        }
    }

    pub fn is_last(&self) -> bool {
        self.flags & FLAG_LAST != 0
    }

    pub fn wants_sync(&self) -> bool {
        self.flags & FLAG_SYNC != 0
    }

    /// Checks data against checksums; a mismatch names the block offset.
    pub fn verify(&self, sums: &Checksums) -> Result<(), ChecksumError> {
        sums.verify(&self.data, &self.checksums, self.offset_in_block)
    }

    pub(crate) fn encode_header(&self) -> Vec<u8> {
        let mut h = Vec::with_capacity(Self::HEADER_LEN);
        h.extend_from_slice(&self.seqno.to_be_bytes());
        h.extend_from_slice(&self.offset_in_block.to_be_bytes());
        h.push(self.flags);
        h.extend_from_slice(&(self.data.len() as u32).to_be_bytes());
        h.extend_from_slice(&(self.checksums.len() as u32).to_be_bytes());
        h
    }

    /// Decodes a packet body, slicing data and checksums out of `body`
    /// without copying them.
    pub(crate) fn decode(mut body: Bytes) -> Result<Packet, FrameError> {
        let malformed = |why: String| FrameError::Malformed {
            what: "packet",
            why,
        };
        if body.len() < Self::HEADER_LEN {
            return Err(malformed(format!(
                "{} bytes is shorter than the {}-byte header",
                body.len(),
                Self::HEADER_LEN
            )));
        }
        let seqno = body.get_u64();
        let offset_in_block = body.get_u64();
        let flags = body.get_u8();
        let data_len = body.get_u32() as usize;
        let sums_len = body.get_u32() as usize;
        let declared = data_len.checked_add(sums_len);
        if declared != Some(body.len()) {
            return Err(malformed(format!(
                "header declares {data_len} data + {sums_len} checksum bytes but the frame holds {}",
                body.len()
            )));
        }
        if !sums_len.is_multiple_of(super::checksum::CHECKSUM_LEN) {
            return Err(malformed(format!(
                "checksum length {sums_len} is not a multiple of 4"
            )));
        }
        let checksums = body.split_to(sums_len);
        Ok(Packet {
            seqno,
            offset_in_block,
            flags,
            checksums,
            data: body,
        })
    }
}

/// One reply per pipeline node, this node's first, for packet `seqno`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PipelineAck {
    pub seqno: u64,
    pub replies: Vec<Status>,
    /// Why a reply is not SUCCESS, naming the node; empty on success.
    pub message: String,
}

impl PipelineAck {
    pub const MAX_REPLIES: usize = 255;
    pub const MAX_MESSAGE: usize = 4096;
    pub const MAX_ENCODED_LEN: usize = 8 + 1 + Self::MAX_REPLIES + 2 + Self::MAX_MESSAGE;

    pub fn success(seqno: u64, nodes: usize) -> PipelineAck {
        PipelineAck {
            seqno,
            replies: vec![Status::Success; nodes],
            message: String::new(),
        }
    }

    pub fn is_success(&self) -> bool {
        self.replies.iter().all(|s| *s == Status::Success)
    }

    /// Index (in pipeline order, from this node) of the first failed reply.
    pub fn first_failed(&self) -> Option<usize> {
        self.replies.iter().position(|s| *s != Status::Success)
    }

    pub(crate) fn encode(&self) -> Vec<u8> {
        let replies = &self.replies[..self.replies.len().min(Self::MAX_REPLIES)];
        let msg = truncate_utf8(&self.message, Self::MAX_MESSAGE);
        let mut b = Vec::with_capacity(8 + 1 + replies.len() + 2 + msg.len());
        b.extend_from_slice(&self.seqno.to_be_bytes());
        b.push(replies.len() as u8);
        b.extend(replies.iter().map(|s| *s as i32 as u8));
        b.extend_from_slice(&(msg.len() as u16).to_be_bytes());
        b.extend_from_slice(msg.as_bytes());
        b
    }

    pub(crate) fn decode(mut b: &[u8]) -> Result<PipelineAck, FrameError> {
        let malformed = |why: String| FrameError::Malformed { what: "ack", why };
        if b.len() < 8 + 1 + 2 {
            return Err(malformed(format!("{} bytes is too short", b.len())));
        }
        let seqno = b.get_u64();
        let n = b.get_u8() as usize;
        if b.len() < n + 2 {
            return Err(malformed(format!(
                "declares {n} replies but holds {} bytes",
                b.len()
            )));
        }
        let replies = b[..n]
            .iter()
            .map(|&v| {
                Status::try_from(v as i32).map_err(|_| malformed(format!("unknown status {v}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        b.advance(n);
        let msg_len = b.get_u16() as usize;
        if b.len() != msg_len {
            return Err(malformed(format!(
                "message length {msg_len} but {} bytes remain",
                b.len()
            )));
        }
        let message =
            String::from_utf8(b.to_vec()).map_err(|_| malformed("message is not UTF-8".into()))?;
        Ok(PipelineAck {
            seqno,
            replies,
            message,
        })
    }
}

fn truncate_utf8(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}
