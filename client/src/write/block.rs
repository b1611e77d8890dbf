//! One block of a file being written, across pipeline attempts.
//!
//! Every packet sent stays queued until the whole pipeline acknowledged
//! it. When an attempt fails ([`Failure`]), the block is recovered the way
//! HDFS does it:
//!
//! 1. the failed datanode is dropped (and excluded from this file's later
//!    blocks);
//! 2. the namenode gives the block a new generation stamp, records it
//!    with the acknowledged length (datanodes check both with the
//!    namenode before they cut a replica) and, if the replacement policy
//!    asks for it, picks replacement datanodes (`UpdatePipeline`):
//!    replicas left at the old stamp are stale;
//! 3. a replacement gets the acknowledged prefix copied from a survivor
//!    (COPY_BLOCK rbw);
//! 4. a RECOVER pipeline over survivors and replacements cuts every
//!    replica to the acknowledged length under the new stamp, and every
//!    unacknowledged packet is sent again.
//!
//! This repeats (a bounded number of times) while datanodes remain.

use std::collections::VecDeque;

use bytes::Bytes;
use rfs_proto::common::{DatanodeInfo, ExtendedBlock, LocatedBlock};
use rfs_proto::namenode::UpdatePipelineRequest;
use rfs_proto::transfer::{packet::FLAG_SYNC, Checksums, Packet, WriteStage};
use tracing::{info, warn};

use super::pipeline::{BlockPipeline, Failure, Setup};
use super::replace::{copy_prefix, replacements_wanted};
use crate::client::Client;
use crate::datanode::describe;
use crate::error::{Error, Result};

/// Recoveries of one block before the write gives up.
const MAX_RECOVERIES: usize = 5;

/// How a packet is flushed.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Flush {
    /// Not a flush: a full packet (or the file's last bytes).
    No,
    /// hflush: acknowledged by every node; a partial last chunk is sent
    /// again with the bytes that follow.
    Hflush,
    /// hsync: hflush, and every node fsyncs it first.
    Hsync,
}

pub(crate) struct BlockStream {
    client: Client,
    path: String,
    /// Id and current generation stamp.
    block: ExtendedBlock,
    nodes: Vec<DatanodeInfo>,
    /// Replicas wanted (the pipeline the namenode first chose).
    target: usize,
    pipeline: Option<BlockPipeline>,
    /// Sent, not yet acknowledged by every node, in seqno order.
    unacked: VecDeque<Packet>,
    /// Bytes every node of the pipeline acknowledged.
    acked_len: u64,
    next_seqno: u64,
    /// Where the next packet starts.
    offset: u64,
    sums: Checksums,
    /// A flush happened: the replacement policy then keeps replicas up.
    flushed: bool,
    recoveries: usize,
}

impl BlockStream {
    /// Opens a new block's pipeline; on failure hands back why, so the
    /// caller can abandon the block and ask for another.
    pub(crate) async fn open(
        client: &Client,
        path: &str,
        located: LocatedBlock,
    ) -> std::result::Result<BlockStream, Failure> {
        let block = located.block.ok_or_else(|| Failure {
            node: None,
            error: Error::Protocol(format!(
                "{path}: the namenode allocated a block without an id"
            )),
        })?;
        let setup = Setup {
            block,
            nodes: located.locations.clone(),
            stage: WriteStage::Create,
            recover_length: 0,
        };
        let pipeline = BlockPipeline::open(client, path, setup).await?;
        Ok(BlockStream {
            client: client.clone(),
            path: path.to_string(),
            block,
            target: located.locations.len(),
            nodes: located.locations,
            pipeline: Some(pipeline),
            unacked: VecDeque::new(),
            acked_len: 0,
            next_seqno: 0,
            offset: 0,
            sums: Checksums::new(client.config().bytes_per_checksum),
            flushed: false,
            recoveries: 0,
        })
    }

    /// Bytes of the block sent so far (a flushed partial chunk not
    /// counted: it is sent again).
    pub(crate) fn offset(&self) -> u64 {
        self.offset
    }

    /// Sends one packet of `data` (which starts on a chunk boundary).
    /// Returns its seqno.
    pub(crate) async fn send(
        &mut self,
        data: Bytes,
        flush: Flush,
        excluded: &mut Vec<String>,
    ) -> Result<u64> {
        let len = data.len() as u64;
        let seqno = self.next_seqno;
        let mut packet = Packet::new(seqno, self.offset, data, &self.sums);
        if flush == Flush::Hsync {
            packet.flags |= FLAG_SYNC;
        }
        self.next_seqno += 1;
        self.offset += match flush {
            // The partial last chunk comes again with what follows.
            Flush::Hflush | Flush::Hsync => len - len % self.sums.bytes_per_checksum as u64,
            Flush::No => len,
        };
        if flush != Flush::No {
            self.flushed = true;
        }
        self.push(packet, excluded).await?;
        Ok(seqno)
    }

    /// Waits until every node acknowledged packet `seqno`, recovering the
    /// pipeline as needed.
    pub(crate) async fn wait_acked(
        &mut self,
        seqno: u64,
        excluded: &mut Vec<String>,
    ) -> Result<()> {
        loop {
            let waited = match self.pipeline.as_mut() {
                Some(p) => p.wait_acked(seqno).await,
                None => return Err(self.closed()),
            };
            self.trim();
            match waited {
                Ok(()) => return Ok(()),
                Err(f) => self.recover(f, excluded).await?,
            }
        }
    }

