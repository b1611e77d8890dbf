//! `rfs-bench limits`: what this machine can do at best, measured in the
//! same run as the workloads so every figure can be a ratio: loopback TCP
//! (iperf3), sequential disk write with fsync and cold read, memcpy, and
//! CRC32C on one core. Prints `name value unit` lines.

use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use rand::RngCore;

use crate::figures::{mbps, Figure};

#[derive(clap::Args)]
pub struct LimitsArgs {
    /// Directory on the disk the datanodes use, for the disk probes.
    #[arg(long, default_value = ".rfs/bench")]
    scratch: PathBuf,
    /// Bytes written and read by the disk probes, in MiB.
    #[arg(long, default_value_t = 1024)]
    disk_mib: u64,
    /// Seconds of iperf3 traffic.
    #[arg(long, default_value_t = 5)]
    iperf_seconds: u32,
}

/// Buffer size of the disk probes, as `dd bs=4M`.
const BUF: usize = 4 << 20;
/// Bytes the memory probes run over (beyond the caches).
const MEM: usize = 256 << 20;

pub fn run(args: &LimitsArgs) -> Result<Vec<Figure>> {
    let mut buf = vec![0u8; BUF];
    rand::thread_rng().fill_bytes(&mut buf);
    let bytes = args.disk_mib << 20;
    let (write, read) = disk(&args.scratch, bytes, &buf)?;
    Ok(vec![
        Figure::new("loopback_tcp", iperf3_loopback(args.iperf_seconds)?, "MB/s"),
        Figure::new("disk_write_fsync", write, "MB/s"),
        Figure::new("disk_read_cold", read, "MB/s"),
        Figure::new("memcpy", memcpy(), "MB/s"),
        Figure::new("crc32c_one_core", crc32c_one_core(), "MB/s"),
        Figure::new("crc32c_chunks_one_core", crc32c_chunks_one_core(), "MB/s"),
    ])
}

/// Loopback TCP throughput in MB/s, from iperf3's JSON report.
pub fn iperf3_loopback(seconds: u32) -> Result<f64> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port()
        .to_string();
    let mut server = Command::new("iperf3")
        .args(["-s", "-1", "-B", "127.0.0.1", "-p", &port])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("iperf3 not found: run scripts/deps.sh bench")?;
    let mut out = None;
    for _ in 0..50 {
        std::thread::sleep(Duration::from_millis(100));
        let o = Command::new("iperf3")
            .args([
                "-c",
                "127.0.0.1",
                "-p",
                &port,
                "-t",
                &seconds.to_string(),
                "-J",
            ])
            .output()?;
        if o.status.success() {
            out = Some(o);
            break;
        }
    }
    let _ = server.kill();
    let _ = server.wait();
    let out = out.context("iperf3 client never connected")?;
    let json: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let bps = json["end"]["sum_received"]["bits_per_second"]
        .as_f64()
        .context("iperf3 report lacks end.sum_received")?;
    Ok(bps / 8.0 / 1e6)
}

/// Sequential write of `bytes` (fsynced, as `dd conv=fsync`), then a read
/// of the same file with its pages dropped from the cache first: MB/s of
/// each.
fn disk(dir: &Path, bytes: u64, buf: &[u8]) -> Result<(f64, f64)> {
    std::fs::create_dir_all(dir)?;
    let path = dir.join("disk-probe.bin");
    let start = Instant::now();
    let mut f = std::fs::File::create(&path)?;
    let mut left = bytes;
    while left > 0 {
        let n = left.min(buf.len() as u64) as usize;
        f.write_all(&buf[..n])?;
        left -= n as u64;
    }
    f.sync_all()?;
    let write = mbps(bytes, start.elapsed());
    // SAFETY: fadvise on an open fd; DONTNEED only drops clean cached pages.
    unsafe { libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
    drop(f);
    let mut f = std::fs::File::open(&path)?;
    let mut rbuf = vec![0u8; buf.len()];
    let start = Instant::now();
    let mut total = 0u64;
    loop {
        let n = f.read(&mut rbuf)?;
        if n == 0 {
            break;
        }
        total += n as u64;
    }
    let read = mbps(total, start.elapsed());
    std::fs::remove_file(&path)?;
    Ok((write, read))
}

/// memcpy of a buffer much larger than the caches, MB/s.
fn memcpy() -> f64 {
    let src = vec![7u8; MEM];
    let mut dst = vec![0u8; MEM];
    dst.copy_from_slice(&src); // fault the pages in first
    let rounds = 8;
    let start = Instant::now();
    for _ in 0..rounds {
        dst.copy_from_slice(std::hint::black_box(&src));
        std::hint::black_box(&dst);
    }
    mbps((MEM * rounds) as u64, start.elapsed())
}

/// CRC32C of one long buffer (the crate's hardware path at its fastest:
/// three interleaved streams) on one core: the limit.
fn crc32c_one_core() -> f64 {
    let mut crc = 0;
    let rate = rate_over_random_buffer(|data| crc = crc32c::crc32c_append(crc, data));
    std::hint::black_box(crc);
    rate
}

/// CRC32C as the data path computes it: one checksum per 512-byte chunk
/// (`Checksums::compute`), on one core.
fn crc32c_chunks_one_core() -> f64 {
    let sums = rfs_proto::transfer::Checksums::new(512);
    rate_over_random_buffer(|data| {
        std::hint::black_box(sums.compute(data));
    })
}

/// MB/s of `work` over a random buffer much larger than the caches, a few
/// rounds on this thread.
fn rate_over_random_buffer(mut work: impl FnMut(&[u8])) -> f64 {
    let mut data = vec![0u8; MEM];
    rand::thread_rng().fill_bytes(&mut data);
    let rounds = 4;
    let start = Instant::now();
    for _ in 0..rounds {
        work(std::hint::black_box(&data));
    }
    mbps((MEM * rounds) as u64, start.elapsed())
}
