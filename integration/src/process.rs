//! The processes of a test cluster: where the binaries are, free ports, one
//! log file per start, datanode command lines, and log tails for failure
//! messages. Shared by [`crate::MiniCluster`] and [`crate::HaCluster`].

use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::netns::NetNs;
use crate::replica_files::{find_replicas, ReplicaFiles};

/// Where the workspace's binaries are: `RFS_BIN_DIR`, else the directory of
/// the running executable when it holds them (a release `rfs-bench`), else
/// its parent (a test executable lives in `target/<profile>/deps/`).
pub fn bin_path(name: &str) -> Result<PathBuf> {
    let candidates = match std::env::var_os("RFS_BIN_DIR") {
        Some(d) => vec![PathBuf::from(d)],
        None => {
            let exe = std::env::current_exe()?;
            let dir = exe.parent().context("executable has no parent dir")?;
            let mut v = vec![dir.to_path_buf()];
            v.extend(dir.parent().map(Path::to_path_buf));
            v
        }
    };
    for dir in &candidates {
        let path = dir.join(name);
        if path.is_file() {
            return Ok(path);
        }
    }
    bail!(
        "{name} not found in {}: build the daemons first (cargo build --bins)",
        candidates
            .iter()
            .map(|d| d.display().to_string())
            .collect::<Vec<_>>()
            .join(" or ")
    )
}

/// A free port on 127.0.0.1 (the probe socket is closed on return).
pub fn free_port() -> Result<u16> {
    free_port_on(IpAddr::V4(Ipv4Addr::LOCALHOST))
}

/// Ports handed out by [`free_port_on`]: below Linux's ephemeral range
/// (32768 and up), which the kernel also gives to outgoing connections, so
/// a port probed free cannot be taken by some client socket before the
/// daemon binds it; and never the same twice within one test process.
const PORTS: std::ops::Range<u16> = 20_000..32_000;

/// A free port on `ip`, which must be a local address.
pub fn free_port_on(ip: IpAddr) -> Result<u16> {
    use std::sync::atomic::{AtomicU16, Ordering};
    use std::sync::OnceLock;
    static NEXT: OnceLock<AtomicU16> = OnceLock::new();
    let span = PORTS.end - PORTS.start;
    // Test processes run one after another, each from its own place.
    let next = NEXT.get_or_init(|| AtomicU16::new(rand::random::<u16>() % span));
    for _ in 0..span {
        let port = PORTS.start + next.fetch_add(1, Ordering::Relaxed) % span;
        if TcpListener::bind(SocketAddr::new(ip, port)).is_ok() {
            return Ok(port);
        }
    }
    bail!("no free port on {ip} in {PORTS:?}")
}

/// The Prometheus text a daemon serves at `http://addr/metrics`.
pub async fn fetch_metrics(addr: SocketAddr) -> Result<String> {
    const LIMIT: std::time::Duration = std::time::Duration::from_secs(2);
    tokio::task::spawn_blocking(move || -> Result<String> {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect_timeout(&addr, LIMIT)?;
        s.set_read_timeout(Some(LIMIT))?;
        write!(
            s,
            "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
        )?;
        let mut text = String::new();
        s.read_to_string(&mut text)?;
        let (head, body) = text.split_once("\r\n\r\n").context("no HTTP body")?;
        if !head.starts_with("HTTP/1.1 200") {
            bail!(
                "GET http://{addr}/metrics: {}",
                head.lines().next().unwrap_or("")
            );
        }
        Ok(body.to_string())
    })
    .await?
}

/// The sum of every sample of metric `name` (all label sets) in
/// Prometheus text, or `None` when it has none.
pub fn metric_value(text: &str, name: &str) -> Option<f64> {
    let mut sum = None;
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        if !(rest.starts_with(' ') || rest.starts_with('{')) {
            continue;
        }
        if let Some(v) = rest.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()) {
            *sum.get_or_insert(0.0) += v;
        }
    }
    sum
}

/// A temp dir holding every daemon's files and one log file per start.
pub(crate) struct Daemons {
    root: tempfile::TempDir,
    log_seq: u32,
}

impl Daemons {
    /// A new root dir named `<prefix>…`, under `parent` or the system temp dir.
    pub(crate) fn new(prefix: &str, parent: Option<&Path>) -> Result<Daemons> {
        let mut b = tempfile::Builder::new();
        b.prefix(prefix);
        let root = match parent {
            Some(p) => {
                std::fs::create_dir_all(p)?;
                b.tempdir_in(p)?
            }
            None => b.tempdir()?,
        };
        Ok(Daemons { root, log_seq: 0 })
    }

    pub(crate) fn root(&self) -> &Path {
        self.root.path()
    }

