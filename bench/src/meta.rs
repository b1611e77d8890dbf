//! `rfs-bench meta`: small-file metadata throughput through the client
//! library, like Hadoop's NNThroughputBenchmark and the MooseFS peer's
//! mount workload: create (and close) N empty files, stat each, list their
//! directories, delete each; with 1 and with 16 concurrent tasks, each task
//! in a directory of its own. Prints `rfs_<op>_<tasks> value ops/s`, and
//! for create, stat and delete the latency percentiles of single
//! operations, `rfs_<op>_<tasks>_p50 value us` (and `_p90`, `_p99`).

use std::future::Future;
use std::time::{Duration, Instant};

use anyhow::Result;
use rfs_client::{Client, ClientConfig, CreateOptions};
use rfs_proto::rpc_error::RpcErrorKind;
use tokio::io::AsyncWriteExt;
use tokio::task::JoinSet;

use crate::figures::{latency_figures, Figure};

#[derive(clap::Args)]
pub struct MetaArgs {
    #[arg(long, default_value = "127.0.0.1:8020")]
    namenode: String,
    /// Files created, statted and deleted per measurement.
    #[arg(long, default_value_t = 100_000)]
    files: usize,
    /// Concurrent tasks, one measurement per value.
    #[arg(long, value_delimiter = ',', default_value = "1,16")]
    tasks: Vec<usize>,
    /// Namenode processes (nn1, nn2, witness) whose CPU time, with this
    /// client's, is reported per create + close (`rfs_create_<tasks>_cpu`).
    #[arg(long, value_delimiter = ',')]
    cpu_pids: Vec<u32>,
    /// Then write this many bytes to each of the same number of files at
    /// replication 3 (create, write, close: `rfs_small_<tasks>` files/s);
    /// 0 skips it.
    #[arg(long, default_value_t = 4096)]
    small_bytes: usize,
}

const ROOT: &str = "/bench/meta";

pub async fn run(args: &MetaArgs) -> Result<Vec<Figure>> {
    let client = Client::connect(ClientConfig::with_namenode(args.namenode.clone())).await?;
    let mut out = Vec::new();
    for &tasks in &args.tasks {
        let tasks = tasks.max(1);
        let per = args.files.div_ceil(tasks);
        let dirs: Vec<String> = (0..tasks).map(|t| format!("{ROOT}/{tasks}/t{t}")).collect();
        remove_tree(&client).await?;
        for d in &dirs {
            client.mkdirs(d, true).await?;
        }
        let n = (per * tasks) as f64;
        let cpu_before = crate::cpu::total(&args.cpu_pids)?;
        let (create, create_lat) = timed(&client, &dirs, per, |c, path| async move {
            let opts = CreateOptions {
                replication: Some(1),
                ..Default::default()
            };
            let mut w = c.create(&path, opts).await?;
            w.shutdown().await?;
            Ok(())
        })
        .await?;
        let create_cpu = crate::cpu::total(&args.cpu_pids)? - cpu_before;
        let (stat, stat_lat) = timed(&client, &dirs, per, |c, path| async move {
            c.get_file_info(&path).await?;
            Ok(())
        })
        .await?;
        let start = Instant::now();
        let mut listed = 0;
        for d in &dirs {
            listed += client.list(d).await?.len();
        }
        let list = listed as f64 / start.elapsed().as_secs_f64();
        let (delete, delete_lat) = timed(&client, &dirs, per, |c, path| async move {
            c.delete(&path, false).await?;
            Ok(())
        })
        .await?;
        out.push(Figure::new(
            format!("rfs_create_{tasks}"),
            n / create,
            "ops/s",
        ));
        if !args.cpu_pids.is_empty() {
            out.push(Figure::new(
                format!("rfs_create_{tasks}_cpu"),
                create_cpu * 1e6 / n,
                "us/op",
            ));
        }
        out.push(Figure::new(format!("rfs_stat_{tasks}"), n / stat, "ops/s"));
        out.push(Figure::new(format!("rfs_list_{tasks}"), list, "entries/s"));
        out.push(Figure::new(
            format!("rfs_delete_{tasks}"),
            n / delete,
            "ops/s",
        ));
        if args.small_bytes > 0 {
            let payload = bytes::Bytes::from(vec![7u8; args.small_bytes]);
            let (small, small_lat) = timed(&client, &dirs, per, move |c, path| {
                let payload = payload.clone();
                async move {
                    let opts = CreateOptions {
                        replication: Some(3),
                        ..Default::default()
                    };
                    let mut w = c.create(&format!("{path}.small"), opts).await?;
                    w.write_all(&payload).await?;
                    w.shutdown().await?;
                    Ok(())
                }
            })
            .await?;
            out.push(Figure::new(
                format!("rfs_small_{tasks}"),
                n / small,
                "files/s",
            ));
            out.extend(latency_figures(&format!("rfs_small_{tasks}"), small_lat));
        }
        out.extend(latency_figures(&format!("rfs_create_{tasks}"), create_lat));
        out.extend(latency_figures(&format!("rfs_stat_{tasks}"), stat_lat));
        out.extend(latency_figures(&format!("rfs_delete_{tasks}"), delete_lat));
    }
    remove_tree(&client).await?;
    Ok(out)
}

/// Deletes what an earlier (maybe interrupted) run left.
async fn remove_tree(client: &Client) -> Result<()> {
    match client.delete(ROOT, true).await {
        Err(e) if e.kind() == RpcErrorKind::NotFound => Ok(()),
        r => r.map(|_| ()).map_err(Into::into),
    }
}

/// Runs `op` on `per` files in each of `dirs`, one task per directory (one
/// shared client, as an application would); seconds taken, and each
/// operation's latency.
async fn timed<F, Fut>(
    client: &Client,
    dirs: &[String],
    per: usize,
    op: F,
) -> Result<(f64, Vec<Duration>)>
where
    F: Fn(Client, String) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = Result<()>> + Send,
{
    let start = Instant::now();
    let mut set = JoinSet::new();
    for d in dirs {
        let (c, d, op) = (client.clone(), d.clone(), op.clone());
        set.spawn(async move {
            let mut lat = Vec::with_capacity(per);
            for i in 0..per {
                let t = Instant::now();
                op(c.clone(), format!("{d}/f{i}")).await?;
                lat.push(t.elapsed());
            }
            anyhow::Ok(lat)
        });
    }
    let mut lat = Vec::with_capacity(per * dirs.len());
    while let Some(r) = set.join_next().await {
        lat.extend(r??);
    }
    Ok((start.elapsed().as_secs_f64(), lat))
}
