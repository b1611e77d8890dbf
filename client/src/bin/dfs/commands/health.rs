//! `dfs fsck` and `dfs admin report`: the operator's view of block and
//! datanode health, printed like `hdfs fsck` and `hdfs dfsadmin -report`.

use anyhow::{bail, Result};
use rfs_client::{Client, FsckFile};

use crate::cli::AdminCmd;
use crate::listing_format::size;

/// How much `fsck` prints per file.
#[derive(Debug, Clone, Copy, Default)]
pub struct Detail {
    pub files: bool,
    pub blocks: bool,
    pub locations: bool,
}

/// One block's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Health {
    Healthy,
    UnderReplicated,
    Corrupt,
    Missing,
}

fn health(live: u32, corrupt: u32, replication: u32) -> Health {
    match (live, corrupt) {
        (0, 0) => Health::Missing,
        (0, _) => Health::Corrupt,
        (n, _) if n < replication => Health::UnderReplicated,
        _ => Health::Healthy,
    }
}

#[derive(Default)]
struct Totals {
    files: u64,
    bytes: u64,
    blocks: u64,
    under_replicated: u64,
    corrupt: u64,
    missing: u64,
    open_files: u64,
}

pub async fn fsck(client: &Client, path: &str, detail: Detail) -> Result<()> {
    let r = client.fsck(path).await?;
    let mut t = Totals::default();
    for f in &r.files {
        t.files += 1;
        t.bytes += f.length;
        if f.under_construction {
            t.open_files += 1;
        }
        print_file(f, detail, &mut t);
    }
    let healthy = t.corrupt == 0 && t.missing == 0;
    println!("Status: {}", if healthy { "HEALTHY" } else { "CORRUPT" });
    println!(" Number of data-nodes:\t{}", r.live_datanodes);
    println!(" Total size:\t{} B", t.bytes);
    println!(" Total dirs:\t{}", r.directories);
    println!(" Total files:\t{}", t.files);
    println!(" Files open for write:\t{}", t.open_files);
    println!(" Total blocks:\t{}", t.blocks);
    println!(" Under-replicated blocks:\t{}", t.under_replicated);
    println!(" Corrupt blocks:\t{}", t.corrupt);
    println!(" Missing blocks:\t{}", t.missing);
    println!();
    let verdict = if healthy { "HEALTHY" } else { "CORRUPT" };
    println!("The filesystem under path '{path}' is {verdict}");
    if !healthy {
        bail!(
            "{path}: {} corrupt and {} missing blocks",
            t.corrupt,
            t.missing
        );
    }
    Ok(())
}

fn print_file(f: &FsckFile, detail: Detail, t: &mut Totals) {
    let mut lines = Vec::new();
    let mut worst = Health::Healthy;
    for (i, b) in f.blocks.iter().enumerate() {
        t.blocks += 1;
        let h = health(b.live_replicas, b.corrupt_replicas, f.replication);
        // The last block of an open file is still being written.
        let open_tail = f.under_construction && i + 1 == f.blocks.len();
        match h {
            Health::Healthy => {}
            _ if open_tail => {}
            Health::UnderReplicated => t.under_replicated += 1,
            Health::Corrupt => t.corrupt += 1,
            Health::Missing => t.missing += 1,
        }
        if !open_tail
            && h != Health::Healthy
            && (worst == Health::Healthy || h != Health::UnderReplicated)
        {
            worst = h;
        }
        if detail.blocks {
            let ext = b.block.unwrap_or_default();
            let mut line = format!(
                "{i}. blk_{}_{} len={} Live_repl={}",
                ext.block_id, ext.generation_stamp, ext.num_bytes, b.live_replicas
            );
            if b.corrupt_replicas > 0 {
                line.push_str(&format!(" Corrupt_repl={}", b.corrupt_replicas));
            }
            match h {
                Health::UnderReplicated if !open_tail => line.push_str(" UNDER-REPLICATED"),
                Health::Corrupt if !open_tail => line.push_str(" CORRUPT"),
                Health::Missing if !open_tail => line.push_str(" MISSING"),
                _ => {}
            }
            if detail.locations {
                line.push_str(&format!(" [{}]", b.locations.join(", ")));
            }
            lines.push(line);
        }
    }
    if detail.files {
        let state = match worst {
            Health::Healthy => "OK",
            Health::UnderReplicated => "Under replicated",
            Health::Corrupt => "CORRUPT",
            Health::Missing => "MISSING",
        };
        let open = if f.under_construction {
            " OPENFORWRITE"
        } else {
            ""
        };
        println!(
            "{} {} bytes, replicated: replication={}, {} block(s){open}:  {state}",
            f.path,
            f.length,
            f.replication,
            f.blocks.len()
        );
        for l in lines {
            println!("{l}");
        }
    }
}

/// The admin commands that go through the leader's client protocol.
pub async fn admin(client: &Client, cmd: AdminCmd) -> Result<()> {
    match cmd {
        AdminCmd::Report => report(client).await,
        AdminCmd::Decommission { datanode, cancel } => {
            let r = client.decommission(&datanode, cancel).await?;
            println!(
                "datanode {} ({datanode}) is {}",
                r.datanode_id, r.admin_state
            );
            Ok(())
        }
        AdminCmd::Ha(_) => bail!("ha commands ask every member, not the leader"),
    }
}

async fn report(client: &Client) -> Result<()> {
    let nodes = client.datanode_report().await?;
    let live: Vec<_> = nodes.iter().filter(|n| n.live).collect();
    let dead: Vec<_> = nodes.iter().filter(|n| !n.live).collect();
    let sum =
        |f: fn(&rfs_client::DatanodeReportEntry) -> u64| -> u64 { live.iter().map(|n| f(n)).sum() };
    let capacity = sum(|n| n.info.as_ref().map_or(0, |i| i.capacity));
    let used = sum(|n| n.info.as_ref().map_or(0, |i| i.used));
    let remaining = sum(|n| n.info.as_ref().map_or(0, |i| i.remaining));
    println!(
        "Configured Capacity: {} ({})",
        capacity,
        size(capacity, true)
    );
    println!("DFS Used: {} ({})", used, size(used, true));
    println!("DFS Remaining: {} ({})", remaining, size(remaining, true));
    println!(
        "Failed volumes: {}",
        live.iter().map(|n| n.failed_volumes as u64).sum::<u64>()
    );
    for (title, group) in [("Live", &live), ("Dead", &dead)] {
        println!();
        println!("{title} datanodes ({}):", group.len());
        for n in group.iter() {
            let info = n.info.clone().unwrap_or_default();
            println!();
            println!("Name: {}:{} ({})", info.ip, info.data_port, info.hostname);
            println!("Datanode id: {}", info.datanode_id);
            println!("Decommission status: {}", n.admin_state);
            println!(
                "Capacity: {} ({})",
                info.capacity,
                size(info.capacity, true)
            );
            println!("Used: {} ({})", info.used, size(info.used, true));
            println!(
                "Remaining: {} ({})",
                info.remaining,
                size(info.remaining, true)
            );
            println!("Failed volumes: {}", n.failed_volumes);
            println!("Replicas: {}", n.blocks);
            println!(
                "Last contact: {:.1} s ago",
                n.last_contact_ms as f64 / 1000.0
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts() {
        assert_eq!(health(3, 0, 3), Health::Healthy);
        assert_eq!(health(4, 0, 3), Health::Healthy);
        assert_eq!(health(2, 1, 3), Health::UnderReplicated);
        assert_eq!(health(0, 2, 3), Health::Corrupt);
        assert_eq!(health(0, 0, 3), Health::Missing);
    }
}
