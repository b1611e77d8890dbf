//! Namespace operations and their error cases, over real RPC.

use rfs_client::{CreateOptions, FileType};
use std::time::Duration;

use rfs_integration::load::wait_for;
use rfs_integration::{fetch_metrics, find_replicas, metric_value, MiniCluster};
use rfs_proto::rpc_error::RpcErrorKind;
use tokio::io::AsyncWriteExt;

use super::common::{block_ids, payload, read_file, write_file, MIB};
use super::dfs::Dfs;

fn assert_kind<T>(r: Result<T, rfs_client::Error>, kind: RpcErrorKind, text: &str) {
    match r {
        Ok(_) => panic!("expected {kind:?} ({text}), got success"),
        Err(e) => {
            assert_eq!(e.kind(), kind, "{e}");
            assert!(
                e.to_string().contains(text),
                "message {:?} should contain {text:?}",
                e.to_string()
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespace_operations_and_errors() -> anyhow::Result<()> {
    let cluster = MiniCluster::builder().datanodes(1).start().await?;
    let c = cluster.client().await?;

    // mkdirs
    assert!(c.mkdirs("/a/b/c", true).await?);
    assert!(
        !c.mkdirs("/a/b/c", true).await?,
        "existing dir: no error, not created"
    );
    assert_kind(
        c.mkdirs("/x/y", false).await,
        RpcErrorKind::NotFound,
        "No such file or directory",
    );
    let st = c.get_file_info("/a/b").await?.expect("dir exists");
    assert_eq!(st.file_type(), FileType::Directory);
    assert!(c.get_file_info("/nope").await?.is_none());

    // invalid paths
    for bad in ["relative", "/a//b", "/a/./b", "/a/../b", "/a/b\0c"] {
        assert_kind(
            c.mkdirs(bad, true).await,
            RpcErrorKind::InvalidPath,
            "invalid path",
        );
    }
    let long = format!("/{}", "n".repeat(256));
    assert_kind(
        c.mkdirs(&long, true).await,
        RpcErrorKind::InvalidPath,
        "invalid path",
    );

    // create rules
    write_file(&c, "/a/f", b"hello").await?;
    assert_kind(
        c.create("/a/f", CreateOptions::default()).await,
        RpcErrorKind::AlreadyExists,
        "/a/f: File exists",
    );
    assert_kind(
        c.create(
            "/a/b",
            CreateOptions {
                overwrite: true,
                ..Default::default()
            },
        )
        .await,
        RpcErrorKind::IsDirectory,
        "Is a directory",
    );
    assert_kind(
        c.mkdirs("/a/f/g", true).await,
        RpcErrorKind::NotDirectory,
        "Not a directory",
    );
    let mut w = c
        .create(
            "/a/f",
            CreateOptions {
                overwrite: true,
                ..Default::default()
            },
        )
        .await?;
    w.write_all(b"bye").await?;
    w.shutdown().await?;
    assert_eq!(read_file(&c, "/a/f").await?, b"bye");
    assert_kind(
        c.open("/a/missing").await,
        RpcErrorKind::NotFound,
        "/a/missing: No such file or directory",
    );
    assert_kind(
        c.open("/a").await,
        RpcErrorKind::IsDirectory,
        "Is a directory",
    );

    // rename
    assert_eq!(c.rename("/a/f", "/a/g").await?, "/a/g");
    assert_eq!(
        c.rename("/a/g", "/a/b").await?,
        "/a/b/g",
        "into an existing dir"
    );
    write_file(&c, "/a/h", b"h").await?;
    assert_kind(
        c.rename("/a/h", "/a/b/g").await,
        RpcErrorKind::AlreadyExists,
        "File exists",
    );
    assert_kind(
        c.rename("/a", "/a/b/c/d").await,
        RpcErrorKind::InvalidArgument,
        "own subtree",
    );
    assert_kind(
        c.rename("/a/h", "/nodir/h").await,
        RpcErrorKind::NotFound,
        "No such file or directory",
    );
    assert_kind(
        c.rename("/zz", "/a/zz").await,
        RpcErrorKind::NotFound,
        "/zz: No such file or directory",
    );
    assert_eq!(read_file(&c, "/a/b/g").await?, b"bye");

    // delete
    assert_kind(
        c.delete("/a", false).await,
        RpcErrorKind::NotEmpty,
        "/a: Directory is not empty",
    );
    assert!(c.delete("/a/h", false).await?);
    assert_kind(
        c.delete("/a/h", false).await,
        RpcErrorKind::NotFound,
        "No such file or directory",
    );
    assert!(c.delete("/a", true).await?);
    assert!(c.get_file_info("/a/b/g").await?.is_none());
    assert!(
        c.delete("/", true).await.is_err(),
        "deleting the root is refused"
    );

    // set_replication, content summary, fs stats
    write_file(&c, "/s/one", &payload(1000, 1)).await?;
    write_file(&c, "/s/d/two", &payload(3000, 2)).await?;
    assert!(c.set_replication("/s/one", 2).await?);
    assert_eq!(
        c.get_file_info("/s/one")
            .await?
            .expect("exists")
            .replication,
        2
    );
    assert_kind(
        c.set_replication("/s", 2).await,
        RpcErrorKind::IsDirectory,
        "Is a directory",
    );
    let cs = c.content_summary("/s").await?;
    assert_eq!((cs.length, cs.file_count, cs.directory_count), (4000, 2, 2));
    assert_eq!(cs.space_consumed, 1000 * 2 + 3000 * 3);
    let fs = c.fs_stats().await?;
    assert_eq!(fs.live_datanodes, 1);
    assert!(fs.capacity > 0 && fs.remaining > 0);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listing_pages_through_a_large_directory() -> anyhow::Result<()> {
    let cluster = MiniCluster::builder().datanodes(1).start().await?;
    let c = cluster.client().await?;
    c.mkdirs("/big", true).await?;
    let n = 2500;
    let mut tasks = Vec::new();
    for chunk in 0..10 {
        let c = c.clone();
        tasks.push(tokio::spawn(async move {
            for i in (chunk..n).step_by(10) {
                c.mkdirs(&format!("/big/d{i:05}"), false).await?;
            }
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    let (page, more) = c.list_page("/big", "", 1000).await?;
    assert_eq!(page.len(), 1000);
    assert!(more);
    assert!(page[0].path.ends_with("/big/d00000"));
    let (page2, _) = c.list_page("/big", "d00999", 1000).await?;
    assert!(page2[0].path.ends_with("/big/d01000"), "{}", page2[0].path);
    let all = c.list("/big").await?;
    assert_eq!(all.len(), n);
    let mut names: Vec<_> = all.iter().map(|s| s.path.clone()).collect();
    let sorted = {
        let mut s = names.clone();
        s.sort();
        s
    };
    assert_eq!(names, sorted, "listing is in name order");
    names.dedup();
    assert_eq!(names.len(), n);
    Ok(())
}

/// `/metrics` shows how many calls the retry cache holds, and the client
/// library's calls keep it to the calls in flight: each says below which
/// number it had every answer, and the namenode drops those results. After
/// 20 files written one after another, the cache holds the last close and
/// the client's session entry, not two entries per file (40), on every
/// checkpoint tick (once a second) for three seconds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_retry_cache_holds_a_clients_calls_in_flight_not_its_history() -> anyhow::Result<()> {
    let cluster = MiniCluster::start().await?;
    let client = cluster.client().await?;
    let http = cluster.namenode_http_addr();
    let entries = || async {
        let text = fetch_metrics(http).await?;
        anyhow::Ok(metric_value(&text, "rfs_namenode_retry_cache_entries"))
    };
    let before = wait_for("the retry-cache gauge", Duration::from_secs(10), entries).await?;
    for i in 0..20 {
        let mut w = client
            .create(&format!("/r{i}"), CreateOptions::default())
            .await?;
        w.write_all(b"x").await?;
        w.shutdown().await?;
    }
    let end = before + 2.0;
    wait_for(
        "the last close and the session entry in the gauge",
        Duration::from_secs(10),
        || async { Ok(entries().await?.filter(|n| *n == end)) },
    )
    .await?;
    for _ in 0..6 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let now = entries().await?;
        assert_eq!(
            now,
            Some(end),
            "the retry cache grew with the files written"
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_writer_gets_a_lease_conflict() -> anyhow::Result<()> {
    let cluster = MiniCluster::start().await?;
    let a = cluster.client().await?;
    let b = cluster.client().await?;
    let mut w = a.create("/leased", CreateOptions::default()).await?;
    w.write_all(&payload(MIB + 10, 1)).await?;
    let expected = format!("/leased: file is being written by {}", a.client_id());
    assert_kind(
        b.create(
            "/leased",
            CreateOptions {
                overwrite: true,
                ..Default::default()
            },
        )
        .await,
        RpcErrorKind::LeaseConflict,
        &expected,
    );
    w.shutdown().await?;
    // Once closed, the file is free for the next writer.
    let mut w2 = b
        .create(
            "/leased",
            CreateOptions {
                overwrite: true,
                ..Default::default()
            },
        )
        .await?;
    w2.write_all(b"second").await?;
    w2.shutdown().await?;
    assert_eq!(read_file(&a, "/leased").await?, b"second");
    Ok(())
}

/// The namenode's limits as `dfs` meets them: a block size below
/// `min_block_size`, a file past `max_blocks_per_file` (lowered to 2
/// here), and a `mv` that would make a path deeper than 1000 components.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fs_limits_refuse_small_blocks_long_files_and_too_deep_moves() -> anyhow::Result<()> {
    let mut builder = MiniCluster::builder().datanodes(1);
    builder.replication = 1;
    builder.extra_namenode_args = vec!["--max-blocks-per-file".into(), "2".into()];
    let cluster = builder.start().await?;
    let dfs = Dfs::new(cluster.namenode_addr());
    tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
        let local = tempfile::tempdir()?;
        let file = |name: &str, len: usize| -> anyhow::Result<String> {
            let p = local.path().join(name);
            std::fs::write(&p, payload(len, 7))?;
            Ok(p.display().to_string())
        };

        // (a) A block size below the floor (1 MiB by default).
        let small = file("small", 10)?;
        let err = dfs.fails(&["put", "-b", "4k", &small, "/small"]);
        assert_eq!(
            err.trim_end(),
            "dfs: block size 4096 is below the namenode's minimum 1048576 (min_block_size)"
        );
        dfs.ok(&["put", "-b", "1m", &small, "/small"]);

        // (b) Two 1 MiB blocks fit; the byte that needs a third is refused.
        dfs.ok(&["put", &file("two", 2 * MIB)?, "/two"]);
        let err = dfs.fails(&["put", &file("three", 2 * MIB + 1)?, "/three"]);
        assert_eq!(
            err.trim_end(),
            "dfs: /three._COPYING_: block 3 would exceed the namenode's limit of 2 blocks \
             per file (max_blocks_per_file)"
        );
        let ls = dfs.ok(&["ls", "/"]);
        assert!(!ls.contains("/three"), "the failed put left nothing:\n{ls}");

        // (c) /s is 600 levels high; /t/x…x is 400 components deep.
        let chain = |n: usize| "/x".repeat(n);
        dfs.ok(&["mkdir", "-p", &format!("/s/a{}", chain(599))]);
        let deep = format!("/t{}", chain(399));
        dfs.ok(&["mkdir", "-p", &deep]);
        let err = dfs.fails(&["mv", "/s", &deep]);
        assert_eq!(
            err.trim_end(),
            format!(
                "dfs: cannot move /s to {deep}/s: {deep}/s would be 401 components deep with \
                 at least 600 levels below it, more than 1000 components in all"
            )
        );
        // One level up, the deepest path has exactly 1000 components, and
        // `ls -R` still names every entry.
        let up = format!("/t{}", chain(398));
        dfs.ok(&["mv", "/s", &up]);
        let deepest = format!("{up}/s/a{}", chain(599));
        assert_eq!(deepest.matches('/').count(), 1000);
        dfs.ok(&["stat", &deepest]);
        let lsr = dfs.ok(&["ls", "-R", "/t"]);
        assert!(
            lsr.lines().any(|l| l.ends_with(&deepest)),
            "ls -R lacks the deepest path"
        );
        Ok(())
    })
    .await?
}

/// `rm -r` of a directory larger than `delete_step` (lowered to 4 here):
/// gone for every client as soon as the call returns, with the totals
/// above it; its inodes are then freed in steps of at most 4 and its
/// blocks deleted from the datanodes, while a sibling stays untouched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_rm_r_is_gone_at_once_and_freed_in_bounded_steps() -> anyhow::Result<()> {
    let mut builder = MiniCluster::builder().datanodes(1);
    builder.replication = 1;
    builder.extra_namenode_args = vec!["--delete-step".into(), "4".into()];
    let cluster = builder.start().await?;
    let c = cluster.client().await?;
    let mut blocks = Vec::new();
    for d in 0..3 {
        for f in 0..5 {
            let path = format!("/big/d{d}/f{f}");
            write_file(&c, &path, &payload(100, f)).await?;
            blocks.extend(block_ids(&c, &path).await?);
        }
    }
    write_file(&c, "/keep", b"kept").await?;
    let data_dir = cluster.datanode_dirs(0)[0].clone();
    let on_disk = |id: u64| find_replicas(&data_dir, id).map(|r| !r.is_empty());
    assert!(on_disk(blocks[0])?, "the replicas are where the test looks");
    let http = cluster.namenode_http_addr();
    let metric = |text: &str, name: &str| metric_value(text, name).unwrap_or(-1.0);

    assert!(c.delete("/big", true).await?);
    assert!(c.get_file_info("/big").await?.is_none());
    assert!(c.get_file_info("/big/d0/f0").await?.is_none());
    let summary = c.content_summary("/").await?;
    assert_eq!((summary.file_count, summary.directory_count), (1, 1));
    assert_eq!(read_file(&c, "/keep").await?, b"kept");

    // 15 files, 3 directories and /big itself: 19 inodes, at most 4 a
    // step.
    let text = wait_for(
        "every removed inode freed",
        Duration::from_secs(20),
        || async {
            let text = fetch_metrics(http).await?;
            Ok((metric(&text, "rfs_namenode_reclaimed_inodes_total") >= 19.0).then_some(text))
        },
    )
    .await?;
    assert_eq!(metric(&text, "rfs_namenode_reclaimed_inodes_total"), 19.0);
    assert!(
        metric(&text, "rfs_namenode_reclaim_steps_total") >= 5.0,
        "{text}"
    );
    wait_for(
        "the removed blocks deleted",
        Duration::from_secs(20),
        || async {
            for &id in &blocks {
                if on_disk(id)? {
                    return Ok(None);
                }
            }
            Ok(Some(()))
        },
    )
    .await?;
    assert_eq!(read_file(&c, "/keep").await?, b"kept");
    // The name is free again at once, and a new tree there is whole.
    write_file(&c, "/big/d0/f0", b"new").await?;
    assert_eq!(read_file(&c, "/big/d0/f0").await?, b"new");
    Ok(())
}
