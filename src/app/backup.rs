//! Where backups meet the other domains: the runner behind `POST /api/backups` and the
//! built-in nightly schedule (snapshot, verify, retention, off-host copy, with alerts
//! and audit events), the `backups` health component and the log-retention task.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use crate::app::AppState;
use crate::audit::{Audit, NewEvent};
use crate::backup::{BackupError, Backups, Settings};
use crate::clock::Clock;
use crate::config::{Config, ScheduleSpec};
use crate::error::Classify;
use crate::health::{Component, Health};
use crate::jobs::executors::{BACKUP_KIND, Builtin};
use crate::slo::alerts::{Alerts, Severity};
use crate::store::{SledTarget, Store};
use crate::web::error::status_of;

/// The built-in schedule's name in `GET /api/schedules`.
pub const SCHEDULE: &str = "backup";
/// A verified snapshot older than this (or none) degrades the `backups` component.
pub const STALE_AFTER_HOURS: i64 = 26;
const VERIFY_ALERT: &str = "backup_verify_failed";
const COPY_ALERT: &str = "backup_copy_failed";

/// The backups handle for this home (`store`: `None` where another process holds it).
pub fn open(config: &Config, store: Option<&Store>, clock: Clock) -> Backups {
    Backups::new(
        Settings {
            dir: config.backups_dir(),
            keep: config.backup.keep,
            copy_command: config
                .backup
                .copy_command
                .as_ref()
                .map(|c| c.expose().to_string()),
        },
        store.map(|s| Arc::new(s.clone()) as Arc<dyn crate::backup::store::SnapshotSource>),
        Arc::new(SledTarget),
        clock,
        crate::build_info::VERSION,
        &crate::build_info::commit_label(),
    )
}

/// The nightly backup as a schedule (`BACKUP_CRON`, UTC; empty: listed but disabled).
pub fn schedule(config: &Config) -> ScheduleSpec {
    let cron = config.backup.cron.trim();
    ScheduleSpec {
        name: SCHEDULE.into(),
        cron: if cron.is_empty() { "0 3 * * *" } else { cron }.to_string(),
        timezone: Some("UTC".into()),
        queue: Some("system".into()),
        kind: BACKUP_KIND.into(),
        payload: None,
        enabled: !cron.is_empty(),
    }
}

/// Who asked, for the audit events of the steps of a run.
#[derive(Debug, Clone, Default)]
pub struct Asker {
    pub event: NewEvent,
}

/// Takes and verifies snapshots, and tells the audit trail and the alerts. The call
/// itself (`backup.create`, `backup.verify`) is audited by its caller (`audited()` for
/// the API, [`Builtin::run`] for the schedule); a run audits its own later steps.
#[derive(Clone)]
pub struct Runner {
    pub backups: Backups,
    audit: Audit,
    alerts: Alerts,
}

/// A blocking backup call on a blocking thread.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, BackupError> + Send + 'static,
) -> Result<T, BackupError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| BackupError::Io(format!("backup task failed: {e}")))
        .and_then(|r| r)
}

impl Runner {
    pub fn new(state: &AppState) -> Runner {
        Runner {
            backups: state.backups.clone(),
            audit: state.audit.clone(),
            alerts: state.alerts.clone(),
        }
    }

    async fn record(&self, asker: &Asker, action: &str, target: &str, err: Option<&BackupError>) {
        let mut e = asker.event.clone();
        e.action = action.into();
        e.target = target.into();
        e.ok = err.is_none();
        e.status = err.map_or(200, |e| status_of(e.kind()).as_u16());
        e.error = err.map(|e| e.to_string());
        if let Err(err) = self.audit.record(e).await {
            tracing::error!(error = %err, "could not audit {action}");
        }
    }

    /// Snapshot, verify, prune, copy off; the steps after the snapshot are audited
    /// (`backup.verify`, `backup.prune`, `backup.copy`). A snapshot that fails
    /// verification is a critical alert; a failed copy a warning.
    pub async fn take(&self, asker: &Asker) -> Result<Value, BackupError> {
        let b = self.backups.clone();
        let taken = blocking(move || b.take(None)).await.inspect_err(|e| {
            tracing::error!(error = %e, "snapshot failed");
        })?;
        let mut out = taken.to_json();
        let verified = self.verify_path(taken.path.clone(), &taken.name).await;
        self.record(asker, "backup.verify", &taken.name, verified.as_ref().err())
            .await;
        let b = self.backups.clone();
        match blocking(move || b.prune()).await {
            Ok(names) => {
                if !names.is_empty() {
                    self.record(asker, "backup.prune", &names.join(","), None)
                        .await;
                }
                out["removed"] = json!(names);
            }
            Err(e) => {
                tracing::error!(error = %e, "backup retention failed");
                out["removed"] = json!([]);
            }
        }
        if let Err(e) = verified {
            // A snapshot just written that does not verify is our failure (500), unless
            // the scratch store found the disk full.
            let e = match e {
                BackupError::Full(m) => BackupError::Full(m),
                other => BackupError::Store(other.to_string()),
            };
            return Err(e.context(&format!("snapshot {} failed verification", taken.name)));
        }
        out["verified"] = json!(true);
        match self.backups.copy_off(&taken.path).await {
            Ok(None) => out["copied"] = Value::Null,
            Ok(Some(_)) => {
                self.alerts.clear(COPY_ALERT);
                self.record(asker, "backup.copy", &taken.name, None).await;
                out["copied"] = json!(true);
            }
            Err(e) => {
                let msg = e.to_string();
                if let Err(err) = self
                    .alerts
                    .raise(
                        COPY_ALERT,
                        Severity::Warning,
                        &format!("{}: {msg}", taken.name),
                    )
                    .await
                {
                    tracing::error!(error = %err, "could not raise {COPY_ALERT}");
                }
                self.record(asker, "backup.copy", &taken.name, Some(&e))
                    .await;
                out["copied"] = json!(false);
                out["copy_error"] = json!(msg);
            }
        }
        Ok(out)
    }

