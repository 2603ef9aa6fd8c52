//! Configuration: the CLI (clap), the environment (names as the runbook uses them) and
//! an optional `echopilot.toml` in the home folder for structured settings.
//!
//! Precedence: CLI flag > environment > `echopilot.toml` > default. Secrets (keys,
//! webhook secrets) come only from the environment and never show in `Debug`.
//! Every invalid value stops start-up with an error that names the setting. Each
//! default is written once, in [`SETTINGS`]. The test harness resolves from a given
//! map rather than the process environment, so clap's `env` serves only `--home`.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;

mod cli;
mod file;

pub use cli::{
    AuditAction, BackupAction, BenchArgs, Cli, Command, DbAction, HomeArg, LogsAction, ServeArgs,
};
use file::read_file_config;
pub use file::{CommandSpec, ScheduleSpec};

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

pub use crate::auth::Role;

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
    /// Largest request body in bytes (`MAX_BODY_BYTES`).
    pub max_body_bytes: usize,
    /// Requests taking longer are cut off with 408 (`REQUEST_TIMEOUT_SECS`).
    pub request_timeout_secs: u64,
    /// Requests at least this slow get a `Slow request` line (`SLOW_REQUEST_MS`).
    pub slow_request_ms: u64,
    /// How long a rendered status figure is shared, 0 to 1000 ms (`STATUS_CACHE_MS`).
    pub status_cache_ms: u64,
    /// Requests per client per window (`RATE_LIMIT_PER_MIN`; 0 disables).
    pub rate_limit_per_min: u32,
    /// Rate-limit window in seconds (`RATE_LIMIT_WINDOW_SECS`).
    pub rate_limit_window_secs: u64,
    /// Limit for worker routes (`WORKER_RATE_LIMIT_PER_MIN`; 0 disables).
    pub worker_rate_limit_per_min: u32,
    /// Limit for the Stripe webhook (`WEBHOOK_RATE_LIMIT_PER_MIN`; 0 disables).
    pub webhook_rate_limit_per_min: u32,
    /// Failed keys and logins per IP per window (`AUTH_FAIL_LIMIT_PER_MIN`; 0 disables).
    pub auth_fail_limit_per_min: u32,
    /// Trust `X-Forwarded-For` for the client address (`TRUST_PROXY`).
    pub trust_proxy: bool,
    /// Rotate a log file past this size (`LOG_MAX_BYTES`).
    pub log_max_bytes: u64,
    /// Most client connections open at once (`MAX_CONNECTIONS`); `None`: the open-file
    /// limit less a reserve for the store and logs, worked out by `web::listener`.
    pub max_connections: Option<usize>,
    /// Time a client gets to send a request head, and to stay idle between requests
    /// (`HEADER_READ_TIMEOUT_SECS`).
    pub header_read_timeout_secs: u64,
    /// Refuse changes (503 "storage full") while the data disk has less free
    /// (`STORE_MIN_FREE_BYTES`).
    pub store_min_free_bytes: u64,
    /// When the `disk` component turns degraded or unhealthy (`DISK_*_FREE_PCT`,
    /// `DISK_*_FREE_BYTES`).
    pub disk: crate::health::DiskRules,
    /// Scheduler tick interval (`SCHEDULER_TICK_SECS`).
    pub scheduler_tick_secs: u64,
    /// Slots for built-in executors (`EXECUTOR_CONCURRENCY`).
    pub executor_concurrency: usize,
    /// Re-queue a stuck job after this long (`STUCK_REQUEUE_AFTER_SECS`; 0 disables).
    pub stuck_requeue_after_secs: u64,
    /// Prune finished jobs older than this (`JOB_RETENTION_DAYS`).
    pub job_retention_days: u64,
    /// SLO window (`SLO_WINDOW_DAYS`).
    pub slo_window_days: u64,
    /// SLO targets (`SLO_AVAILABILITY_PCT`, `SLO_UPTIME_PCT`, `SLO_LATENCY_P95_MS`,
    /// `SLO_ERROR_RATE_PCT`, `SLO_WEBHOOK_SUCCESS_PCT`).
    pub slo: SloTargets,
    /// Slack-compatible webhook for alerts (`ALERT_WEBHOOK_URL`).
    pub alert_webhook_url: Option<Secret>,
    /// Put `/metrics` behind a viewer key (`METRICS_KEY_REQUIRED`).
    pub metrics_key_required: bool,
    /// A critical alert opens a P1 incident (`AUTO_INCIDENTS`, false).
    pub auto_incidents: bool,
    /// Mark the dashboard's session cookie `Secure` (`COOKIE_SECURE`; behind HTTPS).
    pub cookie_secure: bool,
    /// Commands the `command` executor may run (`echopilot.toml` `[commands]`).
    pub commands: BTreeMap<String, CommandSpec>,
    /// Cron schedules declared in `echopilot.toml` `[[schedules]]`.
    pub schedules: Vec<ScheduleSpec>,
    /// Disaster recovery (`BACKUP_DIR`, `BACKUP_KEEP`, `BACKUP_CRON`,
    /// `BACKUP_COPY_COMMAND`) and log retention (`LOG_ARCHIVE_KEEP_DAYS`).
    pub backup: BackupConfig,
    /// Stripe intake and reconciliation.
    pub payments: PaymentSettings,
}

