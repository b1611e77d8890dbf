//! Packets whose data goes from a block file to a TCP socket with
//! `sendfile(2)`: the pages move from the page cache to the socket without
//! passing through this process, and a page not yet cached is read from
//! disk by the kernel on the way. This blocks, so it runs on a blocking
//! thread with its own duplicate of the (non-blocking) socket, waiting
//! with `poll` whenever the socket buffer is full, as HDFS's
//! `transferTo` does.

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use rfs_proto::transfer::FilePacket;

use crate::{Result, TransportError};

/// Sends each packet: its head and checksums, then its data from `file`.
pub(crate) fn send_packets(
    sock: &OwnedFd,
    file: &File,
    packets: &[FilePacket],
    idle: Duration,
) -> Result<()> {
    let sock = sock.as_raw_fd();
    for p in packets {
        write_head(sock, &p.encode_head(), idle)?;
        send_data(sock, file, p.file_offset, p.len, idle)?;
    }
    Ok(())
}

/// Writes `buf`, telling the kernel more follows (`MSG_MORE`) so the head
/// goes out in one segment with the start of the data.
fn write_head(sock: RawFd, mut buf: &[u8], idle: Duration) -> Result<()> {
    while !buf.is_empty() {
        // SAFETY: `buf` is a live slice of `buf.len()` bytes.
        let n = unsafe {
            libc::send(
                sock,
                buf.as_ptr().cast(),
                buf.len(),
                libc::MSG_MORE | libc::MSG_NOSIGNAL,
            )
        };
        if n >= 0 {
            buf = &buf[n as usize..];
        } else {
            wait_unless_failed(sock, idle)?;
        }
    }
    Ok(())
}

fn send_data(sock: RawFd, file: &File, offset: u64, len: usize, idle: Duration) -> Result<()> {
    let end = offset + len as u64;
    let mut at = libc::off_t::try_from(offset)
        .map_err(|_| io::Error::other(format!("block file offset {offset} is too large")))?;
    while (at as u64) < end {
        let left = (end - at as u64) as usize;
        // SAFETY: both descriptors are open for the call; the kernel
        // advances `at` by what it sent.
        let n = unsafe { libc::sendfile(sock, file.as_raw_fd(), &mut at, left) };
        match n {
            0 => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!(
                    "block file ends at byte {at}, inside the {len} bytes at {offset} being sent"
                ),
                )
                .into())
            }
            n if n > 0 => {}
            _ => wait_unless_failed(sock, idle)?,
        }
    }
    Ok(())
}

/// After a call failed: returns to retry it once the socket can take more,
/// or the error.
fn wait_unless_failed(sock: RawFd, idle: Duration) -> Result<()> {
    let e = io::Error::last_os_error();
    match e.kind() {
        io::ErrorKind::Interrupted => Ok(()),
        io::ErrorKind::WouldBlock => wait_writable(sock, idle),
        _ => Err(e.into()),
    }
}

fn wait_writable(sock: RawFd, idle: Duration) -> Result<()> {
    let deadline = Instant::now() + idle;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(TransportError::Stalled { idle });
        }
        let mut pfd = libc::pollfd {
            fd: sock,
            events: libc::POLLOUT,
            revents: 0,
        };
        let ms = left.as_millis().clamp(1, i32::MAX as u128) as i32;
        // SAFETY: one valid pollfd.
        match unsafe { libc::poll(&mut pfd, 1, ms) } {
            // Writable, or an error the retried call will report.
            r if r > 0 => return Ok(()),
            0 => {}
            _ => {
                let e = io::Error::last_os_error();
                if e.kind() != io::ErrorKind::Interrupted {
                    return Err(e.into());
                }
            }
        }
    }
}
