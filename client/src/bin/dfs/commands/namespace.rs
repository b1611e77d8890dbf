//! mkdir, rm, mv, setrep, touchz.

use anyhow::{bail, Result};
use rfs_client::{Client, CreateOptions};

use super::{is_dir, status, Walk};

pub async fn mkdir(client: &Client, path: &str, parents: bool) -> Result<()> {
    if !client.mkdirs(path, parents).await? && !parents {
        bail!("{path}: File exists");
    }
    Ok(())
}

pub async fn rm(client: &Client, path: &str, recursive: bool) -> Result<()> {
    if !client.delete(path, recursive).await? {
        bail!("{path}: No such file or directory");
    }
    println!("Deleted {path}");
    Ok(())
}

pub async fn mv(client: &Client, src: &str, dst: &str) -> Result<()> {
    client.rename(src, dst).await?;
    Ok(())
}

pub async fn setrep(client: &Client, path: &str, replication: u32) -> Result<()> {
    let st = status(client, path).await?;
    if !is_dir(&st) {
        return set_one(client, &st.path, replication).await;
    }
    let mut walk = Walk::new(client, path);
    while let Some(entry) = walk.next(|_| {}).await? {
        if !is_dir(&entry) {
            set_one(client, &entry.path, replication).await?;
        }
    }
    Ok(())
}

async fn set_one(client: &Client, path: &str, replication: u32) -> Result<()> {
    client.set_replication(path, replication).await?;
    println!("Replication {replication} set: {path}");
    Ok(())
}

pub async fn touchz(client: &Client, path: &str) -> Result<()> {
    match client.get_file_info(path).await? {
        Some(st) if is_dir(&st) => bail!("{path}: Is a directory"),
        Some(st) if st.length > 0 => bail!("{path}: Not a zero-length file"),
        Some(_) => Ok(()),
        None => {
            let opts = CreateOptions {
                create_parent: false,
                ..Default::default()
            };
            let mut w = client.create(path, opts).await?;
            w.close().await?;
            Ok(())
        }
    }
}
