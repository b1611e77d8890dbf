//! Block storage: volumes (one per data dir), the map of finalized
//! replicas, replica files and space accounting.
//!
//! ```text
//! <dir>/in_use.lock                       flock held while a datanode runs here
//! <dir>/datanode_id                       uuid, created once
//! <dir>/current/rbw/blk_<id>              being written
//! <dir>/current/rbw/blk_<id>_<gs>.meta
//! <dir>/current/finalized/blk_<id>        finalized data
//! <dir>/current/finalized/blk_<id>_<gs>.meta
//! <dir>/current/corrupt/blk_<id>          failed verification, never served
//! <dir>/current/corrupt/blk_<id>_<gs>.meta
//! ```
//!
//! A replica the block scanner finds corrupt is moved into `corrupt/`
//! ([`Storage::quarantine`]): out of the served map and out of block
//! reports, kept (and remembered across restarts) until a namenode's
//! Invalidate deletes it.
//!
//! A data directory that cannot be opened at start, or whose write fails
//! with an I/O error other than "no space" ([`Storage::fail_volume`]), is
//! *failed*: out of service for the rest of the process. No new replica
//! goes there, its replicas leave the served map and block reports (they
//! are queued as deleted so namenodes re-replicate them), and heartbeats
//! count it in `failed_volumes`. More failed volumes than
//! `failed_volumes_tolerated` stop the datanode (see `lib.rs`). A *full*
//! volume (less free space than the block needs, or ENOSPC on creating the
//! replica) is only skipped for new replicas while another has room.
//!
//! Every function here does blocking file I/O: call it from
//! `spawn_blocking`. It never deletes a finalized replica except through
//! [`Storage::invalidate`] (a namenode's command); an unfinished one only
//! through that too, or when the write that created it ends before its
//! first byte (nothing can need an empty replica).

mod dir_lock;
pub mod meta;
mod recovery;
pub mod replica;

use std::collections::HashMap;
use std::ffi::CString;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use rfs_proto::common::ExtendedBlock;
use rfs_proto::datanode::StorageReport;
use tokio::sync::watch;
use tracing::{error, info, warn};

use crate::error::{Error, Result};
use dir_lock::{DirLock, LockError};
pub use replica::{ReplicaReader, ReplicaWriter};

const ID_FILE: &str = "datanode_id";
/// How long an Invalidate of an unfinished replica waits for a writer still
/// holding it to stop.
const RBW_WRITER_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// One data directory.
#[derive(Debug)]
pub struct Volume {
    pub root: PathBuf,
    pub finalized: PathBuf,
    pub rbw: PathBuf,
    /// Replicas that failed verification (see [`Storage::quarantine`]).
    pub corrupt: PathBuf,
    /// Why the volume was taken out of service; set once, never cleared.
    failed: OnceLock<String>,
    /// Held for the life of the process: no second datanode runs here.
    lock: OnceLock<DirLock>,
}

impl Volume {
    fn at(root: &Path) -> Volume {
        let current = root.join("current");
        Volume {
            root: root.to_path_buf(),
            finalized: current.join("finalized"),
            rbw: current.join("rbw"),
            corrupt: current.join("corrupt"),
            failed: OnceLock::new(),
            lock: OnceLock::new(),
        }
    }

    /// Creates the root and takes its `in_use.lock`. A directory another
    /// process holds is [`Error::DirInUse`] (the node must not start); any
    /// other failure fails the volume like a failed [`Volume::prepare`].
    fn lock(&self) -> Result<()> {
        let io = |source| Error::DataDir {
            path: self.root.clone(),
            source,
        };
        std::fs::create_dir_all(&self.root).map_err(io)?;
        match DirLock::acquire(&self.root) {
            Ok(lock) => {
                let _ = self.lock.set(lock);
                Ok(())
            }
            Err(LockError::InUse { holder }) => Err(Error::DirInUse {
                path: self.root.clone(),
                holder,
            }),
            Err(LockError::Io(source)) => Err(io(source)),
        }
    }

    /// Creates the directories and proves the volume writable.
    fn prepare(&self) -> Result<()> {
        let v = self;
        for d in [&v.finalized, &v.rbw, &v.corrupt] {
            std::fs::create_dir_all(d).map_err(|source| Error::DataDir {
                path: d.clone(),
                source,
            })?;
        }
        // Prove the volume is writable now rather than at the first block.
        let probe = v.rbw.join(".probe");
        std::fs::write(&probe, b"ok")
            .and_then(|_| std::fs::remove_file(&probe))
            .map_err(|source| Error::DataDir {
                path: v.rbw.clone(),
                source,
            })?;
        Ok(())
    }

