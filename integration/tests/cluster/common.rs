//! Helpers shared by the cluster tests.

use rand::{RngCore, SeedableRng};
use rfs_client::{Client, CreateOptions};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Deterministic pseudo-random bytes, different per seed.
pub fn payload(len: usize, seed: u64) -> Vec<u8> {
    let mut v = vec![0u8; len];
    rand::rngs::StdRng::seed_from_u64(seed).fill_bytes(&mut v);
    v
}

pub async fn write_file(client: &Client, path: &str, data: &[u8]) -> anyhow::Result<()> {
    let mut w = client.create(path, CreateOptions::default()).await?;
    // Uneven write sizes exercise packet assembly across calls.
    for piece in data.chunks(100_003) {
        w.write_all(piece).await?;
    }
    w.shutdown().await?;
    Ok(())
}

pub async fn read_file(client: &Client, path: &str) -> anyhow::Result<Vec<u8>> {
    let mut r = client.open(path).await?;
    let mut out = Vec::new();
    r.read_to_end(&mut out).await?;
    Ok(out)
}

/// Block ids of a file, in order.
pub async fn block_ids(client: &Client, path: &str) -> anyhow::Result<Vec<u64>> {
    let locs = client.get_block_locations(path, 0, 0).await?;
    Ok(locs
        .blocks
        .iter()
        .map(|b| {
            b.block
                .as_ref()
                .expect("located block has a block")
                .block_id
        })
        .collect())
}

pub const MIB: usize = 1024 * 1024;
