//! `rfs-bench nn-image`: a namenode loading a namespace of N one-block
//! files that was written offline straight into a checkpoint image
//! (`rfs_namenode::checkpoint::generate`, as HDFS's `CreateEditsLog`), so
//! that tens of millions of files are measured without creating them
//! through the log: the time from start to serving and the resident
//! memory per file then. No datanode runs, so the block map stays empty
//! (it fills from block reports); the retry cache is empty too, as after
//! it expired.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use rfs_integration::{bin_path, free_port};
use rfs_namenode::checkpoint::generate::{self, Shape};
use rfs_proto::namenode::client_protocol_client::ClientProtocolClient;
use rfs_proto::namenode::{GetFileInfoRequest, ListRequest};

use crate::figures::Figure;
use crate::nn_memory::{dir_bytes, rss_bytes};

#[derive(clap::Args)]
pub struct NnImageArgs {
    /// Files to generate, one 1 MiB block each
    #[arg(long, default_value_t = 10_000_000)]
    files: u64,
    /// Files per directory
    #[arg(long, default_value_t = 10_000)]
    per_dir: u64,
    /// Directory for the name dir (a new one inside it, removed after)
    #[arg(long, default_value = "/var/tmp")]
    scratch: PathBuf,
    /// Longest wait for the namenode to serve
    #[arg(long, default_value_t = 600)]
    timeout_s: u64,
}

/// Kills the namenode however the run ends.
struct Running(std::process::Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub async fn run(args: &NnImageArgs) -> Result<Vec<Figure>> {
    if args.files == 0 || args.per_dir == 0 {
        bail!("--files and --per-dir must be at least 1");
    }
    let dir = tempfile::Builder::new()
        .prefix("rfs-nn-image-")
        .tempdir_in(&args.scratch)
        .with_context(|| format!("creating a directory in {}", args.scratch.display()))?;
    let name_dir = dir.path().join("name");
    let shape = Shape {
        files: args.files,
        per_dir: args.per_dir,
        block_len: 1 << 20,
    };
    let started = Instant::now();
    let nd = name_dir.clone();
    tokio::task::spawn_blocking(move || generate::one_block_files(&nd, shape)).await??;
    let generated = started.elapsed();
    let disk = dir_bytes(&name_dir);
    eprintln!(
        "nn-image: {} files written in {generated:.1?} ({:.0} MiB of image); starting the namenode",
        args.files,
        disk as f64 / (1 << 20) as f64
    );

    let (rpc, http) = (free_port()?, free_port()?);
    let addr = format!("127.0.0.1:{rpc}");
    let log = std::fs::File::create(dir.path().join("namenode.log"))?;
    let started = Instant::now();
    let nn = Running(
        Command::new(bin_path("namenode")?)
            .arg("--name-dir")
            .arg(&name_dir)
            .args([
                "--rpc-addr",
                &addr,
                "--http-addr",
                &format!("127.0.0.1:{http}"),
            ])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("starting the namenode")?,
    );
    // Serving: the last directory's status comes back.
    let last_dir = format!("/{}", Shape::dir_name(shape.dirs().saturating_sub(1)));
    let mut client = loop {
        if started.elapsed() > Duration::from_secs(args.timeout_s) {
            bail!("the namenode did not serve within {} s", args.timeout_s);
        }
        if let Ok(mut c) = ClientProtocolClient::connect(format!("http://{addr}")).await {
            let req = GetFileInfoRequest {
                path: last_dir.clone(),
            };
            if let Ok(r) = c.get_file_info(req).await {
                if r.into_inner().status.is_some() {
                    break c;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let to_serving = started.elapsed();
    let rss = rss_bytes(nn.0.id())?;
    // What it serves is what was generated: the last directory's entries.
    let listed = client
        .list(ListRequest {
            path: last_dir.clone(),
            limit: 10_000,
            ..Default::default()
        })
        .await?
        .into_inner()
        .items
        .len() as u64;
    let expected = (shape.files - (shape.dirs() - 1) * shape.per_dir).min(10_000);
    if listed != expected {
        bail!("{last_dir} lists {listed} entries, {expected} were generated");
    }
    let files = args.files.max(1) as f64;
    Ok(vec![
        Figure::new("nn_image_files", args.files as f64, "files"),
        Figure::new("nn_image_generate", generated.as_secs_f64(), "s"),
        Figure::new("nn_image_disk_per_file", disk as f64 / files, "bytes"),
        Figure::new("nn_image_load_to_serving", to_serving.as_secs_f64(), "s"),
        Figure::new("nn_image_rss_mib", rss as f64 / (1 << 20) as f64, "MiB"),
        Figure::new("nn_image_rss_per_file", rss as f64 / files, "bytes"),
    ])
}
