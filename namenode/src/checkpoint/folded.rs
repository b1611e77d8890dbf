//! The deltas a merge folds into the image: each key's last value, in key
//! order, held compactly.
//!
//! A merge runs once the deltas hold half as many bytes as the image (tens
//! of megabytes at a million files). Kept as a B-tree of owned keys and
//! values they cost three to four times their bytes, in small allocations
//! the allocator keeps after the merge (the namenode's RSS right after a
//! load of 1M files was mostly that). Here every record's bytes go into
//! one buffer sized from the files' lengths and an index of 16 bytes per
//! record is sorted by key: two large allocations, given back to the
//! system when the merge ends.

/// Marks a record without a value (a removal).
const REMOVED: u32 = u32::MAX;

#[derive(Debug, Clone, Copy)]
struct Rec {
    /// Where the key starts in the buffer; its value follows it.
    at: u64,
    key_len: u32,
    value_len: u32,
}

#[derive(Default)]
pub struct FoldedDeltas {
    bytes: Vec<u8>,
    recs: Vec<Rec>,
}

impl FoldedDeltas {
    /// Room for records of about `bytes` bytes in all.
    pub fn with_capacity(bytes: usize) -> FoldedDeltas {
        FoldedDeltas {
            bytes: Vec::with_capacity(bytes),
            recs: Vec::new(),
        }
    }

    /// Adds one record; a later record of the same key wins.
    pub fn push(&mut self, key: &[u8], value: Option<&[u8]>) {
        let at = self.bytes.len() as u64;
        self.bytes.extend_from_slice(key);
        let value_len = match value {
            Some(v) => {
                self.bytes.extend_from_slice(v);
                v.len() as u32
            }
            None => REMOVED,
        };
        self.recs.push(Rec {
            at,
            key_len: key.len() as u32,
            value_len,
        });
    }

    fn key(&self, r: &Rec) -> &[u8] {
        &self.bytes[r.at as usize..][..r.key_len as usize]
    }

    /// Each key once, its last record's value, in key order.
    pub fn into_sorted(mut self) -> impl Iterator<Item = (Vec<u8>, Option<Vec<u8>>)> {
        let mut recs = std::mem::take(&mut self.recs);
        // Stable: records of one key keep their order, the last wins.
        recs.sort_by(|a, b| self.key(a).cmp(self.key(b)));
        let last_of_each: Vec<Rec> = (0..recs.len())
            .filter(|&i| i + 1 == recs.len() || self.key(&recs[i]) != self.key(&recs[i + 1]))
            .map(|i| recs[i])
            .collect();
        drop(recs);
        last_of_each.into_iter().map(move |r| {
            let key = self.key(&r).to_vec();
            let value = (r.value_len != REMOVED).then(|| {
                let from = r.at as usize + r.key_len as usize;
                self.bytes[from..from + r.value_len as usize].to_vec()
            });
            (key, value)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn each_key_once_with_its_last_value_in_key_order() {
        let mut folded = FoldedDeltas::with_capacity(8);
        let mut model: BTreeMap<Vec<u8>, Option<Vec<u8>>> = BTreeMap::new();
        let mut x: u64 = 3;
        for _ in 0..5000 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let key = format!("k{}", (x >> 40) % 700).into_bytes();
            let value =
                (!(x >> 20).is_multiple_of(4)).then(|| vec![(x >> 8) as u8; (x % 40) as usize]);
            folded.push(&key, value.as_deref());
            model.insert(key, value);
        }
        // An empty key and an empty value are records like the others.
        folded.push(b"", Some(b""));
        model.insert(Vec::new(), Some(Vec::new()));
        let got: Vec<(Vec<u8>, Option<Vec<u8>>)> = folded.into_sorted().collect();
        assert_eq!(got, model.into_iter().collect::<Vec<_>>());
    }
}
