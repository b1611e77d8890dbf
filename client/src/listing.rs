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

/// The entries of a `List` page as full statuses, and whether more follow
/// ([`rfs_proto::listing::statuses`]); a malformed page is a protocol
/// error.
pub(crate) fn statuses(page: ListResponse) -> Result<(Vec<FileStatus>, bool)> {
    rfs_proto::listing::statuses(page).map_err(Error::Protocol)
}

#[cfg(test)]
mod tests {
    use rfs_proto::namenode::ListEntry;

    use super::*;

    #[test]
    fn malformed_pages_are_protocol_errors() {
        let page = |path: &str, items| ListResponse {
            path: path.into(),
            items,
            ..Default::default()
        };
        let err = statuses(page("/d", vec![ListEntry::default()])).unwrap_err();
        assert!(matches!(err, Error::Protocol(_)), "{err}");
        assert_eq!(
            err.to_string(),
            Error::Protocol(
                "/d: malformed List page: entry \"\" names owner 0, the page has 0".into()
            )
            .to_string()
        );
        let err = statuses(page("", vec![])).unwrap_err();
        assert!(err.to_string().contains("without the listed path"), "{err}");
    }

    #[test]
    fn a_well_formed_page_gives_its_statuses() {
        let page = ListResponse {
            has_more: true,
            path: "/d".into(),
            items: vec![ListEntry {
                name: "a".into(),
                ..Default::default()
            }],
            owners: vec!["alice".into()],
            groups: vec!["staff".into()],
        };
        let (got, more) = statuses(page).unwrap();
        assert!(more);
        assert_eq!(
            (got[0].path.as_str(), got[0].owner.as_str()),
            ("/d/a", "alice")
        );
    }
}
