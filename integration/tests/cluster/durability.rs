//! Durability under failure (issue 5): the namenode killed with -9 under
//! concurrent creates and writes, and a datanode cut off by a network
//! partition during reads and writes. Nothing acknowledged may be lost, and
//! what a failure cut off half way must not block anything afterwards.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, ensure, Context, Result};
use rfs_client::{Client, ClientConfig, CreateOptions, FileType};
use rfs_integration::files::{acked_bytes, report_outcome, write_file_with};
use rfs_integration::load::{verify_acks, wait_for, AckLog, Load, LoadOp};
use rfs_integration::{require_netns, MiniCluster};
use rfs_proto::rpc_error::RpcErrorKind;
use tokio::io::AsyncWriteExt;
use tokio::task::JoinHandle;

use super::common::{block_ids, payload, read_file, write_file, MIB};

const KIB: usize = 1024;

/// Pure creates (empty files), files of a few KiB, 2.5 MiB files (three
/// 1 MiB blocks) and directories.
const CREATES_AND_WRITES: &[LoadOp] = &[
    LoadOp::Write(|_| 0),
    LoadOp::Write(|i| 2 * KIB + (i as usize * 331) % (6 * KIB)),
    LoadOp::Write(|i| 2 * MIB + MIB / 2 + (i as usize * 997) % 4096),
    LoadOp::Mkdirs,
    LoadOp::Write(|_| 0),
    LoadOp::Write(|i| 2 * MIB + MIB / 2 - (i as usize * 131) % 4096),
];

/// The namenode's lease soft limit in the kill test: a writer the crash
/// cut off holds its file until this long after both the restart and its
/// client's last renewal; only then may another client overwrite it.
const LEASE_SOFT_LIMIT: Duration = Duration::from_secs(2);

/// Whether `e` (from [`write_file_with`]) is the namenode refusing the
/// create because another client holds the file's lease.
fn is_lease_conflict(e: &anyhow::Error) -> bool {
    e.downcast_ref::<rfs_client::Error>()
        .is_some_and(|e| e.kind() == RpcErrorKind::LeaseConflict)
}

