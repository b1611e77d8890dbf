//! The `dfs` binary against the fakes: put (file and stdin), cat, get,
//! stat, one-line errors with exit status 1, a namenode list with a
//! failover, `ls` of names holding control characters, `ls` printing page
//! by page, and `dfs admin ha status|transfer`.

mod fakes;

use std::io::Write;
use std::process::{Command, Output, Stdio};

use fakes::{
    start_datanode, BlockStore, DnBehaviour, FakeGroup, FakeHaAdmin, FakeNamenode, FileEntry,
};
use rfs_proto::ha::MemberStatus;

fn dfs(nn: &str, args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_dfs"));
    cmd.env("RFS_NAMENODE", nn);
    run(cmd, args, stdin)
}

/// `dfs` with neither RFS_NAMENODE nor RFS_CONF set.
fn dfs_bare(args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_dfs"));
    cmd.env_remove("RFS_NAMENODE");
    run(cmd, args, None)
}

/// Where every `dfs` of these tests keeps what it learns of namenode
/// groups: not the home directory of whoever runs the tests.
fn cache_dir() -> &'static std::path::Path {
    static DIR: std::sync::OnceLock<tempfile::TempDir> = std::sync::OnceLock::new();
    DIR.get_or_init(|| tempfile::tempdir().expect("a temp dir"))
        .path()
}

