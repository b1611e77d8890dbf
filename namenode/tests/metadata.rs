//! The namenode's metadata path without sockets (a raft group of one):
//! group commit, restart without double apply, the retry cache, renames
//! that replace their destination, and random namespace ops against a
//! model, with restarts, checking each directory's kept totals against a
//! count of its subtree.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use proptest::prelude::*;
use rfs_namenode::checkpoint::Pairs;
use rfs_namenode::leases::RECOVERY_HOLDER;
use rfs_namenode::meta_op::{CallKey, MetaOp, MetaResult, Proposal};
use rfs_namenode::namespace::{counter, BlockMeta, FileMeta, Namespace, Totals};
use rfs_namenode::raft::RaftGroup;
use rfs_namenode::recovery_check::{self, Recovery};
use rfs_namenode::{Config, NamenodeError};

/// One namenode's metadata: its raft group (of one) and namespace.
struct Meta {
    group: RaftGroup,
    ns: Namespace,
}

impl Meta {
    async fn open(dir: &Path) -> Meta {
        let config = Config {
            name_dir: dir.to_path_buf(),
            ..Config::default()
        };
        let (group, ns) =
            rfs_namenode::open_metadata(&config, &tokio::runtime::Handle::current()).unwrap();
        group.handle.wait_leader().await.unwrap();
        Meta { group, ns }
    }

    async fn submit(&self, op: MetaOp) -> Result<MetaResult, NamenodeError> {
        self.group.handle.submit(Proposal::new(op)).await
    }

    /// Submits `op` as call `call` of client `client` (retry-cached).
    async fn submit_as(
        &self,
        client: &str,
        call: u64,
        op: MetaOp,
    ) -> Result<MetaResult, NamenodeError> {
        self.submit_call(client, call, 0, op).await
    }

    /// [`Meta::submit_as`] with the client saying it had the answers of
    /// every call below `answered_below`.
    async fn submit_call(
        &self,
        client: &str,
        call: u64,
        answered_below: u64,
        op: MetaOp,
    ) -> Result<MetaResult, NamenodeError> {
        let key = CallKey {
            client: client.into(),
            call,
            answered_below,
        };
        let proposal = Proposal::new(op).with_call(Some(key));
        self.group.handle.submit(proposal).await
    }

    fn close(mut self) {
        self.group.stop();
    }
}

fn mkdirs(path: &str) -> MetaOp {
    MetaOp::Mkdirs {
        path: path.into(),
        create_parent: true,
        owner: "u".into(),
        group: "g".into(),
        mode: 0o755,
        now_ms: 1,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_submits_share_fsyncs() {
    let dir = tempfile::tempdir().unwrap();
    let meta = Arc::new(Meta::open(dir.path()).await);
    let before = meta.group.handle.status().syncs;
    let n = 400;
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let meta = meta.clone();
            tokio::spawn(async move { meta.submit(mkdirs(&format!("/d{i}"))).await })
        })
        .collect();
    for t in tasks {
        assert_eq!(
            t.await.unwrap().unwrap(),
            MetaResult::Mkdirs { created: true }
        );
    }
    let fsyncs = meta.group.handle.status().syncs - before;
    assert!(
        fsyncs < n / 2,
        "{fsyncs} fsyncs for {n} concurrent ops: group commit is not batching"
    );
    assert_eq!(meta.ns.children(1, "", 10_000).unwrap().0.len(), n as usize);
    Arc::into_inner(meta).unwrap().close();
}

#[tokio::test]
async fn acknowledged_ops_survive_restarts_and_are_applied_once() {
    let dir = tempfile::tempdir().unwrap();
    let meta = Meta::open(dir.path()).await;
    for p in ["/a/b", "/c", "/a/b"] {
        meta.submit(mkdirs(p)).await.unwrap();
    }
    let applied = meta.ns.counter(counter::APPLIED_INDEX).unwrap();
    let next_inode = meta.ns.counter(counter::NEXT_INODE).unwrap();
    meta.close();
    for _ in 0..2 {
        let meta = Meta::open(dir.path()).await;
        assert!(meta.ns.lookup("/a/b").unwrap().is_some());
        assert!(meta.ns.lookup("/c").unwrap().is_some());
        assert_eq!(meta.ns.children(1, "", 100).unwrap().0.len(), 2);
        assert_eq!(
            meta.ns.counter(counter::NEXT_INODE).unwrap(),
            next_inode,
            "an op was applied again on restart"
        );
        assert!(meta.ns.counter(counter::APPLIED_INDEX).unwrap() > applied);
        meta.close();
    }
    // New ops continue after a reopen.
    let meta = Meta::open(dir.path()).await;
    meta.submit(mkdirs("/d")).await.unwrap();
    meta.close();
    let meta = Meta::open(dir.path()).await;
    assert!(meta.ns.lookup("/d").unwrap().is_some());
    meta.close();
}

fn create(path: &str, client: &str) -> MetaOp {
    create_with(path, client, false, None)
}

/// A create with overwrite that takes the file over from `holder`.
fn take_over(path: &str, client: &str, holder: &str) -> MetaOp {
    create_with(path, client, true, Some(holder))
}

fn create_with(path: &str, client: &str, overwrite: bool, take_over_from: Option<&str>) -> MetaOp {
    MetaOp::Create {
        path: path.into(),
        client_id: client.into(),
        overwrite,
        replication: 1,
        block_size: 1024,
        mode: 0o644,
        create_parent: false,
        owner: "u".into(),
        group: "g".into(),
        now_ms: 1,
        take_over_from: take_over_from.map(str::to_string),
    }
}

#[tokio::test]
async fn a_retried_call_gets_its_recorded_result_and_applies_once() {
    let dir = tempfile::tempdir().unwrap();
    let meta = Meta::open(dir.path()).await;
    let first = meta.submit_as("c1", 1, create("/f", "c1")).await.unwrap();
    let next_inode = meta.ns.counter(counter::NEXT_INODE).unwrap();
    assert_eq!(
        meta.submit_as("c1", 1, create("/f", "c1")).await.unwrap(),
        first
    );
    assert_eq!(meta.ns.counter(counter::NEXT_INODE).unwrap(), next_inode);
    // A new call id is a new call: now the file exists.
    let again = meta
        .submit_as("c1", 2, create("/f", "c1"))
        .await
        .unwrap_err();
    assert!(matches!(again, NamenodeError::AlreadyExists(_)), "{again}");
    // Its error is recorded too, and survives a restart with the result.
    meta.close();
    let meta = Meta::open(dir.path()).await;
    assert_eq!(
        meta.submit_as("c1", 1, create("/f", "c1")).await.unwrap(),
        first
    );
    assert!(matches!(
        meta.submit_as("c1", 2, create("/f", "c1"))
            .await
            .unwrap_err(),
        NamenodeError::AlreadyExists(_)
    ));
    // Expiry forgets old entries: the same call id then applies afresh.
    let expire = MetaOp::ExpireRetryCache {
        before_ms: u64::MAX,
    };
    assert_eq!(
        meta.submit(expire).await.unwrap(),
        MetaResult::RetryCacheExpired { removed: 2 }
    );
    assert!(matches!(
        meta.submit_as("c1", 1, create("/f", "c1"))
            .await
            .unwrap_err(),
        NamenodeError::AlreadyExists(_)
    ));
    meta.close();
}