/// Overwrites `path` with `data` as a new writer would, retrying while the
/// namenode answers lease conflict; how many times it did.
async fn overwrite_once_lease_expires(client: &Client, path: &str, data: &[u8]) -> Result<usize> {
    let start = Instant::now();
    let limit = LEASE_SOFT_LIMIT * 3 + Duration::from_secs(10);
    let mut refused = 0;
    loop {
        let opts = CreateOptions {
            overwrite: true,
            ..Default::default()
        };
        match write_file_with(client, path, data, opts).await {
            Ok(()) => return Ok(refused),
            Err(e) if is_lease_conflict(&e) && start.elapsed() < limit => refused += 1,
            Err(e) => {
                return Err(e).with_context(|| {
                    format!(
                        "overwriting {path} after {refused} lease conflicts over {:?}",
                        start.elapsed()
                    )
                })
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namenode_kill_9_under_concurrent_creates_and_writes_keeps_every_completed_file(
) -> Result<()> {
    let mut b = MiniCluster::builder();
    b.lease_soft_limit_ms = LEASE_SOFT_LIMIT.as_millis() as u64;
    let mut cluster = b.start().await?;
    // Calls fail while the namenode is down instead of waiting out its
    // restart, so that the kill cuts writes off half way.
    let mut config = cluster.client_config();
    config.rpc_timeout = Duration::from_secs(3);
    config.failover_deadline = Duration::from_secs(1);
    let load = Load::start_with(config.clone(), "/crash", 4, CREATES_AND_WRITES);
    // And one writer is certainly half way through its file at the kill:
    // a block and a half written, not closed.
    let held_client = Client::connect(config.clone()).await?;
    let mut held = held_client
        .create("/crash/held", CreateOptions::default())
        .await?;
    held.write_all(&payload(MIB + MIB / 2, 77)).await?;
    load.wait_acked(12, Duration::from_secs(60)).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;

    let acked_at_kill = load.acked();
    cluster.kill_namenode();
    // The clients go on while it is down; their calls fail.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let errors_while_down = load.errors().len();
    cluster.start_namenode().await?;
    cluster.wait_live_datanodes(3).await?;
    // The restarted namenode takes new work from the same clients.
    load.wait_acked(acked_at_kill + 8, Duration::from_secs(60))
        .await?;
    // Every writer the kill cut off is gone: nothing renews their leases.
    drop(held);
    drop(held_client);
    let (mut logs, errors) = load.finish().await?;
    eprintln!(
        "{acked_at_kill} acks before the kill, {errors_while_down} errors while the namenode was down, {} errors in all, e.g. {:?}",
        errors.len(),
        errors.first()
    );
    logs.push(AckLog {
        uncertain: BTreeSet::from(["/crash/held".to_string()]),
        ..Default::default()
    });
    let client = cluster.client().await?;
    verify_acks(&client, "/crash", &logs)
        .await
        .context("acknowledged work after the restart")?;

    // What the kill cut off: the files at paths whose calls failed.
    let mut cut_off = Vec::new();
    for p in logs.iter().flat_map(|l| l.uncertain.iter()) {
        if let Some(st) = client.get_file_info(p).await? {
            if st.file_type() == FileType::File {
                cut_off.push(st);
            }
        }
    }
    let open: Vec<&str> = cut_off
        .iter()
        .filter(|s| s.under_construction)
        .map(|s| s.path.as_str())
        .collect();
    ensure!(
        open.contains(&"/crash/held"),
        "/crash/held should be left under construction: {cut_off:?}"
    );
    // A new client deletes and writes anew every other one, and overwrites
    // the rest once the dead writers' leases are past the soft limit
    // (delete needs no lease; a create over a file another client holds is
    // refused until then).
    let mut replaced = AckLog::default();
    let mut conflicts = 0;
    for (k, st) in cut_off.iter().enumerate() {
        let seed = 9_000_000 + k as u64;
        let len = if k % 2 == 0 { 3000 + k } else { MIB + k };
        let data = payload(len, seed);
        if k % 2 == 0 {
            ensure!(
                client.delete(&st.path, false).await?,
                "delete {} found nothing",
                st.path
            );
            write_file(&client, &st.path, &data)
                .await
                .with_context(|| format!("writing {} anew after deleting it", st.path))?;
        } else {
            conflicts += overwrite_once_lease_expires(&client, &st.path, &data).await?;
        }
        replaced.files.insert(st.path.clone(), (seed, len));
    }
    eprintln!(
        "{} files cut off ({} under construction: {open:?}); overwrites met {conflicts} lease conflicts",
        cut_off.len(),
        open.len()
    );
    for log in &mut logs {
        log.uncertain.retain(|p| !replaced.files.contains_key(p));
    }
    // New files in every directory the load wrote in.
    for t in 0..4 {
        let path = format!("/crash/t{t}/after");
        let (seed, len) = (8_000_000 + t, 2 * MIB + 5);
        write_file(&client, &path, &payload(len, seed))
            .await
            .with_context(|| format!("new write {path}"))?;
        replaced.files.insert(path, (seed, len));
    }
    logs.push(replaced);
    verify_acks(&client, "/crash", &logs)
        .await
        .context("after replacing what the kill cut off")?;
    let acked = acked_bytes(logs.iter().flat_map(|l| l.files.values()));
    report_outcome("namenode kill -9 under 4 writers + restart", acked, acked);
    Ok(())
}

/// The datanode of the partition test's four that runs in its own network
/// namespace.
const ISOLATED: usize = 3;

/// One write attempted during the partition test.
#[derive(Debug)]
struct WriteAttempt {
    path: String,
    seed: u64,
    len: usize,
    started: Instant,
    /// `Ok` once close returned `Ok`.
    outcome: std::result::Result<(), String>,
}

/// Reads `files` round and round until `stop`, comparing every byte:
/// (reads done, failures with when they started).
async fn read_loop(
    config: ClientConfig,
    files: Vec<(String, (u64, usize))>,
    stop: Arc<AtomicBool>,
) -> Result<(usize, Vec<(Instant, String)>)> {
    let client = Client::connect(config).await?;
    let (mut done, mut failures) = (0, Vec::new());
    for (path, (seed, len)) in files.iter().cycle() {
        if stop.load(Ordering::SeqCst) {
            break;
        }
        let started = Instant::now();
        match read_file(&client, path).await {
            Ok(data) if data == payload(*len, *seed) => {}
            Ok(data) => failures.push((started, format!("{path}: {} bytes, wrong", data.len()))),
            Err(e) => failures.push((started, format!("{path}: {e:#}"))),
        }
        done += 1;
    }
    Ok((done, failures))
}

/// Writes new 2-block files at replication 3 one after another until
/// `stop`, logging each attempt.
async fn write_loop(
    config: ClientConfig,
    writer: u64,
    stop: Arc<AtomicBool>,
) -> Result<Vec<WriteAttempt>> {
    let client = Client::connect(config).await?;
    let mut attempts = Vec::new();
    let mut i = 0;
    while !stop.load(Ordering::SeqCst) {
        let path = format!("/part/w{writer}-{i}");
        let (seed, len) = (1000 * (writer + 1) + i, MIB + MIB / 2 + i as usize * 7);
        let started = Instant::now();
        let outcome = write_file(&client, &path, &payload(len, seed))
            .await
            .map_err(|e| format!("{e:#}"));
        attempts.push(WriteAttempt {
            path,
            seed,
            len,
            started,
            outcome,
        });
        i += 1;
    }
    Ok(attempts)
}

/// Joins a load task, failing (not hanging) if it has not stopped in time.
async fn join<T>(what: &str, task: JoinHandle<Result<T>>) -> Result<T> {
    const LIMIT: Duration = Duration::from_secs(60);
    tokio::time::timeout(LIMIT, task)
        .await
        .map_err(|_| anyhow!("{what} did not stop within {LIMIT:?}"))?
        .with_context(|| format!("{what} panicked"))?
}

/// Waits until fsck of `root` shows each of `paths` complete, with `n` live
/// replicas of every block.
async fn wait_fsck_replicas(
    client: &Client,
    root: &str,
    paths: &BTreeSet<String>,
    n: u32,
    limit: Duration,
) -> Result<()> {
    let what = format!(
        "fsck {root}: every block of {} files with {n} live replicas",
        paths.len()
    );
    wait_for(&what, limit, || async {
        let report = client.fsck(root).await?;
        let mut off = Vec::new();
        let mut seen = 0;
        for f in report.files.iter().filter(|f| paths.contains(&f.path)) {
            seen += 1;
            if f.under_construction {
                off.push(format!("{} under construction", f.path));
            }
            for b in f.blocks.iter().filter(|b| b.live_replicas != n) {
                off.push(format!(
                    "{} block {:?}: {} live at {:?}",
                    f.path,
                    b.block.as_ref().map(|b| b.block_id),
                    b.live_replicas,
                    b.locations
                ));
            }
        }
        if seen < paths.len() {
            off.push(format!("{} of {} files in the report", seen, paths.len()));
        }
        // An error keeps wait_for polling and ends up in its message.
        match off.is_empty() {
            true => Ok(Some(())),
            false => Err(anyhow!("{}", off.join("; "))),
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitioned_datanode_loses_no_acknowledged_byte_and_is_trimmed_on_return() -> Result<()> {
    require_netns()?;
    let mut builder = MiniCluster::builder()
        .datanodes(4)
        .isolate_datanode(ISOLATED);
    // A datanode behind the cut answers nothing: a reader, a writer or the
    // pipeline node above it gives up after this, not after the default
    // 10 s (clients and datanodes alike, see `pipeline_timeout`).
    builder.datanode_timeout_ms = 3000;
    let mut cluster = builder.start().await?;
    let dead_after = Duration::from_millis(cluster.opts.datanode_dead_ms);
    let mut config = cluster.client_config();
    config.replication = Some(3);
    let client = Client::connect(config.clone()).await?;

    let mut files: BTreeMap<String, (u64, usize)> = BTreeMap::new();
    for k in 0..6 {
        let path = format!("/part/before{k}");
        let (seed, len) = (100 + k, 2 * MIB + MIB / 3 + k as usize * 1001);
        write_file(&client, &path, &payload(len, seed)).await?;
        files.insert(path, (seed, len));
    }
    let mut ids = Vec::new();
    for path in files.keys() {
        ids.extend(block_ids(&client, path).await?);
    }
    let placed = cluster
        .wait_replicas(&ids, 3, |_| true, Duration::from_secs(20))
        .await?;
    let on_isolated = placed.iter().filter(|on| on.contains(&ISOLATED)).count();
    ensure!(
        on_isolated > 0,
        "no replica of {} blocks landed on the isolated datanode: {placed:?}",
        ids.len()
    );

    // Reads of those files and writes of new ones, under way at the cut.
    let stop = Arc::new(AtomicBool::new(false));
    let before: Vec<_> = files.clone().into_iter().collect();
    let readers: Vec<_> = (0..2)
        .map(|r| {
            let mut mine = before.clone();
            mine.rotate_left(r * 3);
            tokio::spawn(read_loop(config.clone(), mine, stop.clone()))
        })
        .collect();
    let writers: Vec<_> = (0..2)
        .map(|w| tokio::spawn(write_loop(config.clone(), w, stop.clone())))
        .collect();
    tokio::time::sleep(Duration::from_millis(700)).await;
    let netns = cluster.netns().expect("the builder isolated a datanode");
    let cut_at = Instant::now();
    netns.cut()?;
    // Through the namenode's dead-node timeout and a while after it.
    tokio::time::sleep(dead_after + Duration::from_secs(3)).await;
    stop.store(true, Ordering::SeqCst);
    let (mut reads, mut read_failures) = (0, Vec::new());
    for r in readers {
        let (n, failed) = join("a reader", r).await?;
        reads += n;
        read_failures.extend(failed);
    }
    let mut attempts = Vec::new();
    for w in writers {
        attempts.extend(join("a writer", w).await?);
    }
    let since_cut = |t: Instant| {
        t.checked_duration_since(cut_at).map_or_else(
            || "before the cut".to_string(),
            |d| format!("{d:?} after the cut"),
        )
    };
    eprintln!(
        "{reads} reads ({} failed); {} writes ({} acknowledged); cut {:?} ago",
        read_failures.len(),
        attempts.len(),
        attempts.iter().filter(|a| a.outcome.is_ok()).count(),
        cut_at.elapsed()
    );
    for a in attempts.iter().filter(|a| a.outcome.is_ok()) {
        files.insert(a.path.clone(), (a.seed, a.len));
    }
    let mut ids = Vec::new();
    for path in files.keys() {
        ids.extend(block_ids(&client, path).await?);
    }

    // While it is cut off, the namenode counts it dead and copies every
    // block it held to another node.
    let others = |i| i != ISOLATED;
    cluster
        .wait_replicas(&ids, 3, others, Duration::from_secs(60))
        .await
        .context("re-replication while the datanode is cut off")?;
    netns.restore()?;
    cluster
        .wait_live_datanodes(4)
        .await
        .context("the isolated datanode live again after the restore")?;
    // It comes back with its old replicas: one too many of each block it
    // held, until the namenode trims them.
    cluster
        .wait_replicas(&ids, 3, |_| true, Duration::from_secs(60))
        .await
        .context("excess replicas trimmed after the restore")?;
    let paths: BTreeSet<String> = files.keys().cloned().collect();
    wait_fsck_replicas(&client, "/part", &paths, 3, Duration::from_secs(30)).await?;
    let mut verified = 0;
    for (path, (seed, len)) in &files {
        ensure!(
            read_file(&client, path).await? == payload(*len, *seed),
            "{path}: acknowledged bytes differ after the partition"
        );
        verified += *len as u64;
    }

    let read_failures: Vec<String> = read_failures
        .iter()
        .map(|(t, e)| format!("started {}: {e}", since_cut(*t)))
        .collect();
    ensure!(
        reads > 0 && read_failures.is_empty(),
        "{} of {reads} reads failed:\n{}",
        read_failures.len(),
        read_failures.join("\n")
    );
    // Every write goes on without the cut-off node (pipeline recovery).
    let failed: Vec<String> = attempts
        .iter()
        .filter_map(|a| {
            let e = a.outcome.as_ref().err()?;
            Some(format!("{} started {}: {e}", a.path, since_cut(a.started)))
        })
        .collect();
    ensure!(
        failed.is_empty(),
        "{} of {} writes failed:\n{}",
        failed.len(),
        attempts.len(),
        failed.join("\n")
    );
    report_outcome(
        "datanode partitioned (netns) during reads and writes",
        acked_bytes(files.values()),
        verified,
    );
    Ok(())
}
