//! A map keyed by ids that come from a counter and are never reused
//! (inode and block ids), kept in pages of [`PAGE`] consecutive ids: a
//! value sits in its id's slot, so no key is stored, there is no hash
//! slack, and iteration is in id order for free. A page goes when its last
//! value does. Slots are `Option<T>`: for a `T` with a niche (a
//! `NonZeroU64`, a struct holding one) an empty slot costs nothing extra.
//!
//! HDFS keeps inodes and blocks in hash sets by id (`GSet`); ids dense
//! enough to page make the key and the slack unnecessary.

use std::collections::BTreeMap;

/// Ids per page: a page costs `PAGE` slots however few of them are live,
/// so small enough that the scattered survivors of a large delete keep
/// little, big enough that the page index stays small.
pub const PAGE: u64 = 64;

struct Page<T> {
    slots: [Option<T>; PAGE as usize],
    live: u32,
}

pub struct Pages<T> {
    pages: BTreeMap<u64, Box<Page<T>>>,
    len: usize,
}

impl<T> Default for Pages<T> {
    fn default() -> Self {
        Pages {
            pages: BTreeMap::new(),
            len: 0,
        }
    }
}

fn page_of(id: u64) -> (u64, usize) {
    (id / PAGE, (id % PAGE) as usize)
}

impl<T> Pages<T> {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn get(&self, id: u64) -> Option<&T> {
        let (page, slot) = page_of(id);
        self.pages.get(&page)?.slots[slot].as_ref()
    }

    pub fn get_mut(&mut self, id: u64) -> Option<&mut T> {
        let (page, slot) = page_of(id);
        self.pages.get_mut(&page)?.slots[slot].as_mut()
    }

    /// Whether `id`'s page exists (some id near it has a value).
    pub fn has_page_of(&self, id: u64) -> bool {
        self.pages.contains_key(&page_of(id).0)
    }

    /// Puts `value` at `id`; what was there.
    pub fn insert(&mut self, id: u64, value: T) -> Option<T> {
        let (page, slot) = page_of(id);
        let page = self.pages.entry(page).or_insert_with(|| {
            Box::new(Page {
                slots: std::array::from_fn(|_| None),
                live: 0,
            })
        });
        let old = page.slots[slot].replace(value);
        if old.is_none() {
            page.live += 1;
            self.len += 1;
        }
        old
    }

    pub fn remove(&mut self, id: u64) -> Option<T> {
        let (page_no, slot) = page_of(id);
        let page = self.pages.get_mut(&page_no)?;
        let old = page.slots[slot].take()?;
        page.live -= 1;
        if page.live == 0 {
            self.pages.remove(&page_no);
        }
        self.len -= 1;
        Some(old)
    }

    /// The values with ids from `from` on, in id order.
    pub fn range_from(&self, from: u64) -> impl Iterator<Item = (u64, &T)> + '_ {
        let (first_page, _) = page_of(from);
        self.pages
            .range(first_page..)
            .flat_map(|(&page, p)| {
                (p.slots.iter().enumerate())
                    .filter_map(move |(slot, v)| Some((page * PAGE + slot as u64, v.as_ref()?)))
            })
            .filter(move |(id, _)| *id >= from)
    }

    /// Every value, in id order.
    pub fn iter(&self) -> impl Iterator<Item = (u64, &T)> + '_ {
        self.range_from(0)
    }
}

impl<T> std::fmt::Debug for Pages<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pages").field("len", &self.len).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_come_back_by_id_and_in_id_order_and_empty_pages_go() {
        let mut p: Pages<u32> = Pages::default();
        for id in [0, 1, 63, 64, 200, 1 << 40] {
            assert_eq!(p.insert(id, id as u32 + 1), None);
        }
        assert_eq!(p.insert(63, 7), Some(64));
        assert_eq!(p.len(), 6);
        assert_eq!(
            (p.get(63), p.get(62), p.get(1 << 40)),
            (Some(&7), None, Some(&1))
        );
        let ids: Vec<u64> = p.iter().map(|(id, _)| id).collect();
        assert_eq!(ids, [0, 1, 63, 64, 200, 1 << 40]);
        let ids: Vec<u64> = p.range_from(64).map(|(id, _)| id).collect();
        assert_eq!(ids, [64, 200, 1 << 40]);
        assert_eq!(p.remove(200), Some(201));
        assert_eq!(p.remove(200), None);
        assert_eq!(p.pages.len(), 3, "page 3 went with its only value");
        for id in [0, 1, 63, 64, 1 << 40] {
            assert!(p.remove(id).is_some());
        }
        assert!(p.is_empty() && p.pages.is_empty());
    }
}