fn run(mut cmd: Command, args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut child = cmd
        .args(args)
        .env_remove("RFS_CONF")
        .env("XDG_CACHE_HOME", cache_dir())
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn dfs");
    if let Some(input) = stdin {
        child.stdin.take().unwrap().write_all(input).unwrap();
    }
    child.wait_with_output().unwrap()
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

fn fails(out: &Output) -> String {
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8(out.stderr.clone()).unwrap();
    assert_eq!(err.lines().count(), 1, "{err}");
    err.trim_end().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_cat_get_stat_and_errors() {
    let store = BlockStore::default();
    let how = DnBehaviour {
        max_packet: 64 * 1024,
        ..Default::default()
    };
    let dn = start_datanode("dn", store, how).await;
    let nn = FakeNamenode::default();
    {
        let mut s = nn.state();
        s.write_targets = vec![dn.info.clone()];
        s.read_locations = vec![dn.info.clone()];
    }
    let addr = nn.serve().await.to_string();
    tokio::task::spawn_blocking(move || {
        let dir = tempfile::tempdir().unwrap();
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let src = dir.path().join("src.bin");
        std::fs::write(&src, &data).unwrap();
        let src = src.to_str().unwrap();

        ok(&dfs(&addr, &["put", "-b", "64k", src, "/f.bin"], None));
        let err = fails(&dfs(&addr, &["put", src, "/f.bin"], None));
        assert_eq!(err, "dfs: /f.bin: File exists");
        ok(&dfs(&addr, &["put", "-f", src, "/f.bin"], None));
        ok(&dfs(&addr, &["put", "-", "/in.txt"], Some(b"from stdin\n")));
        assert_eq!(ok(&dfs(&addr, &["cat", "/in.txt"], None)), "from stdin\n");

        let back = dir.path().join("back.bin");
        ok(&dfs(
            &addr,
            &["get", "/f.bin", back.to_str().unwrap()],
            None,
        ));
        assert!(std::fs::read(&back).unwrap() == data);
        let err = fails(&dfs(
            &addr,
            &["get", "/f.bin", back.to_str().unwrap()],
            None,
        ));
        assert!(err.ends_with("back.bin: File exists"), "{err}");

        let stat = ok(&dfs(&addr, &["stat", "/f.bin"], None));
        assert!(stat.contains("Size:        200000"), "{stat}");
        assert!(stat.contains("Blocks:      4"), "{stat}");
        let ls = ok(&dfs(&addr, &["ls", "/f.bin"], None));
        assert!(
            ls.starts_with("-rw-r--r-- 1 ")
                && ls.trim_end().ends_with(" 200000 1970-01-01 00:00 /f.bin"),
            "{ls}"
        );

        // One failing path does not stop the others; exit 1 at the end.
        let out = dfs(&addr, &["cat", "/nope", "/in.txt"], None);
        assert_eq!(String::from_utf8_lossy(&out.stdout), "from stdin\n");
        assert_eq!(fails(&out), "dfs: /nope: No such file or directory");

        let err = fails(&dfs("127.0.0.1:1", &["ls", "/"], None));
        assert!(
            err.starts_with("dfs: cannot reach namenode at 127.0.0.1:1"),
            "{err}"
        );
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namenode_list_follows_the_leader() {
    let how = DnBehaviour {
        max_packet: 64 * 1024,
        ..Default::default()
    };
    let dn = start_datanode("dn", BlockStore::default(), how).await;
    let nn = FakeNamenode::default();
    {
        let mut s = nn.state();
        s.write_targets = vec![dn.info.clone()];
        s.read_locations = vec![dn.info.clone()];
    }
    let mut group = FakeGroup::start(3, Some(1), nn).await;
    let list = group.addr_list();
    let put = |path: &'static str| {
        let list = list.clone();
        tokio::task::spawn_blocking(move || {
            ok(&dfs(&list, &["put", "-", path], Some(b"ha\n")));
            ok(&dfs(&list, &["cat", path], None))
        })
    };
    assert_eq!(put("/a").await.unwrap(), "ha\n");
    // The leader goes away; the next member leads.
    group.set_leader(Some(2));
    group.stop(1).await;
    assert_eq!(put("/b").await.unwrap(), "ha\n");
    assert!(group.requests()[2] > 0);
}

/// Whether `c` could rewrite a terminal's lines or their order.
fn unsafe_on_a_terminal(c: char) -> bool {
    c.is_control()
        || ('\u{202a}'..='\u{202e}').contains(&c)
        || ('\u{2066}'..='\u{2069}').contains(&c)
}

/// Names stored before the namenode refused control characters (the fake
/// keeps any name): `ls` shows each escaped on its own line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ls_escapes_control_characters_in_names_already_stored() {
    let nn = FakeNamenode::default();
    {
        let mut s = nn.state();
        s.dirs.insert("/d".into());
        for name in [
            "\u{1b}[2Jclear",
            "two\nlines -rw-r--r-- 3 root root 0 2000-01-01 00:00 forged",
            "txt.\u{202e}exe",
            "csi\u{9b}31m",
            "plain é",
        ] {
            let f = FileEntry {
                complete: true,
                ..Default::default()
            };
            s.files.insert(format!("/d/{name}"), f);
        }
    }
    let addr = nn.serve().await.to_string();
    tokio::task::spawn_blocking(move || {
        let out = ok(&dfs(&addr, &["ls", "/d"], None));
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 6, "the count and one line per entry: {out:?}");
        assert!(
            !out.chars().any(|c| c != '\n' && unsafe_on_a_terminal(c)),
            "ls printed a raw control character: {out:?}"
        );
        for want in [
            "/d/\\u{1b}[2Jclear",
            "/d/two\\nlines -rw-r--r-- 3 root root 0 2000-01-01 00:00 forged",
            "/d/txt.\\u{202e}exe",
            "/d/csi\\u{9b}31m",
            "/d/plain é",
        ] {
            assert!(
                lines.iter().any(|l| l.ends_with(want)),
                "no line ends with {want:?}: {out:?}"
            );
        }
    })
    .await
    .unwrap();
}

/// A directory listed in pages of 3 whose second page fails (deleted
/// mid-listing): `ls` and `ls -R` have printed the first page's entries
/// before the failure, then say what failed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ls_prints_the_pages_before_the_one_that_failed() {
    let nn = FakeNamenode::default();
    {
        let mut s = nn.state();
        s.dirs.insert("/d".into());
        for name in ["a", "b", "c", "d", "e"] {
            let f = FileEntry {
                complete: true,
                ..Default::default()
            };
            s.files.insert(format!("/d/{name}"), f);
        }
        s.list_page_cap = Some(3);
    }
    let addr = nn.serve().await.to_string();
    for args in [&["ls", "/d"][..], &["ls", "-R", "/d"]] {
        nn.state().list_pages_before_failure = Some(1);
        let addr = addr.clone();
        let out = tokio::task::spawn_blocking(move || dfs(&addr, args, None))
            .await
            .unwrap();
        let printed = String::from_utf8(out.stdout.clone()).unwrap();
        let paths: Vec<&str> = printed
            .lines()
            .filter_map(|l| l.split_whitespace().last())
            .filter(|p| p.starts_with("/d/"))
            .collect();
        assert_eq!(
            paths,
            ["/d/a", "/d/b", "/d/c"],
            "dfs {args:?} printed before the second page failed:\n{printed}"
        );
        assert_eq!(fails(&out), "dfs: /d: No such file or directory");
    }
    // Without the failure, every page, in order, under one count.
    nn.state().list_pages_before_failure = None;
    let out = tokio::task::spawn_blocking(move || ok(&dfs(&addr, &["ls", "/d"], None)))
        .await
        .unwrap();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "Found 5 items", "{out}");
    let paths: Vec<&str> = lines[1..]
        .iter()
        .filter_map(|l| l.split_whitespace().last())
        .collect();
    assert_eq!(paths, ["/d/a", "/d/b", "/d/c", "/d/d", "/d/e"], "{out}");
}