    /// Starts `bin` with `args`, stdout and stderr to `<root>/<log>.<n>.log`.
    /// `wrapper` is a command line the binary runs under (e.g. `ip netns
    /// exec NS`); it must exec the binary in place, so that the child's pid
    /// is the daemon's and `kill -9` reaches it.
    pub(crate) fn spawn(
        &mut self,
        bin: &str,
        log: &str,
        args: &[String],
        wrapper: &[String],
    ) -> Result<Child> {
        self.log_seq += 1;
        let path = self.root().join(format!("{log}.{}.log", self.log_seq));
        let out = std::fs::File::create(path)?;
        let err = out.try_clone()?;
        let exe = bin_path(bin)?;
        let mut cmd = match wrapper.split_first() {
            None => Command::new(&exe),
            Some((program, rest)) => {
                let mut c = Command::new(program);
                c.args(rest).arg(&exe);
                c
            }
        };
        cmd.args(args)
            .env(
                "RUST_LOG",
                std::env::var("RFS_TEST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .with_context(|| format!("spawning {bin}"))
    }

    /// The whole log of the latest start named `log`.
    pub(crate) fn latest_log(&self, log: &str) -> Result<String> {
        let prefix = format!("{log}.");
        let latest = std::fs::read_dir(self.root())?
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                let seq: u32 = name
                    .strip_prefix(&prefix)?
                    .strip_suffix(".log")?
                    .parse()
                    .ok()?;
                Some((seq, e.path()))
            })
            .max_by_key(|(seq, _)| *seq);
        let Some((_, path)) = latest else {
            bail!("no log of {log} in {}", self.root().display());
        };
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))
    }

    /// The last lines of every log, oldest start first, for failure messages.
    pub(crate) fn log_tails(&self) -> String {
        let mut out = String::new();
        if let Ok(entries) = std::fs::read_dir(self.root()) {
            let mut logs: Vec<_> = entries
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|e| e == "log"))
                .collect();
            logs.sort();
            for p in logs {
                let text = std::fs::read_to_string(&p).unwrap_or_default();
                let lines: Vec<&str> = text.lines().collect();
                let tail = &lines[lines.len().saturating_sub(15)..];
                out.push_str(&format!("--- {} ---\n{}\n", p.display(), tail.join("\n")));
            }
        }
        out
    }

    /// Leaves the root dir on disk (and says where) instead of deleting it
    /// when `RFS_KEEP_CLUSTER` is set and the thread is panicking, or
    /// always when it is `all` (tests that fail by returning an error do
    /// not panic while their cluster drops).
    pub(crate) fn keep_if_panicking(&mut self) {
        let keep = match std::env::var("RFS_KEEP_CLUSTER") {
            Ok(v) if v == "all" => true,
            Ok(_) => std::thread::panicking(),
            Err(_) => false,
        };
        if keep {
            if let Ok(fresh) = tempfile::tempdir() {
                let kept = std::mem::replace(&mut self.root, fresh).keep();
                eprintln!("keeping cluster dir {}", kept.display());
            }
        }
    }
}

/// kill -9 and reap a child, if there is one.
pub(crate) fn kill(child: &mut Option<Child>) {
    if let Some(mut c) = child.take() {
        let _ = c.kill();
        let _ = c.wait();
    }
}

/// Freezes (SIGSTOP) or thaws (SIGCONT) `child`: a process that stalls
/// without dying or losing its connections. `what` names it in errors.
pub(crate) fn pause(child: &Option<Child>, paused: bool, what: &str) -> Result<()> {
    signal(
        child,
        if paused { libc::SIGSTOP } else { libc::SIGCONT },
        what,
    )
}

/// Sends `child` signal `sig`. `what` names it in errors.
pub(crate) fn signal(child: &Option<Child>, sig: i32, what: &str) -> Result<()> {
    let Some(child) = child else {
        bail!("{what} is not running");
    };
    // SAFETY: kill(2) on a child process we started and still own.
    if unsafe { libc::kill(child.id() as i32, sig) } != 0 {
        bail!("signalling {what}: {}", std::io::Error::last_os_error());
    }
    Ok(())
}

/// The exit status of a child that has exited (the slot is emptied then).
pub(crate) fn exited(child: &mut Option<Child>) -> Result<Option<ExitStatus>> {
    if let Some(c) = child.as_mut() {
        if let Some(status) = c.try_wait()? {
            *child = None;
            return Ok(Some(status));
        }
    }
    Ok(None)
}

/// Settings every datanode of a test cluster shares.
#[derive(Debug, Clone)]
pub(crate) struct DatanodeSettings {
    pub bytes_per_checksum: u32,
    pub heartbeat_ms: u64,
    /// The datanodes' pipeline ack timeout, the same as the clients'
    /// datanode timeout (see `rfs_proto::transfer::pipeline_timeout`).
    pub ack_timeout_ms: u64,
    /// Period of full block reports; the datanode's default when `None`.
    pub block_report_ms: Option<u64>,
}

