//! Each directory's children, as HDFS's `INodeDirectory` keeps them: the
//! children's ids sorted by their inodes' names, each name read from its
//! inode's slot ([`Inodes`]) instead of stored a second time. An entry
//! costs its 8-byte id and a little slack, where a B-tree of inline names
//! cost 37 bytes. A directory's ids are in chunks of at most [`CHUNK`], so
//! an insert into a directory of a million entries moves a few kilobytes,
//! not megabytes.
//!
//! The order holds while every sorted id's inode exists, is named as its
//! link and has the directory as its parent. Apply keeps to that (an
//! inode is put before it is linked, and unlinked before it is renamed or
//! removed), and [`Children::unsettle`] takes an entry out of the order
//! before its inode changes name or goes. A replay of checkpoint deltas
//! keeps to nothing (their keys come in any order), and a removal may
//! leave a link without its inode: such links are kept **by name** on the
//! side. Lookups and walks see both sides merged in name order, so what a
//! member reads does not depend on the side an entry is on;
//! [`Children::settle`] moves the links that became sound into the sorted
//! lists once a load is over.

use std::collections::{BTreeMap, HashMap};
use std::iter::Peekable;
use std::ops::Bound;

use compact_str::CompactString;

use super::inodes::Inodes;

/// Ids per chunk at most.
const CHUNK: usize = 256;

#[derive(Debug, Default)]
pub struct Children {
    sorted: HashMap<u64, Sorted>,
    /// Links whose inode is missing, or named or placed otherwise.
    by_name: HashMap<u64, BTreeMap<CompactString, u64>>,
}

/// One directory's sound links: ids in chunks, in their names' order.
#[derive(Debug, Default)]
struct Sorted {
    /// Never an empty chunk.
    chunks: Vec<Vec<u64>>,
    len: usize,
}

fn name_of(inodes: &Inodes, id: u64) -> &str {
    // A sorted id always has its inode (see the module's comment).
    inodes.name_and_parent(id).map_or("", |(name, _)| name)
}

impl Sorted {
    /// Where `name` is (`Ok`) or would go (`Err`): chunk and index.
    fn find(&self, inodes: &Inodes, name: &str) -> (usize, Result<usize, usize>) {
        if self.chunks.is_empty() {
            return (0, Err(0));
        }
        let c = self
            .chunks
            .partition_point(|ch| name_of(inodes, ch[ch.len() - 1]) < name)
            .min(self.chunks.len() - 1);
        let at = self.chunks[c].binary_search_by(|id| name_of(inodes, *id).cmp(name));
        (c, at)
    }

    fn get(&self, inodes: &Inodes, name: &str) -> Option<u64> {
        match self.find(inodes, name) {
            (c, Ok(i)) => Some(self.chunks[c][i]),
            _ => None,
        }
    }

    /// Puts `id` (named `name`) in its place; the id it replaced.
    fn insert(&mut self, inodes: &Inodes, name: &str, id: u64) -> Option<u64> {
        let (c, i) = match self.find(inodes, name) {
            (c, Ok(i)) => return Some(std::mem::replace(&mut self.chunks[c][i], id)),
            (c, Err(i)) => (c, i),
        };
        if self.chunks.is_empty() {
            self.chunks.push(Vec::with_capacity(1));
        }
        let chunk = &mut self.chunks[c];
        if chunk.len() == chunk.capacity() {
            // Grown by an eighth: little slack, where doubling leaves a
            // quarter of every chunk empty on average.
            chunk.reserve_exact(chunk.len() / 8 + 1);
        }
        chunk.insert(i, id);
        self.len += 1;
        if chunk.len() > CHUNK {
            let tail = chunk.split_off(chunk.len() / 2);
            chunk.shrink_to_fit();
            self.chunks.insert(c + 1, tail);
        }
        None
    }

    fn remove(&mut self, inodes: &Inodes, name: &str) -> Option<u64> {
        let (c, Ok(i)) = self.find(inodes, name) else {
            return None;
        };
        let id = self.chunks[c].remove(i);
        self.len -= 1;
        if self.chunks[c].is_empty() {
            self.chunks.remove(c);
        } else if c + 1 < self.chunks.len()
            && self.chunks[c].len() + self.chunks[c + 1].len() <= CHUNK / 2
        {
            let next = self.chunks.remove(c + 1);
            self.chunks[c].extend(next);
        }
        if let Some(chunk) = self.chunks.get_mut(c) {
            if chunk.len() * 2 < chunk.capacity() {
                chunk.shrink_to_fit();
            }
        }
        Some(id)
    }

