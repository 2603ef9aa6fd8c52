//! The composition root: [`AppState`] (this file), the cross-domain wiring and
//! background tasks (`wiring`; `ops` for flags, incidents and maintenance), and the HTTP
//! server (`server`). Only this module
//! and `web` know every domain; domains know none of it.

pub mod backup;
mod ops;
mod payments;
mod server;
mod wiring;

pub use server::{layers, router, routes, serve, shutdown_signal};
pub use wiring::alert_job;

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::{DateTime, Utc};

use crate::audit::Audit;
use crate::auth::Keys;
use crate::build_info;
use crate::clock::{Clock, rfc3339};
use crate::config::Config;
use crate::flags::Flags;
use crate::incidents::Incidents;
use crate::jobs::Jobs;
use crate::jobs::executors::Executors;
use crate::logfile::{Appender, RotatingFile};
use crate::maintenance::Maintenance;
use crate::payments::Payments;
use crate::ratelimit::Limits;
use crate::scheduler::{Policy, Scheduler, log::SchedLog, schedules::Schedules};
use crate::slo::Slo;
use crate::slo::alerts::Alerts;
use crate::store::sled_impl::{
    audit::SledAudit,
    flags::SledFlags,
    incidents::SledIncidents,
    jobs::SledJobs,
    maintenance::SledMaintenance,
    schedules::SledSchedules,
    slo::{SledAlerts, SledMinutes},
};
use crate::store::{Store, meta};
use crate::supervisor::Supervisor;
use crate::web::access::Access;

/// Everything a handler or a background task needs, behind one `Arc`: axum clones the
/// state (and every layer holding it) several times per request, so a clone must cost
/// one reference-count increment, not one per field (some domain handles hold paths and
/// maps). Fields are reached through `Deref`: `state.jobs`, `state.config`.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

impl std::ops::Deref for AppState {
    type Target = Shared;
    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// The handles inside [`AppState`].
pub struct Shared {
    pub config: Arc<Config>,
    pub store: Store,
    pub supervisor: Supervisor,
    pub clock: Clock,
    /// When this process started serving.
    pub started_at: DateTime<Utc>,
    started: Instant,
    /// Facts about this installation (first start, previous deployment).
    pub instance: Arc<meta::Instance>,
    /// Live keys, as digests.
    pub keys: Arc<Keys>,
    /// The audit trail.
    pub audit: Audit,
    /// Rate limits and the request log.
    pub access: Access,
    /// SLO counters and figures.
    pub slo: Slo,
    /// Alerts (fired from the SLO figures, flag changes, deployments).
    pub alerts: Alerts,
    /// The job queue.
    pub jobs: Jobs,
    /// Scheduler state, cron schedules, built-in executors, `logs/scheduler.log`.
    pub scheduler: Scheduler,
    /// Feature flags (read on every use).
    pub flags: Flags,
    /// Incidents, their timelines and postmortems.
    pub incidents: Incidents,
    /// Planned maintenance windows.
    pub maintenance: Maintenance,
    /// Stripe intake, the ledger, fulfilment, reconciliation.
    pub payments: Payments,
    /// Signs the dashboard's session cookies and CSRF tokens (`data/session.key`).
    pub session_key: Arc<crate::web::dashboard::SessionKey>,
    /// Disaster-recovery snapshots.
    pub backups: crate::backup::Backups,
    /// The public status figures, rendered once per window and shared.
    pub status_cache: Arc<crate::web::cache::StatusCache>,
}

impl AppState {
    /// Open the store and build the state. Fails with "already running" when another
    /// server holds this home.
    pub fn open(config: Config) -> anyhow::Result<AppState> {
        Self::open_with_clock(config, Clock::system())
    }

