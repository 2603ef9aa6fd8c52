//! `/dashboard` (and `/dashboard/v2`): the overview. Firing alerts on top, service health
//! and operations cards, charts of the last 24 h and of the error budget, and — side by
//! side — the stuck jobs, the audit failures and the budget, so cause and cost show
//! together.

use askama::Template;
use axum::Router;
use axum::extract::{Query, State};
use axum::response::IntoResponse;
use axum::routing::get;
use chrono::{DateTime, Duration, Utc};
use serde::Deserialize;

use crate::app::AppState;
use crate::audit::Filter as AuditFilter;
use crate::clock::rfc3339;
use crate::health::Health;
use crate::jobs::Status;
use crate::jobs::model::{ms, time};
use crate::slo::series::Series;

use super::audit::AuditRow;
use super::charts::{Chart, Layer, Marker, Threshold, axis};
use super::session::Session;
use super::view::{Chrome, Page, PageResult, Pill, compact, duration, page_err, pill};

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/dashboard", get(show))
        .route("/dashboard/v2", get(show))
}

#[derive(Debug, Deserialize)]
pub(super) struct NoticeQuery {
    notice: Option<String>,
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
    requests_chart: String,
    errors_chart: String,
    requests_note: String,
    p95_chart: String,
    p95_note: String,
    budget_chart: String,
    budget_note: String,
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
    Query(q): Query<NoticeQuery>,
) -> PageResult {
    let page = tokio::task::spawn_blocking(move || build(&state, &session, q.notice.as_deref()))
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
    notice: Option<&str>,
) -> Result<OverviewPage, super::view::ErrorPage> {
    let chrome = Chrome::new(state, s, "overview", "Overview", notice);
    let now = state.clock.now();
    let f = state.slo.figures().map_err(page_err)?;
    let targets = state.slo.targets().clone();

    let components = crate::web::api::status::components(state);
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
    let schedules = sched.schedules.list().map(|l| l.len()).unwrap_or(0);
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
    let backup_age = state.slo.gauges().and_then(|g| g.last_backup_age_secs());
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
        Card {
            title: "Last backup",
            span: "",
            value: backup_age
                .map(|a| duration(a as i64))
                .unwrap_or_else(|| "—".into()),
            unit: if backup_age.is_some() { "ago" } else { "" },
            note: if backup_age.is_some() {
                String::new()
            } else {
                "no backup recorded yet".into()
            },
            pill: None,
            class: "",
            link: None,
        },
    ];

    // Charts: 24 h in 5-minute buckets, the SLO window in 6-hour buckets.
    let day = state.slo.series(288, 5).map_err(page_err)?;
    let window = state.slo.series(f.window_days * 4, 360).map_err(page_err)?;
    let markers_day = markers(state, &day);
    let markers_window = markers(state, &window);
    let day_ticks = time_ticks(&day, 6, "%H:%M");
    let requests: Vec<f64> = day.buckets.iter().map(|b| b.requests as f64).collect();
    let errors: Vec<f64> = day.buckets.iter().map(|b| b.errors as f64).collect();
    let (rmax, rticks) = axis(requests.iter().cloned().fold(0.0, f64::max), 4.0, compact);
    let (emax, eticks) = axis(errors.iter().cloned().fold(0.0, f64::max), 2.0, compact);
    let day_req: u64 = day.buckets.iter().map(|b| b.requests).sum();
    let day_err: u64 = day.buckets.iter().map(|b| b.errors).sum();
    let requests_chart = Chart {
        label: format!("Requests per 5 minutes over the last 24 hours; {day_req} in all"),
        height: 170,
        y_max: rmax,
        y_ticks: rticks,
        x_ticks: Vec::new(),
        layers: vec![Layer::Area(requests)],
        thresholds: Vec::new(),
        markers: markers_day.clone_markers(),
        latest: None,
    }
    .svg();
    let errors_chart = Chart {
        label: format!("Errors (5xx) per 5 minutes over the last 24 hours; {day_err} in all"),
        height: 80,
        y_max: emax,
        y_ticks: eticks.into_iter().step_by(2).collect(),
        x_ticks: day_ticks.clone(),
        layers: vec![Layer::Bars(errors)],
        thresholds: Vec::new(),
        markers: Vec::new(),
        latest: None,
    }
    .svg();
    let p95: Vec<f64> = day
        .buckets
        .iter()
        .map(|b| if b.requests == 0 { 0.0 } else { b.p95_ms() })
        .collect();
    let alert_ms = 500.0_f64.max(targets.latency_p95_ms);
    let pmax_seen = p95.iter().cloned().fold(0.0, f64::max);
    let (pmax, pticks) = axis(pmax_seen.max(alert_ms * 1.15), 100.0, |v| format!("{v:.0}"));
    let latest_p95 = p95.last().copied().unwrap_or(0.0);
    let p95_chart = Chart {
        label: format!(
            "P95 latency per 5 minutes over the last 24 hours, against the {} ms target and the {alert_ms} ms alert line",
            targets.latency_p95_ms
        ),
        height: 250,
        y_max: pmax,
        y_ticks: pticks,
        x_ticks: day_ticks,
        layers: vec![Layer::Line(p95, "p95")],
        thresholds: vec![
            Threshold { value: alert_ms, label: format!("Alert {alert_ms:.0}"), class: "alert", band: Some(true) },
            Threshold { value: targets.latency_p95_ms, label: format!("Target {:.0}", targets.latency_p95_ms), class: "target", band: None },
        ],
        markers: markers_day.clone_markers(),
        latest: Some(format!("{latest_p95:.0} ms")),
    }
    .svg();

    let allowed = (1.0 - targets.availability_pct / 100.0).max(0.0);
    let (mut cr, mut ce) = (0u64, 0u64);
    let n = window.buckets.len().max(1);
    let mut remaining = Vec::with_capacity(n);
    for b in &window.buckets {
        cr += b.requests;
        ce += b.errors;
        let used = if ce == 0 {
            0.0
        } else if cr == 0 || allowed == 0.0 {
            100.0
        } else {
            ce as f64 / (cr as f64 * allowed) * 100.0
        };
        remaining.push((100.0 - used).clamp(0.0, 100.0));
    }
    let even: Vec<f64> = (0..n)
        .map(|i| 100.0 - 100.0 * (i + 1) as f64 / n as f64)
        .collect();
    let budget_chart = Chart {
        label: format!(
            "Error budget remaining over the {}-day window: {:.1}% left",
            f.window_days, left
        ),
        height: 190,
        y_max: 100.0,
        y_ticks: [0.0, 25.0, 50.0, 75.0, 100.0]
            .iter()
            .map(|v| (*v, format!("{v:.0}%")))
            .collect(),
        x_ticks: time_ticks(&window, 4, "%b %-d"),
        layers: vec![Layer::Line(remaining, "budget"), Layer::Dashed(even)],
        thresholds: vec![Threshold {
            value: 25.0,
            label: "Low budget < 25%".into(),
            class: "low",
            band: Some(false),
        }],
        markers: markers_window.clone_markers(),
        latest: Some(format!("{:.1}%", left.clamp(-999.0, 100.0))),
    }
    .svg();

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
        requests_chart,
        errors_chart,
        requests_note: format!(
            "per 5 min · last 24 h · {} requests · {} errors",
            compact(day_req as f64),
            compact(day_err as f64)
        ),
        p95_chart,
        p95_note: format!(
            "per 5 min · last 24 h · window P95 {:.0} ms · now {latest_p95:.0} ms",
            f.latency_p95_ms
        ),
        budget_chart,
        budget_note: format!(
            "SLO {}% successful requests · {}-day window · allowed errors {:.0}, spent {}",
            targets.availability_pct, f.window_days, f.budget.allowed_errors, f.errors
        ),
        stuck,
        stuck_total,
        failures,
        burn_1h: format!("{:.1}×", f.burn("1h")),
        burn_6h: format!("{:.1}×", f.burn("6h")),
        burn_1d: format!("{:.1}×", f.burn("1d")),
        budget_left: pct(left, 1),
    })
}

