//! The write-ahead log: segment files of checksummed records.
//!
//! ```text
//! <name-dir>/wal/wal-<first index, 20 digits>.log
//! record: | payload len u32 BE | crc32c(payload) u32 BE | payload = bincode (index u64, MetaOp) |
//! ```
//! A record that is cut short or fails its CRC at the end of the newest
//! segment is a write that never finished (so never acknowledged): it is cut
//! off at open. The same damage anywhere else is corruption and refuses to
//! start, naming the segment and offset.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use crate::error::NamenodeError;
use crate::meta_op::MetaOp;

/// Largest record payload; a longer length field is damage, not data.
pub const MAX_RECORD: usize = 64 * 1024 * 1024;

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> NamenodeError + '_ {
    move |e| NamenodeError::Wal {
        path: path.to_path_buf(),
        reason: e.to_string(),
    }
}

pub struct Wal {
    dir: PathBuf,
    current: File,
    current_path: PathBuf,
}

fn segment_name(first_index: u64) -> String {
    format!("wal-{first_index:020}.log")
}

fn segments(dir: &Path) -> Result<Vec<(u64, PathBuf)>, NamenodeError> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).map_err(io(dir))? {
        let e = e.map_err(io(dir))?;
        let name = e.file_name().to_string_lossy().into_owned();
        if let Some(n) = name
            .strip_prefix("wal-")
            .and_then(|r| r.strip_suffix(".log"))
            .and_then(|n| n.parse().ok())
        {
            out.push((n, e.path()));
        }
    }
    out.sort();
    Ok(out)
}

/// Decodes the records of one segment; returns them and the length of the
/// valid prefix, or `Err((offset, why))` at the first bad record.
fn read_segment(bytes: &[u8]) -> (Vec<(u64, MetaOp)>, usize, Option<String>) {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < bytes.len() {
        if bytes.len() - pos < 8 {
            return (out, pos, Some("truncated record header".into()));
        }
        let len = u32::from_be_bytes(bytes[pos..pos + 4].try_into().expect("4")) as usize;
        let crc = u32::from_be_bytes(bytes[pos + 4..pos + 8].try_into().expect("4"));
        if len > MAX_RECORD || bytes.len() - pos - 8 < len {
            return (
                out,
                pos,
                Some(format!("record of {len} bytes runs past the end")),
            );
        }
        let payload = &bytes[pos + 8..pos + 8 + len];
        if crc32c::crc32c(payload) != crc {
            return (out, pos, Some("checksum mismatch".into()));
        }
        match bincode::deserialize::<(u64, MetaOp)>(payload) {
            Ok(r) => out.push(r),
            Err(e) => return (out, pos, Some(format!("undecodable record: {e}"))),
        }
        pos += 8 + len;
    }
    (out, pos, None)
}

/// Whether `op` fits one record; an op that does not is refused before it
/// reaches the log (it would read back as corruption).
pub fn record_fits(op: &MetaOp) -> Result<(), NamenodeError> {
    let size = bincode::serialized_size(&(0u64, op))
        .map_err(|e| NamenodeError::Internal(format!("encoding an op: {e}")))?;
    if size > MAX_RECORD as u64 {
        return Err(NamenodeError::InvalidArgument(format!(
            "request too large for the metadata log ({size} bytes)"
        )));
    }
    Ok(())
}

impl Wal {
    /// Opens the log, returning it and every record in it, in order.
    pub fn open(dir: &Path) -> Result<(Wal, Vec<(u64, MetaOp)>), NamenodeError> {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let segs = segments(dir)?;
        let mut records = Vec::new();
        for (i, (_, path)) in segs.iter().enumerate() {
            let mut bytes = Vec::new();
            File::open(path)
                .and_then(|mut f| f.read_to_end(&mut bytes))
                .map_err(io(path))?;
            let (recs, valid, bad) = read_segment(&bytes);
            records.extend(recs);
            if let Some(why) = bad {
                if i + 1 != segs.len() {
                    return Err(NamenodeError::WalCorrupt {
                        path: path.clone(),
                        offset: valid as u64,
                        why,
                    });
                }
                tracing::warn!(
                    "{}: cutting an unfinished record at byte {valid} ({why})",
                    path.display()
                );
                let f = OpenOptions::new()
                    .write(true)
                    .open(path)
                    .map_err(io(path))?;
                f.set_len(valid as u64).map_err(io(path))?;
                f.sync_all().map_err(io(path))?;
            }
        }
        let next = records.last().map_or(1, |(i, _)| i + 1);
        let (current, current_path) = match segs.last() {
            Some((_, p)) => (
                OpenOptions::new().append(true).open(p).map_err(io(p))?,
                p.clone(),
            ),
            None => Self::create_segment(dir, next)?,
        };
        Ok((
            Wal {
                dir: dir.to_path_buf(),
                current,
                current_path,
            },
            records,
        ))
    }

