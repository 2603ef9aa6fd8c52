//! EchoPilot: the operations side of a small automation business in one binary.
//!
//! A map of the crate, one line a module. Layers point down only: `app` → `web` →
//! domains → `store`; a domain never names `app`, `web` or axum.
//!
//! Composition and HTTP:
//! - [`app`]         the composition root: `AppState` (mod), background tasks and
//!   cross-domain hooks (`wiring`), the router and the server's life (`server`), backups
//!   meeting the rest (`backup`: API/schedule runner, alerts, health, log retention)
//! - [`web`]         HTTP only: `web::api` (one module per resource), the OpenAPI document,
//!   `web::dashboard` (the v2 and v1 pages, sessions, CSRF, static assets),
//!   extractors, errors, the audit helper, the guard and route-class layers; `web::listener`
//!   accepts connections (cap, header-read timeout); `web::cache` shares the public
//!   status figures for a fraction of a second
//! - [`error`]       `Classify`: how a domain error is answered (`web::error::AppError`
//!   turns it into `{"ok": false, "error": ...}` with its status)
//! - [`cli`]         the subcommands besides `serve` (`db`, `keygen`, `audit verify`, `logs rotate`, `bench`);
//!   `cli::running_server` finds the home's running server
//!   `cli::backup`: `backup`, `restore`, `db compact`, `db check --deep`, `logs prune`
//! - [`config`]      the CLI, environment variables and `echopilot.toml`; each default once
//!
//! Domains (plain types; each declares its storage as a trait in its own `store` module):
//! - [`jobs`]        the durable job queue: types, pure transitions `Job → Job`, the
//!   `JobStore` it needs, the `Jobs` service, the built-in `http` / `command` executors
//! - [`scheduler`]   the tick, the due loop, cron schedules (`ScheduleStore`), `logs/scheduler.log`
//! - [`payments`]    Stripe webhooks (signature, event log), the ledger, fulfilment,
//!   reconciliation (`PaymentStore`)
//! - [`audit`]       the audit trail: `AuditStore` + `logs/ndjson/audit.ndjson`, hash chain, `verify`
//! - [`slo`]         per-minute SLO counters (`MinuteStore`), budget and burn rates, alerts
//!   (`AlertStore`), `/metrics` text
//! - [`backup`]      disaster recovery: snapshots (`SnapshotSource`), verify, restore,
//!   retention, log archive pruning
//! - [`auth`]        keys (as SHA-256 digests), roles and what a route needs; `web::auth`
//!   holds the extractors
//! - [`ratelimit`]   the rate limiter's core: limits per route class, the failed-key block
//! - [`health`]      healthy / degraded / unhealthy, per component
//! - [`flags`]       feature flags: built-ins that switch executors, cron, fulfilment, dashboard v2
//! - [`incidents`]   incidents (P0–P3), timelines, the runbook's announcement templates, postmortems
//! - [`maintenance`] planned maintenance windows: held alert messages, minutes left out of the SLO
//!
//! The store and shared parts:
//! - [`store`]       sled: typed tables, the versioned codec, group commit (`Commit`), and
//!   `sled_impl/<domain>.rs`, each domain's storage trait on sled (see its module doc
//!   for the mapping onto SQL)
//! - `supervisor`    background tasks: restarted with backoff when they panic or fail
//! - `logfile`       append-only log files: batched writer thread, survive `mv`, rotate;
//!   `logfile::escape`, the one escaping of every text log line
//! - [`console`]     the server's own log: stderr (colour only at a terminal) and `logs/echopilot.log`
//! - [`server_addr`] `data/echopilot.addr`: where the running server listens, for the CLI
//! - [`clock`]       wall-clock time that tests can freeze and advance
//! - [`build_info`]  version, git commit, dirty flag, build time (from `build.rs`)
//! - `bench`         `echopilot bench`: durable enqueue (single and bulk), drain and
//!   status-route figures beside the disk's sync rate and a hello-world baseline

pub mod app;
pub mod audit;
pub mod auth;
pub mod backup;
mod bench;
pub mod build_info;
pub mod cli;
pub mod clock;
pub mod config;
pub mod console;
pub mod error;
pub mod flags;
pub mod health;
pub mod incidents;
pub mod jobs;
mod logfile;
pub mod maintenance;
pub mod payments;
pub mod ratelimit;
pub mod scheduler;
pub mod server_addr;
pub mod slo;
pub mod store;
mod supervisor;
pub mod web;
