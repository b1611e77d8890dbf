//! Block-stream transports.
//!
//! Datanodes and clients move [`Frame`]s through a [`BlockTransport`]:
//! `connect`/`bind` give a [`Connection`] split into a [`FrameSender`] and a
//! [`FrameReceiver`], so packets can be sent while acks are read. The TCP
//! implementation ([`tcp::TcpTransport`]) is always built; an RDMA verbs
//! implementation slots in behind the same trait without touching namenode or
//! client logic. This crate knows nothing of blocks or pipelines: it moves
//! frames, and the framing itself lives in `rfs_proto::transfer`.

use std::fs::File;
use std::net::SocketAddr;
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use rfs_proto::transfer::{FilePacket, Frame, FrameError, Packet};

mod sendfile;
pub mod tcp;

pub use tcp::TcpTransport;

#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("timed out connecting to {addr}")]
    ConnectTimeout { addr: SocketAddr },
    #[error(transparent)]
    Frame(#[from] FrameError),
    #[error("the peer took no data for {idle:?}")]
    Stalled { idle: Duration },
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

pub type Result<T, E = TransportError> = std::result::Result<T, E>;

/// Sending half of a connection.
#[async_trait]
pub trait FrameSender: Send {
    /// Sends one frame; returns when it has been handed to the network.
    async fn send(&mut self, frame: Frame) -> Result<()>;
    /// Closes the sending direction (the peer sees a clean end of stream).
    async fn close(&mut self) -> Result<()>;

    /// Sends data packets whose data lies in `file`, failing with
    /// [`TransportError::Stalled`] when the peer takes nothing for `idle`.
    /// This default reads the data into memory and sends ordinary packets;
    /// a transport that can move file pages without copying them (TCP's
    /// `sendfile`) does that instead.
    async fn send_file_packets(
        &mut self,
        file: &Arc<File>,
        packets: Vec<FilePacket>,
        idle: Duration,
    ) -> Result<()> {
        let file = file.clone();
        let packets = tokio::task::spawn_blocking(move || read_packets(&file, packets))
            .await
            .map_err(std::io::Error::other)??;
        for p in packets {
            tokio::time::timeout(idle, self.send(Frame::Packet(p)))
                .await
                .map_err(|_| TransportError::Stalled { idle })??;
        }
        Ok(())
    }
}

/// Reads each packet's data from `file`.
fn read_packets(file: &File, packets: Vec<FilePacket>) -> std::io::Result<Vec<Packet>> {
    packets
        .into_iter()
        .map(|p| {
            let mut data = vec![0u8; p.len];
            file.read_exact_at(&mut data, p.file_offset)?;
            Ok(p.with_data(Bytes::from(data)))
        })
        .collect()
}

/// Receiving half of a connection.
#[async_trait]
pub trait FrameReceiver: Send {
    /// Next frame; `Ok(None)` when the peer closed cleanly between frames.
    async fn recv(&mut self) -> Result<Option<Frame>>;
}

/// A bidirectional frame stream to one peer.
pub struct Connection {
    pub sender: Box<dyn FrameSender>,
    pub receiver: Box<dyn FrameReceiver>,
    pub peer: SocketAddr,
    pub local: SocketAddr,
}

impl Connection {
    pub async fn send(&mut self, frame: Frame) -> Result<()> {
        self.sender.send(frame).await
    }
    pub async fn recv(&mut self) -> Result<Option<Frame>> {
        self.receiver.recv().await
    }
    pub fn split(self) -> (Box<dyn FrameSender>, Box<dyn FrameReceiver>) {
        (self.sender, self.receiver)
    }
}

#[async_trait]
pub trait BlockListener: Send {
    fn local_addr(&self) -> SocketAddr;
    async fn accept(&mut self) -> Result<Connection>;
}

#[async_trait]
pub trait BlockTransport: Send + Sync + 'static {
    /// Short name for logs and metrics ("tcp", "rdma").
    fn name(&self) -> &'static str;
    async fn connect(&self, addr: SocketAddr) -> Result<Connection>;
    async fn bind(&self, addr: SocketAddr) -> Result<Box<dyn BlockListener>>;
}

/// The transport a process uses when nothing else is configured.
pub fn default_transport() -> Arc<dyn BlockTransport> {
    Arc::new(TcpTransport::default())
}
