//! Configuration: the CLI (clap), the environment (names as the runbook uses them) and
//! an optional `echopilot.toml` in the home folder for structured settings.
//!
//! Precedence: CLI flag > environment > `echopilot.toml` > default. Secrets (keys,
//! webhook secrets) come only from the environment and never show in `Debug`.
//! Every invalid value stops start-up with an error that names the setting.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use clap::{Args, Parser, Subcommand};
use serde::Deserialize;

/// The command line.
#[derive(Debug, Parser)]
#[command(name = "echopilot", version = crate::build_info::VERSION_LINE, about)]
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
    Keygen,
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
    /// Move `logs/ndjson/audit.ndjson` and `logs/app.log` into `logs/archive/YYYYMMDD/`
    /// (safe while the server runs: it opens fresh files on the next line).
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
    /// Run only the workloads whose name contains this: enqueue-http, enqueue-local,
    /// drain-http, drain-local; `snapshot` (100,000 jobs + 10⁶ audit events) runs only
    /// when named.
    #[arg(long)]
    pub only: Option<String>,
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

/// A configuration error; its message names the setting.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {setting}: {reason}")]
pub struct ConfigError {
    pub setting: String,
    pub reason: String,
}

impl ConfigError {
    fn new(setting: &str, reason: impl Into<String>) -> Self {
        Self {
            setting: setting.to_string(),
            reason: reason.into(),
        }
    }
}

/// A secret string: compared and used, never printed.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// A role a key may hold. `viewer ⊂ operator ⊂ admin`; `worker` stands apart.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Viewer,
    Operator,
    Admin,
    Worker,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Admin => "admin",
            Role::Worker => "worker",
        }
    }
}

impl FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "viewer" => Ok(Role::Viewer),
            "operator" => Ok(Role::Operator),
            "admin" => Ok(Role::Admin),
            "worker" => Ok(Role::Worker),
            other => Err(format!(
                "unknown role {other:?} (expected viewer, operator, admin or worker)"
            )),
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A command the `command` executor may run: declared in `echopilot.toml` `[commands]`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CommandSpec {
    /// The program to run (absolute path or a name on `PATH`).
    pub program: String,
    /// Arguments always passed before the job's own.
    #[serde(default)]
    pub args: Vec<String>,
    /// Working folder (default: the home).
    #[serde(default)]
    pub cwd: Option<PathBuf>,
    /// Kill the process after this many seconds (default: the job's timeout).
    #[serde(default)]
    pub timeout_secs: Option<u64>,
}

/// A cron schedule declared in `echopilot.toml` `[[schedules]]`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ScheduleSpec {
    pub name: String,
    pub cron: String,
    #[serde(default)]
    pub timezone: Option<String>,
    #[serde(default)]
    pub queue: Option<String>,
    pub kind: String,
    /// JSON payload as a TOML table or value.
    #[serde(default)]
    pub payload: Option<toml::Value>,
    #[serde(default = "yes")]
    pub enabled: bool,
}

fn yes() -> bool {
    true
}

/// `echopilot.toml`: every key optional; an unknown key is an error (checked by hand,
/// since serde's `deny_unknown_fields` does not combine with `flatten`).
#[derive(Debug, Default, Deserialize)]
struct FileConfig {
    bind: Option<String>,
    #[serde(flatten)]
    settings: BTreeMap<String, toml::Value>,
    #[serde(default)]
    commands: BTreeMap<String, CommandSpec>,
    #[serde(default)]
    schedules: Vec<ScheduleSpec>,
}

/// SLO targets (the runbook's "Key Metrics to Monitor").
#[derive(Debug, Clone, PartialEq)]
pub struct SloTargets {
    pub availability_pct: f64,
    pub uptime_pct: f64,
    pub latency_p95_ms: f64,
    pub error_rate_pct: f64,
    pub webhook_success_pct: f64,
}

