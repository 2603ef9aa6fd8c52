//! What this binary is: version, git commit, dirty flag and build time (from build.rs).

/// Crate version.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// Short git commit, or `unknown` for a build without git.
pub const COMMIT: &str = env!("ECHOPILOT_GIT_COMMIT");
/// Built from a tree with uncommitted changes.
pub const DIRTY: bool = const_str_eq(env!("ECHOPILOT_GIT_DIRTY"), "true");
/// Build time, seconds since the epoch.
pub const BUILT_AT: &str = env!("ECHOPILOT_BUILT_AT");

/// `<version> (<commit>[-dirty])`, what `--version` prints after the name.
pub const VERSION_LINE: &str = if DIRTY {
    concat!(
        env!("CARGO_PKG_VERSION"),
        " (",
        env!("ECHOPILOT_GIT_COMMIT"),
        "-dirty)"
    )
} else {
    concat!(
        env!("CARGO_PKG_VERSION"),
        " (",
        env!("ECHOPILOT_GIT_COMMIT"),
        ")"
    )
};

/// The commit as shown to operators: `abc123` or `abc123-dirty`.
pub fn commit_label() -> String {
    if DIRTY {
        format!("{COMMIT}-dirty")
    } else {
        COMMIT.to_string()
    }
}

/// Build time as RFC 3339.
pub fn built_at() -> String {
    BUILT_AT
        .parse::<i64>()
        .ok()
        .and_then(|s| chrono::DateTime::from_timestamp(s, 0))
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_default()
}

/// The runbook's "Verify ALLOW_DIRTY=true if code is uncommitted": refuse to serve a
/// build of an uncommitted tree unless the operator says so.
pub fn check_dirty(dirty: bool, allow_dirty: bool) -> Result<(), String> {
    if dirty && !allow_dirty {
        return Err(format!(
            "this binary was built from an uncommitted tree ({COMMIT}-dirty); commit the \
             changes and rebuild, or set ALLOW_DIRTY=true to serve it anyway"
        ));
    }
    Ok(())
}

const fn const_str_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dirty_builds_need_allow_dirty() {
        assert!(check_dirty(false, false).is_ok());
        assert!(check_dirty(true, true).is_ok());
        let e = check_dirty(true, false).unwrap_err();
        assert!(e.contains("ALLOW_DIRTY"));
    }

    #[test]
    fn version_line_names_commit() {
        assert!(VERSION_LINE.starts_with(VERSION));
        assert!(VERSION_LINE.contains(COMMIT));
        assert_eq!(VERSION_LINE.ends_with("-dirty)"), DIRTY);
    }
}
