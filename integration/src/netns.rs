//! A network namespace joined to the host by one veth pair, so that a test
//! can cut a process off the network and bring it back.
//!
//! ```text
//!   host netns                               netns rfs-<pid>-<n>
//!   rfsh<n> 10.201.<n>.1/24  ◄── veth ──►  rfsn<n> 10.201.<n>.2/24, lo up
//!   blackhole 10.201.<n>.0/24 metric 4000
//! ```
//!
//! A process started inside (see [`NetNs::wrapper`]) binds `10.201.<n>.2`;
//! everything it must talk to binds `10.201.<n>.1`, which is a local address
//! of the host, so host processes reach it too. [`NetNs::cut`] sets both
//! ends of the pair down; [`NetNs::restore`] brings them up again.
//!
//! Traffic goes nowhere else: the namespace has no default route (only its
//! own /24 and loopback), and while the link is down the host's blackhole
//! route keeps packets for the subnet from following the host's default
//! route out of the machine. Subnets are chosen under a lock file among those
//! no live test uses; namespaces left by a test process that died are
//! removed first. [`Drop`] deletes the namespace and the route, also when a
//! test panics.

use std::collections::BTreeSet;
use std::io;
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::AsRawFd;
use std::process::Command;

use anyhow::{bail, Context, Result};

const NAME_PREFIX: &str = "rfs-";
const ROUTE_METRIC: &str = "4000";

/// Why network namespaces cannot be used here, or `None` when they can.
/// An error naming why network namespaces cannot be used here, if they
/// cannot: a test that needs them fails, never passes without running.
pub fn require_netns() -> Result<()> {
    match netns_unavailable() {
        Some(why) => bail!("this test needs network namespaces (run it as root): {why}"),
        None => Ok(()),
    }
}

/// Why network namespaces cannot be used here, or `None` when they can.
pub fn netns_unavailable() -> Option<String> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return Some("network namespaces need root".into());
    }
    match Command::new("ip").args(["netns", "list"]).output() {
        Err(e) => Some(format!("`ip` (iproute2) cannot run: {e}")),
        Ok(o) if !o.status.success() => Some(format!(
            "`ip netns list` failed: {}",
            String::from_utf8_lossy(&o.stderr).trim()
        )),
        Ok(_) => None,
    }
}

/// Runs `ip args…`, failing with its stderr.
fn ip(args: &[&str]) -> Result<String> {
    let o = Command::new("ip")
        .args(args)
        .output()
        .context("running ip (iproute2)")?;
    if !o.status.success() {
        bail!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&o.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&o.stdout).into_owned())
}

fn subnet_route(n: u8) -> String {
    format!("10.201.{n}.0/24")
}

fn host_if(n: u8) -> String {
    format!("rfsh{n}")
}

fn ns_if(n: u8) -> String {
    format!("rfsn{n}")
}

/// Held while choosing and claiming a subnet: an flock on a file in /run.
struct SubnetLock(std::fs::File);

impl SubnetLock {
    fn take() -> Result<SubnetLock> {
        let f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open("/run/rfs-netns.lock")
            .context("opening /run/rfs-netns.lock")?;
        // SAFETY: flock on an open descriptor we own.
        if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) } != 0 {
            return Err(io::Error::last_os_error()).context("locking /run/rfs-netns.lock");
        }
        Ok(SubnetLock(f))
    }
}

impl Drop for SubnetLock {
    fn drop(&mut self) {
        // SAFETY: as above; closing the file would release it anyway.
        unsafe { libc::flock(self.0.as_raw_fd(), libc::LOCK_UN) };
    }
}

/// (pid, subnet) of every namespace this helper created, from its name.
fn our_namespaces() -> Result<Vec<(String, u32, u8)>> {
    let mut out = Vec::new();
    for line in ip(&["netns", "list"])?.lines() {
        let name = line.split_whitespace().next().unwrap_or("");
        let Some(rest) = name.strip_prefix(NAME_PREFIX) else {
            continue;
        };
        let mut parts = rest.split('-');
        if let (Some(Ok(pid)), Some(Ok(n)), None) = (
            parts.next().map(str::parse::<u32>),
            parts.next().map(str::parse::<u8>),
            parts.next(),
        ) {
            out.push((name.to_string(), pid, n));
        }
    }
    Ok(out)
}

