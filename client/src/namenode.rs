//! The namenode connection: one tonic channel, every call time-limited and
//! its status mapped once into [`Error`].

use std::future::Future;
use std::time::Duration;

use rfs_proto::namenode::client_protocol_client::ClientProtocolClient;
use tonic::transport::{Channel, Endpoint};

use crate::error::{chain, Error, Result};

#[derive(Clone)]
pub(crate) struct NamenodeRpc {
    client: ClientProtocolClient<Channel>,
    addr: String,
    timeout: Duration,
}

impl NamenodeRpc {
    /// Connects to `addr` (`host:port`); a refused or silent namenode is
    /// "cannot reach namenode at {addr}: {reason}".
    pub(crate) async fn connect(addr: &str, timeout: Duration) -> Result<NamenodeRpc> {
        let unreachable = |reason: String| Error::NamenodeUnreachable {
            addr: addr.to_string(),
            reason,
        };
        let endpoint = Endpoint::from_shared(format!("http://{addr}"))
            .map_err(|e| Error::Config(format!("invalid namenode address {addr:?}: {e}")))?
            .connect_timeout(timeout)
            .timeout(timeout)
            .tcp_nodelay(true);
        let channel = match tokio::time::timeout(timeout, endpoint.connect()).await {
            Err(_) => return Err(unreachable(format!("no answer within {timeout:?}"))),
            Ok(Err(e)) => return Err(unreachable(chain(&e))),
            Ok(Ok(c)) => c,
        };
        Ok(NamenodeRpc {
            client: ClientProtocolClient::new(channel),
            addr: addr.to_string(),
            timeout,
        })
    }

    /// Runs one call under the RPC timeout and maps its status.
    pub(crate) async fn call<T, F, Fut>(&self, call: &'static str, f: F) -> Result<T>
    where
        F: FnOnce(ClientProtocolClient<Channel>) -> Fut,
        Fut: Future<Output = std::result::Result<tonic::Response<T>, tonic::Status>>,
    {
        match tokio::time::timeout(self.timeout, f(self.client.clone())).await {
            Err(_) => Err(Error::NamenodeTimeout {
                addr: self.addr.clone(),
                call,
                timeout: self.timeout,
            }),
            Ok(Err(status)) => Err(Error::from_status(&self.addr, &status)),
            Ok(Ok(resp)) => Ok(resp.into_inner()),
        }
    }
}