#[tokio::test]
async fn the_retry_cache_is_swept_in_bounded_steps_that_the_leader_carries_on() {
    let dir = tempfile::tempdir().unwrap();
    let meta = Meta::open(dir.path()).await;
    let key = |client: &str| CallKey {
        client: client.into(),
        call: 1,
        answered_below: 0,
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    // Old calls (recorded at 100 ms after the epoch) and fresh ones,
    // interleaved in key order.
    let clients: Vec<String> = (0..8).map(|i| format!("c{i}")).collect();
    for (i, c) in clients.iter().enumerate() {
        let mut p = Proposal::new(mkdirs(&format!("/d{i}"))).with_call(Some(key(c)));
        p.now_ms = if i % 4 == 3 { now } else { 100 };
        meta.group.handle.submit(p).await.unwrap();
    }
    // One step looks at no more than its limit and says where it stopped.
    let step = MetaOp::SweepRetryCache {
        before_ms: 1000,
        after: Vec::new(),
        limit: 3,
    };
    let MetaResult::RetryCacheSwept { removed, next } = meta.submit(step).await.unwrap() else {
        panic!("not a sweep result");
    };
    assert_eq!(removed, 3, "c0, c1, c2 are old");
    assert_eq!(next, Some(rfs_namenode::apply::retry_key(&key("c2"))));
    for c in &clients[..3] {
        assert!(meta.ns.retry_cached(&key(c)).unwrap().is_none(), "{c}");
    }
    assert!(
        meta.ns.retry_cached(&key("c4")).unwrap().is_some(),
        "past the limit"
    );
    // The leader follows the applied step with its own, one per tick,
    // until the end: every old entry goes, the fresh ones stay.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while ["c4", "c5", "c6"]
        .iter()
        .any(|c| meta.ns.retry_cached(&key(c)).unwrap().is_some())
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the leader did not carry the sweep on"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    for c in ["c3", "c7"] {
        assert!(
            meta.ns.retry_cached(&key(c)).unwrap().is_some(),
            "{c} is fresh"
        );
    }
    meta.close();
}

/// Creates `path` for writer `w` with one block of `len` bytes and closes it.
async fn closed_file(log: &Meta, path: &str, len: u64) -> BlockMeta {
    log.submit(create(path, "w")).await.unwrap();
    let b = add_block(log, path, None).await;
    let last = BlockMeta { len, ..b };
    let done = MetaOp::Complete {
        path: path.into(),
        client_id: "w".into(),
        last: Some(last),
        now_ms: 2,
    };
    log.submit(done).await.unwrap();
    last
}

#[tokio::test]
async fn an_overwriting_rename_replaces_in_one_entry_and_a_retry_gets_its_first_answer() {
    let dir = tempfile::tempdir().unwrap();
    let log = Meta::open(dir.path()).await;
    let old = closed_file(&log, "/f", 10).await;
    let new = closed_file(&log, "/f._COPYING_", 20).await;
    let rename = |src: &str, dst: &str| MetaOp::RenameOverwrite {
        src: src.into(),
        dst: dst.into(),
        now_ms: 3,
    };
    let first = log
        .submit_as("w", 1, rename("/f._COPYING_", "/f"))
        .await
        .unwrap();
    assert_eq!(
        first,
        MetaResult::RenamedOverwriting {
            final_path: "/f".into(),
            replaced_blocks: vec![old],
        }
    );
    assert_eq!(file_of(&log, "/f").1.blocks, vec![new]);
    assert!(log.ns.lookup("/f._COPYING_").unwrap().is_none());
    assert!(
        log.ns.block_owner(old.id).unwrap().is_none(),
        "the replaced file's blocks left the namespace"
    );
    // A retry of the same call gets the same answer and moves nothing,
    // though a new source stands ready.
    let again = closed_file(&log, "/f._COPYING_", 30).await;
    assert_eq!(
        log.submit_as("w", 1, rename("/f._COPYING_", "/f"))
            .await
            .unwrap(),
        first
    );
    assert_eq!(file_of(&log, "/f").1.blocks, vec![new]);
    assert_eq!(file_of(&log, "/f._COPYING_").1.blocks, vec![again]);

    // Refused, changing nothing: a file still being written, a directory
    // under a file or the reverse, a directory with entries, itself.
    log.submit(create("/open", "x")).await.unwrap();
    log.submit(mkdirs("/e")).await.unwrap();
    log.submit(mkdirs("/full/x")).await.unwrap();
    for (src, dst, want) in [
        ("/f", "/open", "/open: file is being written by x"),
        ("/f", "/e", "/e: Is a directory"),
        ("/e", "/f", "/f: Not a directory"),
        ("/e", "/full", "/full: Directory is not empty"),
        ("/f", "/f", "cannot replace /f with itself"),
        ("/full", "/full/x/y", "own subtree"),
        ("/f", "/nodir/f", "/nodir: No such file or directory"),
    ] {
        let e = log.submit(rename(src, dst)).await.unwrap_err();
        assert!(e.to_string().contains(want), "{src} over {dst}: {e}");
    }
    assert_eq!(file_of(&log, "/f").1.blocks, vec![new]);
    // An empty directory gives way to a directory.
    log.submit(mkdirs("/d/sub")).await.unwrap();
    log.submit(rename("/d", "/e")).await.unwrap();
    assert!(log.ns.lookup("/e/sub").unwrap().is_some());
    log.close();
}

/// What the namespace should hold: path → is directory.
#[derive(Default, Debug)]
struct Model(BTreeMap<String, bool>);

fn parent(p: &str) -> &str {
    match p.rfind('/') {
        Some(0) => "/",
        Some(i) => &p[..i],
        None => "/",
    }
}

fn ancestors(p: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = parent(p);
    while cur != "/" {
        out.push(cur.to_string());
        cur = parent(cur);
    }
    out.reverse();
    out
}

impl Model {
    fn is_dir(&self, p: &str) -> Option<bool> {
        if p == "/" {
            Some(true)
        } else {
            self.0.get(p).copied()
        }
    }

    fn blocked(&self, p: &str) -> bool {
        ancestors(p).iter().any(|a| self.is_dir(a) == Some(false))
    }

    fn mkdirs(&mut self, p: &str) -> bool {
        if self.blocked(p) || self.is_dir(p) == Some(false) {
            return false;
        }
        for a in ancestors(p) {
            self.0.insert(a, true);
        }
        self.0.insert(p.into(), true);
        true
    }

    fn create(&mut self, p: &str) -> bool {
        if self.blocked(p) || self.is_dir(p).is_some() {
            return false;
        }
        for a in ancestors(p) {
            self.0.insert(a, true);
        }
        self.0.insert(p.into(), false);
        true
    }

    /// `create` with overwrite: a file in the way is replaced.
    fn create_overwrite(&mut self, p: &str) -> bool {
        if self.is_dir(p) == Some(false) {
            return !self.blocked(p);
        }
        self.create(p)
    }

    fn set_replication(&self, p: &str) -> bool {
        !self.blocked(p) && self.is_dir(p) == Some(false)
    }