/// Everything the server needs, resolved and checked.
#[derive(Debug, Clone)]
pub struct Config {
    /// Home folder: data/, logs/, backups/ live under it.
    pub home: PathBuf,
    /// Listen address.
    pub bind: SocketAddr,
    /// Admin key (`DASHBOARD_KEY`).
    pub dashboard_key: Option<Secret>,
    /// More keys with roles (`ROLES_JSON`).
    pub roles: Vec<(Secret, Role)>,
    /// Stripe webhook signing secrets; several during a rotation (`STRIPE_WEBHOOK_SECRET`).
    pub stripe_webhook_secrets: Vec<Secret>,
    /// Serve even when built from an uncommitted tree (`ALLOW_DIRTY`).
    pub allow_dirty: bool,
    /// Largest request body in bytes (`MAX_BODY_BYTES`, 1 MiB).
    pub max_body_bytes: usize,
    /// Requests taking longer are cut off with 408 (`REQUEST_TIMEOUT_SECS`, 30).
    pub request_timeout_secs: u64,
    /// Requests at least this slow get a `Slow request` line (`SLOW_REQUEST_MS`, 500).
    pub slow_request_ms: u64,
    /// Requests per client per window (`RATE_LIMIT_PER_MIN`, 600; 0 disables).
    pub rate_limit_per_min: u32,
    /// Rate-limit window in seconds (`RATE_LIMIT_WINDOW_SECS`, 60).
    pub rate_limit_window_secs: u64,
    /// Limit for worker routes (`WORKER_RATE_LIMIT_PER_MIN`, 6000; 0 disables).
    pub worker_rate_limit_per_min: u32,
    /// Limit for the Stripe webhook (`WEBHOOK_RATE_LIMIT_PER_MIN`, 3000; 0 disables).
    pub webhook_rate_limit_per_min: u32,
    /// Failed keys and logins per IP per window (`AUTH_FAIL_LIMIT_PER_MIN`, 10; 0 disables).
    pub auth_fail_limit_per_min: u32,
    /// Trust `X-Forwarded-For` for the client address (`TRUST_PROXY`).
    pub trust_proxy: bool,
    /// Rotate a log file past this size (`LOG_MAX_BYTES`, 50 MiB).
    pub log_max_bytes: u64,
    /// Scheduler tick interval (`SCHEDULER_TICK_SECS`, 60).
    pub scheduler_tick_secs: u64,
    /// Slots for built-in executors (`EXECUTOR_CONCURRENCY`, 4).
    pub executor_concurrency: usize,
    /// Re-queue a stuck job after this long (`STUCK_REQUEUE_AFTER_SECS`, 900; 0 disables).
    pub stuck_requeue_after_secs: u64,
    /// Prune finished jobs older than this (`JOB_RETENTION_DAYS`, 30).
    pub job_retention_days: u64,
    /// SLO window (`SLO_WINDOW_DAYS`, 30).
    pub slo_window_days: u64,
    /// SLO targets (`SLO_AVAILABILITY_PCT`, `SLO_UPTIME_PCT`, `SLO_LATENCY_P95_MS`,
    /// `SLO_ERROR_RATE_PCT`, `SLO_WEBHOOK_SUCCESS_PCT`).
    pub slo: SloTargets,
    /// Slack-compatible webhook for alerts (`ALERT_WEBHOOK_URL`).
    pub alert_webhook_url: Option<Secret>,
    /// Put `/metrics` behind a viewer key (`METRICS_KEY_REQUIRED`).
    pub metrics_key_required: bool,
    /// Commands the `command` executor may run (`echopilot.toml` `[commands]`).
    pub commands: BTreeMap<String, CommandSpec>,
    /// Cron schedules declared in `echopilot.toml` `[[schedules]]`.
    pub schedules: Vec<ScheduleSpec>,
    /// Disaster recovery (`BACKUP_DIR`, `BACKUP_KEEP`, `BACKUP_CRON`,
    /// `BACKUP_COPY_COMMAND`) and log retention (`LOG_ARCHIVE_KEEP_DAYS`).
    pub backup: BackupConfig,
}

