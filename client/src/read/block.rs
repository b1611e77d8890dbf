//! Reading one byte range of one block, failing over between replicas.
//!
//! Replicas are tried in order, the one on `client_host` first. A replica
//! whose data fails a checksum is reported to the namenode
//! (`report_bad_blocks`, which has its datanode verify it) and the read
//! goes on at the same offset from the next; an unreachable or misbehaving
//! one is simply skipped. Not reported: a replica its datanode refuses as
//! corrupt (it knows), and those of a block the namenode listed as
//! corrupt (every replica marked; they are offered only to be tried).
//! When every replica fails a checksum the read fails at once with
//! [`Error::CorruptBlock`]. A block the namenode knows no replica of (it
//! may have just restarted and be waiting for block reports) is looked up
//! again with backoff until `locate_retry_deadline`.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use rfs_proto::common::{DatanodeInfo, ExtendedBlock, LocatedBlock};

use super::replica::{ReadRequest, ReplicaError, ReplicaStream};
use crate::client::Client;
use crate::datanode::{describe, is_local};
use crate::error::{Error, Result};

/// What every read of one open file shares.
pub(crate) struct OpenFile {
    pub client: Client,
    pub path: String,
    pub len: u64,
    pub blocks: Mutex<Vec<LocatedBlock>>,
}

pub(crate) struct BlockRead {
    file: Arc<OpenFile>,
    block: ExtendedBlock,
    /// File offset of the block's first byte.
    block_start: u64,
    /// Next block offset to deliver, and the end of the range (exclusive).
    pos: u64,
    end: u64,
    candidates: VecDeque<DatanodeInfo>,
    stream: Option<(ReplicaStream, DatanodeInfo)>,
    failures: Vec<String>,
    /// How many of `failures` were checksum failures.
    corrupt: usize,
    /// The namenode listed every replica as marked corrupt.
    marked_corrupt: bool,
}

impl BlockRead {
    /// The part of `[from, to)` (file offsets, `from < to`) that lies in
    /// the block holding `from`.
    pub(crate) fn new(file: Arc<OpenFile>, from: u64, to: u64) -> Result<BlockRead> {
        let located = {
            let blocks = file
                .blocks
                .lock()
                .map_err(|_| Error::Protocol("block list lock poisoned".into()))?;
            blocks
                .iter()
                .find(|b| {
                    let len = b.block.map_or(0, |x| x.num_bytes);
                    b.offset <= from && from < b.offset + len
                })
                .cloned()
        };
        let Some(located) = located else {
            return Err(Error::Protocol(format!(
                "{}: the namenode listed no block at offset {from} (file length {})",
                file.path, file.len
            )));
        };
        let block = located.block.unwrap_or_default();
        let block_start = located.offset;
        let marked_corrupt = located.corrupt;
        let candidates = order_replicas(located.locations, &file.client.config().client_host);
        Ok(BlockRead {
            block,
            block_start,
            pos: from - block_start,
            end: (to - block_start).min(block.num_bytes),
            candidates,
            stream: None,
            failures: Vec::new(),
            corrupt: 0,
            marked_corrupt,
            file,
        })
    }

    /// The next verified bytes of the range, `None` once it is all read.
    pub(crate) async fn next(&mut self) -> Result<Option<Bytes>> {
        let mut waited_since: Option<Instant> = None;
        loop {
            if self.pos >= self.end {
                return Ok(None);
            }
            let Some((stream, dn)) = self.stream.as_mut() else {
                self.connect_next(&mut waited_since).await?;
                continue;
            };
            match stream.next_packet().await {
                Ok(Some((off, data))) => {
                    let pkt_end = off + data.len() as u64;
                    if pkt_end <= self.pos {
                        continue; // before the range (chunk alignment)
                    }
                    let from = (self.pos - off) as usize;
                    let to = (pkt_end.min(self.end) - off) as usize;
                    let out = data.slice(from..to);
                    self.pos += out.len() as u64;
                    return Ok(Some(out));
                }
                Ok(None) => {
                    let at = stream.next_offset();
                    let dn = dn.clone();
                    self.stream = None;
                    self.failed(
                        &dn,
                        ReplicaError::Failed(format!(
                            "the replica ended at block offset {at}, before {}",
                            self.end
                        )),
                    )
                    .await;
                }
                Err(e) => {
                    let dn = dn.clone();
                    self.stream = None;
                    self.failed(&dn, e).await;
                }
            }
        }
    }

