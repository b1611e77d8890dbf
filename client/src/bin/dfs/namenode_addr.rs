//! Where `dfs` finds the namenode: `--namenode`, then `RFS_NAMENODE`, then
//! `[client] namenode` of the config file (`--config`, else `RFS_CONF`,
//! else `/etc/rfs/rfs.toml` if it exists), then `127.0.0.1:8020`.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

pub const SYSTEM_CONFIG: &str = "/etc/rfs/rfs.toml";

/// Resolves the address; `env` looks up environment variables and
/// `system_config` is the file tried last.
pub fn resolve(
    flag: Option<&str>,
    config_flag: Option<&Path>,
    env: impl Fn(&str) -> Option<String>,
    system_config: &Path,
) -> Result<String> {
    if let Some(a) = flag {
        return Ok(a.to_string());
    }
    if let Some(a) = env("RFS_NAMENODE").filter(|a| !a.is_empty()) {
        return Ok(a);
    }
    let file: Option<PathBuf> = match (config_flag, env("RFS_CONF").filter(|c| !c.is_empty())) {
        (Some(f), _) => Some(f.to_path_buf()),
        (None, Some(f)) => Some(PathBuf::from(f)),
        (None, None) if system_config.exists() => Some(system_config.to_path_buf()),
        (None, None) => None,
    };
    if let Some(file) = file {
        if let Some(a) = from_config(&file)? {
            return Ok(a);
        }
    }
    Ok(rfs_client::ClientConfig::default().namenode)
}

/// `[client] namenode` of a config file, if set.
fn from_config(file: &Path) -> Result<Option<String>> {
    let text = std::fs::read_to_string(file)
        .with_context(|| format!("cannot read config file {}", file.display()))?;
    let table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
        let msg = e.message().split_whitespace().collect::<Vec<_>>().join(" ");
        anyhow::anyhow!("{}: {msg}", file.display())
    })?;
    match table.get("client").and_then(|c| c.get("namenode")) {
        None => Ok(None),
        Some(toml::Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => bail!("{}: [client] namenode must be a string", file.display()),
    }
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
            resolve(flag, cfg, env(vars), sys).unwrap()
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
}