    /// Why the volume is out of service, if it is.
    pub fn failure(&self) -> Option<&str> {
        self.failed.get().map(String::as_str)
    }

    pub fn is_failed(&self) -> bool {
        self.failed.get().is_some()
    }

    pub fn data_path(dir: &Path, block_id: u64) -> PathBuf {
        dir.join(format!("blk_{block_id}"))
    }

    pub fn meta_path(dir: &Path, block_id: u64, gen_stamp: u64) -> PathBuf {
        dir.join(format!("blk_{block_id}_{gen_stamp}.meta"))
    }

    /// (total, available) bytes of the file system holding the volume.
    pub fn space(&self) -> std::io::Result<(u64, u64)> {
        statvfs(&self.root)
    }
}

fn statvfs(path: &Path) -> std::io::Result<(u64, u64)> {
    let c = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidInput, "NUL in path"))?;
    // SAFETY: `c` is a valid NUL-terminated path and `st` a properly sized
    // out-parameter that statvfs fully initializes on success.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::statvfs(c.as_ptr(), &mut st) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let frsize = st.f_frsize as u64;
    Ok((
        (st.f_blocks as u64).saturating_mul(frsize),
        (st.f_bavail as u64).saturating_mul(frsize),
    ))
}

/// What the node knows of one finalized replica.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaInfo {
    pub block_id: u64,
    pub gen_stamp: u64,
    pub length: u64,
    pub bytes_per_checksum: u32,
    pub volume: usize,
}

impl ReplicaInfo {
    pub fn extended(&self) -> ExtendedBlock {
        ExtendedBlock {
            block_id: self.block_id,
            generation_stamp: self.gen_stamp,
            num_bytes: self.length,
        }
    }
    fn disk_bytes(&self) -> u64 {
        self.length + meta::meta_len(self.length, self.bytes_per_checksum)
    }
}

/// A replica moved into `corrupt/`: never served, not in block reports,
/// re-reported bad to namenodes until one's Invalidate deletes it.
#[derive(Debug, Clone)]
pub struct CorruptReplica {
    pub info: ReplicaInfo,
    pub reason: String,
    /// Where its files are (in `corrupt/`, or still in `finalized/` if
    /// moving them failed).
    files: [PathBuf; 2],
}

pub struct Storage {
    pub volumes: Vec<Volume>,
    pub datanode_id: String,
    pub fsync: bool,
    replicas: Mutex<HashMap<u64, ReplicaInfo>>,
    corrupt: Mutex<HashMap<u64, CorruptReplica>>,
    /// Blocks with an open writer on this node: the writer's token and the
    /// signal that asks it to stop (pipeline or lease recovery takes over).
    writing: Mutex<HashMap<u64, (u64, watch::Sender<bool>)>>,
    next_writer_token: AtomicU64,
    next_volume: AtomicUsize,
    /// Most failed volumes the node keeps running with.
    pub tolerated: usize,
    /// How many volumes have failed; bumped on every new failure.
    failures: watch::Sender<usize>,
    /// Replicas of failed volumes not yet reported as deleted.
    dropped: Mutex<Vec<ExtendedBlock>>,
}

impl std::fmt::Debug for Storage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Storage")
            .field("datanode_id", &self.datanode_id)
            .field("volumes", &self.volumes)
            .finish()
    }
}

