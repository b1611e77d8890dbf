//! `dfs put` when things go wrong: the bytes go to `DST._COPYING_`, which
//! is renamed over DST at the end, so a killed, interrupted or failed put
//! leaves nothing under the final name; a rerun on the killed writer's host
//! takes its temporary file over at once, while a live writer keeps it;
//! `put -f` replaces DST in one step, so a reader never finds it missing
//! or partial.

use std::io::Write;
use std::process::{Child, ChildStdin, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use rfs_client::{Client, FileStatus};
use rfs_integration::{MiniCluster, MiniClusterBuilder};

use super::common::{payload, read_file, MIB};
use super::dfs::Dfs;

const DEADLINE: Duration = Duration::from_secs(30);

/// `dfs put … - DST` reading from a pipe the test holds open: a put caught
/// in the middle of its copy for as long as the test likes.
struct StalledPut {
    child: Child,
    stdin: Option<ChildStdin>,
}

impl StalledPut {
    /// Runs `dfs args…` (a put from `-`), feeds it `head`, and waits until
    /// `dir` holds a file under construction: the put's.
    async fn start(
        dfs: &Dfs,
        client: &Client,
        args: &[&str],
        dir: &str,
        head: &[u8],
    ) -> anyhow::Result<StalledPut> {
        let mut child = dfs
            .command(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("spawn dfs")?;
        let mut stdin = child.stdin.take().expect("piped");
        stdin.write_all(head)?;
        stdin.flush()?;
        let mut put = StalledPut {
            child,
            stdin: Some(stdin),
        };
        let deadline = Instant::now() + DEADLINE;
        loop {
            if client.list(dir).await?.iter().any(|s| s.under_construction) {
                return Ok(put);
            }
            if let Some(status) = put.child.try_wait()? {
                bail!("dfs {args:?} exited ({status}) before its file showed up in {dir}");
            }
            if Instant::now() > deadline {
                bail!("dfs {args:?}: no file under construction in {dir} after {DEADLINE:?}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn signal(&self, signal: i32) -> anyhow::Result<()> {
        // SAFETY: kill(2) on a child process this test started and has not reaped.
        if unsafe { libc::kill(self.child.id() as i32, signal) } != 0 {
            bail!("signal {signal}: {}", std::io::Error::last_os_error());
        }
        Ok(())
    }

    /// kill -9: the put gets no chance to clean up.
    fn kill9(mut self) -> anyhow::Result<()> {
        self.child.kill()?;
        self.child.wait()?;
        Ok(())
    }

    /// Feeds the rest of the input, ends it and waits for the put to exit.
    fn finish(mut self, rest: &[u8]) -> anyhow::Result<Output> {
        let mut stdin = self.stdin.take().expect("still open");
        stdin.write_all(rest)?;
        drop(stdin);
        self.wait_exit()
    }

    /// Waits (to a deadline) for the put to exit, with what it printed.
    fn wait_exit(mut self) -> anyhow::Result<Output> {
        let deadline = Instant::now() + DEADLINE;
        while self.child.try_wait()?.is_none() {
            if Instant::now() > deadline {
                self.child.kill()?;
                bail!("dfs put did not exit within {DEADLINE:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(self.child.wait_with_output()?)
    }
}

/// Paths of a listing, each marked when under construction.
fn described(entries: &[FileStatus]) -> Vec<String> {
    entries
        .iter()
        .map(|s| {
            if s.under_construction {
                format!("{} (under construction)", s.path)
            } else {
                s.path.clone()
            }
        })
        .collect()
}

/// Two `dfs` shells that look to each other like shells on two hosts (each
/// keeps its writer locks in its own runtime dir), and a local dir for
/// the sources.
struct Hosts {
    here: Dfs,
    elsewhere: Dfs,
    local: tempfile::TempDir,
    _runtime_dirs: [tempfile::TempDir; 2],
}

impl Hosts {
    fn new(cluster: &MiniCluster) -> anyhow::Result<Hosts> {
        let runtime_dirs = [tempfile::tempdir()?, tempfile::tempdir()?];
        let dfs = Dfs::new(cluster.namenode_addr());
        Ok(Hosts {
            here: dfs.with_runtime_dir(runtime_dirs[0].path()),
            elsewhere: dfs.with_runtime_dir(runtime_dirs[1].path()),
            local: tempfile::tempdir()?,
            _runtime_dirs: runtime_dirs,
        })
    }

    /// Writes `data` to local file `name`; its path.
    fn source(&self, name: &str, data: &[u8]) -> anyhow::Result<String> {
        let path = self.local.path().join(name);
        std::fs::write(&path, data)?;
        Ok(path.to_str().expect("utf-8 temp path").to_string())
    }
}

fn assert_being_written(err: &str) {
    assert!(
        err.contains("is being written by") && err.lines().count() == 1,
        "expected one 'being written' line, got {err:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_put_is_rerun_at_once_on_its_host_and_a_live_one_keeps_its_file(
) -> anyhow::Result<()> {
    let cluster = MiniCluster::start().await?;
    let client = cluster.client().await?;
    let hosts = Hosts::new(&cluster)?;
    let (dfs, elsewhere) = (&hosts.here, &hosts.elsewhere);
    let data = payload(3 * MIB + 17, 3);
    let src = &hosts.source("src.bin", &data)?;
    client.mkdirs("/d", false).await?;

    let put = StalledPut::start(dfs, &client, &["put", "-", "/d/f"], "/d", &data[..MIB]).await?;
    // Its writer is alive: no put, on its host or another, takes the file.
    assert_being_written(&dfs.fails(&["put", src, "/d/f"]));
    assert_being_written(&elsewhere.fails(&["put", "-f", src, "/d/f"]));
    put.kill9()?;
    // Another host cannot tell that the writer died: its lease holds until
    // the soft limit (60 s here).
    assert_being_written(&elsewhere.fails(&["put", src, "/d/f"]));
    // Its own host can: the rerun takes the file over at once.
    dfs.ok(&["put", src, "/d/f"]);
    assert!(
        read_file(&client, "/d/f").await? == data,
        "/d/f holds the rerun's bytes"
    );
    assert_eq!(described(&client.list("/d").await?), ["/d/f"]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_or_failed_put_leaves_nothing_behind() -> anyhow::Result<()> {
    let mut cluster = MiniCluster::start().await?;
    let client = cluster.client().await?;
    let hosts = Hosts::new(&cluster)?;
    let (dfs, elsewhere) = (&hosts.here, &hosts.elsewhere);
    let src = &hosts.source("src.bin", &payload(MIB + 5, 4))?;
    client.mkdirs("/d", false).await?;

    for (signal, name) in [(libc::SIGINT, "SIGINT"), (libc::SIGTERM, "SIGTERM")] {
        let put = StalledPut::start(dfs, &client, &["put", "-", "/d/s"], "/d", b"partial").await?;
        put.signal(signal)?;
        let out = put.wait_exit()?;
        assert_eq!(
            out.status.code(),
            Some(128 + signal),
            "exit status after {name}"
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.trim_end(), format!("dfs: interrupted by {name}"));
        let left = client.list("/d").await?;
        assert!(
            left.is_empty(),
            "after {name} the put left {:?}",
            described(&left)
        );
        // Its lease went with the file: a put from anywhere succeeds at once.
        elsewhere.ok(&["put", src, "/d/s"]);
        client.delete("/d/s", false).await?;
    }

    // A put that fails (no datanode takes its block) deletes its file too.
    for i in 0..cluster.datanode_count() {
        cluster.kill_datanode(i);
    }
    cluster.wait_live_datanodes(0).await?;
    let err = dfs.fails(&["put", src, "/d/f"]);
    assert!(err.contains("no live datanodes"), "{err}");
    let left = client.list("/d").await?;
    assert!(left.is_empty(), "a failed put left {:?}", described(&left));
    Ok(())
}

/// What one `dfs stat` saw: size and whether under construction, or the
/// error it printed.
type Seen = Result<(u64, bool), String>;

/// Runs `dfs stat PATH` over and over in a thread until stopped.
struct StatPoller {
    seen: Arc<Mutex<Vec<Seen>>>,
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<()>,
}

impl StatPoller {
    fn start(dfs: Dfs, path: &'static str) -> StatPoller {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (seen, stop) = (seen.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let out = dfs.run(&["stat", path]);
                    let stdout = String::from_utf8_lossy(&out.stdout);
                    let result = if out.status.success() {
                        let size = stdout
                            .lines()
                            .find_map(|l| l.strip_prefix("Size:"))
                            .and_then(|v| v.trim().parse().ok());
                        match size {
                            Some(size) => Ok((size, stdout.contains("under construction"))),
                            None => Err(format!("no size in {stdout:?}")),
                        }
                    } else {
                        Err(String::from_utf8_lossy(&out.stderr).trim_end().to_string())
                    };
                    seen.lock().expect("poller lock").push(result);
                }
            })
        };
        StatPoller { seen, stop, thread }
    }

    fn count(&self) -> usize {
        self.seen.lock().expect("poller lock").len()
    }

    /// Waits until `more` further stats have run.
    async fn wait_for(&self, more: usize) -> anyhow::Result<()> {
        let want = self.count() + more;
        let deadline = Instant::now() + DEADLINE;
        while self.count() < want {
            if Instant::now() > deadline {
                bail!(
                    "the stat poller ran {} of {want} stats in {DEADLINE:?}",
                    self.count()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(())
    }

    fn stop(self) -> Vec<Seen> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().expect("poller thread");
        Arc::try_unwrap(self.seen)
            .expect("poller gone")
            .into_inner()
            .expect("poller lock")
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_f_replaces_a_file_in_one_step_and_a_dead_writer_elsewhere_is_taken_over_after_the_soft_limit(
) -> anyhow::Result<()> {
    let cluster = MiniClusterBuilder {
        lease_soft_limit_ms: 2000,
        ..Default::default()
    }
    .start()
    .await?;
    let client = cluster.client().await?;
    let hosts = Hosts::new(&cluster)?;
    let (dfs, elsewhere) = (&hosts.here, &hosts.elsewhere);
    let (old, new) = (payload(MIB + 1, 5), payload(2 * MIB + 3, 6));
    let old_src = &hosts.source("old.bin", &old)?;
    client.mkdirs("/d", false).await?;
    dfs.ok(&["put", old_src, "/d/f"]);

    // Another process polls `stat` while `put -f` writes the new bytes.
    let poller = StatPoller::start(dfs.clone(), "/d/f");
    poller.wait_for(1).await?;
    let put =
        StalledPut::start(dfs, &client, &["put", "-f", "-", "/d/f"], "/d", &new[..MIB]).await?;
    poller.wait_for(3).await?;
    let out = put.finish(&new[MIB..])?;
    assert!(
        out.status.success(),
        "put -f: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    poller.wait_for(1).await?;
    let seen = poller.stop();
    let sizes = [old.len() as u64, new.len() as u64];
    for s in &seen {
        match s {
            Ok((size, false)) if sizes.contains(size) => {}
            other => panic!("a stat during put -f saw {other:?}, not the old or the new file"),
        }
    }
    assert_eq!(seen.last(), Some(&Ok((new.len() as u64, false))));
    assert!(
        read_file(&client, "/d/f").await? == new,
        "/d/f holds the new bytes"
    );
    assert_eq!(described(&client.list("/d").await?), ["/d/f"]);

    // A writer killed on another host: this host cannot tell it died, so
    // the rerun waits out the soft limit, then takes the file over.
    let put = StalledPut::start(elsewhere, &client, &["put", "-", "/d/g"], "/d", b"lost").await?;
    put.kill9()?;
    let deadline = Instant::now() + DEADLINE;
    loop {
        let out = dfs.run(&["put", old_src, "/d/g"]);
        if out.status.success() {
            break;
        }
        assert_being_written(&String::from_utf8_lossy(&out.stderr));
        assert!(
            Instant::now() < deadline,
            "the rerun was refused for {DEADLINE:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        read_file(&client, "/d/g").await? == old,
        "/d/g holds the rerun's bytes"
    );
    assert_eq!(described(&client.list("/d").await?), ["/d/f", "/d/g"]);
    Ok(())
}
