//! TCP transport: frames over a `TcpStream`, packets written with one
//! vectored write of (prefix+header, checksums, data) so block data is not
//! copied into an intermediate buffer, and packets whose data lies in a
//! block file sent with `sendfile` (see `sendfile.rs`); received bodies are
//! sliced out of the read buffer as `Bytes`.

use std::fs::File;
use std::net::SocketAddr;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Buf;
use futures::StreamExt;
use rfs_proto::transfer::{FilePacket, Frame, FrameCodec};
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
        sender: Box::new(TcpSender { w, dup: None }),
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
    /// The socket for blocking `sendfile` threads: a duplicate, so that a
    /// thread still finishing after this sender is gone never writes to a
    /// descriptor number that was closed and reused.
    dup: Option<Arc<OwnedFd>>,
}

impl TcpSender {
    fn dup(&mut self) -> Result<Arc<OwnedFd>> {
        if let Some(fd) = &self.dup {
            return Ok(fd.clone());
        }
        let fd = Arc::new(self.w.as_ref().as_fd().try_clone_to_owned()?);
        self.dup = Some(fd.clone());
        Ok(fd)
    }
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

    async fn send_file_packets(
        &mut self,
        file: &Arc<File>,
        packets: Vec<FilePacket>,
        idle: Duration,
    ) -> Result<()> {
        let sock = self.dup()?;
        let file = file.clone();
        tokio::task::spawn_blocking(move || {
            crate::sendfile::send_packets(&sock, &file, &packets, idle)
        })
        .await
        .map_err(std::io::Error::other)?
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
    use std::io::Write;

    /// A block file of `len` patterned bytes, and the file packets of
    /// `packet` bytes that cover it from `from`.
    fn block_file(len: usize, from: u64, packet: usize) -> (Arc<File>, Vec<u8>, Vec<FilePacket>) {
        let data: Vec<u8> = (0..len).map(|i| (i * 7 + i / 4096) as u8).collect();
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(&data).unwrap();
        let sums = Checksums::new(512);
        let mut packets = Vec::new();
        let mut pos = from as usize;
        while pos < len {
            let n = packet.min(len - pos);
            packets.push(FilePacket {
                seqno: packets.len() as u64,
                offset_in_block: pos as u64,
                checksums: sums.compute(&data[pos..pos + n]),
                file_offset: pos as u64,
                len: n,
            });
            pos += n;
        }
        (Arc::new(f), data, packets)
    }

    #[tokio::test]
    async fn packets_sent_from_a_file_arrive_as_ordinary_packets_in_order() {
        let t = TcpTransport::default();
        let mut l = t.bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let addr = l.local_addr();
        // 3 MiB and a bit, from offset 1024: more than a socket buffer, so
        // the sender must wait for the reader, and a short last packet.
        let (file, data, packets) = block_file(3 * 1024 * 1024 + 700, 1024, 65536);
        let count = packets.len();
        let sender = tokio::spawn(async move {
            let (mut tx, _rx) = t.connect(addr).await.unwrap().split();
            tx.send(Frame::Ack(PipelineAck::success(99, 1)))
                .await
                .unwrap();
            tx.send_file_packets(&file, packets, Duration::from_secs(10))
                .await
                .unwrap();
            tx.send(Frame::Packet(Packet::last(count as u64, data.len() as u64)))
                .await
                .unwrap();
            tx.close().await.unwrap();
            data
        });
        let mut c = l.accept().await.unwrap();
        match c.recv().await.unwrap() {
            Some(Frame::Ack(a)) => assert_eq!(a.seqno, 99),
            other => panic!("expected the ack first, got {other:?}"),
        }
        let mut got = Vec::new();
        let mut seqno = 0;
        loop {
            match c.recv().await.unwrap() {
                Some(Frame::Packet(p)) if p.is_last() => break,
                Some(Frame::Packet(p)) => {
                    assert_eq!(p.seqno, seqno);
                    assert_eq!(p.offset_in_block, 1024 + got.len() as u64);
                    p.verify(&Checksums::new(512)).unwrap();
                    got.extend_from_slice(&p.data);
                    seqno += 1;
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(seqno as usize, count);
        assert!(c.recv().await.unwrap().is_none());
        let data = sender.await.unwrap();
        assert!(got == data[1024..], "the data differs from the file's");
    }

    #[tokio::test]
    async fn a_file_shorter_than_its_packets_is_an_error_naming_where_it_ends() {
        let t = TcpTransport::default();
        let mut l = t.bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let addr = l.local_addr();
        let (file, _, mut packets) = block_file(100_000, 0, 65536);
        packets[1].len += 5000; // the file has 34464 bytes there, not 39464
        let reader = tokio::spawn(async move {
            let mut c = l.accept().await.unwrap();
            while let Ok(Some(_)) = c.recv().await {}
        });
        let (mut tx, _rx) = t.connect(addr).await.unwrap().split();
        let err = tx
            .send_file_packets(&file, packets, Duration::from_secs(10))
            .await
            .unwrap_err();
        assert!(
            err.to_string().contains("block file ends at byte 100000"),
            "{err}"
        );
        drop(tx);
        reader.await.unwrap();
    }

    #[tokio::test]
    async fn a_peer_that_reads_nothing_stalls_the_sender_only_for_the_idle_limit() {
        let t = TcpTransport::default();
        let mut l = t.bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let addr = l.local_addr();
        // A sparse 256 MiB file: far more than the socket buffers hold.
        let f = tempfile::tempfile().unwrap();
        f.set_len(256 << 20).unwrap();
        let packets = (0..256u64)
            .map(|i| FilePacket {
                seqno: i,
                offset_in_block: i << 20,
                checksums: Bytes::new(),
                file_offset: i << 20,
                len: 1 << 20,
            })
            .collect();
        let (mut tx, _rx) = t.connect(addr).await.unwrap().split();
        let _silent = l.accept().await.unwrap();
        let start = std::time::Instant::now();
        let err = tx
            .send_file_packets(&Arc::new(f), packets, Duration::from_millis(300))
            .await
            .unwrap_err();
        assert!(
            matches!(err, TransportError::Stalled { idle } if idle == Duration::from_millis(300)),
            "{err}"
        );
        assert!(start.elapsed() < Duration::from_secs(20));
    }

    /// A transport without its own file path sends what the default reads.
    struct Recorder(Vec<Frame>);

    #[async_trait]
    impl FrameSender for Recorder {
        async fn send(&mut self, frame: Frame) -> Result<()> {
            self.0.push(frame);
            Ok(())
        }
        async fn close(&mut self) -> Result<()> {
            Ok(())
        }
    }

    #[tokio::test]
    async fn the_default_file_path_reads_each_packets_data() {
        let (file, data, packets) = block_file(200_000, 512, 65536);
        let mut r = Recorder(Vec::new());
        r.send_file_packets(&file, packets.clone(), Duration::from_secs(1))
            .await
            .unwrap();
        assert_eq!(r.0.len(), packets.len());
        for (f, fp) in r.0.into_iter().zip(packets) {
            let start = fp.file_offset as usize;
            let want = fp
                .clone()
                .with_data(Bytes::copy_from_slice(&data[start..start + fp.len]));
            assert_eq!(f, Frame::Packet(want));
        }
    }

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