/// Snapshot and log-retention settings.
#[derive(Debug, Clone)]
pub struct BackupConfig {
    /// Where snapshots go (`BACKUP_DIR`, relative to the home; `backups/disaster_recovery`).
    pub dir: PathBuf,
    /// Newest snapshots kept (`BACKUP_KEEP`, 14).
    pub keep: usize,
    /// The built-in backup schedule, UTC (`BACKUP_CRON`, `0 3 * * *`; empty disables).
    pub cron: String,
    /// Run after each verified snapshot with its path (`BACKUP_COPY_COMMAND`).
    pub copy_command: Option<Secret>,
    /// Days of `logs/archive/` kept (`LOG_ARCHIVE_KEEP_DAYS`, 90).
    pub log_archive_keep_days: u64,
}

/// The environment variables we read, each with its default (for the README table and
/// for refusing unknown keys in `echopilot.toml`). Secrets are not allowed in the file.
pub const SETTINGS: &[(&str, &str)] = &[
    ("PORT", ""),
    ("MAX_BODY_BYTES", "1048576"),
    ("REQUEST_TIMEOUT_SECS", "30"),
    ("SLOW_REQUEST_MS", "500"),
    ("RATE_LIMIT_PER_MIN", "600"),
    ("RATE_LIMIT_WINDOW_SECS", "60"),
    ("WORKER_RATE_LIMIT_PER_MIN", "6000"),
    ("WEBHOOK_RATE_LIMIT_PER_MIN", "3000"),
    ("AUTH_FAIL_LIMIT_PER_MIN", "10"),
    ("TRUST_PROXY", "false"),
    ("LOG_MAX_BYTES", "52428800"),
    ("SCHEDULER_TICK_SECS", "60"),
    ("EXECUTOR_CONCURRENCY", "4"),
    ("STUCK_REQUEUE_AFTER_SECS", "900"),
    ("JOB_RETENTION_DAYS", "30"),
    ("SLO_WINDOW_DAYS", "30"),
    ("SLO_AVAILABILITY_PCT", "99.9"),
    ("SLO_UPTIME_PCT", "99.9"),
    ("SLO_LATENCY_P95_MS", "400"),
    ("SLO_ERROR_RATE_PCT", "1.0"),
    ("SLO_WEBHOOK_SUCCESS_PCT", "99.0"),
    ("METRICS_KEY_REQUIRED", "false"),
    ("ALLOW_DIRTY", "false"),
    ("BACKUP_DIR", "backups/disaster_recovery"),
    ("BACKUP_KEEP", "14"),
    ("BACKUP_CRON", "0 3 * * *"),
    ("BACKUP_COPY_COMMAND", ""),
    ("LOG_ARCHIVE_KEEP_DAYS", "90"),
];

const SECRETS: &[&str] = &[
    "DASHBOARD_KEY",
    "ROLES_JSON",
    "STRIPE_WEBHOOK_SECRET",
    "ALERT_WEBHOOK_URL",
];

/// Where settings are looked up: the environment first, then the file.
struct Lookup<'a> {
    env: &'a HashMap<String, String>,
    file: &'a BTreeMap<String, toml::Value>,
}

impl Lookup<'_> {
    fn raw(&self, name: &str) -> Option<String> {
        if let Some(v) = self.env.get(name) {
            return Some(v.trim().to_string());
        }
        self.file.get(&name.to_ascii_lowercase()).map(|v| match v {
            toml::Value::String(s) => s.clone(),
            other => other.to_string(),
        })
    }

    fn parse<T: FromStr>(&self, name: &str, default: T) -> Result<T, ConfigError>
    where
        T::Err: fmt::Display,
    {
        match self.raw(name) {
            None => Ok(default),
            Some(s) if s.is_empty() => Ok(default),
            Some(s) => s
                .parse()
                .map_err(|e| ConfigError::new(name, format!("cannot parse {s:?}: {e}"))),
        }
    }

    fn bool(&self, name: &str) -> Result<bool, ConfigError> {
        match self
            .raw(name)
            .as_deref()
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            None | Some("") | Some("false") | Some("0") | Some("no") | Some("off") => Ok(false),
            Some("true") | Some("1") | Some("yes") | Some("on") => Ok(true),
            Some(other) => Err(ConfigError::new(
                name,
                format!("expected true or false, got {other:?}"),
            )),
        }
    }

    fn pct(&self, name: &str, default: f64) -> Result<f64, ConfigError> {
        let v: f64 = self.parse(name, default)?;
        if !(v > 0.0 && v <= 100.0) {
            return Err(ConfigError::new(name, "must be a percentage in (0, 100]"));
        }
        Ok(v)
    }

    fn positive<T: FromStr + PartialOrd + Default + Copy>(
        &self,
        name: &str,
        default: T,
    ) -> Result<T, ConfigError>
    where
        T::Err: fmt::Display,
    {
        let v: T = self.parse(name, default)?;
        if v <= T::default() {
            return Err(ConfigError::new(name, "must be greater than zero"));
        }
        Ok(v)
    }

    fn secret(&self, name: &str) -> Option<Secret> {
        self.env
            .get(name)
            .map(|s| s.trim())
            .filter(|s| !s.is_empty())
            .map(Secret::new)
    }
}

