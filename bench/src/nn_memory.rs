//! `rfs-bench nn-memory`: the namenode's resident memory per file once it
//! holds N files of one block each (the issue asks for 1M).
//!
//! Like Hadoop's NNThroughputBenchmark, no data moves: a namenode of the
//! release build starts alone ([`MiniCluster`] with no datanodes), three
//! fake datanodes register and heartbeat over the datanode protocol, and
//! `--tasks` writers run, for each file, the RPCs a real writer sends:
//! `Create`, `AddBlock` (the namenode places it on the fake nodes), one
//! `BlockReceivedAndDeleted` per location (what the pipeline's datanodes
//! would report), and `Complete` with the block's length. Every namespace
//! change is a committed raft entry, as in a real write.
//!
//! The figure is the growth of the namenode's VmRSS from just before the
//! first file to after the last, divided by the file count, with the
//! namenode's default settings: what an operator running them gets.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use rfs_integration::{fetch_metrics, metric_value, MiniCluster, MiniClusterBuilder};
use rfs_proto::common::DatanodeInfo;
use rfs_proto::datanode::datanode_protocol_client::DatanodeProtocolClient;
use rfs_proto::datanode::{
    BlockReceivedAndDeletedRequest, HeartbeatRequest, RegisterRequest, StorageReport,
};
use rfs_proto::namenode::client_protocol_client::ClientProtocolClient;
use rfs_proto::namenode::{
    AddBlockRequest, CallId, CompleteRequest, CreateRequest, DeleteRequest, GetFileInfoRequest,
};
use tokio::task::JoinSet;
use tonic::transport::Channel;

use crate::figures::Figure;

#[derive(clap::Args)]
pub struct NnMemoryArgs {
    /// Files to create, one block each.
    #[arg(long, default_value_t = 1_000_000)]
    files: u64,
    /// Concurrent writers.
    #[arg(long, default_value_t = 16)]
    tasks: u64,
    /// Files per directory (like a job's output directories).
    #[arg(long, default_value_t = 10_000)]
    per_dir: u64,
    /// Then kill -9 the namenode and report the time until it serves
    /// again and its RSS per file after loading the namespace back.
    #[arg(long)]
    restart: bool,
    /// Then `rm -r` everything written, with a client statting `/` all the
    /// while: reports how long the call took, how long until every inode
    /// was freed, the slowest stat meanwhile, and the RSS after.
    #[arg(long)]
    rm_r: bool,
    /// Then wait until the retry cache has expired (10 minutes after the
    /// last call) and a checkpoint holds that, and report the RSS per file
    /// then: the namespace's own memory, as the issue asks it measured.
    #[arg(long)]
    after_expiry: bool,
}

const FAKE_DATANODES: usize = 3;
/// Bytes each fake block claims to hold.
const BLOCK_LEN: u64 = 1 << 20;

fn fake_id(i: usize) -> String {
    format!("fake-dn-{i}")
}

/// Resident memory of `pid` in bytes (VmRSS).
pub(crate) fn rss_bytes(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading the memory of process {pid}"))?;
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("no VmRSS line in /proc/<pid>/status")?;
    Ok(kib * 1024)
}

