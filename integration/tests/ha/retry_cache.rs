//! Non-idempotent calls retried on the new leader after a failover, with
//! the same call id, get their original result from the replicated retry
//! cache.

use std::time::Duration;

use anyhow::{ensure, Context, Result};
use rfs_integration::{metric_value, HaCluster};
use rfs_proto::namenode::{
    AddBlockRequest, CallId, CompleteRequest, CreateRequest, DeleteRequest, MkdirsRequest,
    RenameRequest,
};
use rfs_proto::rpc_error::{self, RpcErrorKind};

use super::support::{raw_client, serial};

const CLIENT_ID: &str = "retry-cache-test";
const TIMEOUT: Duration = Duration::from_secs(10);

fn call(call_id: u64) -> Option<CallId> {
    Some(CallId {
        client_id: CLIENT_ID.into(),
        call_id,
        ..Default::default()
    })
}

fn create(path: &str, call_id: u64) -> CreateRequest {
    CreateRequest {
        path: path.into(),
        client_id: CLIENT_ID.into(),
        create_parent: true,
        call: call(call_id),
        ..Default::default()
    }
}

/// A create that asks for the file's first block too.
fn create_with_block(path: &str, call_id: u64) -> CreateRequest {
    CreateRequest {
        first_block: true,
        client_host: "127.0.0.1".into(),
        ..create(path, call_id)
    }
}

fn mkdirs(path: &str, call_id: u64) -> MkdirsRequest {
    MkdirsRequest {
        path: path.into(),
        mode: 0o755,
        create_parent: true,
        call: call(call_id),
        ..Default::default()
    }
}

fn rename(src: &str, dst: &str, call_id: u64) -> RenameRequest {
    RenameRequest {
        src: src.into(),
        dst: dst.into(),
        client_id: CLIENT_ID.into(),
        overwrite: false,
        call: call(call_id),
    }
}

fn delete(path: &str, call_id: u64) -> DeleteRequest {
    DeleteRequest {
        path: path.into(),
        recursive: false,
        client_id: CLIENT_ID.into(),
        call: call(call_id),
    }
}

fn add_block(path: &str, call_id: u64) -> AddBlockRequest {
    AddBlockRequest {
        path: path.into(),
        client_id: CLIENT_ID.into(),
        client_host: "127.0.0.1".into(),
        call: call(call_id),
        ..Default::default()
    }
}