    /// From ids already in name order, each chunk full.
    fn from_ordered(ids: Vec<u64>) -> Sorted {
        Sorted {
            len: ids.len(),
            chunks: ids.chunks(CHUNK).map(<[u64]>::to_vec).collect(),
        }
    }

    /// The ids named after `after` (all of them when `None`), in order.
    fn ids_after<'a>(
        &'a self,
        inodes: &Inodes,
        after: Option<&str>,
    ) -> impl Iterator<Item = u64> + 'a {
        let (c, i) = match after {
            None => (0, 0),
            Some(name) => match self.find(inodes, name) {
                (c, Ok(i)) => (c, i + 1),
                (c, Err(i)) => (c, i),
            },
        };
        let first = self.chunks.get(c).map(|ch| &ch[i..]).unwrap_or_default();
        let rest = self.chunks.get(c + 1..).unwrap_or_default();
        first.iter().chain(rest.iter().flatten()).copied()
    }
}

impl Children {
    /// The id linked as `name` in `dir`.
    pub fn get(&self, inodes: &Inodes, dir: u64, name: &str) -> Option<u64> {
        // Between loads the by-name side is empty: no hashing for it.
        if !self.by_name.is_empty() {
            if let Some(id) = self.by_name.get(&dir).and_then(|m| m.get(name)) {
                return Some(*id);
            }
        }
        self.sorted.get(&dir)?.get(inodes, name)
    }

    /// Links `id` as `name` in `dir`; the id it replaced there.
    pub fn link(&mut self, inodes: &Inodes, dir: u64, name: &str, id: u64) -> Option<u64> {
        // A name is on one side only: the link leaves the other.
        if inodes.name_and_parent(id) == Some((name, dir)) {
            let was = self.unlink_by_name(dir, name);
            let replaced = (self.sorted.entry(dir).or_default()).insert(inodes, name, id);
            was.or(replaced)
        } else {
            let was = self.unlink_sorted(inodes, dir, name);
            let replaced = (self.by_name.entry(dir).or_default()).insert(name.into(), id);
            was.or(replaced)
        }
    }

    /// Unlinks `name` from `dir`; the id it linked.
    pub fn unlink(&mut self, inodes: &Inodes, dir: u64, name: &str) -> Option<u64> {
        self.unlink_by_name(dir, name)
            .or_else(|| self.unlink_sorted(inodes, dir, name))
    }

    fn unlink_by_name(&mut self, dir: u64, name: &str) -> Option<u64> {
        let names = self.by_name.get_mut(&dir)?;
        let id = names.remove(name);
        if names.is_empty() {
            self.by_name.remove(&dir);
        }
        id
    }

    fn unlink_sorted(&mut self, inodes: &Inodes, dir: u64, name: &str) -> Option<u64> {
        let sorted = self.sorted.get_mut(&dir)?;
        let id = sorted.remove(inodes, name);
        if sorted.len == 0 {
            self.sorted.remove(&dir);
        }
        id
    }

    /// Inode `id` is about to change its name or parent, or to go: its
    /// link, if sorted, moves to the by-name side, where it keeps its
    /// name whatever the inode becomes.
    pub fn unsettle(&mut self, inodes: &Inodes, id: u64) {
        let Some((name, dir)) = inodes.name_and_parent(id) else {
            return;
        };
        let Some(sorted) = self.sorted.get(&dir) else {
            return;
        };
        if sorted.get(inodes, name) != Some(id) {
            return;
        }
        let name = CompactString::new(name);
        self.unlink_sorted(inodes, dir, &name);
        self.by_name.entry(dir).or_default().insert(name, id);
    }

    /// Moves every by-name link that is sound now into the sorted lists:
    /// once a load is over.
    pub fn settle(&mut self, inodes: &Inodes) {
        let dirs: Vec<u64> = self.by_name.keys().copied().collect();
        for dir in dirs {
            let names = self.by_name.remove(&dir).unwrap_or_default();
            let mut odd = BTreeMap::new();
            let mut sound = Vec::new();
            for (name, id) in names {
                if inodes.name_and_parent(id) == Some((name.as_str(), dir)) {
                    sound.push(id);
                } else {
                    odd.insert(name, id);
                }
            }
            match self.sorted.get_mut(&dir) {
                None if !sound.is_empty() => {
                    self.sorted.insert(dir, Sorted::from_ordered(sound));
                }
                None => {}
                Some(sorted) => {
                    for id in sound {
                        sorted.insert(inodes, name_of(inodes, id), id);
                    }
                }
            }
            if !odd.is_empty() {
                self.by_name.insert(dir, odd);
            }
        }
    }

