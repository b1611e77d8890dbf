//! A directory's entries a page at a time ([`ListPages`], from
//! [`Client::list_pages`]), so that a caller can show or walk a directory
//! of any size holding one page; and the full statuses of a compact `List`
//! page ([`statuses`]).

use rfs_proto::namenode::{FileStatus, ListResponse};

use crate::client::{base_name, Client};
use crate::error::{Error, Result};

/// Entries asked for per `List` page (the namenode may send fewer).
const LIST_PAGE: u32 = 1000;

/// The entries of one directory in name order, a `List` call per page.
pub struct ListPages {
    client: Client,
    path: String,
    /// The name of the last entry handed out.
    start_after: String,
    done: bool,
}

impl ListPages {
    pub(crate) fn new(client: Client, path: &str) -> ListPages {
        ListPages {
            client,
            path: path.to_string(),
            start_after: String::new(),
            done: false,
        }
    }

    /// The next page (never empty), or `None` after the last. A page
    /// starts after the last name of the page before, so entries created
    /// or deleted meanwhile show up (or not) once, never twice.
    pub async fn next_page(&mut self) -> Result<Option<Vec<FileStatus>>> {
        if self.done {
            return Ok(None);
        }
        let (page, more) = self
            .client
            .list_page(&self.path, &self.start_after, LIST_PAGE)
            .await?;
        let Some(last) = page.last() else {
            self.done = true;
            return Ok(None);
        };
        self.start_after = base_name(&last.path).to_string();
        self.done = !more;
        Ok(Some(page))
    }
}

/// The entries of a `List` page as full statuses, as `GetFileInfo` gives
/// them: each entry's path rebuilt from the listed path and its name, its
/// owner and group looked up in the page's tables; and whether more
/// follow. A page without its path (a namenode older than compact
/// listings) or with an index past its table is a protocol error.
pub(crate) fn statuses(page: ListResponse) -> Result<(Vec<FileStatus>, bool)> {
    let dir = page.path;
    if dir.is_empty() {
        return Err(Error::Protocol(
            "the namenode answered List without the listed path (a namenode older than this client?)"
                .into(),
        ));
    }
    let name_at = |table: &[String], i: u32, what: &str, entry: &str| {
        table.get(i as usize).cloned().ok_or_else(|| {
            Error::Protocol(format!(
                "{dir}: malformed List page: entry {entry:?} names {what} {i}, the page has {}",
                table.len()
            ))
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
        .collect::<Result<_>>()?;
    Ok((entries, page.has_more))
}

#[cfg(test)]
mod tests {
    use rfs_proto::namenode::{FileType, ListEntry};

    use super::*;

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
    fn malformed_pages_are_protocol_errors() {
        let err = statuses(page("/d", vec![entry("a", 2, 0)])).unwrap_err();
        assert_eq!(
            err.to_string(),
            "/d: malformed List page: entry \"a\" names owner 2, the page has 2"
        );
        let err = statuses(page("/d", vec![entry("a", 0, 1)])).unwrap_err();
        assert!(matches!(err, Error::Protocol(_)), "{err}");
        let err = statuses(page("", vec![])).unwrap_err();
        assert!(err.to_string().contains("without the listed path"), "{err}");
    }
}
