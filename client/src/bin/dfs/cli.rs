//! Command-line syntax of `dfs`, modelled on `hdfs dfs`.

use std::path::PathBuf;

use clap::{ArgAction, Parser, Subcommand};
use rfs_proto::defaults::MAX_REPLICATION;

#[derive(Debug, Parser)]
#[command(
    name = "dfs",
    version,
    about = "rfs file system shell",
    long_about = "rfs file system shell, modelled on `hdfs dfs`.\n\n\
        The namenodes are --namenode, else $RFS_NAMENODE (one HOST:PORT, or several \
        separated by commas), else the config file (--config, else $RFS_CONF, else \
        /etc/rfs/rfs.toml if present): `namenode = \"a,b\"` or `namenodes = [\"a\", \"b\"]` \
        under [client], else the rpc_addr of every [[ha.member]]; else 127.0.0.1:8020. \
        One member of an HA group is enough: the first to answer names the others and the \
        leader. Calls go to the leader and follow it through failovers. dfs remembers each \
        group it learns ($XDG_CACHE_HOME/rfs/namenode-groups.toml, else ~/.cache/rfs/...), \
        so when the members given are all down, the group's others stand in. Failures \
        print one line `dfs: <error>` and exit 1."
)]
pub struct Cli {
    /// Namenode RPC address HOST:PORT (any member of an HA group), or several separated by commas.
    #[arg(long, global = true, value_name = "ADDR[,ADDR...]")]
    pub namenode: Option<String>,
    /// Config file to read the namenodes from ([client], else [ha]).
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// When a write loses a datanode: `never` finishes the block on the
    /// survivors (the namenode re-replicates it after close), `always`
    /// brings in a replacement, `default` does so at replication 3+ when at
    /// most half the nodes are left or the data was flushed (as HDFS).
    /// Goes before the command, like HDFS's generic options.
    #[arg(long, value_name = "POLICY", default_value = "default")]
    pub replace_datanode_on_failure: rfs_client::ReplaceDatanode,
    #[command(subcommand)]
    pub cmd: Cmd,
}

#[derive(Debug, Subcommand)]
pub enum Cmd {
    #[command(flatten)]
    Fs(FsCmd),
    /// Administer the namenode group: `dfs admin ha status|transfer`.
    #[command(subcommand)]
    Admin(AdminCmd),
}

