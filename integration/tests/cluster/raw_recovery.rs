//! Recovery requests sent raw to the datanodes of a file (issue 14, item
//! 6): a WRITE_BLOCK in the RECOVER stage, a COPY_BLOCK with `rbw` and a
//! RECOVER_REPLICA COMMIT, each with length 0, would each cut a finalized
//! replica down to nothing. The namenode confirms no cut of a block it
//! committed (a closed file's), nor one at a stamp it did not record, and
//! a datanode never recovers a finalized replica to its own stamp; every
//! replica stays whole.

use anyhow::{bail, Context, Result};
use futures::{SinkExt, StreamExt};
use rfs_client::CreateOptions;
use rfs_integration::replica_files::verify_replica;
use rfs_integration::MiniCluster;
use rfs_proto::common::{DatanodeInfo, ExtendedBlock};
use rfs_proto::transfer::{
    CopyBlockOp, Frame, FrameCodec, Op, OpResponse, RecoverReplicaOp, RecoveryPhase, Status,
    WriteBlockOp, WriteStage,
};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_util::codec::Framed;

use super::common::{payload, read_file, write_file, MIB};

const T: std::time::Duration = std::time::Duration::from_secs(30);

/// Sends `op` alone on a new connection to `addr` and returns its answer.
async fn raw_op(addr: &str, op: Op) -> Result<OpResponse> {
    let mut conn = Framed::new(TcpStream::connect(addr).await?, FrameCodec::default());
    conn.send(Frame::Op(op)).await?;
    match tokio::time::timeout(T, conn.next()).await {
        Ok(Some(Ok(Frame::Response(r)))) => Ok(r),
        Ok(other) => bail!("{addr} answered with {other:?}"),
        Err(_) => bail!("{addr} did not answer within {T:?}"),
    }
}

/// One of the three ways (`which`) to ask a datanode to cut its replica of
/// `to.block_id` to `to.num_bytes` under stamp `to.generation_stamp`
/// (`other`: a copy target).
fn attack(which: usize, to: ExtendedBlock, other: &DatanodeInfo) -> (&'static str, Op) {
    match which % 3 {
        0 => (
            "WRITE_BLOCK RECOVER",
            Op::WriteBlock(WriteBlockOp {
                block: Some(to),
                client_id: "careless-client".into(),
                bytes_per_checksum: 512,
                stage: WriteStage::Recover as i32,
                recover_length: to.num_bytes,
                ..Default::default()
            }),
        ),
        1 => (
            "COPY_BLOCK rbw",
            Op::CopyBlock(CopyBlockOp {
                block: Some(to),
                targets: vec![other.clone()],
                rbw: true,
            }),
        ),
        _ => (
            "RECOVER_REPLICA COMMIT",
            Op::RecoverReplica(RecoverReplicaOp {
                block: Some(to),
                phase: RecoveryPhase::Commit as i32,
            }),
        ),
    }
}

