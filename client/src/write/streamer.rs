//! The streamer task behind a [`FileWriter`](super::FileWriter): turns the
//! packets it receives into blocks (`add_block`, pipeline, last packet),
//! answers flushes once every datanode acknowledged them, and completes
//! the file when the writer finishes.

use std::time::{Duration, Instant};

use bytes::Bytes;
use rfs_proto::common::{ExtendedBlock, LocatedBlock};
use rfs_proto::namenode::{AbandonBlockRequest, AddBlockRequest, CompleteRequest};
use rfs_proto::rpc_error::RpcErrorKind;
use tokio::sync::{mpsc, oneshot};
use tracing::warn;

use super::block::{BlockStream, Flush};
use crate::client::Client;
use crate::datanode::describe;
use crate::error::{Error, Result};

/// New blocks whose pipeline could not be set up before the write fails.
const MAX_BLOCK_ATTEMPTS: usize = 3;

/// What the writer hands the streamer.
pub(crate) enum Msg {
    /// One packet of data: starts on a chunk boundary, never crosses a block.
    Data(Bytes),
    /// hflush/hsync: `data` (maybe empty, maybe ending in a partial chunk
    /// the writer sends again later) is acknowledged by every datanode,
    /// fsynced first if `sync`, before `done` is answered.
    Flush {
        data: Bytes,
        sync: bool,
        done: oneshot::Sender<Result<()>>,
    },
    /// Close the current block and complete the file.
    Finish,
}

/// The file's blocks as the streamer writes them.
struct Blocks {
    client: Client,
    path: String,
    block_size: u64,
    current: Option<BlockStream>,
    /// The block the create allocated with the file, until it is opened
    /// as the first block (or given back, by a file closed empty).
    allocated: Option<LocatedBlock>,
    last: Option<ExtendedBlock>,
    /// Datanodes that failed this writer; kept out of its later blocks.
    excluded: Vec<String>,
}

/// Runs until `Finish` (then the file is complete) or until the writer is
/// dropped (channel closed without `Finish`: the file stays under
/// construction).
pub(crate) async fn run(
    client: Client,
    path: String,
    block_size: u64,
    first_block: Option<LocatedBlock>,
    mut rx: mpsc::Receiver<Msg>,
) -> Result<()> {
    let mut b = Blocks {
        client,
        path,
        block_size,
        current: None,
        allocated: first_block,
        last: None,
        excluded: Vec::new(),
    };
    loop {
        match rx.recv().await {
            Some(Msg::Data(data)) => {
                b.send(data, Flush::No).await?;
            }
            Some(Msg::Flush { data, sync, done }) => {
                let r = b.flush(data, sync).await;
                let _ = done.send(r.clone());
                r?;
            }
            Some(Msg::Finish) => {
                b.end_block().await?;
                // An empty file: its first block was never written. The
                // completion drops it in the same entry, leaving a file of
                // no blocks, nothing for fsck to miss.
                let unwritten = b.allocated.take().and_then(|u| u.block);
                return complete(&b.client, &b.path, b.last, unwritten).await;
            }
            None => return Err(Error::WriterAbandoned { path: b.path }),
        }
    }
}

impl Blocks {
    async fn send(&mut self, data: Bytes, flush: Flush) -> Result<Option<u64>> {
        if self.current.is_none() {
            self.current = Some(self.new_block().await?);
        }
        let stream = self.current.as_mut().expect("set above");
        let seqno = stream.send(data, flush, &mut self.excluded).await?;
        if stream.offset() >= self.block_size {
            self.end_block().await?;
            // Finishing the block waited for every ack.
            return Ok(None);
        }
        Ok(Some(seqno))
    }

    async fn flush(&mut self, data: Bytes, sync: bool) -> Result<()> {
        if data.is_empty() && self.current.is_none() {
            // Everything sent is in finished blocks, all acknowledged.
            return Ok(());
        }
        let flush = if sync { Flush::Hsync } else { Flush::Hflush };
        let Some(seqno) = self.send(data, flush).await? else {
            return Ok(());
        };
        match self.current.as_mut() {
            Some(stream) => stream.wait_acked(seqno, &mut self.excluded).await,
            None => Ok(()),
        }
    }

