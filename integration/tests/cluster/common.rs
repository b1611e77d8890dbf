//! Helpers shared by the cluster tests.

use rfs_client::Client;

pub use rfs_integration::files::{payload, read_file, write_file, MIB};

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
