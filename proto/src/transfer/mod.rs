//! The data-transfer protocol: how block bytes move between clients and
//! datanodes and along a write pipeline.
//!
//! A connection carries [`Frame`]s (see [`frame`] for the layout). The
//! initiator sends one [`Op`] and reads one `OpResponse`; then, for
//! WRITE_BLOCK, it streams [`Packet`]s downstream while [`PipelineAck`]s flow
//! back upstream; for READ_BLOCK the datanode streams packets to the reader.
//! Every packet carries one CRC32C per `bytes_per_checksum` chunk
//! ([`checksum`]), verified by every hop and by the reader.

pub mod checksum;
pub mod codec;
pub mod frame;
pub mod packet;
mod timeouts;

pub use checksum::{ChecksumError, Checksums};
pub use codec::FrameCodec;
pub use frame::{Frame, FrameError, Op, MAX_FRAME_LEN, MAX_HEADER_LEN, PROTOCOL_VERSION};
pub use packet::{FilePacket, Packet, PipelineAck};
pub use timeouts::{pipeline_timeout, PIPELINE_TIMEOUT_STEP};

pub mod ops {
    //! Protobuf op headers (generated from `transfer.proto`).
    tonic::include_proto!("rfs.transfer");
}
pub use ops::{
    CopyBlockOp, OpResponse, ReadBlockOp, RecoverReplicaOp, RecoveryPhase, Status, WriteBlockOp,
    WriteStage,
};