#[derive(Debug, Subcommand)]
pub enum AdminCmd {
    /// The namenode HA group: each member's state, and moving leadership.
    #[command(subcommand)]
    Ha(HaCmd),
    /// Datanodes: live and dead, capacity, used, remaining, failed volumes.
    #[command(
        long_about = "Print the cluster's totals, then every datanode the leader knows, live \
        ones first: address, id, capacity, used, remaining, failed volumes, replicas held and \
        seconds since its last heartbeat."
    )]
    Report,
    /// Drain a datanode so it can be switched off (or `--cancel`).
    #[command(
        long_about = "Decommission DATANODE (its id, or its data address ip:port as `dfs admin \
        report` shows): no new blocks go to it, and every replica it holds is copied to other \
        datanodes. `dfs admin report` shows it `decommissioning`, then `decommissioned` once \
        every block has its full replication elsewhere; then it can be stopped without \
        losing redundancy. `--cancel` puts it back in service."
    )]
    Decommission {
        /// Datanode id or data address ip:port.
        datanode: String,
        /// Put the datanode back in service.
        #[arg(long)]
        cancel: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum HaCmd {
    /// Show every member: id, address, role, term, commit and applied index, lag.
    #[command(
        long_about = "Ask every member of the namenode group for its HA status: the \
        namenodes given (see `dfs --help`), then the others of their group as the first \
        to answer names them. Print one row per member: ID, ADDRESS, ROLE (leader, follower, candidate, ...; \
        \"(witness)\" for a witness), TERM, COMMIT (commit index), APPLIED (applied index) \
        and LAG: the leader's commit index minus the member's applied index, \"-\" when no \
        leader answered. A member that cannot be asked says `unreachable: <reason>`.\n\n\
        Exits 0 when a leader answered, 1 otherwise."
    )]
    Status,
    /// Make another member the leader.
    #[command(
        long_about = "Make MEMBER_ID the leader: find the current leader through the members' \
        HA status and ask it to hand leadership over, waiting until it has. Prints \
        `leadership transferred to <id> (term <t>)`. A witness cannot lead; the leader's \
        refusal (unknown or witness member, no leader) is printed as `dfs: <error>` with \
        exit status 1."
    )]
    Transfer {
        /// Id of the member to lead, as in [[ha.member]] (e.g. nn2).
        member_id: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum FsCmd {
    /// Check the health of files' blocks: healthy, under-replicated, corrupt, missing.
    #[command(
        long_about = "Check every file under PATH, like `hdfs fsck`: each block's live good \
        replicas against the file's replication. A block is under-replicated with fewer \
        live replicas than asked, corrupt when datanodes found replicas bad and no good \
        one is live (bad ones are kept until good copies replace them), missing when no \
        replica is known. Prints a summary and \
        `The filesystem under path 'PATH' is HEALTHY` or `CORRUPT`.\n\n\
        Exits 0 when healthy (under-replication alone is healthy: the namenode is \
        repairing it), 1 when a block is corrupt or missing."
    )]
    Fsck {
        /// Path to check (default /).
        #[arg(default_value = "/")]
        path: String,
        /// Print each file checked.
        #[arg(long = "files")]
        files: bool,
        /// Print each file's blocks (implies -files).
        #[arg(long = "blocks")]
        blocks: bool,
        /// Print each block's datanode addresses (implies -blocks).
        #[arg(long = "locations")]
        locations: bool,
    },
    /// Copy local files or directories (recursively) into rfs; `-` reads stdin.
    #[command(
        long_about = "Copy local files or directories (recursively) into rfs.\n\n\
        A source `-` reads standard input. When DST is an existing directory the sources \
        go into it under their own names; several sources need a directory DST.\n\n\
        Each file is written to `<name>._COPYING_` and renamed into place when complete, \
        so a put that fails or is interrupted (SIGINT, SIGTERM: the temporary file is \
        deleted) leaves no partial file under the real name. Rerun a killed put on the \
        same host and it takes the temporary file over at once."
    )]
    Put {
        /// Overwrite existing files, replacing each in one step.
        #[arg(short = 'f')]
        force: bool,
        /// Replication of the new files (default: the namenode's).
        #[arg(short = 'r', value_name = "N", value_parser = clap::value_parser!(u32).range(1..=MAX_REPLICATION as i64))]
        replication: Option<u32>,
        /// Block size of the new files, bytes or with a k/m/g suffix.
        #[arg(short = 'b', value_name = "BLOCKSIZE", value_parser = parse_size)]
        block_size: Option<u64>,
        /// Local files or directories; `-` reads standard input.
        #[arg(required = true, value_name = "LOCAL")]
        sources: Vec<String>,
        /// The rfs destination: a file, or a directory to copy into.
        #[arg(value_name = "DST")]
        dst: String,
    },
    /// Copy an rfs file or directory (recursively) to the local file system.
    Get {
        /// Overwrite existing local files.
        #[arg(short = 'f')]
        force: bool,
        /// rfs source.
        src: String,
        /// Local destination (an existing directory receives SRC by name).
        local: PathBuf,
    },
    /// Print files to standard output.
    Cat {
        #[arg(required = true)]
        paths: Vec<String>,
    },
    /// List directories (default `/`): mode, replication, owner, group, size, mtime (UTC), path.
    #[command(
        disable_help_flag = true,
        long_about = "List each PATH (default /): a directory's entries, or a file itself, \
        one line each: permissions, replication (- for a directory), owner, group, size, \
        modification time (UTC), path. A directory's listing starts with `Found N items`, \
        its entry count when asked; -R lists everything below it instead, depth first, each \
        directory before its contents.\n\n\
        Entries print a page (up to 1000) at a time as the namenode sends them: a large \
        directory starts printing at once, and a listing that fails part way leaves what \
        came before printed. So the columns are sized page by page: as wide as the widest \
        value printed so far, never narrower, and a later page with a wider value widens \
        them from there on."
    )]
    Ls {
        /// Recurse into subdirectories.
        #[arg(short = 'R')]
        recursive: bool,
        /// Human-readable sizes.
        #[arg(short = 'h')]
        human: bool,
        /// Print help.
        #[arg(long, action = ArgAction::Help)]
        help: Option<bool>,
        paths: Vec<String>,
    },
    /// Create directories.
    Mkdir {
        /// Create missing parents; an existing directory is no error.
        #[arg(short = 'p')]
        parents: bool,
        #[arg(required = true)]
        paths: Vec<String>,
    },
    /// Delete files or directories.
    Rm {
        /// Delete directories and everything under them.
        #[arg(short = 'r', short_alias = 'R')]
        recursive: bool,
        #[arg(required = true)]
        paths: Vec<String>,
    },
    /// Rename SRC to DST (into DST when it is a directory).
    Mv { src: String, dst: String },
    /// Show the status of a path: type, size, replication, block size, owner, group, mode, mtime, blocks.
    Stat { path: String },
    /// Show space used: length and disk space consumed (length × replication).
    #[command(disable_help_flag = true)]
    Du {
        /// One summary line per path instead of one line per entry.
        #[arg(short = 's')]
        summary: bool,
        /// Human-readable sizes.
        #[arg(short = 'h')]
        human: bool,
        /// Print help.
        #[arg(long, action = ArgAction::Help)]
        help: Option<bool>,
        #[arg(required = true)]
        paths: Vec<String>,
    },
    /// Count the directories, files and bytes under each path.
    #[command(
        disable_help_flag = true,
        long_about = "Count the directories, files and bytes under each PATH, as `hdfs dfs \
        -count`: one line per path with the columns DIR_COUNT FILE_COUNT CONTENT_SIZE \
        PATHNAME. A directory counts itself; a file is 1 file of its length. CONTENT_SIZE \
        is the bytes readers see (a file being written counts up to its last finished \
        block). The namenode keeps these counts for every directory, so a count costs the \
        same for any PATH.\n\n\
        With -q, four quota columns come first, QUOTA REM_QUOTA SPACE_QUOTA \
        REM_SPACE_QUOTA: rfs has no quotas, so they read `none inf none inf`."
    )]
    Count {
        /// Show the quota columns first.
        #[arg(short = 'q')]
        quotas: bool,
        /// Human-readable CONTENT_SIZE.
        #[arg(short = 'h')]
        human: bool,
        /// Print a header line first.
        #[arg(short = 'v')]
        header: bool,
        /// Print help.
        #[arg(long, action = ArgAction::Help)]
        help: Option<bool>,
        #[arg(required = true)]
        paths: Vec<String>,
    },
    /// Show file system capacity, usage (what the datanodes hold) and datanode counts.
    #[command(disable_help_flag = true)]
    Df {
        /// Human-readable sizes.
        #[arg(short = 'h')]
        human: bool,
        /// Print help.
        #[arg(long, action = ArgAction::Help)]
        help: Option<bool>,
    },
    /// Set the replication of a file, or of every file under a directory.
    Setrep {
        #[arg(value_parser = clap::value_parser!(u32).range(1..=MAX_REPLICATION as i64))]
        replication: u32,
        path: String,
    },
    /// Create empty files; an existing non-empty file is an error.
    Touchz {
        #[arg(required = true)]
        paths: Vec<String>,
    },
}

