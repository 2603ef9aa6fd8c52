//! `GET /api/status/summary`: is EchoPilot healthy, and if not, which part is not.

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use serde_json::{Map, Value, json};

use crate::app::AppState;
use crate::build_info;
use crate::error::Result;
use crate::health::{self, Component, Health};
use crate::slo::alerts::{Alert, Severity};
use crate::slo::round4;
use crate::store::meta;
use crate::supervisor::TaskState;
use crate::web::extract::AppJson;

pub fn router() -> Router<AppState> {
    Router::new().route("/api/status/summary", get(summary))
}

/// The summary. Keys come in a fixed order so `diff pre_maint.json <(curl …)` shows
/// only what changed.
pub async fn summary(State(state): State<AppState>) -> Result<AppJson<Value>> {
    let components = components(&state);
    let overall = components
        .iter()
        .map(|(_, c)| c.status)
        .max()
        .unwrap_or(Health::Healthy);
    let mut comps = Map::new();
    for (name, c) in &components {
        comps.insert((*name).to_string(), c.to_json());
    }
    Ok(AppJson(json!({
        "ok": true,
        "status": overall,
        "version": build_info::VERSION,
        "commit": build_info::commit_label(),
        "built_at": build_info::built_at(),
        "started_at": crate::clock::rfc3339(state.started_at),
        "uptime_secs": state.uptime().as_secs(),
        "components": comps,
    })))
}

/// Every component, in display order. Domains add theirs here.
pub fn components(state: &AppState) -> Vec<(&'static str, Component)> {
    vec![
        ("store", store(state)),
        ("disk", health::disk(&state.config.home)),
        ("supervisor", supervisor(state)),
        ("audit", audit(state)),
        ("slo", slo(state)),
        ("alerts", alerts(state)),
        ("scheduler", scheduler(state)),
        ("jobs", jobs(state)),
        (
            "backups",
            crate::glue_backup::component(
                &state.backups,
                state.clock.now(),
                &state.instance.first_started_at,
            ),
        ),
    ]
}

/// Health from firing alerts: a critical one makes it unhealthy, a warning degraded.
fn worst(alerts: &[Alert]) -> Health {
    match alerts.iter().map(|a| a.severity).max() {
        Some(Severity::Critical) => Health::Unhealthy,
        Some(Severity::Warning) => Health::Degraded,
        _ => Health::Healthy,
    }
}

/// The SLO figures and the alerts they raised (deployment and flag notes excluded).
fn slo(state: &AppState) -> Component {
    let firing: Vec<Alert> = state
        .alerts
        .firing()
        .into_iter()
        .filter(|a| a.severity != Severity::Info)
        .collect();
    match state.slo.figures() {
        Ok(f) => Component::new(worst(&firing))
            .with("error_budget_remaining_pct", round4(f.budget.remaining_pct))
            .with("availability_pct", round4(f.availability_pct))
            .with("uptime_pct", round4(f.uptime_pct))
            .with("latency_p95_ms", round4(f.latency_p95_ms)),
        Err(e) => Component::new(Health::Unhealthy).with("error", e.to_string()),
    }
}

fn alerts(state: &AppState) -> Component {
    let firing = state.alerts.firing();
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

fn store(state: &AppState) -> Component {
    match state.store.probe() {
        Ok(()) => {
            let first = meta::instance(&state.store)
                .ok()
                .flatten()
                .map(|i| i.first_started_at)
                .unwrap_or_default();
            Component::new(Health::Healthy)
                .with("backend", "sled")
                .with(
                    "schema_version",
                    meta::schema_version(&state.store).unwrap_or(0),
                )
                .with("first_started_at", first)
        }
        Err(e) => {
            tracing::error!(error = %e, "store probe failed");
            Component::new(Health::Unhealthy)
                .with("backend", "sled")
                .with("error", e.to_string())
        }
    }
}

fn supervisor(state: &AppState) -> Component {
    let tasks = state.supervisor.tasks();
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

/// The audit trail: its newest seq, and whether the log files are being written.
fn audit(state: &AppState) -> Component {
    let audit_ok = !state.audit.file_failing();
    let app_log_ok = !state.access.request_log.is_failing();
    let status = if audit_ok && app_log_ok {
        Health::Healthy
    } else {
        Health::Degraded
    };
    Component::new(status)
        .with("last_seq", state.audit.last_seq())
        .with("audit_file_ok", audit_ok)
        .with("app_log_ok", app_log_ok)
}

/// Unhealthy when the loop is stopped; degraded when paused or when the last tick is
/// more than two intervals old.
fn scheduler(state: &AppState) -> Component {
    use crate::scheduler::RunState;
    let s = &state.scheduler;
    let now = state.clock.now();
    let interval = s.tick_interval_secs() as i64;
    let age = (now - s.last_tick().unwrap_or(state.started_at)).num_seconds();
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

/// Counts; degraded while any job is stuck.
fn jobs(state: &AppState) -> Component {
    use crate::jobs::Status;
    let j = &state.jobs;
    let stuck = j.count(Status::Stuck);
    let status = if stuck > 0 {
        Health::Degraded
    } else {
        Health::Healthy
    };
    Component::new(status)
        .with("queued", j.count(Status::Queued))
        .with("running", j.count(Status::Running))
        .with("scheduled", j.count(Status::Scheduled))
        .with("stuck", stuck)
        .with("dead", j.count(Status::Dead))
}
