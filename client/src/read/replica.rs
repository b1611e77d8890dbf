//! One READ_BLOCK stream from one replica, every chunk verified.

use std::time::Duration;

use bytes::Bytes;
use rfs_proto::common::{DatanodeInfo, ExtendedBlock};
use rfs_proto::transfer::{Checksums, Frame, Op, ReadBlockOp, Status as TransferStatus};
use rfs_transport::{BlockTransport, FrameReceiver, FrameSender};
use tokio::time::timeout;

use crate::datanode::data_addr;
use crate::error::chain;
use crate::write::frame_name;

/// Why a replica could not serve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ReplicaError {
    /// Its data failed a checksum: the replica is bad (report it).
    Corrupt(String),
    /// The datanode refused it as corrupt (it found so itself, has
    /// quarantined it and reports it; nothing for the client to report).
    Quarantined(String),
    /// Unreachable, timed out, refused or broke the protocol.
    Failed(String),
}

pub(crate) struct ReplicaStream {
    /// Kept open: closing it could look like an abort to the datanode.
    _sender: Box<dyn FrameSender>,
    rx: Box<dyn FrameReceiver>,
    sums: Checksums,
    /// Block offset the next packet must start at.
    next_offset: u64,
    timeout: Duration,
}

/// Where and what to read.
pub(crate) struct ReadRequest<'a> {
    pub block: ExtendedBlock,
    pub offset: u64,
    pub length: u64,
    pub client_id: &'a str,
    pub timeout: Duration,
}

impl ReplicaStream {
    /// Sends READ_BLOCK for `[offset, offset + length)` of `block` to `dn`
    /// and checks the response.
    pub(crate) async fn open(
        transport: &dyn BlockTransport,
        dn: &DatanodeInfo,
        req: ReadRequest<'_>,
    ) -> Result<ReplicaStream, ReplicaError> {
        let t = req.timeout;
        let failed = ReplicaError::Failed;
        let addr = data_addr(dn).await.map_err(failed)?;
        let conn = match timeout(t, transport.connect(addr)).await {
            Err(_) => return Err(failed(format!("no connection within {t:?}"))),
            Ok(Err(e)) => return Err(failed(chain(&e))),
            Ok(Ok(c)) => c,
        };
        let (mut sender, mut rx) = conn.split();
        let op = Op::ReadBlock(ReadBlockOp {
            block: Some(req.block),
            offset: req.offset,
            length: req.length,
            client_id: req.client_id.to_string(),
        });
        match timeout(t, sender.send(Frame::Op(op))).await {
            Err(_) => return Err(failed(format!("sending READ_BLOCK timed out after {t:?}"))),
            Ok(Err(e)) => return Err(failed(format!("sending READ_BLOCK: {}", chain(&e)))),
            Ok(Ok(())) => {}
        }
        let resp = match timeout(t, rx.recv()).await {
            Err(_) => return Err(failed(format!("no answer to READ_BLOCK within {t:?}"))),
            Ok(Err(e)) => return Err(failed(chain(&e))),
            Ok(Ok(None)) => return Err(failed("connection closed before the op response".into())),
            Ok(Ok(Some(Frame::Response(r)))) => r,
            Ok(Ok(Some(other))) => {
                return Err(failed(format!(
                    "expected an op response, got {}",
                    frame_name(&other)
                )))
            }
        };
        if resp.status() != TransferStatus::Success {
            let status = resp.status();
            let why = if resp.message.is_empty() {
                status.as_str_name().to_lowercase()
            } else {
                resp.message
            };
            return Err(match status {
                TransferStatus::ErrorChecksum => ReplicaError::Quarantined(why),
                _ => failed(why),
            });
        }
        if resp.bytes_per_checksum == 0 {
            return Err(failed("the datanode sent bytes_per_checksum 0".into()));
        }
        if resp.first_chunk_offset > req.offset
            || req.offset - resp.first_chunk_offset >= u64::from(resp.bytes_per_checksum)
        {
            return Err(failed(format!(
                "the datanode starts at offset {} for a read at {}",
                resp.first_chunk_offset, req.offset
            )));
        }
        let end = req.offset + req.length;
        if resp.replica_length != 0 && resp.replica_length < end {
            return Err(failed(format!(
                "the replica holds {} bytes, the read needs {end}",
                resp.replica_length
            )));
        }
        Ok(ReplicaStream {
            _sender: sender,
            rx,
            sums: Checksums::new(resp.bytes_per_checksum),
            next_offset: resp.first_chunk_offset,
            timeout: t,
        })
    }

    /// Block offset of the next byte this stream will deliver.
    pub(crate) fn next_offset(&self) -> u64 {
        self.next_offset
    }

    /// The next packet's data with its block offset, checksums verified;
    /// `None` at the last (empty) packet.
    pub(crate) async fn next_packet(&mut self) -> Result<Option<(u64, Bytes)>, ReplicaError> {
        let t = self.timeout;
        let at = self.next_offset;
        let packet = match timeout(t, self.rx.recv()).await {
            Err(_) => {
                return Err(ReplicaError::Failed(format!(
                    "no data for block offset {at} within {t:?}"
                )))
            }
            Ok(Err(e)) => return Err(ReplicaError::Failed(chain(&e))),
            Ok(Ok(None)) => {
                return Err(ReplicaError::Failed(format!(
                    "connection closed at block offset {at}"
                )))
            }
            Ok(Ok(Some(Frame::Packet(p)))) => p,
            Ok(Ok(Some(other))) => {
                return Err(ReplicaError::Failed(format!(
                    "expected a packet, got {}",
                    frame_name(&other)
                )))
            }
        };
        if packet.offset_in_block != at {
            return Err(ReplicaError::Failed(format!(
                "packet at block offset {} where {at} was due",
                packet.offset_in_block
            )));
        }
        if packet.is_last() {
            return Ok(None);
        }
        if packet.data.is_empty() {
            return Err(ReplicaError::Failed(format!(
                "empty data packet at block offset {at}"
            )));
        }
        packet
            .verify(&self.sums)
            .map_err(|e| ReplicaError::Corrupt(e.to_string()))?;
        self.next_offset += packet.data.len() as u64;
        Ok(Some((at, packet.data)))
    }
}
