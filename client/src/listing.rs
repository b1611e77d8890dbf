//! A directory's entries a page at a time ([`ListPages`], from
//! [`Client::list_pages`]), so that a caller can show or walk a directory
//! of any size holding one page; and the full statuses of a compact `List`
//! page ([`statuses`]).

use rfs_proto::namenode::{FileStatus, ListResponse};

use tokio::task::JoinHandle;

use crate::client::Client;
use crate::error::{Error, Result};

/// Entries asked for per `List` page (the namenode may send fewer).
const LIST_PAGE: u32 = 1000;

/// The entries of one directory in name order, a `List` call per page.
/// Each page is asked for as soon as the one before arrived (its last
/// name is where the next starts), so the namenode builds a page while
/// the caller turns the one before into statuses and uses it.
pub struct ListPages {
    client: Client,
    path: String,
    /// Where the next page starts (the last name handed out).
    start_after: String,
    /// That page, asked for already.
    next: Option<JoinHandle<Result<ListResponse>>>,
    done: bool,
}

impl ListPages {
    pub(crate) fn new(client: Client, path: &str) -> ListPages {
        ListPages {
            client,
            path: path.to_string(),
            start_after: String::new(),
            next: None,
            done: false,
        }
    }

    /// The next page (never empty), or `None` after the last. A page
    /// starts after the last name of the page before, so entries created
    /// or deleted meanwhile show up (or not) once, never twice. After an
    /// error the same page is asked for again by the next call.
    pub async fn next_page(&mut self) -> Result<Option<Vec<FileStatus>>> {
        if self.done {
            return Ok(None);
        }
        let page = match self.next.take() {
            Some(next) => next.await.map_err(|e| {
                Error::Io(format!("{}: listing the next page failed: {e}", self.path))
            })??,
            None => {
                (self.client)
                    .list_compact(&self.path, &self.start_after, LIST_PAGE)
                    .await?
            }
        };
        match page.items.last() {
            None => {
                self.done = true;
                return Ok(None);
            }
            Some(last) if page.has_more => {
                self.start_after = last.name.clone();
                let (client, path, after) = (
                    self.client.clone(),
                    self.path.clone(),
                    self.start_after.clone(),
                );
                self.next = Some(tokio::spawn(async move {
                    client.list_compact(&path, &after, LIST_PAGE).await
                }));
            }
            Some(_) => self.done = true,
        }
        Ok(Some(statuses(page)?.0))
    }
}

impl Drop for ListPages {
    /// A caller that stops early leaves no page on its way.
    fn drop(&mut self) {
        if let Some(next) = self.next.take() {
            next.abort();
        }
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
