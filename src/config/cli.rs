//! The command line (clap): subcommands and their arguments.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// What `--help` says about the environment (the README has every setting).
const ENV_HELP: &str = "\
Environment (every setting is in the README):
  DASHBOARD_KEY   the admin key, at least 16 characters (`echopilot keygen` prints one);
                  without any key every protected route answers 401
  ROLES_JSON      more keys: {\"<key>\": \"viewer\"|\"operator\"|\"admin\"|\"worker\"}
  PORT            listen on 127.0.0.1:PORT (--bind wins)
  ECHOPILOT_HOME  the home folder (--home wins)
  ALLOW_DIRTY     serve a build of an uncommitted tree
  RUST_LOG        the log filter (default info)";

/// The command line.
#[derive(Debug, Parser)]
#[command(name = "echopilot", version = crate::build_info::VERSION_LINE, about, after_help = ENV_HELP)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub serve: ServeArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server (the default when no subcommand is given).
    Serve(ServeArgs),
    /// Check that the store opens and answers (the runbook's `SELECT 1`).
    Db {
        #[command(flatten)]
        home: HomeArg,
        #[command(subcommand)]
        action: DbAction,
    },
    /// Print a fresh key: 32 random bytes, URL-safe base64 without padding (43 characters).
    Keygen {
        /// Keys have nothing to do with a home: this takes the global `--home` out of
        /// `keygen --help` (accepted and ignored, so old scripts keep working).
        #[arg(long, hide = true)]
        home: Option<PathBuf>,
    },
    /// The audit trail: `audit verify` checks the hash chain.
    Audit {
        #[command(flatten)]
        home: HomeArg,
        #[command(subcommand)]
        action: AuditAction,
    },
    /// Log files: `logs rotate` moves them into `logs/archive/YYYYMMDD/`.
    Logs {
        #[command(flatten)]
        home: HomeArg,
        #[command(subcommand)]
        action: LogsAction,
    },
    /// Measure the durable job queue: disk sync rate, enqueue and drain (a benchmark).
    Bench(BenchArgs),
    /// Take a snapshot into `BACKUP_DIR` (asks the running server when there is one);
    /// `backup verify FILE`, `backup list`.
    Backup {
        #[command(flatten)]
        home: HomeArg,
        #[command(subcommand)]
        action: Option<BackupAction>,
    },
    /// Restore a snapshot into the home (server stopped); the old store and logs are
    /// moved aside, never deleted.
    Restore {
        #[command(flatten)]
        home: HomeArg,
        /// The snapshot file.
        file: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
pub enum BackupAction {
    /// Check the checksum, restore into a scratch store and compare counts.
    Verify {
        /// The snapshot file.
        file: PathBuf,
    },
    /// The snapshots with size, time and whether they were verified.
    List,
}

#[derive(Debug, Subcommand)]
pub enum AuditAction {
    /// Check the chain over the NDJSON files (archives in order) and the store; exits
    /// non-zero naming the first bad seq.
    Verify,
}

#[derive(Debug, Subcommand)]
pub enum LogsAction {
    /// Move `logs/ndjson/audit.ndjson`, `logs/app.log` and the other logs into
    /// `logs/archive/YYYYMMDD/` (while a server runs, it is asked to do it), audited.
    Rotate,
    /// Remove `logs/archive/YYYYMMDD/` folders older than `LOG_ARCHIVE_KEEP_DAYS`,
    /// recording the audit range they held (the server also does this hourly).
    Prune,
}

#[derive(Debug, Args, Clone)]
pub struct BenchArgs {
    /// Folder for the temporary homes (default: the system temp folder). Put it on the
    /// disk you want to measure.
    #[arg(long)]
    pub home: Option<PathBuf>,
    /// Jobs per workload.
    #[arg(long, default_value_t = 50_000)]
    pub jobs: usize,
    /// Longest a single workload may run, in seconds (the figure covers what it did).
    #[arg(long, default_value_t = 20)]
    pub max_secs: u64,
    /// Run only the workloads whose name contains this: enqueue-http, bulk-enqueue,
    /// enqueue-local, drain-http, drain-local, status, webhooks, reconcile; `snapshot`
    /// (100,000 jobs + 10⁶ audit events) runs only when named. Without it: the issue's
    /// table (enqueue 1 and 32 producers, bulk enqueue, 8-worker drains, status routes).
    #[arg(long)]
    pub only: Option<String>,
    /// Instead of the workloads: build a big home in `--home` (server stopped) with
    /// this many jobs of mixed statuses, through the store's own write paths.
    #[arg(long)]
    pub seed_jobs: Option<usize>,
    /// With `--seed-jobs` or alone: this many audit events (a valid hash chain).
    #[arg(long)]
    pub seed_audit: Option<usize>,
    /// Also print every figure as one JSON document, the last line of the output.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum DbAction {
    /// Open the store, write and read a probe key, print the schema version.
    Check {
        /// Also read every record through the codec and check the job indexes.
        #[arg(long)]
        deep: bool,
    },
    /// Print per-tree record counts and the size of the store on disk.
    Stats,
    /// Rewrite the store into a fresh one and swap it in (server stopped).
    Compact,
}

#[derive(Debug, Args, Clone, Default)]
pub struct HomeArg {
    /// Home folder holding data/, logs/ and backups/ (default: the current folder).
    #[arg(long, env = "ECHOPILOT_HOME", global = true)]
    pub home: Option<PathBuf>,
}

#[derive(Debug, Args, Clone, Default)]
pub struct ServeArgs {
    #[command(flatten)]
    pub home: HomeArg,
    /// Address to listen on (default 127.0.0.1:8080; `PORT=N` alone means 127.0.0.1:N).
    #[arg(long)]
    pub bind: Option<String>,
}
