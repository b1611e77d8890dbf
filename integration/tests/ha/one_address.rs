//! `dfs` given ONE member's address, as the quickstart's plain `dfs` is
//! given 127.0.0.1:8020: it works whichever member leads, and goes on
//! working once that member is dead: in the process that learnt the group
//! (the client's failover proxy), and in later `dfs` runs (the group `dfs`
//! remembers under `XDG_CACHE_HOME`).

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use anyhow::Result;
use rfs_client::Client;
use rfs_integration::{bin_path, HaCluster, NN1, NN2};

use super::support::serial;

/// `dfs` told of one namenode address, remembering groups in `cache`.
#[derive(Clone)]
struct OneAddressDfs {
    addr: String,
    cache: PathBuf,
}

impl OneAddressDfs {
    fn with_cache(&self, cache: &Path) -> OneAddressDfs {
        OneAddressDfs {
            addr: self.addr.clone(),
            cache: cache.to_path_buf(),
        }
    }

    async fn run(&self, args: &[&str], stdin: Option<&'static [u8]>) -> Output {
        let mut cmd = Command::new(bin_path("dfs").expect("dfs built"));
        cmd.args(args)
            .env("RFS_NAMENODE", &self.addr)
            .env_remove("RFS_CONF")
            .env("XDG_CACHE_HOME", &self.cache)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        tokio::task::spawn_blocking(move || {
            let mut child = cmd.spawn().expect("spawn dfs");
            if let Some(input) = stdin {
                std::io::Write::write_all(&mut child.stdin.take().expect("piped"), input)
                    .expect("write stdin");
            }
            child.wait_with_output().expect("dfs output")
        })
        .await
        .expect("dfs ran")
    }

    /// Runs and expects success; returns stdout.
    async fn ok(&self, args: &[&str], stdin: Option<&'static [u8]>) -> String {
        let out = self.run(args, stdin).await;
        assert!(
            out.status.success(),
            "dfs {args:?} with RFS_NAMENODE={} failed: {}",
            self.addr,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("utf-8 stdout")
    }
}

/// The cells of the `dfs admin ha status` row of the member at `addr`.
fn row<'a>(table: &'a str, addr: &str) -> Vec<&'a str> {
    table
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|cells| cells.get(1) == Some(&addr))
        .unwrap_or_else(|| panic!("no row for {addr} in\n{table}"))
}

/// The paths `dfs ls` printed (the last field of each entry line).
fn listed(ls: &str) -> Vec<&str> {
    ls.lines()
        .filter(|l| !l.starts_with("Found "))
        .filter_map(|l| l.split_whitespace().last())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_member_address_is_enough_whichever_member_leads_and_after_it_dies() -> Result<()> {
    let _serial = serial().await;
    let mut cluster = HaCluster::start().await?;
    let leader = cluster.leader().await?;
    let given = if leader == NN1 { NN2 } else { NN1 };
    let dfs = OneAddressDfs {
        addr: cluster.member_addr(given),
        cache: cluster.root().join("dfs-cache"),
    };

    // Another member leads: the calls reach it, and the admin view shows
    // the whole group.
    dfs.ok(&["mkdir", "-p", "/one"], None).await;
    dfs.ok(&["put", "-", "/one/a"], Some(b"alpha\n")).await;
    let client = Client::connect(cluster.client_config_for(given)).await?;
    let status = dfs.ok(&["admin", "ha", "status"], None).await;
    for i in 0..cluster.member_count() {
        let role = if i == leader { "leader" } else { "follower" };
        let addr = cluster.member_addr(i);
        assert_eq!(
            row(&status, &addr)[..3],
            [cluster.member_id(i), addr.as_str(), role],
            "{status}"
        );
    }
    assert_eq!(
        status.lines().count(),
        1 + cluster.member_count(),
        "{status}"
    );

    // The one member given dies.
    cluster.kill_member(given);
    let status = dfs.ok(&["admin", "ha", "status"], None).await;
    assert_eq!(row(&status, &dfs.addr)[2], "unreachable:", "{status}");
    assert_eq!(
        row(&status, &cluster.member_addr(leader))[2],
        "leader",
        "{status}"
    );
    assert_eq!(listed(&dfs.ok(&["ls", "/one"], None).await), ["/one/a"]);
    dfs.ok(&["put", "-", "/one/b"], Some(b"beta\n")).await;
    assert_eq!(dfs.ok(&["cat", "/one/b"], None).await, "beta\n");
    client.mkdirs("/one/c", false).await?;

    // Nothing remembered and the one address dead: say what to do.
    let fresh = dfs.with_cache(&cluster.root().join("dfs-cache-fresh"));
    let out = fresh.run(&["ls", "/"], None).await;
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.starts_with(&format!("dfs: cannot reach namenode at {}: ", dfs.addr))
            && err.contains("--namenode")
            && err.lines().count() == 1,
        "{err}"
    );

    // The given member back and leading, then killed: the quickstart's
    // nn1 at 127.0.0.1:8020.
    cluster.start_member(given).await?;
    cluster.wait_caught_up(given).await?;
    cluster.transfer_leader(given).await?;
    dfs.ok(&["ls", "/one"], None).await;
    cluster.kill_member(given);
    dfs.ok(&["put", "-", "/one/d"], Some(b"delta\n")).await;
    assert_eq!(
        listed(&dfs.ok(&["ls", "/one"], None).await),
        ["/one/a", "/one/b", "/one/c", "/one/d"]
    );
    client.mkdirs("/one/e", false).await?;
    assert_eq!(dfs.ok(&["cat", "/one/d"], None).await, "delta\n");
    Ok(())
}
