//! The `dfs` binary against the fakes: put (file and stdin), cat, get,
//! stat, and one-line errors with exit status 1.

mod fakes;

use std::io::Write;
use std::process::{Command, Output, Stdio};

use fakes::{start_datanode, BlockStore, DnBehaviour, FakeNamenode};

fn dfs(nn: &str, args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_dfs"))
        .args(args)
        .env("RFS_NAMENODE", nn)
        .env_remove("RFS_CONF")
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
