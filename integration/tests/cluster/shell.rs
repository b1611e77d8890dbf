//! The `dfs` shell as a user runs it: real binary, real cluster.

use rfs_integration::MiniCluster;

use super::common::{payload, MIB};
use super::dfs::Dfs;

fn blocking<F: FnOnce() -> anyhow::Result<()> + Send + 'static>(
    f: F,
) -> tokio::task::JoinHandle<anyhow::Result<()>> {
    tokio::task::spawn_blocking(f)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dfs_commands_round_trip_and_fail_clearly() -> anyhow::Result<()> {
    let cluster = MiniCluster::start().await?;
    let dfs = Dfs::new(cluster.namenode_addr());
    blocking(move || {
        let local = tempfile::tempdir()?;
        let big = payload(2 * MIB + 333, 1);
        let src = local.path().join("big.bin");
        std::fs::write(&src, &big)?;
        let tree = local.path().join("tree");
        std::fs::create_dir_all(tree.join("sub"))?;
        std::fs::write(tree.join("a.txt"), b"alpha\n")?;
        std::fs::write(tree.join("sub/b.txt"), b"beta\n")?;

        dfs.ok(&["mkdir", "-p", "/user/me"]);
        dfs.ok(&["put", src.to_str().unwrap(), "/user/me/big.bin"]);
        dfs.ok(&["put", tree.to_str().unwrap(), "/user/me/"]);
        let stdin_out =
            dfs.run_with_stdin(&["put", "-", "/user/me/stdin.txt"], Some(b"from stdin\n"));
        assert!(
            stdin_out.status.success(),
            "{}",
            String::from_utf8_lossy(&stdin_out.stderr)
        );

        let ls = dfs.ok(&["ls", "/user/me"]);
        for name in ["/user/me/big.bin", "/user/me/tree", "/user/me/stdin.txt"] {
            assert!(ls.contains(name), "ls lacks {name}:\n{ls}");
        }
        assert!(
            ls.lines()
                .any(|l| l.starts_with("-rw-r--r--") && l.contains(&(2 * MIB + 333).to_string())),
            "{ls}"
        );
        assert!(ls.lines().any(|l| l.starts_with("drwxr-xr-x")), "{ls}");
        let lsr = dfs.ok(&["ls", "-R", "/user"]);
        assert!(lsr.contains("/user/me/tree/sub/b.txt"), "{lsr}");
        assert_eq!(dfs.ok(&["cat", "/user/me/tree/sub/b.txt"]), "beta\n");
        assert_eq!(dfs.ok(&["cat", "/user/me/stdin.txt"]), "from stdin\n");

        let back = local.path().join("back.bin");
        dfs.ok(&["get", "/user/me/big.bin", back.to_str().unwrap()]);
        assert!(std::fs::read(&back)? == big, "get returns the bytes put");
        let tree_back = local.path().join("tree-back");
        dfs.ok(&["get", "/user/me/tree", tree_back.to_str().unwrap()]);
        assert_eq!(std::fs::read(tree_back.join("sub/b.txt"))?, b"beta\n");

        dfs.ok(&["mv", "/user/me/stdin.txt", "/user/me/moved.txt"]);
        assert!(dfs.ok(&["stat", "/user/me/moved.txt"]).contains("11"));
        dfs.ok(&["setrep", "2", "/user/me/moved.txt"]);
        let setrep = dfs.ok(&["ls", "/user/me/moved.txt"]);
        assert!(
            setrep.contains("-rw-r--r-- 2 "),
            "setrep 2 shows in ls: {setrep}"
        );
        dfs.ok(&[
            "put",
            "-r",
            "1",
            src.to_str().unwrap(),
            "/user/me/one-replica.bin",
        ]);
        let one = dfs.ok(&["stat", "/user/me/one-replica.bin"]);
        assert!(
            one.lines()
                .any(|l| l.contains("Replication") && l.trim_end().ends_with('1')),
            "{one}"
        );
        dfs.ok(&["rm", "/user/me/one-replica.bin"]);
        let human = dfs.ok(&["ls", "-h", "/user/me/big.bin"]);
        assert!(
            human.contains("2.00 MiB"),
            "ls -h shows human sizes: {human}"
        );
        dfs.ok(&["touchz", "/user/me/empty"]);
        assert!(dfs
            .ok(&["du", "-s", "/user/me"])
            .contains(&(2 * MIB + 333 + 6 + 5 + 11).to_string()));
        assert!(dfs.ok(&["df", "-h"]).lines().count() >= 2);

        // Errors: one line, named, exit 1.
        let err = dfs.fails(&["cat", "/nope"]);
        assert_eq!(err.trim_end(), "dfs: /nope: No such file or directory");
        let err = dfs.fails(&["put", src.to_str().unwrap(), "/user/me/big.bin"]);
        assert!(
            err.trim_end().ends_with("/user/me/big.bin: File exists"),
            "{err}"
        );
        assert_eq!(err.lines().count(), 1, "{err}");
        dfs.ok(&["put", "-f", src.to_str().unwrap(), "/user/me/big.bin"]);
        let err = dfs.fails(&["rm", "/user/me/tree"]);
        assert!(
            err.contains("/user/me/tree") && err.contains("Directory is not empty"),
            "{err}"
        );
        dfs.ok(&["rm", "-r", "/user/me/tree"]);
        let err = dfs.fails(&["ls", "/user/me/tree"]);
        assert!(err.contains("No such file or directory"), "{err}");
        let err = dfs.fails(&["mkdir", "/a//b"]);
        assert!(
            err.starts_with("dfs: ") && err.contains("invalid path"),
            "{err}"
        );

        // An unreachable namenode is a clear one-line error too.
        let dead = Dfs::new("127.0.0.1:1");
        let err = dead.fails(&["ls", "/"]);
        assert!(
            err.starts_with("dfs: ") && err.contains("127.0.0.1:1"),
            "{err}"
        );
        Ok(())
    })
    .await?
}

/// `dfs count PATH`'s numbers: (directories, files, bytes).
fn count(dfs: &Dfs, path: &str) -> (u64, u64, u64) {
    let out = dfs.ok(&["count", path]);
    let cols: Vec<&str> = out.split_whitespace().collect();
    assert_eq!(cols.len(), 4, "{out}");
    assert_eq!(cols[3], path, "{out}");
    let n = |i: usize| cols[i].parse::<u64>().expect("a count");
    (n(0), n(1), n(2))
}

/// `dfs du -s PATH`'s numbers: (bytes, bytes × replication).
fn du_s(dfs: &Dfs, path: &str) -> (u64, u64) {
    let out = dfs.ok(&["du", "-s", path]);
    let cols: Vec<&str> = out.split_whitespace().collect();
    assert_eq!(cols.len(), 3, "{out}");
    let n = |i: usize| cols[i].parse::<u64>().expect("a size");
    (n(0), n(1))
}

/// `dfs df`'s Files line.
fn df_files(dfs: &Dfs) -> u64 {
    let out = dfs.ok(&["df"]);
    let files = out
        .lines()
        .find_map(|l| l.strip_prefix("Files:"))
        .unwrap_or_else(|| panic!("no Files line: {out}"));
    files.trim().parse().expect("Files")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn count_du_and_df_agree_with_what_was_written() -> anyhow::Result<()> {
    let cluster = MiniCluster::start().await?;
    let dfs = Dfs::new(cluster.namenode_addr());
    blocking(move || {
        let local = tempfile::tempdir()?;
        let put = |len: usize, replication: &str, dst: &str| {
            let src = local.path().join("src");
            std::fs::write(&src, payload(len, len as u64))?;
            dfs.ok(&["put", "-r", replication, src.to_str().unwrap(), dst]);
            anyhow::Ok(())
        };
        let big = 2 * MIB + 5;
        dfs.ok(&["mkdir", "-p", "/t/x/y", "/t/z"]);
        put(1000, "1", "/t/a")?;
        put(big, "3", "/t/x/b")?;
        put(300, "3", "/t/x/y/c")?;
        let bytes = (1000 + big + 300) as u64;
        let space = (1000 + 3 * big + 3 * 300) as u64;
        // /t, /t/x, /t/x/y, /t/z.
        assert_eq!(count(&dfs, "/t"), (4, 3, bytes));
        assert_eq!(count(&dfs, "/t/x/b"), (0, 1, big as u64));
        assert_eq!(du_s(&dfs, "/t"), (bytes, space));
        assert_eq!(du_s(&dfs, "/t/x/y"), (300, 900));
        assert_eq!(df_files(&dfs), 3);
        // The root counts itself; HDFS's columns, widths and quota columns.
        assert_eq!(count(&dfs, "/"), (5, 3, bytes));
        assert_eq!(
            dfs.ok(&["count", "-q", "-v", "/t/x/y", "/t/z"]),
            format!(
                "{:>12} {:>15} {:>15} {:>15} {:>12} {:>12} {:>18} PATHNAME\n\
                 {:>12} {:>15} {:>15} {:>15} {:>12} {:>12} {:>18} /t/x/y\n\
                 {:>12} {:>15} {:>15} {:>15} {:>12} {:>12} {:>18} /t/z\n",
                "QUOTA",
                "REM_QUOTA",
                "SPACE_QUOTA",
                "REM_SPACE_QUOTA",
                "DIR_COUNT",
                "FILE_COUNT",
                "CONTENT_SIZE",
                "none",
                "inf",
                "none",
                "inf",
                1,
                1,
                300,
                "none",
                "inf",
                "none",
                "inf",
                1,
                0,
                0,
            )
        );

        // A move across directories leaves one parent's totals for the
        // other's, and the whole as it was.
        dfs.ok(&["mv", "/t/x/y", "/t/z"]);
        assert_eq!(count(&dfs, "/t/x"), (1, 1, big as u64));
        assert_eq!(count(&dfs, "/t/z"), (2, 1, 300));
        assert_eq!(count(&dfs, "/t"), (4, 3, bytes));
        assert_eq!(du_s(&dfs, "/t/z"), (300, 900));

        // A recursive delete takes its subtree out all the way up.
        dfs.ok(&["rm", "-r", "/t/x"]);
        assert_eq!(count(&dfs, "/t"), (3, 2, 1300));
        assert_eq!(du_s(&dfs, "/t"), (1300, 1000 + 900));
        assert_eq!(df_files(&dfs), 2);
        let err = dfs.fails(&["count", "/t/x"]);
        assert_eq!(err.trim_end(), "dfs: /t/x: No such file or directory");
        Ok(())
    })
    .await?
}
