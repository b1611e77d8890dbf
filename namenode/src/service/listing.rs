//! `List` pages as they go on the wire (`ListResponse` in namenode.proto):
//! each entry its name and compact status, owner and group names once per
//! page in tables the entries index. A directory's page is built from one
//! read of the namespace ([`Namespace::children_with`]): no path is
//! resolved, no inode cloned and no directory counted per entry.

use rfs_proto::listing::PageNames;
use rfs_proto::namenode::{ListEntry, ListResponse};

use crate::error::Result;
use crate::namespace::{InodeRef, Namespace};
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
        page.entry(inode.name.to_string(), inode, children)
    })?;
    Ok(page.response(path, items, has_more))
}

/// The listing of a file: the file itself, as one entry with no name.
pub(super) fn file_page(path: String, inode: InodeRef<'_>) -> ListResponse {
    let mut page = Page::default();
    let item = page.entry(String::new(), inode, 0);
    page.response(path, vec![item], false)
}

/// A page being built: the shared owner and group tables
/// ([`PageNames`]) and this namenode's view of an inode as an entry.
#[derive(Default)]
struct Page {
    names: PageNames,
}

impl Page {
    fn entry(&mut self, name: String, inode: InodeRef<'_>, children: u64) -> ListEntry {
        let (file_type, length, replication, block_size, writer) = type_fields(inode.file);
        ListEntry {
            name,
            file_type: file_type as i32,
            length,
            owner: self.names.owner(inode.owner),
            group: self.names.group(inode.group),
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
        self.names.page(path, items, has_more)
    }
}
