//! `/dashboard/schedules`: cron schedules with their next runs and last run; run now,
//! pause and resume (the API's handlers), and the scheduler's own pause, resume and
//! restart.

use askama::Template;
use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;

use crate::app::AppState;
use crate::jobs::model::time;
use crate::web::access::Origin;
use crate::web::api;
use crate::web::auth::Operator;
use crate::web::extract::{AppPath, AppQuery};

use super::session::{Action, Button, see_other};
use super::view::{
    Chrome, Page, PageResult, Pager, Pill, date_time, duration, outcome_code, page_err, pill,
    short_ts,
};

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/dashboard/schedules", get(list))
        .route("/dashboard/schedules/{name}/run", post(run))
        .route("/dashboard/schedules/{name}/pause", post(pause))
        .route("/dashboard/schedules/{name}/resume", post(resume))
        .route("/dashboard/scheduler/{action}", post(scheduler))
}

pub(super) struct ScheduleRow {
    pub(super) name: String,
    pub(super) cron: String,
    pub(super) timezone: String,
    pub(super) queue: String,
    pub(super) kind: String,
    pub(super) pill: Pill,
    pub(super) paused: bool,
    pub(super) next: Vec<String>,
    pub(super) last: String,
    pub(super) last_job: String,
    pub(super) runs: u64,
    pub(super) source: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ListQuery {
    page: Option<usize>,
    notice: Option<String>,
}

#[derive(Template)]
#[template(path = "v2/schedules.html")]
struct SchedulesPage {
    chrome: Chrome,
    rows: Vec<ScheduleRow>,
    pager: Pager,
    sched: Pill,
    sched_note: String,
    paused: bool,
}

const PER_PAGE: usize = 50;

async fn list(
    State(state): State<AppState>,
    session: Session,
    AppQuery(q): AppQuery<ListQuery>,
) -> PageResult {
    let now = state.clock.now();
    let all = state.scheduler.schedules.list().map_err(page_err)?;
    let page = q.page.unwrap_or(1).max(1);
    let total = all.len();
    let rows = all
        .iter()
        .skip((page - 1) * PER_PAGE)
        .take(PER_PAGE)
        .map(|s| {
            let v = s.to_json(now);
            let state_word = v["state"].as_str().unwrap_or("").to_string();
            ScheduleRow {
                name: s.name.clone(),
                cron: s.cron.clone(),
                timezone: s.timezone.clone(),
                queue: s.queue.clone(),
                kind: s.kind.clone(),
                pill: pill(match state_word.as_str() {
                    "active" => "ok",
                    "paused" => "paused",
                    _ => "cancelled",
                })
                .with_word(&state_word),
                paused: s.paused,
                next: v["next_runs"]
                    .as_array()
                    .map(|a| a.iter().filter_map(|t| t.as_str()).map(short_ts).collect())
                    .unwrap_or_default(),
                last: s
                    .last_run_at
                    .map(|t| date_time(time(t)))
                    .unwrap_or_else(|| "never".into()),
                last_job: s.last_job_id.clone().unwrap_or_default(),
                runs: s.runs,
                source: s.source.clone(),
            }
        })
        .collect();
    let sched = &state.scheduler;
    let run_state = format!("{:?}", sched.state()).to_lowercase();
    let age = (now - sched.last_tick().unwrap_or(state.started_at)).num_seconds();
    let pager = Pager {
        summary: format!("{total} schedules"),
        newest: (page > 1).then(|| format!("/dashboard/schedules?page={}", page - 1)),
        older: (page * PER_PAGE < total).then(|| format!("/dashboard/schedules?page={}", page + 1)),
    };
    let page = SchedulesPage {
        chrome: Chrome::new(
            &state,
            &session,
            "schedules",
            "Schedules",
            q.notice.as_deref(),
        ),
        rows,
        pager,
        sched: pill(if run_state == "running" {
            "ok"
        } else {
            &run_state
        })
        .with_word(&run_state),
        sched_note: format!(
            "last tick {} ago · ticks every {} s · {} ticks since start",
            duration(age),
            sched.tick_interval_secs(),
            sched.ticks()
        ),
        paused: sched.is_paused(),
    };
    Ok(Page(page).into_response())
}

use super::session::Session;

fn back(answer: &Response, ok: &'static str) -> Response {
    see_other(&format!(
        "/dashboard/schedules?notice={}",
        outcome_code(answer.status(), ok)
    ))
}

async fn run(
    State(state): State<AppState>,
    origin: Origin,
    AppPath(name): AppPath<String>,
    Action { session, .. }: Action<Button>,
) -> Response {
    let a = api::schedules::run(
        State(state),
        Operator(session.caller),
        origin,
        AppPath(name),
    )
    .await;
    back(&a, "ran")
}

async fn pause(
    State(state): State<AppState>,
    origin: Origin,
    AppPath(name): AppPath<String>,
    Action { session, .. }: Action<Button>,
) -> Response {
    let a = api::schedules::pause(
        State(state),
        Operator(session.caller),
        origin,
        AppPath(name),
    )
    .await;
    back(&a, "paused")
}

async fn resume(
    State(state): State<AppState>,
    origin: Origin,
    AppPath(name): AppPath<String>,
    Action { session, .. }: Action<Button>,
) -> Response {
    let a = api::schedules::resume(
        State(state),
        Operator(session.caller),
        origin,
        AppPath(name),
    )
    .await;
    back(&a, "resumed")
}

/// The scheduler's pause, resume and restart (the runbook's "Restart Scheduler").
async fn scheduler(
    State(state): State<AppState>,
    origin: Origin,
    AppPath(action): AppPath<String>,
    Action { session, .. }: Action<Button>,
) -> Response {
    let op = Operator(session.caller);
    let (a, code) = match action.as_str() {
        "pause" => (
            api::scheduler::pause(State(state), op, origin).await,
            "paused",
        ),
        "resume" => (
            api::scheduler::resume(State(state), op, origin).await,
            "resumed",
        ),
        "restart" => (
            api::scheduler::restart(State(state), op, origin).await,
            "restarted",
        ),
        _ => {
            return super::view::ErrorPage::new(
                axum::http::StatusCode::NOT_FOUND,
                "No such scheduler action.",
            )
            .into_response();
        }
    };
    back(&a, code)
}