impl Config {
    /// Resolve the configuration from the process environment and `echopilot.toml`.
    pub fn load(args: &ServeArgs) -> Result<Config, ConfigError> {
        let env: HashMap<String, String> = std::env::vars().collect();
        Self::from_sources(args, &env)
    }

    /// Resolve from explicit sources (what tests call).
    pub fn from_sources(
        args: &ServeArgs,
        env: &HashMap<String, String>,
    ) -> Result<Config, ConfigError> {
        let home = args
            .home
            .home
            .clone()
            .or_else(|| env.get("ECHOPILOT_HOME").map(PathBuf::from))
            .unwrap_or_else(|| PathBuf::from("."));
        let file = read_file_config(&home)?;
        let lookup = Lookup {
            env,
            file: &file.settings,
        };

        let bind = resolve_bind(args.bind.as_deref(), &lookup, file.bind.as_deref())?;

        let roles = match lookup.secret("ROLES_JSON") {
            None => Vec::new(),
            Some(json) => parse_roles(json.expose())?,
        };
        let stripe_webhook_secrets = lookup
            .secret("STRIPE_WEBHOOK_SECRET")
            .map(|s| {
                s.expose()
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(Secret::new)
                    .collect()
            })
            .unwrap_or_default();
        let alert_webhook_url = lookup.secret("ALERT_WEBHOOK_URL");
        if let Some(url) = &alert_webhook_url {
            let u = url.expose();
            if !(u.starts_with("http://") || u.starts_with("https://")) {
                return Err(ConfigError::new(
                    "ALERT_WEBHOOK_URL",
                    "must be an http:// or https:// URL",
                ));
            }
        }

        for (name, spec) in &file.commands {
            if spec.program.trim().is_empty() {
                return Err(ConfigError::new(
                    &format!("commands.{name}.program"),
                    "must not be empty",
                ));
            }
        }

        let config = Config {
            home: home.clone(),
            bind,
            dashboard_key: lookup.secret("DASHBOARD_KEY"),
            roles,
            stripe_webhook_secrets,
            allow_dirty: lookup.bool("ALLOW_DIRTY")?,
            max_body_bytes: lookup.positive("MAX_BODY_BYTES", 1024 * 1024)?,
            request_timeout_secs: lookup.positive("REQUEST_TIMEOUT_SECS", 30)?,
            slow_request_ms: lookup.parse("SLOW_REQUEST_MS", 500)?,
            rate_limit_per_min: lookup.parse("RATE_LIMIT_PER_MIN", 600)?,
            rate_limit_window_secs: lookup.positive("RATE_LIMIT_WINDOW_SECS", 60)?,
            worker_rate_limit_per_min: lookup.parse("WORKER_RATE_LIMIT_PER_MIN", 6000)?,
            webhook_rate_limit_per_min: lookup.parse("WEBHOOK_RATE_LIMIT_PER_MIN", 3000)?,
            auth_fail_limit_per_min: lookup.parse("AUTH_FAIL_LIMIT_PER_MIN", 10)?,
            trust_proxy: lookup.bool("TRUST_PROXY")?,
            log_max_bytes: lookup.positive("LOG_MAX_BYTES", 50 * 1024 * 1024)?,
            scheduler_tick_secs: lookup.positive("SCHEDULER_TICK_SECS", 60)?,
            executor_concurrency: lookup.parse("EXECUTOR_CONCURRENCY", 4)?,
            stuck_requeue_after_secs: lookup.parse("STUCK_REQUEUE_AFTER_SECS", 900)?,
            job_retention_days: lookup.positive("JOB_RETENTION_DAYS", 30)?,
            slo_window_days: lookup.positive("SLO_WINDOW_DAYS", 30)?,
            slo: SloTargets {
                availability_pct: lookup.pct("SLO_AVAILABILITY_PCT", 99.9)?,
                uptime_pct: lookup.pct("SLO_UPTIME_PCT", 99.9)?,
                latency_p95_ms: lookup.positive("SLO_LATENCY_P95_MS", 400.0)?,
                error_rate_pct: lookup.pct("SLO_ERROR_RATE_PCT", 1.0)?,
                webhook_success_pct: lookup.pct("SLO_WEBHOOK_SUCCESS_PCT", 99.0)?,
            },
            alert_webhook_url,
            metrics_key_required: lookup.bool("METRICS_KEY_REQUIRED")?,
            commands: file.commands,
            schedules: file.schedules,
            backup: BackupConfig {
                dir: home.join(
                    lookup
                        .raw("BACKUP_DIR")
                        .filter(|d| !d.is_empty())
                        .unwrap_or_else(|| "backups/disaster_recovery".into()),
                ),
                keep: lookup.positive("BACKUP_KEEP", 14)?,
                cron: lookup
                    .raw("BACKUP_CRON")
                    .unwrap_or_else(|| "0 3 * * *".into()),
                copy_command: lookup
                    .raw("BACKUP_COPY_COMMAND")
                    .filter(|c| !c.is_empty())
                    .map(Secret::new),
                log_archive_keep_days: lookup.positive("LOG_ARCHIVE_KEEP_DAYS", 90)?,
            },
        };
        Ok(config)
    }

