//! ls, stat, du, df.

use anyhow::Result;
use rfs_client::Client;
use rfs_proto::names::escape_refused;

use super::{is_dir, status, walk};
use crate::listing_format::{ls_lines, size, stat_report};

pub async fn ls(client: &Client, path: &str, recursive: bool, human: bool) -> Result<()> {
    let st = status(client, path).await?;
    let entries = if !is_dir(&st) {
        vec![st]
    } else if recursive {
        walk(client, path).await?
    } else {
        let entries = client.list(path).await?;
        println!("Found {} items", entries.len());
        entries
    };
    for line in ls_lines(&entries, human) {
        println!("{line}");
    }
    Ok(())
}

pub async fn stat(client: &Client, path: &str) -> Result<()> {
    let st = status(client, path).await?;
    let blocks = if is_dir(&st) {
        None
    } else {
        Some(client.get_block_locations(path, 0, 0).await?.blocks.len())
    };
    print!("{}", stat_report(&st, blocks));
    Ok(())
}

pub async fn du(client: &Client, path: &str, summary: bool, human: bool) -> Result<()> {
    let st = status(client, path).await?;
    let targets = if summary || !is_dir(&st) {
        vec![st.path.clone()]
    } else {
        client
            .list(path)
            .await?
            .into_iter()
            .map(|s| s.path)
            .collect()
    };
    let mut rows = Vec::new();
    for t in targets {
        let cs = client.content_summary(&t).await?;
        rows.push((size(cs.length, human), size(cs.space_consumed, human), t));
    }
    let w0 = rows.iter().map(|r| r.0.len()).max().unwrap_or(0);
    let w1 = rows.iter().map(|r| r.1.len()).max().unwrap_or(0);
    for (len, used, p) in rows {
        let p = if p.is_empty() { path.to_string() } else { p };
        println!("{len:<w0$}  {used:<w1$}  {}", escape_refused(&p));
    }
    Ok(())
}

pub async fn df(client: &Client, namenode: &str, human: bool) -> Result<()> {
    let s = client.fs_stats().await?;
    let fs = format!("rfs://{namenode}");
    let pct = if s.capacity == 0 {
        0.0
    } else {
        s.used as f64 * 100.0 / s.capacity as f64
    };
    let cols = [
        size(s.capacity, human),
        size(s.used, human),
        size(s.remaining, human),
        format!("{pct:.0}%"),
    ];
    let wf = fs.len().max("Filesystem".len());
    let w: Vec<usize> = ["Size", "Used", "Available", "Use%"]
        .iter()
        .zip(&cols)
        .map(|(h, c)| h.len().max(c.len()))
        .collect();
    println!(
        "{:<wf$}  {:>w0$}  {:>w1$}  {:>w2$}  {:>w3$}",
        "Filesystem",
        "Size",
        "Used",
        "Available",
        "Use%",
        w0 = w[0],
        w1 = w[1],
        w2 = w[2],
        w3 = w[3]
    );
    println!(
        "{fs:<wf$}  {:>w0$}  {:>w1$}  {:>w2$}  {:>w3$}",
        cols[0],
        cols[1],
        cols[2],
        cols[3],
        w0 = w[0],
        w1 = w[1],
        w2 = w[2],
        w3 = w[3]
    );
    let facts = [
        ("Live datanodes:", u64::from(s.live_datanodes)),
        ("Dead datanodes:", u64::from(s.dead_datanodes)),
        ("Files:", s.total_files),
        ("Blocks:", s.total_blocks),
        ("Under-replicated blocks:", s.under_replicated_blocks),
        ("Corrupt blocks:", s.corrupt_blocks),
        ("Missing blocks:", s.missing_blocks),
    ];
    for (k, v) in facts {
        println!("{k:<25}{v}");
    }
    Ok(())
}
