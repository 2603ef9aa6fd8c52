//! EchoPilot: the operations side of a small automation business in one binary.
//!
//! A map of the crate, one line a module:
//! - [`config`]      the CLI, environment variables and `echopilot.toml`; secrets stay hidden
//! - [`build_info`]  version, git commit, dirty flag, build time (from `build.rs`)
//! - [`app`]         `AppState`, the router, and the server's life (serve, drain, stop)
//! - [`audit`]       the audit trail: sled tree + `logs/ndjson/audit.ndjson`, hash chain
//! - [`backup`]      disaster recovery: snapshots, verify, restore, retention, log archive pruning
//! - [`auth`]        keys (as SHA-256 digests) and roles; `web::auth` holds the extractors
//! - [`error`]       `AppError`, the `{"ok": false, "error": ...}` every API failure returns
//! - [`store`]       sled: one tree per domain, the versioned codec, group-commit durability
//! - [`supervisor`]  background tasks: restarted with backoff when they panic or fail
//! - [`slo`]         per-minute SLO counters, error budget, burn rates, alerts, `/metrics` text
//! - [`health`]      healthy / degraded / unhealthy, per component
//! - [`clock`]       wall-clock time that tests can freeze and advance
//! - [`jobs`]        the durable job queue (claims, leases, retries, stuck jobs) and
//!   the built-in `http` / `command` executors
//! - [`scheduler`]   the tick, the due loop, cron schedules, `logs/scheduler.log`
//! - [`bench`]       `echopilot bench`: durable enqueue and drain figures
//! - [`cli`]         the subcommands besides `serve` (`db`, `keygen`, `audit verify`, `logs rotate`, `bench`)
//! - [`cli_backup`]  `backup`, `backup verify|list`, `restore`, `db compact`, deep check, stats extras
//! - [`glue`]        where domains meet: job outcomes and ticks feed the SLO, alerts go out as jobs
//! - [`glue_backup`] backups meet the rest: API/schedule runner, alerts, health, log retention
//! - [`web`]         HTTP only: `web::api` (one module per resource), extractors, layers
//! - [`access`]      rate limits (governor), client addresses, request-log lines
//! - [`maintenance`] `db check --deep` and per-tree record times (knows each tree's record type)
//! - [`logfile`]     append-only log files: batched writer thread, survive `mv`, rotate

pub mod access;
pub mod app;
pub mod audit;
pub mod auth;
pub mod backup;
pub mod bench;
pub mod build_info;
pub mod cli;
pub mod cli_backup;
pub mod clock;
pub mod config;
pub mod error;
pub mod glue;
pub mod glue_backup;
pub mod health;
pub mod jobs;
pub mod logfile;
pub mod maintenance;
pub mod scheduler;
pub mod slo;
pub mod store;
pub mod supervisor;
pub mod web;
