//! Moves a checkpoint an older rfs kept in sled (`meta.sled/` in the name
//! dir) into an image, once: every key is carried over as it was (the
//! keys are the same), then the sled directory is renamed aside.

use std::path::Path;
use std::time::Duration;

use super::{deltas, image, NEXT_DELTA};
use crate::error::{NamenodeError, Result};

/// Where older rfs kept the checkpoint, and where it goes once moved.
const SLED_DIR: &str = "meta.sled";
const MOVED_DIR: &str = "meta.sled.migrated";

/// sled lets go of its directory lock from a background thread after the
/// last handle drops; a moment's wait covers that.
const LOCK_WAIT: Duration = Duration::from_secs(3);

fn open_sled(path: &Path, cache_bytes: u64) -> sled::Result<sled::Db> {
    let deadline = std::time::Instant::now() + LOCK_WAIT;
    loop {
        let opened = sled::Config::new()
            .path(path)
            .cache_capacity(cache_bytes)
            .open();
        match opened {
            Err(sled::Error::Io(e))
                if e.to_string().contains("could not acquire lock")
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(20));
            }
            other => return other,
        }
    }
}

/// If `name_dir` holds a sled store and `dir` no checkpoint yet, writes
/// the sled store's keys as the image, then moves the sled store aside.
pub fn from_sled(name_dir: &Path, dir: &Path, cache_bytes: u64) -> Result<()> {
    let old = name_dir.join(SLED_DIR);
    if !old.exists() {
        return Ok(());
    }
    let fresh = !dir.join(image::IMAGE).exists() && deltas::list(dir)?.is_empty();
    if fresh {
        let failed = |e: sled::Error| {
            NamenodeError::Store(format!(
                "cannot read the older metadata store {}: {e}",
                old.display()
            ))
        };
        let db = open_sled(&old, cache_bytes).map_err(failed)?;
        let tree = db.open_tree("namespace").map_err(failed)?;
        let mut writer = image::Writer::create(dir, image::MIGRATING)?;
        writer.pair(NEXT_DELTA, &0u64.to_be_bytes())?;
        let mut keys = 0u64;
        for kv in tree.iter() {
            let (k, v) = kv.map_err(failed)?;
            writer.pair(&k, &v)?;
            keys += 1;
        }
        writer.install()?;
        tracing::info!(
            "moved {keys} keys from the older metadata store {} into the checkpoint image",
            old.display()
        );
    }
    let moved = name_dir.join(MOVED_DIR);
    std::fs::rename(&old, &moved).map_err(|e| {
        NamenodeError::Store(format!(
            "cannot move {} aside to {}: {e}",
            old.display(),
            moved.display()
        ))
    })?;
    image::sync_dir(name_dir)
}
