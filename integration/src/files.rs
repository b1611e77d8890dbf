//! Test file contents: deterministic pseudo-random payloads, and whole
//! files written and read through `rfs_client` as users do.

use rand::{RngCore, SeedableRng};
use rfs_client::{Client, CreateOptions};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub const MIB: usize = 1024 * 1024;

/// Deterministic pseudo-random bytes, different per seed.
pub fn payload(len: usize, seed: u64) -> Vec<u8> {
    let mut v = vec![0u8; len];
    rand::rngs::StdRng::seed_from_u64(seed).fill_bytes(&mut v);
    v
}

/// Creates `path` (no overwrite), writes `data` and closes it: `Ok` only
/// once close returned, that is once the namenode completed the file.
pub async fn write_file(client: &Client, path: &str, data: &[u8]) -> anyhow::Result<()> {
    write_file_with(client, path, data, CreateOptions::default()).await
}

/// [`write_file`] with explicit create options.
pub async fn write_file_with(
    client: &Client,
    path: &str,
    data: &[u8],
    opts: CreateOptions,
) -> anyhow::Result<()> {
    let mut w = client.create(path, opts).await?;
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

/// Prints one row of the durability report (issue 5): the fault a test
/// injected, the bytes acknowledged to writers, the bytes read back
/// identical afterwards. Collect with
/// `cargo test -p rfs-integration -- --nocapture 2>&1 | grep '^DURABILITY'`.
pub fn report_outcome(fault: &str, written: u64, verified: u64) {
    println!(
        "DURABILITY|{fault}|{written}|{verified}|{}",
        written.saturating_sub(verified)
    );
}

/// Total payload bytes of acknowledged files (path → (seed, length)).
pub fn acked_bytes<'a>(files: impl IntoIterator<Item = &'a (u64, usize)>) -> u64 {
    files.into_iter().map(|(_, len)| *len as u64).sum()
}