    fn delete(&mut self, p: &str) -> bool {
        if self.blocked(p) || self.is_dir(p).is_none() {
            return false;
        }
        let prefix = format!("{p}/");
        self.0.retain(|k, _| k != p && !k.starts_with(&prefix));
        true
    }

    fn rename(&mut self, src: &str, dst: &str) -> bool {
        if self.blocked(src) || self.is_dir(src).is_none() || self.blocked(dst) {
            return false;
        }
        let fin = match self.is_dir(dst) {
            Some(_) if dst == src => return true,
            Some(false) => return false,
            Some(true) => format!(
                "{}/{}",
                if dst == "/" { "" } else { dst },
                &src[src.rfind('/').unwrap() + 1..]
            ),
            None => dst.to_string(),
        };
        if fin == src {
            return true; // into its own parent: already there
        }
        if fin.starts_with(&format!("{src}/"))
            || self.is_dir(&fin).is_some()
            || self.is_dir(parent(&fin)) != Some(true)
        {
            return false;
        }
        self.move_subtree(src, &fin);
        true
    }

    /// Moves `src` and everything under it to `dst`.
    fn move_subtree(&mut self, src: &str, dst: &str) {
        let prefix = format!("{src}/");
        let moved: Vec<(String, bool)> = self
            .0
            .iter()
            .filter(|(k, _)| *k == src || k.starts_with(&prefix))
            .map(|(k, v)| (k.clone(), *v))
            .collect();
        for (k, v) in moved {
            self.0.remove(&k);
            self.0.insert(format!("{dst}{}", &k[src.len()..]), v);
        }
    }

    /// HDFS rename2 with OVERWRITE: `dst` is the final path; a file
    /// replaces a file, a directory an empty directory.
    fn rename_overwrite(&mut self, src: &str, dst: &str) -> bool {
        if self.blocked(src) || self.is_dir(src).is_none() || self.blocked(dst) {
            return false;
        }
        if dst == src
            || dst.starts_with(&format!("{src}/"))
            || self.is_dir(parent(dst)) != Some(true)
        {
            return false;
        }
        let src_dir = self.is_dir(src) == Some(true);
        let dst_prefix = format!("{dst}/");
        match self.is_dir(dst) {
            None => {}
            Some(dst_dir) if dst_dir != src_dir => return false,
            Some(true) if self.0.keys().any(|k| k.starts_with(&dst_prefix)) => return false,
            Some(_) => {
                self.0.remove(dst);
            }
        }
        self.move_subtree(src, dst);
        true
    }
}

#[derive(Debug, Clone)]
enum Step {
    Mkdirs(String),
    Create(String),
    /// A file of blocks of these lengths, written and closed; with
    /// `overwrite` it replaces a file there; with `abandon` a last block
    /// is added and abandoned before the close.
    Write {
        path: String,
        lens: Vec<u64>,
        replication: u32,
        overwrite: bool,
        abandon: bool,
    },
    SetReplication(String, u32),
    /// A file left open with one block of `len` bytes acknowledged by a
    /// pipeline recovery, then closed by lease recovery: see [`Recover`].
    Recover(String, u64, Recover),
    /// `rm -r`; with a step, as the client service proposes it
    /// ([`MetaOp::DeleteInSteps`]): a subtree of more inodes than that is
    /// detached, and freed by [`Step::Reclaim`] steps.
    Delete(String, Option<u32>),
    /// One step freeing at most this many detached inodes.
    Reclaim(u32),
    Rename(String, String),
    RenameOverwrite(String, String),
    Restart,
    /// A checkpoint now (the background writer's job).
    Checkpoint,
    /// The deltas folded into a new image now (the background writer's
    /// job once they have grown).
    Merge,
    /// kill -9: no final checkpoint; reopening replays the log since the
    /// last one.
    Crash,
}

/// How [`Step::Recover`] closes the file.
#[derive(Debug, Clone, Copy)]
enum Recover {
    /// The block's recovery commits a new length.
    Commit(u64),
    /// The block's recovery deletes it.
    DeleteBlock,
    /// Nothing recorded: the lease recovery drops the last block at once.
    DropLast,
}

fn arb_recover() -> impl Strategy<Value = Recover> {
    prop_oneof![
        (0..4096u64).prop_map(Recover::Commit),
        Just(Recover::DeleteBlock),
        Just(Recover::DropLast),
    ]
}

fn arb_path() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(vec!["a", "b", "c"]), 1..4)
        .prop_map(|c| format!("/{}", c.join("/")))
}

fn arb_step() -> impl Strategy<Value = Step> {
    prop_oneof![
        3 => arb_path().prop_map(Step::Mkdirs),
        3 => arb_path().prop_map(Step::Create),
        3 => (
            arb_path(),
            prop::collection::vec(0..4096u64, 0..3),
            1..4u32,
            any::<bool>(),
            any::<bool>(),
        )
            .prop_map(|(path, lens, replication, overwrite, abandon)| Step::Write {
                path,
                lens,
                replication,
                overwrite,
                abandon,
            }),
        2 => (arb_path(), 1..4u32).prop_map(|(p, r)| Step::SetReplication(p, r)),
        2 => (arb_path(), 0..4096u64, arb_recover()).prop_map(|(p, l, how)| Step::Recover(p, l, how)),
        2 => (arb_path(), prop::option::of(1..4u32)).prop_map(|(p, step)| Step::Delete(p, step)),
        2 => (1..4u32).prop_map(Step::Reclaim),
        3 => (arb_path(), arb_path()).prop_map(|(a, b)| Step::Rename(a, b)),
        2 => (arb_path(), arb_path()).prop_map(|(a, b)| Step::RenameOverwrite(a, b)),
        1 => Just(Step::Restart),
        2 => Just(Step::Checkpoint),
        2 => Just(Step::Merge),
        2 => Just(Step::Crash),
    ]
}

fn snapshot(ns: &Namespace) -> BTreeMap<String, bool> {
    let root = ns.root().unwrap();
    ns.subtree(&root)
        .unwrap()
        .into_iter()
        .skip(1)
        .map(|i| (ns.path_of(&i).unwrap(), i.is_dir()))
        .collect()
}

/// The state keys the checkpoint files hold, sorted.
fn checkpoint_pairs(ns: &Namespace) -> Pairs {
    let (at, pairs) = ns.store().checkpoint_pairs().unwrap();
    assert_eq!(at, ns.checkpointed());
    assert!(
        pairs.windows(2).all(|w| w[0].0 < w[1].0),
        "sorted, each key once"
    );
    pairs
}

/// The in-memory state as checkpoint pairs, sorted.
fn memory_pairs(ns: &Namespace) -> Pairs {
    let mut pairs = ns.snapshot().1;
    pairs.sort();
    pairs
}

