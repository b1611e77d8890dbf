//! `rfs-bench failover` and `rfs-bench creates`: an HA group (nn1, nn2 and a
//! witness, [`rfs_integration::HaCluster`]) of the release binaries next to
//! `rfs-bench`, its name dirs under `--dir` (the disk whose fsyncs commit
//! the raft log), removed afterwards.
//!
//! - `failover`: a steady stream of creates (`--rate` started per second,
//!   each one `create` then `close` through `rfs_client` naming every
//!   member) runs while the leader is killed with SIGKILL. The figure is
//!   the time from the kill to the first acknowledged create among those
//!   *sent after* the kill: what a user sees, client retries and backoff
//!   included. Then the killed member restarts and catches up, and the next
//!   round begins. Prints `failover_{min,median,max}_ms`.
//! - `creates`: N clients, each its own connection to the leader, each
//!   sending Create RPCs one after another (raw gRPC, a call id on each,
//!   files left open). Every acknowledged create is a raft entry committed
//!   on a majority and applied. Prints `creates_per_s_<N>` beside the
//!   disk's unbatched fsync rate and the leader's raft fsyncs per second.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use rfs_client::{Client, CreateOptions};
use rfs_integration::{metric_value, HaCluster, HaClusterBuilder};
use rfs_proto::namenode::client_protocol_client::ClientProtocolClient;
use rfs_proto::namenode::{CallId, CreateRequest};
use tokio::io::AsyncWriteExt;
use tokio::task::JoinSet;
use tonic::transport::{Channel, Endpoint};

#[derive(clap::Args)]
pub struct GroupArgs {
    /// Parent of the group's name dirs: put it on the disk to measure.
    #[arg(long, default_value = ".rfs/bench-ha")]
    dir: PathBuf,
    /// Raft tick in ms [default: the namenode's].
    #[arg(long)]
    tick_ms: Option<u64>,
    /// Election timeout in ticks [default: the namenode's].
    #[arg(long)]
    election_ticks: Option<u64>,
    /// Leader heartbeat interval in ticks [default: the namenode's].
    #[arg(long)]
    heartbeat_ticks: Option<u64>,
    /// Datanodes to start (creating empty files needs none).
    #[arg(long, default_value_t = 0)]
    datanodes: usize,
}

#[derive(clap::Args)]
pub struct FailoverArgs {
    #[command(flatten)]
    group: GroupArgs,
    /// Leader kills.
    #[arg(long, default_value_t = 10)]
    rounds: usize,
    /// Creates started per second by the steady stream.
    #[arg(long, default_value_t = 200)]
    rate: u64,
}

#[derive(clap::Args)]
pub struct RebuildArgs {
    #[command(flatten)]
    group: GroupArgs,
    /// Files created before the member is wiped.
    #[arg(long, default_value_t = 100_000)]
    files: u64,
    /// Creates started per second by the steady stream meanwhile.
    #[arg(long, default_value_t = 200)]
    rate: u64,
}

#[derive(clap::Args)]
pub struct CreatesArgs {
    #[command(flatten)]
    group: GroupArgs,
    /// Concurrent clients, one measurement per value.
    #[arg(long, value_delimiter = ',', default_value = "1,16")]
    clients: Vec<usize>,
    /// Seconds measured per client count (after one second of warm-up).
    #[arg(long, default_value_t = 5)]
    seconds: u64,
}

async fn start_group(g: &GroupArgs) -> Result<HaCluster> {
    let b = HaClusterBuilder {
        datanodes: g.datanodes,
        tick_ms: g.tick_ms,
        election_ticks: g.election_ticks,
        heartbeat_ticks: g.heartbeat_ticks,
        root_parent: Some(g.dir.clone()),
        ..HaClusterBuilder::default()
    };
    let cluster = b.start().await.context("starting the HA group")?;
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "HA group nn1, nn2, witness + {} datanodes; raft tick {} ms, election {} ticks (unset: namenode defaults); name dirs under {}; {cores} cores",
        g.datanodes,
        g.tick_ms.map_or("default".into(), |v| v.to_string()),
        g.election_ticks.map_or("default".into(), |v| v.to_string()),
        g.dir.display()
    );
    Ok(cluster)
}

