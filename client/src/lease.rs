//! Lease renewal: one background task per [`Client`], started at its first
//! `create`. It holds only a weak reference, so dropping the last clone of
//! the client (and every writer, which hold clones) ends it.

use std::sync::Weak;

use rfs_proto::namenode::RenewLeaseRequest;
use tokio::time::MissedTickBehavior;

use crate::client::{Client, Inner};

/// Starts the renewer of `client` unless it runs already.
pub(crate) fn ensure_renewer(client: &Client) {
    let Ok(mut slot) = client.inner.lease_renewer.lock() else {
        return;
    };
    if slot.as_ref().is_some_and(|h| !h.is_finished()) {
        return;
    }
    let weak = std::sync::Arc::downgrade(&client.inner);
    let every = client.inner.config.lease_renew_interval;
    *slot = Some(tokio::spawn(renew_loop(weak, every)));
}

async fn renew_loop(weak: Weak<Inner>, every: std::time::Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    tick.tick().await; // the first tick is immediate; create just took the lease
    loop {
        tick.tick().await;
        let Some(inner) = weak.upgrade() else { return };
        let req = RenewLeaseRequest {
            client_id: inner.client_id.clone(),
        };
        let rpc = inner.rpc.clone();
        drop(inner);
        if let Err(e) = rpc
            .call("renew_lease", req, |mut c, req| async move {
                c.renew_lease(req).await
            })
            .await
        {
            tracing::warn!("renewing the lease failed: {e}");
        }
    }
}
