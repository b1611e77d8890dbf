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

use bytes::{Buf, Bytes, BytesMut};

use super::checksum::{ChecksumError, Checksums};
use super::frame::{self, FrameError, PREFIX_LEN};
use super::ops::Status;

/// Flag: the last (empty) packet of a block; the receiver finalizes on it.
pub const FLAG_LAST: u8 = 0x01;
/// Flag: the receiver must fsync before acknowledging (hsync).
pub const FLAG_SYNC: u8 = 0x02;

fn encode_header(
    seqno: u64,
    offset_in_block: u64,
    flags: u8,
    data_len: usize,
    sums_len: usize,
) -> Vec<u8> {
    let mut h = Vec::with_capacity(Packet::HEADER_LEN);
    h.extend_from_slice(&seqno.to_be_bytes());
    h.extend_from_slice(&offset_in_block.to_be_bytes());
    h.push(flags);
    h.extend_from_slice(&(data_len as u32).to_be_bytes());
    h.extend_from_slice(&(sums_len as u32).to_be_bytes());
    h
}

/// A data packet whose data still lies in a block file: `len` bytes at
/// `file_offset`. A transport that can move file pages to the network
/// without copying them (TCP's `sendfile`) sends it as it is; on the wire
/// it is an ordinary [`Packet`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilePacket {
    pub seqno: u64,
    pub offset_in_block: u64,
    pub checksums: Bytes,
    pub file_offset: u64,
    pub len: usize,
}

impl FilePacket {
    /// The frame prefix, the packet header and the checksums: everything
    /// that goes before the data.
    pub fn encode_head(&self) -> BytesMut {
        let header = encode_header(
            self.seqno,
            self.offset_in_block,
            0,
            self.len,
            self.checksums.len(),
        );
        let body_len = header.len() + self.checksums.len() + self.len;
        let mut buf = BytesMut::with_capacity(PREFIX_LEN + body_len - self.len);
        frame::put_prefix(&mut buf, frame::kind::PACKET, body_len);
        buf.extend_from_slice(&header);
        buf.extend_from_slice(&self.checksums);
        buf
    }