pub(crate) fn dir_bytes(path: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(path) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_bytes(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

async fn heartbeat(dn: &mut DatanodeProtocolClient<Channel>, id: String, epoch: u64) -> Result<()> {
    let storage = StorageReport {
        capacity: 1 << 50,
        used: 0,
        remaining: 1 << 50,
        failed_volumes: 0,
    };
    dn.heartbeat(HeartbeatRequest {
        datanode_id: id,
        storage: Some(storage),
        epoch,
        ..Default::default()
    })
    .await?;
    Ok(())
}

/// Registers the fake datanodes and keeps them alive until dropped; their
/// registration epochs, by id.
async fn fake_datanodes(addr: &str) -> Result<(JoinSet<()>, HashMap<String, u64>)> {
    let mut beats = JoinSet::new();
    let mut epochs = HashMap::new();
    for i in 0..FAKE_DATANODES {
        let mut dn = DatanodeProtocolClient::connect(format!("http://{addr}")).await?;
        let info = DatanodeInfo {
            datanode_id: fake_id(i),
            hostname: format!("fake-{i}"),
            ip: format!("127.0.0.{}", i + 2),
            data_port: 9,
            ..Default::default()
        };
        let req = RegisterRequest {
            info: Some(info),
            ..Default::default()
        };
        let epoch = dn.register(req).await?.into_inner().epoch;
        epochs.insert(fake_id(i), epoch);
        heartbeat(&mut dn, fake_id(i), epoch).await?;
        beats.spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(500)).await;
                if let Err(e) = heartbeat(&mut dn, fake_id(i), epoch).await {
                    eprintln!("fake datanode {i}: heartbeat failed: {e:#}");
                }
            }
        });
    }
    Ok((beats, epochs))
}

/// Writes files `task`, `task + tasks`, ... below `files`.
async fn writer(
    addr: String,
    task: u64,
    args: (u64, u64, u64),
    epochs: Arc<HashMap<String, u64>>,
    done: Arc<AtomicU64>,
) -> Result<()> {
    let (files, tasks, per_dir) = args;
    let mut nn = ClientProtocolClient::connect(format!("http://{addr}")).await?;
    let mut dn = DatanodeProtocolClient::connect(format!("http://{addr}")).await?;
    let client = format!("nn-memory-{task}");
    let mut call = 0u64;
    let mut next_call = || {
        call += 1;
        // One call at a time: every earlier one was answered, and the
        // namenodes forget their results at once, as `rfs-client`'s.
        Some(CallId {
            client_id: client.clone(),
            call_id: call,
            answered_below: call,
        })
    };
    let mut k = task;
    while k < files {
        let path = format!("/nn-memory/d{}/f{k}", k / per_dir);
        let what = |op: &str| format!("{op} {path}");
        nn.create(CreateRequest {
            path: path.clone(),
            client_id: client.clone(),
            create_parent: true,
            replication: FAKE_DATANODES as u32,
            call: next_call(),
            ..Default::default()
        })
        .await
        .with_context(|| what("create"))?;
        let located = nn
            .add_block(AddBlockRequest {
                path: path.clone(),
                client_id: client.clone(),
                call: next_call(),
                ..Default::default()
            })
            .await
            .with_context(|| what("add block"))?
            .into_inner()
            .block
            .context("add block answered no block")?;
        let mut block = located.block.context("a located block without a block")?;
        block.num_bytes = BLOCK_LEN;
        for loc in &located.locations {
            dn.block_received_and_deleted(BlockReceivedAndDeletedRequest {
                datanode_id: loc.datanode_id.clone(),
                received: vec![block],
                deleted: Vec::new(),
                epoch: epochs.get(&loc.datanode_id).copied().unwrap_or_default(),
            })
            .await
            .with_context(|| what("report the block of"))?;
        }
        let completed = nn
            .complete(CompleteRequest {
                path: path.clone(),
                client_id: client.clone(),
                last: Some(block),
                unwritten: None,
                call: next_call(),
            })
            .await
            .with_context(|| what("complete"))?
            .into_inner()
            .completed;
        if !completed {
            bail!("{path}: complete refused although every location reported the block");
        }
        done.fetch_add(1, Ordering::Relaxed);
        k += tasks;
    }
    Ok(())
}

pub async fn run(args: &NnMemoryArgs) -> Result<Vec<Figure>> {
    let cluster = MiniClusterBuilder {
        datanodes: 0,
        replication: FAKE_DATANODES as u32,
        // The namenode's default, not the tests' quick one: each pass
        // reads every file.
        replication_interval_ms: 3000,
        ..MiniClusterBuilder::default()
    }
    .start()
    .await
    .context("starting a namenode")?;
    let mut cluster = cluster;
    let figures = measure(&mut cluster, args).await;
    let name_dir = cluster.root().join("name");
    let disk = dir_bytes(&name_dir);
    drop(cluster);
    let mut figures = figures?;
    figures.push(Figure::new(
        "nn_disk_per_file",
        disk as f64 / args.files.max(1) as f64,
        "bytes",
    ));
    Ok(figures)
}

