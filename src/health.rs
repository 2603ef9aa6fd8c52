//! Health of the whole and its parts: the healthy / degraded / unhealthy rules, one
//! function per component, over plain domain handles (no HTTP). `/api/status/summary`
//! shows them; the dashboards read the same.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{Map, Value};

use crate::audit::Audit;
use crate::jobs::{Jobs, Status};
use crate::scheduler::{RunState, Scheduler};
use crate::slo::alerts::{Alert, Alerts, Severity};
use crate::slo::{Figures, Slo, round4};
use crate::store::{Store, StoreError, meta};
use crate::supervisor::{Supervisor, TaskState};

/// Ordered from best to worst, so the overall status is the maximum.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Health {
    Healthy,
    Degraded,
    Unhealthy,
}

/// One component's status and what explains it. Keys keep insertion order, so the
/// summary's JSON is stable from one call to the next (the runbook diffs it).
#[derive(Debug, Clone)]
pub struct Component {
    pub status: Health,
    pub detail: Map<String, Value>,
}

impl Component {
    pub fn new(status: Health) -> Self {
        Self {
            status,
            detail: Map::new(),
        }
    }

    pub fn with(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.detail.insert(key.to_string(), value.into());
        self
    }

    pub fn to_json(&self) -> Value {
        let mut m = Map::new();
        m.insert(
            "status".into(),
            serde_json::to_value(self.status).unwrap_or_default(),
        );
        m.extend(self.detail.clone());
        Value::Object(m)
    }
}

/// When free space on the home's disk turns the `disk` component degraded or
/// unhealthy: below a share of the disk or below a number of bytes, whichever comes
/// first (the runbook's weekly `df -h`).
#[derive(Debug, Clone, PartialEq)]
pub struct DiskRules {
    pub degraded_pct: f64,
    pub degraded_bytes: u64,
    pub unhealthy_pct: f64,
    pub unhealthy_bytes: u64,
}

/// Free space on the home's disk, judged by `rules`.
pub fn disk(path: &std::path::Path, rules: &DiskRules) -> Component {
    match fs4::statvfs(path) {
        Ok(s) => {
            let total = s.total_space();
            let free = s.available_space();
            let pct = if total == 0 {
                0.0
            } else {
                free as f64 * 100.0 / total as f64
            };
            let status = if pct < rules.unhealthy_pct || free < rules.unhealthy_bytes {
                Health::Unhealthy
            } else if pct < rules.degraded_pct || free < rules.degraded_bytes {
                Health::Degraded
            } else {
                Health::Healthy
            };
            // Shown coarse (two significant digits, whole percent) so an idle server's
            // summary does not change with every log line written.
            Component::new(status)
                .with("free_bytes", two_digits(free))
                .with("total_bytes", total)
                .with("free_pct", pct.floor() as u64)
        }
        Err(e) => Component::new(Health::Unhealthy).with("error", e.to_string()),
    }
}

