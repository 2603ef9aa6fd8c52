//! `/dashboard` (and `/dashboard/v2`): the overview. Firing alerts on top, service health
//! and operations cards, charts of the last 24 h and of the error budget, and — side by
//! side — the stuck jobs, the audit failures and the budget, so cause and cost show
//! together.

use askama::Template;
use axum::Router;
use axum::extract::{Query, State};
use axum::response::IntoResponse;
use axum::routing::get;
use chrono::Duration;
use serde::Deserialize;

use crate::app::AppState;
use crate::audit::Filter as AuditFilter;
use crate::clock::rfc3339;
use crate::health::Health;
use crate::jobs::Status;
use crate::jobs::model::{ms, time};

use super::audit::AuditRow;
use super::session::Session;
use super::traffic::Traffic;
use super::view::{Chrome, Page, PageResult, Pill, compact, duration, page_err, pill};

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/dashboard", get(show))
        .route("/dashboard/v2", get(show))
}

#[derive(Debug, Deserialize)]
pub(super) struct OverviewQuery {
    notice: Option<String>,
    /// The traffic charts' span: 1h, 6h, 24h (default), 7d, 30d.
    range: Option<String>,
}

pub(super) struct AlertRow {
    pub(super) pill: Pill,
    pub(super) name: String,
    pub(super) message: String,
    pub(super) since: String,
}

pub(super) struct StuckRow {
    pub(super) id: String,
    pub(super) short_id: String,
    pub(super) kind: String,
    pub(super) worker: String,
    pub(super) stuck_for: String,
    pub(super) since: String,
}