/// Stripe intake and reconciliation settings.
#[derive(Debug, Clone, PartialEq)]
pub struct PaymentSettings {
    /// How far a `Stripe-Signature` timestamp may be from now, either way
    /// (`STRIPE_TOLERANCE_SECS`).
    pub tolerance_secs: u64,
    /// How long a completed checkout may wait for its payment confirmation before
    /// reconciliation reports it (`RECONCILE_GRACE_SECS`).
    pub reconcile_grace_secs: u64,
    /// When the built-in reconciliation runs (`RECONCILE_CRON`).
    pub reconcile_cron: String,
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

/// The environment variables we read, each with its default: the one place a default
/// is written (resolving reads it from here; the README's table repeats it for people).
/// Also the list of keys `echopilot.toml` may hold; secrets are not allowed in the file.
pub const SETTINGS: &[(&str, &str)] = &[
    ("PORT", ""),
    ("MAX_BODY_BYTES", "1048576"),
    ("REQUEST_TIMEOUT_SECS", "30"),
    ("SLOW_REQUEST_MS", "500"),
    ("STATUS_CACHE_MS", "250"),
    ("RATE_LIMIT_PER_MIN", "600"),
    ("RATE_LIMIT_WINDOW_SECS", "60"),
    ("WORKER_RATE_LIMIT_PER_MIN", "6000"),
    ("WEBHOOK_RATE_LIMIT_PER_MIN", "3000"),
    ("AUTH_FAIL_LIMIT_PER_MIN", "10"),
    ("TRUST_PROXY", "false"),
    ("LOG_MAX_BYTES", "52428800"),
    // Empty: the open-file limit less a reserve for the store and logs (`web::listener`).
    ("MAX_CONNECTIONS", ""),
    ("HEADER_READ_TIMEOUT_SECS", "10"),
    ("STORE_MIN_FREE_BYTES", "67108864"),
    ("DISK_DEGRADED_FREE_PCT", "10"),
    ("DISK_DEGRADED_FREE_BYTES", "1073741824"),
    ("DISK_UNHEALTHY_FREE_PCT", "2"),
    ("DISK_UNHEALTHY_FREE_BYTES", "268435456"),
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
    ("AUTO_INCIDENTS", "false"),
    ("COOKIE_SECURE", "false"),
    ("ALLOW_DIRTY", "false"),
    ("STRIPE_TOLERANCE_SECS", "300"),
    ("RECONCILE_GRACE_SECS", "3600"),
    ("RECONCILE_CRON", "0 3 * * 1"),
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

    /// The value given, or the default from [`SETTINGS`].
    fn value(&self, name: &str) -> String {
        match self.raw(name) {
            Some(s) if !s.is_empty() => s,
            _ => SETTINGS
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, d)| d.to_string())
                .unwrap_or_default(),
        }
    }

    fn parse<T: FromStr>(&self, name: &str) -> Result<T, ConfigError>
    where
        T::Err: fmt::Display,
    {
        let s = self.value(name);
        s.parse()
            .map_err(|e| ConfigError::new(name, format!("cannot parse {s:?}: {e}")))
    }

    fn bool(&self, name: &str) -> Result<bool, ConfigError> {
        match self.value(name).to_ascii_lowercase().as_str() {
            "false" | "0" | "no" | "off" => Ok(false),
            "true" | "1" | "yes" | "on" => Ok(true),
            other => Err(ConfigError::new(
                name,
                format!("expected true or false, got {other:?}"),
            )),
        }
    }

    /// A percentage where 0 (never) is allowed.
    fn share(&self, name: &str) -> Result<f64, ConfigError> {
        let v: f64 = self.parse(name)?;
        if !(0.0..=100.0).contains(&v) {
            return Err(ConfigError::new(name, "must be a percentage in [0, 100]"));
        }
        Ok(v)
    }

    fn pct(&self, name: &str) -> Result<f64, ConfigError> {
        let v: f64 = self.parse(name)?;
        if !(v > 0.0 && v <= 100.0) {
            return Err(ConfigError::new(name, "must be a percentage in (0, 100]"));
        }
        Ok(v)
    }

    fn positive<T: FromStr + PartialOrd + Default + Copy>(
        &self,
        name: &str,
    ) -> Result<T, ConfigError>
    where
        T::Err: fmt::Display,
    {
        let v: T = self.parse(name)?;
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

        let dashboard_key = lookup.secret("DASHBOARD_KEY");
        crate::auth::key_rules::check_keys(
            dashboard_key.as_ref().map(Secret::expose),
            roles.iter().map(|(k, _)| k.expose()),
        )?;
        let config = Config {
            home: home.clone(),
            bind,
            dashboard_key,
            roles,
            stripe_webhook_secrets,
            allow_dirty: lookup.bool("ALLOW_DIRTY")?,
            max_body_bytes: lookup.positive("MAX_BODY_BYTES")?,
            request_timeout_secs: lookup.positive("REQUEST_TIMEOUT_SECS")?,
            slow_request_ms: lookup.parse("SLOW_REQUEST_MS")?,
            status_cache_ms: match lookup.parse("STATUS_CACHE_MS")? {
                ms @ 0..=1000 => ms,
                _ => return Err(ConfigError::new("STATUS_CACHE_MS", "must be 0 to 1000")),
            },
            rate_limit_per_min: lookup.parse("RATE_LIMIT_PER_MIN")?,
            rate_limit_window_secs: lookup.positive("RATE_LIMIT_WINDOW_SECS")?,
            worker_rate_limit_per_min: lookup.parse("WORKER_RATE_LIMIT_PER_MIN")?,
            webhook_rate_limit_per_min: lookup.parse("WEBHOOK_RATE_LIMIT_PER_MIN")?,
            auth_fail_limit_per_min: lookup.parse("AUTH_FAIL_LIMIT_PER_MIN")?,
            trust_proxy: lookup.bool("TRUST_PROXY")?,
            log_max_bytes: lookup.positive("LOG_MAX_BYTES")?,
            max_connections: match lookup.value("MAX_CONNECTIONS").as_str() {
                "" => None,
                _ => Some(lookup.positive("MAX_CONNECTIONS")?),
            },
            header_read_timeout_secs: lookup.positive("HEADER_READ_TIMEOUT_SECS")?,
            store_min_free_bytes: lookup.parse("STORE_MIN_FREE_BYTES")?,
            disk: crate::health::DiskRules {
                degraded_pct: lookup.share("DISK_DEGRADED_FREE_PCT")?,
                degraded_bytes: lookup.parse("DISK_DEGRADED_FREE_BYTES")?,
                unhealthy_pct: lookup.share("DISK_UNHEALTHY_FREE_PCT")?,
                unhealthy_bytes: lookup.parse("DISK_UNHEALTHY_FREE_BYTES")?,
            },
            scheduler_tick_secs: lookup.positive("SCHEDULER_TICK_SECS")?,
            executor_concurrency: lookup.parse("EXECUTOR_CONCURRENCY")?,
            stuck_requeue_after_secs: lookup.parse("STUCK_REQUEUE_AFTER_SECS")?,
            job_retention_days: lookup.positive("JOB_RETENTION_DAYS")?,
            slo_window_days: lookup.positive("SLO_WINDOW_DAYS")?,
            slo: SloTargets {
                availability_pct: lookup.pct("SLO_AVAILABILITY_PCT")?,
                uptime_pct: lookup.pct("SLO_UPTIME_PCT")?,
                latency_p95_ms: lookup.positive("SLO_LATENCY_P95_MS")?,
                error_rate_pct: lookup.pct("SLO_ERROR_RATE_PCT")?,
                webhook_success_pct: lookup.pct("SLO_WEBHOOK_SUCCESS_PCT")?,
            },
            alert_webhook_url,
            metrics_key_required: lookup.bool("METRICS_KEY_REQUIRED")?,
            auto_incidents: lookup.bool("AUTO_INCIDENTS")?,
            cookie_secure: lookup.bool("COOKIE_SECURE")?,
            commands: file.commands,
            schedules: file.schedules,
            backup: BackupConfig {
                dir: home.join(lookup.value("BACKUP_DIR")),
                keep: lookup.positive("BACKUP_KEEP")?,
                // Set but empty disables the schedule; unset takes the default.
                cron: lookup
                    .raw("BACKUP_CRON")
                    .unwrap_or_else(|| lookup.value("BACKUP_CRON")),
                copy_command: lookup
                    .raw("BACKUP_COPY_COMMAND")
                    .filter(|c| !c.is_empty())
                    .map(Secret::new),
                log_archive_keep_days: lookup.positive("LOG_ARCHIVE_KEEP_DAYS")?,
            },
            payments: PaymentSettings {
                tolerance_secs: lookup.parse("STRIPE_TOLERANCE_SECS")?,
                reconcile_grace_secs: lookup.parse("RECONCILE_GRACE_SECS")?,
                reconcile_cron: lookup.value("RECONCILE_CRON"),
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

impl Config {
    /// Every live key with its role: `DASHBOARD_KEY` as admin, then `ROLES_JSON`.
    pub fn keys(&self) -> impl Iterator<Item = (&str, Role)> {
        self.dashboard_key
            .iter()
            .map(|k| (k.expose(), Role::Admin))
            .chain(self.roles.iter().map(|(k, r)| (k.expose(), *r)))
    }
}

/// `ROLES_JSON`: `{"<key>": "viewer"|"operator"|"admin"|"worker"}`, by the rules in
/// [`crate::auth::key_rules`]. The error never repeats a key.
pub fn parse_roles(json: &str) -> Result<Vec<(Secret, Role)>, ConfigError> {
    let entries = crate::auth::key_rules::parse_roles(json)?;
    Ok(entries
        .into_iter()
        .map(|(key, role)| (Secret::new(key), role))
        .collect())
}

impl From<crate::auth::key_rules::KeyRuleError> for ConfigError {
    fn from(e: crate::auth::key_rules::KeyRuleError) -> Self {
        ConfigError::new(e.setting, e.reason)
    }
}

#[cfg(test)]
#[path = "config_tests.rs"]
mod tests;
