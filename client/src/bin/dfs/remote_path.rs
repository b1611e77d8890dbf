//! Remote path helpers. The namenode rejects `//`, so joins never make one.

/// `p` without trailing slashes (the root stays `/`).
pub fn normalize(p: &str) -> String {
    let t = p.trim_end_matches('/');
    if t.is_empty() && p.starts_with('/') {
        "/".to_string()
    } else {
        t.to_string()
    }
}

/// `dir/name`.
pub fn join(dir: &str, name: &str) -> String {
    let dir = normalize(dir);
    if dir == "/" {
        format!("/{name}")
    } else {
        format!("{dir}/{name}")
    }
}

/// Last component of `p`.
pub fn base_name(p: &str) -> &str {
    p.trim_end_matches('/').rsplit('/').next().unwrap_or(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn joins_and_names() {
        assert_eq!(normalize("/user/me/"), "/user/me");
        assert_eq!(normalize("/"), "/");
        assert_eq!(normalize("//"), "/");
        assert_eq!(join("/", "a"), "/a");
        assert_eq!(join("/user/me/", "a"), "/user/me/a");
        assert_eq!(base_name("/a/b/"), "b");
        assert_eq!(base_name("/"), "");
    }
}
