//! The checkpoint image: every key of the store with its value at one
//! point, sorted by key, in one file written sequentially and read back
//! in one pass, as HDFS's fsimage.
//!
//! Layout, inside an LZ4 frame: [`MAGIC`], then
//! per pair `key len (u32 LE) | value len (u32 LE) | key | value`, then an
//! end mark (a key length of `u32::MAX`), the pair count (u64 LE) and the
//! CRC32C of every byte before it. A file cut short or changed anywhere
//! fails one of these and is refused, never loaded in part.
//!
//! An image is written to a temporary file, synced, renamed over the old
//! one and the directory synced: a crash leaves the old image or the new.

use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use crate::error::{NamenodeError, Result};

/// The image's file name in the checkpoint directory.
pub const IMAGE: &str = "image";
/// The temporary file each writer of images uses: a merge may still be
/// writing when a snapshot install starts, so they never share one.
pub const MERGING: &str = "image.merge.tmp";
pub const INSTALLING: &str = "image.install.tmp";
pub const MIGRATING: &str = "image.migrate.tmp";
const TEMPORARIES: [&str; 3] = [MERGING, INSTALLING, MIGRATING];
const MAGIC: &[u8; 8] = b"RFSIMG01";
const END: u32 = u32::MAX;
/// Bytes checksummed, compressed or read at a time.
const CHUNK: usize = 1 << 20;
/// Longer keys or values are a corrupt length.
const MAX_FIELD: u32 = 64 * 1024 * 1024;

fn corrupt(path: &Path, why: impl std::fmt::Display) -> NamenodeError {
    NamenodeError::Store(format!(
        "refusing the corrupt checkpoint image {}: {why}",
        path.display()
    ))
}

fn io_err(path: &Path, what: &str, e: std::io::Error) -> NamenodeError {
    NamenodeError::Store(format!("{what} checkpoint image {}: {e}", path.display()))
}

/// Syncs `dir`, so that a rename or a new file in it survives a crash.
pub fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| NamenodeError::Store(format!("cannot sync {}: {e}", dir.display())))
}

fn remove_if_there(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(io_err(path, "cannot remove the temporary", e))
        }
        _ => Ok(()),
    }
}

/// Removes the temporary images a crash left behind.
pub fn remove_temporaries(dir: &Path) -> Result<()> {
    TEMPORARIES
        .iter()
        .try_for_each(|name| remove_if_there(&dir.join(name)))
}

/// Writes the image of `pairs` (sorted by key, each key once) in `dir`
/// durably, replacing the old one when `install` is called.
pub struct Writer {
    dir: PathBuf,
    temporary: PathBuf,
    encoder: lz4::Encoder<BufWriter<File>>,
    /// Bytes not yet checksummed and compressed: both run over large
    /// chunks, not per field.
    pending: Vec<u8>,
    crc: u32,
    count: u64,
    /// Keys and values written, uncompressed.
    pub bytes: u64,
}

impl Writer {
    /// Starts an image in `dir`'s temporary file `temporary` (one of
    /// [`MERGING`], [`INSTALLING`], [`MIGRATING`]).
    pub fn create(dir: &Path, temporary: &str) -> Result<Writer> {
        let path = dir.join(temporary);
        let file = File::create(&path).map_err(|e| io_err(&path, "cannot create", e))?;
        // No LZ4 content checksum: the image's own CRC32C covers every
        // byte, and a second hash would cost the load its time again.
        let encoder = lz4::EncoderBuilder::new()
            .level(1)
            .checksum(lz4::ContentChecksum::NoChecksum)
            .build(BufWriter::with_capacity(1 << 20, file))
            .map_err(|e| io_err(&path, "cannot start", e))?;
        let mut w = Writer {
            dir: dir.to_path_buf(),
            temporary: path,
            encoder,
            pending: Vec::with_capacity(CHUNK + 4096),
            crc: 0,
            count: 0,
            bytes: 0,
        };
        w.pending.extend_from_slice(MAGIC);
        Ok(w)
    }

    /// Checksums and compresses what is pending.
    fn flush_pending(&mut self) -> Result<()> {
        self.crc = crc32c::crc32c_append(self.crc, &self.pending);
        let written = self.encoder.write_all(&self.pending);
        self.pending.clear();
        written.map_err(|e| io_err(&self.temporary, "cannot write", e))
    }

