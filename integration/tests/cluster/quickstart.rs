//! `scripts/quickstart.sh` as an operator runs it: the debug binaries
//! (`RFS_QUICKSTART_BIN`), a temp dir for data, logs and pids
//! (`RFS_QUICKSTART_DIR`), and the quickstart's own fixed ports, which must
//! be free (nothing else in the suite uses them).

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use rfs_integration::bin_path;

/// Every port `conf/rfs-ha.toml` and the script give the cluster.
const PORTS: [u16; 12] = [
    8020, 8021, 8022, 9870, 9871, 9872, 9866, 9867, 9868, 9864, 9865, 9869,
];

struct Quickstart {
    dir: tempfile::TempDir,
    bin: tempfile::TempDir,
}

impl Quickstart {
    /// A quickstart whose `datanode` sleeps `RFS_TEST_DATANODE_DELAY_S`
    /// before it starts (a slow, loaded machine).
    fn new() -> anyhow::Result<Quickstart> {
        let bin = tempfile::tempdir()?;
        for name in ["namenode", "dfs"] {
            std::os::unix::fs::symlink(bin_path(name)?, bin.path().join(name))?;
        }
        let wrapper = bin.path().join("datanode");
        std::fs::write(
            &wrapper,
            format!(
                "#!/bin/sh\nsleep \"${{RFS_TEST_DATANODE_DELAY_S:-0}}\"\nexec {} \"$@\"\n",
                bin_path("datanode")?.display()
            ),
        )?;
        let mut perms = std::fs::metadata(&wrapper)?.permissions();
        std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
        std::fs::set_permissions(&wrapper, perms)?;
        Ok(Quickstart {
            dir: tempfile::tempdir()?,
            bin,
        })
    }

    fn run(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/quickstart.sh");
        Command::new(script)
            .args(args)
            .env("RFS_QUICKSTART_BIN", self.bin.path())
            .env("RFS_QUICKSTART_DIR", self.dir.path())
            .env("XDG_CACHE_HOME", self.cache_dir())
            .envs(env.iter().copied())
            .output()
            .expect("run quickstart.sh")
    }

    /// Where the script's `dfs` and [`Quickstart::plain_dfs`] remember
    /// the group.
    fn cache_dir(&self) -> PathBuf {
        self.dir.path().join("cache")
    }

    /// `dfs ARGS` as a user runs it after the quickstart: no flags, no
    /// RFS_NAMENODE or RFS_CONF, so it is given 127.0.0.1:8020 (nn1) only.
    fn plain_dfs(&self, args: &[&str]) -> Output {
        Command::new(self.bin.path().join("dfs"))
            .args(args)
            .env_remove("RFS_NAMENODE")
            .env_remove("RFS_CONF")
            .env("XDG_CACHE_HOME", self.cache_dir())
            .output()
            .expect("run dfs")
    }

    fn log(&self, name: &str) -> PathBuf {
        self.dir.path().join("logs").join(name)
    }

    fn pid(&self, name: &str) -> i32 {
        let path = self.dir.path().join("pids").join(format!("{name}.pid"));
        std::fs::read_to_string(&path)
            .expect("pid file")
            .trim()
            .parse()
            .expect("a pid")
    }
}

impl Drop for Quickstart {
    fn drop(&mut self) {
        let _ = self.run(&["stop"], &[]);
    }
}

fn text(out: &Output) -> String {
    format!(
        "exit {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quickstart_waits_out_a_slow_start_keeps_old_logs_and_names_a_daemon_that_dies(
) -> anyhow::Result<()> {
    for port in PORTS {
        TcpListener::bind(("127.0.0.1", port)).unwrap_or_else(|e| {
            panic!("quickstart port {port} is taken ({e}): stop the cluster using it first")
        });
    }
    let qs = Quickstart::new()?;

    // Datanodes that take 40 s to start: the old script gave up at 30 s.
    let out = qs.run(&[], &[("RFS_TEST_DATANODE_DELAY_S", "40")]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("round trip OK"),
        "{}",
        text(&out)
    );
    let first = std::fs::read_to_string(qs.log("datanode1.log"))?;
    assert!(
        first.contains("data transfer listening on 127.0.0.1:9866"),
        "{first}"
    );
    for name in ["nn1.log", "witness.log", "datanode1.log"] {
        let log = std::fs::read(qs.log(name))?;
        assert!(
            !log.contains(&0x1b),
            "{name} holds terminal colour codes:\n{}",
            String::from_utf8_lossy(&log)
        );
    }

    // A datanode crashes; the restart keeps the log of the crashed run.
    // SAFETY: kill(2) on a pid the script started for this test.
    assert_eq!(unsafe { libc::kill(qs.pid("datanode1"), libc::SIGKILL) }, 0);
    let out = qs.run(&[], &[]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(std::fs::read_to_string(qs.log("datanode1.log.1"))?, first);
    assert!(std::fs::read_to_string(qs.log("datanode1.log"))?.contains("data transfer listening"));
    assert!(
        !qs.log("nn1.log.1").exists(),
        "nn1 kept running, so its log was not rotated"
    );

    // Plain `dfs` talks to 127.0.0.1:8020 (nn1); the quickstart's own dfs
    // calls taught it the group, so it goes on once nn1 is gone.
    let out = qs.plain_dfs(&["ls", "/demo"]);
    assert!(out.status.success(), "{}", text(&out));
    // SAFETY: kill(2) on a pid the script started for this test.
    assert_eq!(unsafe { libc::kill(qs.pid("nn1"), libc::SIGKILL) }, 0);
    let out = qs.plain_dfs(&["ls", "/demo"]);
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("/demo/sample.bin"),
        "{}",
        text(&out)
    );

    // A daemon that cannot start fails the start at once, by name.
    let out = qs.run(&["stop"], &[]);
    assert!(out.status.success(), "{}", text(&out));
    let _taken = TcpListener::bind("127.0.0.1:9868")?;
    let start = Instant::now();
    let out = qs.run(&[], &[("RFS_QUICKSTART_WAIT_S", "100")]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        stderr.contains("datanode3 exited while the cluster was starting")
            && stderr.contains("9868"),
        "{}",
        text(&out)
    );
    assert!(
        start.elapsed() < Duration::from_secs(60),
        "waited {:?} for a datanode that had exited",
        start.elapsed()
    );
    Ok(())
}