/// Every directory's kept totals (as `content_summary` reads them) against
/// a count of its subtree, and the same for each file; no directory, live
/// or gone, whose kept totals differ from a recount; and every link in its
/// directory's sorted list of children.
fn check_totals(ns: &Namespace, after: &str) -> Result<(), TestCaseError> {
    prop_assert_eq!(ns.totals_mismatch(), None, "after {}", after);
    // Every link in its directory's sorted list: apply keeps them sound.
    prop_assert_eq!(ns.unsorted_links(), 0, "links kept by name after {}", after);
    prop_assert_eq!(
        ns.detached_mismatch(),
        None,
        "detached roots after {}",
        after
    );
    let root = ns.root().unwrap();
    for node in ns.subtree(&root).unwrap() {
        let mut want = Totals::default();
        for n in ns.subtree(&node).unwrap() {
            match &n.file {
                Some(f) => {
                    want.files += 1;
                    want.bytes += f.length();
                    want.space_consumed += f.length() * u64::from(f.replication);
                }
                None => want.dirs += 1,
            }
        }
        let path = ns.path_of(&node).unwrap();
        prop_assert_eq!(
            ns.content_summary(&path).unwrap(),
            want,
            "{} after {}",
            path,
            after
        );
    }
    Ok(())
}

/// Submits `op`, then checks the totals.
async fn submit_checked(
    log: &Meta,
    op: MetaOp,
) -> Result<Result<MetaResult, NamenodeError>, TestCaseError> {
    let what = format!("{op:?}");
    let result = log.submit(op).await;
    check_totals(&log.ns, &what)?;
    Ok(result)
}

/// The model test's create of `path` by writer "c", parents made as
/// needed.
fn model_create(path: &str, replication: u32, overwrite: bool) -> MetaOp {
    MetaOp::Create {
        path: path.into(),
        client_id: "c".into(),
        overwrite,
        replication,
        block_size: 1 << 20,
        mode: 0o644,
        create_parent: true,
        owner: "u".into(),
        group: "g".into(),
        now_ms: 1,
        take_over_from: None,
    }
}

/// What [`write_open`] left.
enum Opened {
    /// The create was refused.
    Refused,
    /// Open, with its last block and that block's length (none when no
    /// block was asked for).
    Written(Option<BlockMeta>),
    /// Open, holding the first block its create handed out, never written.
    Unwritten(BlockMeta),
}

/// Creates `path` for writer "c" (replacing a file there when
/// `overwrite`) and writes blocks of `lens`, leaving it open.
async fn write_open(
    log: &Meta,
    path: &str,
    lens: &[u64],
    replication: u32,
    overwrite: bool,
) -> Result<Opened, TestCaseError> {
    let op = model_create(path, replication, overwrite);
    // Paths of even length are created with their first block in the same
    // entry (`CreateWithBlock`), as the client library does; the others
    // get every block from `AddBlock`.
    let mut lens = lens.iter().copied();
    let mut last = None;
    if path.len().is_multiple_of(2) {
        let op = MetaOp::CreateWithBlock {
            create: Box::new(op),
        };
        match submit_checked(log, op).await? {
            Err(_) => return Ok(Opened::Refused),
            Ok(MetaResult::CreatedWithBlock { block, .. }) => match lens.next() {
                Some(len) => last = Some(BlockMeta { len, ..block }),
                None => return Ok(Opened::Unwritten(block)),
            },
            Ok(other) => panic!("create with block: {other:?}"),
        }
    } else if submit_checked(log, op).await?.is_err() {
        return Ok(Opened::Refused);
    }
    for len in lens {
        let op = MetaOp::AddBlock {
            path: path.into(),
            client_id: "c".into(),
            previous: last,
            now_ms: 2,
        };
        match submit_checked(log, op).await?.unwrap() {
            MetaResult::BlockAdded { block, .. } => last = Some(BlockMeta { len, ..block }),
            other => panic!("add_block: {other:?}"),
        }
    }
    Ok(Opened::Written(last))
}

/// Steps [`Step::Write`]: returns whether the create succeeded.
async fn write_closed(
    log: &Meta,
    path: &str,
    lens: &[u64],
    replication: u32,
    overwrite: bool,
    abandon: bool,
) -> Result<bool, TestCaseError> {
    let mut last = match write_open(log, path, lens, replication, overwrite).await? {
        Opened::Refused => return Ok(false),
        Opened::Written(last) => last,
        // Closed as the client closes an empty file: dropping the block.
        Opened::Unwritten(block) => {
            let done = MetaOp::CompleteDroppingBlock {
                path: path.into(),
                client_id: "c".into(),
                block_id: block.id,
                now_ms: 3,
            };
            submit_checked(log, done).await?.unwrap();
            return Ok(true);
        }
    };
    if abandon {
        let op = MetaOp::AddBlock {
            path: path.into(),
            client_id: "c".into(),
            previous: last,
            now_ms: 2,
        };
        let MetaResult::BlockAdded { block, .. } = submit_checked(log, op).await?.unwrap() else {
            panic!("add_block")
        };
        let op = MetaOp::AbandonBlock {
            path: path.into(),
            client_id: "c".into(),
            block_id: block.id,
        };
        submit_checked(log, op).await?.unwrap();
    }
    let done = MetaOp::Complete {
        path: path.into(),
        client_id: "c".into(),
        last: last.take(),
        now_ms: 3,
    };
    submit_checked(log, done).await?.unwrap();
    Ok(true)
}

/// Steps [`Step::Recover`]: returns whether the create succeeded.
async fn write_recovered(
    log: &Meta,
    path: &str,
    len: u64,
    how: Recover,
) -> Result<bool, TestCaseError> {
    let block = match write_open(log, path, &[len], 3, false).await? {
        Opened::Refused => return Ok(false),
        Opened::Written(Some(block)) => block,
        Opened::Written(None) | Opened::Unwritten(_) => unreachable!("one block was written"),
    };
    if !matches!(how, Recover::DropLast) {
        let op = MetaOp::RecoverPipeline {
            path: path.into(),
            client_id: "c".into(),
            block_id: block.id,
            gen_stamp: block.gen_stamp,
            acked_len: len,
        };
        submit_checked(log, op).await?.unwrap();
    }
    let inode_id = log.ns.lookup(path).unwrap().unwrap().id;
    let op = MetaOp::RecoverLease {
        inode_id,
        holder: "c".into(),
        drop_last: matches!(how, Recover::DropLast),
        now_ms: 4,
    };
    match submit_checked(log, op).await?.unwrap() {
        MetaResult::LeaseRecoveryStarted { block, .. } => {
            let (block, delete_block) = match how {
                Recover::Commit(len) => (BlockMeta { len, ..block }, false),
                _ => (block, true),
            };
            let op = MetaOp::CommitBlockSync {
                block,
                delete_block,
                now_ms: 5,
            };
            submit_checked(log, op).await?.unwrap();
        }
        MetaResult::LeaseRecovered { .. } => {}
        other => panic!("recover_lease: {other:?}"),
    }
    prop_assert!(log
        .ns
        .lookup(path)
        .unwrap()
        .unwrap()
        .file
        .unwrap()
        .writer
        .is_none());
    Ok(true)
}

