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
