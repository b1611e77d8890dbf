//! Where `dfs` finds the namenodes (one, or every member of an HA group):
//! `--namenode`, then `RFS_NAMENODE` (each one `host:port`, or several
//! separated by commas), then the config file (`--config`, else `RFS_CONF`,
//! else `/etc/rfs/rfs.toml` if it exists): `[client] namenode = "a,b"` or
//! `[client] namenodes = ["a", "b"]`, else the `rpc_addr` of every
//! `[[ha.member]]` (witnesses too: they point calls at the leader); then
//! `127.0.0.1:8020`.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

pub const SYSTEM_CONFIG: &str = "/etc/rfs/rfs.toml";

/// One namenode to talk to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Namenode {
    /// RPC address, `host:port`.
    pub addr: String,
    /// Member id, when the address comes from `[[ha.member]]`.
    pub id: Option<String>,
}

impl Namenode {
    fn at(addr: &str) -> Namenode {
        Namenode {
            addr: addr.to_string(),
            id: None,
        }
    }
}

/// Resolves the namenodes (never an empty list); `env` looks up
/// environment variables and `system_config` is the file tried last.
pub fn resolve(
    flag: Option<&str>,
    config_flag: Option<&Path>,
    env: impl Fn(&str) -> Option<String>,
    system_config: &Path,
) -> Result<Vec<Namenode>> {
    if let Some(a) = flag {
        return split(a, "--namenode");
    }
    if let Some(a) = env("RFS_NAMENODE").filter(|a| !a.is_empty()) {
        return split(&a, "RFS_NAMENODE");
    }
    let file: Option<PathBuf> = match (config_flag, env("RFS_CONF").filter(|c| !c.is_empty())) {
        (Some(f), _) => Some(f.to_path_buf()),
        (None, Some(f)) => Some(PathBuf::from(f)),
        (None, None) if system_config.exists() => Some(system_config.to_path_buf()),
        (None, None) => None,
    };
    if let Some(file) = file {
        if let Some(list) = from_config(&file)? {
            return Ok(list);
        }
    }
    let defaults = rfs_client::ClientConfig::default().namenodes;
    Ok(defaults.iter().map(|a| Namenode::at(a)).collect())
}

/// `a:1, b:2` → two namenodes; `what` names the source in errors.
fn split(list: &str, what: &str) -> Result<Vec<Namenode>> {
    let out: Vec<Namenode> = list
        .split(',')
        .map(str::trim)
        .filter(|a| !a.is_empty())
        .map(Namenode::at)
        .collect();
    if out.is_empty() {
        bail!("{what} names no namenode address (give HOST:PORT[,HOST:PORT...])");
    }
    Ok(out)
}