async fn run_steps(steps: Vec<Step>) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Meta::open(dir.path()).await;
    let mut model = Model::default();
    for step in steps {
        let (want, got) = match &step {
            Step::Restart => {
                log.close();
                log = Meta::open(dir.path()).await;
                check_totals(&log.ns, "a restart")?;
                continue;
            }
            Step::Crash => {
                log.group.halt();
                drop(log);
                log = Meta::open(dir.path()).await;
                prop_assert_eq!(snapshot(&log.ns), model.0.clone(), "after a crash");
                check_totals(&log.ns, "a crash")?;
                continue;
            }
            Step::Checkpoint => {
                let at = log.ns.checkpoint().unwrap();
                prop_assert_eq!(at, log.ns.counter(counter::APPLIED_INDEX).unwrap());
                prop_assert_eq!(checkpoint_pairs(&log.ns), memory_pairs(&log.ns));
                continue;
            }
            Step::Merge => {
                let before = checkpoint_pairs(&log.ns);
                log.ns.store().merge().unwrap();
                prop_assert_eq!(
                    checkpoint_pairs(&log.ns),
                    before,
                    "a merge changed the state"
                );
                continue;
            }
            Step::Mkdirs(p) => (model.mkdirs(p), log.submit(mkdirs(p)).await.is_ok()),
            Step::Create(p) => {
                let ok = log.submit(model_create(p, 3, false)).await.is_ok();
                if ok {
                    let done = MetaOp::Complete {
                        path: p.clone(),
                        client_id: "c".into(),
                        last: None,
                        now_ms: 2,
                    };
                    log.submit(done).await.unwrap();
                }
                (model.create(p), ok)
            }
            Step::Write {
                path,
                lens,
                replication,
                overwrite,
                abandon,
            } => {
                let want = if *overwrite {
                    model.create_overwrite(path)
                } else {
                    model.create(path)
                };
                let ok = write_closed(&log, path, lens, *replication, *overwrite, *abandon).await?;
                (want, ok)
            }
            Step::SetReplication(p, r) => {
                let op = MetaOp::SetReplication {
                    path: p.clone(),
                    replication: *r,
                };
                (model.set_replication(p), log.submit(op).await.is_ok())
            }
            Step::Recover(p, len, how) => {
                (model.create(p), write_recovered(&log, p, *len, *how).await?)
            }
            Step::Delete(p, step) => {
                let op = match step {
                    None => MetaOp::Delete {
                        path: p.clone(),
                        recursive: true,
                        now_ms: 1,
                    },
                    Some(step) => MetaOp::DeleteInSteps {
                        path: p.clone(),
                        recursive: true,
                        now_ms: 1,
                        step: *step,
                    },
                };
                (model.delete(p), log.submit(op).await.is_ok())
            }
            Step::Reclaim(limit) => {
                let before = inode_count(&log.ns);
                match log.submit(MetaOp::Reclaim { limit: *limit }).await {
                    Ok(MetaResult::Reclaimed { freed, more, .. }) => {
                        prop_assert!(freed <= u64::from(*limit));
                        prop_assert_eq!(inode_count(&log.ns), before - freed as usize);
                        prop_assert_eq!(more, log.ns.detached() > 0);
                    }
                    other => panic!("reclaim: {other:?}"),
                }
                (true, true)
            }
            Step::Rename(a, b) => (
                model.rename(a, b),
                log.submit(MetaOp::Rename {
                    src: a.clone(),
                    dst: b.clone(),
                    now_ms: 1,
                })
                .await
                .is_ok(),
            ),
            Step::RenameOverwrite(a, b) => (
                model.rename_overwrite(a, b),
                log.submit(MetaOp::RenameOverwrite {
                    src: a.clone(),
                    dst: b.clone(),
                    now_ms: 1,
                })
                .await
                .is_ok(),
            ),
        };
        prop_assert_eq!(
            want,
            got,
            "{:?}: model says ok={}, namenode ok={}",
            step,
            want,
            got
        );
        prop_assert_eq!(snapshot(&log.ns), model.0.clone(), "after {:?}", step);
        check_totals(&log.ns, &format!("{step:?}"))?;
    }
    // Once every detached subtree is freed, nothing is left of them: no
    // inode, no block owner.
    loop {
        match log.submit(MetaOp::Reclaim { limit: 3 }).await {
            Ok(MetaResult::Reclaimed { more: true, .. }) => {}
            Ok(MetaResult::Reclaimed { more: false, .. }) => break,
            other => panic!("reclaim: {other:?}"),
        }
    }
    prop_assert_eq!(
        inode_count(&log.ns),
        model.0.len() + 1,
        "root + live inodes"
    );
    let live_blocks: usize = log
        .ns
        .files()
        .map(|f| f.unwrap().file.unwrap().blocks.len())
        .sum();
    prop_assert_eq!(log.ns.totals().1 as usize, live_blocks);
    check_totals(&log.ns, "the last reclaim")?;
    log.close();
    Ok(())
}

/// Inodes held in memory, live or detached.
fn inode_count(ns: &Namespace) -> usize {
    ns.snapshot().1.iter().filter(|(k, _)| k[0] == b'i').count()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]
    #[test]
    fn namespace_matches_a_model_across_restarts(steps in prop::collection::vec(arb_step(), 1..40)) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(run_steps(steps))?;
    }
}

#[test]
fn the_example_config_is_valid() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../conf/rfs.toml");
    let c = rfs_namenode::Config::from_file(&path).unwrap();
    c.validate().unwrap();
    assert_eq!(c.rpc_addr.port(), 8020);
    let ha = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../conf/rfs-ha.toml");
    let mut c = rfs_namenode::Config::from_file(&ha).unwrap();
    c.validate().unwrap();
    assert_eq!(c.members().len(), 3);
    assert_eq!(c.members().iter().filter(|m| m.witness).count(), 1);
    c.id = "nn2".into();
    c.resolve_member().unwrap();
    assert_eq!(c.rpc_addr.port(), 8021);
    assert_eq!(c.raft_id(), 2);
    c.id = "witness".into();
    let e = c.resolve_member().unwrap_err().to_string();
    assert!(e.contains("--witness"), "{e}");
    c.id = "nn9".into();
    let e = c.resolve_member().unwrap_err().to_string();
    assert!(e.contains("not a member"), "{e}");
}

#[tokio::test]
async fn add_block_commits_lengths_and_abandon_removes_only_the_last_block() {
    let dir = tempfile::tempdir().unwrap();
    let log = Meta::open(dir.path()).await;
    log.submit(create("/f", "w")).await.unwrap();
    let add = |previous| MetaOp::AddBlock {
        path: "/f".into(),
        client_id: "w".into(),
        previous,
        now_ms: 2,
    };
    let MetaResult::BlockAdded {
        block: b1,
        offset: 0,
        ..
    } = log.submit(add(None)).await.unwrap()
    else {
        panic!("first block")
    };
    let full = rfs_namenode::namespace::BlockMeta { len: 1024, ..b1 };
    let MetaResult::BlockAdded {
        block: b2,
        offset: 1024,
        ..
    } = log.submit(add(Some(full))).await.unwrap()
    else {
        panic!("second block at 1024")
    };
    assert!(
        b2.id > b1.id && b2.gen_stamp > b1.gen_stamp,
        "ids and stamps only grow"
    );
    // Another client may not add or abandon.
    let stranger = MetaOp::AddBlock {
        path: "/f".into(),
        client_id: "x".into(),
        previous: None,
        now_ms: 3,
    };
    assert!(log
        .submit(stranger)
        .await
        .unwrap_err()
        .to_string()
        .contains("being written by w"));
    let abandon = |id| MetaOp::AbandonBlock {
        path: "/f".into(),
        client_id: "w".into(),
        block_id: id,
    };
    assert!(
        log.submit(abandon(b1.id)).await.is_err(),
        "only the last block can be abandoned"
    );
    log.submit(abandon(b2.id)).await.unwrap();
    let f = log.ns.lookup("/f").unwrap().unwrap().file.unwrap();
    assert_eq!(f.blocks, vec![full]);
    assert!(
        log.ns.block_owner(b2.id).unwrap().is_none(),
        "abandoned block no longer maps to the file"
    );
    log.close();
}

