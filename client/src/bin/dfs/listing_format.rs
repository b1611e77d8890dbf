//! How `ls`, `du`, `df` and `stat` print. Paths show control characters
//! and bidirectional controls escaped ([`rfs_proto::names`]): the namenode
//! refuses them in new names, but one stored before must not forge a line
//! or reorder what follows.

use rfs_client::{FileStatus, FileType};
use rfs_proto::names::escape_refused;

use crate::civil_time::format_ms;

/// `drwxr-xr-x` / `-rw-r--r--`.
pub fn permissions(st: &FileStatus) -> String {
    let mut s = String::with_capacity(10);
    s.push(if st.file_type() == FileType::Directory {
        'd'
    } else {
        '-'
    });
    for shift in [6, 3, 0] {
        let bits = (st.mode >> shift) & 7;
        s.push(if bits & 4 != 0 { 'r' } else { '-' });
        s.push(if bits & 2 != 0 { 'w' } else { '-' });
        s.push(if bits & 1 != 0 { 'x' } else { '-' });
    }
    s
}

/// Bytes, or binary units with `human`.
pub fn size(n: u64, human: bool) -> String {
    if human {
        humansize::format_size(n, humansize::BINARY)
    } else {
        n.to_string()
    }
}

fn or_dash(s: &str) -> &str {
    if s.is_empty() {
        "-"
    } else {
        s
    }
}

/// The columns of `ls` lines, as `hdfs dfs -ls`: permissions, replication
/// (`-` for directories), owner, group, size, mtime, path. A listing is
/// printed page by page as it arrives, so columns cannot be sized over
/// all of it: each page widens them to its widest cell and they never
/// narrow, so they line up unless a later page holds a wider cell.
#[derive(Debug)]
pub struct LsColumns {
    /// Replication, owner, group, size.
    widths: [usize; 4],
    human: bool,
}

impl LsColumns {
    pub fn new(human: bool) -> LsColumns {
        LsColumns {
            widths: [0; 4],
            human,
        }
    }

    /// Widens the columns to fit `page`.
    pub fn widen(&mut self, page: &[FileStatus]) {
        for st in page {
            let cells = self.cells(st);
            for (w, cell) in self.widths.iter_mut().zip(&cells[1..5]) {
                *w = (*w).max(cell.len());
            }
        }
    }

    /// The line for `st`, with a newline.
    pub fn line(&self, st: &FileStatus) -> String {
        let [perm, repl, owner, group, size, mtime, path] = self.cells(st);
        let [wr, wo, wg, ws] = self.widths;
        format!("{perm} {repl:>wr$} {owner:<wo$} {group:<wg$} {size:>ws$} {mtime} {path}\n")
    }

    /// The lines for `page` after widening the columns to fit it.
    pub fn page(&mut self, page: &[FileStatus]) -> String {
        self.widen(page);
        page.iter().map(|st| self.line(st)).collect()
    }

    fn cells(&self, st: &FileStatus) -> [String; 7] {
        let is_dir = st.file_type() == FileType::Directory;
        [
            permissions(st),
            if is_dir {
                "-".into()
            } else {
                st.replication.to_string()
            },
            or_dash(&st.owner).to_string(),
            or_dash(&st.group).to_string(),
            size(if is_dir { 0 } else { st.length }, self.human),
            format_ms(st.mtime_ms),
            escape_refused(&st.path).into_owned(),
        ]
    }
}

