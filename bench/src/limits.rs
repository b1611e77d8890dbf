//! `rfs-bench limits`: what this machine can do at best, measured in the
//! same run as the workloads so every figure can be a ratio: loopback TCP
//! (iperf3), sequential disk write with fsync and cold read, the disk in
//! the puts' own shape (fio, see [`disk_jobs`]), the raft log's write +
//! fdatasync per file layout ([`log_fsync`]), memcpy, and CRC32C on one
//! core. Prints `name value unit` lines; each fio figure follows a
//! `# fio NAME: COMMAND` line with the job that measured it, and the raft
//! log's figures a `# log-fsync DIR: …` line saying where they were
//! measured, and are followed by their Markdown table.

use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use rand::RngCore;

use crate::figures::{mbps, Figure};
use crate::log_fsync::{self, LogFsyncArgs};

/// Where the disk probes write unless told otherwise.
pub const DEFAULT_SCRATCH: &str = ".rfs/bench";

#[derive(clap::Args)]
pub struct LimitsArgs {
    /// Directory on the disk the datanodes use, for the disk probes.
    #[arg(long, default_value = DEFAULT_SCRATCH)]
    scratch: PathBuf,
    /// Bytes written and read by the disk probes, in MiB.
    #[arg(long, default_value_t = 1024)]
    disk_mib: u64,
    /// Seconds of iperf3 traffic.
    #[arg(long, default_value_t = 5)]
    iperf_seconds: u32,
    /// Bytes per file of the fio jobs, in MiB: a datanode fsyncs each block
    /// file when it finalizes it (the quickstart cluster's block size).
    #[arg(long, default_value_t = 512)]
    block_mib: u64,
    /// Clients of the concurrent put (`put-get --clients`).
    #[arg(long, default_value_t = 4)]
    clients: u64,
    #[command(flatten)]
    log: LogFsyncArgs,
}

/// Buffer size of the disk probes, as `dd bs=4M`.
const BUF: usize = 4 << 20;
/// Bytes the memory probes run over (beyond the caches).
const MEM: usize = 256 << 20;

/// Measures and prints every limit, each line as soon as it is known.
pub fn run(args: &LimitsArgs) -> Result<()> {
    let mut buf = vec![0u8; BUF];
    rand::thread_rng().fill_bytes(&mut buf);
    let bytes = args.disk_mib << 20;
    let show = |f: Figure| println!("{}", f.line());
    show(Figure::new(
        "loopback_tcp",
        iperf3_loopback(args.iperf_seconds)?,
        "MB/s",
    ));
    let (write, read) = disk(&args.scratch, bytes, &buf)?;
    show(Figure::new("disk_write_fsync", write, "MB/s"));
    show(Figure::new("disk_read_cold", read, "MB/s"));
    for job in disk_jobs(args.disk_mib, args.block_mib, args.clients) {
        show(job.run(&args.scratch)?);
    }
    let log_dir = args.log.log_dir.as_deref().unwrap_or(&args.scratch);
    let log = log_fsync::probe(&args.log, log_dir, |f| show(f.clone()))?;
    let log: std::collections::BTreeMap<_, _> =
        log.into_iter().map(|f| (f.name.clone(), f)).collect();
    if let Some(md) = log_fsync::markdown(&log) {
        println!("\n{md}");
    }
    show(Figure::new("memcpy", memcpy(), "MB/s"));
    show(Figure::new("crc32c_one_core", crc32c_one_core(), "MB/s"));
    show(Figure::new(
        "crc32c_chunks_one_core",
        crc32c_chunks_one_core(),
        "MB/s",
    ));
    Ok(())
}

/// The disk in the shape of one put workload: `writers` concurrent
/// sequential writers of `mib_each` MiB, in files of the block size, each
/// file fsynced when it is closed, as every datanode finalizes a block.
/// Buffered 64 KiB writes (one packet each), no preallocation, as a
/// datanode writes.
#[derive(Debug, Clone, PartialEq)]
pub struct DiskJob {
    pub figure: &'static str,
    pub writers: u64,
    pub mib_each: u64,
    pub block_mib: u64,
}