pub(super) struct Card {
    pub(super) title: &'static str,
    pub(super) span: &'static str,
    pub(super) value: String,
    pub(super) unit: &'static str,
    pub(super) note: String,
    pub(super) pill: Option<Pill>,
    pub(super) class: &'static str,
    pub(super) link: Option<(String, &'static str)>,
}

#[derive(Template)]
#[template(path = "v2/overview.html")]
struct OverviewPage {
    chrome: Chrome,
    alerts: Vec<AlertRow>,
    health: Pill,
    health_note: String,
    budget_pct: String,
    budget_bar: f64,
    budget_pill: Pill,
    health_cards: Vec<Card>,
    ops_cards: Vec<Card>,
    traffic: Traffic,
    ranges: Vec<(&'static str, &'static str, bool)>,
    stuck: Vec<StuckRow>,
    stuck_total: usize,
    failures: Vec<AuditRow>,
    burn_1h: String,
    burn_6h: String,
    burn_1d: String,
    budget_left: String,
}

async fn show(
    State(state): State<AppState>,
    session: Session,
    Query(q): Query<OverviewQuery>,
) -> PageResult {
    let page = tokio::task::spawn_blocking(move || build(&state, &session, &q))
        .await
        .map_err(|e| page_err(anyhow::anyhow!("overview task: {e}")))??;
    Ok(Page(page).into_response())
}

fn pct(v: f64, decimals: usize) -> String {
    format!("{v:.decimals$}")
}

fn build(
    state: &AppState,
    s: &Session,
    q: &OverviewQuery,
) -> Result<OverviewPage, super::view::ErrorPage> {
    let range = super::traffic::range(q.range.as_deref())?;
    let chrome = Chrome::new(state, s, "overview", "Overview", q.notice.as_deref());
    let now = state.clock.now();
    let f = state.slo.figures().map_err(page_err)?;
    let targets = state.slo.targets().clone();

    let components = crate::web::api::status::page_components(state, &f);
    let overall = components
        .iter()
        .map(|(_, c)| c.status)
        .max()
        .unwrap_or(Health::Healthy);
    let not_ok: Vec<&str> = components
        .iter()
        .filter(|(_, c)| c.status != Health::Healthy)
        .map(|(n, _)| *n)
        .collect();
    let health_note = if not_ok.is_empty() {
        "All checks passing".to_string()
    } else {
        format!("Needs a look: {}", not_ok.join(", "))
    };
    let health_word = match overall {
        Health::Healthy => "healthy",
        Health::Degraded => "degraded",
        Health::Unhealthy => "unhealthy",
    };

    let alerts: Vec<AlertRow> = state
        .alerts
        .firing()
        .into_iter()
        .map(|a| AlertRow {
            pill: pill(a.severity.as_str()),
            name: a.name,
            message: a.message,
            since: super::view::short_ts(&a.fired_at),
        })
        .collect();

    let left = f.budget.remaining_pct;
    let budget_pill = if left < 10.0 {
        pill("critical")
    } else if left < 25.0 {
        pill("warning")
    } else {
        Pill {
            class: "ok",
            icon: "●",
            word: "On track".into(),
        }
    };
    let p95_ok = f.latency_p95_ms <= targets.latency_p95_ms;
    let health_cards = vec![
        Card {
            title: "Uptime",
            span: "30 d",
            value: pct(f.uptime_pct, 2),
            unit: "%",
            note: format!(
                "SLO {}% · {} min down",
                targets.uptime_pct, f.budget.bad_minutes
            ),
            pill: Some(if f.uptime_pct >= targets.uptime_pct {
                Pill {
                    class: "ok",
                    icon: "●",
                    word: "SLO met".into(),
                }
            } else {
                Pill {
                    class: "crit",
                    icon: "◆",
                    word: "Below SLO".into(),
                }
            }),
            class: "",
            link: None,
        },
        Card {
            title: "P95 latency",
            span: "window",
            value: format!("{:.0}", f.latency_p95_ms),
            unit: "ms",
            note: format!("last hour {:.0} ms", f.latency_p95_1h_ms),
            pill: Some(if p95_ok {
                Pill {
                    class: "ok",
                    icon: "●",
                    word: format!("Within target ({} ms)", targets.latency_p95_ms),
                }
            } else {
                Pill {
                    class: "warn",
                    icon: "▲",
                    word: format!("Over target ({} ms)", targets.latency_p95_ms),
                }
            }),
            class: "",
            link: None,
        },
        Card {
            title: "Error rate",
            span: "window",
            value: pct(f.error_rate_pct, 2),
            unit: "%",
            note: format!(
                "{} of {} requests",
                compact(f.errors as f64),
                compact(f.requests as f64)
            ),
            pill: None,
            class: "",
            link: None,
        },
        Card {
            title: "Webhook success",
            span: "window",
            value: pct(f.webhook_success_pct, 1),
            unit: "%",
            note: format!("target > {}%", targets.webhook_success_pct),
            pill: None,
            class: "",
            link: None,
        },
    ];

    let sched = &state.scheduler;
    let run_state = format!("{:?}", sched.state()).to_lowercase();
    let tick_age = (now - sched.last_tick().unwrap_or(state.started_at)).num_seconds();
    let schedule_list = sched.schedules.list().unwrap_or_default();
    let schedules = schedule_list.len();
    let jobs = &state.jobs;
    let stuck_jobs = {
        let mut v = jobs.stuck(now).map_err(page_err)?;
        v.sort_by_key(|j| j.stuck_since());
        v
    };
    let dead = jobs.count(Status::Dead);
    let now_ms = ms(now);
    let oldest = stuck_jobs
        .first()
        .map(|j| duration((now_ms - j.stuck_since()) / 1000));
    let ops_cards = vec![
        Card {
            title: "Scheduler",
            span: "",
            value: pill(&run_state).word,
            unit: "",
            note: format!(
                "last tick {} ago · next {} · {} schedules",
                duration(tick_age),
                sched
                    .next_tick()
                    .map(super::view::hms)
                    .unwrap_or_else(|| "—".into()),
                schedules
            ),
            pill: None,
            class: if run_state == "running" {
                "big-ok"
            } else {
                "big-warn"
            },
            link: Some(("/dashboard/schedules".into(), "Schedules →")),
        },
        Card {
            title: "Queue depth",
            span: "",
            value: jobs.count(Status::Queued).to_string(),
            unit: "",
            note: format!(
                "{} running · {} scheduled",
                jobs.count(Status::Running),
                jobs.count(Status::Scheduled)
            ),
            pill: None,
            class: "",
            link: Some(("/dashboard/jobs?status=queued".into(), "Queued jobs →")),
        },
        Card {
            title: "Stuck jobs",
            span: "",
            value: stuck_jobs.len().to_string(),
            unit: "",
            note: String::new(),
            pill: oldest.map(|o| Pill {
                class: "warn",
                icon: "▲",
                word: format!("Oldest {o}"),
            }),
            class: if stuck_jobs.is_empty() {
                ""
            } else {
                "edge-warn"
            },
            link: Some(("/dashboard/jobs?status=stuck".into(), "View stuck jobs →")),
        },
        Card {
            title: "Dead jobs",
            span: "",
            value: dead.to_string(),
            unit: "",
            note: String::new(),
            pill: (dead > 0).then(|| Pill {
                class: "crit",
                icon: "◆",
                word: "Retries exhausted".into(),
            }),
            class: if dead > 0 { "edge-crit" } else { "" },
            link: Some(("/dashboard/jobs?status=dead".into(), "Review dead →")),
        },
        super::backups::card(state, &schedule_list),
    ];

    let traffic = super::traffic::build(state, &f, &targets, range)?;

    let since = rfc3339(now - Duration::hours(24));
    let (events, _) = state
        .audit
        .query(&AuditFilter {
            ok: Some(false),
            since: Some(since),
            limit: 6,
            ..AuditFilter::default()
        })
        .map_err(page_err)?;
    let failures = events.iter().map(AuditRow::from_event).collect();

    let stuck_total = stuck_jobs.len();
    let stuck = stuck_jobs
        .iter()
        .take(5)
        .map(|j| StuckRow {
            id: j.id.clone(),
            short_id: format!("…{}", &j.id[j.id.len().saturating_sub(12)..]),
            kind: j.kind.clone(),
            worker: j.worker.clone().unwrap_or_else(|| "—".into()),
            stuck_for: duration((now_ms - j.stuck_since()) / 1000),
            since: super::view::hms(time(j.stuck_since())),
        })
        .collect();

    Ok(OverviewPage {
        chrome,
        alerts,
        health: pill(health_word),
        health_note,
        budget_pct: pct(left, 1),
        budget_bar: left.clamp(0.0, 100.0),
        budget_pill,
        health_cards,
        ops_cards,
        traffic,
        ranges: super::traffic::RANGES
            .iter()
            .map(|r| (r.key, r.label, r.key == range.key))
            .collect(),
        stuck,
        stuck_total,
        failures,
        burn_1h: format!("{:.1}×", f.burn("1h")),
        burn_6h: format!("{:.1}×", f.burn("6h")),
        burn_1d: format!("{:.1}×", f.burn("1d")),
        budget_left: pct(left, 1),
    })
}
