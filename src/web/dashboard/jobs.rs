//! `/dashboard/jobs`: the job list (filters, status tabs with counts, the Stuck tab,
//! pagination), a job's page (escaped payload, attempts, errors) and the buttons:
//! retry, cancel and "retry all dead" behind a confirmation box. The buttons call the
//! JSON API's own handlers, so a click is the same change and the same audit event.

use askama::Template;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;

use crate::app::AppState;
use crate::jobs::model::{ms, time};
use crate::jobs::{Filter, Job, Status};
use crate::store::Commit;
use crate::web::access::Origin;
use crate::web::api;
use crate::web::audit::audited;
use crate::web::auth::Operator;
use crate::web::error::AppError;
use crate::web::extract::{AppPath, AppQuery, MaybeJson};

use super::session::{Action, Button, CsrfForm, Session, safe_next, see_other};
use super::view::{
    Chrome, Page, PageResult, Pager, Pill, duration, hms, int, outcome_code, page_err, pill, query,
};

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/dashboard/jobs", get(list))
        .route("/dashboard/jobs/retry-dead", post(retry_dead))
        .route("/dashboard/jobs/{id}", get(show))
        .route("/dashboard/jobs/{id}/retry", post(retry))
        .route("/dashboard/jobs/{id}/cancel", post(cancel))
}

/// A job as the tables show it.
pub(super) struct JobRow {
    pub(super) id: String,
    /// The id's last 12 characters (UUIDv7s made close together share their first ones).
    pub(super) short_id: String,
    pub(super) kind: String,
    pub(super) queue: String,
    pub(super) pill: Pill,
    pub(super) attempts: String,
    pub(super) attempts_hot: bool,
    pub(super) run_at: String,
    pub(super) run_rel: String,
    pub(super) took: String,
    pub(super) note: String,
    pub(super) edge: &'static str,
    pub(super) can_retry: bool,
    pub(super) can_cancel: bool,
}

fn rel(now: i64, at: i64) -> String {
    let d = (at - now) / 1000;
    if d > 0 {
        format!("in {}", duration(d))
    } else {
        format!("{} ago", duration(-d))
    }
}

