//! The write path: [`FileWriter`] cuts what it is given into packets and
//! hands them to a streamer task ([`streamer`]) through a bounded channel;
//! the streamer drives one block pipeline ([`pipeline`]) at a time.
//!
//! A packet holds `packet_size` bytes (a multiple of `bytes_per_checksum`)
//! and never crosses a block boundary, so every packet starts on a chunk
//! boundary of its block. `poll_flush` hands over full packets only;
//! [`FileWriter::hflush`] / [`FileWriter::hsync`] also send what is
//! buffered and keep a partial last chunk, which the next packet sends
//! again from its start (datanodes accept that overwrite).

mod block;
mod pipeline;
mod replace;
mod streamer;

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::{Bytes, BytesMut};
use rfs_proto::common::LocatedBlock;
use tokio::io::AsyncWrite;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_util::sync::PollSender;

pub(crate) use pipeline::frame_name;
use streamer::Msg;

use crate::client::Client;
use crate::error::{Error, Result};

/// Writes one file. Implements [`AsyncWrite`]; `shutdown` (or
/// [`FileWriter::close`]) sends the last block and completes the file.
/// Dropping an unclosed writer stops its background work and leaves the
/// file under construction (the namenode recovers it when the lease ends).
pub struct FileWriter {
    path: String,
    tx: PollSender<Msg>,
    /// The packet being filled.
    buf: BytesMut,
    /// A full packet waiting for room in the channel.
    pending: Option<Bytes>,
    packet_size: usize,
    bytes_per_checksum: usize,
    block_size: u64,
    /// Bytes of the current block already cut into packets.
    block_filled: u64,
    written: u64,
    finish_sent: bool,
    task: Option<JoinHandle<Result<()>>>,
    /// Set once the file is complete or the write failed.
    outcome: Option<Result<()>>,
}

enum Offer {
    Sent,
    Full(Msg),
    Closed,
}

impl Drop for FileWriter {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

impl FileWriter {
    /// Starts writing the file `path` just created; `first_block` is the
    /// block the create allocated with it, if any.
    pub(crate) fn start(
        client: Client,
        path: String,
        block_size: u64,
        first_block: Option<LocatedBlock>,
    ) -> FileWriter {
        let cfg = client.config();
        let packet_size = cfg.packet_size;
        let bytes_per_checksum = cfg.bytes_per_checksum as usize;
        let (tx, rx) = mpsc::channel(cfg.max_packets_in_flight.max(2));
        let task = tokio::spawn(streamer::run(
            client,
            path.clone(),
            block_size,
            first_block,
            rx,
        ));
        FileWriter {
            path,
            tx: PollSender::new(tx),
            buf: BytesMut::with_capacity(packet_size),
            pending: None,
            packet_size,
            bytes_per_checksum,
            block_size,
            block_filled: 0,
            written: 0,
            finish_sent: false,
            task: Some(task),
            outcome: None,
        }
    }

    /// Flushes what is buffered, closes the last block and completes the
    /// file. Calling it again returns the first outcome.
    pub async fn close(&mut self) -> Result<()> {
        std::future::poll_fn(|cx| self.poll_close(cx)).await
    }

    /// hflush: everything written so far is on every datanode of the
    /// pipeline (acknowledged, in their memory or page cache), so it
    /// survives this writer's death: a reader or the namenode's lease
    /// recovery finds it.
    pub async fn hflush(&mut self) -> Result<()> {
        self.flush_to_datanodes(false).await
    }

    /// hsync: like [`FileWriter::hflush`], and every datanode fsynced it.
    pub async fn hsync(&mut self) -> Result<()> {
        self.flush_to_datanodes(true).await
    }

    async fn flush_to_datanodes(&mut self, sync: bool) -> Result<()> {
        if let Some(e) = self.closed_error() {
            return Err(e);
        }
        std::future::poll_fn(|cx| self.poll_send_pending(cx)).await?;
        let data = Bytes::copy_from_slice(&self.buf);
        let whole = data.len() - data.len() % self.bytes_per_checksum;
        let (done, answer) = oneshot::channel();
        let mut msg = Some(Msg::Flush { data, sync, done });
        std::future::poll_fn(|cx| {
            let m = msg.take().expect("offered until sent");
            match self.try_send(cx, m) {
                Offer::Sent => Poll::Ready(Ok(())),
                Offer::Full(m) => {
                    msg = Some(m);
                    Poll::Pending
                }
                Offer::Closed => self.poll_failure(cx),
            }
        })
        .await?;
        // The whole chunks are sent for good; the partial one stays
        // buffered and goes again, from its start, with what follows.
        let _ = self.buf.split_to(whole);
        self.block_filled += whole as u64;
        if self.block_filled >= self.block_size {
            self.block_filled = 0;
        }
        match answer.await {
            Ok(r) => r,
            Err(_) => std::future::poll_fn(|cx| self.poll_failure(cx)).await,
        }
    }

    /// Bytes accepted so far.
    pub fn bytes_written(&self) -> u64 {
        self.written
    }

    /// Size of the packet being filled: a full packet, or what is left of
    /// the block.
    fn packet_target(&self) -> usize {
        let left_in_block = self.block_size - self.block_filled;
        (self.packet_size as u64).min(left_in_block) as usize
    }