    pub fn pair(&mut self, key: &[u8], value: &[u8]) -> Result<()> {
        let (k, v) = (key.len() as u32, value.len() as u32);
        if k >= MAX_FIELD || v >= MAX_FIELD {
            return Err(NamenodeError::Store(format!(
                "checkpoint key {:?} or its value is too large ({} bytes)",
                &key[..key.len().min(16)],
                value.len()
            )));
        }
        self.pending.extend_from_slice(&k.to_le_bytes());
        self.pending.extend_from_slice(&v.to_le_bytes());
        self.pending.extend_from_slice(key);
        self.pending.extend_from_slice(value);
        self.count += 1;
        self.bytes += u64::from(k) + u64::from(v);
        if self.pending.len() >= CHUNK {
            self.flush_pending()?;
        }
        Ok(())
    }

    /// Drops the image being written.
    pub fn discard(self) -> Result<()> {
        let path = self.temporary.clone();
        drop(self);
        remove_if_there(&path)
    }

    /// Ends the image, makes it durable and puts it in place of the old.
    pub fn install(mut self) -> Result<()> {
        let path = self.temporary.clone();
        self.pending.extend_from_slice(&END.to_le_bytes());
        self.pending.extend_from_slice(&self.count.to_le_bytes());
        self.flush_pending()?;
        let crc = self.crc;
        self.encoder
            .write_all(&crc.to_le_bytes())
            .map_err(|e| io_err(&path, "cannot write", e))?;
        let (buffered, finished) = self.encoder.finish();
        finished.map_err(|e| io_err(&path, "cannot finish", e))?;
        let file = buffered
            .into_inner()
            .map_err(|e| io_err(&path, "cannot write", e.into_error()))?;
        file.sync_all()
            .map_err(|e| io_err(&path, "cannot sync", e))?;
        std::fs::rename(&path, self.dir.join(IMAGE))
            .map_err(|e| io_err(&path, "cannot rename", e))?;
        sync_dir(&self.dir)
    }
}

/// Reads an image's pairs in key order. The end (count, checksum, a
/// whole frame) is checked after the last pair, so every caller reads to
/// the end before it acts on what it read: a load, a merge and a raft
/// snapshot all fail whole on a corrupt image.
pub struct Reader {
    path: PathBuf,
    /// Taken at the end, to check the frame is whole.
    decoder: Option<lz4::Decoder<File>>,
    /// Decompressed bytes: `buf[pos..end]` not read yet; `buf[..crc_pos]`
    /// already in `crc` (checksummed in chunks as the buffer is reused).
    buf: Vec<u8>,
    pos: usize,
    end: usize,
    crc: u32,
    crc_pos: usize,
    count: u64,
    done: bool,
}