fn complete(path: &str, call_id: u64) -> CompleteRequest {
    CompleteRequest {
        path: path.into(),
        client_id: CLIENT_ID.into(),
        last: None,
        unwritten: None,
        call: call(call_id),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_retried_after_failover_return_their_original_result() -> Result<()> {
    let _serial = serial().await;
    let mut cluster = HaCluster::start().await?;
    let old = cluster.leader().await?;
    let mut c = raw_client(&cluster.member_addr(old), TIMEOUT).await?;

    // The original calls, each once, on the old leader.
    let created = c.create(create("/retry/created", 1)).await?.into_inner();
    let completed = c
        .complete(complete("/retry/created", 2))
        .await?
        .into_inner();
    ensure!(completed.completed, "complete: {completed:?}");
    c.create(create("/retry/with-block", 3)).await?;
    let block = c
        .add_block(add_block("/retry/with-block", 4))
        .await?
        .into_inner();
    c.mkdirs(mkdirs("/retry/src", 5)).await?;
    let renamed = c
        .rename(rename("/retry/src", "/retry/dst", 6))
        .await?
        .into_inner();
    ensure!(renamed.renamed, "rename: {renamed:?}");
    c.mkdirs(mkdirs("/retry/gone", 7)).await?;
    let deleted = c.delete(delete("/retry/gone", 8)).await?.into_inner();
    ensure!(deleted.deleted, "delete: {deleted:?}");
    let with_first = c
        .create(create_with_block("/retry/first-block", 9))
        .await?
        .into_inner();

    cluster.kill_member(old);
    let new = cluster.new_leader_other_than(old).await?;
    let mut c = raw_client(&cluster.member_addr(new), TIMEOUT).await?;

    // The same requests, same call ids, on the new leader.
    let again = c
        .create(create("/retry/created", 1))
        .await
        .context("create retried after failover")?
        .into_inner();
    let (a, b) = (
        created.status.as_ref().context("create status")?,
        again.status.as_ref().context("retried create status")?,
    );
    ensure!(
        a.inode_id == b.inode_id && a.path == b.path,
        "retried create: {b:?}, original {a:?}"
    );
    let again = c
        .complete(complete("/retry/created", 2))
        .await
        .context("complete retried after failover")?
        .into_inner();
    ensure!(again.completed, "retried complete: {again:?}");
    let again = c
        .add_block(add_block("/retry/with-block", 4))
        .await
        .context("add_block retried after failover")?
        .into_inner();
    let (a, b) = (
        block
            .block
            .and_then(|b| b.block)
            .context("add_block block")?,
        again.block.and_then(|b| b.block).context("retried block")?,
    );
    ensure!(
        a.block_id == b.block_id && a.generation_stamp == b.generation_stamp,
        "retried add_block allocated {b:?}, original {a:?}"
    );
    let again = c
        .rename(rename("/retry/src", "/retry/dst", 6))
        .await
        .context("rename retried after failover (its source is gone)")?
        .into_inner();
    ensure!(
        again.renamed && again.final_path == renamed.final_path,
        "retried rename: {again:?}, original {renamed:?}"
    );
    let again = c
        .delete(delete("/retry/gone", 8))
        .await
        .context("delete retried after failover")?
        .into_inner();
    ensure!(again.deleted, "retried delete: {again:?}");
    let again = c
        .create(create_with_block("/retry/first-block", 9))
        .await
        .context("create with its first block retried after failover")?
        .into_inner();
    let inode = |r: &rfs_proto::namenode::CreateResponse| r.status.as_ref().map(|s| s.inode_id);
    let block = |r: &rfs_proto::namenode::CreateResponse| {
        r.block
            .as_ref()
            .and_then(|b| b.block)
            .map(|b| (b.block_id, b.generation_stamp))
    };
    ensure!(
        block(&with_first).is_some()
            && inode(&again) == inode(&with_first)
            && block(&again) == block(&with_first),
        "retried create with its first block: {again:?}, original {with_first:?}"
    );

    // The answers came from the cache, not from applying again.
    let hits = metric_value(
        &cluster.member_metrics(new).await?,
        "rfs_namenode_retry_cache_hits_total",
    );
    ensure!(
        hits.unwrap_or(0.0) >= 6.0,
        "retry cache hits on the new leader: {hits:?}"
    );

    // The cache is keyed by call id: new calls do run again.
    match c.create(create("/retry/created", 100)).await {
        Ok(r) => anyhow::bail!("a new create of an existing file succeeded: {r:?}"),
        Err(s) => ensure!(
            rpc_error::kind_of(&s) == RpcErrorKind::AlreadyExists,
            "a new create of an existing file: {s:?}"
        ),
    }
    let fresh = c.rename(rename("/retry/src", "/retry/dst2", 101)).await;
    ensure!(
        fresh.as_ref().map_or(true, |r| !r.get_ref().renamed),
        "a new rename of a missing source renamed: {fresh:?}"
    );
    // Nothing applied twice: one block, one file each.
    let info = c
        .get_block_locations(rfs_proto::namenode::GetBlockLocationsRequest {
            path: "/retry/with-block".into(),
            ..Default::default()
        })
        .await?
        .into_inner();
    ensure!(
        info.blocks.len() == 1,
        "with-block has {} blocks",
        info.blocks.len()
    );
    let info = c
        .get_block_locations(rfs_proto::namenode::GetBlockLocationsRequest {
            path: "/retry/first-block".into(),
            ..Default::default()
        })
        .await?
        .into_inner();
    ensure!(
        info.blocks.len() == 1,
        "first-block has {} blocks",
        info.blocks.len()
    );
    Ok(())
}
