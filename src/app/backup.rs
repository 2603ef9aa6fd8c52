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
use crate::health::{Component, Health};
use crate::jobs::executors::{BACKUP_KIND, Builtin};
use crate::slo::alerts::{Alerts, Severity};
use crate::store::{SledTarget, Store};

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

/// Who asked, for the audit events.
#[derive(Debug, Clone, Default)]
pub struct Asker {
    pub event: NewEvent,
}

/// A failed run: the status to answer and the message.
#[derive(Debug)]
pub struct RunError {
    pub status: u16,
    pub message: String,
}

fn status_of(e: &BackupError) -> u16 {
    match e {
        BackupError::NotFound(_) => 404,
        BackupError::Invalid(_) => 400,
        BackupError::Corrupt(_) => 422,
        BackupError::Io(_) | BackupError::Store(_) => 500,
    }
}

/// Takes and verifies snapshots, and tells the audit trail and the alerts.
#[derive(Clone)]
pub struct Runner {
    pub backups: Backups,
    audit: Audit,
    alerts: Alerts,
}

impl Runner {
    pub fn new(state: &AppState) -> Runner {
        Runner {
            backups: state.backups.clone(),
            audit: state.audit.clone(),
            alerts: state.alerts.clone(),
        }
    }

    async fn record(&self, asker: &Asker, action: &str, target: &str, err: Option<(u16, String)>) {
        let mut e = asker.event.clone();
        e.action = action.into();
        e.target = target.into();
        e.ok = err.is_none();
        e.status = err.as_ref().map_or(200, |(s, _)| *s);
        e.error = err.map(|(_, m)| m);
        if let Err(err) = self.audit.record(e).await {
            tracing::error!(error = %err, "could not audit {action}");
        }
    }

    /// Snapshot, verify, prune, copy off. A snapshot that fails verification is a
    /// critical alert; a failed copy a warning.
    pub async fn take(&self, asker: &Asker) -> Result<Value, RunError> {
        let b = self.backups.clone();
        let taken = match tokio::task::spawn_blocking(move || b.take(None)).await {
            Ok(Ok(t)) => t,
            Ok(Err(e)) => return Err(self.failed(asker, "backup.create", "", e).await),
            Err(e) => {
                let e = BackupError::Io(format!("snapshot task failed: {e}"));
                return Err(self.failed(asker, "backup.create", "", e).await);
            }
        };
        self.record(asker, "backup.create", &taken.name, None).await;
        let mut out = taken.to_json();
        let verified = self
            .verify_path(asker, taken.path.clone(), &taken.name)
            .await;
        let b = self.backups.clone();
        let removed = tokio::task::spawn_blocking(move || b.prune())
            .await
            .map_err(|e| BackupError::Io(e.to_string()))
            .and_then(|r| r);
        match &removed {
            Ok(names) if !names.is_empty() => {
                self.record(asker, "backup.prune", &names.join(","), None)
                    .await;
            }
            Ok(_) => {}
            Err(e) => tracing::error!(error = %e, "backup retention failed"),
        }
        out["removed"] = json!(removed.unwrap_or_default());
        if let Err(e) = verified {
            out["verified"] = json!(false);
            return Err(RunError {
                status: 500,
                message: format!("snapshot {} failed verification: {}", taken.name, e.message),
            });
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
                self.record(asker, "backup.copy", &taken.name, Some((500, msg.clone())))
                    .await;
                out["copied"] = json!(false);
                out["copy_error"] = json!(msg);
            }
        }
        Ok(out)
    }

    /// Verify a snapshot of the backup folder by name.
    pub async fn verify(&self, asker: &Asker, name: &str) -> Result<Value, RunError> {
        let path = match self.backups.path_of(name) {
            Ok(p) => p,
            Err(e) => return Err(self.failed(asker, "backup.verify", name, e).await),
        };
        self.verify_path(asker, path, name).await
    }

    async fn verify_path(
        &self,
        asker: &Asker,
        path: PathBuf,
        name: &str,
    ) -> Result<Value, RunError> {
        let b = self.backups.clone();
        let r = tokio::task::spawn_blocking(move || b.verify(&path, None))
            .await
            .map_err(|e| BackupError::Io(format!("verify task failed: {e}")))
            .and_then(|r| r);
        match r {
            Ok(v) => {
                self.alerts.clear(VERIFY_ALERT);
                self.record(asker, "backup.verify", name, None).await;
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
                if let Err(err) = self
                    .alerts
                    .raise(VERIFY_ALERT, Severity::Critical, &msg)
                    .await
                {
                    tracing::error!(error = %err, "could not raise {VERIFY_ALERT}");
                }
                Err(self.failed(asker, "backup.verify", name, e).await)
            }
        }
    }

    async fn failed(&self, asker: &Asker, action: &str, target: &str, e: BackupError) -> RunError {
        let status = status_of(&e);
        let message = e.to_string();
        tracing::error!(action, target, error = %message, "backup step failed");
        self.record(asker, action, target, Some((status, message.clone())))
            .await;
        RunError { status, message }
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
            match self.take(&asker).await {
                Ok(v) => Ok(v.to_string()),
                Err(e) => Err(e.message),
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
