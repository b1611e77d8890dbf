//! The commands. Each failure is reported as one `dfs: <error>` line; a
//! command over several paths goes on with the rest and `dfs` exits 1 at
//! the end.

pub mod admin;
pub mod health;
mod listing;
mod namespace;
mod transfer;

use rfs_client::{Client, FileStatus, FileType, ListPages};

use crate::cli::FsCmd;
use crate::interrupt::Unfinished;
use crate::writer_lock::LockDir;

/// What every put of one `dfs` run shares.
pub struct Writing<'a> {
    /// This host's writer locks, which tell a killed writer's file from a
    /// live one's; `None` when this run has none.
    pub locks: Option<&'a LockDir>,
    /// The files being written under temporary names.
    pub unfinished: &'a Unfinished,
}

/// Collects failures; prints each as one line.
#[derive(Default)]
pub struct Report {
    pub failed: bool,
    /// The signal that interrupted the command, if one did.
    pub signal: Option<i32>,
}

impl Report {
    pub fn interrupted(&mut self, number: i32, name: &str) {
        eprintln!("dfs: interrupted by {name}");
        self.failed = true;
        self.signal = Some(number);
    }

    pub fn fail(&mut self, e: anyhow::Error) {
        let msg = format!("{e:#}");
        eprintln!(
            "dfs: {}",
            msg.split_whitespace().collect::<Vec<_>>().join(" ")
        );
        self.failed = true;
    }

    pub fn check(&mut self, r: anyhow::Result<()>) {
        if let Err(e) = r {
            self.fail(e);
        }
    }
}

/// Runs a file system command; `namenode` names the namenodes (for `df`).
pub async fn run(
    client: &Client,
    namenode: &str,
    cmd: FsCmd,
    writing: &Writing<'_>,
    report: &mut Report,
) {
    match cmd {
        FsCmd::Put {
            force,
            replication,
            block_size,
            sources,
            dst,
        } => {
            let opts = transfer::PutOptions {
                force,
                replication,
                block_size,
            };
            transfer::put(client, &sources, &dst, &opts, writing, report).await
        }
        FsCmd::Get { force, src, local } => {
            report.check(transfer::get(client, &src, &local, force).await)
        }
        FsCmd::Cat { paths } => {
            for p in paths {
                report.check(transfer::cat(client, &p).await);
            }
        }
        FsCmd::Ls {
            recursive,
            human,
            paths,
            ..
        } => {
            let paths = if paths.is_empty() {
                vec!["/".to_string()]
            } else {
                paths
            };
            for p in paths {
                report.check(listing::ls(client, &p, recursive, human).await);
            }
        }
        FsCmd::Mkdir { parents, paths } => {
            for p in paths {
                report.check(namespace::mkdir(client, &p, parents).await);
            }
        }
        FsCmd::Rm { recursive, paths } => {
            for p in paths {
                report.check(namespace::rm(client, &p, recursive).await);
            }
        }
        FsCmd::Mv { src, dst } => report.check(namespace::mv(client, &src, &dst).await),
        FsCmd::Stat { path } => report.check(listing::stat(client, &path).await),
        FsCmd::Du {
            summary,
            human,
            paths,
            ..
        } => {
            for p in paths {
                report.check(listing::du(client, &p, summary, human).await);
            }
        }
        FsCmd::Count {
            quotas,
            human,
            header,
            paths,
            ..
        } => {
            if header {
                println!("{}", listing::count_header(quotas));
            }
            for p in paths {
                report.check(listing::count(client, &p, quotas, human).await);
            }
        }
        FsCmd::Df { human, .. } => report.check(listing::df(client, namenode, human).await),
        FsCmd::Fsck {
            path,
            files,
            blocks,
            locations,
        } => {
            let detail = health::Detail {
                files: files || blocks || locations,
                blocks: blocks || locations,
                locations,
            };
            report.check(health::fsck(client, &path, detail).await)
        }
        FsCmd::Setrep { replication, path } => {
            report.check(namespace::setrep(client, &path, replication).await)
        }
        FsCmd::Touchz { paths } => {
            for p in paths {
                report.check(namespace::touchz(client, &p).await);
            }
        }
    }
}

/// The status of `path`, or the usual "No such file or directory".
async fn status(client: &Client, path: &str) -> anyhow::Result<FileStatus> {
    client
        .get_file_info(path)
        .await?
        .ok_or_else(|| anyhow::anyhow!("{path}: No such file or directory"))
}

fn is_dir(st: &FileStatus) -> bool {
    st.file_type() == FileType::Directory
}

/// Everything under directory `root`, depth first, each directory before
/// its contents, names in order within a directory. It holds one page of
/// entries per directory level it is in, never the whole tree, and asks
/// for a page only when the one before is used up.
struct Walk {
    client: Client,
    /// The directories being walked, `root` first: the pages still to
    /// come and what is left of the current page.
    levels: Vec<(ListPages, std::vec::IntoIter<FileStatus>)>,
}

impl Walk {
    fn new(client: &Client, root: &str) -> Walk {
        Walk {
            client: client.clone(),
            levels: vec![(client.list_pages(root), Vec::new().into_iter())],
        }
    }

    /// The next entry, or `None` at the end; `on_page` sees each page as
    /// it arrives, before any of its entries is handed out.
    async fn next(
        &mut self,
        mut on_page: impl FnMut(&[FileStatus]),
    ) -> anyhow::Result<Option<FileStatus>> {
        loop {
            let Some((pages, page)) = self.levels.last_mut() else {
                return Ok(None);
            };
            if let Some(st) = page.next() {
                if is_dir(&st) {
                    let inside = self.client.list_pages(&st.path);
                    self.levels.push((inside, Vec::new().into_iter()));
                }
                return Ok(Some(st));
            }
            match pages.next_page().await? {
                Some(next) => {
                    on_page(&next);
                    *page = next.into_iter();
                }
                None => {
                    self.levels.pop();
                }
            }
        }
    }
}
