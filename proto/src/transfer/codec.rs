//! A tokio-util codec for [`Frame`]s.
//!
//! Decoding buffers until a whole frame is present ("not enough yet" is
//! `Ok(None)`, not an error); the prefix is validated before the buffer is
//! grown for the body. A peer that closes between frames ends the stream
//! cleanly; one that closes mid-frame yields [`FrameError::Truncated`].

use bytes::{Buf, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

use super::frame::{Frame, FrameError, PREFIX_LEN};

#[derive(Debug, Default)]
pub struct FrameCodec {
    /// Kind and body length of a frame whose prefix was already consumed.
    pending: Option<(u8, usize)>,
}

impl Decoder for FrameCodec {
    type Item = Frame;
    type Error = FrameError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, FrameError> {
        let (kind, len) = match self.pending {
            Some(p) => p,
            None => {
                if src.len() < PREFIX_LEN {
                    return Ok(None);
                }
                let prefix: [u8; PREFIX_LEN] =
                    src[..PREFIX_LEN].try_into().expect("length checked");
                let p = Frame::parse_prefix(&prefix)?;
                src.advance(PREFIX_LEN);
                self.pending = Some(p);
                p
            }
        };
        if src.len() < len {
            // `len` is bounded by parse_prefix, so reserving is safe.
            src.reserve(len - src.len());
            return Ok(None);
        }
        self.pending = None;
        let body = src.split_to(len).freeze();
        Frame::decode_body(kind, body).map(Some)
    }

    fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, FrameError> {
        match self.decode(src)? {
            Some(f) => Ok(Some(f)),
            None if src.is_empty() && self.pending.is_none() => Ok(None),
            None => Err(FrameError::Truncated),
        }
    }
}

impl Encoder<Frame> for FrameCodec {
    type Error = FrameError;

    fn encode(&mut self, frame: Frame, dst: &mut BytesMut) -> Result<(), FrameError> {
        let (head, tail) = frame.encode_parts();
        dst.extend_from_slice(&head);
        if let Some((c, d)) = tail {
            dst.extend_from_slice(&c);
            dst.extend_from_slice(&d);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::common::ExtendedBlock;
    use crate::transfer::checksum::Checksums;
    use crate::transfer::frame::{kind, Op, MAX_FRAME_LEN, MAX_HEADER_LEN};
    use crate::transfer::ops::{ReadBlockOp, RecoverReplicaOp, RecoveryPhase, Status};
    use crate::transfer::packet::{Packet, PipelineAck};
    use bytes::Bytes;
    use proptest::prelude::*;

    fn decode_all(bytes: &[u8]) -> Result<Vec<Frame>, FrameError> {
        let mut codec = FrameCodec::default();
        let mut buf = BytesMut::from(bytes);
        let mut out = Vec::new();
        while let Some(f) = codec.decode_eof(&mut buf)? {
            out.push(f);
        }
        Ok(out)
    }

    fn sample_frames() -> Vec<Frame> {
        let sums = Checksums::new(512);
        vec![
            Frame::Op(Op::ReadBlock(ReadBlockOp {
                block: Some(ExtendedBlock {
                    block_id: 7,
                    generation_stamp: 1001,
                    num_bytes: 10,
                }),
                offset: 3,
                length: 5,
                client_id: "c".into(),
            })),
            Frame::Op(Op::RecoverReplica(RecoverReplicaOp {
                block: Some(ExtendedBlock {
                    block_id: 8,
                    generation_stamp: 1002,
                    num_bytes: 2048,
                }),
                phase: RecoveryPhase::Commit as i32,
            })),
            Frame::Packet(Packet::new(4, 1024, Bytes::from(vec![9u8; 1300]), &sums)),
            Frame::Packet(Packet::last(5, 2324)),
            Frame::Ack(PipelineAck {
                seqno: 4,
                replies: vec![Status::Success, Status::ErrorChecksum],
                message: "dn2 bad".into(),
            }),
        ]
    }

    #[test]
    fn round_trip() {
        let frames = sample_frames();
        let mut wire = Vec::new();
        for f in &frames {
            wire.extend_from_slice(&f.encode_to_bytes());
        }
        assert_eq!(decode_all(&wire).unwrap(), frames);
    }

    #[test]
    fn truncated_frame_is_an_error_not_a_clean_end() {
        let wire = sample_frames()[1].encode_to_bytes();
        assert!(matches!(
            decode_all(&wire[..wire.len() - 1]),
            Err(FrameError::Truncated)
        ));
        assert!(decode_all(&[]).unwrap().is_empty());
    }

    #[test]
    fn oversized_length_rejected_from_prefix() {
        let mut wire = b"RF\x01\x02".to_vec();
        wire.extend_from_slice(&((MAX_FRAME_LEN + 1) as u32).to_be_bytes());
        assert!(matches!(decode_all(&wire), Err(FrameError::TooLong { .. })));
        let mut op = b"RF\x01\x51".to_vec();
        op.extend_from_slice(&(1u32 << 20).to_be_bytes());
        assert!(matches!(decode_all(&op), Err(FrameError::TooLong { .. })));
    }

    #[test]
    fn bad_magic_version_kind() {
        assert!(matches!(
            decode_all(b"GET / HTTP/1.1\r\n"),
            Err(FrameError::BadMagic(_))
        ));
        assert!(matches!(
            decode_all(b"RF\x09\x02\0\0\0\0"),
            Err(FrameError::UnsupportedVersion(9))
        ));
        assert!(matches!(
            decode_all(b"RF\x01\x7f\0\0\0\0"),
            Err(FrameError::UnknownKind(0x7f))
        ));
    }

    const KINDS: [u8; 7] = [
        kind::RESPONSE,
        kind::PACKET,
        kind::ACK,
        kind::WRITE_BLOCK,
        kind::READ_BLOCK,
        kind::COPY_BLOCK,
        kind::RECOVER_REPLICA,
    ];

    /// The body limit the decoder must enforce for `kind`.
    fn limit(k: u8) -> usize {
        match k {
            kind::PACKET => MAX_FRAME_LEN,
            kind::ACK => PipelineAck::MAX_ENCODED_LEN,
            _ => MAX_HEADER_LEN,
        }
    }

    fn prefix(k: u8, len: u32) -> Vec<u8> {
        let mut p = b"RF\x01".to_vec();
        p.push(k);
        p.extend_from_slice(&len.to_be_bytes());
        p
    }

    /// Feeds `wire` to a fresh codec in one buffer (as a read would leave
    /// it) and returns the first result and the buffer's capacity afterwards.
    fn decode_once(wire: &[u8]) -> (Result<Option<Frame>, FrameError>, usize, usize) {
        let mut buf = BytesMut::from(wire);
        let before = buf.capacity();
        let r = FrameCodec::default().decode(&mut buf);
        (r, before, buf.capacity())
    }

    #[test]
    fn hostile_lengths_rejected_before_any_reservation() {
        for k in KINDS {
            for len in [u32::MAX, 1 << 31, (limit(k) + 1) as u32] {
                let (r, before, after) = decode_once(&prefix(k, len));
                match r {
                    Err(FrameError::TooLong { len: l, max }) => {
                        assert_eq!((l, max), (len as usize, limit(k)));
                    }
                    other => panic!("kind {k:#x} len {len}: {other:?}"),
                }
                assert_eq!(after, before, "kind {k:#x} len {len} grew the buffer");
            }
            // A length at the limit is accepted and reserves no more than it.
            let (r, before, after) = decode_once(&prefix(k, limit(k) as u32));
            assert!(matches!(r, Ok(None)), "kind {k:#x}: {r:?}");
            assert!(after >= limit(k), "kind {k:#x}: reserved {after}");
            assert!(
                after <= (limit(k) + PREFIX_LEN).max(2 * before),
                "kind {k:#x}: reserved {after} for a {}-byte limit",
                limit(k)
            );
        }
    }

    #[test]
    fn hostile_packet_header_inside_small_frame_is_malformed() {
        // A 25-byte packet body whose header declares 4 GiB of data and of
        // checksums: refused from the frame's own length, nothing sized.
        let mut body = Vec::new();
        body.extend_from_slice(&1u64.to_be_bytes());
        body.extend_from_slice(&0u64.to_be_bytes());
        body.push(0);
        body.extend_from_slice(&u32::MAX.to_be_bytes());
        body.extend_from_slice(&u32::MAX.to_be_bytes());
        let mut wire = prefix(kind::PACKET, body.len() as u32);
        wire.extend_from_slice(&body);
        let (r, before, after) = decode_once(&wire);
        match r {
            Err(FrameError::Malformed {
                what: "packet",
                why,
            }) => {
                assert!(why.contains("frame holds 0"), "{why}")
            }
            other => panic!("{other:?}"),
        }
        assert!(after <= before, "buffer grew from {before} to {after}");
    }

    proptest! {
        /// Any prefix with a valid magic/version/kind and an arbitrary length:
        /// over the kind's limit it is `TooLong` and the buffer is untouched;
        /// within it the codec waits for the body having reserved at most
        /// the limit (plus the consumed prefix).
        #[test]
        fn arbitrary_lengths_never_reserve_beyond_the_limit(
            k in prop::sample::select(KINDS.to_vec()),
            len in prop_oneof![any::<u32>(), 0u32..70_000, (MAX_FRAME_LEN as u32 - 4)..(MAX_FRAME_LEN as u32 + 4)],
            partial in proptest::collection::vec(any::<u8>(), 0..64),
        ) {
            let mut wire = prefix(k, len);
            wire.extend_from_slice(&partial);
            let (r, before, after) = decode_once(&wire);
            if len as usize > limit(k) {
                prop_assert!(matches!(r, Err(FrameError::TooLong { .. })), "{:?}", r);
                prop_assert_eq!(after, before);
            } else if (len as usize) > partial.len() {
                prop_assert!(matches!(r, Ok(None)), "{:?}", r);
                prop_assert!(after <= (limit(k) + PREFIX_LEN).max(2 * before), "reserved {}", after);
            }
        }

        /// Frames split at arbitrary points decode to the same frames (the
        /// codec's pending-prefix state is exercised), and a stream cut short
        /// is `Truncated`, never a panic or a clean end.
        #[test]
        fn chunked_stream_round_trips(
            cuts in proptest::collection::vec(1usize..700, 1..20),
            seqno in any::<u64>(),
            data in proptest::collection::vec(any::<u8>(), 0..1200),
            chop in 0usize..4,
        ) {
            let sums = Checksums::new(256);
            let mut frames = sample_frames();
            frames.push(Frame::Packet(Packet::new(seqno, 0, Bytes::from(data), &sums)));
            frames.push(Frame::Ack(PipelineAck::success(seqno, 3)));
            let mut wire = Vec::new();
            for f in &frames {
                wire.extend_from_slice(&f.encode_to_bytes());
            }
            let wire = &wire[..wire.len() - chop];
            let mut codec = FrameCodec::default();
            let mut buf = BytesMut::new();
            let mut out = Vec::new();
            let mut rest = wire;
            let mut cuts = cuts.into_iter().cycle();
            while !rest.is_empty() {
                let n = cuts.next().unwrap().min(rest.len());
                buf.extend_from_slice(&rest[..n]);
                rest = &rest[n..];
                while let Some(f) = codec.decode(&mut buf).unwrap() {
                    out.push(f);
                }
            }
            let end = codec.decode_eof(&mut buf);
            if chop == 0 {
                prop_assert!(matches!(end, Ok(None)), "{:?}", end);
                prop_assert_eq!(out, frames);
            } else {
                prop_assert!(matches!(end, Err(FrameError::Truncated)), "{:?}", end);
                prop_assert_eq!(&out[..], &frames[..frames.len() - 1]);
            }
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode_all(&bytes);
        }

        #[test]
        fn arbitrary_bodies_after_valid_prefix_never_panic(kind in prop::sample::select(vec![0x01u8, 0x02, 0x03, 0x50, 0x51, 0x52, 0x53]),
                                                          body in proptest::collection::vec(any::<u8>(), 0..256)) {
            let mut wire = b"RF\x01".to_vec();
            wire.push(kind);
            wire.extend_from_slice(&(body.len() as u32).to_be_bytes());
            wire.extend_from_slice(&body);
            let _ = decode_all(&wire);
        }
    }
}
