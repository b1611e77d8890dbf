//! `rfs-bench put-get`: one client, one file, put and get at replication 1
//! and 3, printed beside the machine's own limits measured in the same run:
//! loopback TCP throughput (iperf3) and the disk's sequential write speed.
//! Run it through `bench/run.sh`, which brings up the quickstart cluster.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use rand::RngCore;
use rfs_client::{Client, ClientConfig, CreateOptions};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[derive(clap::Args)]
pub struct PutGetArgs {
    #[arg(long, default_value = "127.0.0.1:8020")]
    namenode: String,
    /// File size in MiB.
    #[arg(long, default_value_t = 1024)]
    size_mib: u64,
    /// Replication factors to measure.
    #[arg(long, value_delimiter = ',', default_value = "1,3")]
    replication: Vec<u32>,
    /// Directory on the datanodes' disk for the disk-speed probe.
    #[arg(long, default_value = ".rfs/bench")]
    scratch: PathBuf,
    /// Seconds of iperf3 traffic.
    #[arg(long, default_value_t = 5)]
    iperf_seconds: u32,
}

const MB: f64 = 1_000_000.0;
const BUF: usize = 4 * 1024 * 1024;

fn mbps(bytes: u64, d: Duration) -> f64 {
    bytes as f64 / MB / d.as_secs_f64()
}

/// Loopback TCP throughput in MB/s, from iperf3's JSON report.
fn iperf3_loopback(seconds: u32) -> Result<f64> {
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
    Ok(bps / 8.0 / MB)
}

/// Sequential write of `bytes` to a file, fsynced, in MB/s.
fn disk_write(dir: &std::path::Path, bytes: u64, buf: &[u8]) -> Result<f64> {
    use std::io::Write;
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
    let took = start.elapsed();
    drop(f);
    std::fs::remove_file(&path)?;
    Ok(mbps(bytes, took))
}

async fn put(
    client: &Client,
    path: &str,
    bytes: u64,
    replication: u32,
    buf: &[u8],
) -> Result<Duration> {
    let start = Instant::now();
    let opts = CreateOptions {
        overwrite: true,
        replication: Some(replication),
        ..Default::default()
    };
    let mut w = client.create(path, opts).await?;
    let mut left = bytes;
    while left > 0 {
        let n = left.min(buf.len() as u64) as usize;
        w.write_all(&buf[..n]).await?;
        left -= n as u64;
    }
    w.shutdown().await?;
    Ok(start.elapsed())
}

async fn get(client: &Client, path: &str, bytes: u64) -> Result<Duration> {
    let start = Instant::now();
    let mut r = client.open(path).await?;
    let mut buf = vec![0u8; BUF];
    let mut total = 0u64;
    loop {
        let n = r.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        total += n as u64;
    }
    if total != bytes {
        bail!("read {total} bytes of {bytes}");
    }
    Ok(start.elapsed())
}

pub async fn run(args: PutGetArgs) -> Result<()> {
    let PutGetArgs {
        namenode,
        size_mib,
        replication,
        scratch,
        iperf_seconds,
    } = args;
    let bytes = size_mib * 1024 * 1024;
    let mut buf = vec![0u8; BUF];
    rand::thread_rng().fill_bytes(&mut buf);

    println!("rfs put/get benchmark: one client, one {size_mib} MiB file");
    let loopback = iperf3_loopback(iperf_seconds)?;
    println!("{:<34}{:>10.1} MB/s", "loopback TCP (iperf3)", loopback);
    let disk = disk_write(&scratch, bytes, &buf)?;
    println!("{:<34}{:>10.1} MB/s", "disk sequential write (fsync)", disk);

    let client = Client::connect(ClientConfig::with_namenode(namenode)).await?;
    for r in replication {
        let path = format!("/bench/put-get-r{r}");
        let w = put(&client, &path, bytes, r, &buf).await?;
        let wr = mbps(bytes, w);
        println!(
            "{:<34}{:>10.1} MB/s   {:>5.2}x loopback  {:>5.2}x disk",
            format!("rfs put, replication {r}"),
            wr,
            wr / loopback,
            wr / disk
        );
        let g = get(&client, &path, bytes).await?;
        let gr = mbps(bytes, g);
        println!(
            "{:<34}{:>10.1} MB/s   {:>5.2}x loopback",
            format!("rfs get, replication {r}"),
            gr,
            gr / loopback
        );
        client.delete(&path, false).await?;
    }
    Ok(())
}
