//! A directory's entries a page at a time ([`ListPages`], from
//! [`Client::list_pages`]), so that a caller can show or walk a directory
//! of any size holding one page.

use rfs_proto::namenode::FileStatus;

use crate::client::{base_name, Client};
use crate::error::Result;

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
