//! Strings stored once each and named by a `u32` index, in order of first
//! use: a page's owner and group tables, the namenode's owners and groups
//! of inodes, the block map's datanode ids. Nothing is ever removed (a
//! cluster has few such names; a page is short-lived).

use std::collections::HashMap;

#[derive(Debug, Default)]
pub struct Interner {
    names: Vec<Box<str>>,
    index: HashMap<Box<str>, u32>,
}

impl Interner {
    /// The index of `name`, added at the end when new.
    pub fn index(&mut self, name: &str) -> u32 {
        if let Some(&i) = self.index.get(name) {
            return i;
        }
        let i = u32::try_from(self.names.len()).expect("fewer than 2^32 interned names");
        self.names.push(name.into());
        self.index.insert(name.into(), i);
        i
    }

    /// The index of `name` if it was ever added.
    pub fn get(&self, name: &str) -> Option<u32> {
        self.index.get(name).copied()
    }

    /// The name at index `i` (which this interner handed out).
    pub fn name(&self, i: u32) -> &str {
        &self.names[i as usize]
    }

    /// Every name, by index.
    pub fn names(&self) -> &[Box<str>] {
        &self.names
    }

    /// The names, by index, as owned strings.
    pub fn into_names(self) -> Vec<String> {
        self.names.into_iter().map(String::from).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_name_is_stored_once_in_order_of_first_use() {
        let mut i = Interner::default();
        assert_eq!([i.index("b"), i.index("a"), i.index("b")], [0, 1, 0]);
        assert_eq!((i.get("a"), i.get("c")), (Some(1), None));
        assert_eq!(i.name(0), "b");
        assert_eq!(i.names().len(), 2);
        assert_eq!(i.into_names(), ["b", "a"]);
    }
}
