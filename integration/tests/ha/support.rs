//! What the HA tests share: the one-at-a-time lock, a load of creates,
//! renames, mkdirs and multi-block writes that logs what was acknowledged,
//! checks of that log against the namespace, and namespace snapshots to
//! compare members by.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use rfs_client::{Client, ClientConfig, FileStatus, FileType};
use rfs_proto::namenode::client_protocol_client::ClientProtocolClient;
use tokio::task::JoinHandle;
use tonic::transport::{Channel, Endpoint};

use crate::common::{payload, read_file, write_file, MIB};

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Held for a whole test: HA tests run one at a time (see the crate doc).
pub async fn serial() -> tokio::sync::MutexGuard<'static, ()> {
    SERIAL.lock().await
}

/// The raw client protocol of one namenode, with no failover: for calls
/// whose exact bytes matter (call ids) or that must reach one member.
pub async fn raw_client(addr: &str, timeout: Duration) -> Result<ClientProtocolClient<Channel>> {
    let channel = Endpoint::from_shared(format!("http://{addr}"))?
        .connect_timeout(timeout)
        .timeout(timeout)
        .connect()
        .await
        .with_context(|| format!("connecting to {addr}"))?;
    Ok(ClientProtocolClient::new(channel))
}

/// Polls `check` until it returns `Some`, failing with `what` after `limit`.
pub async fn wait_for<T, F, Fut>(what: &str, limit: Duration, mut check: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Option<T>>>,
{
    let deadline = Instant::now() + limit;
    let mut last_err = None;
    loop {
        match check().await {
            Ok(Some(v)) => return Ok(v),
            Ok(None) => {}
            Err(e) => last_err = Some(format!("{e:#}")),
        }
        if Instant::now() > deadline {
            bail!("{what}: not within {limit:?} (last error: {last_err:?})");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// What one load task saw acknowledged, by path.
#[derive(Debug, Default)]
pub struct AckLog {
    /// Files acknowledged (create, write, close), at their final path:
    /// payload seed and length.
    pub files: BTreeMap<String, (u64, usize)>,
    /// Directories acknowledged.
    pub dirs: BTreeSet<String>,
    /// Paths touched by a call that failed: their state is unknown.
    pub uncertain: BTreeSet<String>,
}

/// A load of concurrent tasks, each with its own client, each in its own
/// directory `<root>/t<n>`, cycling through: a multi-block file (2 blocks
/// of 1 MiB), a small file, a rename of that small file, a mkdirs.
pub struct Load {
    stop: Arc<AtomicBool>,
    acked: Arc<AtomicUsize>,
    errors: Arc<Mutex<Vec<String>>>,
    tasks: Vec<JoinHandle<AckLog>>,
}

impl Load {
    pub fn start(config: ClientConfig, root: &str, tasks: usize) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let acked = Arc::new(AtomicUsize::new(0));
        let errors = Arc::new(Mutex::new(Vec::new()));
        let tasks = (0..tasks)
            .map(|t| {
                let dir = format!("{root}/t{t}");
                tokio::spawn(load_task(
                    config.clone(),
                    dir,
                    t as u64,
                    stop.clone(),
                    acked.clone(),
                    errors.clone(),
                ))
            })
            .collect();
        Load {
            stop,
            acked,
            errors,
            tasks,
        }
    }

    /// Operations acknowledged so far, over all tasks.
    pub fn acked(&self) -> usize {
        self.acked.load(Ordering::SeqCst)
    }

    pub fn errors(&self) -> Vec<String> {
        self.errors.lock().expect("errors lock").clone()
    }

    /// Waits until `n` operations have been acknowledged in all.
    pub async fn wait_acked(&self, n: usize, limit: Duration) -> Result<()> {
        let deadline = Instant::now() + limit;
        while self.acked() < n {
            if self.tasks.iter().all(|t| t.is_finished()) {
                bail!(
                    "every load task stopped at {} acks; errors: {:?}",
                    self.acked(),
                    self.errors()
                );
            }
            if Instant::now() > deadline {
                bail!(
                    "{} of {n} operations acknowledged within {limit:?}; errors so far: {:?}",
                    self.acked(),
                    self.errors()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(())
    }

    /// Stops the tasks after their current operation; their logs and every
    /// error that surfaced to them.
    pub async fn finish(self) -> Result<(Vec<AckLog>, Vec<String>)> {
        self.stop.store(true, Ordering::SeqCst);
        let mut logs = Vec::new();
        for t in self.tasks {
            logs.push(t.await?);
        }
        let errors = self.errors.lock().expect("errors lock").clone();
        Ok((logs, errors))
    }
}

async fn load_task(
    config: ClientConfig,
    dir: String,
    task: u64,
    stop: Arc<AtomicBool>,
    acked: Arc<AtomicUsize>,
    errors: Arc<Mutex<Vec<String>>>,
) -> AckLog {
    let mut log = AckLog::default();
    let fail = |op: String, e: &dyn std::fmt::Display| {
        errors
            .lock()
            .expect("errors lock")
            .push(format!("{op}: {e}"));
    };
    let client = match Client::connect(config).await {
        Ok(c) => c,
        Err(e) => {
            fail(format!("t{task} connect"), &e);
            return log;
        }
    };
    let mut i = 0u64;
    while !stop.load(Ordering::SeqCst) {
        let seed = task * 1_000_000 + i;
        let ok = match i % 4 {
            0 | 1 => {
                let path = format!("{dir}/f{i}");
                let len = match i % 4 {
                    0 => MIB + MIB / 2 + (i as usize * 997) % 4096,
                    _ => 1000 + i as usize,
                };
                match write_file(&client, &path, &payload(len, seed)).await {
                    Ok(()) => {
                        log.files.insert(path, (seed, len));
                        true
                    }
                    Err(e) => {
                        fail(format!("write {path}"), &e);
                        log.uncertain.insert(path);
                        false
                    }
                }
            }
            2 => {
                let src = format!("{dir}/f{}", i - 1);
                let dst = format!("{dir}/r{}", i - 1);
                match log.files.get(&src).copied() {
                    // The small file's write failed: nothing to rename.
                    None => false,
                    Some(entry) => match client.rename(&src, &dst).await {
                        Ok(_) => {
                            log.files.remove(&src);
                            log.files.insert(dst, entry);
                            true
                        }
                        Err(e) => {
                            fail(format!("rename {src} {dst}"), &e);
                            log.files.remove(&src);
                            log.uncertain.insert(src);
                            log.uncertain.insert(dst);
                            false
                        }
                    },
                }
            }
            _ => {
                let path = format!("{dir}/d{i}");
                match client.mkdirs(&path, true).await {
                    Ok(_) => {
                        log.dirs.insert(path);
                        true
                    }
                    Err(e) => {
                        fail(format!("mkdirs {path}"), &e);
                        log.uncertain.insert(path);
                        false
                    }
                }
            }
        };
        if ok {
            acked.fetch_add(1, Ordering::SeqCst);
        }
        i += 1;
    }
    log
}

/// Every entry under `root` (not `root` itself), by path.
pub async fn list_tree(client: &Client, root: &str) -> Result<BTreeMap<String, FileStatus>> {
    let mut out = BTreeMap::new();
    let mut dirs = VecDeque::from([root.to_string()]);
    while let Some(dir) = dirs.pop_front() {
        for st in client
            .list(&dir)
            .await
            .with_context(|| format!("listing {dir}"))?
        {
            if st.file_type() == FileType::Directory {
                dirs.push_back(st.path.clone());
            }
            out.insert(st.path.clone(), st);
        }
    }
    Ok(out)
}

/// One entry of a namespace snapshot: what every member must agree on
/// (access times are left out: reads may move them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub file_type: i32,
    pub length: u64,
    pub inode_id: u64,
    pub mtime_ms: u64,
    pub replication: u32,
    pub under_construction: bool,
    pub children: u64,
}

/// The whole namespace as one member serves it.
pub async fn namespace(client: &Client) -> Result<BTreeMap<String, Entry>> {
    Ok(list_tree(client, "/")
        .await?
        .into_iter()
        .map(|(p, s)| {
            let e = Entry {
                file_type: s.file_type,
                length: s.length,
                inode_id: s.inode_id,
                mtime_ms: s.mtime_ms,
                replication: s.replication,
                under_construction: s.under_construction,
                children: s.children,
            };
            (p, e)
        })
        .collect())
}

/// The entries where two namespace snapshots differ (at most 20 lines).
pub fn diff_namespaces(a: &BTreeMap<String, Entry>, b: &BTreeMap<String, Entry>) -> String {
    let paths: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    let lines: Vec<String> = paths
        .into_iter()
        .filter(|p| a.get(*p) != b.get(*p))
        .map(|p| format!("{p}: {:?} vs {:?}", a.get(p), b.get(p)))
        .collect();
    let shown = lines.len().min(20);
    format!(
        "{} of {} paths differ:\n{}",
        lines.len(),
        a.len().max(b.len()),
        lines[..shown].join("\n")
    )
}

/// Checks that every acknowledged operation of `logs` (a [`Load`] under
/// `root`) is present exactly once: each file at its final path with its
/// exact bytes, renamed files not at their old path, each directory there,
/// and nothing else in the tree apart from paths whose call failed.
pub async fn verify_acks(client: &Client, root: &str, logs: &[AckLog]) -> Result<()> {
    let tree = list_tree(client, root).await?;
    let mut problems = Vec::new();
    let mut uncertain = BTreeSet::new();
    let mut expected = BTreeSet::new();
    for log in logs {
        uncertain.extend(log.uncertain.iter().cloned());
        expected.extend(log.files.keys().cloned());
        expected.extend(log.dirs.iter().cloned());
    }
    for path in tree.keys() {
        let is_task_dir = path.matches('/').count() == root.matches('/').count() + 1;
        if !expected.contains(path) && !uncertain.contains(path) && !is_task_dir {
            problems.push(format!("{path}: present but never acknowledged there"));
        }
    }
    for log in logs {
        for (path, (seed, len)) in &log.files {
            match tree.get(path) {
                None => problems.push(format!("{path}: acknowledged file missing")),
                Some(st) if st.file_type() != FileType::File || st.length != *len as u64 => {
                    problems.push(format!(
                        "{path}: expected a complete file of {len} bytes, got {st:?}"
                    ))
                }
                Some(_) => match read_file(client, path).await {
                    Ok(data) if data == payload(*len, *seed) => {}
                    Ok(data) => problems.push(format!(
                        "{path}: content differs ({} bytes read)",
                        data.len()
                    )),
                    Err(e) => problems.push(format!("{path}: read failed: {e:#}")),
                },
            }
        }
        for path in &log.dirs {
            match tree.get(path) {
                Some(st) if st.file_type() == FileType::Directory => {}
                other => problems.push(format!("{path}: acknowledged directory is {other:?}")),
            }
        }
    }
    let total: usize = logs.iter().map(|l| l.files.len() + l.dirs.len()).sum();
    ensure!(
        problems.is_empty(),
        "{} problems among {total} acknowledged paths:\n{}",
        problems.len(),
        problems.join("\n")
    );
    Ok(())
}