/// Every replica of a closed file's three blocks gets a raw recovery to a
/// new stamp and length 0, one kind per block: each is refused with a
/// message saying why, no replica changes on disk, and the file reads back
/// whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_recoveries_to_length_zero_leave_a_closed_file_whole() -> Result<()> {
    let cluster = MiniCluster::start().await?;
    let client = cluster.client().await?;
    let path = "/probe/closed";
    let data = payload(2 * MIB + MIB / 3, 61);
    write_file(&client, path, &data).await?;
    let located = client.get_block_locations(path, 0, 0).await?;
    let ids: Vec<u64> = located
        .blocks
        .iter()
        .filter_map(|l| l.block.map(|b| b.block_id))
        .collect();
    cluster
        .wait_replicas(&ids, 3, |_| true, T)
        .await
        .context("replicas of the closed file")?;
    let before: Vec<_> = ids
        .iter()
        .map(|id| cluster.replicas_of(*id))
        .collect::<Result<_>>()?;

    // Answers other than a refusal: success, or a failure further on.
    let mut not_refused = Vec::new();
    assert_eq!(located.blocks.len(), 3, "blocks of {path}");
    for (k, l) in located.blocks.iter().enumerate() {
        let b = l.block.context("located block without a block")?;
        let to = ExtendedBlock {
            generation_stamp: b.generation_stamp + 1000,
            num_bytes: 0,
            ..b
        };
        for (i, node) in l.locations.iter().enumerate() {
            let other = &l.locations[(i + 1) % l.locations.len()];
            let (what, op) = attack(k, to, other);
            let addr = format!("{}:{}", node.ip, node.data_port);
            let r = raw_op(&addr, op).await?;
            let at = format!("{what} of block {} on {addr}", b.block_id);
            if r.status() == Status::Success || !r.message.contains("refused") {
                not_refused.push(format!("{at}: {:?} {}", r.status(), r.message));
            }
        }
    }

    let mut changed = Vec::new();
    for ((id, was), part) in ids.iter().zip(&before).zip(data.chunks(MIB)) {
        let now = cluster.replicas_of(*id)?;
        for (node, files) in was {
            match now.iter().find(|(n, _)| n == node) {
                Some((_, f)) if f.generation_stamp == files.generation_stamp => {
                    match verify_replica(f) {
                        Ok(held) if held == part => {}
                        Ok(held) => changed.push(format!(
                            "block {id} on datanode {node}: holds {} of its {} bytes",
                            held.len(),
                            part.len()
                        )),
                        Err(e) => changed.push(format!("block {id} on datanode {node}: {e:#}")),
                    }
                }
                Some((_, f)) => changed.push(format!(
                    "block {id} on datanode {node}: generation stamp {} is now {}",
                    files.generation_stamp, f.generation_stamp
                )),
                None => changed.push(format!("block {id} on datanode {node}: replica gone")),
            }
        }
    }
    if !not_refused.is_empty() || !changed.is_empty() {
        bail!(
            "raw recoveries of a closed file: not refused {not_refused:#?}; replicas changed {changed:#?}"
        );
    }
    let st = client.get_file_info(path).await?.context("file is gone")?;
    assert_eq!(st.length, data.len() as u64, "length of {path}");
    assert!(read_file(&client, path).await? == data, "{path} differs");
    Ok(())
}

/// An open file whose last block was written to its end (finalized on
/// every datanode, `complete` not called yet) gets a raw WRITE_BLOCK
/// RECOVER to length 0 on every datanode, at the block's own stamp (the
/// namenode would confirm it, as nothing was acknowledged past a pipeline
/// recovery, but each datanode refuses: a recovery brings a newer stamp)
/// and at a new stamp (the namenode refuses: not the block's stamp).
/// Nothing changes, and the file closes and reads back whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_recoveries_of_an_open_file_s_finished_block_are_refused() -> Result<()> {
    let cluster = MiniCluster::start().await?;
    let client = cluster.client().await?;
    let path = "/probe/open";
    let data = payload(MIB, 62);
    let mut w = client.create(path, CreateOptions::default()).await?;
    w.write_all(&data).await?;
    w.hflush().await?;
    let b = client
        .get_block_locations(path, 0, 0)
        .await?
        .blocks
        .first()
        .and_then(|l| l.block)
        .context("the open file has no block")?;
    let held = cluster
        .wait_replicas(&[b.block_id], 3, |_| true, T)
        .await
        .context("the full block finalized on every datanode")?
        .remove(0);

    let mut not_refused = Vec::new();
    for gen_stamp in [b.generation_stamp, b.generation_stamp + 1] {
        let to = ExtendedBlock {
            generation_stamp: gen_stamp,
            num_bytes: 0,
            ..b
        };
        for i in &held {
            let addr = cluster.datanode_data_addr(*i).to_string();
            let (what, op) = attack(0, to, &DatanodeInfo::default());
            let r = raw_op(&addr, op).await?;
            if r.status() == Status::Success || !r.message.contains("refused") {
                not_refused.push(format!(
                    "{what} of block {} to gs {gen_stamp} on {addr}: {:?} {}",
                    b.block_id,
                    r.status(),
                    r.message
                ));
            }
        }
    }
    let now = cluster.replicas_of(b.block_id)?;
    let changed: Vec<String> = now
        .iter()
        .filter(|(_, f)| {
            f.generation_stamp != b.generation_stamp
                || verify_replica(f).ok().as_ref() != Some(&data)
        })
        .map(|(i, f)| format!("datanode {i}: {f:?}"))
        .collect();
    if !not_refused.is_empty() || !changed.is_empty() || now.len() != held.len() {
        bail!(
            "raw recoveries of an open file's finished block: not refused {not_refused:#?}; replicas now {now:#?}, changed {changed:#?}"
        );
    }
    w.shutdown().await?;
    assert!(read_file(&client, path).await? == data, "{path} differs");
    Ok(())
}