impl Storage {
    /// Opens (creating if needed) every data dir, settles the datanode id
    /// and scans the finalized replicas. A dir that cannot be prepared or
    /// scanned is a failed volume; more than `tolerated` of them (or none
    /// left working) is [`Error::TooManyFailedVolumes`].
    pub fn open(dirs: &[PathBuf], fsync: bool, tolerated: usize) -> Result<Storage> {
        if dirs.is_empty() {
            return Err(Error::Config("no data directory configured".into()));
        }
        let volumes: Vec<Volume> = dirs.iter().map(|d| Volume::at(d)).collect();
        for v in &volumes {
            if let Err(e) = v.lock().and_then(|()| v.prepare()) {
                if matches!(e, Error::DirInUse { .. }) {
                    return Err(e);
                }
                let _ = v.failed.set(e.to_string());
            }
        }
        check_failures(&volumes, tolerated)?;
        let good: Vec<&Volume> = volumes.iter().filter(|v| !v.is_failed()).collect();
        let datanode_id = settle_id(&good)?;
        let mut replicas = HashMap::new();
        let mut corrupt = HashMap::new();
        for (i, v) in volumes.iter().enumerate() {
            if v.is_failed() {
                continue;
            }
            let mut found = HashMap::new();
            if let Err(e) = scan_finalized(i, v, &mut found) {
                let _ = v.failed.set(e.to_string());
                continue;
            }
            for (id, info) in found {
                if let Some(prev) = replicas.get(&id) {
                    let prev: &ReplicaInfo = prev;
                    warn!(
                        "block {id} is finalized in two volumes ({} and {}); serving the first",
                        prev.volume, i
                    );
                    continue;
                }
                replicas.insert(id, info);
            }
            scan_corrupt(i, v, &mut corrupt);
            let rbw = std::fs::read_dir(&v.rbw)
                .map(|d| d.count())
                .unwrap_or_default();
            if rbw > 0 {
                info!(
                    "{}: {rbw} files of replicas being written kept (not served)",
                    v.rbw.display()
                );
            }
        }
        check_failures(&volumes, tolerated)?;
        let failed = volumes.iter().filter(|v| v.is_failed()).count();
        for v in volumes.iter().filter(|v| v.is_failed()) {
            error!(
                "data directory {} failed ({}); out of service",
                v.root.display(),
                v.failure().unwrap_or_default()
            );
        }
        info!(
            "datanode {datanode_id}: {} volumes ({failed} failed, {tolerated} tolerated), {} finalized replicas",
            volumes.len(),
            replicas.len()
        );
        Ok(Storage {
            volumes,
            datanode_id,
            fsync,
            replicas: Mutex::new(replicas),
            corrupt: Mutex::new(corrupt),
            writing: Mutex::new(HashMap::new()),
            next_writer_token: AtomicU64::new(1),
            next_volume: AtomicUsize::new(0),
            tolerated,
            failures: watch::Sender::new(failed),
            dropped: Mutex::new(Vec::new()),
        })
    }

    /// How many volumes are out of service.
    pub fn failed_volumes(&self) -> usize {
        self.volumes.iter().filter(|v| v.is_failed()).count()
    }

    /// Sees the failed-volume count change.
    pub fn watch_failures(&self) -> watch::Receiver<usize> {
        self.failures.subscribe()
    }