/// Evenly spaced time labels under a series.
fn time_ticks(s: &Series, parts: usize, fmt: &str) -> Vec<(f64, String)> {
    let span = s.buckets.len() as u64 * s.bucket_minutes;
    (0..=parts)
        .map(|k| {
            let f = k as f64 / parts as f64;
            let minute = s.start_minute + (span as f64 * f) as u64;
            let t: DateTime<Utc> =
                DateTime::from_timestamp((minute * 60) as i64, 0).unwrap_or_default();
            (f, t.format(fmt).to_string())
        })
        .collect()
}

struct Markers(Vec<(usize, String)>);

impl Markers {
    fn clone_markers(&self) -> Vec<Marker> {
        self.0
            .iter()
            .map(|(at, label)| Marker {
                at: *at,
                label: label.clone(),
            })
            .collect()
    }
}

/// Events drawn on the time axis: this deployment, alerts that fired, 429 bursts.
fn markers(state: &AppState, s: &Series) -> Markers {
    let minute_of = |ts: &str| {
        DateTime::parse_from_rfc3339(ts)
            .ok()
            .map(|t| crate::slo::minute_of(t.to_utc()))
    };
    let mut out = Vec::new();
    let inst = &state.instance;
    if !inst.previous_started_at.is_empty()
        && let Some(i) = minute_of(&inst.started_at).and_then(|m| s.index_of(m))
    {
        let label = if inst.previous_version != inst.version || inst.previous_commit != inst.commit
        {
            format!("deploy {}", inst.version)
        } else {
            "restart".to_string()
        };
        out.push((i, label));
    }
    if let Ok(alerts) = state.alerts.list(None, 20) {
        for a in alerts
            .iter()
            .filter(|a| a.severity != crate::slo::alerts::Severity::Info)
            .take(3)
        {
            if let Some(i) = minute_of(&a.fired_at).and_then(|m| s.index_of(m)) {
                out.push((i, a.name.clone()));
            }
        }
    }
    let mut bursts: Vec<(usize, u64)> = s
        .buckets
        .iter()
        .enumerate()
        .filter(|(_, b)| b.rate_limited >= 10)
        .map(|(i, b)| (i, b.rate_limited))
        .collect();
    bursts.sort_by_key(|(_, n)| std::cmp::Reverse(*n));
    for (i, n) in bursts.into_iter().take(2) {
        out.push((i, format!("429 ×{n}")));
    }
    Markers(out)
}
