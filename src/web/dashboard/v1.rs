//! `/dashboard/v1`: the legacy fallback (the runbook's "Failover to legacy UI"). Plain
//! tables of status, SLO figures, job counts, stuck jobs, recent jobs and the audit
//! tail; minimal CSS, no JavaScript, as few moving parts as a page can have.

use askama::Template;
use axum::Router;
use axum::extract::State;
use axum::response::IntoResponse;
use axum::routing::get;
use serde::Deserialize;

use crate::app::AppState;
use crate::build_info;
use crate::health::Health;
use crate::jobs::model::ms;
use crate::jobs::{Filter, Status};
use crate::web::extract::AppQuery;

use super::assets;
use super::audit::AuditRow;
use super::jobs::JobRow;
use super::session::Session;
use super::view::{Page, PageResult, int, page_err, query};

pub(super) fn router() -> Router<AppState> {
    Router::new().route("/dashboard/v1", get(show))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct V1Query {
    cursor: Option<String>,
}

#[derive(Template)]
#[template(path = "v1/index.html")]
struct V1Page {
    css: String,
    user: String,
    role: String,
    version: &'static str,
    status: String,
    components: Vec<(String, String)>,
    slo: Vec<(&'static str, String)>,
    counts: Vec<(&'static str, String)>,
    stuck: Vec<JobRow>,
    jobs: Vec<JobRow>,
    older: Option<String>,
    audit: Vec<AuditRow>,
}

async fn show(
    State(state): State<AppState>,
    session: Session,
    AppQuery(q): AppQuery<V1Query>,
) -> PageResult {
    let now = state.clock.now();
    let now_ms = ms(now);
    let f = state.slo.figures().map_err(page_err)?;
    let components = crate::web::api::status::page_components(&state, &f);
    let overall = components
        .iter()
        .map(|(_, c)| c.status)
        .max()
        .unwrap_or(Health::Healthy);
    let word = |h: Health| match h {
        Health::Healthy => "healthy",
        Health::Degraded => "degraded",
        Health::Unhealthy => "unhealthy",
    };
    let slo = vec![
        (
            "Error budget remaining",
            format!("{:.2}%", f.budget.remaining_pct),
        ),
        ("Availability", format!("{:.3}%", f.availability_pct)),
        ("Uptime", format!("{:.3}%", f.uptime_pct)),
        ("P95 latency", format!("{:.0} ms", f.latency_p95_ms)),
        ("Error rate", format!("{:.3}%", f.error_rate_pct)),
        ("Webhook success", format!("{:.2}%", f.webhook_success_pct)),
        (
            "Scheduler tick age",
            format!("{:.0} s", f.scheduler_tick_age_secs),
        ),
        ("Requests in window", int(f.requests)),
    ];
    let j = &state.jobs;
    let mut stuck = j.stuck(now).map_err(page_err)?;
    stuck.sort_by_key(|j| j.stuck_since());
    let counts = vec![
        ("queued", int(j.count(Status::Queued))),
        ("running", int(j.count(Status::Running))),
        ("scheduled", int(j.count(Status::Scheduled))),
        ("stuck", int(stuck.len() as u64)),
        ("dead", int(j.count(Status::Dead))),
        ("succeeded", int(j.count(Status::Succeeded))),
        ("cancelled", int(j.count(Status::Cancelled))),
    ];
    let (list, next) = j
        .list(&Filter::default(), q.cursor.as_deref(), 25)
        .map_err(page_err)?;
    let audit = state.audit.recent(20).map_err(page_err)?;
    let page = V1Page {
        css: assets::url("v1.css"),
        user: session.caller.key_id.clone(),
        role: session.caller.role.to_string(),
        version: build_info::VERSION,
        status: word(overall).to_string(),
        components: components
            .iter()
            .map(|(n, c)| (n.to_string(), word(c.status).to_string()))
            .collect(),
        slo,
        counts,
        stuck: stuck
            .iter()
            .take(100)
            .map(|x| JobRow::of(x, now_ms))
            .collect(),
        jobs: list.iter().map(|x| JobRow::of(x, now_ms)).collect(),
        older: next.map(|c| format!("/dashboard/v1{}", query(&[("cursor", c.as_str())]))),
        audit: audit.iter().map(AuditRow::from_event).collect(),
    };
    Ok(Page(page).into_response())
}