    /// Replicas dropped with failed volumes since the last call (to be
    /// reported as deleted).
    pub fn take_dropped(&self) -> Vec<ExtendedBlock> {
        std::mem::take(&mut *self.dropped.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// `TooManyFailedVolumes` when more volumes failed than tolerated.
    pub fn check_failures(&self) -> Result<()> {
        check_failures(&self.volumes, self.tolerated)
    }

    /// Takes volume `i` out of service for `reason`: no new replicas go
    /// there and its replicas stop being served and reported (queued as
    /// deleted). Returns false if it had already failed.
    pub fn fail_volume(&self, i: usize, reason: &str) -> bool {
        let v = &self.volumes[i];
        if v.failed.set(reason.to_string()).is_err() {
            return false;
        }
        // The flag is set before the map lock is taken: a finalize racing
        // with this either sees it (and refuses) or is removed here.
        let gone: Vec<ReplicaInfo> = {
            let mut map = self.map();
            let gone: Vec<_> = map.values().filter(|r| r.volume == i).cloned().collect();
            for r in &gone {
                map.remove(&r.block_id);
            }
            gone
        };
        self.corrupt().retain(|_, c| c.info.volume != i);
        error!(
            "data directory {} failed ({reason}); taken out of service, {} replicas dropped",
            v.root.display(),
            gone.len()
        );
        self.dropped
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend(gone.iter().map(|r| r.extended()));
        self.failures.send_replace(self.failed_volumes());
        true
    }

    fn map(&self) -> MutexGuard<'_, HashMap<u64, ReplicaInfo>> {
        // A panic while holding the lock cannot leave the map half-updated
        // (every update is one insert/remove), so poisoning is ignored.
        self.replicas.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn corrupt(&self) -> MutexGuard<'_, HashMap<u64, CorruptReplica>> {
        self.corrupt.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn writing(&self) -> MutexGuard<'_, HashMap<u64, (u64, watch::Sender<bool>)>> {
        self.writing.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn get(&self, block_id: u64) -> Option<ReplicaInfo> {
        self.map().get(&block_id).cloned()
    }

    /// The finalized replica of `block` with exactly `gen_stamp`; a
    /// quarantined one is `ReplicaCorrupt`, never returned.
    pub fn lookup(&self, block_id: u64, gen_stamp: u64, node: &str) -> Result<ReplicaInfo> {
        match self.get(block_id) {
            Some(r) if r.gen_stamp == gen_stamp => Ok(r),
            _ => Err(match self.corrupt().get(&block_id) {
                Some(c) if c.info.gen_stamp == gen_stamp => Error::ReplicaCorrupt {
                    block: block_id,
                    gen_stamp,
                    node: node.to_string(),
                    reason: c.reason.clone(),
                },
                _ => Error::ReplicaNotFound {
                    block: block_id,
                    gen_stamp,
                    node: node.to_string(),
                },
            }),
        }
    }

    /// Every finalized (served) replica, by block id.
    pub fn finalized_replicas(&self) -> Vec<ReplicaInfo> {
        let mut v: Vec<_> = self.map().values().cloned().collect();
        v.sort_by_key(|r| r.block_id);
        v
    }

    /// Quarantined replicas with why, by block id (re-reported bad after
    /// every full block report, which leaves them out).
    pub fn corrupt_replicas(&self) -> Vec<(ExtendedBlock, String)> {
        let mut v: Vec<_> = self
            .corrupt()
            .values()
            .map(|c| (c.info.extended(), c.reason.clone()))
            .collect();
        v.sort_by_key(|(b, _)| b.block_id);
        v
    }

    /// Stops serving `info` (if it is still the finalized replica of its
    /// block) and moves its files into `corrupt/`. Returns whether it was
    /// quarantined now (false: deleted or replaced meanwhile).
    pub fn quarantine(&self, info: &ReplicaInfo, reason: &str) -> bool {
        let mut map = self.map();
        if map.get(&info.block_id) != Some(info) {
            return false;
        }
        map.remove(&info.block_id);
        // Moved under the map lock: no finalize of the same block id can
        // rename into finalized/ between the check and the move.
        let v = &self.volumes[info.volume];
        let from = [
            Volume::data_path(&v.finalized, info.block_id),
            Volume::meta_path(&v.finalized, info.block_id, info.gen_stamp),
        ];
        let to = [
            Volume::data_path(&v.corrupt, info.block_id),
            Volume::meta_path(&v.corrupt, info.block_id, info.gen_stamp),
        ];
        let mut files = to.clone();
        for (i, (f, t)) in from.iter().zip(&to).enumerate() {
            if let Err(e) = std::fs::rename(f, t) {
                warn!("moving {} to {}: {e}", f.display(), t.display());
                files[i] = f.clone();
            }
        }
        if self.fsync {
            for d in [&v.finalized, &v.corrupt] {
                if let Err(e) = sync_dir(d) {
                    warn!("fsync {}: {e}", d.display());
                }
            }
        }
        drop(map);
        warn!(
            "replica blk_{}_{} is corrupt ({reason}); quarantined, no longer served",
            info.block_id, info.gen_stamp
        );
        self.corrupt().insert(
            info.block_id,
            CorruptReplica {
                info: info.clone(),
                reason: reason.to_string(),
                files,
            },
        );
        true
    }

    pub fn block_report(&self) -> Vec<ExtendedBlock> {
        let mut v: Vec<_> = self.map().values().map(|r| r.extended()).collect();
        v.sort_by_key(|b| b.block_id);
        v
    }

    pub fn storage_report(&self) -> StorageReport {
        let used = self.map().values().map(|r| r.disk_bytes()).sum();
        let mut report = StorageReport {
            used,
            ..Default::default()
        };
        for (i, v) in self.volumes.iter().enumerate() {
            if v.is_failed() {
                continue;
            }
            match v.space() {
                Ok((total, avail)) => {
                    report.capacity += total;
                    report.remaining += avail;
                }
                Err(e) => {
                    self.fail_volume(i, &format!("statvfs: {e}"));
                }
            }
        }
        report.failed_volumes = self.failed_volumes() as u32;
        report
    }

    /// Picks a working volume round robin among those with `required`
    /// bytes free, other than `tried`.
    fn choose_volume(&self, required: u64, tried: &[usize]) -> Result<usize> {
        let n = self.volumes.len();
        let start = self.next_volume.fetch_add(1, Ordering::Relaxed);
        for k in 0..n {
            let i = (start + k) % n;
            if tried.contains(&i) || self.volumes[i].is_failed() {
                continue;
            }
            match self.volumes[i].space() {
                Ok((_, avail)) if avail >= required => return Ok(i),
                Ok(_) => {}
                Err(e) => {
                    self.fail_volume(i, &format!("statvfs: {e}"));
                }
            }
        }
        if self.failed_volumes() == n {
            return Err(Error::TooManyFailedVolumes {
                failed: n,
                tolerated: self.tolerated,
                dirs: failed_dirs(&self.volumes),
            });
        }
        Err(Error::NoSpace {
            datanode: self.datanode_id.clone(),
            detail: format!(" (no volume has {required} bytes free)"),
        })
    }

    /// Creates the rbw files of a new replica.
    pub fn create_rbw(
        self: &Arc<Self>,
        block_id: u64,
        gen_stamp: u64,
        bytes_per_checksum: u32,
        expected_bytes: u64,
        node: &str,
    ) -> Result<ReplicaWriter> {
        if self.get(block_id).is_some() {
            return Err(Error::ReplicaExists {
                block: block_id,
                node: node.to_string(),
            });
        }
        let Some(guard) = self.mark_writing(block_id) else {
            return Err(Error::ReplicaExists {
                block: block_id,
                node: format!("{node} (a write of it is in progress)"),
            });
        };
        self.create_files(guard, gen_stamp, bytes_per_checksum, expected_bytes)
    }

    /// Creates the rbw files for the writer holding `guard`. A volume that
    /// fails or turns out full on creating them is skipped; the next one is
    /// tried.
    fn create_files(
        &self,
        guard: WritingGuard,
        gen_stamp: u64,
        bytes_per_checksum: u32,
        expected_bytes: u64,
    ) -> Result<ReplicaWriter> {
        let block_id = guard.block_id;
        let mut guard = guard;
        let mut tried = Vec::new();
        loop {
            let volume = self.choose_volume(expected_bytes.max(1), &tried)?;
            match ReplicaWriter::create(guard, volume, gen_stamp, bytes_per_checksum) {
                Ok(w) => return Ok(w),
                Err((g, e)) => {
                    let retry = matches!(e, Error::NoSpace { .. } | Error::VolumeFailed { .. });
                    if !retry {
                        return Err(e);
                    }
                    warn!("block {block_id}: {e}; trying another volume");
                    guard = g;
                    tried.push(volume);
                }
            }
        }
    }

    /// Records a replica whose files were just moved into `finalized/`.
    fn insert_finalized(&self, info: ReplicaInfo, node: &str) -> Result<()> {
        let mut map = self.map();
        let v = &self.volumes[info.volume];
        if let Some(why) = v.failure() {
            return Err(Error::VolumeFailed {
                path: v.root.clone(),
                why: why.to_string(),
            });
        }
        if map.contains_key(&info.block_id) {
            return Err(Error::ReplicaExists {
                block: info.block_id,
                node: node.to_string(),
            });
        }
        map.insert(info.block_id, info);
        Ok(())
    }

    /// Deletes the replica of `block_id` if its generation stamp is
    /// `gen_stamp` (0 matches any): the finalized (or quarantined) one, else
    /// an unfinished one ([`Storage::delete_rbw`]). Returns the replica
    /// deleted.
    pub fn invalidate(
        self: &Arc<Self>,
        block_id: u64,
        gen_stamp: u64,
    ) -> Result<Option<ExtendedBlock>> {
        let info = {
            let mut map = self.map();
            match map.get(&block_id) {
                Some(r) if gen_stamp == 0 || r.gen_stamp == gen_stamp => map.remove(&block_id),
                _ => None,
            }
        };
        let (info, files) = match info {
            Some(info) => {
                let dir = &self.volumes[info.volume].finalized;
                let files = [
                    Volume::data_path(dir, block_id),
                    Volume::meta_path(dir, block_id, info.gen_stamp),
                ];
                (info, files)
            }
            None => {
                let mut corrupt = self.corrupt();
                match corrupt.get(&block_id) {
                    Some(c) if gen_stamp == 0 || c.info.gen_stamp == gen_stamp => {
                        match corrupt.remove(&block_id) {
                            Some(c) => (c.info, c.files),
                            None => return Ok(None),
                        }
                    }
                    _ => {
                        drop(corrupt);
                        return self.delete_rbw(block_id, gen_stamp, RBW_WRITER_WAIT);
                    }
                }
            }
        };
        for p in files {
            match std::fs::remove_file(&p) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => warn!("deleting {}: {e}", p.display()),
            }
        }
        info!("deleted replica blk_{block_id}_{}", info.gen_stamp);
        Ok(Some(info.extended()))
    }
}

/// Holds a block's "being written" mark; dropping it releases the mark.
pub struct WritingGuard {
    storage: Arc<Storage>,
    block_id: u64,
    token: u64,
    stop: watch::Receiver<bool>,
}

impl Drop for WritingGuard {
    fn drop(&mut self) {
        let mut writing = self.storage.writing();
        if writing.get(&self.block_id).map(|(t, _)| *t) == Some(self.token) {
            writing.remove(&self.block_id);
        }
    }
}

impl Storage {
    /// Marks `block_id` as being written; `None` if it already is.
    fn mark_writing(self: &Arc<Self>, block_id: u64) -> Option<WritingGuard> {
        let mut writing = self.writing();
        if writing.contains_key(&block_id) {
            return None;
        }
        let token = self.next_writer_token.fetch_add(1, Ordering::Relaxed);
        let (tx, stop) = watch::channel(false);
        writing.insert(block_id, (token, tx));
        Some(WritingGuard {
            storage: self.clone(),
            block_id,
            token,
            stop,
        })
    }
}

/// "dir (why), dir (why)" of the failed volumes, on one line.
fn failed_dirs(volumes: &[Volume]) -> String {
    volumes
        .iter()
        .filter_map(|v| {
            let why = v.failure()?.replace('\n', " ");
            Some(format!("{} ({why})", v.root.display()))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn check_failures(volumes: &[Volume], tolerated: usize) -> Result<()> {
    let failed = volumes.iter().filter(|v| v.is_failed()).count();
    if failed > tolerated || failed == volumes.len() {
        return Err(Error::TooManyFailedVolumes {
            failed,
            tolerated,
            dirs: failed_dirs(volumes),
        });
    }
    Ok(())
}

/// Reads the id every data dir must share, creating it on first start.
fn settle_id(volumes: &[&Volume]) -> Result<String> {
    let mut found: Option<(String, PathBuf)> = None;
    for v in volumes {
        let p = v.root.join(ID_FILE);
        match std::fs::read_to_string(&p) {
            Ok(text) => {
                let id = text.trim().to_string();
                if uuid::Uuid::parse_str(&id).is_err() {
                    return Err(Error::CorruptReplica {
                        path: p,
                        why: format!("{id:?} is not a datanode uuid"),
                    });
                }
                if let Some((other, op)) = &found {
                    if *other != id {
                        return Err(Error::Config(format!(
                            "data dirs belong to different datanodes: {} has {other}, {} has {id}",
                            op.display(),
                            p.display()
                        )));
                    }
                } else {
                    found = Some((id, p));
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => return Err(Error::DataDir { path: p, source }),
        }
    }
    let id = match found {
        Some((id, _)) => id,
        None => uuid::Uuid::new_v4().to_string(),
    };
    for v in volumes {
        let p = v.root.join(ID_FILE);
        if !p.exists() {
            write_atomic(&v.root, &p, id.as_bytes()).map_err(|source| Error::DataDir {
                path: p.clone(),
                source,
            })?;
        }
    }
    Ok(id)
}

fn write_atomic(dir: &Path, path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    sync_dir(dir)
}

pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

enum Name {
    Data(u64),
    Meta(u64, u64),
}

fn parse_name(name: &str) -> Option<Name> {
    let rest = name.strip_prefix("blk_")?;
    let digits = |s: &str| -> Option<u64> {
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        s.parse().ok()
    };
    if let Some(m) = rest.strip_suffix(".meta") {
        let (id, gs) = m.split_once('_')?;
        return Some(Name::Meta(digits(id)?, digits(gs)?));
    }
    Some(Name::Data(digits(rest)?))
}

fn scan_finalized(
    volume: usize,
    v: &Volume,
    replicas: &mut HashMap<u64, ReplicaInfo>,
) -> Result<()> {
    let entries = std::fs::read_dir(&v.finalized).map_err(|source| Error::DataDir {
        path: v.finalized.clone(),
        source,
    })?;
    let mut data: HashMap<u64, u64> = HashMap::new();
    let mut metas: HashMap<u64, Vec<u64>> = HashMap::new();
    for e in entries {
        let e = e.map_err(|source| Error::DataDir {
            path: v.finalized.clone(),
            source,
        })?;
        let name = e.file_name();
        let Some(parsed) = name.to_str().and_then(parse_name) else {
            warn!(
                "{}: ignoring unexpected file {:?}",
                v.finalized.display(),
                name
            );
            continue;
        };
        match parsed {
            Name::Data(id) => match e.metadata() {
                Ok(m) => {
                    data.insert(id, m.len());
                }
                Err(err) => warn!("{}: {err}", e.path().display()),
            },
            Name::Meta(id, gs) => metas.entry(id).or_default().push(gs),
        }
    }
    for (id, len) in data {
        let data_path = Volume::data_path(&v.finalized, id);
        let gss = metas.remove(&id).unwrap_or_default();
        let gs = match gss.as_slice() {
            [gs] => *gs,
            [] => {
                warn!("{}: no .meta file; replica not served", data_path.display());
                continue;
            }
            many => {
                warn!(
                    "{}: several .meta files (stamps {many:?}); replica not served",
                    data_path.display()
                );
                continue;
            }
        };
        let meta_path = Volume::meta_path(&v.finalized, id, gs);
        match check_meta(&meta_path, len) {
            Ok(bpc) => {
                let info = ReplicaInfo {
                    block_id: id,
                    gen_stamp: gs,
                    length: len,
                    bytes_per_checksum: bpc,
                    volume,
                };
                replicas.insert(id, info);
            }
            Err(why) => warn!("{}: {why}; replica not served", meta_path.display()),
        }
    }
    for (id, _) in metas {
        warn!(
            "{}: .meta without data file for block {id}; ignored",
            v.finalized.display()
        );
    }
    Ok(())
}

/// Rebuilds the quarantined replicas of `corrupt/` (best effort: what
/// cannot be parsed is kept on disk and only logged).
fn scan_corrupt(volume: usize, v: &Volume, corrupt: &mut HashMap<u64, CorruptReplica>) {
    let entries = match std::fs::read_dir(&v.corrupt) {
        Ok(e) => e,
        Err(e) => {
            warn!("{}: {e}", v.corrupt.display());
            return;
        }
    };
    let mut data: HashMap<u64, u64> = HashMap::new();
    let mut metas: HashMap<u64, u64> = HashMap::new();
    for e in entries.flatten() {
        let len = e.metadata().map(|m| m.len()).unwrap_or_default();
        match e.file_name().to_str().and_then(parse_name) {
            Some(Name::Data(id)) => {
                data.insert(id, len);
            }
            Some(Name::Meta(id, gs)) => {
                metas.insert(id, gs);
            }
            None => {}
        }
    }
    for (id, length) in data {
        let Some(gs) = metas.get(&id).copied() else {
            warn!(
                "{}: corrupt replica of block {id} has no .meta; kept, not reported",
                v.corrupt.display()
            );
            continue;
        };
        let meta = Volume::meta_path(&v.corrupt, id, gs);
        let bytes_per_checksum = check_meta(&meta, length).unwrap_or_default();
        corrupt.entry(id).or_insert_with(|| CorruptReplica {
            info: ReplicaInfo {
                block_id: id,
                gen_stamp: gs,
                length,
                bytes_per_checksum,
                volume,
            },
            reason: "quarantined as corrupt before a restart".into(),
            files: [Volume::data_path(&v.corrupt, id), meta],
        });
    }
}

fn check_meta(path: &Path, data_len: u64) -> std::result::Result<u32, String> {
    use std::io::Read;
    let mut f = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let mut h = [0u8; meta::HEADER_LEN as usize];
    f.read_exact(&mut h)
        .map_err(|e| format!("reading header: {e}"))?;
    let bpc = meta::decode_header(&h)?;
    let len = f.metadata().map_err(|e| e.to_string())?.len();
    let want = meta::meta_len(data_len, bpc);
    if len != want {
        return Err(format!(
            "meta is {len} bytes but {data_len} data bytes need {want}"
        ));
    }
    Ok(bpc)
}
