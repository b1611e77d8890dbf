//! Naming and reaching datanodes.

use std::net::{IpAddr, SocketAddr};

use rfs_proto::common::DatanodeInfo;

/// `id (ip:port)` for messages.
pub(crate) fn describe(dn: &DatanodeInfo) -> String {
    let id = if dn.datanode_id.is_empty() {
        dn.hostname.as_str()
    } else {
        dn.datanode_id.as_str()
    };
    format!("{id} ({}:{})", host_of(dn), dn.data_port)
}

fn host_of(dn: &DatanodeInfo) -> &str {
    if dn.ip.is_empty() {
        &dn.hostname
    } else {
        &dn.ip
    }
}

/// The data-transfer address of `dn`; resolves a host name when no IP is
/// given.
pub(crate) async fn data_addr(dn: &DatanodeInfo) -> Result<SocketAddr, String> {
    let port = u16::try_from(dn.data_port)
        .map_err(|_| format!("data port {} is out of range", dn.data_port))?;
    let host = host_of(dn);
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, port));
    }
    tokio::net::lookup_host((host, port))
        .await
        .map_err(|e| format!("cannot resolve {host}: {e}"))?
        .next()
        .ok_or_else(|| format!("{host} resolves to no address"))
}

/// Whether `dn` runs on `client_host`.
pub(crate) fn is_local(dn: &DatanodeInfo, client_host: &str) -> bool {
    !client_host.is_empty() && (dn.ip == client_host || dn.hostname == client_host)
}