    /// Verify a snapshot of the backup folder by name.
    pub async fn verify(&self, name: &str) -> Result<Value, BackupError> {
        let path = self.backups.path_of(name)?;
        self.verify_path(path, name).await
    }

    async fn verify_path(&self, path: PathBuf, name: &str) -> Result<Value, BackupError> {
        let b = self.backups.clone();
        match blocking(move || b.verify(&path, None)).await {
            Ok(v) => {
                self.alerts.clear(VERIFY_ALERT);
                Ok(json!({
                    "name": v.name,
                    "sha256": v.sha256,
                    "records": v.header.records,
                    "trees": v.counts.iter().map(|(n, c)| (n.clone(), json!(c))).collect::<serde_json::Map<_, _>>(),
                    "secs": (v.secs * 1000.0).round() / 1000.0,
                }))
            }
            Err(e) => {
                let msg = format!("{name}: {e}");
                tracing::error!(error = %msg, "snapshot verification failed");
                if let Err(err) = self
                    .alerts
                    .raise(VERIFY_ALERT, Severity::Critical, &msg)
                    .await
                {
                    tracing::error!(error = %err, "could not raise {VERIFY_ALERT}");
                }
                Err(e)
            }
        }
    }
}

impl Builtin for Runner {
    fn run<'a>(
        &'a self,
        job: &'a crate::jobs::Job,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<String, String>> + Send + 'a>>
    {
        Box::pin(async move {
            let asker = Asker {
                event: NewEvent {
                    actor_id: Some("scheduler".into()),
                    request_id: Some(format!("job:{}", job.id)),
                    ..NewEvent::default()
                },
            };
            let r = self.take(&asker).await;
            let target = r
                .as_ref()
                .ok()
                .and_then(|v| v["name"].as_str())
                .unwrap_or_default()
                .to_string();
            self.record(&asker, "backup.create", &target, r.as_ref().err())
                .await;
            match r {
                Ok(v) => Ok(v.to_string()),
                Err(e) => Err(e.to_string()),
            }
        })
    }
}

/// The `backups` component: degraded when the newest verified snapshot is older than
/// 26 h, or when there is none and the installation is older than that. A fresh
/// install (younger than 26 h, nothing to lose yet) is healthy with a note, so a first
/// start does not report degraded before the first scheduled snapshot could run.
pub fn component(backups: &Backups, now: DateTime<Utc>, first_started_at: &str) -> Component {
    let list = match backups.list() {
        Ok(l) => l,
        Err(e) => return Component::new(Health::Degraded).with("error", e.to_string()),
    };
    let (age, verified_age) = backups.ages(now);
    let stale = (STALE_AFTER_HOURS * 3600) as f64;
    let installed_for = DateTime::parse_from_rfc3339(first_started_at)
        .map(|t| (now - t.to_utc()).num_seconds() as f64)
        .unwrap_or(0.0);
    let last_failed = list
        .last()
        .and_then(|e| e.verified.as_ref())
        .is_some_and(|v| !v.ok);
    let (status, note) = match verified_age {
        Some(a) if a <= stale && !last_failed => (Health::Healthy, None),
        Some(a) if a <= stale => (
            Health::Degraded,
            Some("the newest snapshot failed verification"),
        ),
        Some(_) => (
            Health::Degraded,
            Some("the newest verified snapshot is older than 26 h"),
        ),
        None if installed_for < stale => (
            Health::Healthy,
            Some("no verified snapshot yet; a fresh install gets 26 h before this degrades"),
        ),
        None => (Health::Degraded, Some("no verified snapshot")),
    };
    let mut c = Component::new(status)
        .with("snapshots", list.len())
        .with("last_backup", list.last().map(|e| e.name.clone()))
        .with("last_backup_age_secs", age.map(|a| a.round()))
        .with("last_verified_age_secs", verified_age.map(|a| a.round()));
    if let Some(n) = note {
        c = c.with("note", n);
    }
    c
}

/// Install the backup runner and start the hourly log-retention task.
pub fn start(state: &AppState) {
    state
        .scheduler
        .executors
        .set_backup(Arc::new(Runner::new(state)));
    let logs = state.config.logs_dir();
    let days = state.config.backup.log_archive_keep_days;
    let clock = state.clock.clone();
    state.supervisor.spawn("log-retention", move |token| {
        let (logs, clock) = (logs.clone(), clock.clone());
        async move {
            let mut every = tokio::time::interval(Duration::from_secs(3600));
            loop {
                tokio::select! {
                    _ = token.cancelled() => return Ok(()),
                    _ = every.tick() => {
                        let (logs, now) = (logs.clone(), clock.now());
                        match tokio::task::spawn_blocking(move || {
                            crate::backup::archive::prune(&logs, days, now)
                        })
                        .await
                        {
                            Ok(Ok(r)) if !r.folders.is_empty() => tracing::info!(
                                folders = r.folders.len(),
                                audit_range = ?r.audit_range,
                                "log archive pruned"
                            ),
                            Ok(Ok(_)) => {}
                            Ok(Err(e)) => tracing::error!(error = %e, "log archive pruning failed"),
                            Err(e) => tracing::error!(error = %e, "log archive pruning panicked"),
                        }
                    }
                }
            }
        }
    });
}
