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
    use crate::transfer::frame::{Op, MAX_FRAME_LEN};
    use crate::transfer::ops::{ReadBlockOp, Status};
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

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode_all(&bytes);
        }

        #[test]
        fn arbitrary_bodies_after_valid_prefix_never_panic(kind in prop::sample::select(vec![0x01u8, 0x02, 0x03, 0x50, 0x51, 0x52]),
                                                          body in proptest::collection::vec(any::<u8>(), 0..256)) {
            let mut wire = b"RF\x01".to_vec();
            wire.push(kind);
            wire.extend_from_slice(&(body.len() as u32).to_be_bytes());
            wire.extend_from_slice(&body);
            let _ = decode_all(&wire);
        }
    }
}