fn with_block(create: MetaOp) -> MetaOp {
    MetaOp::CreateWithBlock {
        create: Box::new(create),
    }
}

/// The id counters: what an op that allocates nothing leaves as it was.
fn allocation_counters(log: &Meta) -> [u64; 3] {
    [
        counter::NEXT_INODE,
        counter::NEXT_BLOCK,
        counter::NEXT_GEN_STAMP,
    ]
    .map(|c| log.ns.counter(c).unwrap())
}

#[tokio::test]
async fn a_create_with_its_first_block_is_one_entry_and_a_retry_gets_both_back() {
    let dir = tempfile::tempdir().unwrap();
    let log = Meta::open(dir.path()).await;
    let before = allocation_counters(&log);
    let applied = log.ns.counter(counter::APPLIED_INDEX).unwrap();
    let first = log
        .submit_as("w", 1, with_block(create("/f", "w")))
        .await
        .unwrap();
    let MetaResult::CreatedWithBlock {
        inode,
        replaced_blocks,
        block,
    } = first.clone()
    else {
        panic!("a create with its block answered {first:?}")
    };
    assert_eq!(
        log.ns.counter(counter::APPLIED_INDEX).unwrap(),
        applied + 1,
        "the file and its block are one log entry"
    );
    assert!(replaced_blocks.is_empty());
    assert_eq!(
        (block.id, block.gen_stamp, block.len),
        (before[1], before[2], 0)
    );
    assert_eq!(
        allocation_counters(&log),
        [before[0] + 1, before[1] + 1, before[2] + 1],
        "one inode, one block, one generation stamp"
    );
    let (id, f) = file_of(&log, "/f");
    assert_eq!(
        (id, f.blocks, f.writer),
        (inode.id, vec![block], Some("w".into()))
    );
    assert_eq!(inode.file.as_ref().unwrap().blocks, vec![block]);
    assert_eq!(log.ns.block_owner(block.id).unwrap().unwrap().id, id);

    // A retry of the call, before and after a restart, gets the same file
    // and the same block, and allocates nothing.
    let counters = allocation_counters(&log);
    assert_eq!(
        log.submit_as("w", 1, with_block(create("/f", "w")))
            .await
            .unwrap(),
        first
    );
    assert_eq!(allocation_counters(&log), counters);
    log.close();
    let log = Meta::open(dir.path()).await;
    assert_eq!(
        log.submit_as("w", 1, with_block(create("/f", "w")))
            .await
            .unwrap(),
        first
    );
    assert_eq!(allocation_counters(&log), counters);
    assert_eq!(file_of(&log, "/f").1.blocks, vec![block]);

    // The block is the file's like any `add_block`'s: the writer completes
    // it, or gives it back.
    let done = MetaOp::Complete {
        path: "/f".into(),
        client_id: "w".into(),
        last: Some(BlockMeta { len: 100, ..block }),
        now_ms: 2,
    };
    log.submit(done).await.unwrap();
    let f = file_of(&log, "/f").1;
    assert_eq!((f.length(), f.writer), (100, None));
    log.submit(with_block(create("/empty", "w"))).await.unwrap();
    let unused = file_of(&log, "/empty").1.blocks[0];
    let abandon = MetaOp::AbandonBlock {
        path: "/empty".into(),
        client_id: "w".into(),
        block_id: unused.id,
    };
    log.submit(abandon).await.unwrap();
    assert!(file_of(&log, "/empty").1.blocks.is_empty());
    assert!(log.ns.block_owner(unused.id).unwrap().is_none());

    // Overwriting hands back the replaced file's blocks, as a create does.
    let replaced = log
        .submit(with_block(create_with("/f", "w", true, None)))
        .await
        .unwrap();
    let MetaResult::CreatedWithBlock {
        replaced_blocks,
        block: new_block,
        ..
    } = replaced
    else {
        panic!("overwrite answered {replaced:?}")
    };
    assert_eq!(replaced_blocks, vec![BlockMeta { len: 100, ..block }]);
    assert_eq!(file_of(&log, "/f").1.blocks, vec![new_block]);

    // A create that fails allocates no block either; an op that is not a
    // create is refused whole.
    let counters = allocation_counters(&log);
    let exists = log.submit(with_block(create("/f", "x"))).await.unwrap_err();
    assert!(
        exists.to_string().contains("being written by w"),
        "{exists}"
    );
    let not_create = log.submit(with_block(mkdirs("/d"))).await.unwrap_err();
    assert!(
        matches!(not_create, NamenodeError::InvalidArgument(_)),
        "{not_create}"
    );
    assert!(log.ns.lookup("/d").unwrap().is_none());
    assert_eq!(allocation_counters(&log), counters);
    log.close();
}

/// Adds a block to `path` for writer `w`, committing `previous`.
async fn add_block(log: &Meta, path: &str, previous: Option<BlockMeta>) -> BlockMeta {
    let op = MetaOp::AddBlock {
        path: path.into(),
        client_id: "w".into(),
        previous,
        now_ms: 2,
    };
    match log.submit(op).await.unwrap() {
        MetaResult::BlockAdded { block, .. } => block,
        other => panic!("add_block: {other:?}"),
    }
}

fn recover(inode_id: u64, holder: &str, drop_last: bool) -> MetaOp {
    MetaOp::RecoverLease {
        inode_id,
        holder: holder.into(),
        drop_last,
        now_ms: 5,
    }
}

fn sync(block: BlockMeta, delete_block: bool) -> MetaOp {
    MetaOp::CommitBlockSync {
        block,
        delete_block,
        now_ms: 6,
    }
}

fn file_of(log: &Meta, path: &str) -> (u64, FileMeta) {
    let inode = log.ns.lookup(path).unwrap().unwrap();
    (inode.id, inode.file.unwrap())
}