/// The multi-line `stat` report.
pub fn stat_report(st: &FileStatus, blocks: Option<usize>) -> String {
    let is_dir = st.file_type() == FileType::Directory;
    let mut out = String::new();
    let mut line = |k: &str, v: String| out.push_str(&format!("{k:<12} {v}\n"));
    line("Path:", escape_refused(&st.path).into_owned());
    line(
        "Type:",
        if is_dir { "directory" } else { "regular file" }.into(),
    );
    line("Size:", st.length.to_string());
    if is_dir {
        line("Entries:", st.children.to_string());
    } else {
        line("Replication:", st.replication.to_string());
        line("Block size:", st.block_size.to_string());
    }
    line("Owner:", or_dash(&st.owner).to_string());
    line("Group:", or_dash(&st.group).to_string());
    line(
        "Mode:",
        format!("{:04o} ({})", st.mode & 0o7777, permissions(st)),
    );
    line("Modified:", format!("{} UTC", format_ms(st.mtime_ms)));
    if let Some(b) = blocks {
        line("Blocks:", b.to_string());
    }
    if st.under_construction {
        line("State:", "under construction".into());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn st(path: &str, dir: bool, len: u64, mode: u32) -> FileStatus {
        FileStatus {
            path: path.into(),
            file_type: if dir {
                FileType::Directory
            } else {
                FileType::File
            } as i32,
            length: len,
            owner: "me".into(),
            group: "supergroup".into(),
            mode,
            mtime_ms: 951_827_696_000,
            replication: if dir { 0 } else { 3 },
            ..Default::default()
        }
    }

    /// The lines of one listing of `pages`, each page printed as it came.
    fn ls_lines(pages: &[&[FileStatus]], human: bool) -> Vec<String> {
        let mut columns = LsColumns::new(human);
        pages
            .iter()
            .flat_map(|p| {
                columns
                    .page(p)
                    .lines()
                    .map(str::to_string)
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    #[test]
    fn ls_columns_line_up() {
        let lines = ls_lines(
            &[&[
                st("/user/me/tree", true, 0, 0o755),
                st("/user/me/big.bin", false, 2_097_485, 0o644),
            ]],
            false,
        );
        assert_eq!(
            lines,
            [
                "drwxr-xr-x - me supergroup       0 2000-02-29 12:34 /user/me/tree",
                "-rw-r--r-- 3 me supergroup 2097485 2000-02-29 12:34 /user/me/big.bin",
            ]
        );
        let human = ls_lines(&[&[st("/f", false, 2 * 1024 * 1024, 0o600)]], true);
        assert_eq!(
            human,
            ["-rw------- 3 me supergroup 2 MiB 2000-02-29 12:34 /f"]
        );
    }

    #[test]
    fn columns_widen_page_by_page_and_never_narrow() {
        let lines = ls_lines(
            &[
                &[st("/a", false, 7, 0o644)],
                &[st("/b", false, 123_456, 0o644)],
                &[st("/c", false, 5, 0o644)],
            ],
            false,
        );
        assert_eq!(
            lines,
            [
                "-rw-r--r-- 3 me supergroup 7 2000-02-29 12:34 /a",
                "-rw-r--r-- 3 me supergroup 123456 2000-02-29 12:34 /b",
                "-rw-r--r-- 3 me supergroup      5 2000-02-29 12:34 /c",
            ]
        );
    }

    #[test]
    fn names_that_could_forge_lines_are_escaped() {
        let lines = ls_lines(
            &[&[
                st("/d/a\u{1b}[2J", false, 1, 0o644),
                st("/d/b\nforged", false, 2, 0o644),
                st("/d/c.\u{202e}txt", true, 0, 0o755),
            ]],
            false,
        );
        assert_eq!(lines.len(), 3);
        assert!(lines[0].ends_with(" /d/a\\u{1b}[2J"), "{lines:?}");
        assert!(lines[1].ends_with(" /d/b\\nforged"), "{lines:?}");
        assert!(lines[2].ends_with(" /d/c.\\u{202e}txt"), "{lines:?}");
        let r = stat_report(&st("/d/b\nforged", false, 2, 0o644), Some(1));
        assert!(r.contains("Path:        /d/b\\nforged\n"), "{r}");
    }

    #[test]
    fn stat_names_everything() {
        let r = stat_report(&st("/f", false, 11, 0o644), Some(1));
        for want in [
            "Path:        /f",
            "regular file",
            "Size:        11",
            "Replication: 3",
            "0644 (-rw-r--r--)",
            "Blocks:      1",
        ] {
            assert!(r.contains(want), "{want:?} in\n{r}");
        }
    }
}