async fn measure(cluster: &mut MiniCluster, args: &NnMemoryArgs) -> Result<Vec<Figure>> {
    let pid = cluster
        .namenode_pid()
        .context("the namenode is not running")?;
    let addr = cluster.namenode_addr();
    let (_beats, epochs) = fake_datanodes(&addr).await?;
    let epochs = Arc::new(epochs);
    let base = rss_bytes(pid)?;
    println!(
        "nn-memory: one namenode, {} fake datanodes; {} files of one {} MiB block (replication {}), {} writers; RSS before {:.1} MiB",
        FAKE_DATANODES,
        args.files,
        BLOCK_LEN >> 20,
        FAKE_DATANODES,
        args.tasks,
        base as f64 / (1 << 20) as f64
    );
    let done = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut writers = JoinSet::new();
    for task in 0..args.tasks {
        writers.spawn(writer(
            addr.clone(),
            task,
            (args.files, args.tasks, args.per_dir.max(1)),
            epochs.clone(),
            done.clone(),
        ));
    }
    let mut last_report = Instant::now();
    loop {
        tokio::select! {
            r = writers.join_next() => match r {
                Some(r) => r.context("a writer task panicked")??,
                None => break,
            },
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
        if last_report.elapsed() >= Duration::from_secs(30) {
            last_report = Instant::now();
            let n = done.load(Ordering::Relaxed);
            eprintln!(
                "nn-memory: {n} files, {:.0} files/s, RSS {:.1} MiB",
                n as f64 / start.elapsed().as_secs_f64(),
                rss_bytes(pid)? as f64 / (1 << 20) as f64
            );
        }
    }
    let secs = start.elapsed().as_secs_f64();
    let rss = rss_bytes(pid)?;
    let files = done.load(Ordering::Relaxed);
    let per_file = |rss: u64| rss.saturating_sub(base) as f64 / files.max(1) as f64;
    let mut figures = vec![
        Figure::new("nn_files", files as f64, "files"),
        Figure::new("nn_rss_mib", rss as f64 / (1 << 20) as f64, "MiB"),
        Figure::new("nn_rss_per_file", per_file(rss), "bytes"),
        Figure::new("nn_files_with_block_per_s", files as f64 / secs, "files/s"),
    ];
    if args.restart {
        // kill -9, then the restart a crash gets: load the last checkpoint,
        // replay the log after it, serve.
        let t = Instant::now();
        cluster.restart_namenode().await?;
        let restart = t.elapsed().as_secs_f64();
        let pid = cluster
            .namenode_pid()
            .context("the namenode is not running")?;
        let rss = rss_bytes(pid)?;
        figures.push(Figure::new("nn_restart_to_serving", restart, "s"));
        figures.push(Figure::new(
            "nn_rss_per_file_after_restart",
            per_file(rss),
            "bytes",
        ));
    }
    if args.after_expiry {
        let rss = rss_after_expiry(cluster).await?;
        figures.push(Figure::new(
            "nn_rss_per_file_after_expiry",
            per_file(rss),
            "bytes",
        ));
    }
    if args.rm_r {
        figures.extend(remove_all(cluster, files, args.per_dir.max(1)).await?);
    }
    Ok(figures)
}

/// The namenode's RSS once its retry cache is empty
/// (`rfs_namenode_retry_cache_entries`), a checkpoint holds that, and the
/// freed memory has been handed back.
async fn rss_after_expiry(cluster: &MiniCluster) -> Result<u64> {
    let http = cluster.namenode_http_addr();
    let pid = cluster
        .namenode_pid()
        .context("the namenode is not running")?;
    let started = Instant::now();
    let deadline = started + Duration::from_secs(20 * 60);
    loop {
        let text = fetch_metrics(http).await?;
        if metric_value(&text, "rfs_namenode_retry_cache_entries") == Some(0.0) {
            break;
        }
        if Instant::now() > deadline {
            bail!("the retry cache did not empty within 20 minutes");
        }
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
    eprintln!(
        "nn-memory: retry cache empty after {:.0} s",
        started.elapsed().as_secs_f64()
    );
    wait_for_checkpoint(http, deadline).await?;
    rss_bytes(pid)
}

/// Waits until a checkpoint holds everything applied now, then a few
/// seconds more: the memory is handed back a few ticks after a large
/// checkpoint (`checkpoint/mod.rs`, TRIM_AFTER_TICKS).
async fn wait_for_checkpoint(http: std::net::SocketAddr, deadline: Instant) -> Result<()> {
    let text = fetch_metrics(http).await?;
    let applied = metric_value(&text, "rfs_namenode_raft_applied_index").unwrap_or(0.0);
    while metric_value(&fetch_metrics(http).await?, "rfs_namenode_checkpoint_index")
        .is_some_and(|c| c < applied)
    {
        if Instant::now() > deadline {
            bail!("no checkpoint of the state applied within the deadline");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(6)).await;
    Ok(())
}

/// `rm -r /nn-memory` while one client stats `/` in a loop; waits until
/// the namenode has freed every inode (`rfs_namenode_reclaimed_inodes_total`).
async fn remove_all(cluster: &MiniCluster, files: u64, per_dir: u64) -> Result<Vec<Figure>> {
    let addr = cluster.namenode_addr();
    let http = cluster.namenode_http_addr();
    let pid = cluster
        .namenode_pid()
        .context("the namenode is not running")?;
    let inodes = files + files.div_ceil(per_dir) + 1;
    // None: a build that frees everything within the call (before
    // `DeleteInSteps`), or nothing freed yet.
    let reclaimed = || async {
        let text = fetch_metrics(http).await?;
        Ok::<Option<f64>, anyhow::Error>(metric_value(&text, "rfs_namenode_reclaimed_inodes_total"))
    };
    let before = reclaimed().await?.unwrap_or(0.0);
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let prober = {
        let stop = stop.clone();
        let mut nn = ClientProtocolClient::connect(format!("http://{addr}")).await?;
        tokio::spawn(async move {
            let mut slowest = Duration::ZERO;
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                nn.get_file_info(GetFileInfoRequest { path: "/".into() })
                    .await?;
                slowest = slowest.max(t.elapsed());
            }
            Ok::<Duration, tonic::Status>(slowest)
        })
    };
    let mut nn = ClientProtocolClient::connect(format!("http://{addr}")).await?;
    let t = Instant::now();
    nn.delete(DeleteRequest {
        path: "/nn-memory".into(),
        recursive: true,
        client_id: "nn-memory-rm".into(),
        call: Some(CallId {
            client_id: "nn-memory-rm".into(),
            call_id: 1,
            answered_below: 1,
        }),
    })
    .await?;
    let call = t.elapsed();
    let deadline = Instant::now() + Duration::from_secs(600);
    let mut waited = false;
    while let Some(n) = reclaimed().await? {
        if n - before >= inodes as f64 {
            break;
        }
        waited = true;
        if Instant::now() > deadline {
            bail!("the namenode did not free the removed inodes within 10 minutes");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let freed = if waited { t.elapsed() } else { call };
    stop.store(true, Ordering::Relaxed);
    let slowest = prober.await.context("the stat prober panicked")??;
    wait_for_checkpoint(http, deadline).await?;
    Ok(vec![
        Figure::new("nn_rm_r_call", call.as_secs_f64() * 1e3, "ms"),
        Figure::new("nn_rm_r_all_freed", freed.as_secs_f64(), "s"),
        Figure::new("nn_rm_r_slowest_stat", slowest.as_secs_f64() * 1e3, "ms"),
        Figure::new(
            "nn_rss_after_rm_r_mib",
            rss_bytes(pid)? as f64 / (1 << 20) as f64,
            "MiB",
        ),
    ])
}
