//! `dfs ls` and `ls -R` of directories too big for one `List` page (the
//! client asks 1000 entries a page): every entry once, in order, as the
//! namespace holds them.

use anyhow::Result;
use futures::stream::{self, StreamExt, TryStreamExt};
use rfs_client::{Client, CreateOptions};
use rfs_integration::MiniCluster;

use super::dfs::Dfs;

/// Entries directly in `/big`: three pages.
const TOP_DIRS: usize = 2100;
/// Entries in `/big/d0007`: two pages.
const NESTED_DIRS: usize = 1100;
/// Empty files in `/big`, named after every directory.
const FILES: usize = 3;

/// Directories (and their parents) made concurrently.
async fn mkdirs(client: &Client, paths: &[String]) -> Result<()> {
    stream::iter(paths)
        .map(|p| async move { client.mkdirs(p, true).await })
        .buffer_unordered(64)
        .try_collect::<Vec<bool>>()
        .await?;
    Ok(())
}

/// The paths `dfs ls` printed, in order (the last field of each line).
fn listed(ls: &str) -> Vec<&str> {
    ls.lines()
        .filter_map(|l| l.split_whitespace().last())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ls_and_ls_r_of_several_pages_print_every_entry_in_order() -> Result<()> {
    let cluster = MiniCluster::builder().datanodes(0).start().await?;
    let client = cluster.client().await?;
    let top: Vec<String> = (0..TOP_DIRS).map(|i| format!("/big/d{i:04}")).collect();
    let nested: Vec<String> = (0..NESTED_DIRS)
        .map(|i| format!("/big/d0007/e{i:04}"))
        .collect();
    mkdirs(&client, &top).await?;
    mkdirs(&client, &nested).await?;
    let files: Vec<String> = (0..FILES).map(|i| format!("/big/f{i}")).collect();
    for f in &files {
        client
            .create(f, CreateOptions::default())
            .await?
            .close()
            .await?;
    }
    // Names sort as the walk goes: '/' before every character in them.
    let mut in_big: Vec<String> = top.iter().chain(&files).cloned().collect();
    in_big.sort();
    let mut under_big: Vec<String> = in_big.iter().chain(&nested).cloned().collect();
    under_big.sort();

    let dfs = Dfs::new(cluster.namenode_addr());
    let big = tokio::task::spawn_blocking({
        let dfs = dfs.clone();
        move || dfs.ok(&["ls", "/big"])
    })
    .await?;
    let (count, entries) = big.split_once('\n').unwrap_or_default();
    assert_eq!(count, format!("Found {} items", TOP_DIRS + FILES));
    assert!(
        listed(entries) == in_big,
        "ls /big differs from the namespace"
    );

    let nested_ls = tokio::task::spawn_blocking({
        let dfs = dfs.clone();
        move || dfs.ok(&["ls", "/big/d0007"])
    })
    .await?;
    assert_eq!(listed(&nested_ls)[1..], nested[..]);

    let recursive = tokio::task::spawn_blocking(move || dfs.ok(&["ls", "-R", "/big"])).await?;
    let got = listed(&recursive);
    assert_eq!(
        got.len(),
        under_big.len(),
        "ls -R /big printed {} entries",
        got.len()
    );
    assert!(got == under_big, "ls -R /big differs from the namespace");
    // Directories show as such, files as files.
    let line_of = |path: &str| {
        recursive
            .lines()
            .find(|l| l.ends_with(&format!(" {path}")))
            .unwrap_or_default()
            .to_string()
    };
    assert!(line_of("/big/d0007/e1099").starts_with("drwxr-xr-x"));
    assert!(line_of("/big/f2").starts_with("-rw-r--r--"));
    Ok(())
}

/// `(owner, group, path)` of each entry line `dfs ls` printed.
fn owned(ls: &str) -> Vec<(&str, &str, &str)> {
    ls.lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .filter_map(|f| match f[..] {
            [_perm, _repl, owner, group, _size, _day, _time, path] => Some((owner, group, path)),
            _ => None,
        })
        .collect()
}

/// A `List` page sends each entry's name and each owner once; `dfs ls`,
/// `ls -R` and `du` still show every entry's own owner and full path.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ls_and_du_show_each_entrys_owner_and_full_path() -> Result<()> {
    let cluster = MiniCluster::builder().datanodes(0).start().await?;
    let dfs = Dfs::new(cluster.namenode_addr());
    let (ls, ls_r, ls_file, du) = tokio::task::spawn_blocking(move || {
        let as_user = |user: &str, args: &[&str]| {
            let out = dfs
                .command(args)
                .env("USER", user)
                .output()
                .expect("dfs runs");
            assert!(
                out.status.success(),
                "dfs {args:?} as {user}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        as_user("alice", &["mkdir", "-p", "/shared/a"]);
        as_user("bob", &["mkdir", "/shared/b"]);
        as_user("carol", &["touchz", "/shared/c"]);
        as_user("bob", &["touchz", "/shared/a/x"]);
        (
            dfs.ok(&["ls", "/shared/"]),
            dfs.ok(&["ls", "-R", "/shared"]),
            dfs.ok(&["ls", "/shared/c"]),
            dfs.ok(&["du", "/shared"]),
        )
    })
    .await?;
    let group = "supergroup";
    assert_eq!(
        owned(&ls),
        [
            ("alice", group, "/shared/a"),
            ("bob", group, "/shared/b"),
            ("carol", group, "/shared/c"),
        ],
        "{ls}"
    );
    assert_eq!(
        owned(&ls_r),
        [
            ("alice", group, "/shared/a"),
            ("bob", group, "/shared/a/x"),
            ("bob", group, "/shared/b"),
            ("carol", group, "/shared/c"),
        ],
        "{ls_r}"
    );
    assert_eq!(
        owned(&ls_file),
        [("carol", group, "/shared/c")],
        "{ls_file}"
    );
    assert_eq!(listed(&du), ["/shared/a", "/shared/b", "/shared/c"], "{du}");
    Ok(())
}