    /// As [`AppState::open`], with a given clock (tests pass a manual one).
    pub fn open_with_clock(config: Config, clock: Clock) -> anyhow::Result<AppState> {
        let logs = config.logs_dir();
        for dir in [
            logs.join("ndjson"),
            logs.join("archive"),
            config.backups_dir(),
        ] {
            std::fs::create_dir_all(&dir)
                .with_context(|| format!("while creating {}", dir.display()))?;
        }
        let store = Store::open(&config.home)?;
        store.set_min_free_bytes(config.store_min_free_bytes);
        // The runbook's `tail`/`grep` lines work on a fresh home too: the files exist
        // (empty) from the first start.
        for file in [
            logs.join("ndjson").join("audit.ndjson"),
            logs.join("app.log"),
            logs.join("scheduler.log"),
            logs.join("stripe_webhooks.log"),
        ] {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&file)
                .with_context(|| format!("while creating {}", file.display()))?;
        }
        let now = clock.now();
        let instance = meta::record_boot(
            &store,
            &rfc3339(now),
            build_info::VERSION,
            &build_info::commit_label(),
        )
        .context("while recording this start in the store")?;
        let audit = Audit::open_with_limit(
            Arc::new(SledAudit::open(&store)?),
            &config.logs_dir(),
            clock.clone(),
            config.log_max_bytes,
        )?;
        let app_log = config.logs_dir().join("app.log");
        let request_log = Appender::start(
            "app",
            RotatingFile::new(
                app_log.clone(),
                config.logs_dir().join("archive"),
                config.log_max_bytes,
                clock.clone(),
            ),
        )
        .with_context(|| format!("while opening {}", app_log.display()))?;
        let access = Access {
            limits: Arc::new(Limits::new(&config)),
            request_log,
        };
        let slo = Slo::open(
            Arc::new(SledMinutes::open(&store)?),
            &config,
            clock.clone(),
            &instance.first_started_at,
        )?;
        let alerts = Alerts::open(
            Arc::new(SledAlerts::open(&store)?),
            audit.clone(),
            clock.clone(),
            instance.clone(),
        )?;
        let job_store = SledJobs::open(&store).context("while opening the job queue")?;
        // Recovered jobs and the file's schedules are written before serving: the
        // checkpoint below makes them durable, so their commits need no awaiting.
        let (jobs, _recovered) = Jobs::open(Arc::new(job_store), clock.clone())
            .context("while opening the job queue")?;
        let flags = Flags::open(Arc::new(SledFlags::open(&store)?), clock.clone())?;
        let incidents = Incidents::new(Arc::new(SledIncidents::open(&store)?), clock.clone());
        let maintenance = Maintenance::new(Arc::new(SledMaintenance::open(&store)?), clock.clone());
        let schedules = Schedules::new(Arc::new(SledSchedules::open(&store)?));
        let _loaded = schedules
            .load_config(&config.schedules, now)
            .context("while loading the schedules of echopilot.toml")?;
        let payments = payments::open(&config, &store, &jobs, &schedules, &clock, &flags)?;
        let _builtin = schedules
            .load_builtin(&[backup::schedule(&config)], now)
            .context("while loading the backup schedule (BACKUP_CRON)")?;
        let backups = backup::open(&config, Some(&store), clock.clone());
        let scheduler = Scheduler::new(
            jobs.clone(),
            schedules,
            clock.clone(),
            Executors::new(
                config.commands.clone(),
                &config.home,
                config.alert_webhook_url.clone(),
            )
            .with_gate(ops::executor_gate(&flags)),
            SchedLog::new(&config.logs_dir(), clock.clone()).with_max_bytes(config.log_max_bytes),
            Policy {
                tick_secs: config.scheduler_tick_secs,
                concurrency: config.executor_concurrency,
                stuck_requeue_after_secs: config.stuck_requeue_after_secs,
                job_retention_days: config.job_retention_days,
            },
        )
        .with_cron_gate(ops::cron_gate(&flags));
        store
            .checkpoint()
            .context("while syncing the recovered job queue")?;
        let session_key = crate::web::dashboard::SessionKey::load_or_create(&config.data_dir())
            .context("while loading the dashboard's session key")?;
        let status_cache =
            crate::web::cache::StatusCache::new(Duration::from_millis(config.status_cache_ms));
        let state = AppState(Arc::new(Shared {
            status_cache: Arc::new(status_cache),
            session_key: Arc::new(session_key),
            flags,
            incidents,
            maintenance,
            slo,
            alerts,
            audit,
            access,
            jobs,
            scheduler,
            payments,
            backups,
            keys: Arc::new(Keys::new(config.keys())),
            config: Arc::new(config),
            store,
            supervisor: Supervisor::new(),
            clock,
            started_at: now,
            started: Instant::now(),
            instance: Arc::new(instance),
        }));
        ops::install(&state);
        Ok(state)
    }

    /// How long this process has been up.
    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }

    /// Write out the queued audit and request-log lines (shutdown, tests).
    pub async fn flush_logs(&self) -> std::io::Result<()> {
        self.audit.flush().await?;
        self.payments.log().flush().await?;
        self.access.request_log.flush().await
    }

    /// Move `audit.ndjson`, `app.log` and the other logs (`logfile::REOPENED_LOGS`) into
    /// `logs/archive/YYYYMMDD/`; returns the archived files.
    pub async fn rotate_logs(&self) -> std::io::Result<Vec<std::path::PathBuf>> {
        let mut out = Vec::new();
        out.extend(self.audit.rotate().await?);
        out.extend(self.access.request_log.rotate().await?);
        out.extend(self.payments.log().rotate().await?);
        out.extend(crate::logfile::archive_reopened(
            &self.config.logs_dir(),
            self.clock.now(),
        )?);
        Ok(out)
    }
}