    pub fn data_dir(&self) -> PathBuf {
        self.home.join("data")
    }
    pub fn logs_dir(&self) -> PathBuf {
        self.home.join("logs")
    }
    pub fn backups_dir(&self) -> PathBuf {
        self.backup.dir.clone()
    }
}

fn resolve_bind(
    flag: Option<&str>,
    lookup: &Lookup<'_>,
    file_bind: Option<&str>,
) -> Result<SocketAddr, ConfigError> {
    if let Some(b) = flag {
        return b
            .parse()
            .map_err(|e| ConfigError::new("--bind", format!("cannot parse {b:?}: {e}")));
    }
    if let Some(port) = lookup.raw("PORT").filter(|p| !p.is_empty()) {
        let port: u16 = port
            .parse()
            .map_err(|e| ConfigError::new("PORT", format!("cannot parse {port:?}: {e}")))?;
        return Ok(SocketAddr::from(([127, 0, 0, 1], port)));
    }
    if let Some(b) = file_bind {
        return b.parse().map_err(|e| {
            ConfigError::new("bind (echopilot.toml)", format!("cannot parse {b:?}: {e}"))
        });
    }
    Ok(SocketAddr::from(([127, 0, 0, 1], 8080)))
}

/// `ROLES_JSON`: `{"<key>": "viewer"|"operator"|"admin"|"worker"}`. The error never
/// repeats a key.
pub fn parse_roles(json: &str) -> Result<Vec<(Secret, Role)>, ConfigError> {
    let map: BTreeMap<String, String> = serde_json::from_str(json).map_err(|e| {
        ConfigError::new(
            "ROLES_JSON",
            format!(
                "expected a JSON object of key to role (line {}, column {})",
                e.line(),
                e.column()
            ),
        )
    })?;
    map.into_iter()
        .enumerate()
        .map(|(i, (key, role))| {
            if key.trim().len() < 16 {
                return Err(ConfigError::new(
                    "ROLES_JSON",
                    format!("entry {} has a key shorter than 16 characters", i + 1),
                ));
            }
            let role = role
                .parse::<Role>()
                .map_err(|e| ConfigError::new("ROLES_JSON", format!("entry {}: {e}", i + 1)))?;
            Ok((Secret::new(key.trim()), role))
        })
        .collect()
}

