//! `/api/scheduler/*`: the scheduler's state (public) and the operator's pause, resume
//! and restart (the runbook's "stop and start the Scheduler workflow").

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Value, json};

use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::app::AppState;
use crate::clock::rfc3339;
use crate::jobs::Status;
use crate::store::Commit;
use crate::web::access::Origin;
use crate::web::api::schemas::SchedulerStatus;
use crate::web::audit::audited;
use crate::web::auth::Operator;
use crate::web::cache::{Figure, Rendered};
use crate::web::error::Result;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(status))
        .routes(routes!(restart))
        .routes(routes!(pause))
        .routes(routes!(resume))
}

/// The status body (also the answer to pause/resume/restart).
pub fn status_json(state: &AppState) -> Value {
    let s = &state.scheduler;
    let jobs = &state.jobs;
    json!({
        "ok": true,
        "state": s.state(),
        "last_tick": s.last_tick().map(rfc3339),
        "next_tick": s.next_tick().map(rfc3339),
        "tick_interval_secs": s.tick_interval_secs(),
        "ticks": s.ticks(),
        "queued": jobs.count(Status::Queued),
        "running": jobs.count(Status::Running),
        "scheduled": jobs.count(Status::Scheduled),
        "stuck": jobs.count(Status::Stuck),
        "dead": jobs.count(Status::Dead),
        "executor_slots_free": s.free_slots(),
    })
}

/// `GET /api/scheduler/status` (public).
#[utoipa::path(get, path = "/api/scheduler/status", tag = "scheduler",
    responses((status = 200, body = SchedulerStatus)),
    extensions(("x-required-role" = json!("public"))))]
pub async fn status(State(state): State<AppState>) -> Result<Rendered> {
    state
        .status_cache
        .get(Figure::Scheduler, || {
            Ok(Rendered::json(&status_json(&state)))
        })
        .await
}

/// `POST /api/scheduler/restart` (operator): unpause, recover stuck jobs, tick now.
#[utoipa::path(post, path = "/api/scheduler/restart", tag = "scheduler",
    responses((status = 200, body = SchedulerStatus)),
    extensions(("x-required-role" = json!("operator"))))]
pub async fn restart(
    State(state): State<AppState>,
    Operator(caller): Operator,
    origin: Origin,
) -> Response {
    state.scheduler.restart();
    let mut v = status_json(&state);
    v["restarted"] = json!(true);
    audited(
        &state,
        origin,
        &caller,
        "scheduler.restart",
        "scheduler".into(),
        Ok((StatusCode::OK, v, Commit::done())),
    )
    .await
}

/// `POST /api/scheduler/pause` (operator): no job starts, no schedule fires; enqueues
/// are still accepted.
#[utoipa::path(post, path = "/api/scheduler/pause", tag = "scheduler",
    responses((status = 200, body = SchedulerStatus)),
    extensions(("x-required-role" = json!("operator"))))]
pub async fn pause(
    State(state): State<AppState>,
    Operator(caller): Operator,
    origin: Origin,
) -> Response {
    state.scheduler.pause();
    state.scheduler.log.info("scheduler paused by an operator");
    let v = status_json(&state);
    audited(
        &state,
        origin,
        &caller,
        "scheduler.pause",
        "scheduler".into(),
        Ok((StatusCode::OK, v, Commit::done())),
    )
    .await
}

/// `POST /api/scheduler/resume` (operator).
#[utoipa::path(post, path = "/api/scheduler/resume", tag = "scheduler",
    responses((status = 200, body = SchedulerStatus)),
    extensions(("x-required-role" = json!("operator"))))]
pub async fn resume(
    State(state): State<AppState>,
    Operator(caller): Operator,
    origin: Origin,
) -> Response {
    state.scheduler.resume();
    state.scheduler.log.info("scheduler resumed by an operator");
    let v = status_json(&state);
    audited(
        &state,
        origin,
        &caller,
        "scheduler.resume",
        "scheduler".into(),
        Ok((StatusCode::OK, v, Commit::done())),
    )
    .await
}