fn member(
    id: &str,
    role: &str,
    witness: bool,
    term: u64,
    commit: u64,
    applied: u64,
) -> MemberStatus {
    MemberStatus {
        id: id.into(),
        role: role.into(),
        witness,
        term,
        commit_index: commit,
        applied_index: applied,
        leader_id: "nn1".into(),
        ..Default::default()
    }
}

/// The whitespace-separated cells of the row whose first cell is `id`.
fn row<'a>(table: &'a str, id: &str) -> Vec<&'a str> {
    table
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|cells| cells.first() == Some(&id))
        .unwrap_or_else(|| panic!("no row {id} in\n{table}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_ha_status_and_transfer() {
    let addrs = FakeHaAdmin::start(vec![
        member("nn1", "leader", false, 7, 120, 120),
        member("nn2", "follower", false, 7, 118, 115),
        member("w", "follower", true, 7, 120, 119),
    ])
    .await;
    // A member that is down: a port nobody listens on any more.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let all = format!("{},{},{},{dead}", addrs[0], addrs[1], addrs[2]);
    let followers = format!("{},{}", addrs[1], addrs[2]);
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("rfs.toml");
    std::fs::write(
        &conf,
        format!(
            "[ha]\n[[ha.member]]\nid = \"nn1\"\nrpc_addr = \"{}\"\n\
             [[ha.member]]\nid = \"nn3\"\nrpc_addr = \"{dead}\"\n",
            addrs[0]
        ),
    )
    .unwrap();
    tokio::task::spawn_blocking(move || {
        let table = ok(&dfs(&all, &["admin", "ha", "status"], None));
        let header: Vec<_> = table.lines().next().unwrap().split_whitespace().collect();
        assert_eq!(
            header,
            ["ID", "ADDRESS", "ROLE", "TERM", "COMMIT", "APPLIED", "LAG"]
        );
        let a = |i: usize| addrs[i].to_string();
        assert_eq!(
            row(&table, "nn1"),
            ["nn1", a(0).as_str(), "leader", "7", "120", "120", "0"]
        );
        assert_eq!(
            row(&table, "nn2")[2..],
            ["follower", "7", "118", "115", "5"]
        );
        assert_eq!(
            row(&table, "w")[2..],
            ["follower", "(witness)", "7", "120", "119", "1"]
        );
        // The unreachable member: its address and why, no id known.
        let down = row(&table, "-");
        assert_eq!(down[1], dead.to_string());
        assert_eq!(down[2], "unreachable:");
        assert!(down.join(" ").contains("Connection refused"), "{table}");
        assert_eq!(table.lines().count(), 5, "{table}");

        // No leader among those asked: rows without lag, exit 1.
        let out = dfs(&followers, &["admin", "ha", "status"], None);
        let table = String::from_utf8(out.stdout.clone()).unwrap();
        assert_eq!(row(&table, "nn2").last(), Some(&"-"));
        assert_eq!(
            fails(&out),
            "dfs: no leader answered (2 of 2 members reachable)"
        );

        // Members from [[ha.member]]; the unreachable one keeps its id.
        let conf = conf.to_str().unwrap();
        let table = ok(&dfs_bare(&["--config", conf, "admin", "ha", "status"]));
        assert_eq!(row(&table, "nn1")[2], "leader");
        assert_eq!(row(&table, "nn3")[2], "unreachable:");

        // Transfers: the leader's refusals keep its text; a real one moves
        // the leader to the next term.
        let err = fails(&dfs(&all, &["admin", "ha", "transfer", "w"], None));
        assert_eq!(
            err,
            "dfs: cannot transfer leadership to w: w is a witness and cannot lead"
        );
        let err = fails(&dfs(&all, &["admin", "ha", "transfer", "nn9"], None));
        assert_eq!(
            err,
            "dfs: cannot transfer leadership to nn9: no member nn9 in the group"
        );
        let err = fails(&dfs(&followers, &["admin", "ha", "transfer", "nn2"], None));
        assert!(
            err.starts_with("dfs: cannot transfer leadership to nn2: no leader answered"),
            "{err}"
        );
        let out = ok(&dfs(&all, &["admin", "ha", "transfer", "nn2"], None));
        assert_eq!(out, "leadership transferred to nn2 (term 8)\n");
        let table = ok(&dfs(&all, &["admin", "ha", "status"], None));
        assert_eq!(row(&table, "nn2")[2..], ["leader", "8", "118", "115", "3"]);
        assert_eq!(row(&table, "nn1")[2], "follower");
        let out = ok(&dfs(&all, &["admin", "ha", "transfer", "nn2"], None));
        assert_eq!(out, "nn2 is already the leader (term 8)\n");
    })
    .await
    .unwrap();
}

/// What `dfs ARGS --help` prints.
fn help(args: &[&str]) -> String {
    let mut all = args.to_vec();
    all.push("--help");
    ok(&dfs_bare(&all))
}

#[test]
fn help_texts_say_each_thing_once_and_in_its_place() {
    let put = help(&["put"]);
    assert!(
        put.contains("Usage: dfs put [OPTIONS] <LOCAL>... <DST>"),
        "{put}"
    );
    let top = help(&[]);
    assert_eq!(
        top.matches("--replace-datanode-on-failure").count(),
        1,
        "{top}"
    );
    let count = help(&["count"]);
    assert!(
        count.contains("Usage: dfs count [OPTIONS] <PATHS>...")
            && count.contains("DIR_COUNT FILE_COUNT CONTENT_SIZE PATHNAME")
            && count.contains("-q"),
        "{count}"
    );
    for cmd in [&["put"][..], &["ls"], &["setrep"], &["admin", "report"]] {
        let text = help(cmd);
        assert!(
            !text.contains("replace-datanode-on-failure"),
            "dfs {cmd:?} --help repeats the global write policy:\n{text}"
        );
    }
}

#[test]
fn replication_beyond_what_the_namenode_allows_is_refused_before_asking() {
    for args in [&["setrep", "33", "/x"][..], &["put", "-r", "33", "-", "/x"]] {
        let out = dfs("127.0.0.1:1", args, None);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "dfs {args:?}: {err}");
        assert!(err.contains("33 is not in 1..=32"), "dfs {args:?}: {err}");
    }
}
