//! A writer that dies holding its lease, for the lease-recovery test:
//! `hflush_writer NAMENODE PATH FLUSHED EXTRA [SEED]` creates PATH, writes
//! the first FLUSHED bytes of `payload(FLUSHED + EXTRA, SEED)`, hflushes,
//! prints `flushed FLUSHED`, writes the EXTRA bytes without flushing and
//! then waits forever for the test to kill it.

use anyhow::{bail, Context, Result};
use rfs_client::{Client, ClientConfig, CreateOptions};
use rfs_integration::files::payload;
use std::io::Write;
use tokio::io::AsyncWriteExt;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 4 {
        bail!("usage: hflush_writer NAMENODE PATH FLUSHED EXTRA [SEED]");
    }
    let flushed: usize = args[2].parse().context("FLUSHED")?;
    let extra: usize = args[3].parse().context("EXTRA")?;
    let seed: u64 = args.get(4).map_or(Ok(1), |s| s.parse()).context("SEED")?;
    let data = payload(flushed + extra, seed);
    let client = Client::connect(ClientConfig::with_namenode(args[0].clone())).await?;
    let mut w = client.create(&args[1], CreateOptions::default()).await?;
    w.write_all(&data[..flushed]).await?;
    w.hflush().await?;
    let mut out = std::io::stdout();
    writeln!(out, "flushed {flushed}")?;
    out.flush()?;
    w.write_all(&data[flushed..]).await?;
    std::future::pending::<()>().await;
    Ok(())
}
