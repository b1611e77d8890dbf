//! Checksummed records in an append-only file, as the raft log
//! (`raft/log_file.rs`) and the checkpoint's delta files
//! (`checkpoint/deltas.rs`) write them: `len (u32 LE) | crc32c of body
//! (u32 LE) | body`. A crash can tear the last record; reading stops at
//! the first record whose length or checksum fails.

/// Bytes before each record's body.
pub const HEADER: usize = 8;
/// No record is this large (raft entries are bounded by the RPC message
/// size, checkpoints by what changes in one interval); a longer length is
/// a torn or corrupt header.
pub const MAX_RECORD: usize = 256 * 1024 * 1024;

/// Appends one record to `out`, its body written by `body`.
pub fn frame(out: &mut Vec<u8>, body: impl FnOnce(&mut Vec<u8>)) {
    let start = out.len();
    out.extend_from_slice(&[0u8; HEADER]);
    body(out);
    let written = &out[start + HEADER..];
    let len = written.len() as u32;
    let crc = crc32c::crc32c(written);
    out[start..start + 4].copy_from_slice(&len.to_le_bytes());
    out[start + 4..start + HEADER].copy_from_slice(&crc.to_le_bytes());
}

/// Whole, checksummed records from the start of `bytes`: their bodies and
/// the length of the valid prefix.
pub fn records(bytes: &[u8]) -> (Vec<&[u8]>, usize) {
    let mut out = Vec::new();
    let mut at = 0;
    while bytes.len() - at >= HEADER {
        let len = u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes")) as usize;
        let crc = u32::from_le_bytes(bytes[at + 4..at + 8].try_into().expect("4 bytes"));
        if len == 0 || len > MAX_RECORD || bytes.len() - at - HEADER < len {
            break;
        }
        let body = &bytes[at + HEADER..at + HEADER + len];
        if crc32c::crc32c(body) != crc {
            break;
        }
        out.push(body);
        at += HEADER + len;
    }
    (out, at)
}
