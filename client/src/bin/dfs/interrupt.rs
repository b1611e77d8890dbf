//! SIGINT and SIGTERM. A `dfs` stopped by either deletes the files it was
//! writing under temporary names before it exits, so an interrupted put
//! leaves nothing behind, and no lease either.

use std::sync::Mutex;
use std::time::Duration;

use rfs_client::Client;
use tokio::signal::unix::{signal, Signal, SignalKind};

/// How long an interrupted `dfs` tries to delete its temporary files.
pub const CLEANUP_LIMIT: Duration = Duration::from_secs(10);

/// Both signals, caught from the start of a command to its end.
pub struct Interrupts {
    int: Signal,
    term: Signal,
}

impl Interrupts {
    pub fn listen() -> std::io::Result<Interrupts> {
        Ok(Interrupts {
            int: signal(SignalKind::interrupt())?,
            term: signal(SignalKind::terminate())?,
        })
    }

    /// The next signal's number and name.
    pub async fn next(&mut self) -> (i32, &'static str) {
        tokio::select! {
            _ = self.int.recv() => (libc::SIGINT, "SIGINT"),
            _ = self.term.recv() => (libc::SIGTERM, "SIGTERM"),
        }
    }
}

/// Files this `dfs` is writing under temporary names, each from just
/// before its create until it is renamed into place or deleted.
#[derive(Default)]
pub struct Unfinished(Mutex<Vec<(String, Stage)>>);

#[derive(Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// The create was sent: the file may be this client's, or still
    /// another writer's that the create was refused.
    Creating,
    /// Created by this client.
    Created,
}

impl Unfinished {
    fn set(&self, path: &str, stage: Option<Stage>) {
        let mut files = self.0.lock().expect("unfinished lock");
        files.retain(|(p, _)| p != path);
        if let Some(stage) = stage {
            files.push((path.to_string(), stage));
        }
    }

    /// A create of `path` is about to be sent.
    pub fn creating(&self, path: &str) {
        self.set(path, Some(Stage::Creating));
    }

    /// `path` is this client's.
    pub fn created(&self, path: &str) {
        self.set(path, Some(Stage::Created));
    }

    /// `path` was renamed into place, deleted, or never created.
    pub fn done(&self, path: &str) {
        self.set(path, None);
    }

    /// The files still unfinished.
    pub fn paths(&self) -> Vec<String> {
        let files = self.0.lock().expect("unfinished lock");
        files.iter().map(|(p, _)| p.clone()).collect()
    }

    /// Deletes every unfinished file of this client (a file whose create
    /// may have been refused only when this client holds it); each one
    /// deleted, or found gone, is done.
    pub async fn discard(&self, client: &Client) {
        let files = self.0.lock().expect("unfinished lock").clone();
        for (path, stage) in files {
            let ours = match stage {
                Stage::Created => true,
                Stage::Creating => match client.get_file_info(&path).await {
                    Ok(Some(st)) => st.writer == client.client_id(),
                    Ok(None) => {
                        self.done(&path);
                        continue;
                    }
                    Err(e) => {
                        tracing::warn!("{path}: {e}");
                        continue;
                    }
                },
            };
            if !ours {
                self.done(&path);
                continue;
            }
            match client.delete(&path, false).await {
                Ok(_) => self.done(&path),
                Err(e) if e.kind() == rfs_proto::rpc_error::RpcErrorKind::NotFound => {
                    self.done(&path)
                }
                Err(e) => tracing::warn!("{path}: {e}"),
            }
        }
    }
}
