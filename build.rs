//! Records the git commit, whether the tree was dirty, and the build time, so a
//! running binary can say exactly what it is (`--version`, `/api/status/summary`)
//! and refuse to serve an uncommitted build unless `ALLOW_DIRTY=true`.
//!
//! What makes cargo re-run this script (and so recompile the crate) is chosen so that
//! reading the repository never does: `git status` rewrites `.git/index`, so the index
//! is not watched. The commit is named by `HEAD`, the branch ref it points to and
//! `packed-refs`; a commit, checkout or reset moves one of them. Dirtiness is computed
//! over the compiled inputs only (`INPUTS`), which are watched themselves, so an edit
//! there re-runs the check. The trade-off: a change outside `INPUTS` (README, tests)
//! does not mark the binary dirty, which is right, since it is not in the binary; and
//! an input folder created after the last run (say `templates/`) is only noticed at the
//! next commit or the next edit of an existing input.
use std::path::Path;
use std::process::Command;

/// What goes into the binary: edits here make it dirty and re-run this script.
const INPUTS: &[&str] = &[
    "src",
    "templates",
    "static",
    "Cargo.toml",
    "Cargo.lock",
    "build.rs",
];

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn main() {
    // A source tarball has no git: it counts as clean, commit "unknown".
    let commit = git(&["rev-parse", "--short=12", "HEAD"]).unwrap_or_else(|| "unknown".into());
    // Only inputs that exist: cargo re-runs a script on every build while a watched
    // path is missing.
    let inputs: Vec<&str> = INPUTS
        .iter()
        .copied()
        .filter(|p| Path::new(p).exists())
        .collect();
    let dirty = if commit == "unknown" {
        false
    } else {
        // Untracked files inside the inputs count too: they change what gets compiled.
        let mut args = vec!["status", "--porcelain", "--"];
        args.extend(&inputs);
        git(&args).is_some_and(|s| !s.is_empty())
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
    if commit != "unknown" {
        // `--git-path` resolves each file where git keeps it: in a linked worktree HEAD
        // is per worktree while refs and packed-refs live in the common folder.
        let mut watch = vec![git(&["rev-parse", "--git-path", "HEAD"])];
        if let Some(r) = git(&["symbolic-ref", "-q", "HEAD"]) {
            watch.push(git(&["rev-parse", "--git-path", &r]));
        }
        watch.push(git(&["rev-parse", "--git-path", "packed-refs"]));
        for path in watch.into_iter().flatten() {
            if Path::new(&path).exists() {
                println!("cargo:rerun-if-changed={path}");
            }
        }
    }
    for path in inputs {
        println!("cargo:rerun-if-changed={path}");
    }
    println!("cargo:rerun-if-env-changed=SOURCE_DATE_EPOCH");
}
