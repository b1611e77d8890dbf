//! A raft snapshot message cut into pieces for `RaftPeer.InstallSnapshot`
//! and put back together on the receiving side, so that a snapshot of any
//! size fits the RPC message limit (64 MiB: about 850k files' worth once
//! LZ4-compressed, so a larger namespace could not rebuild a member in one
//! message).

use bytes::Bytes;
use protobuf::Message as _;
use raft::prelude::{Message, MessageType};
use rfs_proto::ha::SnapshotChunk;
use tonic::Status;

/// Snapshot bytes per piece.
pub const CHUNK_BYTES: usize = 1 << 20;
/// The most snapshot bytes a member takes: well above a 10M-file namespace
/// (about 750 MB compressed), and a bound on what a stranger can make it
/// hold.
pub const MAX_SNAPSHOT_BYTES: usize = 8 << 30;

/// `m` (a MsgSnapshot from `from`) as pieces of at most `chunk` data bytes.
pub fn split(from: u64, mut m: Message, chunk: usize) -> Vec<SnapshotChunk> {
    let data = std::mem::take(&mut m.mut_snapshot().data);
    let message = m.write_to_bytes().expect("raft messages always encode");
    // Slices of the snapshot's one buffer: handing out a large snapshot
    // copies nothing here (a 75 MB copy at 1M files held up a leader's
    // RPC workers for tens of milliseconds).
    let chunk = chunk.max(1);
    let mut pieces: Vec<SnapshotChunk> = (0..data.len())
        .step_by(chunk)
        .map(|at| SnapshotChunk {
            from,
            message: Vec::new(),
            data: data.slice(at..data.len().min(at + chunk)),
        })
        .collect();
    if pieces.is_empty() {
        pieces.push(SnapshotChunk {
            from,
            ..Default::default()
        });
    }
    pieces[0].message = message;
    pieces
}

/// Puts the pieces of one snapshot message back together, refusing what a
/// member of this group would never send.
pub struct Assembler {
    members: usize,
    limit: usize,
    message: Option<Message>,
    data: Vec<u8>,
}

impl Assembler {
    pub fn new(members: usize, limit: usize) -> Assembler {
        Assembler {
            members,
            limit,
            message: None,
            data: Vec::new(),
        }
    }

    pub fn push(&mut self, piece: SnapshotChunk) -> Result<(), Status> {
        super::transport::check_member("snapshot", piece.from, self.members)?;
        match &self.message {
            None => {
                if piece.message.is_empty() {
                    return Err(Status::invalid_argument(
                        "a snapshot stream must begin with its raft message",
                    ));
                }
                let m = Message::parse_from_bytes(&piece.message).map_err(|e| {
                    Status::invalid_argument(format!("bad raft snapshot message: {e}"))
                })?;
                if m.get_msg_type() != MessageType::MsgSnapshot {
                    return Err(Status::invalid_argument(format!(
                        "a snapshot stream must carry a MsgSnapshot, not {:?}",
                        m.get_msg_type()
                    )));
                }
                if m.from != piece.from {
                    return Err(Status::invalid_argument("raft message sender mismatch"));
                }
                self.message = Some(m);
            }
            Some(m) => {
                if !piece.message.is_empty() || piece.from != m.from {
                    return Err(Status::invalid_argument(
                        "a snapshot stream carries one message, from one member",
                    ));
                }
            }
        }
        if self.data.len() + piece.data.len() > self.limit {
            return Err(Status::resource_exhausted(format!(
                "raft snapshot larger than {} bytes",
                self.limit
            )));
        }
        self.data.extend_from_slice(&piece.data);
        Ok(())
    }

    /// The whole message, once the stream has ended.
    pub fn finish(self) -> Result<Message, Status> {
        let mut m = self
            .message
            .ok_or_else(|| Status::invalid_argument("an empty raft snapshot stream"))?;
        m.mut_snapshot().data = Bytes::from(self.data);
        Ok(m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot_message(from: u64, data: &[u8]) -> Message {
        let mut m = Message::default();
        m.set_msg_type(MessageType::MsgSnapshot);
        m.from = from;
        m.to = 2;
        m.term = 3;
        m.mut_snapshot().mut_metadata().index = 42;
        m.mut_snapshot().data = Bytes::copy_from_slice(data);
        m
    }

    fn assemble(pieces: Vec<SnapshotChunk>, limit: usize) -> Result<Message, Status> {
        let mut a = Assembler::new(3, limit);
        for p in pieces {
            a.push(p)?;
        }
        a.finish()
    }

    #[test]
    fn a_snapshot_cut_into_pieces_comes_back_whole() {
        let data: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
        let m = snapshot_message(1, &data);
        let pieces = split(1, m.clone(), 4096);
        assert_eq!(pieces.len(), 3);
        assert!(pieces.iter().all(|p| p.data.len() <= 4096));
        assert!(pieces[1..].iter().all(|p| p.message.is_empty()));
        assert_eq!(assemble(pieces, MAX_SNAPSHOT_BYTES).unwrap(), m);
        let empty = snapshot_message(1, &[]);
        assert_eq!(
            assemble(split(1, empty.clone(), 4096), MAX_SNAPSHOT_BYTES).unwrap(),
            empty
        );
    }

    #[test]
    fn pieces_no_member_would_send_are_refused() {
        let m = snapshot_message(1, &[7; 100]);
        let refused = |pieces: Vec<SnapshotChunk>, limit: usize| {
            assemble(pieces, limit).unwrap_err().message().to_string()
        };
        let mut stranger = split(1, m.clone(), 10);
        stranger[0].from = 9;
        assert_eq!(
            refused(stranger, MAX_SNAPSHOT_BYTES),
            "raft snapshot from 9 which is not a member of this group"
        );
        let mut headless = split(1, m.clone(), 10);
        headless.remove(0);
        assert_eq!(
            refused(headless, MAX_SNAPSHOT_BYTES),
            "a snapshot stream must begin with its raft message"
        );
        let mut garbled = split(1, m.clone(), 10);
        garbled[0].message = vec![0xff; 8];
        assert!(refused(garbled, MAX_SNAPSHOT_BYTES).starts_with("bad raft snapshot message"));
        let mut switched = split(1, m.clone(), 10);
        switched[3].from = 2;
        assert_eq!(
            refused(switched, MAX_SNAPSHOT_BYTES),
            "a snapshot stream carries one message, from one member"
        );
        assert_eq!(
            refused(split(1, m.clone(), 10), 99),
            "raft snapshot larger than 99 bytes"
        );
        let mut not_snapshot = m.clone();
        not_snapshot.set_msg_type(MessageType::MsgAppend);
        let piece = SnapshotChunk {
            from: 1,
            message: not_snapshot.write_to_bytes().unwrap(),
            data: Bytes::new(),
        };
        assert!(refused(vec![piece], MAX_SNAPSHOT_BYTES).contains("must carry a MsgSnapshot"));
        assert_eq!(
            Assembler::new(3, 10).finish().unwrap_err().message(),
            "an empty raft snapshot stream"
        );
    }
}