    fn create_segment(dir: &Path, first_index: u64) -> Result<(File, PathBuf), NamenodeError> {
        let path = dir.join(segment_name(first_index));
        let f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io(&path))?;
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io(dir))?;
        Ok((f, path))
    }

    /// Appends records (not yet durable: call [`Wal::sync`]).
    pub fn append(&mut self, records: &[(u64, &MetaOp)]) -> Result<(), NamenodeError> {
        let mut buf = Vec::new();
        for (index, op) in records {
            let payload = bincode::serialize(&(index, op)).map_err(|e| NamenodeError::Wal {
                path: self.current_path.clone(),
                reason: format!("encoding a record: {e}"),
            })?;
            buf.extend_from_slice(&(payload.len() as u32).to_be_bytes());
            buf.extend_from_slice(&crc32c::crc32c(&payload).to_be_bytes());
            buf.extend_from_slice(&payload);
        }
        self.current.write_all(&buf).map_err(io(&self.current_path))
    }

    pub fn sync(&mut self) -> Result<(), NamenodeError> {
        self.current.sync_data().map_err(io(&self.current_path))
    }

    /// Starts a new segment at `next_index` and deletes the older ones:
    /// the caller has made every op before `next_index` durable elsewhere.
    pub fn roll(&mut self, next_index: u64) -> Result<(), NamenodeError> {
        let (f, p) = Self::create_segment(&self.dir, next_index)?;
        self.current = f;
        self.current_path = p.clone();
        for (_, path) in segments(&self.dir)? {
            if path != p {
                std::fs::remove_file(&path).map_err(io(&path))?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(i: u64) -> MetaOp {
        MetaOp::SetReplication {
            path: format!("/f{i}"),
            replication: 3,
        }
    }

    #[test]
    fn torn_tail_is_cut_but_mid_log_damage_refuses() {
        let dir = tempfile::tempdir().unwrap();
        let (mut w, recs) = Wal::open(dir.path()).unwrap();
        assert!(recs.is_empty());
        w.append(&[(1, &op(1)), (2, &op(2))]).unwrap();
        w.sync().unwrap();
        drop(w);
        let seg = segments(dir.path()).unwrap()[0].1.clone();
        let full = std::fs::read(&seg).unwrap();
        std::fs::write(&seg, &full[..full.len() - 3]).unwrap();
        let (mut w, recs) = Wal::open(dir.path()).unwrap();
        assert_eq!(recs, vec![(1, op(1))]);
        w.append(&[(2, &op(2))]).unwrap();
        w.sync().unwrap();
        w.roll(3).unwrap();
        w.append(&[(3, &op(3))]).unwrap();
        drop(w);
        let (_, recs) = Wal::open(dir.path()).unwrap();
        assert_eq!(recs, vec![(3, op(3))], "rolled segments are gone");

        // Damage in a segment that is not the last: refuse.
        let dir2 = tempfile::tempdir().unwrap();
        let (mut w, _) = Wal::open(dir2.path()).unwrap();
        w.append(&[(1, &op(1))]).unwrap();
        w.roll(2).unwrap_or(());
        drop(w);
        let (mut w, _) = Wal::open(dir2.path()).unwrap();
        w.append(&[(2, &op(2))]).unwrap();
        drop(w);
        // Recreate an old segment with garbage.
        std::fs::write(dir2.path().join(segment_name(0)), b"garbage!!").unwrap();
        assert!(matches!(
            Wal::open(dir2.path()),
            Err(NamenodeError::WalCorrupt { .. })
        ));
    }

    proptest::proptest! {
        /// Any bytes decode to a valid prefix and at most one complaint,
        /// never a panic; a valid log read back whole is the same records.
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
            let (_, valid, _) = read_segment(&bytes);
            proptest::prop_assert!(valid <= bytes.len());
        }

        #[test]
        fn records_round_trip(ids in proptest::collection::vec(0u64..1000, 0..20), cut in 0usize..64) {
            let dir = tempfile::tempdir().unwrap();
            let (mut w, _) = Wal::open(dir.path()).unwrap();
            let ops: Vec<MetaOp> = ids.iter().map(|i| op(*i)).collect();
            let recs: Vec<(u64, &MetaOp)> = ops.iter().enumerate().map(|(i, o)| (i as u64 + 1, o)).collect();
            w.append(&recs).unwrap();
            w.sync().unwrap();
            drop(w);
            let seg = segments(dir.path()).unwrap()[0].1.clone();
            let full = std::fs::read(&seg).unwrap();
            let (back, valid, bad) = read_segment(&full);
            proptest::prop_assert_eq!(valid, full.len());
            proptest::prop_assert!(bad.is_none());
            proptest::prop_assert_eq!(back.len(), ops.len());
            // Cutting the tail anywhere loses only records after the cut.
            let keep = full.len().saturating_sub(cut);
            let (back, valid, _) = read_segment(&full[..keep]);
            proptest::prop_assert!(valid <= keep);
            proptest::prop_assert!(back.iter().zip(&ops).all(|((_, a), b)| a == b));
        }
    }
}
