//! The `namenode` binary as a process: acknowledged ops survive `kill -9`,
//! SIGTERM stops cleanly, bad configuration is one line and a non-zero exit,
//! and `/metrics` answers.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rfs_proto::namenode::client_protocol_client::ClientProtocolClient;
use rfs_proto::namenode::*;
use tonic::transport::Channel;

fn free_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

struct Proc {
    child: Child,
    rpc: SocketAddr,
    http: SocketAddr,
}

fn spawn(name_dir: &Path) -> Proc {
    let (rpc, http) = (free_addr(), free_addr());
    let child = Command::new(env!("CARGO_BIN_EXE_namenode"))
        .args(["--rpc-addr", &rpc.to_string()])
        .args(["--http-addr", &http.to_string()])
        .arg("--name-dir")
        .arg(name_dir)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    Proc { child, rpc, http }
}

async fn connect(p: &Proc) -> ClientProtocolClient<Channel> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let ch = Channel::from_shared(format!("http://{}", p.rpc))
            .unwrap()
            .connect()
            .await;
        match ch {
            Ok(ch) => return ClientProtocolClient::new(ch),
            Err(e) if Instant::now() > deadline => panic!("namenode never came up: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

async fn create_and_close(
    c: &mut ClientProtocolClient<Channel>,
    path: String,
) -> Result<String, tonic::Status> {
    c.create(CreateRequest {
        path: path.clone(),
        client_id: "crash-test".into(),
        create_parent: true,
        ..Default::default()
    })
    .await?;
    c.complete(CompleteRequest {
        call: None,
        path: path.clone(),
        client_id: "crash-test".into(),
        last: None,
        unwritten: None,
    })
    .await?;
    Ok(path)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_ops_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let name_dir = dir.path().join("name");
    let mut acked = Vec::new();
    for round in 0..3 {
        let mut p = spawn(&name_dir);
        let c = connect(&p).await;
        // Concurrent writers, killed mid-stream.
        let tasks: Vec<_> = (0..32)
            .map(|t| {
                let mut c = c.clone();
                tokio::spawn(async move {
                    let mut done = Vec::new();
                    for i in 0.. {
                        let path = format!("/r{round}/t{t}/f{i}");
                        match create_and_close(&mut c, path).await {
                            Ok(p) => done.push(p),
                            Err(_) => break,
                        }
                    }
                    done
                })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(700)).await;
        p.child.kill().unwrap(); // SIGKILL
        p.child.wait().unwrap();
        for t in tasks {
            acked.extend(t.await.unwrap());
        }
        assert!(
            acked.len() > 50,
            "too few ops before the kill: {}",
            acked.len()
        );
    }

    let mut p = spawn(&name_dir);
    let mut c = connect(&p).await;
    for path in &acked {
        let st = c
            .get_file_info(GetFileInfoRequest { path: path.clone() })
            .await
            .unwrap()
            .into_inner()
            .status;
        let st = st.unwrap_or_else(|| panic!("acknowledged {path} lost after kill -9"));
        assert!(!st.under_construction, "{path} was completed");
    }

    // Metrics are served and count what happened.
    let mut s = TcpStream::connect(p.http).unwrap();
    s.write_all(b"GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut body = String::new();
    s.read_to_string(&mut body).unwrap();
    assert!(body.contains("rfs_namenode_rpcs_total"), "{body}");

    // SIGTERM: clean stop, exit 0.
    let pid = p.child.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let status = p.child.wait().unwrap();
    assert!(status.success(), "SIGTERM exit: {status}");
}

fn fails_with(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_namenode"))
        .args(args)
        .output()
        .unwrap();
    assert!(!out.status.success(), "{args:?} should fail");
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    let last = err.lines().last().unwrap_or_default().to_string();
    assert!(last.starts_with("namenode: "), "{err}");
    last
}

#[test]
fn bad_setup_is_one_clear_line() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("file");
    std::fs::write(&file, "x").unwrap();
    let http = free_addr().to_string();
    let rpc = free_addr().to_string();
    let name_dir = dir.path().join("name");
    let name_dir = name_dir.to_str().unwrap();

    let e = fails_with(&[
        "--name-dir",
        file.to_str().unwrap(),
        "--rpc-addr",
        &rpc,
        "--http-addr",
        &http,
    ]);
    assert!(e.contains("name dir"), "{e}");

    let busy = TcpListener::bind("127.0.0.1:0").unwrap();
    let busy_addr = busy.local_addr().unwrap().to_string();
    let e = fails_with(&[
        "--rpc-addr",
        &busy_addr,
        "--http-addr",
        &http,
        "--name-dir",
        name_dir,
    ]);
    assert!(e.contains("cannot listen for RPC"), "{e}");

    let e = fails_with(&["--block-size", "1000", "--name-dir", name_dir]);
    assert!(e.contains("block-size 1000"), "{e}");

    let conf = dir.path().join("rfs.toml");
    std::fs::write(&conf, "[namenode]\nreplicaton = 2\n").unwrap();
    let e = fails_with(&["--config", conf.to_str().unwrap()]);
    assert!(e.contains("replicaton"), "{e}");
    std::fs::write(&conf, "[namenode]\nreplication = \n").unwrap();
    let e = fails_with(&["--config", conf.to_str().unwrap()]);
    assert!(e.contains("line 2"), "{e}");
}
