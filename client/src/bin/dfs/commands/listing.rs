//! ls, stat, du, count, df.

use std::io::Write;

use anyhow::Result;
use rfs_client::Client;
use rfs_proto::names::escape_refused;

use super::{is_dir, status, Walk};
use crate::listing_format::{size, stat_report, LsColumns};

/// Prints each page of entries as it arrives (see [`LsColumns`] for how
/// the columns are sized), so a failure part way leaves what came before
/// printed, and memory holds one page per directory level.
pub async fn ls(client: &Client, path: &str, recursive: bool, human: bool) -> Result<()> {
    let st = status(client, path).await?;
    let mut columns = LsColumns::new(human);
    let mut out = std::io::stdout();
    if !is_dir(&st) {
        out.write_all(columns.page(&[st]).as_bytes())?;
    } else if recursive {
        let mut walk = Walk::new(client, path);
        while let Some(entry) = walk.next(|page| columns.widen(page)).await? {
            out.write_all(columns.line(&entry).as_bytes())?;
        }
    } else {
        // The count the directory had when asked; the pages follow.
        writeln!(out, "Found {} items", st.children)?;
        let mut pages = client.list_pages(path);
        while let Some(page) = pages.next_page().await? {
            out.write_all(columns.page(&page).as_bytes())?;
        }
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

/// The quota columns of `count -q`: rfs has no quotas, so each path has
/// none, and infinite room left, as `hdfs dfs -count -q` prints it.
const NO_QUOTAS: [&str; 4] = ["none", "inf", "none", "inf"];

/// `count`'s line for one path, as `hdfs dfs -count`: directories, files
/// and bytes right-aligned in 12, 12 and 18 columns, then the path;
/// with `quotas`, the quota columns (12, 15, 15, 15) first.
pub async fn count(client: &Client, path: &str, quotas: bool, human: bool) -> Result<()> {
    let cs = client.content_summary(path).await?;
    let counts = [
        cs.directory_count.to_string(),
        cs.file_count.to_string(),
        size(cs.length, human),
    ];
    println!(
        "{}{}",
        count_columns(quotas, NO_QUOTAS, counts),
        escape_refused(path)
    );
    Ok(())
}

/// The header `count -v` prints.
pub fn count_header(quotas: bool) -> String {
    let q = ["QUOTA", "REM_QUOTA", "SPACE_QUOTA", "REM_SPACE_QUOTA"];
    let c = ["DIR_COUNT", "FILE_COUNT", "CONTENT_SIZE"].map(String::from);
    format!("{}PATHNAME", count_columns(quotas, q, c))
}

fn count_columns(quotas: bool, q: [&str; 4], c: [String; 3]) -> String {
    let mut out = String::new();
    if quotas {
        out += &format!("{:>12} {:>15} {:>15} {:>15} ", q[0], q[1], q[2], q[3]);
    }
    out += &format!("{:>12} {:>12} {:>18} ", c[0], c[1], c[2]);
    out
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
