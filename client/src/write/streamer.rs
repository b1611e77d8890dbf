//! The streamer task behind a [`FileWriter`](super::FileWriter): turns the
//! packets it receives into blocks (`add_block`, pipeline, last packet) and
//! completes the file when the writer finishes.

use std::time::{Duration, Instant};

use bytes::Bytes;
use rfs_proto::common::ExtendedBlock;
use rfs_proto::namenode::{AddBlockRequest, CompleteRequest};
use rfs_proto::rpc_error::RpcErrorKind;
use tokio::sync::mpsc;

use super::pipeline::BlockPipeline;
use crate::client::Client;
use crate::error::{Error, Result};

/// What the writer hands the streamer.
pub(crate) enum Msg {
    /// One packet of data: starts on a chunk boundary, never crosses a block.
    Data(Bytes),
    /// Close the current block and complete the file.
    Finish,
}

/// Runs until `Finish` (then the file is complete) or until the writer is
/// dropped (channel closed without `Finish`: the file stays under
/// construction).
pub(crate) async fn run(
    client: Client,
    path: String,
    block_size: u64,
    mut rx: mpsc::Receiver<Msg>,
) -> Result<()> {
    let mut current: Option<BlockPipeline> = None;
    let mut last: Option<ExtendedBlock> = None;
    loop {
        match rx.recv().await {
            Some(Msg::Data(data)) => {
                let pipeline = match current.as_mut() {
                    Some(p) => p,
                    None => current.insert(new_block(&client, &path, last).await?),
                };
                pipeline.send(data).await?;
                if pipeline.offset() >= block_size {
                    if let Some(p) = current.take() {
                        last = Some(p.finish().await?);
                    }
                }
            }
            Some(Msg::Finish) => {
                if let Some(p) = current.take() {
                    last = Some(p.finish().await?);
                }
                return complete(&client, &path, last).await;
            }
            None => return Err(Error::WriterAbandoned { path }),
        }
    }
}

async fn new_block(
    client: &Client,
    path: &str,
    previous: Option<ExtendedBlock>,
) -> Result<BlockPipeline> {
    let req = AddBlockRequest {
        call: client.new_call(),
        path: path.to_string(),
        client_id: client.client_id().to_string(),
        previous,
        excluded_datanodes: Vec::new(),
        client_host: client.config().client_host.clone(),
    };
    let resp = client
        .rpc()
        .call("add_block", req, |mut c, req| async move {
            c.add_block(req).await
        })
        .await?;
    let located = resp.block.ok_or_else(|| {
        Error::Protocol(format!(
            "{path}: the namenode answered add_block without a block"
        ))
    })?;
    BlockPipeline::open(client, path, located).await
}

/// Completes the file, retrying while the namenode waits for the last
/// block's replicas to be reported. Each poll is a new call with its own
/// call id: a repeat of the same id would get the first "not yet" back
/// from the namenode's retry cache.
async fn complete(client: &Client, path: &str, last: Option<ExtendedBlock>) -> Result<()> {
    let deadline = Instant::now() + client.config().datanode_timeout;
    let mut backoff = Duration::from_millis(20);
    loop {
        let req = CompleteRequest {
            call: client.new_call(),
            path: path.to_string(),
            client_id: client.client_id().to_string(),
            last,
        };
        let resp = client
            .rpc()
            .call("complete", req, |mut c, req| async move {
                c.complete(req).await
            })
            .await?;
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
