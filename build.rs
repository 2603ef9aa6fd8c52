//! Records the git commit, whether the tree was dirty, and the build time, so a
//! running binary can say exactly what it is (`--version`, `/api/status/summary`)
//! and refuse to serve an uncommitted build unless `ALLOW_DIRTY=true`.
use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn main() {
    // A source tarball has no git: it counts as clean, commit "unknown".
    let commit = git(&["rev-parse", "--short=12", "HEAD"]).unwrap_or_else(|| "unknown".into());
    let dirty = if commit == "unknown" {
        false
    } else {
        // Untracked files count too: they change what gets compiled.
        git(&["status", "--porcelain"]).is_some_and(|s| !s.is_empty())
    };
    let built_at = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|s| s.parse::<i64>().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs() as i64)
                .unwrap_or(0)
        });
    println!("cargo:rustc-env=ECHOPILOT_GIT_COMMIT={commit}");
    println!("cargo:rustc-env=ECHOPILOT_GIT_DIRTY={dirty}");
    println!("cargo:rustc-env=ECHOPILOT_BUILT_AT={built_at}");
    // Re-run when HEAD moves or the index changes (a commit, a checkout, an add).
    if let Some(dir) = git(&["rev-parse", "--git-dir"]) {
        println!("cargo:rerun-if-changed={dir}/HEAD");
        println!("cargo:rerun-if-changed={dir}/index");
        if let Some(r) = git(&["symbolic-ref", "-q", "HEAD"]) {
            println!("cargo:rerun-if-changed={dir}/{r}");
        }
    }
    // An edit to any source makes the tree dirty, so it must re-run the check.
    for path in [
        "src",
        "templates",
        "static",
        "tests",
        "Cargo.toml",
        "build.rs",
    ] {
        println!("cargo:rerun-if-changed={path}");
    }
    println!("cargo:rerun-if-env-changed=SOURCE_DATE_EPOCH");
}
