//! The namenode's metadata path without sockets: group commit, WAL replay,
//! and random namespace ops against a model, with restarts.

use std::collections::BTreeMap;
use std::sync::Arc;

use proptest::prelude::*;
use rfs_namenode::meta_log::{LocalMetaLog, MetaLog};
use rfs_namenode::meta_op::{MetaOp, MetaResult};
use rfs_namenode::namespace::Namespace;
use rfs_namenode::wal::Wal;

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
    let (log, ns) = LocalMetaLog::open(dir.path(), 1_000_000).unwrap();
    let log = Arc::new(log);
    let n = 400;
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let log = log.clone();
            tokio::spawn(async move { log.submit(mkdirs(&format!("/d{i}"))).await })
        })
        .collect();
    for t in tasks {
        assert_eq!(
            t.await.unwrap().unwrap(),
            MetaResult::Mkdirs { created: true }
        );
    }
    let fsyncs = log
        .stats()
        .fsyncs
        .load(std::sync::atomic::Ordering::Relaxed);
    assert!(
        fsyncs < n / 2,
        "{fsyncs} fsyncs for {n} concurrent ops: group commit is not batching"
    );
    assert_eq!(ns.children(1, "", 10_000).unwrap().0.len(), n as usize);
    log.close();
}

#[tokio::test]
async fn ops_in_the_log_past_the_applied_index_are_replayed_once() {
    let dir = tempfile::tempdir().unwrap();
    // A log written by a namenode that died before its store saw the ops.
    {
        let (mut wal, _) = Wal::open(&dir.path().join("wal")).unwrap();
        let ops = [mkdirs("/a/b"), mkdirs("/c"), mkdirs("/a/b")];
        let recs: Vec<(u64, &MetaOp)> = ops
            .iter()
            .enumerate()
            .map(|(i, op)| (i as u64 + 1, op))
            .collect();
        wal.append(&recs).unwrap();
        wal.sync().unwrap();
    }
    for _ in 0..2 {
        let (log, ns) = LocalMetaLog::open(dir.path(), 1_000_000).unwrap();
        assert!(ns.lookup("/a/b").unwrap().is_some());
        assert!(ns.lookup("/c").unwrap().is_some());
        assert_eq!(ns.children(1, "", 100).unwrap().0.len(), 2);
        log.close();
    }
    // New ops continue the index sequence after a reopen.
    let (log, ns) = LocalMetaLog::open(dir.path(), 1_000_000).unwrap();
    log.submit(mkdirs("/d")).await.unwrap();
    log.close();
    drop(ns);
    let (log, ns) = LocalMetaLog::open(dir.path(), 1_000_000).unwrap();
    assert!(ns.lookup("/d").unwrap().is_some());
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
        let prefix = format!("{src}/");
        let moved: Vec<(String, bool)> = self
            .0
            .iter()
            .filter(|(k, _)| *k == src || k.starts_with(&prefix))
            .map(|(k, v)| (k.clone(), *v))
            .collect();
        for (k, v) in moved {
            self.0.remove(&k);
            self.0.insert(format!("{fin}{}", &k[src.len()..]), v);
        }
        true
    }
}

#[derive(Debug, Clone)]
enum Step {
    Mkdirs(String),
    Create(String),
    Delete(String),
    Rename(String, String),
    Restart,
}

fn arb_path() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(vec!["a", "b", "c"]), 1..4)
        .prop_map(|c| format!("/{}", c.join("/")))
}

fn arb_step() -> impl Strategy<Value = Step> {
    prop_oneof![
        3 => arb_path().prop_map(Step::Mkdirs),
        3 => arb_path().prop_map(Step::Create),
        2 => arb_path().prop_map(Step::Delete),
        3 => (arb_path(), arb_path()).prop_map(|(a, b)| Step::Rename(a, b)),
        1 => Just(Step::Restart),
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

async fn run_steps(steps: Vec<Step>) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, mut ns) = LocalMetaLog::open(dir.path(), 7).unwrap();
    let mut model = Model::default();
    for step in steps {
        let (want, got) = match &step {
            Step::Restart => {
                log.close();
                drop(ns);
                (log, ns) = LocalMetaLog::open(dir.path(), 7).unwrap();
                continue;
            }
            Step::Mkdirs(p) => (model.mkdirs(p), log.submit(mkdirs(p)).await.is_ok()),
            Step::Create(p) => {
                let op = MetaOp::Create {
                    path: p.clone(),
                    client_id: "c".into(),
                    overwrite: false,
                    replication: 3,
                    block_size: 1 << 20,
                    mode: 0o644,
                    create_parent: true,
                    owner: "u".into(),
                    group: "g".into(),
                    now_ms: 1,
                    take_over_from: None,
                };
                let ok = log.submit(op).await.is_ok();
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
            Step::Delete(p) => (
                model.delete(p),
                log.submit(MetaOp::Delete {
                    path: p.clone(),
                    recursive: true,
                    now_ms: 1,
                })
                .await
                .is_ok(),
            ),
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
        };
        prop_assert_eq!(
            want,
            got,
            "{:?}: model says ok={}, namenode ok={}",
            step,
            want,
            got
        );
        prop_assert_eq!(snapshot(&ns), model.0.clone(), "after {:?}", step);
    }
    log.close();
    Ok(())
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
}

#[tokio::test]
async fn add_block_commits_lengths_and_abandon_removes_only_the_last_block() {
    let dir = tempfile::tempdir().unwrap();
    let (log, ns) = LocalMetaLog::open(dir.path(), 1_000_000).unwrap();
    let create = MetaOp::Create {
        path: "/f".into(),
        client_id: "w".into(),
        overwrite: false,
        replication: 1,
        block_size: 1024,
        mode: 0o644,
        create_parent: false,
        owner: "u".into(),
        group: "g".into(),
        now_ms: 1,
        take_over_from: None,
    };
    log.submit(create).await.unwrap();
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
    let f = ns.lookup("/f").unwrap().unwrap().file.unwrap();
    assert_eq!(f.blocks, vec![full]);
    assert!(
        ns.block_owner(b2.id).unwrap().is_none(),
        "abandoned block no longer maps to the file"
    );
    log.close();
}