    /// Sends the last (empty) packet, waits for every ack, and returns the
    /// block with its generation stamp and final length.
    pub(crate) async fn finish(mut self, excluded: &mut Vec<String>) -> Result<ExtendedBlock> {
        let seqno = self.next_seqno;
        self.next_seqno += 1;
        self.push(Packet::last(seqno, self.offset), excluded)
            .await?;
        self.wait_acked(seqno, excluded).await?;
        if let Some(p) = self.pipeline.take() {
            p.close().await;
        }
        Ok(ExtendedBlock {
            num_bytes: self.offset,
            ..self.block
        })
    }

    async fn push(&mut self, packet: Packet, excluded: &mut Vec<String>) -> Result<()> {
        self.trim();
        self.unacked.push_back(packet.clone());
        let Some(p) = self.pipeline.as_mut() else {
            return Err(self.closed());
        };
        if let Err(f) = p.push(packet).await {
            // Recovery sends every unacknowledged packet, this one too.
            self.recover(f, excluded).await?;
        }
        Ok(())
    }

    /// Drops the packets every node acknowledged.
    fn trim(&mut self) {
        let Some(acked) = self.pipeline.as_ref().and_then(|p| p.acked()) else {
            return;
        };
        while let Some(p) = self.unacked.front() {
            if p.seqno > acked {
                break;
            }
            self.acked_len = self.acked_len.max(p.offset_in_block + p.data.len() as u64);
            self.unacked.pop_front();
        }
    }

    fn closed(&self) -> Error {
        Error::WriterClosed {
            path: self.path.clone(),
        }
    }

    /// Rebuilds the pipeline without the failed node and sends again what
    /// was not acknowledged; see the module docs.
    async fn recover(&mut self, first: Failure, excluded: &mut Vec<String>) -> Result<()> {
        let mut failure = first;
        loop {
            self.trim();
            self.pipeline = None;
            self.recoveries += 1;
            let Some(bad) = failure.node.filter(|i| *i < self.nodes.len()) else {
                return Err(failure.error);
            };
            if self.recoveries > MAX_RECOVERIES {
                warn!(
                    "{}: block {} failed {MAX_RECOVERIES} recoveries",
                    self.path, self.block.block_id
                );
                return Err(failure.error);
            }
            let lost = self.nodes.remove(bad);
            warn!(
                "{}: block {}: dropping datanode {} from the pipeline: {}",
                self.path,
                self.block.block_id,
                describe(&lost),
                failure.error
            );
            if !excluded.contains(&lost.datanode_id) {
                excluded.push(lost.datanode_id.clone());
            }
            if self.nodes.is_empty() {
                return Err(failure.error);
            }
            let want = replacements_wanted(
                self.client.config().replace_datanode_on_failure,
                self.target,
                self.nodes.len(),
                self.flushed,
            );
            let located = self.update_pipeline(want, excluded).await?;
            let old_gs = self.block.generation_stamp;
            self.block = located.block.unwrap_or(self.block);
            let survivors = self.nodes.len();
            let mut nodes = located.locations;
            nodes.truncate(survivors + want);
            // Survivors first, as sent; replacements get the prefix.
            let mut added = nodes.split_off(survivors.min(nodes.len()));
            if self.acked_len > 0 {
                let mut kept = Vec::new();
                for r in added {
                    let b = ExtendedBlock {
                        num_bytes: self.acked_len,
                        ..self.block
                    };
                    match copy_prefix(&self.client, &nodes[0], &r, b).await {
                        Ok(()) => kept.push(r),
                        Err(e) => {
                            warn!(
                                "{}: replacement datanode {} not used: {e}",
                                self.path,
                                describe(&r)
                            );
                            excluded.push(r.datanode_id.clone());
                        }
                    }
                }
                added = kept;
            }
            nodes.extend(added);
            info!(
                "{}: block {} recovered at {} acknowledged bytes: generation stamp {old_gs} -> {}, pipeline {}",
                self.path,
                self.block.block_id,
                self.acked_len,
                self.block.generation_stamp,
                nodes.iter().map(describe).collect::<Vec<_>>().join(", ")
            );
            self.nodes = nodes;
            let setup = Setup {
                block: self.block,
                nodes: self.nodes.clone(),
                stage: WriteStage::Recover,
                recover_length: self.acked_len,
            };
            let mut pipeline = match BlockPipeline::open(&self.client, &self.path, setup).await {
                Ok(p) => p,
                Err(f) => {
                    failure = f;
                    continue;
                }
            };
            let mut resent = Ok(());
            for p in self.unacked.iter() {
                if let Err(f) = pipeline.push(p.clone()).await {
                    resent = Err(f);
                    break;
                }
            }
            self.pipeline = Some(pipeline);
            match resent {
                Ok(()) => return Ok(()),
                Err(f) => failure = f,
            }
        }
    }

    /// New generation stamp (and replacements) from the namenode.
    async fn update_pipeline(&mut self, want: usize, excluded: &[String]) -> Result<LocatedBlock> {
        let call = self.client.new_call();
        let req = UpdatePipelineRequest {
            call: call.id(),
            path: self.path.clone(),
            client_id: self.client.client_id().to_string(),
            block: Some(self.block),
            survivors: self.nodes.iter().map(|n| n.datanode_id.clone()).collect(),
            replacements: want as u32,
            excluded: excluded.to_vec(),
            client_host: self.client.config().client_host.clone(),
            // The namenode records it: datanodes cut replicas only to it.
            acked_length: self.acked_len,
        };
        let resp = self
            .client
            .rpc()
            .call("update_pipeline", req, |mut c, req| async move {
                c.update_pipeline(req).await
            })
            .await?;
        resp.block.ok_or_else(|| {
            Error::Protocol(format!(
                "{}: the namenode answered update_pipeline without a block",
                self.path
            ))
        })
    }
}