/// `4096`, `64k`, `128m`, `1g` (binary multiples).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim().to_ascii_lowercase();
    let t = t
        .strip_suffix('b')
        .filter(|x| !x.is_empty() && x.ends_with(['k', 'm', 'g', 't']))
        .unwrap_or(&t);
    let (num, mult) = match t.chars().last() {
        Some('k') => (&t[..t.len() - 1], 1u64 << 10),
        Some('m') => (&t[..t.len() - 1], 1 << 20),
        Some('g') => (&t[..t.len() - 1], 1 << 30),
        Some('t') => (&t[..t.len() - 1], 1 << 40),
        _ => (t, 1),
    };
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a size (bytes, or a number with k, m, g or t)"))?;
    match n.checked_mul(mult) {
        Some(0) => Err("the block size must be positive".into()),
        Some(v) => Ok(v),
        None => Err(format!("{s:?} is too large")),
    }
}

/// `hdfs fsck` spells its options with one dash (`-files -blocks
/// -locations`); accept that spelling after `fsck` as well as clap's `--`.
pub fn hdfs_style_args(args: impl IntoIterator<Item = String>) -> Vec<String> {
    let mut after_fsck = false;
    args.into_iter()
        .map(|a| {
            if a == "fsck" {
                after_fsck = true;
            }
            match a.as_str() {
                "-files" | "-blocks" | "-locations" if after_fsck => format!("-{a}"),
                _ => a,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("64k"), Ok(65536));
        assert_eq!(parse_size("128M"), Ok(128 << 20));
        assert_eq!(parse_size("1gb"), Ok(1 << 30));
        assert!(parse_size("0").is_err());
        assert!(parse_size("x").is_err());
    }

    #[test]
    fn flags_parse_like_hdfs() {
        let c = Cli::try_parse_from(["dfs", "ls", "-Rh", "/a"]).unwrap();
        assert!(matches!(
            c.cmd,
            Cmd::Fs(FsCmd::Ls {
                recursive: true,
                human: true,
                ..
            })
        ));
        let c = Cli::try_parse_from([
            "dfs",
            "--namenode",
            "h:1",
            "put",
            "-f",
            "-r",
            "2",
            "-",
            "/x",
        ])
        .unwrap();
        assert_eq!(c.namenode.as_deref(), Some("h:1"));
        match c.cmd {
            Cmd::Fs(FsCmd::Put {
                force,
                replication,
                sources,
                dst,
                ..
            }) => {
                assert!(force);
                assert_eq!(replication, Some(2));
                assert_eq!(sources, ["-"]);
                assert_eq!(dst, "/x");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn admin_commands_parse() {
        let c =
            Cli::try_parse_from(["dfs", "--namenode", "a:1,b:2", "admin", "ha", "status"]).unwrap();
        assert_eq!(c.namenode.as_deref(), Some("a:1,b:2"));
        assert!(matches!(c.cmd, Cmd::Admin(AdminCmd::Ha(HaCmd::Status))));
        let args = hdfs_style_args(
            ["dfs", "fsck", "/d", "-files", "-blocks", "-locations"].map(String::from),
        );
        let c = Cli::try_parse_from(args).unwrap();
        assert!(matches!(
            c.cmd,
            Cmd::Fs(FsCmd::Fsck {
                files: true,
                blocks: true,
                locations: true,
                ..
            })
        ));
        let c = Cli::try_parse_from(["dfs", "admin", "report"]).unwrap();
        assert!(matches!(c.cmd, Cmd::Admin(AdminCmd::Report)));
        let c = Cli::try_parse_from(["dfs", "admin", "ha", "transfer", "nn2"]).unwrap();
        match c.cmd {
            Cmd::Admin(AdminCmd::Ha(HaCmd::Transfer { member_id })) => assert_eq!(member_id, "nn2"),
            other => panic!("{other:?}"),
        }
        assert!(Cli::try_parse_from(["dfs", "admin", "ha", "transfer"]).is_err());
    }
}