    /// Adds `names` to `dir`'s by-name links (a load's, in bulk:
    /// [`Children::settle`] sorts them once the inodes are in).
    pub fn add_by_name(
        &mut self,
        inodes: &Inodes,
        dir: u64,
        mut names: BTreeMap<CompactString, u64>,
    ) {
        if self.sorted.contains_key(&dir) {
            // Not a load into an empty tree: one link at a time.
            for (name, id) in names {
                self.link(inodes, dir, &name, id);
            }
            return;
        }
        match self.by_name.get_mut(&dir) {
            Some(m) => m.append(&mut names),
            None => {
                self.by_name.insert(dir, names);
            }
        }
    }

    /// Links on the by-name side.
    pub fn unsorted(&self) -> usize {
        self.by_name.values().map(BTreeMap::len).sum()
    }

    /// Drops `dir`'s links (the directory is removed).
    pub fn remove_dir(&mut self, dir: u64) {
        self.sorted.remove(&dir);
        self.by_name.remove(&dir);
    }

    /// Number of entries in `dir`.
    pub fn count(&self, dir: u64) -> u64 {
        let sorted = self.sorted.get(&dir).map_or(0, |s| s.len);
        let by_name = self.by_name.get(&dir).map_or(0, BTreeMap::len);
        (sorted + by_name) as u64
    }

    /// Whether `dir` links anything.
    pub fn has_entries(&self, dir: u64) -> bool {
        self.sorted.contains_key(&dir) || self.by_name.contains_key(&dir)
    }

    /// The directories that link anything, each once.
    pub fn dirs(&self) -> impl Iterator<Item = u64> + '_ {
        let odd = (self.by_name.keys()).filter(|d| !self.sorted.contains_key(d));
        self.sorted.keys().chain(odd).copied()
    }

    /// `dir`'s entries in name order.
    pub fn entries<'a>(&'a self, inodes: &'a Inodes, dir: u64) -> Entries<'a> {
        self.entries_after(inodes, dir, None)
    }

    /// `dir`'s entries named after `after` (all when `None`), in name
    /// order.
    pub fn entries_after<'a>(
        &'a self,
        inodes: &'a Inodes,
        dir: u64,
        after: Option<&str>,
    ) -> Entries<'a> {
        let sorted: Box<dyn Iterator<Item = u64> + 'a> = match self.sorted.get(&dir) {
            Some(s) => Box::new(s.ids_after(inodes, after)),
            None => Box::new(std::iter::empty()),
        };
        let from = after.map_or(Bound::Unbounded, Bound::Excluded);
        let by_name: ByName<'a> = match self.by_name.get(&dir) {
            Some(m) => Box::new(m.range::<str, _>((from, Bound::Unbounded))),
            None => Box::new(std::iter::empty()),
        };
        Entries {
            inodes,
            sorted: sorted.peekable(),
            by_name: by_name.peekable(),
        }
    }
}

type ByName<'a> = Box<dyn Iterator<Item = (&'a CompactString, &'a u64)> + 'a>;

/// A directory's entries, both sides merged in name order: name and id.
pub struct Entries<'a> {
    inodes: &'a Inodes,
    sorted: Peekable<Box<dyn Iterator<Item = u64> + 'a>>,
    by_name: Peekable<ByName<'a>>,
}