    async fn end_block(&mut self) -> Result<()> {
        if let Some(stream) = self.current.take() {
            self.last = Some(stream.finish(&mut self.excluded).await?);
        }
        Ok(())
    }

    /// Allocates the next block (the first: the one the create allocated,
    /// if any) and opens its pipeline. A pipeline that cannot be set up
    /// gives the block back (abandon) and asks for another without the
    /// datanode that failed.
    async fn new_block(&mut self) -> Result<BlockStream> {
        let mut attempt = 0;
        let mut failed: Option<Error> = None;
        let mut allocated = self.allocated.take();
        if let Some(none) = allocated.take_if(|l| l.locations.is_empty()) {
            // A retried create answered from the namenode's retry cache
            // when it had no datanode to place the block on.
            self.abandon(none.block).await?;
        }
        loop {
            attempt += 1;
            let located = match allocated.take() {
                Some(l) => l,
                None => match self.add_block().await {
                    Ok(l) => l,
                    // No other datanode to try: the pipeline's error says
                    // more (e.g. a full disk) than "no live datanodes".
                    Err(e) => return Err(failed.unwrap_or(e)),
                },
            };
            let failure = match BlockStream::open(&self.client, &self.path, located.clone()).await {
                Ok(s) => return Ok(s),
                Err(f) => f,
            };
            let bad = failure.node.and_then(|i| located.locations.get(i));
            let Some(bad) = bad.filter(|_| attempt < MAX_BLOCK_ATTEMPTS) else {
                return Err(failure.error);
            };
            warn!(
                "{}: new block's pipeline failed at {}; asking for another without it: {}",
                self.path,
                describe(bad),
                failure.error
            );
            self.excluded.push(bad.datanode_id.clone());
            self.abandon(located.block).await?;
            failed = Some(failure.error);
        }
    }

    async fn add_block(&mut self) -> Result<rfs_proto::common::LocatedBlock> {
        let call = self.client.new_call();
        let req = AddBlockRequest {
            call: call.id(),
            path: self.path.clone(),
            client_id: self.client.client_id().to_string(),
            previous: self.last,
            excluded_datanodes: self.excluded.clone(),
            client_host: self.client.config().client_host.clone(),
        };
        let resp = self.client.rpc().batched("add_block", req).await?;
        resp.block.ok_or_else(|| {
            Error::Protocol(format!(
                "{}: the namenode answered add_block without a block",
                self.path
            ))
        })
    }

    async fn abandon(&mut self, block: Option<ExtendedBlock>) -> Result<()> {
        let call = self.client.new_call();
        let req = AbandonBlockRequest {
            call: call.id(),
            path: self.path.clone(),
            client_id: self.client.client_id().to_string(),
            block,
        };
        self.client
            .rpc()
            .call("abandon_block", req, |mut c, req| async move {
                c.abandon_block(req).await
            })
            .await?;
        Ok(())
    }
}

/// Completes the file, retrying while the namenode waits for the last
/// block's replicas to be reported. Each poll is a new call with its own
/// call id: a repeat of the same id would get the first "not yet" back
/// from the namenode's retry cache.
/// Completes the file with its `last` block, or, for an empty file
/// created with a block, dropping that `unwritten` one.
async fn complete(
    client: &Client,
    path: &str,
    last: Option<ExtendedBlock>,
    unwritten: Option<ExtendedBlock>,
) -> Result<()> {
    let deadline = Instant::now() + client.config().datanode_timeout;
    let mut backoff = Duration::from_millis(20);
    loop {
        let call = client.new_call();
        let req = CompleteRequest {
            call: call.id(),
            path: path.to_string(),
            client_id: client.client_id().to_string(),
            last,
            unwritten,
        };
        let resp = client.rpc().batched("complete", req).await?;
        if resp.completed {
            return Ok(());
        }
        if Instant::now() + backoff > deadline {
            return Err(Error::Path {
                path: path.to_string(),
                kind: RpcErrorKind::Internal,
                message: "could not complete the file: the namenode has not seen enough \
                          replicas of its last block"
                    .into(),
            });
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_millis(500));
    }
}