/// Removes what a dead test process left behind; best effort.
fn remove_stale() -> Result<()> {
    for (name, pid, n) in our_namespaces()? {
        if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            let _ = ip(&["netns", "del", &name]);
            let _ = ip(&[
                "route",
                "del",
                "blackhole",
                &subnet_route(n),
                "metric",
                ROUTE_METRIC,
            ]);
            let _ = ip(&["link", "del", &host_if(n)]);
        }
    }
    Ok(())
}

/// Subnets in use: by namespaces, addresses, routes or links.
fn subnets_in_use() -> Result<BTreeSet<u8>> {
    let mut used: BTreeSet<u8> = our_namespaces()?.into_iter().map(|(_, _, n)| n).collect();
    let text = ip(&["-o", "-4", "addr", "show"])? + &ip(&["route", "show"])?;
    for piece in text.split(|c: char| c.is_whitespace() || c == '/') {
        if let Some(rest) = piece.strip_prefix("10.201.") {
            if let Some(Ok(n)) = rest.split('.').next().map(str::parse::<u8>) {
                used.insert(n);
            }
        }
    }
    for line in ip(&["-o", "link", "show"])?.lines() {
        for word in line.split_whitespace() {
            let word = word.trim_end_matches(':').split('@').next().unwrap_or("");
            for prefix in ["rfsh", "rfsn"] {
                if let Some(Ok(n)) = word.strip_prefix(prefix).map(str::parse::<u8>) {
                    used.insert(n);
                }
            }
        }
    }
    Ok(used)
}

/// A network namespace with one veth link to the host; deleted on drop.
pub struct NetNs {
    name: String,
    n: u8,
}

impl NetNs {
    /// Creates `rfs-<pid>-<n>` on the first free subnet `10.201.<n>.0/24`.
    pub fn create() -> Result<NetNs> {
        let _lock = SubnetLock::take()?;
        remove_stale()?;
        let used = subnets_in_use()?;
        let n = (1..=254u8)
            .find(|n| !used.contains(n))
            .context("every 10.201.<n>.0/24 subnet is in use")?;
        let ns = NetNs {
            name: format!("{NAME_PREFIX}{}-{n}", std::process::id()),
            n,
        };
        ns.set_up()
            .with_context(|| format!("creating netns {}", ns.name))?;
        Ok(ns)
    }