/// The namenodes a config file names, if any: `[client] namenode`
/// (a string, commas allowed) or `[client] namenodes` (strings), else
/// every `[[ha.member]]`'s `rpc_addr`.
fn from_config(file: &Path) -> Result<Option<Vec<Namenode>>> {
    let text = std::fs::read_to_string(file)
        .with_context(|| format!("cannot read config file {}", file.display()))?;
    let table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
        let msg = e.message().split_whitespace().collect::<Vec<_>>().join(" ");
        anyhow::anyhow!("{}: {msg}", file.display())
    })?;
    let f = file.display();
    let client = table.get("client");
    match (
        client.and_then(|c| c.get("namenode")),
        client.and_then(|c| c.get("namenodes")),
    ) {
        (Some(_), Some(_)) => bail!("{f}: [client] sets both namenode and namenodes; keep one"),
        (Some(toml::Value::String(s)), None) => {
            return split(s, &format!("{f}: [client] namenode")).map(Some)
        }
        (Some(_), None) => bail!("{f}: [client] namenode must be a string"),
        (None, Some(toml::Value::Array(items))) => {
            let mut out = Vec::new();
            for item in items {
                match item.as_str().map(str::trim) {
                    Some(a) if !a.is_empty() => out.push(Namenode::at(a)),
                    _ => bail!("{f}: [client] namenodes must be a list of HOST:PORT strings"),
                }
            }
            if out.is_empty() {
                bail!("{f}: [client] namenodes is empty");
            }
            return Ok(Some(out));
        }
        (None, Some(_)) => bail!("{f}: [client] namenodes must be a list of HOST:PORT strings"),
        (None, None) => {}
    }
    let members = match table.get("ha").and_then(|h| h.get("member")) {
        None => return Ok(None),
        Some(toml::Value::Array(members)) => members,
        Some(_) => bail!("{f}: [ha] member must be [[ha.member]] tables"),
    };
    let mut out = Vec::new();
    for (i, m) in members.iter().enumerate() {
        let field = |k: &str| m.get(k).and_then(toml::Value::as_str).map(str::trim);
        let Some(addr) = field("rpc_addr").filter(|a| !a.is_empty()) else {
            bail!("{f}: [[ha.member]] number {} has no rpc_addr", i + 1);
        };
        out.push(Namenode {
            addr: addr.to_string(),
            id: field("id").filter(|id| !id.is_empty()).map(str::to_string),
        });
    }
    Ok((!out.is_empty()).then_some(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let m: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| m.get(k).cloned()
    }

    /// The addresses, joined by commas.
    fn joined(list: &[Namenode]) -> String {
        list.iter()
            .map(|n| n.addr.as_str())
            .collect::<Vec<_>>()
            .join(",")
    }

    #[test]
    fn resolution_order() {
        let dir = tempfile::tempdir().unwrap();
        let conf = dir.path().join("rfs.toml");
        std::fs::write(
            &conf,
            "[namenode]\nrpc_addr = \"x\"\n[client]\nnamenode = \"conf:1\"\n",
        )
        .unwrap();
        let other = dir.path().join("other.toml");
        std::fs::write(&other, "[client]\nnamenode = \"other:2\"\n").unwrap();
        let none = dir.path().join("absent.toml");

        let r = |flag, cfg, vars: &[(&str, &str)], sys: &Path| {
            joined(&resolve(flag, cfg, env(vars), sys).unwrap())
        };
        assert_eq!(
            r(
                Some("flag:0"),
                Some(&conf),
                &[("RFS_NAMENODE", "env:9")],
                &conf
            ),
            "flag:0"
        );
        assert_eq!(
            r(None, Some(&conf), &[("RFS_NAMENODE", "env:9")], &conf),
            "env:9"
        );
        assert_eq!(
            r(
                None,
                Some(&conf),
                &[("RFS_CONF", other.to_str().unwrap())],
                &none
            ),
            "conf:1"
        );
        assert_eq!(
            r(None, None, &[("RFS_CONF", other.to_str().unwrap())], &conf),
            "other:2"
        );
        assert_eq!(r(None, None, &[], &conf), "conf:1");
        assert_eq!(r(None, None, &[], &none), "127.0.0.1:8020");
        // A file without [client] namenode falls through to the default.
        let empty = dir.path().join("empty.toml");
        std::fs::write(&empty, "").unwrap();
        assert_eq!(r(None, Some(&empty), &[], &none), "127.0.0.1:8020");
        // An explicitly named file that is missing or broken is an error.
        assert!(resolve(None, Some(&none), env(&[]), &none).is_err());
        let broken = dir.path().join("broken.toml");
        std::fs::write(&broken, "[client\n").unwrap();
        let e = resolve(
            None,
            None,
            env(&[("RFS_CONF", broken.to_str().unwrap())]),
            &none,
        )
        .unwrap_err();
        assert!(!format!("{e:#}").contains('\n'), "{e:#}");
    }

    #[test]
    fn lists_of_namenodes() {
        let dir = tempfile::tempdir().unwrap();
        let none = dir.path().join("absent.toml");
        let file = |name: &str, text: &str| {
            let p = dir.path().join(name);
            std::fs::write(&p, text).unwrap();
            p
        };
        let r = |flag: Option<&str>, cfg: Option<&Path>, vars: &[(&str, &str)]| {
            resolve(flag, cfg, env(vars), &none)
        };
        assert_eq!(joined(&r(Some("a:1, b:2,"), None, &[]).unwrap()), "a:1,b:2");
        assert_eq!(
            joined(&r(None, None, &[("RFS_NAMENODE", "a:1,b:2,c:3")]).unwrap()),
            "a:1,b:2,c:3"
        );
        let e = r(Some(" , "), None, &[]).unwrap_err();
        assert!(
            e.to_string().contains("--namenode names no namenode"),
            "{e}"
        );

        let comma = file("comma.toml", "[client]\nnamenode = \"a:1,b:2\"\n");
        assert_eq!(joined(&r(None, Some(&comma), &[]).unwrap()), "a:1,b:2");
        let list = file("list.toml", "[client]\nnamenodes = [\"a:1\", \"b:2\"]\n");
        assert_eq!(joined(&r(None, Some(&list), &[]).unwrap()), "a:1,b:2");

        // Without [client] addresses, every [[ha.member]], witness too,
        // with its id.
        let ha = file(
            "ha.toml",
            "[namenode]\nid = \"nn1\"\n[client]\n[ha]\ntick_ms = 100\n\
             [[ha.member]]\nid = \"nn1\"\nrpc_addr = \"127.0.0.1:8020\"\n\
             [[ha.member]]\nid = \"nn2\"\nrpc_addr = \"127.0.0.1:8021\"\n\
             [[ha.member]]\nid = \"w\"\nrpc_addr = \"127.0.0.1:8022\"\nwitness = true\n",
        );
        let got = r(None, Some(&ha), &[]).unwrap();
        assert_eq!(joined(&got), "127.0.0.1:8020,127.0.0.1:8021,127.0.0.1:8022");
        let ids: Vec<_> = got.iter().map(|n| n.id.as_deref()).collect();
        assert_eq!(ids, [Some("nn1"), Some("nn2"), Some("w")]);
        // [client] wins over [ha].
        let both = file(
            "both.toml",
            "[client]\nnamenode = \"c:1\"\n[[ha.member]]\nid = \"nn1\"\nrpc_addr = \"h:1\"\n",
        );
        assert_eq!(joined(&r(None, Some(&both), &[]).unwrap()), "c:1");
        // The flag still wins over the file.
        assert_eq!(joined(&r(Some("f:1"), Some(&ha), &[]).unwrap()), "f:1");

        for (text, want) in [
            (
                "[client]\nnamenode = \"a:1\"\nnamenodes = [\"b:2\"]\n",
                "sets both namenode and namenodes",
            ),
            ("[client]\nnamenodes = \"a:1\"\n", "must be a list"),
            ("[client]\nnamenodes = [1]\n", "must be a list"),
            ("[client]\nnamenodes = []\n", "namenodes is empty"),
            ("[client]\nnamenode = 1\n", "must be a string"),
            (
                "[[ha.member]]\nid = \"nn1\"\n",
                "[[ha.member]] number 1 has no rpc_addr",
            ),
        ] {
            let bad = file("bad.toml", text);
            let e = format!("{:#}", r(None, Some(&bad), &[]).unwrap_err());
            assert!(e.contains(want), "{text:?}: {e}");
            assert!(!e.contains('\n'), "{e}");
        }
    }
}
