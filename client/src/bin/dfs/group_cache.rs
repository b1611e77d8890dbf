//! What `dfs` remembers of namenode groups between runs, so that a run
//! given one member's address (the quickstart's plain `dfs` talks to
//! 127.0.0.1:8020) still finds the others when that member is down: they
//! become [`rfs_client::ClientConfig::remembered_namenodes`].
//!
//! One small file per user, `$XDG_CACHE_HOME/rfs/namenode-groups.toml`
//! (else `~/.cache/rfs/...`): each group as a member last described it,
//! with the addresses `dfs` was given when it learnt it, newest first, at
//! most [`MAX_GROUPS`]. It is a hint, never an authority: the library uses
//! a remembered member only after that member confirms the group, a file
//! that cannot be read or parsed is ignored (debug log), and a failure to
//! write it is only logged. It is replaced whole (written beside, renamed
//! over), so a reader never sees half of one; two `dfs` writing at once
//! leave one of their versions.

use std::path::{Path, PathBuf};

use rfs_client::NamenodeGroup;
use serde::{Deserialize, Serialize};

/// Groups kept; the oldest goes first.
const MAX_GROUPS: usize = 8;
/// A bigger file is not one `dfs` wrote.
const MAX_FILE_BYTES: u64 = 64 * 1024;
const FILE_NAME: &str = "namenode-groups.toml";

pub struct GroupCache {
    path: PathBuf,
}