impl JobRow {
    pub(super) fn of(j: &Job, now: i64) -> JobRow {
        let lease_expired =
            j.status == Status::Running && j.lease_expires_at.is_some_and(|l| l <= now);
        let shown = if lease_expired {
            Status::Stuck
        } else {
            j.status
        };
        let took = match (j.started_at, j.finished_at) {
            (Some(s), Some(f)) => format!("{:.2} s", (f - s) as f64 / 1000.0),
            (Some(s), None) if j.status == Status::Running => {
                format!("{} running", duration((now - s) / 1000))
            }
            _ => "—".into(),
        };
        let note = match shown {
            Status::Stuck => format!(
                "no heartbeat from {} since {}",
                j.worker.as_deref().unwrap_or("its worker"),
                hms(time(j.stuck_since()))
            ),
            _ => j
                .last_error
                .as_deref()
                .map(|e| crate::jobs::truncate(e, 120))
                .unwrap_or_default(),
        };
        JobRow {
            id: j.id.clone(),
            short_id: format!("…{}", &j.id[j.id.len().saturating_sub(12)..]),
            kind: j.kind.clone(),
            queue: j.queue.clone(),
            pill: pill(shown.as_str()),
            attempts: format!("{}/{}", j.attempts, j.max_attempts),
            attempts_hot: j.attempts > 1 || shown == Status::Dead,
            run_at: hms(time(j.run_at)),
            run_rel: rel(now, j.run_at),
            took,
            note,
            edge: match shown {
                Status::Dead => "edge-crit",
                Status::Stuck => "edge-warn",
                _ => "",
            },
            can_retry: j.can_retry(now),
            can_cancel: !j.status.is_finished(),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct JobsQuery {
    #[serde(default)]
    status: String,
    #[serde(default)]
    queue: String,
    #[serde(default)]
    kind: String,
    cursor: Option<String>,
    limit: Option<usize>,
    notice: Option<String>,
}

pub(super) struct Tab {
    pub(super) label: &'static str,
    pub(super) href: String,
    pub(super) count: String,
    pub(super) current: bool,
    pub(super) class: &'static str,
}

#[derive(Template)]
#[template(path = "v2/jobs.html")]
struct JobsPage {
    chrome: Chrome,
    q: JobsQuery,
    tabs: Vec<Tab>,
    queues: Vec<String>,
    rows: Vec<JobRow>,
    pager: Pager,
    dead: u64,
    back: String,
    limit: usize,
}

const TABS: &[(&str, &str)] = &[
    ("", "All"),
    ("queued", "Queued"),
    ("running", "Running"),
    ("scheduled", "Scheduled"),
    ("stuck", "Stuck"),
    ("dead", "Dead"),
    ("succeeded", "Succeeded"),
    ("cancelled", "Cancelled"),
];

async fn list(
    State(state): State<AppState>,
    session: Session,
    AppQuery(q): AppQuery<JobsQuery>,
) -> PageResult {
    let page = tokio::task::spawn_blocking(move || build_list(&state, &session, q))
        .await
        .map_err(|e| page_err(anyhow::anyhow!("jobs page task: {e}")))??;
    Ok(Page(page).into_response())
}

fn build_list(
    state: &AppState,
    session: &Session,
    q: JobsQuery,
) -> Result<JobsPage, super::view::ErrorPage> {
    let now = state.clock.now();
    let now_ms = ms(now);
    let jobs = &state.jobs;
    let limit = q.limit.unwrap_or(25).clamp(1, 200);
    let mut filter = Filter {
        queue: Some(q.queue.trim().to_string()).filter(|s| !s.is_empty()),
        kind: Some(q.kind.trim().to_string()).filter(|s| !s.is_empty()),
        ..Filter::default()
    };
    match q.status.as_str() {
        "" | "stuck" => {}
        "failed" => filter.failed = true,
        s => {
            filter.status = Some(Status::parse(s).ok_or_else(|| {
                AppError::bad_request(format!(
                    "unknown status {s:?} (scheduled, queued, running, stuck, succeeded, dead, cancelled, failed)"
                ))
            })?)
        }
    }
    let stuck = {
        let mut v = jobs.stuck(now).map_err(page_err)?;
        v.sort_by_key(|j| j.stuck_since());
        v
    };
    let counts = jobs.counts();
    let total_of = |s: Option<Status>| -> u64 {
        counts
            .iter()
            .filter(|(queue, _)| filter.queue.as_ref().is_none_or(|f| f == *queue))
            .flat_map(|(_, per)| per.iter())
            .filter(|(st, _)| s.is_none_or(|s| **st == s))
            .map(|(_, n)| *n)
            .sum()
    };
    let base = |status: &str| {
        format!(
            "/dashboard/jobs{}",
            query(&[("status", status), ("queue", &q.queue), ("kind", &q.kind)])
        )
    };
    let tabs = TABS
        .iter()
        .map(|(st, label)| Tab {
            label,
            href: base(st),
            count: match *st {
                "stuck" => int(stuck.len() as u64),
                "" => int(total_of(None)),
                s => int(total_of(Status::parse(s))),
            },
            current: q.status == *st,
            class: match *st {
                "stuck" if !stuck.is_empty() => "warn",
                "dead" if total_of(Some(Status::Dead)) > 0 => "crit",
                _ => "",
            },
        })
        .collect();

    let (rows, next): (Vec<JobRow>, Option<String>) = if q.status == "stuck" {
        let rows = stuck
            .iter()
            .filter(|j| filter.queue.as_ref().is_none_or(|f| &j.queue == f))
            .filter(|j| filter.kind.as_ref().is_none_or(|f| &j.kind == f))
            .take(200)
            .map(|j| JobRow::of(j, now_ms))
            .collect();
        (rows, None)
    } else {
        let (list, next) = jobs
            .list(&filter, q.cursor.as_deref(), limit)
            .map_err(page_err)?;
        (list.iter().map(|j| JobRow::of(j, now_ms)).collect(), next)
    };
    let limit_s = limit.to_string();
    let keep = [
        ("status", q.status.as_str()),
        ("queue", q.queue.as_str()),
        ("kind", q.kind.as_str()),
        ("limit", if limit == 25 { "" } else { limit_s.as_str() }),
    ];
    let summary = if filter.kind.is_none() && !filter.failed && q.status != "stuck" {
        let total = total_of(filter.status);
        format!("{} jobs shown of {}", rows.len(), int(total))
    } else {
        format!("{} jobs shown", rows.len())
    };
    let pager = Pager {
        summary,
        newest: q
            .cursor
            .as_ref()
            .map(|_| format!("/dashboard/jobs{}", query(&keep))),
        older: next.map(|c| {
            let mut p = keep.to_vec();
            p.push(("cursor", c.as_str()));
            format!("/dashboard/jobs{}", query(&p))
        }),
    };
    let mut back_pairs = keep.to_vec();
    if let Some(c) = &q.cursor {
        back_pairs.push(("cursor", c.as_str()));
    }
    let back = format!("/dashboard/jobs{}", query(&back_pairs));
    Ok(JobsPage {
        chrome: Chrome::new(state, session, "jobs", "Jobs", q.notice.as_deref()),
        tabs,
        queues: counts.keys().cloned().collect(),
        rows,
        pager,
        dead: jobs.count(Status::Dead),
        back,
        limit,
        q,
    })
}

#[derive(Template)]
#[template(path = "v2/job.html")]
struct JobPage {
    chrome: Chrome,
    row: JobRow,
    job: Job,
    payload: String,
    result: String,
    created: String,
    history: Vec<AttemptRow>,
    back: String,
}

pub(super) struct AttemptRow {
    pub(super) attempt: u32,
    pub(super) worker: String,
    pub(super) started: String,
    pub(super) finished: String,
    pub(super) pill: Pill,
    pub(super) error: String,
}

#[derive(Debug, Deserialize)]
pub(super) struct NoticeQuery {
    notice: Option<String>,
}

fn pretty(json_text: &str) -> String {
    serde_json::from_str::<serde_json::Value>(json_text)
        .ok()
        .and_then(|v| serde_json::to_string_pretty(&v).ok())
        .unwrap_or_else(|| json_text.to_string())
}

async fn show(
    State(state): State<AppState>,
    session: Session,
    AppPath(id): AppPath<String>,
    AppQuery(q): AppQuery<NoticeQuery>,
) -> PageResult {
    let job = state.jobs.get(&id).map_err(page_err)?;
    let now = ms(state.clock.now());
    let history = job
        .history
        .iter()
        .rev()
        .map(|a| AttemptRow {
            attempt: a.attempt,
            worker: a.worker.clone(),
            started: super::view::date_time(time(a.started_at)),
            finished: a
                .finished_at
                .map(|f| super::view::date_time(time(f)))
                .unwrap_or_else(|| "—".into()),
            pill: pill(match a.outcome.as_str() {
                "succeeded" | "completed" => "succeeded",
                "running" => "running",
                "failed" | "timeout" | "dead" => "failed",
                other => other,
            }),
            error: a.error.clone().unwrap_or_default(),
        })
        .collect();
    let page = JobPage {
        chrome: Chrome::new(
            &state,
            &session,
            "jobs",
            &format!("Job {id}"),
            q.notice.as_deref(),
        ),
        row: JobRow::of(&job, now),
        payload: pretty(&job.payload),
        result: job.result.as_deref().map(pretty).unwrap_or_default(),
        created: super::view::date_time(time(job.created_at)),
        back: format!("/dashboard/jobs/{}", job.id),
        history,
        job,
    };
    Ok(Page(page).into_response())
}

/// Back to `next` (or `fallback`) with the notice for the API's answer.
fn back_to(
    next: Option<&str>,
    fallback: &str,
    answer: &Response,
    ok_code: &'static str,
) -> Response {
    let to = safe_next(Some(next.unwrap_or(fallback)));
    let sep = if to.contains('?') { '&' } else { '?' };
    see_other(&format!(
        "{to}{sep}notice={}",
        outcome_code(answer.status(), ok_code)
    ))
}

/// `POST /dashboard/jobs/{id}/retry`: the API's retry, then back.
async fn retry(
    State(state): State<AppState>,
    origin: Origin,
    AppPath(id): AppPath<String>,
    Action { session, form }: Action<Button>,
) -> Response {
    let fallback = format!("/dashboard/jobs/{id}");
    let answer =
        api::jobs::retry(State(state), Operator(session.caller), origin, AppPath(id)).await;
    back_to(form.next.as_deref(), &fallback, &answer, "retried")
}

/// `POST /dashboard/jobs/{id}/cancel`: the API's cancel, then back.
async fn cancel(
    State(state): State<AppState>,
    origin: Origin,
    AppPath(id): AppPath<String>,
    Action { session, form }: Action<Button>,
) -> Response {
    let fallback = format!("/dashboard/jobs/{id}");
    let answer =
        api::jobs::cancel(State(state), Operator(session.caller), origin, AppPath(id)).await;
    back_to(form.next.as_deref(), &fallback, &answer, "cancelled")
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RetryDeadForm {
    csrf: String,
    /// The required "I understand" box: `yes` when ticked.
    #[serde(default)]
    confirm: Option<String>,
    #[serde(default)]
    queue: String,
    #[serde(default)]
    kind: String,
    #[serde(default)]
    next: Option<String>,
}

impl CsrfForm for RetryDeadForm {
    fn csrf(&self) -> &str {
        &self.csrf
    }
}

/// `POST /dashboard/jobs/retry-dead`: every dead job (of the filtered queue and kind)
/// back to the queue, only with the confirmation box ticked; the API's bulk retry.
async fn retry_dead(
    State(state): State<AppState>,
    origin: Origin,
    Action { session, form }: Action<RetryDeadForm>,
) -> Response {
    let fallback = "/dashboard/jobs?status=dead";
    let to = safe_next(Some(form.next.as_deref().unwrap_or(fallback)));
    if form.confirm.as_deref() != Some("yes") {
        let sep = if to.contains('?') { '&' } else { '?' };
        return see_other(&format!("{to}{sep}notice=confirm"));
    }
    let mut body = serde_json::json!({"status": "dead"});
    if !form.queue.trim().is_empty() {
        body["queue"] = form.queue.trim().into();
    }
    if !form.kind.trim().is_empty() {
        body["kind"] = form.kind.trim().into();
    }
    // The form's fields pass the API body's own checks (queue and kind names).
    let answer = match serde_json::from_value::<api::jobs::RetryBulk>(body) {
        Ok(body) => {
            api::jobs::retry_bulk(
                State(state),
                Operator(session.caller),
                origin,
                MaybeJson(body),
            )
            .await
        }
        Err(e) => {
            let target = format!("jobs status=dead queue={} kind={}", form.queue, form.kind);
            let refused = Err::<(StatusCode, (), Commit), _>(AppError::bad_request(e.to_string()));
            audited(
                &state,
                origin,
                &session.caller,
                "job.retry_bulk",
                target,
                refused,
            )
            .await
        }
    };
    back_to(Some(&to), fallback, &answer, "bulk_retried")
}
