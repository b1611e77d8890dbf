//! The `dfs` binary as the shell tests run it.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use rfs_integration::mini_cluster::bin_path;

/// Where the `dfs` runs of these tests remember namenode groups: not the
/// home directory of whoever runs the tests.
pub fn cache_dir() -> &'static Path {
    static DIR: std::sync::OnceLock<tempfile::TempDir> = std::sync::OnceLock::new();
    DIR.get_or_init(|| tempfile::tempdir().expect("a temp dir"))
        .path()
}

/// The `dfs` binary as a user runs it, against one namenode address.
#[derive(Clone)]
pub struct Dfs {
    namenode: String,
    /// Where `dfs` keeps its runtime files (`XDG_RUNTIME_DIR`); `None`
    /// leaves the test's own environment.
    runtime_dir: Option<String>,
}

impl Dfs {
    pub fn new(namenode: impl Into<String>) -> Dfs {
        Dfs {
            namenode: namenode.into(),
            runtime_dir: None,
        }
    }

    /// The same shell with its runtime files in `dir`: two such shells with
    /// different dirs look to each other like `dfs` on two hosts.
    pub fn with_runtime_dir(&self, dir: &Path) -> Dfs {
        Dfs {
            namenode: self.namenode.clone(),
            runtime_dir: Some(dir.display().to_string()),
        }
    }

    /// `dfs args…` ready to spawn; stdin, stdout and stderr are the
    /// caller's to set.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(bin_path("dfs").expect("dfs built"));
        cmd.args(args)
            .env("RFS_NAMENODE", &self.namenode)
            .env_remove("RFS_CONF")
            .env("XDG_CACHE_HOME", cache_dir());
        if let Some(dir) = &self.runtime_dir {
            cmd.env("XDG_RUNTIME_DIR", dir);
        }
        cmd
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.run_with_stdin(args, None)
    }

    pub fn run_with_stdin(&self, args: &[&str], stdin: Option<&[u8]>) -> Output {
        let mut child = self
            .command(args)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn dfs");
        if let Some(input) = stdin {
            child
                .stdin
                .take()
                .expect("piped")
                .write_all(input)
                .expect("write stdin");
        }
        child.wait_with_output().expect("dfs output")
    }

    /// Runs and expects success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "dfs {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("utf-8 stdout")
    }

    /// Runs and expects failure; returns stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert_eq!(
            out.status.code(),
            Some(1),
            "dfs {args:?} should fail with exit 1; stdout: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8(out.stderr).expect("utf-8 stderr")
    }
}
