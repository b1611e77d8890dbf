//! CRC32C per chunk.
//!
//! Block data is cut into chunks of `bytes_per_checksum` bytes (the last may
//! be shorter); each chunk has one big-endian CRC32C. The same layout is used
//! in packets on the wire and in a datanode's `.meta` file, so a datanode can
//! serve stored checksums without recomputing them.
//!
//! ```text
//! data:      | chunk 0 (bpc) | chunk 1 (bpc) | ... | chunk n-1 (<= bpc) |
//! checksums: | crc0 u32 BE   | crc1 u32 BE   | ... | crc(n-1) u32 BE    |
//! ```

use bytes::{BufMut, Bytes, BytesMut};

/// Size of one stored checksum.
pub const CHECKSUM_LEN: usize = 4;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("checksum mismatch at block offset {offset}")]
pub struct ChecksumError {
    /// Offset in the block of the first byte of the bad chunk.
    pub offset: u64,
}

/// Checksum parameters for one stream of block data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checksums {
    pub bytes_per_checksum: usize,
}

impl Checksums {
    pub fn new(bytes_per_checksum: u32) -> Self {
        assert!(
            bytes_per_checksum > 0,
            "bytes_per_checksum must be positive"
        );
        Checksums {
            bytes_per_checksum: bytes_per_checksum as usize,
        }
    }

    /// Number of chunks (and checksums) covering `data_len` bytes.
    pub fn chunks(&self, data_len: usize) -> usize {
        data_len.div_ceil(self.bytes_per_checksum)
    }

    /// Bytes of checksums covering `data_len` bytes of data.
    pub fn checksum_len(&self, data_len: usize) -> usize {
        self.chunks(data_len) * CHECKSUM_LEN
    }

    /// Computes the checksums of `data`, which must start on a chunk boundary.
    pub fn compute(&self, data: &[u8]) -> Bytes {
        let mut out = BytesMut::with_capacity(self.checksum_len(data.len()));
        for chunk in data.chunks(self.bytes_per_checksum) {
            out.put_u32(crc32c::crc32c(chunk));
        }
        out.freeze()
    }

    /// Verifies `data` (starting on a chunk boundary at `block_offset`)
    /// against `checksums`. A count mismatch is reported at `block_offset`.
    pub fn verify(
        &self,
        data: &[u8],
        checksums: &[u8],
        block_offset: u64,
    ) -> Result<(), ChecksumError> {
        if checksums.len() != self.checksum_len(data.len()) {
            return Err(ChecksumError {
                offset: block_offset,
            });
        }
        for (i, (chunk, crc)) in data
            .chunks(self.bytes_per_checksum)
            .zip(checksums.chunks_exact(CHECKSUM_LEN))
            .enumerate()
        {
            let expected = u32::from_be_bytes(crc.try_into().expect("chunks_exact(4)"));
            if crc32c::crc32c(chunk) != expected {
                return Err(ChecksumError {
                    offset: block_offset + (i * self.bytes_per_checksum) as u64,
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compute_then_verify_and_detect_flip() {
        let c = Checksums::new(512);
        let data: Vec<u8> = (0..1500u32).map(|i| i as u8).collect();
        let sums = c.compute(&data);
        assert_eq!(sums.len(), 3 * CHECKSUM_LEN);
        c.verify(&data, &sums, 1024).unwrap();
        let mut bad = data.clone();
        bad[700] ^= 1;
        assert_eq!(
            c.verify(&bad, &sums, 1024),
            Err(ChecksumError { offset: 1024 + 512 })
        );
        assert!(c.verify(&data, &sums[..8], 0).is_err());
    }
}
