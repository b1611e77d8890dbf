//! Path validation: absolute, `/`-separated, no empty, `.` or `..`
//! components, no NUL, components of at most 255 bytes. A trailing `/` is
//! ignored.

use crate::error::{NamenodeError, Result};

pub const MAX_NAME_LEN: usize = 255;
/// Longest path accepted, in bytes (HDFS's limit).
pub const MAX_PATH_LEN: usize = 8000;
/// Most components a path may have (HDFS's limit).
pub const MAX_DEPTH: usize = 1000;

/// The components of a valid absolute path (empty for `/`).
pub fn components(path: &str) -> Result<Vec<&str>> {
    let bad = |reason: &str| NamenodeError::InvalidPath {
        path: path.escape_debug().to_string(),
        reason: reason.into(),
    };
    if path.len() > MAX_PATH_LEN {
        return Err(NamenodeError::InvalidPath {
            path: format!(
                "{}...",
                path.chars().take(64).collect::<String>().escape_debug()
            ),
            reason: format!("longer than {MAX_PATH_LEN} bytes"),
        });
    }
    let rest = path
        .strip_prefix('/')
        .ok_or_else(|| bad("paths must be absolute (start with /)"))?;
    let rest = match rest.strip_suffix('/') {
        Some("") => return Err(bad("empty path component")), // "//"
        Some(r) => r,
        None => rest,
    };
    if rest.is_empty() {
        return Ok(Vec::new());
    }
    if rest.split('/').count() > MAX_DEPTH {
        return Err(bad("more than 1000 components"));
    }
    rest.split('/')
        .map(|c| match c {
            "" => Err(bad("empty path component")),
            "." | ".." => Err(bad("'.' and '..' are not allowed")),
            c if c.contains('\0') => Err(bad("NUL in path")),
            c if c.len() > MAX_NAME_LEN => Err(bad("a name is longer than 255 bytes")),
            c => Ok(c),
        })
        .collect()
}

/// The normalised form of a path (no trailing slash).
pub fn normalize(path: &str) -> Result<String> {
    Ok(join(&components(path)?))
}

pub fn join(components: &[&str]) -> String {
    if components.is_empty() {
        "/".to_string()
    } else {
        components.iter().fold(String::new(), |mut s, c| {
            s.push('/');
            s.push_str(c);
            s
        })
    }
}

pub fn child(parent: &str, name: &str) -> String {
    if parent == "/" {
        format!("/{name}")
    } else {
        format!("{parent}/{name}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_and_invalid() {
        assert_eq!(components("/").unwrap(), Vec::<&str>::new());
        assert_eq!(components("/a/b/").unwrap(), vec!["a", "b"]);
        assert_eq!(normalize("/a/b/").unwrap(), "/a/b");
        for bad in ["", "a", "/a//b", "/a/./b", "/a/../b", "/a\0b", "//"] {
            assert!(components(bad).is_err(), "{bad:?}");
        }
        assert!(components(&format!("/{}", "x".repeat(256))).is_err());
        assert!(components(&format!("/{}", "x".repeat(255))).is_ok());
        assert!(components(&"/x".repeat(1001)).is_err());
        assert!(components(&"/x".repeat(1000)).is_ok());
        let e = components("/a//b").unwrap_err().to_string();
        assert_eq!(e, "invalid path \"/a//b\": empty path component");
    }
}