/// (sent, acknowledged) of each create of a stream.
type Acks = Arc<Mutex<Vec<(Instant, Instant)>>>;

/// Creates started at a fixed rate whatever the previous ones are doing,
/// so that some are always being sent.
struct Stream {
    stop: Arc<AtomicBool>,
    acks: Acks,
    errors: Arc<Mutex<Vec<String>>>,
    ticker: tokio::task::JoinHandle<JoinSet<()>>,
}

/// Creates still in flight beyond which the stream skips a tick.
const MAX_IN_FLIGHT: usize = 2000;

impl Stream {
    fn start(client: Client, prefix: String, rate: u64) -> Stream {
        let stop = Arc::new(AtomicBool::new(false));
        let acks: Acks = Arc::default();
        let errors: Arc<Mutex<Vec<String>>> = Arc::default();
        let (s, a, e) = (stop.clone(), acks.clone(), errors.clone());
        let ticker = tokio::spawn(async move {
            let mut ops = JoinSet::new();
            let mut tick = tokio::time::interval(Duration::from_secs(1) / rate.max(1) as u32);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            let mut k = 0u64;
            while !s.load(Ordering::SeqCst) {
                tick.tick().await;
                while ops.try_join_next().is_some() {}
                if ops.len() >= MAX_IN_FLIGHT {
                    continue;
                }
                k += 1;
                let (client, path, a, e) = (
                    client.clone(),
                    format!("{prefix}/c{k}"),
                    a.clone(),
                    e.clone(),
                );
                ops.spawn(async move {
                    let sent = Instant::now();
                    let res = async {
                        let mut w = client.create(&path, CreateOptions::default()).await?;
                        a.lock().expect("acks").push((sent, Instant::now()));
                        w.shutdown().await?;
                        anyhow::Ok(())
                    }
                    .await;
                    if let Err(err) = res {
                        e.lock().expect("errors").push(format!("{path}: {err:#}"));
                    }
                });
            }
            ops
        });
        Stream {
            stop,
            acks,
            errors,
            ticker,
        }
    }

    fn acked(&self) -> usize {
        self.acks.lock().expect("acks").len()
    }

    /// The first acknowledgement of a create sent at or after `t`.
    fn first_ack_sent_after(&self, t: Instant) -> Option<Instant> {
        self.acks
            .lock()
            .expect("acks")
            .iter()
            .filter(|(sent, _)| *sent >= t)
            .map(|(_, acked)| *acked)
            .min()
    }

