//! `List` pages as they go on the wire (`ListResponse` in namenode.proto):
//! each entry its name and compact status, owner and group names once per
//! page in tables the entries index. A directory's page is built from one
//! read of the namespace ([`Namespace::children_with`]): no path is
//! resolved, no inode cloned and no directory counted per entry.

use std::collections::HashMap;

use rfs_proto::namenode::{ListEntry, ListResponse};

use crate::error::Result;
use crate::namespace::{Inode, Namespace};
use crate::state::type_fields;

/// Up to `limit` entries of directory `dir`, listed as `path`, with names
/// after `start_after`.
pub(super) fn directory_page(
    ns: &Namespace,
    path: String,
    dir: u64,
    start_after: &str,
    limit: usize,
) -> Result<ListResponse> {
    let mut page = Page::default();
    let (items, has_more) = ns.children_with(dir, start_after, limit, |inode, children| {
        page.entry(inode.name.clone(), inode, children)
    })?;
    Ok(page.response(path, items, has_more))
}

/// The listing of a file: the file itself, as one entry with no name.
pub(super) fn file_page(path: String, inode: &Inode) -> ListResponse {
    let mut page = Page::default();
    let item = page.entry(String::new(), inode, 0);
    page.response(path, vec![item], false)
}

/// The owner and group tables of a page being built.
#[derive(Default)]
struct Page {
    owners: Names,
    groups: Names,
}

impl Page {
    fn entry(&mut self, name: String, inode: &Inode, children: u64) -> ListEntry {
        let (file_type, length, replication, block_size, writer) = type_fields(inode);
        ListEntry {
            name,
            file_type: file_type as i32,
            length,
            owner: self.owners.index(&inode.owner),
            group: self.groups.index(&inode.group),
            mode: inode.mode,
            mtime_ms: inode.mtime_ms,
            atime_ms: inode.atime_ms,
            replication,
            block_size,
            inode_id: inode.id,
            under_construction: writer.is_some(),
            children,
            writer: writer.unwrap_or_default(),
        }
    }

    fn response(self, path: String, items: Vec<ListEntry>, has_more: bool) -> ListResponse {
        ListResponse {
            has_more,
            path,
            items,
            owners: self.owners.names,
            groups: self.groups.names,
        }
    }
}

/// Names in order of first use, each once.
#[derive(Default)]
struct Names {
    names: Vec<String>,
    index: HashMap<String, u32>,
}

impl Names {
    /// The index of `name`, added at the end when new.
    fn index(&mut self, name: &str) -> u32 {
        if let Some(&i) = self.index.get(name) {
            return i;
        }
        // A page holds at most MAX_LIST_LIMIT entries, so far fewer names
        // than u32 counts.
        let i = u32::try_from(self.names.len()).expect("a page's names fit u32");
        self.names.push(name.to_string());
        self.index.insert(name.to_string(), i);
        i
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_indexed_in_order_of_first_use_once_each() {
        let mut names = Names::default();
        let got: Vec<u32> = ["bob", "alice", "bob", "carol", "alice"]
            .iter()
            .map(|n| names.index(n))
            .collect();
        assert_eq!(got, [0, 1, 0, 2, 1]);
        assert_eq!(names.names, ["bob", "alice", "carol"]);
    }
}