    fn cut_packet(&mut self) {
        let data = self.buf.split().freeze();
        self.block_filled += data.len() as u64;
        if self.block_filled >= self.block_size {
            self.block_filled = 0;
        }
        self.buf.reserve(self.packet_size);
        self.pending = Some(data);
    }

    /// Offers `msg` to the streamer; a full channel gives it back (the
    /// waker is registered), a closed one means the streamer stopped.
    fn try_send(&mut self, cx: &mut Context<'_>, msg: Msg) -> Offer {
        match self.tx.poll_reserve(cx) {
            Poll::Pending => Offer::Full(msg),
            Poll::Ready(Err(_)) => Offer::Closed,
            Poll::Ready(Ok(())) => match self.tx.send_item(msg) {
                Ok(()) => Offer::Sent,
                Err(_) => Offer::Closed,
            },
        }
    }

    /// Hands the pending packet to the streamer.
    fn poll_send_pending(&mut self, cx: &mut Context<'_>) -> Poll<Result<()>> {
        let Some(data) = self.pending.take() else {
            return Poll::Ready(Ok(()));
        };
        match self.try_send(cx, Msg::Data(data)) {
            Offer::Sent => Poll::Ready(Ok(())),
            Offer::Full(Msg::Data(data)) => {
                self.pending = Some(data);
                Poll::Pending
            }
            Offer::Full(_) | Offer::Closed => self.poll_failure(cx),
        }
    }

    /// The streamer stopped early: its result says why.
    fn poll_failure(&mut self, cx: &mut Context<'_>) -> Poll<Result<()>> {
        if let Some(Err(e)) = &self.outcome {
            return Poll::Ready(Err(e.clone()));
        }
        let err = match self.task.as_mut() {
            None => Error::WriterClosed {
                path: self.path.clone(),
            },
            Some(task) => {
                let res = ready!(Pin::new(task).poll(cx));
                self.task = None;
                match res {
                    Ok(Err(e)) => e,
                    Ok(Ok(())) => Error::WriterClosed {
                        path: self.path.clone(),
                    },
                    Err(e) => {
                        Error::Protocol(format!("{}: the block streamer stopped: {e}", self.path))
                    }
                }
            }
        };
        self.outcome = Some(Err(err.clone()));
        Poll::Ready(Err(err))
    }

    fn closed_error(&self) -> Option<Error> {
        match &self.outcome {
            Some(Err(e)) => Some(e.clone()),
            Some(Ok(())) => Some(Error::WriterClosed {
                path: self.path.clone(),
            }),
            None if self.finish_sent => Some(Error::WriterClosed {
                path: self.path.clone(),
            }),
            None => None,
        }
    }

    fn poll_write_inner(&mut self, cx: &mut Context<'_>, data: &[u8]) -> Poll<Result<usize>> {
        if let Some(e) = self.closed_error() {
            return Poll::Ready(Err(e));
        }
        if data.is_empty() {
            return Poll::Ready(Ok(0));
        }
        ready!(self.poll_send_pending(cx))?;
        let target = self.packet_target();
        let n = (target - self.buf.len()).min(data.len());
        self.buf.extend_from_slice(&data[..n]);
        self.written += n as u64;
        if self.buf.len() == target {
            self.cut_packet();
            // Hand it over now if there is room; otherwise the next call
            // waits for room before taking more bytes.
            if let Poll::Ready(Err(e)) = self.poll_send_pending(cx) {
                // `n` bytes were taken; the error is kept for the next call.
                tracing::debug!("write failed after accepting bytes: {e}");
            }
        }
        Poll::Ready(Ok(n))
    }

    fn poll_close(&mut self, cx: &mut Context<'_>) -> Poll<Result<()>> {
        if let Some(o) = &self.outcome {
            return Poll::Ready(o.clone());
        }
        if !self.finish_sent {
            ready!(self.poll_send_pending(cx))?;
            if !self.buf.is_empty() {
                self.cut_packet();
                ready!(self.poll_send_pending(cx))?;
            }
            match self.try_send(cx, Msg::Finish) {
                Offer::Sent => {
                    self.finish_sent = true;
                    self.tx.close();
                }
                Offer::Full(_) => return Poll::Pending,
                Offer::Closed => return self.poll_failure(cx),
            }
        }
        let Some(task) = self.task.as_mut() else {
            return Poll::Ready(Err(Error::WriterClosed {
                path: self.path.clone(),
            }));
        };
        let res = ready!(Pin::new(task).poll(cx));
        self.task = None;
        let out = match res {
            Ok(r) => r,
            Err(e) => Err(Error::Protocol(format!(
                "{}: the block streamer stopped: {e}",
                self.path
            ))),
        };
        self.outcome = Some(out.clone());
        Poll::Ready(out)
    }
}

impl AsyncWrite for FileWriter {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.get_mut()
            .poll_write_inner(cx, data)
            .map_err(Error::into_io)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Some(Err(e)) = &this.outcome {
            return Poll::Ready(Err(e.clone().into_io()));
        }
        this.poll_send_pending(cx).map_err(Error::into_io)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().poll_close(cx).map_err(Error::into_io)
    }
}