/// One job per put workload of `put-get` with a file of `size_mib`:
/// replication 1 is one writer; replication 3 on this one disk is three
/// datanodes writing the whole file each; `clients` clients at
/// replication 1 share the size.
pub fn disk_jobs(size_mib: u64, block_mib: u64, clients: u64) -> Vec<DiskJob> {
    let job = |figure, writers, mib_each| DiskJob {
        figure,
        writers,
        mib_each,
        block_mib,
    };
    vec![
        job("disk_fio_1writer", 1, size_mib),
        job("disk_fio_3writers", 3, size_mib),
        job(
            "disk_fio_clients",
            clients.max(1),
            size_mib / clients.max(1),
        ),
    ]
}

impl DiskJob {
    /// fio's arguments for this job, writing under `dir`.
    pub fn args(&self, dir: &Path) -> Vec<String> {
        let mib_each = self.mib_each.max(1);
        let file_mib = self.block_mib.clamp(1, mib_each);
        let files = mib_each.div_ceil(file_mib);
        [
            format!("--name={}", self.figure),
            format!("--directory={}", dir.display()),
            "--rw=write".into(),
            "--bs=64k".into(),
            "--ioengine=psync".into(),
            "--direct=0".into(),
            "--fallocate=none".into(),
            format!("--numjobs={}", self.writers),
            format!("--size={mib_each}m"),
            format!("--filesize={file_mib}m"),
            format!("--nrfiles={files}"),
            "--openfiles=1".into(),
            "--file_service_type=sequential".into(),
            "--fsync_on_close=1".into(),
            "--group_reporting".into(),
        ]
        .into()
    }

    /// Runs fio and returns the aggregate MB/s over the whole run (start to
    /// the last fsync, as a put counts until close returns), after printing
    /// the job as a `# fio` line.
    fn run(&self, scratch: &Path) -> Result<Figure> {
        let dir = scratch.join(format!("fio-{}", self.figure));
        std::fs::create_dir_all(&dir)?;
        let args = self.args(&dir);
        println!("# fio {}: fio {}", self.figure, args.join(" "));
        let start = Instant::now();
        let out = Command::new("fio")
            .args(&args)
            .arg("--output-format=terse")
            .output()
            .context("fio not found: run scripts/deps.sh bench")?;
        let elapsed = start.elapsed();
        std::fs::remove_dir_all(&dir)?;
        if !out.status.success() {
            anyhow::bail!(
                "fio {}: {}",
                self.figure,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        let bytes = self.writers * self.mib_each.max(1) * (1 << 20);
        Ok(Figure::new(self.figure, mbps(bytes, elapsed), "MB/s"))
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disk_jobs_take_each_puts_shape() {
        let jobs = disk_jobs(2048, 512, 4);
        let shape: Vec<_> = jobs
            .iter()
            .map(|j| (j.figure, j.writers, j.mib_each))
            .collect();
        assert_eq!(
            shape,
            [
                ("disk_fio_1writer", 1, 2048),
                ("disk_fio_3writers", 3, 2048),
                ("disk_fio_clients", 4, 512),
            ]
        );
        let args = jobs[1].args(Path::new("/d"));
        for want in [
            "--numjobs=3",
            "--size=2048m",
            "--filesize=512m",
            "--nrfiles=4",
            "--fsync_on_close=1",
            "--openfiles=1",
        ] {
            assert!(
                args.iter().any(|a| a == want),
                "{want} missing from {args:?}"
            );
        }
    }

    #[test]
    fn a_put_smaller_than_a_block_is_one_file_of_its_size() {
        let args = disk_jobs(100, 512, 4)[2].args(Path::new("/d"));
        assert!(args.iter().any(|a| a == "--filesize=25m"), "{args:?}");
        assert!(args.iter().any(|a| a == "--nrfiles=1"), "{args:?}");
    }
}