#[tokio::test]
async fn lease_recovery_restamps_the_last_block_and_its_commit_closes_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let log = Meta::open(dir.path()).await;
    log.submit(create("/f", "w")).await.unwrap();
    let b1 = add_block(&log, "/f", None).await;
    let full = BlockMeta { len: 1024, ..b1 };
    let b2 = add_block(&log, "/f", Some(full)).await;
    let (id, _) = file_of(&log, "/f");

    let e = log.submit(recover(id, "x", false)).await.unwrap_err();
    assert!(e.to_string().contains("being written by w"), "{e}");
    let MetaResult::LeaseRecoveryStarted { block, .. } =
        log.submit(recover(id, "w", false)).await.unwrap()
    else {
        panic!("recovery starts")
    };
    assert_eq!(block.id, b2.id);
    assert!(block.gen_stamp > b2.gen_stamp, "a fresh generation stamp");
    let (_, f) = file_of(&log, "/f");
    assert_eq!(f.writer.as_deref(), Some(RECOVERY_HOLDER));
    assert_eq!(f.blocks, vec![full, block]);
    // A create naming the recovery as the writer to take over from is
    // refused like any other: the file is nobody's to take.
    let take = take_over("/f", "y", RECOVERY_HOLDER);
    let e = log.submit(take).await.unwrap_err();
    assert!(e.to_string().contains(RECOVERY_HOLDER), "{e}");

    // The dead writer cannot go on, and nobody starts a second recovery.
    let e = log
        .submit(MetaOp::Complete {
            path: "/f".into(),
            client_id: "w".into(),
            last: Some(b2),
            now_ms: 3,
        })
        .await
        .unwrap_err();
    assert!(e.to_string().contains(RECOVERY_HOLDER), "{e}");
    assert!(log.submit(recover(id, "w", false)).await.is_err());

    // Commits of another stamp (the writer's, a superseded attempt's) or
    // of more than a block are refused and change nothing.
    let e = log
        .submit(sync(BlockMeta { len: 500, ..b2 }, false))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("generation stamp"), "{e}");
    assert!(log
        .submit(sync(BlockMeta { len: 2000, ..block }, false))
        .await
        .is_err());
    assert_eq!(
        file_of(&log, "/f").1.writer.as_deref(),
        Some(RECOVERY_HOLDER)
    );

    let agreed = BlockMeta { len: 700, ..block };
    let MetaResult::LeaseRecovered { dropped: None, .. } =
        log.submit(sync(agreed, false)).await.unwrap()
    else {
        panic!("commit closes the file")
    };
    let (_, f) = file_of(&log, "/f");
    assert_eq!(f.writer, None);
    assert_eq!(f.blocks, vec![full, agreed]);
    assert_eq!(f.length(), 1724);

    // A repeated commit gets the same answer; a different one is refused.
    assert!(matches!(
        log.submit(sync(agreed, false)).await.unwrap(),
        MetaResult::LeaseRecovered { dropped: None, .. }
    ));
    assert!(log
        .submit(sync(BlockMeta { len: 600, ..block }, false))
        .await
        .is_err());
    assert_eq!(file_of(&log, "/f").1.blocks, vec![full, agreed]);
    log.close();
}

#[tokio::test]
async fn lease_recovery_closes_at_once_what_has_nothing_to_recover_and_can_restart() {
    let dir = tempfile::tempdir().unwrap();
    let log = Meta::open(dir.path()).await;
    // No blocks: closed by the op itself.
    log.submit(create("/e", "w")).await.unwrap();
    let (e, _) = file_of(&log, "/e");
    let MetaResult::LeaseRecovered { dropped: None, .. } =
        log.submit(recover(e, "w", false)).await.unwrap()
    else {
        panic!("closed at once")
    };
    assert_eq!(file_of(&log, "/e").1.writer, None);

    // An empty last block no datanode holds: dropped, file closed.
    log.submit(create("/g", "w")).await.unwrap();
    let b = add_block(&log, "/g", None).await;
    let (g, _) = file_of(&log, "/g");
    assert_eq!(
        log.submit(recover(g, "w", true)).await.unwrap(),
        MetaResult::LeaseRecovered {
            inode: log.ns.lookup("/g").unwrap().unwrap(),
            dropped: Some(b),
        }
    );
    let (_, f) = file_of(&log, "/g");
    assert!(f.writer.is_none() && f.blocks.is_empty());
    assert!(log.ns.block_owner(b.id).unwrap().is_none());

    // A recovery that never committed is started again by the recovery
    // holder; the first attempt's late commit is then refused.
    log.submit(create("/h", "w")).await.unwrap();
    add_block(&log, "/h", None).await;
    let (h, _) = file_of(&log, "/h");
    let started = |r| match r {
        MetaResult::LeaseRecoveryStarted { block, .. } => block,
        other => panic!("{other:?}"),
    };
    let first = started(log.submit(recover(h, "w", false)).await.unwrap());
    let second = started(
        log.submit(recover(h, RECOVERY_HOLDER, false))
            .await
            .unwrap(),
    );
    assert!(second.gen_stamp > first.gen_stamp);
    assert!(log.submit(sync(first, false)).await.is_err());
    // No location held a replica: the block goes and the file closes.
    let MetaResult::LeaseRecovered {
        dropped: Some(gone),
        ..
    } = log.submit(sync(second, true)).await.unwrap()
    else {
        panic!("block dropped")
    };
    assert_eq!(gone.id, second.id);
    let (_, f) = file_of(&log, "/h");
    assert!(f.writer.is_none() && f.blocks.is_empty());
    log.close();
}

fn recover_pipeline(b: BlockMeta, acked_len: u64) -> MetaOp {
    MetaOp::RecoverPipeline {
        path: "/p".into(),
        client_id: "w".into(),
        block_id: b.id,
        gen_stamp: b.gen_stamp,
        acked_len,
    }
}

/// Pipeline recovery records the acknowledged length with the new stamp,
/// in the namespace (so it survives a restart, as on any member applying
/// the log): exactly what the datanodes' recovery check confirms, while
/// readers still see only the finished blocks; once the file is closed
/// no recovery of its blocks is confirmed.
#[tokio::test]
async fn pipeline_recovery_records_the_acknowledged_length_with_the_new_stamp() {
    let dir = tempfile::tempdir().unwrap();
    let log = Meta::open(dir.path()).await;
    log.submit(create("/p", "w")).await.unwrap();
    let b1 = add_block(&log, "/p", None).await;
    let full = BlockMeta { len: 1024, ..b1 };
    let b2 = add_block(&log, "/p", Some(full)).await;
    let MetaResult::PipelineUpdated { block, .. } =
        log.submit(recover_pipeline(b2, 300)).await.unwrap()
    else {
        panic!("pipeline recovered")
    };
    assert!(block.gen_stamp > b2.gen_stamp, "a fresh generation stamp");
    assert_eq!((block.id, block.len), (b2.id, 300));
    // A stale stamp or more than a block is refused.
    assert!(log.submit(recover_pipeline(b2, 300)).await.is_err());
    let e = log.submit(recover_pipeline(block, 2000)).await.unwrap_err();
    assert!(e.to_string().contains("exceeds the block size"), "{e}");
    log.close();

    let log = Meta::open(dir.path()).await;
    let owner = log.ns.block_owner(block.id).unwrap();
    let f = owner.as_ref().unwrap().file.as_ref().unwrap();
    assert_eq!(f.blocks, vec![full, block]);
    assert_eq!(f.length(), 1024, "readers do not see the open block");
    let check = |b, kind| recovery_check::confirm(owner.as_ref(), &b, kind);
    assert_eq!(check(block, Recovery::Pipeline), Ok(()));
    assert!(check(BlockMeta { len: 0, ..block }, Recovery::Pipeline).is_err());
    assert!(check(full, Recovery::Pipeline).is_err());

    // The next block starts after the recovered one's committed length.
    let done = BlockMeta { len: 1000, ..block };
    let MetaResult::BlockAdded { offset, .. } = log
        .submit(MetaOp::AddBlock {
            path: "/p".into(),
            client_id: "w".into(),
            previous: Some(done),
            now_ms: 3,
        })
        .await
        .unwrap()
    else {
        panic!("third block")
    };
    assert_eq!(offset, 2024);
    log.submit(MetaOp::Complete {
        path: "/p".into(),
        client_id: "w".into(),
        last: None,
        now_ms: 4,
    })
    .await
    .unwrap();
    let owner = log.ns.block_owner(block.id).unwrap();
    let e = recovery_check::confirm(owner.as_ref(), &done, Recovery::Pipeline).unwrap_err();
    assert!(e.to_string().contains("closed file"), "{e}");
    log.close();
}

