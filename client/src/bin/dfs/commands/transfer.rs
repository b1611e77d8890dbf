//! put, get, cat: moving bytes between the local file system and rfs.
//!
//! Both directions copy to `<name>._COPYING_` and rename it into place at
//! the end (as `hdfs dfs` does), so a failed or interrupted copy leaves no
//! partial file under the real name; `put -f` renames over the old file in
//! one step, so readers see the old file or the new one, never neither.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use rfs_client::{Client, CreateOptions, FileWriter};
use rfs_proto::rpc_error::RpcErrorKind;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::{is_dir, status, Report, Walk, Writing};
use crate::progress;
use crate::remote_path::{base_name, join, normalize};

/// Copy buffer size.
const BUF: usize = 1024 * 1024;

/// Suffix of the name a copy is written under until it is complete.
const COPYING_SUFFIX: &str = "._COPYING_";

pub struct PutOptions {
    pub force: bool,
    pub replication: Option<u32>,
    pub block_size: Option<u64>,
}

pub async fn put(
    client: &Client,
    sources: &[String],
    dst: &str,
    opts: &PutOptions,
    writing: &Writing<'_>,
    report: &mut Report,
) {
    let dst = normalize(dst);
    let dst_is_dir = match client.get_file_info(&dst).await {
        Ok(st) => st.as_ref().is_some_and(is_dir),
        Err(e) => return report.fail(e.into()),
    };
    if sources.len() > 1 && !dst_is_dir {
        return report.fail(anyhow!(
            "{dst}: Not a directory (several sources need a directory destination)"
        ));
    }
    let put = Put {
        client,
        opts,
        writing,
    };
    for src in sources {
        report.check(put.one(src, &dst, dst_is_dir).await);
    }
}

/// One `dfs put` command: its client, options and shared state.
struct Put<'a> {
    client: &'a Client,
    opts: &'a PutOptions,
    writing: &'a Writing<'a>,
}

impl Put<'_> {
    async fn one(&self, src: &str, dst: &str, dst_is_dir: bool) -> Result<()> {
        let client = self.client;
        if src == "-" {
            if dst_is_dir {
                bail!("{dst}: Is a directory (name the file to put stdin into)");
            }
            return self.stream(tokio::io::stdin(), "stdin", None, dst).await;
        }
        let local = Path::new(src);
        let meta = std::fs::metadata(local).with_context(|| src.to_string())?;
        let target = if dst_is_dir {
            join(dst, &local_name(local)?)
        } else {
            dst.to_string()
        };
        if !meta.is_dir() {
            return self.file(local, &target).await;
        }
        // A directory: its tree, directories first so files have their parent.
        if !client.mkdirs(&target, false).await? && !self.opts.force {
            bail!("{target}: File exists");
        }
        for (path, remote, is_dir) in local_tree(local, &target)? {
            if is_dir {
                client.mkdirs(&remote, false).await?;
            } else {
                self.file(&path, &remote).await?;
            }
        }
        Ok(())
    }

    async fn file(&self, local: &Path, remote: &str) -> Result<()> {
        let name = local.display().to_string();
        let f = tokio::fs::File::open(local)
            .await
            .with_context(|| name.clone())?;
        let len = f.metadata().await.with_context(|| name.clone())?.len();
        self.stream(f, &name, Some(len), remote).await
    }

    /// Copies `input` to `remote._COPYING_`, then renames it to `remote`
    /// (over the old file with `-f`). On any failure the temporary file is
    /// deleted, and with it this client's lease.
    async fn stream(
        &self,
        input: impl AsyncRead + Unpin,
        name: &str,
        len: Option<u64>,
        remote: &str,
    ) -> Result<()> {
        let (client, unfinished) = (self.client, self.writing.unfinished);
        match client.get_file_info(remote).await? {
            Some(st) if is_dir(&st) => bail!("{remote}: Is a directory"),
            Some(_) if !self.opts.force => bail!("{remote}: File exists"),
            _ => {}
        }
        let tmp = format!("{remote}{COPYING_SUFFIX}");
        unfinished.creating(&tmp);
        let mut w = match self.create_copying(&tmp).await {
            Ok(w) => w,
            Err(e) => {
                unfinished.done(&tmp);
                return Err(e);
            }
        };
        unfinished.created(&tmp);
        let copied = async {
            let bar = progress::bar(remote, len.unwrap_or(0));
            copy(input, &mut w, &bar).await.map_err(|e| match e {
                CopyError::Read(e) => anyhow!("{name}: {e}"),
                CopyError::Write(e) => anyhow!(e),
            })?;
            w.close().await?;
            if self.opts.force {
                client.rename_overwrite(&tmp, remote).await?;
            } else {
                client.rename(&tmp, remote).await?;
            }
            bar.finish_and_clear();
            Ok(())
        }
        .await;
        if copied.is_err() {
            drop(w);
            // Left unfinished if this fails too; main says so at the end.
            if let Err(e) = client.delete(&tmp, false).await {
                tracing::warn!("{tmp}: {e}");
                return copied;
            }
        }
        unfinished.done(&tmp);
        copied
    }

    /// Creates `tmp`, replacing what an earlier put left there. A leftover
    /// still held by a `dfs` writer this host knows is dead is taken over
    /// at once; one held by a live writer, or by one this host cannot
    /// judge (until its lease's soft limit), is refused as being written.
    async fn create_copying(&self, tmp: &str) -> Result<FileWriter> {
        let client = self.client;
        let create = CreateOptions {
            overwrite: true,
            replication: self.opts.replication,
            block_size: self.opts.block_size,
            create_parent: false,
            take_over_from: None,
        };
        let refused = match client.create(tmp, create.clone()).await {
            Err(e) if e.kind() == RpcErrorKind::LeaseConflict => e,
            other => return Ok(other?),
        };
        let holder = client
            .get_file_info(tmp)
            .await?
            .map(|st| st.writer)
            .unwrap_or_default();
        let Some(dead) = self.writing.locks.and_then(|l| l.dead_writer(&holder)) else {
            return Err(refused.into());
        };
        let taken = CreateOptions {
            take_over_from: Some(holder),
            ..create
        };
        let w = client.create(tmp, taken).await?;
        dead.forget();
        Ok(w)
    }
}

