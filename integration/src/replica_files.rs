//! Reads datanode block files the way ARCHITECTURE.md lays them out:
//! `<dir>/current/finalized/blk_<id>` plus `blk_<id>_<gs>.meta`, the meta
//! file being a 8-byte header (`version u16 | bytes_per_checksum u32 |
//! reserved u16`) and one big-endian CRC32C per chunk.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

#[derive(Debug, Clone)]
pub struct ReplicaFiles {
    pub data: PathBuf,
    pub meta: PathBuf,
    pub generation_stamp: u64,
}

/// Finalized replicas of `block_id` under one datanode data directory.
pub fn find_replicas(data_dir: &Path, block_id: u64) -> Result<Vec<ReplicaFiles>> {
    let finalized = data_dir.join("current").join("finalized");
    let mut out = Vec::new();
    let entries = match std::fs::read_dir(&finalized) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e).with_context(|| format!("reading {}", finalized.display())),
    };
    let data_name = format!("blk_{block_id}");
    let meta_prefix = format!("blk_{block_id}_");
    let mut data = None;
    let mut meta = None;
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name == data_name {
            data = Some(entry.path());
        } else if let Some(gs) = name
            .strip_prefix(&meta_prefix)
            .and_then(|r| r.strip_suffix(".meta"))
        {
            meta = Some((
                entry.path(),
                gs.parse::<u64>().context("meta file generation stamp")?,
            ));
        }
    }
    if let (Some(data), Some((meta, generation_stamp))) = (data, meta) {
        out.push(ReplicaFiles {
            data,
            meta,
            generation_stamp,
        });
    }
    Ok(out)
}

/// Files of unfinished replicas under one datanode data directory
/// (`current/rbw/blk_<id>` and its `.meta` files), of block `block_id`
/// only when given, sorted.
pub fn rbw_files(data_dir: &Path, block_id: Option<u64>) -> Result<Vec<PathBuf>> {
    let rbw = data_dir.join("current").join("rbw");
    let entries = match std::fs::read_dir(&rbw) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("reading {}", rbw.display())),
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix("blk_") else {
            continue;
        };
        let id = rest.split(['_', '.']).next().unwrap_or_default();
        if block_id.is_none_or(|b| id == b.to_string()) {
            out.push(entry.path());
        }
    }
    out.sort();
    Ok(out)
}

/// Checks every chunk of a replica against its meta file; returns the data.
pub fn verify_replica(r: &ReplicaFiles) -> Result<Vec<u8>> {
    let data = std::fs::read(&r.data)?;
    let meta = std::fs::read(&r.meta)?;
    if meta.len() < 8 {
        bail!("{}: meta file shorter than its header", r.meta.display());
    }
    let version = u16::from_be_bytes([meta[0], meta[1]]);
    if version != 1 {
        bail!("{}: meta version {version}", r.meta.display());
    }
    let bpc = u32::from_be_bytes([meta[2], meta[3], meta[4], meta[5]]) as usize;
    let sums = &meta[8..];
    let chunks = data.len().div_ceil(bpc);
    if sums.len() != chunks * 4 {
        bail!(
            "{}: {} checksums for {} chunks",
            r.meta.display(),
            sums.len() / 4,
            chunks
        );
    }
    for (i, chunk) in data.chunks(bpc).enumerate() {
        let want = u32::from_be_bytes(sums[i * 4..i * 4 + 4].try_into().expect("4 bytes"));
        if crc32c::crc32c(chunk) != want {
            bail!("{}: chunk {i} fails its checksum", r.data.display());
        }
    }
    Ok(data)
}