/// The overall status: the worst component's.
pub fn overall(components: &[(&'static str, Component)]) -> Health {
    components
        .iter()
        .map(|(_, c)| c.status)
        .max()
        .unwrap_or(Health::Healthy)
}

/// Health from firing alerts: a critical one makes it unhealthy, a warning degraded.
pub fn worst(alerts: &[Alert]) -> Health {
    match alerts.iter().map(|a| a.severity).max() {
        Some(Severity::Critical) => Health::Unhealthy,
        Some(Severity::Warning) => Health::Degraded,
        _ => Health::Healthy,
    }
}

/// The SLO figures and the alerts they raised (deployment and flag notes excluded).
pub fn slo(slo: &Slo, alerts: &Alerts) -> Component {
    slo_of(slo.figures(), alerts)
}

/// [`slo`] from figures already read.
pub fn slo_of(figures: Result<Figures, StoreError>, alerts: &Alerts) -> Component {
    let firing: Vec<Alert> = alerts
        .firing()
        .into_iter()
        .filter(|a| a.severity != Severity::Info)
        .collect();
    match figures {
        Ok(f) => Component::new(worst(&firing))
            .with("error_budget_remaining_pct", round4(f.budget.remaining_pct))
            .with("availability_pct", round4(f.availability_pct))
            .with("uptime_pct", round4(f.uptime_pct))
            // Whole milliseconds: the summary's own requests move it a little each call.
            .with("latency_p95_ms", f.latency_p95_ms.round()),
        Err(e) => Component::new(Health::Unhealthy).with("error", e.to_string()),
    }
}

/// The firing alerts, counted by severity.
pub fn alerts(alerts: &Alerts) -> Component {
    let firing = alerts.firing();
    let count = |s: Severity| firing.iter().filter(|a| a.severity == s).count();
    Component::new(worst(&firing))
        .with("critical", count(Severity::Critical))
        .with("warning", count(Severity::Warning))
        .with("info", count(Severity::Info))
        .with(
            "firing",
            firing.iter().map(|a| a.name.clone()).collect::<Vec<_>>(),
        )
}

/// `n` rounded down to two significant digits (18,345,678 → 18,000,000).
fn two_digits(n: u64) -> u64 {
    let mut unit = 1;
    while n / unit >= 100 {
        unit *= 10;
    }
    n / unit * unit
}

/// Unhealthy when the store does not answer a probe.
pub fn store(store: &Store) -> Component {
    if let Some(full) = store_full(store) {
        return full;
    }
    match store.probe() {
        Ok(()) => {
            let first = meta::instance(store)
                .ok()
                .flatten()
                .map(|i| i.first_started_at)
                .unwrap_or_default();
            Component::new(Health::Healthy)
                .with("backend", "sled")
                .with("schema_version", meta::schema_version(store).unwrap_or(0))
                .with("first_started_at", first)
        }
        Err(e) => {
            tracing::error!(error = %e, "store probe failed");
            let reason = if e.is_full() {
                crate::error::FULL_MESSAGE.to_string()
            } else {
                "the store does not answer: see the server's log".to_string()
            };
            Component::new(Health::Unhealthy)
                .with("backend", "sled")
                .with("error", reason)
        }
    }
}

/// Full: changes are refused (503) until space is freed; reads still work.
fn store_full(store: &Store) -> Option<Component> {
    store.full().map(|full| {
        Component::new(Health::Unhealthy)
            .with("backend", "sled")
            .with("error", full.to_string())
    })
}

/// The store without a probe (a page view must not write): full at once, else the
/// last probe's component when there was one, else a read of the schema version.
pub fn store_seen(store: &Store, last_probe: Option<Component>) -> Component {
    if let Some(full) = store_full(store) {
        return full;
    }
    if let Some(c) = last_probe {
        return c;
    }
    match meta::schema_version(store) {
        Ok(v) => Component::new(Health::Healthy)
            .with("backend", "sled")
            .with("schema_version", v)
            .with("probe", "not yet"),
        Err(e) => {
            tracing::error!(error = %e, "store read failed");
            Component::new(Health::Unhealthy)
                .with("backend", "sled")
                .with("error", "the store does not answer: see the server's log")
        }
    }
}

/// Degraded while any background task is not running.
pub fn supervisor(supervisor: &Supervisor) -> Component {
    let tasks = supervisor.tasks();
    let failing: Vec<&str> = tasks
        .iter()
        .filter(|t| t.state != TaskState::Running)
        .map(|t| t.name.as_str())
        .collect();
    let status = if failing.is_empty() {
        Health::Healthy
    } else {
        Health::Degraded
    };
    Component::new(status)
        .with("tasks", tasks.len())
        .with("not_running", failing)
}

/// The audit trail: its newest seq, and whether the log files are being written
/// (`app_log_ok`: the request log's writer is not failing).
pub fn audit(audit: &Audit, app_log_ok: bool) -> Component {
    let audit_ok = !audit.file_failing();
    let status = if audit_ok && app_log_ok {
        Health::Healthy
    } else {
        Health::Degraded
    };
    Component::new(status)
        .with("last_seq", audit.last_seq())
        .with("audit_file_ok", audit_ok)
        .with("app_log_ok", app_log_ok)
}

/// Unhealthy when the loop is stopped; degraded when paused or when the last tick is
/// more than two intervals old (counted from `started_at` before the first tick).
pub fn scheduler(s: &Scheduler, now: DateTime<Utc>, started_at: DateTime<Utc>) -> Component {
    let interval = s.tick_interval_secs() as i64;
    let age = (now - s.last_tick().unwrap_or(started_at)).num_seconds();
    let status = match s.state() {
        RunState::Stopped => Health::Unhealthy,
        RunState::Paused => Health::Degraded,
        RunState::Running if age > 2 * interval => Health::Degraded,
        RunState::Running => Health::Healthy,
    };
    Component::new(status)
        .with("state", serde_json::to_value(s.state()).unwrap_or_default())
        .with("last_tick", s.last_tick().map(crate::clock::rfc3339))
        .with("tick_age_secs", age.max(0))
        .with("tick_interval_secs", interval)
}

/// Counts; degraded while any job is stuck. A running job whose lease ran out counts as
/// stuck at once, as `/api/jobs/stuck` lists it, not only after the next tick.
pub fn jobs(j: &Jobs) -> Component {
    let lapsed = j.lapsed().unwrap_or(0);
    let stuck = j.count(Status::Stuck) + lapsed;
    let status = if stuck > 0 {
        Health::Degraded
    } else {
        Health::Healthy
    };
    Component::new(status)
        .with("queued", j.count(Status::Queued))
        .with("running", j.count(Status::Running).saturating_sub(lapsed))
        .with("scheduled", j.count(Status::Scheduled))
        .with("stuck", stuck)
        .with("dead", j.count(Status::Dead))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_bytes_keep_two_significant_digits() {
        assert_eq!(two_digits(0), 0);
        assert_eq!(two_digits(99), 99);
        assert_eq!(two_digits(18_345_678), 18_000_000);
        assert_eq!(two_digits(1_299), 1_200);
    }
}