impl Reader {
    /// The image in `dir`, or None if there is none yet.
    pub fn open(dir: &Path) -> Result<Option<Reader>> {
        let path = dir.join(IMAGE);
        let file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_err(&path, "cannot open", e)),
        };
        Reader::from_file(path, file).map(Some)
    }

    /// Reads an image already opened (it may have been replaced since).
    pub fn from_file(path: PathBuf, file: File) -> Result<Reader> {
        let decoder = lz4::Decoder::new(file).map_err(|e| corrupt(&path, e))?;
        let mut r = Reader {
            path,
            decoder: Some(decoder),
            buf: vec![0; CHUNK],
            pos: 0,
            end: 0,
            crc: 0,
            crc_pos: 0,
            count: 0,
            done: false,
        };
        r.fill(MAGIC.len())?;
        if &r.buf[..MAGIC.len()] != MAGIC {
            return Err(corrupt(&r.path, "it does not start as an rfs image"));
        }
        r.pos = MAGIC.len();
        Ok(r)
    }

    /// Makes at least `n` unread bytes available at `buf[pos..]`.
    fn fill(&mut self, n: usize) -> Result<()> {
        while self.end - self.pos < n {
            self.crc = crc32c::crc32c_append(self.crc, &self.buf[self.crc_pos..self.pos]);
            self.buf.copy_within(self.pos..self.end, 0);
            self.end -= self.pos;
            (self.pos, self.crc_pos) = (0, 0);
            if self.buf.len() < n {
                self.buf.resize(n, 0);
            }
            let Some(input) = self.decoder.as_mut() else {
                return Err(corrupt(&self.path, "read past its end"));
            };
            let got = input
                .read(&mut self.buf[self.end..])
                .map_err(|e| corrupt(&self.path, e))?;
            if got == 0 {
                return Err(corrupt(&self.path, "it ends early"));
            }
            self.end += got;
        }
        Ok(())
    }

    fn u32_at(&self, at: usize) -> u32 {
        u32::from_le_bytes(self.buf[at..at + 4].try_into().expect("4 bytes"))
    }

    /// The next pair in key order, borrowed until the next call; None at
    /// the checked end.
    pub fn next(&mut self) -> Result<Option<(&[u8], &[u8])>> {
        if self.done {
            return Ok(None);
        }
        self.fill(4)?;
        if self.u32_at(self.pos) == END {
            self.check_end()?;
            return Ok(None);
        }
        self.fill(8)?;
        let (k, v) = (self.u32_at(self.pos), self.u32_at(self.pos + 4));
        if k >= MAX_FIELD || v >= MAX_FIELD {
            return Err(corrupt(&self.path, "a length is out of range"));
        }
        let (k, v) = (k as usize, v as usize);
        self.fill(8 + k + v)?;
        let key = self.pos + 8;
        self.pos = key + k + v;
        self.count += 1;
        Ok(Some((
            &self.buf[key..key + k],
            &self.buf[key + k..key + k + v],
        )))
    }

    /// The next pair in key order, owned; None at the checked end.
    pub fn next_pair(&mut self) -> Result<Option<(Vec<u8>, Vec<u8>)>> {
        Ok(self.next()?.map(|(k, v)| (k.to_vec(), v.to_vec())))
    }

    /// Checks the end mark, pair count and checksum at `pos`, and that the
    /// frame ends right after them, whole.
    fn check_end(&mut self) -> Result<()> {
        // The end mark, the count, then the checksum of all before it.
        self.fill(16)?;
        let counted = self.pos + 12;
        let crc = crc32c::crc32c_append(self.crc, &self.buf[self.crc_pos..counted]);
        let count = u64::from_le_bytes(self.buf[self.pos + 4..counted].try_into().expect("8"));
        if self.u32_at(counted) != crc {
            return Err(corrupt(&self.path, "its checksum does not match"));
        }
        if count != self.count {
            return Err(corrupt(&self.path, "its pair count does not match"));
        }
        if self.end > counted + 4 {
            return Err(corrupt(&self.path, "bytes follow its end"));
        }
        let Some(mut decoder) = self.decoder.take() else {
            return Err(corrupt(&self.path, "read past its end"));
        };
        let probe = decoder.read(&mut [0u8; 1]);
        if probe.map_err(|e| corrupt(&self.path, e))? != 0 {
            return Err(corrupt(&self.path, "bytes follow its end"));
        }
        // The decoder reports a frame cut short only when finished.
        let (_, finished) = decoder.finish();
        finished.map_err(|e| corrupt(&self.path, e))?;
        self.done = true;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, pairs: &[(&[u8], &[u8])]) {
        let mut w = Writer::create(dir, MERGING).unwrap();
        for (k, v) in pairs {
            w.pair(k, v).unwrap();
        }
        w.install().unwrap();
    }

    fn read_all(dir: &Path) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let mut r = Reader::open(dir)?.expect("an image");
        let mut out = Vec::new();
        while let Some(p) = r.next_pair()? {
            out.push(p);
        }
        Ok(out)
    }

    #[test]
    fn an_image_reads_back_as_written_and_none_is_none() {
        let dir = tempfile::tempdir().unwrap();
        assert!(Reader::open(dir.path()).unwrap().is_none());
        write(dir.path(), &[(b"a", b"1"), (b"b", b""), (b"c", &[7; 3000])]);
        let got = read_all(dir.path()).unwrap();
        assert_eq!(got.len(), 3);
        assert_eq!(got[2], (b"c".to_vec(), vec![7; 3000]));
        write(dir.path(), &[]);
        assert!(read_all(dir.path()).unwrap().is_empty());
        assert!(!dir.path().join(MERGING).exists());
    }

    #[test]
    fn a_torn_or_changed_image_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let pairs: Vec<(Vec<u8>, Vec<u8>)> = (0u32..2000)
            .map(|i| (i.to_be_bytes().to_vec(), format!("value {i}").into_bytes()))
            .collect();
        let refs: Vec<(&[u8], &[u8])> = pairs.iter().map(|(k, v)| (&k[..], &v[..])).collect();
        write(dir.path(), &refs);
        let good = std::fs::read(dir.path().join(IMAGE)).unwrap();
        for cut in [good.len() - 1, good.len() / 2, 10] {
            std::fs::write(dir.path().join(IMAGE), &good[..cut]).unwrap();
            let err = read_all(dir.path()).unwrap_err().to_string();
            assert!(
                err.contains("refusing the corrupt checkpoint image"),
                "{err}"
            );
        }
        let mut flipped = good.clone();
        flipped[good.len() / 2] ^= 0x10;
        std::fs::write(dir.path().join(IMAGE), &flipped).unwrap();
        assert!(read_all(dir.path()).is_err());
        std::fs::write(dir.path().join(IMAGE), b"not an image at all").unwrap();
        assert!(read_all(dir.path()).is_err());
    }
}
