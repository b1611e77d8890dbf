//! `rfs-bench put-get`: one client, one file, put and get at replication 1
//! and 3; then N concurrent clients. A put counts once `close` returned,
//! that is once every replica is fsynced (the datanodes' final ack waits
//! for it), like MooseFS's `dd conv=fsync`. Prints `name value unit`
//! lines; `bench/run.sh` brings up the cluster and the limits beside it.

use std::time::{Duration, Instant};

use anyhow::{bail, Result};

use crate::figures::{mbps, Figure};
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
    /// Concurrent clients of the aggregate measurement (replication 1,
    /// the file size shared among them).
    #[arg(long, default_value_t = 4)]
    clients: usize,
}

const BUF: usize = 4 * 1024 * 1024;

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

pub async fn run(args: &PutGetArgs) -> Result<Vec<Figure>> {
    let bytes = args.size_mib * 1024 * 1024;
    let mut buf = vec![0u8; BUF];
    rand::thread_rng().fill_bytes(&mut buf);
    let buf = std::sync::Arc::new(buf);
    let client = Client::connect(ClientConfig::with_namenode(args.namenode.clone())).await?;
    // A directory of this run's own: an interrupted run leaves files
    // under construction that another client may not overwrite yet.
    let dir = format!("/bench/put-get-{}", std::process::id());
    let mut out = Vec::new();
    for &r in &args.replication {
        let path = format!("{dir}/r{r}");
        let w = put(&client, &path, bytes, r, &buf).await?;
        out.push(Figure::new(format!("rfs_put_r{r}"), mbps(bytes, w), "MB/s"));
        drop_caches();
        let g = get(&client, &path, bytes).await?;
        out.push(Figure::new(format!("rfs_get_r{r}"), mbps(bytes, g), "MB/s"));
        client.delete(&path, false).await?;
    }
    // Concurrent clients, each its own connection and file (replication
    // 1), sharing the size: aggregate MB/s.
    let n = args.clients.max(1);
    let each = bytes / n as u64;
    let mut tasks = tokio::task::JoinSet::new();
    let start = Instant::now();
    for k in 0..n {
        let (nn, buf, path) = (args.namenode.clone(), buf.clone(), format!("{dir}/c{k}"));
        tasks.spawn(async move {
            let c = Client::connect(ClientConfig::with_namenode(nn)).await?;
            put(&c, &path, each, 1, &buf).await
        });
    }
    while let Some(r) = tasks.join_next().await {
        r??;
    }
    let put_all = start.elapsed();
    drop_caches();
    let start = Instant::now();
    for k in 0..n {
        let (nn, path) = (args.namenode.clone(), format!("{dir}/c{k}"));
        tasks.spawn(async move {
            let c = Client::connect(ClientConfig::with_namenode(nn)).await?;
            get(&c, &path, each).await
        });
    }
    while let Some(r) = tasks.join_next().await {
        r??;
    }
    let get_all = start.elapsed();
    client.delete(&dir, true).await?;
    out.push(Figure::new(
        format!("rfs_put_{n}clients"),
        mbps(each * n as u64, put_all),
        "MB/s",
    ));
    out.push(Figure::new(
        format!("rfs_get_{n}clients"),
        mbps(each * n as u64, get_all),
        "MB/s",
    ));
    Ok(out)
}

/// Gets read cold, as the MooseFS peer's do: the page cache is dropped
/// (needs root; otherwise said, and the figure is a warm read).
fn drop_caches() {
    // SAFETY: sync(2) takes no arguments and cannot fail.
    unsafe { libc::sync() };
    if let Err(e) = std::fs::write("/proc/sys/vm/drop_caches", "3") {
        eprintln!("cannot drop the page cache ({e}): the get is a warm read");
    }
}