    fn set_up(&self) -> Result<()> {
        let (name, hif, nif) = (&self.name, host_if(self.n), ns_if(self.n));
        let host = format!("{}/24", self.host_ip());
        let inside = format!("{}/24", self.ns_ip());
        ip(&["netns", "add", name])?;
        ip(&["link", "add", &hif, "type", "veth", "peer", "name", &nif])?;
        ip(&["link", "set", &nif, "netns", name])?;
        ip(&["addr", "add", &host, "dev", &hif])?;
        ip(&[
            "route",
            "add",
            "blackhole",
            &subnet_route(self.n),
            "metric",
            ROUTE_METRIC,
        ])?;
        ip(&["-n", name, "addr", "add", &inside, "dev", &nif])?;
        ip(&["-n", name, "link", "set", "lo", "up"])?;
        self.restore()
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The host end of the link: bind here what the inside must reach.
    pub fn host_ip(&self) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(10, 201, self.n, 1))
    }

    /// The namespace's own address.
    pub fn ns_ip(&self) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(10, 201, self.n, 2))
    }

    /// The command line prefix that runs a program inside (`ip netns exec`
    /// execs the program in place, so its pid is the program's).
    pub fn wrapper(&self) -> Vec<String> {
        vec![
            "ip".into(),
            "netns".into(),
            "exec".into(),
            self.name.clone(),
        ]
    }

    /// Cuts the link: nothing passes between the namespace and the host
    /// until [`NetNs::restore`].
    pub fn cut(&self) -> Result<()> {
        ip(&["link", "set", &host_if(self.n), "down"])?;
        ip(&["-n", &self.name, "link", "set", &ns_if(self.n), "down"])?;
        Ok(())
    }

    /// Brings both ends of the link up.
    pub fn restore(&self) -> Result<()> {
        ip(&["link", "set", &host_if(self.n), "up"])?;
        ip(&["-n", &self.name, "link", "set", &ns_if(self.n), "up"])?;
        Ok(())
    }

    /// Runs `f` on a new thread that has entered the namespace: sockets it
    /// opens (e.g. from a current-thread tokio runtime built inside `f`)
    /// live in the namespace.
    pub fn run_inside<T, F>(&self, f: F) -> std::thread::JoinHandle<Result<T>>
    where
        T: Send + 'static,
        F: FnOnce() -> Result<T> + Send + 'static,
    {
        let path = format!("/run/netns/{}", self.name);
        std::thread::spawn(move || {
            let file = std::fs::File::open(&path).with_context(|| format!("opening {path}"))?;
            // SAFETY: setns on an open namespace descriptor; it changes only
            // this thread's network namespace.
            if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                return Err(io::Error::last_os_error()).context("setns into the test netns");
            }
            f()
        })
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        // Deleting the namespace destroys the veth pair once no process is
        // left inside it.
        let _ = ip(&["netns", "del", &self.name]);
        let _ = ip(&[
            "route",
            "del",
            "blackhole",
            &subnet_route(self.n),
            "metric",
            ROUTE_METRIC,
        ]);
        let _ = ip(&["link", "del", &host_if(self.n)]);
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::net::{SocketAddr, TcpListener, TcpStream};
    use std::time::Duration;

    use super::*;

    /// Connects from inside the namespace to `addr`, echoing one byte.
    fn reach_from_inside(ns: &NetNs, addr: SocketAddr) -> Result<()> {
        ns.run_inside(move || {
            let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
            s.write_all(b"x")?;
            Ok(())
        })
        .join()
        .map_err(|_| anyhow::anyhow!("inside thread panicked"))?
    }

    #[test]
    fn cut_partitions_the_namespace_and_restore_rejoins_it() -> Result<()> {
        require_netns()?;
        let ns = NetNs::create()?;
        let name = ns.name().to_string();
        let host = TcpListener::bind(SocketAddr::new(ns.host_ip(), 0))?;
        let addr = host.local_addr()?;
        let accept = std::thread::spawn(move || -> Result<u8> {
            let (mut s, _) = host.accept()?;
            let mut b = [0u8];
            s.read_exact(&mut b)?;
            Ok(b[0])
        });
        reach_from_inside(&ns, addr)?;
        assert_eq!(accept.join().expect("accept thread")?, b'x');
        // The namespace has an address of its own the host reaches.
        let inside = ns
            .run_inside(|| Ok(TcpListener::bind("0.0.0.0:0")?))
            .join()
            .expect("bind thread")?;
        let inside_addr = SocketAddr::new(ns.ns_ip(), inside.local_addr()?.port());
        TcpStream::connect_timeout(&inside_addr, Duration::from_secs(2))?;

        ns.cut()?;
        assert!(reach_from_inside(&ns, addr).is_err(), "cut: inside → host");
        assert!(
            TcpStream::connect_timeout(&inside_addr, Duration::from_secs(1)).is_err(),
            "cut: host → inside"
        );
        ns.restore()?;
        TcpStream::connect_timeout(&inside_addr, Duration::from_secs(2))?;

        drop(ns);
        let left = our_namespaces()?;
        assert!(
            left.iter().all(|(n, _, _)| *n != name),
            "{name} still there: {left:?}"
        );
        Ok(())
    }
}
