//! The compact `List` page (`ListResponse` in namenode.proto), both ways:
//! [`PageNames`] builds a page's owner and group tables (each name once,
//! in order of first use); [`statuses`] turns a page back into the full
//! statuses `GetFileInfo` gives. One definition of the format for the
//! namenode, the client and the tests' fakes.

use crate::interner::Interner;
use crate::namenode::{FileStatus, ListEntry, ListResponse};

/// The owner and group tables of a page being built.
#[derive(Debug, Default)]
pub struct PageNames {
    owners: Interner,
    groups: Interner,
}

impl PageNames {
    /// The index an entry owned by `name` carries.
    pub fn owner(&mut self, name: &str) -> u32 {
        self.owners.index(name)
    }

    /// The index an entry of group `name` carries.
    pub fn group(&mut self, name: &str) -> u32 {
        self.groups.index(name)
    }

    /// The page listing `path` (normalised, never empty) with `items`.
    pub fn page(self, path: String, items: Vec<ListEntry>, has_more: bool) -> ListResponse {
        ListResponse {
            has_more,
            path,
            items,
            owners: self.owners.into_names(),
            groups: self.groups.into_names(),
        }
    }
}

/// The entries of a page as full statuses, as `GetFileInfo` gives them:
/// each entry's path rebuilt from the listed path and its name (a listed
/// file is one entry with no name), its owner and group looked up in the
/// page's tables; and whether more follow. A page without its path (a
/// namenode older than compact listings) or with an index past its table
/// is malformed: the error says how.
pub fn statuses(page: ListResponse) -> Result<(Vec<FileStatus>, bool), String> {
    let dir = page.path;
    if dir.is_empty() {
        return Err(
            "the namenode answered List without the listed path (a namenode older than this client?)"
                .into(),
        );
    }
    let name_at = |table: &[String], i: u32, what: &str, entry: &str| {
        table.get(i as usize).cloned().ok_or_else(|| {
            format!(
                "{dir}: malformed List page: entry {entry:?} names {what} {i}, the page has {}",
                table.len()
            )
        })
    };
    let entries = page
        .items
        .into_iter()
        .map(|e| {
            let path = match (e.name.as_str(), dir.as_str()) {
                ("", _) => dir.clone(),
                (name, "/") => format!("/{name}"),
                (name, _) => format!("{dir}/{name}"),
            };
            Ok(FileStatus {
                owner: name_at(&page.owners, e.owner, "owner", &e.name)?,
                group: name_at(&page.groups, e.group, "group", &e.name)?,
                path,
                file_type: e.file_type,
                length: e.length,
                mode: e.mode,
                mtime_ms: e.mtime_ms,
                atime_ms: e.atime_ms,
                replication: e.replication,
                block_size: e.block_size,
                inode_id: e.inode_id,
                under_construction: e.under_construction,
                children: e.children,
                writer: e.writer,
            })
        })
        .collect::<Result<_, String>>()?;
    Ok((entries, page.has_more))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::namenode::FileType;

    #[test]
    fn names_are_indexed_in_order_of_first_use_once_each() {
        let mut names = PageNames::default();
        let got: Vec<u32> = ["bob", "alice", "bob", "carol", "alice"]
            .iter()
            .map(|n| names.owner(n))
            .collect();
        assert_eq!(got, [0, 1, 0, 2, 1]);
        assert_eq!(names.group("staff"), 0);
        let page = names.page("/d".into(), Vec::new(), false);
        assert_eq!(page.owners, ["bob", "alice", "carol"]);
        assert_eq!(page.groups, ["staff"]);
    }

    fn entry(name: &str, owner: u32, group: u32) -> ListEntry {
        ListEntry {
            name: name.into(),
            file_type: FileType::File as i32,
            length: 7,
            owner,
            group,
            mode: 0o644,
            inode_id: 9,
            ..Default::default()
        }
    }

    fn page(path: &str, items: Vec<ListEntry>) -> ListResponse {
        ListResponse {
            has_more: true,
            path: path.into(),
            items,
            owners: vec!["alice".into(), "bob".into()],
            groups: vec!["staff".into()],
        }
    }

    #[test]
    fn full_paths_and_owners_are_rebuilt() {
        let (got, more) = statuses(page("/d", vec![entry("a", 0, 0), entry("b", 1, 0)])).unwrap();
        assert!(more);
        let seen: Vec<_> = got
            .iter()
            .map(|s| (s.path.as_str(), s.owner.as_str(), s.group.as_str()))
            .collect();
        assert_eq!(seen, [("/d/a", "alice", "staff"), ("/d/b", "bob", "staff")]);
        assert_eq!((got[0].length, got[0].mode, got[0].inode_id), (7, 0o644, 9));

        let (root, _) = statuses(page("/", vec![entry("a", 0, 0)])).unwrap();
        assert_eq!(root[0].path, "/a");
        // A listed file is its one entry, without a name.
        let (file, _) = statuses(page("/d/f", vec![entry("", 0, 0)])).unwrap();
        assert_eq!(file[0].path, "/d/f");
    }

    #[test]
    fn malformed_pages_are_refused_saying_how() {
        let err = statuses(page("/d", vec![entry("a", 2, 0)])).unwrap_err();
        assert_eq!(
            err,
            "/d: malformed List page: entry \"a\" names owner 2, the page has 2"
        );
        let err = statuses(page("/d", vec![entry("a", 0, 1)])).unwrap_err();
        assert!(err.contains("names group 1, the page has 1"), "{err}");
        let err = statuses(page("", vec![])).unwrap_err();
        assert!(err.contains("without the listed path"), "{err}");
    }
}