    /// The same packet with its data read into memory.
    pub fn with_data(self, data: Bytes) -> Packet {
        debug_assert_eq!(data.len(), self.len);
        Packet {
            seqno: self.seqno,
            offset_in_block: self.offset_in_block,
            flags: 0,
            checksums: self.checksums,
            data,
        }
    }
}

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
        encode_header(
            self.seqno,
            self.offset_in_block,
            self.flags,
            self.data.len(),
            self.checksums.len(),
        )
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transfer::checksum::CHECKSUM_LEN;
    use crate::transfer::frame::MAX_FRAME_LEN;
    use proptest::prelude::*;

    #[test]
    fn a_file_packet_goes_on_the_wire_as_the_packet_of_its_data() {
        let sums = Checksums::new(512);
        let data = Bytes::from((0..1300u32).map(|i| i as u8).collect::<Vec<_>>());
        let p = Packet::new(7, 4096, data.clone(), &sums);
        let fp = FilePacket {
            seqno: 7,
            offset_in_block: 4096,
            checksums: p.checksums.clone(),
            file_offset: 4096,
            len: data.len(),
        };
        let mut wire = fp.encode_head();
        wire.extend_from_slice(&data);
        assert_eq!(
            wire.freeze(),
            crate::transfer::Frame::Packet(p.clone()).encode_to_bytes()
        );
        assert_eq!(fp.with_data(data), p);
    }

    fn header(seqno: u64, offset: u64, flags: u8, data_len: u32, sums_len: u32) -> Vec<u8> {
        let mut h = Vec::with_capacity(Packet::HEADER_LEN);
        h.extend_from_slice(&seqno.to_be_bytes());
        h.extend_from_slice(&offset.to_be_bytes());
        h.push(flags);
        h.extend_from_slice(&data_len.to_be_bytes());
        h.extend_from_slice(&sums_len.to_be_bytes());
        h
    }

    fn is_malformed(e: &FrameError, what: &str) -> bool {
        matches!(e, FrameError::Malformed { what: w, .. } if *w == what)
    }

    fn status() -> impl Strategy<Value = Status> {
        (0i32..=6).prop_map(|v| Status::try_from(v).expect("valid status"))
    }

    #[test]
    fn hostile_packet_lengths_are_refused_without_allocation() {
        // Every combination of huge declared lengths over a tiny body: the
        // decoder slices the body it was given and never sizes a buffer from
        // the header, so these must be cheap errors (a 4 GiB allocation would
        // abort or take visibly long).
        for (d, s) in [
            (u32::MAX, u32::MAX),
            (u32::MAX, 0),
            (0, u32::MAX),
            (u32::MAX - 3, 4),
            ((MAX_FRAME_LEN + 1) as u32, 0),
            (1, u32::MAX - 3),
        ] {
            let mut body = header(1, 0, 0, d, s);
            body.extend_from_slice(&[0u8; 8]);
            let err = Packet::decode(Bytes::from(body)).unwrap_err();
            assert!(is_malformed(&err, "packet"), "{d}/{s}: {err}");
            assert!(err.to_string().contains("frame holds 8"), "{err}");
        }
    }

    #[test]
    fn short_and_misaligned_packets_are_clear_errors() {
        let err = Packet::decode(Bytes::from_static(&[0u8; 24])).unwrap_err();
        assert!(err.to_string().contains("shorter than the 25-byte header"));
        let mut body = header(1, 0, 0, 1, 3);
        body.extend_from_slice(&[0u8; 4]);
        let err = Packet::decode(Bytes::from(body)).unwrap_err();
        assert!(err.to_string().contains("not a multiple of 4"), "{err}");
    }

    #[test]
    fn hostile_ack_lengths_are_refused() {
        // 255 replies declared, none present.
        let mut b = 7u64.to_be_bytes().to_vec();
        b.extend_from_slice(&[255, 0, 0]);
        assert!(is_malformed(&PipelineAck::decode(&b).unwrap_err(), "ack"));
        // Message of 65535 bytes declared, 1 present.
        let mut b = 7u64.to_be_bytes().to_vec();
        b.extend_from_slice(&[0, 0xff, 0xff, b'x']);
        let err = PipelineAck::decode(&b).unwrap_err();
        assert!(err.to_string().contains("message length 65535"), "{err}");
        // Unknown status and invalid UTF-8.
        let mut b = 7u64.to_be_bytes().to_vec();
        b.extend_from_slice(&[1, 200, 0, 0]);
        assert!(PipelineAck::decode(&b)
            .unwrap_err()
            .to_string()
            .contains("unknown status 200"));
        let mut b = 7u64.to_be_bytes().to_vec();
        b.extend_from_slice(&[0, 0, 2, 0xc3, 0x28]);
        assert!(PipelineAck::decode(&b)
            .unwrap_err()
            .to_string()
            .contains("not UTF-8"));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]

        #[test]
        fn packet_decode_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            match Packet::decode(Bytes::from(bytes.clone())) {
                Ok(p) => {
                    prop_assert_eq!(Packet::HEADER_LEN + p.checksums.len() + p.data.len(), bytes.len());
                    prop_assert_eq!(p.checksums.len() % CHECKSUM_LEN, 0);
                }
                Err(e) => prop_assert!(is_malformed(&e, "packet"), "{}", e),
            }
        }

        /// A well-formed header whose declared lengths are arbitrary (huge,
        /// overflowing, inconsistent with the body): decoding succeeds exactly
        /// when the lengths add up to the body and the checksum length is a
        /// multiple of 4, and is a `Malformed` error otherwise.
        #[test]
        fn packet_decode_arbitrary_declared_lengths(
            data_len in prop_oneof![0u32..300, any::<u32>(), Just(u32::MAX)],
            sums_len in prop_oneof![0u32..300, any::<u32>(), Just(u32::MAX)],
            body_len in 0usize..600,
        ) {
            let mut body = header(3, 4096, FLAG_SYNC, data_len, sums_len);
            body.extend((0..body_len).map(|i| i as u8));
            let consistent = data_len as u64 + sums_len as u64 == body_len as u64
                && (sums_len as usize).is_multiple_of(CHECKSUM_LEN);
            match Packet::decode(Bytes::from(body)) {
                Ok(p) => {
                    prop_assert!(consistent);
                    prop_assert_eq!(p.data.len(), data_len as usize);
                    prop_assert_eq!(p.checksums.len(), sums_len as usize);
                    prop_assert!(p.wants_sync() && !p.is_last());
                }
                Err(e) => {
                    prop_assert!(!consistent);
                    prop_assert!(is_malformed(&e, "packet"), "{}", e);
                }
            }
        }

        /// Checksum count not matching the data (too few, too many, garbage)
        /// is a checksum error from `verify`, never a panic, for any chunk size.
        #[test]
        fn verify_inconsistent_checksums_never_panics(
            bpc in prop_oneof![1u32..700, any::<u32>().prop_map(|v| v.max(1))],
            data in proptest::collection::vec(any::<u8>(), 0..1500),
            sums_words in 0usize..8,
            offset in any::<u32>(),
        ) {
            let c = Checksums::new(bpc);
            let offset = u64::from(offset);
            let good = Packet::new(1, offset, Bytes::from(data.clone()), &c);
            prop_assert!(good.verify(&c).is_ok());
            let bogus = Packet {
                checksums: Bytes::from(vec![0xa5; sums_words * CHECKSUM_LEN]),
                ..good.clone()
            };
            if bogus.checksums != good.checksums {
                let err = bogus.verify(&c).unwrap_err();
                prop_assert!(err.offset >= offset);
                prop_assert!(err.offset < offset + data.len().max(1) as u64);
            }
        }

        #[test]
        fn packet_round_trip(
            seqno in any::<u64>(),
            offset in any::<u64>(),
            flags in any::<u8>(),
            bpc in 1u32..600,
            data in proptest::collection::vec(any::<u8>(), 0..2048),
        ) {
            let c = Checksums::new(bpc);
            let p = Packet { flags, ..Packet::new(seqno, offset, Bytes::from(data), &c) };
            let mut body = p.encode_header();
            prop_assert_eq!(body.len(), Packet::HEADER_LEN);
            body.extend_from_slice(&p.checksums);
            body.extend_from_slice(&p.data);
            let back = Packet::decode(Bytes::from(body)).unwrap();
            prop_assert!(back.verify(&c).is_ok());
            prop_assert_eq!(back, p);
        }

        #[test]
        fn ack_decode_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            match PipelineAck::decode(&bytes) {
                Ok(a) => {
                    prop_assert!(bytes.len() <= PipelineAck::MAX_ENCODED_LEN);
                    prop_assert_eq!(a.encode(), bytes);
                }
                Err(e) => prop_assert!(is_malformed(&e, "ack"), "{}", e),
            }
        }

        #[test]
        fn ack_round_trip(
            seqno in any::<u64>(),
            replies in proptest::collection::vec(status(), 0..=PipelineAck::MAX_REPLIES),
            message in ".{0,64}",
        ) {
            let a = PipelineAck { seqno, replies, message };
            let enc = a.encode();
            prop_assert!(enc.len() <= PipelineAck::MAX_ENCODED_LEN);
            prop_assert_eq!(PipelineAck::decode(&enc).unwrap(), a);
        }

        /// Oversized acks are truncated on encode (replies to 255, the message
        /// to 4096 bytes on a char boundary) so they always decode and never
        /// exceed the ack frame limit.
        #[test]
        fn oversized_ack_truncates_and_decodes(
            n_replies in 0usize..400,
            ch in prop::sample::select(vec!['a', 'é', '€', '😀']),
            n_chars in 0usize..2000,
        ) {
            let a = PipelineAck {
                seqno: 9,
                replies: vec![Status::ErrorChecksum; n_replies],
                message: std::iter::repeat_n(ch, n_chars).collect(),
            };
            let enc = a.encode();
            prop_assert!(enc.len() <= PipelineAck::MAX_ENCODED_LEN);
            let back = PipelineAck::decode(&enc).unwrap();
            prop_assert_eq!(back.replies.len(), n_replies.min(PipelineAck::MAX_REPLIES));
            prop_assert!(back.message.len() <= PipelineAck::MAX_MESSAGE);
            prop_assert!(a.message.starts_with(&back.message));
            if a.message.len() <= PipelineAck::MAX_MESSAGE {
                prop_assert_eq!(&back.message, &a.message);
            } else {
                prop_assert!(back.message.len() > PipelineAck::MAX_MESSAGE - ch.len_utf8());
            }
        }
    }
}
