//! Path validation: absolute, `/`-separated, no empty, `.` or `..`
//! components, no NUL, components of at most 255 bytes. A trailing `/` is
//! ignored. A path where an op makes a name ([`normalize_new`]) also may
//! not hold the characters [`rfs_proto::names`] refuses.

use rfs_proto::names;

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

/// The normalised form of a path where an op makes a name: a create, a
/// mkdirs (with the parents it makes), a rename's destination. Beyond
/// [`components`]'s rules, no component may hold a character
/// [`names::refused`]. Paths that only name what exists are not held to
/// this, so a name stored before the rule can still be listed, renamed
/// and deleted.
pub fn normalize_new(path: &str) -> Result<String> {
    let normal = normalize(path)?;
    match normal.chars().find(|c| names::refused(*c)) {
        None => Ok(normal),
        Some(c) => Err(NamenodeError::InvalidPath {
            path: path.escape_debug().to_string(),
            reason: format!("{} is not allowed in a name", names::describe(c)),
        }),
    }
}

/// Whether moving a subtree `height` levels high (0: a file or an empty
/// directory) to a path `depth` components deep would put an entry more
/// than [`MAX_DEPTH`] components deep, where no path can name it.
pub fn move_exceeds_depth(depth: usize, height: usize) -> bool {
    depth.saturating_add(height) > MAX_DEPTH
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

    #[test]
    fn a_move_may_reach_but_not_pass_the_depth_limit() {
        assert!(!move_exceeds_depth(1, 0));
        assert!(!move_exceeds_depth(MAX_DEPTH, 0));
        assert!(move_exceeds_depth(MAX_DEPTH + 1, 0));
        assert!(!move_exceeds_depth(400, 600));
        assert!(move_exceeds_depth(401, 600));
        assert!(move_exceeds_depth(1, MAX_DEPTH));
        assert!(move_exceeds_depth(usize::MAX, usize::MAX));
    }

    #[test]
    fn names_being_made_hold_no_control_or_bidi_characters() {
        assert_eq!(normalize_new("/a/é 日本 🙂/").unwrap(), "/a/é 日本 🙂");
        let e = normalize_new("/a/x\u{1b}[2J").unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid path \"/a/x\\u{1b}[2J\": U+001B (a control character) is not allowed in a name"
        );
        let e = normalize_new("/a\u{202e}b/c").unwrap_err().to_string();
        assert!(
            e.ends_with("U+202E (a bidirectional control) is not allowed in a name"),
            "{e}"
        );
        // Only making a name is refused: existing names still resolve.
        assert_eq!(normalize("/a/x\u{1b}").unwrap(), "/a/x\u{1b}");
        // The general rules come first.
        assert!(normalize_new("/a//\u{7f}")
            .unwrap_err()
            .to_string()
            .contains("empty"));
    }
}