    /// Opens the next candidate replica, or fails when none is left.
    async fn connect_next(&mut self, waited_since: &mut Option<Instant>) -> Result<()> {
        let Some(dn) = self.candidates.pop_front() else {
            if self.failures.is_empty() {
                return self.wait_for_locations(waited_since).await;
            }
            return Err(self.all_failed());
        };
        let client = &self.file.client;
        let req = ReadRequest {
            block: self.block,
            offset: self.pos,
            length: self.end - self.pos,
            client_id: client.client_id(),
            timeout: client.config().datanode_timeout,
        };
        match ReplicaStream::open(client.inner.transport.as_ref(), &dn, req).await {
            Ok(s) => self.stream = Some((s, dn)),
            Err(e) => self.failed(&dn, e).await,
        }
        Ok(())
    }

    async fn failed(&mut self, dn: &DatanodeInfo, e: ReplicaError) {
        let reason = match e {
            ReplicaError::Corrupt(reason) => {
                self.corrupt += 1;
                if !self.marked_corrupt {
                    report(&self.file.client, &self.block, dn, &reason).await;
                }
                reason
            }
            ReplicaError::Quarantined(reason) => {
                self.corrupt += 1;
                reason
            }
            ReplicaError::Failed(reason) => reason,
        };
        tracing::debug!(
            "{}: block {} replica on {} failed: {reason}",
            self.file.path,
            self.block.block_id,
            describe(dn)
        );
        self.failures.push(format!("{}: {reason}", describe(dn)));
    }

    fn all_failed(&self) -> Error {
        let path = self.file.path.clone();
        let block = self.block.block_id;
        let offset = self.block_start + self.pos;
        let reasons = self.failures.join("; ");
        if self.corrupt == self.failures.len() {
            return Error::CorruptBlock {
                path,
                block,
                offset,
                replicas: self.corrupt,
                reasons,
            };
        }
        Error::Read {
            path,
            block,
            offset,
            reasons,
        }
    }

    /// Looks the block up again with backoff until it has locations or
    /// `locate_retry_deadline` passed.
    async fn wait_for_locations(&mut self, waited_since: &mut Option<Instant>) -> Result<()> {
        let cfg = self.file.client.config();
        let deadline = cfg.locate_retry_deadline;
        let since = *waited_since.get_or_insert_with(Instant::now);
        let mut backoff = Duration::from_millis(100);
        loop {
            let waited = since.elapsed();
            if waited >= deadline {
                return Err(Error::NoReplica {
                    path: self.file.path.clone(),
                    block: self.block.block_id,
                    offset: self.block_start + self.pos,
                    waited,
                });
            }
            tokio::time::sleep(backoff.min(deadline - waited)).await;
            backoff = (backoff * 2).min(Duration::from_secs(2));
            let locs = self
                .file
                .client
                .get_block_locations(&self.file.path, self.block_start, 1)
                .await?;
            let Some(found) = locs
                .blocks
                .into_iter()
                .find(|b| b.block.is_some_and(|x| x.block_id == self.block.block_id))
            else {
                continue;
            };
            if found.locations.is_empty() {
                continue;
            }
            if let Ok(mut blocks) = self.file.blocks.lock() {
                if let Some(slot) = blocks
                    .iter_mut()
                    .find(|b| b.block.is_some_and(|x| x.block_id == self.block.block_id))
                {
                    *slot = found.clone();
                }
            }
            self.marked_corrupt = found.corrupt;
            self.candidates =
                order_replicas(found.locations, &self.file.client.config().client_host);
            return Ok(());
        }
    }
}

/// Tells the namenode that `dn`'s replica of `block` failed a checksum
/// (it has the datanode verify it); a failed report only costs a warning.
async fn report(client: &Client, block: &ExtendedBlock, dn: &DatanodeInfo, reason: &str) {
    if let Err(err) = client
        .report_bad_block(block, &dn.datanode_id, reason)
        .await
    {
        tracing::warn!(
            "reporting corrupt replica of block {} on {}: {err}",
            block.block_id,
            describe(dn)
        );
    }
}

/// Local replicas first, otherwise in the namenode's order.
fn order_replicas(mut nodes: Vec<DatanodeInfo>, client_host: &str) -> VecDeque<DatanodeInfo> {
    nodes.sort_by_key(|dn| !is_local(dn, client_host));
    nodes.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_replica_goes_first() {
        let dn = |id: &str, ip: &str| DatanodeInfo {
            datanode_id: id.into(),
            ip: ip.into(),
            ..Default::default()
        };
        let order = order_replicas(
            vec![
                dn("a", "10.0.0.1"),
                dn("b", "10.0.0.2"),
                dn("c", "10.0.0.3"),
            ],
            "10.0.0.2",
        );
        let ids: Vec<_> = order.iter().map(|d| d.datanode_id.as_str()).collect();
        assert_eq!(ids, ["b", "a", "c"]);
    }
}
