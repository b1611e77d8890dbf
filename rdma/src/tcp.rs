//! TCP transport: frames over a `TcpStream`, packets written with one
//! vectored write of (prefix+header, checksums, data) so block data is not
//! copied into an intermediate buffer; received bodies are sliced out of the
//! read buffer as `Bytes`.

use std::net::SocketAddr;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Buf;
use futures::StreamExt;
use rfs_proto::transfer::{Frame, FrameCodec};
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::codec::FramedRead;

use crate::{
    BlockListener, BlockTransport, Connection, FrameReceiver, FrameSender, Result, TransportError,
};

/// Read buffer per connection: large enough for a default 64 KiB packet.
const READ_BUFFER: usize = 128 * 1024;

#[derive(Debug, Clone)]
pub struct TcpTransport {
    pub connect_timeout: Duration,
}

impl Default for TcpTransport {
    fn default() -> Self {
        TcpTransport {
            connect_timeout: Duration::from_secs(10),
        }
    }
}

fn into_connection(stream: TcpStream) -> Result<Connection> {
    stream.set_nodelay(true)?;
    let peer = stream.peer_addr()?;
    let local = stream.local_addr()?;
    let (r, w) = stream.into_split();
    Ok(Connection {
        sender: Box::new(TcpSender { w }),
        receiver: Box::new(TcpReceiver {
            r: FramedRead::with_capacity(r, FrameCodec::default(), READ_BUFFER),
        }),
        peer,
        local,
    })
}

#[async_trait]
impl BlockTransport for TcpTransport {
    fn name(&self) -> &'static str {
        "tcp"
    }

    async fn connect(&self, addr: SocketAddr) -> Result<Connection> {
        let stream = tokio::time::timeout(self.connect_timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| TransportError::ConnectTimeout { addr })?
            .map_err(|source| TransportError::Connect { addr, source })?;
        into_connection(stream)
    }

    async fn bind(&self, addr: SocketAddr) -> Result<Box<dyn BlockListener>> {
        Ok(Box::new(TcpBlockListener {
            inner: TcpListener::bind(addr).await?,
        }))
    }
}

struct TcpBlockListener {
    inner: TcpListener,
}

#[async_trait]
impl BlockListener for TcpBlockListener {
    fn local_addr(&self) -> SocketAddr {
        self.inner
            .local_addr()
            .expect("bound listener has an address")
    }

    async fn accept(&mut self) -> Result<Connection> {
        let (stream, _) = self.inner.accept().await?;
        into_connection(stream)
    }
}

struct TcpSender {
    w: OwnedWriteHalf,
}

#[async_trait]
impl FrameSender for TcpSender {
    async fn send(&mut self, frame: Frame) -> Result<()> {
        let (head, tail) = frame.encode_parts();
        match tail {
            None => self.w.write_all(&head).await?,
            Some((sums, data)) => {
                let mut buf = head.freeze().chain(sums).chain(data);
                self.w.write_all_buf(&mut buf).await?;
            }
        }
        Ok(())
    }

    async fn close(&mut self) -> Result<()> {
        self.w.shutdown().await?;
        Ok(())
    }
}

struct TcpReceiver {
    r: FramedRead<OwnedReadHalf, FrameCodec>,
}

#[async_trait]
impl FrameReceiver for TcpReceiver {
    async fn recv(&mut self) -> Result<Option<Frame>> {
        match self.r.next().await {
            None => Ok(None),
            Some(r) => Ok(Some(r?)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use rfs_proto::transfer::{Checksums, Packet, PipelineAck};

    #[tokio::test]
    async fn packets_and_acks_cross_a_socket() {
        let t = TcpTransport::default();
        let mut l = t.bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let addr = l.local_addr();
        let server = tokio::spawn(async move {
            let mut c = l.accept().await.unwrap();
            while let Some(Frame::Packet(p)) = c.recv().await.unwrap() {
                p.verify(&Checksums::new(512)).unwrap();
                c.send(Frame::Ack(PipelineAck::success(p.seqno, 1)))
                    .await
                    .unwrap();
            }
        });
        let (mut tx, mut rx) = t.connect(addr).await.unwrap().split();
        let sums = Checksums::new(512);
        for i in 0..10u64 {
            tx.send(Frame::Packet(Packet::new(
                i,
                i * 65536,
                Bytes::from(vec![i as u8; 65536]),
                &sums,
            )))
            .await
            .unwrap();
        }
        for i in 0..10u64 {
            match rx.recv().await.unwrap() {
                Some(Frame::Ack(a)) => assert_eq!(a.seqno, i),
                other => panic!("unexpected {other:?}"),
            }
        }
        tx.close().await.unwrap();
        server.await.unwrap();
    }
}
