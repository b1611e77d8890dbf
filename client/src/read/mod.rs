//! The read path: [`FileReader`] streams (`AsyncRead` + `AsyncSeek`) or
//! reads at a position ([`FileReader::read_at`]); both go block by block
//! through [`block::BlockRead`], which verifies every chunk and fails over
//! between replicas. Data arrives as `Bytes` slices of the received
//! packets; the only copy is into the caller's buffer.

mod block;
mod replica;

use std::io::{self, SeekFrom};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use futures::future::BoxFuture;
use tokio::io::{AsyncRead, AsyncSeek, ReadBuf};

use block::{BlockRead, OpenFile};

use crate::client::Client;
use crate::error::{Error, Result};
use crate::BlockLocations;

/// Reads one file. Each chunk is checked against its CRC32C; corrupt
/// replicas are reported and skipped.
pub struct FileReader {
    file: Arc<OpenFile>,
    pos: u64,
    state: State,
}

enum State {
    /// No block stream: the next read opens one at `pos`.
    Idle,
    /// A block stream and the unread rest of its last slice.
    Ready { read: Box<BlockRead>, buf: Bytes },
    /// Waiting for the stream's next slice.
    Fetching(BoxFuture<'static, Fetched>),
}

type Fetched = (Box<BlockRead>, Result<Option<Bytes>>);

fn fetch(mut read: Box<BlockRead>) -> BoxFuture<'static, Fetched> {
    Box::pin(async move {
        let r = read.next().await;
        (read, r)
    })
}

impl FileReader {
    pub(crate) fn new(client: Client, path: String, locs: BlockLocations) -> FileReader {
        FileReader {
            file: Arc::new(OpenFile {
                client,
                path,
                len: locs.file_length,
                blocks: Mutex::new(locs.blocks),
            }),
            pos: 0,
            state: State::Idle,
        }
    }

    /// File length when opened.
    pub fn len(&self) -> u64 {
        self.file.len
    }

    pub fn is_empty(&self) -> bool {
        self.file.len == 0
    }

    /// Reads up to `buf.len()` bytes at `pos`, independent of the stream
    /// position. Short only at the end of the file.
    pub async fn read_at(&self, pos: u64, buf: &mut [u8]) -> Result<usize> {
        let end = self.file.len.min(pos.saturating_add(buf.len() as u64));
        let mut filled = 0usize;
        while pos + (filled as u64) < end {
            let mut read = BlockRead::new(self.file.clone(), pos + filled as u64, end)?;
            while let Some(bytes) = read.next().await? {
                buf[filled..filled + bytes.len()].copy_from_slice(&bytes);
                filled += bytes.len();
            }
        }
        Ok(filled)
    }

    fn poll_read_inner(&mut self, cx: &mut Context<'_>, out: &mut ReadBuf<'_>) -> Poll<Result<()>> {
        if out.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        loop {
            match std::mem::replace(&mut self.state, State::Idle) {
                State::Idle => {
                    if self.pos >= self.file.len {
                        return Poll::Ready(Ok(()));
                    }
                    let read = BlockRead::new(self.file.clone(), self.pos, self.file.len)?;
                    self.state = State::Fetching(fetch(Box::new(read)));
                }
                State::Ready { read, mut buf } => {
                    if buf.is_empty() {
                        self.state = State::Fetching(fetch(read));
                        continue;
                    }
                    let n = buf.len().min(out.remaining());
                    out.put_slice(&buf[..n]);
                    buf.advance(n);
                    self.pos += n as u64;
                    self.state = State::Ready { read, buf };
                    return Poll::Ready(Ok(()));
                }
                State::Fetching(mut fut) => match fut.as_mut().poll(cx) {
                    Poll::Pending => {
                        self.state = State::Fetching(fut);
                        return Poll::Pending;
                    }
                    Poll::Ready((read, Ok(Some(buf)))) => self.state = State::Ready { read, buf },
                    // End of this block's range: the next block opens at `pos`.
                    Poll::Ready((_, Ok(None))) => {}
                    Poll::Ready((_, Err(e))) => return Poll::Ready(Err(e)),
                },
            }
        }
    }
}

impl AsyncRead for FileReader {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.get_mut()
            .poll_read_inner(cx, buf)
            .map_err(Error::into_io)
    }
}

impl AsyncSeek for FileReader {
    fn start_seek(self: Pin<&mut Self>, to: SeekFrom) -> io::Result<()> {
        let this = self.get_mut();
        let target = match to {
            SeekFrom::Start(n) => Some(n),
            SeekFrom::End(d) => this.file.len.checked_add_signed(d),
            SeekFrom::Current(d) => this.pos.checked_add_signed(d),
        };
        let Some(target) = target else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "{}: seek to a negative or overflowing offset",
                    this.file.path
                ),
            ));
        };
        if target != this.pos {
            this.state = State::Idle;
            this.pos = target;
        }
        Ok(())
    }

    fn poll_complete(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<u64>> {
        Poll::Ready(Ok(self.pos))
    }
}