fn rename(src: &str, dst: &str, overwrite: bool) -> MetaOp {
    let (src, dst) = (src.to_string(), dst.to_string());
    if overwrite {
        MetaOp::RenameOverwrite {
            src,
            dst,
            now_ms: 1,
        }
    } else {
        MetaOp::Rename {
            src,
            dst,
            now_ms: 1,
        }
    }
}

#[tokio::test]
async fn a_rename_may_not_make_a_path_deeper_than_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let log = Meta::open(dir.path()).await;
    let chain = |n: usize| "/x".repeat(n);
    // /s is 600 levels high: its deepest path runs through /s/a. The walk
    // meets a file and an empty directory (listed after `a`) on the way.
    log.submit(mkdirs(&format!("/s/a{}", chain(599))))
        .await
        .unwrap();
    log.submit(mkdirs("/s/z")).await.unwrap();
    log.submit(create("/s/y", "c")).await.unwrap();
    let deep = format!("/t{}", chain(399)); // 400 components
    log.submit(mkdirs(&deep)).await.unwrap();

    // Into `deep`: /s would be 401 deep, its deepest path 1001.
    for overwrite in [false, true] {
        let dst = format!("{deep}/s");
        let to = if overwrite { dst.clone() } else { deep.clone() };
        let e = log.submit(rename("/s", &to, overwrite)).await.unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "cannot move /s to {dst}: {dst} would be 401 components deep with at least \
                 600 levels below it, more than 1000 components in all"
            )
        );
        assert!(log.ns.lookup("/s/z").unwrap().is_some(), "nothing moved");
    }

    // One level up, its deepest path has exactly 1000 components.
    let up = format!("/t{}", chain(398));
    let moved = log.submit(rename("/s", &up, false)).await.unwrap();
    let final_path = format!("{up}/s");
    assert_eq!(
        moved,
        MetaResult::Renamed {
            final_path: final_path.clone()
        }
    );
    let deepest = format!("{final_path}/a{}", chain(599));
    assert_eq!(deepest.matches('/').count(), 1000);
    assert!(log.ns.lookup(&deepest).unwrap().is_some());
    // A move no deeper needs no walk and is not refused; nor is one back up.
    let beside = format!("{up}/s2");
    log.submit(rename(&final_path, &beside, true))
        .await
        .unwrap();
    log.submit(rename(&beside, "/s", false)).await.unwrap();
    assert!(log.ns.lookup("/s/z").unwrap().is_some());
    log.close();
}

#[tokio::test]
async fn an_empty_file_completes_dropping_its_unwritten_block_in_one_entry() {
    let dir = tempfile::tempdir().unwrap();
    let log = Meta::open(dir.path()).await;
    log.submit(with_block(create("/empty", "w"))).await.unwrap();
    let unused = file_of(&log, "/empty").1.blocks[0];
    let drop_and_complete = |client: &str, block_id| MetaOp::CompleteDroppingBlock {
        path: "/empty".into(),
        client_id: client.into(),
        block_id,
        now_ms: 3,
    };
    // Only the writer, and only its last block.
    let stranger = log
        .submit(drop_and_complete("x", unused.id))
        .await
        .unwrap_err();
    assert!(
        stranger.to_string().contains("being written by w"),
        "{stranger}"
    );
    let wrong = log
        .submit(drop_and_complete("w", unused.id + 1))
        .await
        .unwrap_err();
    assert!(
        wrong.to_string().contains("not the file's last block"),
        "{wrong}"
    );
    let applied = log.ns.counter(counter::APPLIED_INDEX).unwrap();
    let done = log.submit(drop_and_complete("w", unused.id)).await.unwrap();
    assert!(matches!(done, MetaResult::Completed { .. }), "{done:?}");
    assert_eq!(log.ns.counter(counter::APPLIED_INDEX).unwrap(), applied + 1);
    let f = file_of(&log, "/empty").1;
    assert_eq!((f.blocks.len(), f.length(), f.writer), (0, 0, None));
    assert!(log.ns.block_owner(unused.id).unwrap().is_none());
    log.close();
}

/// A call saying which earlier ones were answered drops their results at
/// once, and a stray copy of one is refused, not applied: on the member
/// that applied the mark and after a restart from the checkpoint and log.
#[tokio::test]
async fn answered_calls_are_forgotten_and_stray_copies_refused() {
    let dir = tempfile::tempdir().unwrap();
    let meta = Meta::open(dir.path()).await;
    let key = |call| CallKey {
        client: "c".into(),
        call,
        answered_below: 0,
    };
    let cached = |meta: &Meta, call| meta.ns.retry_cached(&key(call)).unwrap().is_some();
    for (call, path) in [(1, "/a"), (2, "/b")] {
        meta.submit_call("c", call, 1, mkdirs(path)).await.unwrap();
    }
    assert!(cached(&meta, 1) && cached(&meta, 2));
    assert_eq!(meta.ns.calls_answered_below("c").unwrap(), 1);

    meta.submit_call("c", 3, 3, mkdirs("/c")).await.unwrap();
    assert!(!cached(&meta, 1) && !cached(&meta, 2) && cached(&meta, 3));
    assert_eq!(meta.ns.calls_answered_below("c").unwrap(), 3);
    // Call 3's result and the client's session entry.
    assert_eq!(meta.ns.retry_entries(), 2);
    // A later call with an older mark (sent before call 3's) leaves it.
    meta.submit_call("c", 4, 1, mkdirs("/d")).await.unwrap();
    assert_eq!(meta.ns.calls_answered_below("c").unwrap(), 3);

    // A copy of call 2 that arrives late (here with another op, to see
    // that nothing of it is applied).
    let stray = || mkdirs("/stray");
    let refused = meta.submit_call("c", 2, 1, stray()).await.unwrap_err();
    assert!(
        matches!(
            refused,
            NamenodeError::StaleCall {
                call: 2,
                answered_below: 3,
                ..
            }
        ),
        "{refused:?}"
    );
    assert!(
        refused.to_string().contains("call 2 of client c refused"),
        "{refused}"
    );
    assert!(meta.ns.lookup("/stray").unwrap().is_none());
    // Another client's calls are their own.
    meta.submit_call("other", 2, 2, mkdirs("/other"))
        .await
        .unwrap();
    meta.close();

    let meta = Meta::open(dir.path()).await;
    assert_eq!(meta.ns.calls_answered_below("c").unwrap(), 3);
    assert!(matches!(
        meta.submit_call("c", 2, 1, stray()).await.unwrap_err(),
        NamenodeError::StaleCall { .. }
    ));
    assert!(meta.ns.lookup("/stray").unwrap().is_none());
    // A retry of a call still open gets its recorded result.
    assert_eq!(
        meta.submit_call("c", 4, 1, mkdirs("/d")).await.unwrap(),
        MetaResult::Mkdirs { created: true }
    );
    meta.close();
}