impl<'a> Iterator for Entries<'a> {
    type Item = (&'a str, u64);

    fn next(&mut self) -> Option<(&'a str, u64)> {
        let inodes = self.inodes;
        let sorted_first = match (self.sorted.peek(), self.by_name.peek()) {
            (None, None) => return None,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (Some(id), Some((name, _))) => name_of(inodes, *id) < name.as_str(),
        };
        if sorted_first {
            let id = self.sorted.next()?;
            Some((name_of(inodes, id), id))
        } else {
            self.by_name.next().map(|(name, id)| (name.as_str(), *id))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::namespace::test_changes::dir_inode;

    fn put(inodes: &mut Inodes, id: u64, parent: u64, name: &str) {
        inodes.insert(&dir_inode(id, parent, name).as_ref());
    }

    fn listed(c: &Children, inodes: &Inodes, dir: u64, after: Option<&str>) -> Vec<(String, u64)> {
        (c.entries_after(inodes, dir, after))
            .map(|(n, id)| (n.to_string(), id))
            .collect()
    }

    /// Against a name-keyed map: thousands of links and unlinks in random
    /// order in one directory (many chunks), each link sound, then
    /// lookups, counts and listings from every kind of start.
    #[test]
    fn sorted_chunks_follow_a_name_keyed_map() {
        let mut inodes = Inodes::default();
        let mut c = Children::default();
        let mut model: BTreeMap<String, u64> = BTreeMap::new();
        let mut x: u64 = 7;
        let mut next_id = 2;
        for step in 0..6000 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let name = format!("n{}", (x >> 33) % 2500);
            if step % 3 == 2 {
                assert_eq!(c.unlink(&inodes, 1, &name), model.remove(&name), "{name}");
            } else {
                let id = next_id;
                next_id += 1;
                put(&mut inodes, id, 1, &name);
                assert_eq!(c.link(&inodes, 1, &name, id), model.insert(name, id));
            }
        }
        assert!(c.by_name.is_empty(), "every link was sound");
        assert!(c.sorted[&1].chunks.len() > 3);
        assert!(c.sorted[&1].chunks.iter().all(|ch| ch.len() <= CHUNK));
        assert_eq!(c.count(1), model.len() as u64);
        let all: Vec<(String, u64)> = model.iter().map(|(n, i)| (n.clone(), *i)).collect();
        assert_eq!(listed(&c, &inodes, 1, None), all);
        for (k, (name, id)) in all.iter().enumerate().step_by(97) {
            assert_eq!(c.get(&inodes, 1, name), Some(*id));
            assert_eq!(listed(&c, &inodes, 1, Some(name)), all[k + 1..]);
            // A start between two names.
            let between = format!("{name}!");
            assert_eq!(listed(&c, &inodes, 1, Some(&between)), all[k + 1..]);
        }
        assert_eq!(c.get(&inodes, 1, "nothing"), None);
        assert!(listed(&c, &inodes, 1, Some("z")).is_empty());
    }

    /// Links that are not sound (inode missing, named otherwise, renamed
    /// or removed while linked) stay by name and list merged in order;
    /// settling moves those that became sound.
    #[test]
    fn unsound_links_list_merged_and_settle_once_sound() {
        let mut inodes = Inodes::default();
        let mut c = Children::default();
        put(&mut inodes, 2, 1, "b");
        put(&mut inodes, 4, 1, "d");
        c.link(&inodes, 1, "b", 2);
        c.link(&inodes, 1, "d", 4);
        // Link before inode, as a delta replay may.
        c.link(&inodes, 1, "c", 3);
        // Named otherwise than its inode.
        put(&mut inodes, 5, 1, "other");
        c.link(&inodes, 1, "a", 5);
        let names =
            |c: &Children, inodes: &Inodes| -> Vec<(String, u64)> { listed(c, inodes, 1, None) };
        let want = |v: &[(&str, u64)]| -> Vec<(String, u64)> {
            v.iter().map(|(n, i)| (n.to_string(), *i)).collect()
        };
        assert_eq!(
            names(&c, &inodes),
            want(&[("a", 5), ("b", 2), ("c", 3), ("d", 4)])
        );
        assert_eq!(c.by_name[&1].len(), 2);
        assert_eq!(
            listed(&c, &inodes, 1, Some("b")),
            want(&[("c", 3), ("d", 4)])
        );

        // A linked inode renamed: its link keeps its name.
        c.unsettle(&inodes, 2);
        put(&mut inodes, 2, 1, "zz");
        assert_eq!(c.get(&inodes, 1, "b"), Some(2));
        assert_eq!(c.get(&inodes, 1, "zz"), None);
        assert_eq!(
            names(&c, &inodes),
            want(&[("a", 5), ("b", 2), ("c", 3), ("d", 4)])
        );

        // The missing inode arrives; settling sorts it, the others stay.
        put(&mut inodes, 3, 1, "c");
        c.settle(&inodes);
        assert_eq!(c.by_name[&1].len(), 2, "a and b are still not sound");
        assert_eq!(c.sorted[&1].len, 2);
        assert_eq!(c.count(1), 4);
        assert_eq!(c.unlink(&inodes, 1, "b"), Some(2));
        assert_eq!(c.unlink(&inodes, 1, "c"), Some(3));
        // Relinking a name moves it to the side its inode allows.
        put(&mut inodes, 5, 1, "a");
        assert_eq!(c.link(&inodes, 1, "a", 5), Some(5));
        assert!(!c.by_name.contains_key(&1));
        assert_eq!(names(&c, &inodes), want(&[("a", 5), ("d", 4)]));
        assert_eq!(c.dirs().collect::<Vec<_>>(), [1]);
        c.remove_dir(1);
        assert!(!c.has_entries(1) && c.count(1) == 0);
    }
}