/// Name a local source goes by in a directory.
fn local_name(p: &Path) -> Result<String> {
    let name = match p.file_name() {
        Some(n) => n.to_os_string(),
        None => std::fs::canonicalize(p)
            .with_context(|| p.display().to_string())?
            .file_name()
            .map(|n| n.to_os_string())
            .ok_or_else(|| anyhow!("{}: cannot name it in rfs", p.display()))?,
    };
    name.into_string()
        .map_err(|n| anyhow!("{}: file name is not UTF-8", n.to_string_lossy()))
}

/// Every entry under local directory `dir` paired with its rfs path,
/// parents before children.
fn local_tree(dir: &Path, remote: &str) -> Result<Vec<(PathBuf, String, bool)>> {
    let mut out = Vec::new();
    let mut stack = vec![(dir.to_path_buf(), remote.to_string())];
    while let Some((d, r)) = stack.pop() {
        let mut entries: Vec<_> = std::fs::read_dir(&d)
            .with_context(|| d.display().to_string())?
            .collect::<std::io::Result<_>>()
            .with_context(|| d.display().to_string())?;
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let path = e.path();
            let name = local_name(&path)?;
            let remote = join(&r, &name);
            let meta = std::fs::metadata(&path).with_context(|| path.display().to_string())?;
            if meta.is_dir() {
                out.push((path.clone(), remote.clone(), true));
                stack.push((path, remote));
            } else {
                out.push((path, remote, false));
            }
        }
    }
    Ok(out)
}

enum CopyError {
    Read(std::io::Error),
    Write(std::io::Error),
}

/// Copies until EOF, telling read failures from write failures.
async fn copy(
    mut from: impl AsyncRead + Unpin,
    to: &mut (impl AsyncWrite + Unpin),
    bar: &indicatif::ProgressBar,
) -> Result<u64, CopyError> {
    let mut buf = vec![0u8; BUF];
    let mut total = 0u64;
    loop {
        let n = from.read(&mut buf).await.map_err(CopyError::Read)?;
        if n == 0 {
            return Ok(total);
        }
        to.write_all(&buf[..n]).await.map_err(CopyError::Write)?;
        total += n as u64;
        bar.inc(n as u64);
    }
}

pub async fn get(client: &Client, src: &str, local: &Path, force: bool) -> Result<()> {
    let src = normalize(src);
    let st = status(client, &src).await?;
    let dest = if local.is_dir() {
        local.join(base_name(&src))
    } else {
        local.to_path_buf()
    };
    if !is_dir(&st) {
        return get_file(client, &src, &dest, force).await;
    }
    std::fs::create_dir_all(&dest).with_context(|| dest.display().to_string())?;
    let mut walk = Walk::new(client, &src);
    while let Some(entry) = walk.next(|_| {}).await? {
        let rel = entry
            .path
            .strip_prefix(&src)
            .unwrap_or(&entry.path)
            .trim_start_matches('/');
        let path = dest.join(rel);
        if is_dir(&entry) {
            std::fs::create_dir_all(&path).with_context(|| path.display().to_string())?;
        } else {
            get_file(client, &entry.path, &path, force).await?;
        }
    }
    Ok(())
}

/// Copies to `<dest>._COPYING_`, then renames, so a failed copy leaves no
/// half file under the real name.
async fn get_file(client: &Client, src: &str, dest: &Path, force: bool) -> Result<()> {
    let shown = dest.display().to_string();
    if !force && dest.exists() {
        bail!("{shown}: File exists");
    }
    let mut r = client.open(src).await?;
    let mut tmp = dest.as_os_str().to_os_string();
    tmp.push(COPYING_SUFFIX);
    let tmp = PathBuf::from(tmp);
    let res = async {
        let mut f = tokio::fs::File::create(&tmp)
            .await
            .with_context(|| shown.clone())?;
        let bar = progress::bar(src, r.len());
        copy(&mut r, &mut f, &bar).await.map_err(|e| match e {
            CopyError::Read(e) => anyhow!(e),
            CopyError::Write(e) => anyhow!("{shown}: {e}"),
        })?;
        f.flush().await.with_context(|| shown.clone())?;
        f.sync_all().await.with_context(|| shown.clone())?;
        bar.finish_and_clear();
        tokio::fs::rename(&tmp, dest)
            .await
            .with_context(|| shown.clone())
    }
    .await;
    if res.is_err() {
        let _ = tokio::fs::remove_file(&tmp).await;
    }
    res
}

pub async fn cat(client: &Client, path: &str) -> Result<()> {
    let mut r = client.open(path).await?;
    let mut out = tokio::io::stdout();
    let bar = indicatif::ProgressBar::hidden();
    copy(&mut r, &mut out, &bar).await.map_err(|e| match e {
        CopyError::Read(e) => anyhow!(e),
        CopyError::Write(e) => anyhow!("stdout: {e}"),
    })?;
    out.flush().await.context("stdout")?;
    Ok(())
}