/// One datanode: its dirs and fixed addresses (kept across restarts).
pub(crate) struct DatanodeSlot {
    pub data_dirs: Vec<PathBuf>,
    pub data_addr: SocketAddr,
    pub http_addr: SocketAddr,
    /// The command line it runs under (`ip netns exec NS`), else empty.
    pub wrapper: Vec<String>,
    pub child: Option<Child>,
}

impl DatanodeSlot {
    /// Slot `i` under `root`, with free ports on `ip`.
    pub(crate) fn new(root: &Path, i: usize, ip: IpAddr) -> Result<DatanodeSlot> {
        Ok(DatanodeSlot {
            data_dirs: vec![root.join(format!("dn{i}"))],
            data_addr: SocketAddr::new(ip, free_port_on(ip)?),
            http_addr: SocketAddr::new(ip, free_port_on(ip)?),
            wrapper: Vec::new(),
            child: None,
        })
    }

    /// Slot `i` under `root`, run inside `ns` on the namespace's address.
    /// Its ports are probed on the host end of the link: the namespace is
    /// new, so any port is free there, and ports are never handed out twice.
    pub(crate) fn in_netns(root: &Path, i: usize, ns: &NetNs) -> Result<DatanodeSlot> {
        let ip = ns.ns_ip();
        Ok(DatanodeSlot {
            data_dirs: vec![root.join(format!("dn{i}"))],
            data_addr: SocketAddr::new(ip, free_port_on(ns.host_ip())?),
            http_addr: SocketAddr::new(ip, free_port_on(ns.host_ip())?),
            wrapper: ns.wrapper(),
            child: None,
        })
    }

    /// Starts datanode `i` reporting to every address in `namenodes`.
    pub(crate) fn start(
        &mut self,
        daemons: &mut Daemons,
        i: usize,
        namenodes: &[String],
        s: &DatanodeSettings,
    ) -> Result<()> {
        let mut args = Vec::new();
        for nn in namenodes {
            args.push("--namenode".to_string());
            args.push(nn.clone());
        }
        args.extend([
            "--data-addr".into(),
            self.data_addr.to_string(),
            "--http-addr".into(),
            self.http_addr.to_string(),
            "--bytes-per-checksum".into(),
            s.bytes_per_checksum.to_string(),
            "--heartbeat-interval-ms".into(),
            s.heartbeat_ms.to_string(),
            "--ack-timeout-ms".into(),
            s.ack_timeout_ms.to_string(),
        ]);
        if let Some(ms) = s.block_report_ms {
            args.extend(["--block-report-interval-ms".into(), ms.to_string()]);
        }
        for d in &self.data_dirs {
            args.push("--data-dir".into());
            args.push(d.display().to_string());
        }
        let log = format!("dn{i}");
        self.child = Some(daemons.spawn("datanode", &log, &args, &self.wrapper)?);
        Ok(())
    }

    /// Waits until the datanode takes connections on its data address. A
    /// restarted node can still count as live at the namenode from before
    /// it was killed, so the live count alone does not say it serves.
    pub(crate) async fn wait_serving(&self, within: Duration) -> Result<()> {
        let deadline = Instant::now() + within;
        loop {
            match tokio::net::TcpStream::connect(self.data_addr).await {
                Ok(_) => return Ok(()),
                Err(e) if Instant::now() > deadline => bail!(
                    "datanode at {} takes no connections after {within:?}: {e}",
                    self.data_addr
                ),
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    }
}

/// Finalized replicas of `block_id` on every datanode, as (datanode index, files).
pub(crate) fn replicas_in(
    slots: &[DatanodeSlot],
    block_id: u64,
) -> Result<Vec<(usize, ReplicaFiles)>> {
    let mut out = Vec::new();
    for (i, d) in slots.iter().enumerate() {
        for dir in &d.data_dirs {
            for r in find_replicas(dir, block_id)? {
                out.push((i, r));
            }
        }
    }
    Ok(out)
}

/// Fails naming the first datanode that has exited, with the logs.
pub(crate) fn check_datanodes_alive(slots: &mut [DatanodeSlot], daemons: &Daemons) -> Result<()> {
    for (i, d) in slots.iter_mut().enumerate() {
        if let Some(status) = exited(&mut d.child)? {
            bail!("datanode {i} exited with {status}\n{}", daemons.log_tails());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::metric_value;

    #[test]
    fn metric_value_sums_label_sets_and_skips_prefixes() {
        let text = "# TYPE a counter\na{x=\"1\"} 2\na{x=\"2\"} 3.5\nab 100\nb 7\n";
        assert_eq!(metric_value(text, "a"), Some(5.5));
        assert_eq!(metric_value(text, "b"), Some(7.0));
        assert_eq!(metric_value(text, "c"), None);
    }
}
