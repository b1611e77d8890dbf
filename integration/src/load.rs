//! A load of concurrent clients that logs exactly what was acknowledged,
//! and the check of that log against the namespace: for tests that kill or
//! cut off a namenode under load and then ask whether every acknowledged
//! change survived and nothing else appeared.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use rfs_client::{Client, ClientConfig, FileStatus, FileType};
use tokio::task::JoinHandle;

use crate::files::{payload, read_file, write_file, MIB};

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
    /// Files acknowledged (create, write, close all returned `Ok`), at
    /// their final path: payload seed and length.
    pub files: BTreeMap<String, (u64, usize)>,
    /// Directories acknowledged.
    pub dirs: BTreeSet<String>,
    /// Paths touched by a call that failed: their state is unknown.
    pub uncertain: BTreeSet<String>,
}

/// One step of a load task's cycle; step `i` of a task works on paths
/// named after `i` in the task's directory.
#[derive(Debug, Clone, Copy)]
pub enum LoadOp {
    /// Create `f<i>`, write `len(i)` bytes (0 is a pure create) and close.
    Write(fn(u64) -> usize),
    /// Rename the file the step before wrote, `f<j>`, to `r<j>` (nothing
    /// when that step was no acknowledged write).
    RenamePrevious,
    /// mkdirs `d<i>`.
    Mkdirs,
}

/// The HA tests' mix: a multi-block file (1.5 MiB and a bit, with 1 MiB
/// blocks), a small file, a rename of that small file, a mkdirs.
pub const MIXED_LOAD: &[LoadOp] = &[
    LoadOp::Write(|i| MIB + MIB / 2 + (i as usize * 997) % 4096),
    LoadOp::Write(|i| 1000 + i as usize),
    LoadOp::RenamePrevious,
    LoadOp::Mkdirs,
];

/// A load of concurrent tasks, each with its own client, each in its own
/// directory `<root>/t<n>`, cycling through a list of [`LoadOp`]s.
pub struct Load {
    stop: Arc<AtomicBool>,
    acked: Arc<AtomicUsize>,
    errors: Arc<Mutex<Vec<String>>>,
    tasks: Vec<JoinHandle<AckLog>>,
}

impl Load {
    /// `tasks` tasks cycling through [`MIXED_LOAD`].
    pub fn start(config: ClientConfig, root: &str, tasks: usize) -> Load {
        Self::start_with(config, root, tasks, MIXED_LOAD)
    }

    /// `tasks` tasks cycling through `ops`.
    pub fn start_with(
        config: ClientConfig,
        root: &str,
        tasks: usize,
        ops: &'static [LoadOp],
    ) -> Load {
        assert!(!ops.is_empty(), "a load needs at least one op");
        let stop = Arc::new(AtomicBool::new(false));
        let acked = Arc::new(AtomicUsize::new(0));
        let errors = Arc::new(Mutex::new(Vec::new()));
        let tasks = (0..tasks)
            .map(|t| {
                let shared = Shared {
                    stop: stop.clone(),
                    acked: acked.clone(),
                    errors: errors.clone(),
                };
                let dir = format!("{root}/t{t}");
                tokio::spawn(load_task(config.clone(), dir, t as u64, ops, shared))
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

    /// Every error that surfaced to a task so far, as `op path: error`.
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

    /// Stops the tasks after their current operation and drops their
    /// clients (so their leases are no longer renewed); their logs and
    /// every error that surfaced to them.
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

/// What every task of a [`Load`] shares.
struct Shared {
    stop: Arc<AtomicBool>,
    acked: Arc<AtomicUsize>,
    errors: Arc<Mutex<Vec<String>>>,
}

async fn load_task(
    config: ClientConfig,
    dir: String,
    task: u64,
    ops: &'static [LoadOp],
    shared: Shared,
) -> AckLog {
    let mut log = AckLog::default();
    let fail = |op: String, e: &dyn std::fmt::Display| {
        shared
            .errors
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
    // The step before's acknowledged write: its number and path.
    let mut previous: Option<(u64, String)> = None;
    let mut i = 0u64;
    while !shared.stop.load(Ordering::SeqCst) {
        let seed = task * 1_000_000 + i;
        let ok = match ops[i as usize % ops.len()] {
            LoadOp::Write(len) => {
                let path = format!("{dir}/f{i}");
                let len = len(i);
                match write_file(&client, &path, &payload(len, seed)).await {
                    Ok(()) => {
                        log.files.insert(path.clone(), (seed, len));
                        previous = Some((i, path));
                        true
                    }
                    Err(e) => {
                        fail(format!("write {path}"), &e);
                        log.uncertain.insert(path);
                        previous = None;
                        false
                    }
                }
            }
            LoadOp::RenamePrevious => match previous.take() {
                // The write before failed (or was no write): nothing to rename.
                None => false,
                Some((j, src)) => {
                    let dst = format!("{dir}/r{j}");
                    let entry = log.files.remove(&src).expect("previous write is logged");
                    match client.rename(&src, &dst).await {
                        Ok(_) => {
                            log.files.insert(dst, entry);
                            true
                        }
                        Err(e) => {
                            fail(format!("rename {src} {dst}"), &e);
                            log.uncertain.insert(src);
                            log.uncertain.insert(dst);
                            false
                        }
                    }
                }
            },
            LoadOp::Mkdirs => {
                previous = None;
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
            shared.acked.fetch_add(1, Ordering::SeqCst);
        } else {
            // Not at once: while a namenode is down or has no datanodes
            // yet, a task that failed would otherwise spin.
            tokio::time::sleep(Duration::from_millis(50)).await;
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

/// Checks that every acknowledged operation of `logs` (a [`Load`] under
/// `root`) is present exactly once: each file at its final path, complete,
/// with its exact bytes, renamed files not at their old path, each
/// directory there, and nothing else in the tree apart from paths whose
/// call failed.
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
                Some(st)
                    if st.file_type() != FileType::File
                        || st.length != *len as u64
                        || st.under_construction =>
                {
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
