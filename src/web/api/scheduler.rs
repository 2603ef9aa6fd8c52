//! `/api/scheduler/*`: the scheduler's state (public) and the operator's pause, resume
//! and restart (the runbook's "stop and start the Scheduler workflow").

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use serde_json::{Value, json};

use crate::app::AppState;
use crate::clock::rfc3339;
use crate::error::Result;
use crate::jobs::Status;
use crate::store::Commit;
use crate::web::access::Origin;
use crate::web::api::jobs::audited;
use crate::web::auth::Operator;
use crate::web::extract::AppJson;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/scheduler/status", get(status))
        .route("/api/scheduler/restart", post(restart))
        .route("/api/scheduler/pause", post(pause))
        .route("/api/scheduler/resume", post(resume))
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
pub async fn status(State(state): State<AppState>) -> Result<AppJson<Value>> {
    Ok(AppJson(status_json(&state)))
}

/// `POST /api/scheduler/restart` (operator): unpause, recover stuck jobs, tick now.
pub async fn restart(
    State(state): State<AppState>,
    Operator(caller): Operator,
    meta: Origin,
) -> Response {
    state.scheduler.restart();
    let mut v = status_json(&state);
    v["restarted"] = json!(true);
    audited(
        &state,
        meta,
        &caller,
        "scheduler.restart",
        "scheduler".into(),
        Ok((StatusCode::OK, v, Commit::done())),
    )
    .await
}

/// `POST /api/scheduler/pause` (operator): no job starts, no schedule fires; enqueues
/// are still accepted.
pub async fn pause(
    State(state): State<AppState>,
    Operator(caller): Operator,
    meta: Origin,
) -> Response {
    state.scheduler.pause();
    state.scheduler.log.info("scheduler paused by an operator");
    let v = status_json(&state);
    audited(
        &state,
        meta,
        &caller,
        "scheduler.pause",
        "scheduler".into(),
        Ok((StatusCode::OK, v, Commit::done())),
    )
    .await
}

/// `POST /api/scheduler/resume` (operator).
pub async fn resume(
    State(state): State<AppState>,
    Operator(caller): Operator,
    meta: Origin,
) -> Response {
    state.scheduler.resume();
    state.scheduler.log.info("scheduler resumed by an operator");
    let v = status_json(&state);
    audited(
        &state,
        meta,
        &caller,
        "scheduler.resume",
        "scheduler".into(),
        Ok((StatusCode::OK, v, Commit::done())),
    )
    .await
}
