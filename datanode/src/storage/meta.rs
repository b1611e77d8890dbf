//! The `.meta` file of a replica.
//!
//! ```text
//! +-------------+--------------------+-------------+----------------------------+
//! | version u16 | bytes_per_checksum | reserved    | CRC32C u32 BE per chunk of |
//! | BE (= 1)    | u32 BE             | u16 (= 0)   | the data file, in order    |
//! +-------------+--------------------+-------------+----------------------------+
//! ```
//! The checksums are the same bytes a packet carries, so reads serve them
//! unchanged and a reader detects on-disk corruption.

use crate::config::MAX_BYTES_PER_CHECKSUM;

pub const META_VERSION: u16 = 1;
pub const HEADER_LEN: u64 = 8;

pub fn encode_header(bytes_per_checksum: u32) -> [u8; HEADER_LEN as usize] {
    let mut h = [0u8; HEADER_LEN as usize];
    h[..2].copy_from_slice(&META_VERSION.to_be_bytes());
    h[2..6].copy_from_slice(&bytes_per_checksum.to_be_bytes());
    h
}

/// Returns `bytes_per_checksum`, or why the header is unusable.
pub fn decode_header(h: &[u8]) -> Result<u32, String> {
    if h.len() < HEADER_LEN as usize {
        return Err(format!(
            "meta header is {} bytes, expected {HEADER_LEN}",
            h.len()
        ));
    }
    let version = u16::from_be_bytes([h[0], h[1]]);
    if version != META_VERSION {
        return Err(format!("meta version {version}, expected {META_VERSION}"));
    }
    let bpc = u32::from_be_bytes([h[2], h[3], h[4], h[5]]);
    if bpc == 0 || bpc > MAX_BYTES_PER_CHECKSUM {
        return Err(format!("bytes_per_checksum {bpc} out of range"));
    }
    Ok(bpc)
}

/// Length a meta file must have for `data_len` bytes of data.
pub fn meta_len(data_len: u64, bytes_per_checksum: u32) -> u64 {
    HEADER_LEN + data_len.div_ceil(bytes_per_checksum as u64) * 4
}

/// Position in the meta file of the checksum of the chunk at `data_offset`.
pub fn checksum_pos(data_offset: u64, bytes_per_checksum: u32) -> u64 {
    HEADER_LEN + (data_offset / bytes_per_checksum as u64) * 4
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trip_and_rejects() {
        assert_eq!(decode_header(&encode_header(512)), Ok(512));
        assert!(decode_header(&[0, 2, 0, 0, 2, 0, 0, 0]).is_err());
        assert!(decode_header(&encode_header(0)).is_err());
        assert!(decode_header(&[0, 1]).is_err());
        assert_eq!(meta_len(0, 512), 8);
        assert_eq!(meta_len(513, 512), 16);
    }
}