fn read_file_config(home: &Path) -> Result<FileConfig, ConfigError> {
    let path = home.join("echopilot.toml");
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(FileConfig::default()),
        Err(e) => return Err(ConfigError::new("echopilot.toml", e.to_string())),
    };
    let file: FileConfig = toml::from_str(&text)
        .map_err(|e| ConfigError::new("echopilot.toml", e.message().to_string()))?;
    for key in file.settings.keys() {
        let upper = key.to_ascii_uppercase();
        if SECRETS.contains(&upper.as_str()) {
            return Err(ConfigError::new(
                &format!("echopilot.toml: {key}"),
                "secrets are read only from the environment",
            ));
        }
        if !SETTINGS.iter().any(|(n, _)| *n == upper) {
            return Err(ConfigError::new(
                &format!("echopilot.toml: {key}"),
                "unknown setting",
            ));
        }
    }
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(env: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let args = ServeArgs {
            home: HomeArg {
                home: Some(dir.path().to_path_buf()),
            },
            bind: None,
        };
        let env = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_sources(&args, &env)
    }

    #[test]
    fn defaults_and_port() {
        let c = cfg(&[]).unwrap();
        assert_eq!(c.bind.to_string(), "127.0.0.1:8080");
        assert_eq!(c.max_body_bytes, 1024 * 1024);
        let c = cfg(&[("PORT", "9123")]).unwrap();
        assert_eq!(c.bind.to_string(), "127.0.0.1:9123");
    }

    #[test]
    fn invalid_values_name_the_setting() {
        let e = cfg(&[("PORT", "abc")]).unwrap_err();
        assert_eq!(e.setting, "PORT");
        let e = cfg(&[("ROLES_JSON", "{not json")]).unwrap_err();
        assert_eq!(e.setting, "ROLES_JSON");
        let e = cfg(&[("ROLES_JSON", r#"{"abcdefghijklmnopq": "root"}"#)]).unwrap_err();
        assert!(e.to_string().contains("ROLES_JSON"));
        assert!(
            !e.to_string().contains("abcdefghijklmnopq"),
            "key leaked: {e}"
        );
        let e = cfg(&[("TRUST_PROXY", "maybe")]).unwrap_err();
        assert_eq!(e.setting, "TRUST_PROXY");
    }

    #[test]
    fn secrets_hidden_from_debug() {
        let c = cfg(&[
            ("DASHBOARD_KEY", "super-secret-admin-key-123"),
            ("ROLES_JSON", r#"{"viewer-key-0123456789": "viewer"}"#),
        ])
        .unwrap();
        let dbg = format!("{c:?}");
        assert!(!dbg.contains("super-secret-admin-key-123"));
        assert!(!dbg.contains("viewer-key-0123456789"));
        assert_eq!(c.roles[0].1, Role::Viewer);
    }

    #[test]
    fn toml_file_settings_and_unknown_keys() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("echopilot.toml"),
            "slow_request_ms = 250\n[commands.echo]\nprogram = \"/bin/echo\"\n",
        )
        .unwrap();
        let args = ServeArgs {
            home: HomeArg {
                home: Some(dir.path().to_path_buf()),
            },
            bind: None,
        };
        let c = Config::from_sources(&args, &HashMap::new()).unwrap();
        assert_eq!(c.slow_request_ms, 250);
        assert_eq!(c.commands["echo"].program, "/bin/echo");
        // The environment wins over the file.
        let env = HashMap::from([("SLOW_REQUEST_MS".to_string(), "10".to_string())]);
        assert_eq!(
            Config::from_sources(&args, &env).unwrap().slow_request_ms,
            10
        );

        std::fs::write(dir.path().join("echopilot.toml"), "slow_reqest_ms = 1\n").unwrap();
        let e = Config::from_sources(&args, &HashMap::new()).unwrap_err();
        assert!(e.to_string().contains("slow_reqest_ms"), "{e}");
        std::fs::write(dir.path().join("echopilot.toml"), "dashboard_key = \"x\"\n").unwrap();
        let e = Config::from_sources(&args, &HashMap::new()).unwrap_err();
        assert!(e.to_string().contains("environment"), "{e}");
    }
}