    /// Stops starting creates and waits (bounded) for those in flight;
    /// returns the errors that surfaced.
    async fn stop(self) -> Result<Vec<String>> {
        self.stop.store(true, Ordering::SeqCst);
        let mut ops = self.ticker.await?;
        let drained = tokio::time::timeout(Duration::from_secs(60), async {
            while ops.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            bail!("creates still in flight 60 s after the stream stopped");
        }
        let errors = self.errors.lock().expect("errors").clone();
        Ok(errors)
    }
}

async fn wait_until(what: &str, limit: Duration, mut ok: impl FnMut() -> bool) -> Result<()> {
    let deadline = Instant::now() + limit;
    while !ok() {
        if Instant::now() > deadline {
            bail!("{what}: not within {limit:?}");
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    Ok(())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

pub async fn failover(args: FailoverArgs) -> Result<()> {
    let mut cluster = start_group(&args.group).await?;
    let client = cluster.client().await?;
    println!(
        "failover: {} rounds; a stream of {} creates/s; time from kill -9 of the leader to the first acknowledged create sent after it",
        args.rounds, args.rate
    );
    let mut times = Vec::new();
    let mut total_errors = 0;
    for round in 0..args.rounds {
        let leader = cluster.leader().await?;
        let stream = Stream::start(
            client.clone(),
            format!("/bench/failover/r{round}"),
            args.rate,
        );
        let warm = (args.rate / 4).max(5) as usize;
        wait_until(
            "the stream's first creates",
            Duration::from_secs(30),
            || stream.acked() >= warm,
        )
        .await?;

        let killed = Instant::now();
        cluster.kill_member(leader);
        wait_until(
            "a create acknowledged after the kill",
            Duration::from_secs(60),
            || stream.first_ack_sent_after(killed).is_some(),
        )
        .await?;
        let first = stream
            .first_ack_sent_after(killed)
            .context("a create acknowledged after the kill")?;
        let took = ms(first - killed);
        times.push(took);
        let new = cluster.new_leader_other_than(leader).await?;
        let errors = stream.stop().await?;
        total_errors += errors.len();

        let restart = Instant::now();
        cluster.start_member(leader).await?;
        cluster.wait_caught_up(leader).await?;
        println!(
            "round {:>2}: killed {}, {} leads; first create acknowledged {:>7.1} ms after the kill; {} errors surfaced; {} back and caught up in {:.0} ms",
            round + 1,
            cluster.member_id(leader),
            cluster.member_id(new),
            took,
            errors.len(),
            cluster.member_id(leader),
            ms(restart.elapsed())
        );
        for e in errors.iter().take(3) {
            println!("    error: {e}");
        }
    }
    times.sort_by(f64::total_cmp);
    let median = if times.len() % 2 == 1 {
        times[times.len() / 2]
    } else {
        (times[times.len() / 2 - 1] + times[times.len() / 2]) / 2.0
    };
    println!("failover_min_ms {:.0} ms", times[0]);
    println!("failover_median_ms {median:.0} ms");
    println!("failover_max_ms {:.0} ms", times[times.len() - 1]);
    println!("failover_errors_surfaced {total_errors} errors");
    Ok(())
}

/// Wipes a follower holding N files and restarts it empty while a steady
/// stream of creates runs: how long until it has caught up (from a
/// snapshot plus the log), and the slowest create and the longest gap
/// between acknowledgements before and during the rebuild (the issue's
/// "no commit pause > 100 ms").
pub async fn rebuild(args: RebuildArgs) -> Result<()> {
    let mut cluster = start_group(&args.group).await?;
    let client = cluster.client().await?;
    let leader = cluster.leader().await?;
    let follower = [rfs_integration::NN1, rfs_integration::NN2]
        .into_iter()
        .find(|&m| m != leader)
        .context("no full member besides the leader")?;
    let t = Instant::now();
    let mut writers = JoinSet::new();
    let tasks = 16;
    for task in 0..tasks {
        let client = client.clone();
        let files = args.files;
        writers.spawn(async move {
            let mut k = task;
            while k < files {
                let path = format!("/bench/rebuild/d{}/f{k}", k / 10_000);
                let mut w = client.create(&path, CreateOptions::default()).await?;
                w.shutdown().await?;
                k += tasks;
            }
            anyhow::Ok(())
        });
    }
    while let Some(r) = writers.join_next().await {
        r??;
    }
    println!(
        "rebuild: {} files created in {:.1} s; wiping {} ({} leads), then a stream of {} creates/s",
        args.files,
        t.elapsed().as_secs_f64(),
        cluster.member_id(follower),
        cluster.member_id(leader),
        args.rate
    );
    cluster.kill_member(follower);
    cluster.wipe_member(follower)?;
    let stream = Stream::start(client.clone(), "/bench/rebuild/stream".into(), args.rate);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let restarted = Instant::now();
    cluster.start_member(follower).await?;
    // The snapshot of a large namespace takes the leader a while to build
    // and the member to load: 30 s and more at 1M files.
    cluster
        .wait_caught_up_within(follower, Duration::from_secs(300))
        .await?;
    let caught_up = Instant::now();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let acks = stream.acks.lock().expect("acks").clone();
    let errors = stream.stop().await?;
    // Per window: acknowledgements, the slowest create, and the gaps
    // between acknowledgements (longest first, each with when it ended, to
    // set beside the members' logs).
    let window = |from: Instant, to: Instant| {
        let mut acked: Vec<(Instant, Instant)> = acks
            .iter()
            .filter(|(sent, _)| *sent >= from && *sent < to)
            .copied()
            .collect();
        acked.sort_by_key(|(_, a)| *a);
        let slowest = acked.iter().map(|(s, a)| *a - *s).max().unwrap_or_default();
        let mut gaps: Vec<(Duration, Instant)> = acked
            .windows(2)
            .map(|w| (w[1].1 - w[0].1, w[1].1))
            .collect();
        gaps.sort_by(|a, b| b.cmp(a));
        (acked.len(), slowest, gaps)
    };
    let longest = |gaps: &[(Duration, Instant)]| gaps.first().map_or(Duration::ZERO, |g| g.0);
    let (n_before, slow_before, gaps_before) =
        window(restarted - Duration::from_secs(3), restarted);
    let (n_during, slow_during, gaps) = window(restarted, caught_up);
    let (gap_before, gap_during) = (longest(&gaps_before), longest(&gaps));
    let since_epoch = |at: Instant| {
        let ago = Instant::now().saturating_duration_since(at);
        (std::time::SystemTime::now() - ago)
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs_f64()
    };
    let log = cluster.member_log(leader).unwrap_or_default();
    let built = log
        .lines()
        .rfind(|l| l.contains("raft snapshot at index"))
        .unwrap_or("(no snapshot line in the leader's log)");
    println!("leader: {}", built.trim());
    println!("restarted at +0 ms; the rebuilt member's log:");
    for l in cluster
        .member_log(follower)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains("snapshot") || l.contains("serving") || l.contains("leader"))
    {
        println!("  {}", l.trim());
    }
    println!(
        "rebuild_to_caught_up {:.2} s",
        (caught_up - restarted).as_secs_f64()
    );
    println!("rebuild_creates_before {n_before} creates");
    println!("rebuild_slowest_create_before {:.1} ms", ms(slow_before));
    println!("rebuild_longest_ack_gap_before {:.1} ms", ms(gap_before));
    println!("rebuild_creates_during {n_during} creates");
    println!("rebuild_slowest_create_during {:.1} ms", ms(slow_during));
    println!("rebuild_longest_ack_gap_during {:.1} ms", ms(gap_during));
    println!("rebuild_errors_surfaced {} errors", errors.len());
    println!(
        "restarted at {:.3} (unix time); the longest gaps during, and when each ended:",
        since_epoch(restarted)
    );
    for (gap, end) in gaps.iter().take(5) {
        println!(
            "  {:.1} ms ending at +{:.3} s ({:.3})",
            ms(*gap),
            (*end - restarted).as_secs_f64(),
            since_epoch(*end)
        );
    }
    Ok(())
}

/// Connects to one namenode, with no failover.
async fn raw_client(addr: &str) -> Result<ClientProtocolClient<Channel>> {
    let channel = Endpoint::from_shared(format!("http://{addr}"))?
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(30))
        .tcp_nodelay(true)
        .connect()
        .await
        .with_context(|| format!("connecting to {addr}"))?;
    Ok(ClientProtocolClient::new(channel))
}

/// One client's creates, one after another, until `stop`.
async fn create_loop(
    addr: String,
    dir: String,
    client_id: String,
    stop: Arc<AtomicBool>,
    done: Arc<AtomicU64>,
) -> Result<()> {
    let mut c = raw_client(&addr).await?;
    let mut k = 0u64;
    while !stop.load(Ordering::Relaxed) {
        k += 1;
        let req = CreateRequest {
            path: format!("{dir}/f{k}"),
            client_id: client_id.clone(),
            create_parent: true,
            // One call at a time: every earlier one was answered.
            call: Some(CallId {
                client_id: client_id.clone(),
                call_id: k,
                answered_below: k,
            }),
            ..Default::default()
        };
        c.create(req)
            .await
            .with_context(|| format!("{client_id}: create {dir}/f{k}"))?;
        done.fetch_add(1, Ordering::Relaxed);
    }
    Ok(())
}

/// Small appends each followed by fdatasync, per second, in `dir` for one
/// second: the bound on commits that are not batched.
fn disk_fsyncs_per_s(dir: &std::path::Path) -> Result<f64> {
    use std::io::Write;
    std::fs::create_dir_all(dir)?;
    let path = dir.join("fsync-probe.bin");
    let mut f = std::fs::File::create(&path)?;
    let block = [0u8; 4096];
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < Duration::from_secs(1) {
        f.write_all(&block)?;
        f.sync_data()?;
        n += 1;
    }
    let rate = n as f64 / start.elapsed().as_secs_f64();
    drop(f);
    std::fs::remove_file(&path)?;
    Ok(rate)
}

/// The leader's raft fsyncs so far, from its /metrics.
async fn raft_fsyncs(cluster: &HaCluster, leader: usize) -> Result<f64> {
    let text = cluster.member_metrics(leader).await?;
    metric_value(&text, "rfs_namenode_raft_fsyncs_total")
        .context("the leader's /metrics has no rfs_namenode_raft_fsyncs_total")
}

pub async fn creates(args: CreatesArgs) -> Result<()> {
    let fsyncs = disk_fsyncs_per_s(&args.group.dir)?;
    println!(
        "disk_fsyncs_per_s {fsyncs:.0} fsyncs/s (4 KiB append + fdatasync, one after another, under {})",
        args.group.dir.display()
    );
    let mut cluster = start_group(&args.group).await?;
    println!(
        "creates: N clients, each its own connection to the leader, Create RPCs back to back; {} s measured after 1 s of warm-up",
        args.seconds
    );
    for &n in &args.clients {
        let leader = cluster.leader().await?;
        let addr = cluster.member_addr(leader);
        let stop = Arc::new(AtomicBool::new(false));
        let done = Arc::new(AtomicU64::new(0));
        let mut tasks = JoinSet::new();
        for t in 0..n {
            tasks.spawn(create_loop(
                addr.clone(),
                format!("/bench/creates/n{n}/c{t}"),
                format!("bench-creates-{n}-{t}"),
                stop.clone(),
                done.clone(),
            ));
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        let f0 = raft_fsyncs(&cluster, leader).await?;
        let (c0, t0) = (done.load(Ordering::Relaxed), Instant::now());
        tokio::time::sleep(Duration::from_secs(args.seconds)).await;
        let (c1, t1) = (done.load(Ordering::Relaxed), Instant::now());
        let f1 = raft_fsyncs(&cluster, leader).await?;
        stop.store(true, Ordering::Relaxed);
        let mut errors = Vec::new();
        while let Some(r) = tasks.join_next().await {
            if let Err(e) = r? {
                errors.push(format!("{e:#}"));
            }
        }
        if !errors.is_empty() {
            bail!(
                "{} of {n} clients failed (leader {}): {}\n{}",
                errors.len(),
                cluster.member_id(leader),
                errors[0],
                cluster.describe().await
            );
        }
        let secs = (t1 - t0).as_secs_f64();
        let rate = (c1 - c0) as f64 / secs;
        println!("creates_per_s_{n} {rate:.0} creates/s");
        println!(
            "leader_raft_fsyncs_per_s_{n} {:.0} fsyncs/s ({:.1} creates per leader fsync)",
            (f1 - f0) / secs,
            (c1 - c0) as f64 / (f1 - f0).max(1.0)
        );
    }
    Ok(())
}