#[derive(Debug, Default, PartialEq, Serialize, Deserialize)]
struct CacheFile {
    #[serde(default)]
    group: Vec<Group>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Group {
    /// The addresses `dfs` was given when a member described the group.
    given: Vec<String>,
    member: Vec<Member>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Member {
    id: String,
    rpc_addr: String,
}

impl Group {
    /// Whether `addr` was given for this group or is one of its members.
    fn knows(&self, addr: &str) -> bool {
        self.given.iter().any(|a| a == addr) || self.member.iter().any(|m| m.rpc_addr == addr)
    }
}

impl GroupCache {
    /// The current user's cache; `None` without `XDG_CACHE_HOME` (an
    /// absolute path) or `HOME`. `env` looks up environment variables.
    pub fn for_user(env: impl Fn(&str) -> Option<String>) -> Option<GroupCache> {
        let dir = match (env("XDG_CACHE_HOME"), env("HOME")) {
            (Some(xdg), _) if Path::new(&xdg).is_absolute() => PathBuf::from(xdg),
            (_, Some(home)) if !home.is_empty() => Path::new(&home).join(".cache"),
            _ => return None,
        };
        Some(GroupCache::at(dir.join("rfs").join(FILE_NAME)))
    }

    pub fn at(path: PathBuf) -> GroupCache {
        GroupCache { path }
    }

    /// The members of the newest group remembered that `given` belongs to
    /// (one of them was given then, or is a member's address): those not
    /// given stand in when none of `given` answers, and the one reached
    /// must still name a member at every one of these addresses.
    pub fn remembered(&self, given: &[String]) -> Vec<String> {
        let file = self.read();
        let Some(group) = file.group.iter().find(|g| given.iter().any(|a| g.knows(a))) else {
            return Vec::new();
        };
        group.member.iter().map(|m| m.rpc_addr.clone()).collect()
    }

    /// Remembers `group`, described by a member reached through `given`,
    /// in place of every group remembered that shares an address with it.
    /// A group of one member is not kept (nobody could stand in for it),
    /// but still replaces what it overlaps. Writes only on a change.
    pub fn remember(&self, given: &[String], group: &NamenodeGroup) {
        let learnt = Group {
            given: given.to_vec(),
            member: group
                .members
                .iter()
                .map(|m| Member {
                    id: m.id.clone(),
                    rpc_addr: m.rpc_addr.clone(),
                })
                .collect(),
        };
        let old = self.read();
        let overlaps = |g: &Group| {
            learnt.given.iter().any(|a| g.knows(a))
                || learnt.member.iter().any(|m| g.knows(&m.rpc_addr))
        };
        let mut new = CacheFile::default();
        if learnt.member.len() > 1 {
            new.group.push(learnt.clone());
        }
        new.group
            .extend(old.group.iter().filter(|g| !overlaps(g)).cloned());
        new.group.truncate(MAX_GROUPS);
        if new != old {
            if let Err(e) = self.write(&new) {
                tracing::debug!(
                    "cannot remember the namenode group in {}: {e}",
                    self.path.display()
                );
            }
        }
    }

    /// What the file holds; empty when it is missing or not ours.
    fn read(&self) -> CacheFile {
        let text = match std::fs::metadata(&self.path) {
            Err(_) => return CacheFile::default(),
            Ok(meta) if meta.len() > MAX_FILE_BYTES => {
                tracing::debug!("ignoring {}: {} bytes", self.path.display(), meta.len());
                return CacheFile::default();
            }
            Ok(_) => std::fs::read_to_string(&self.path),
        };
        let parsed = text
            .map_err(|e| e.to_string())
            .and_then(|t| toml::from_str::<CacheFile>(&t).map_err(|e| e.message().to_string()));
        match parsed {
            Ok(file) => file,
            Err(e) => {
                tracing::debug!("ignoring {}: {e}", self.path.display());
                CacheFile::default()
            }
        }
    }

    /// Replaces the file with `file`: written beside it, then renamed
    /// over it. Not fsynced: a file lost or torn by a crash is ignored
    /// when read and written again by the next `dfs` that learns a group.
    fn write(&self, file: &CacheFile) -> std::io::Result<()> {
        let dir = self.path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir)?;
        let text = format!(
            "# Namenode groups dfs has learnt (rfs); safe to delete.\n{}",
            toml::to_string(file).map_err(std::io::Error::other)?
        );
        let tmp = dir.join(format!(".{FILE_NAME}.{}", std::process::id()));
        let written = std::fs::write(&tmp, text).and_then(|()| std::fs::rename(&tmp, &self.path));
        if written.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        written
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rfs_client::NamenodeMember;

    fn group(members: &[(&str, &str)]) -> NamenodeGroup {
        NamenodeGroup {
            members: members
                .iter()
                .map(|(id, addr)| NamenodeMember {
                    id: id.to_string(),
                    rpc_addr: addr.to_string(),
                    witness: false,
                })
                .collect(),
            leader_id: String::new(),
            member_id: members[0].0.to_string(),
        }
    }

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    fn quickstart() -> NamenodeGroup {
        group(&[
            ("nn1", "127.0.0.1:8020"),
            ("nn2", "127.0.0.1:8021"),
            ("witness", "127.0.0.1:8022"),
        ])
    }

    #[test]
    fn a_group_learnt_through_one_address_stands_in_for_it() {
        let dir = tempfile::tempdir().unwrap();
        let cache = GroupCache::at(dir.path().join("rfs").join(FILE_NAME));
        let given = strings(&["127.0.0.1:8020"]);
        assert!(cache.remembered(&given).is_empty(), "nothing learnt yet");
        cache.remember(&given, &quickstart());
        let all = strings(&["127.0.0.1:8020", "127.0.0.1:8021", "127.0.0.1:8022"]);
        assert_eq!(cache.remembered(&given), all);
        // Any member's address, or a name it was reached by, finds it.
        assert_eq!(cache.remembered(&strings(&["127.0.0.1:8022"])), all);
        cache.remember(&strings(&["nn1.local:8020"]), &quickstart());
        assert_eq!(
            cache.remembered(&strings(&["nn1.local:8020"])),
            all,
            "a name given stands for the group"
        );
        assert!(cache.remembered(&strings(&["127.0.0.1:9000"])).is_empty());
    }

    #[test]
    fn a_newer_group_on_the_same_addresses_replaces_the_old() {
        let dir = tempfile::tempdir().unwrap();
        let cache = GroupCache::at(dir.path().join(FILE_NAME));
        let given = strings(&["127.0.0.1:8020"]);
        cache.remember(&given, &quickstart());
        cache.remember(
            &strings(&["10.0.0.1:8020"]),
            &group(&[("a", "10.0.0.1:8020"), ("b", "10.0.0.2:8020")]),
        );
        // The port now belongs to a namenode without HA: nothing stands in.
        cache.remember(&given, &group(&[("solo", "127.0.0.1:8020")]));
        assert!(cache.remembered(&given).is_empty());
        assert!(cache.remembered(&strings(&["127.0.0.1:8021"])).is_empty());
        assert_eq!(
            cache.remembered(&strings(&["10.0.0.1:8020"])),
            strings(&["10.0.0.1:8020", "10.0.0.2:8020"]),
            "groups it does not overlap stay"
        );
        let text = std::fs::read_to_string(dir.path().join(FILE_NAME)).unwrap();
        assert_eq!(text.matches("[[group]]").count(), 1, "{text}");
        // Writing the same group again changes nothing.
        let before = std::fs::metadata(dir.path().join(FILE_NAME))
            .unwrap()
            .modified()
            .unwrap();
        cache.remember(
            &strings(&["10.0.0.1:8020"]),
            &group(&[("a", "10.0.0.1:8020"), ("b", "10.0.0.2:8020")]),
        );
        let after = std::fs::metadata(dir.path().join(FILE_NAME))
            .unwrap()
            .modified()
            .unwrap();
        assert_eq!(before, after);
    }

    #[test]
    fn a_corrupt_or_foreign_file_is_ignored_and_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE_NAME);
        let cache = GroupCache::at(path.clone());
        let given = strings(&["127.0.0.1:8020"]);
        for junk in [
            &b"[[group]\n"[..],
            b"group = 3\n",
            b"[[group]]\ngiven = [\"a\"]\n",
            b"\xff\xfe",
        ] {
            std::fs::write(&path, junk).unwrap();
            assert!(cache.remembered(&given).is_empty());
        }
        cache.remember(&given, &quickstart());
        assert_eq!(cache.remembered(&given).len(), 3);
        // A directory in its place: nothing remembered, nothing fails.
        std::fs::remove_file(&path).unwrap();
        std::fs::create_dir(&path).unwrap();
        cache.remember(&given, &quickstart());
        assert!(cache.remembered(&given).is_empty());
    }

    #[test]
    fn where_the_file_lives() {
        let env = |vars: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                vars.iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| v.to_string())
            }
        };
        let path = |c: Option<GroupCache>| c.map(|c| c.path);
        assert_eq!(
            path(GroupCache::for_user(env(&[
                ("XDG_CACHE_HOME", "/x"),
                ("HOME", "/h")
            ]))),
            Some(PathBuf::from("/x/rfs/namenode-groups.toml"))
        );
        assert_eq!(
            path(GroupCache::for_user(env(&[
                ("XDG_CACHE_HOME", "rel"),
                ("HOME", "/h")
            ]))),
            Some(PathBuf::from("/h/.cache/rfs/namenode-groups.toml"))
        );
        assert_eq!(path(GroupCache::for_user(env(&[]))), None);
    }
}
