//! `/api/schedules`: cron schedules (list with their next three runs, create, run now,
//! pause, resume, delete).

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use serde_json::{Value, json};

use crate::app::AppState;
use crate::error::{AppError, Result};
use crate::scheduler::schedules::{NewSchedule, ScheduleError, Schedules};
use crate::web::access::Origin;
use crate::web::api::jobs::audited;
use crate::web::auth::{Operator, Viewer};
use crate::web::extract::{AppJson, AppPath};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/schedules", get(list).post(create))
        .route("/api/schedules/{name}", axum::routing::delete(delete))
        .route("/api/schedules/{name}/run", post(run))
        .route("/api/schedules/{name}/pause", post(pause))
        .route("/api/schedules/{name}/resume", post(resume))
}

impl From<ScheduleError> for AppError {
    fn from(e: ScheduleError) -> Self {
        match e {
            ScheduleError::NotFound(_) => AppError::not_found(e.to_string()),
            ScheduleError::Invalid(m) => AppError::bad_request(m),
            ScheduleError::Conflict(m) => AppError::conflict(m),
            ScheduleError::Store(s) => s.into(),
            ScheduleError::Job(j) => j.into(),
        }
    }
}

/// `GET /api/schedules` (viewer).
pub async fn list(State(state): State<AppState>, _: Viewer) -> Result<AppJson<Value>> {
    let now = state.clock.now();
    let list: Vec<Value> = state
        .scheduler
        .schedules
        .list()?
        .iter()
        .map(|s| s.to_json(now))
        .collect();
    Ok(AppJson(
        json!({"ok": true, "count": list.len(), "schedules": list}),
    ))
}

fn parse(body: Value) -> Result<NewSchedule> {
    let Value::Object(m) = body else {
        return Err(AppError::bad_request("body: expected a JSON object"));
    };
    let known = [
        "name", "cron", "timezone", "queue", "kind", "payload", "enabled",
    ];
    if let Some(k) = m.keys().find(|k| !known.contains(&k.as_str())) {
        return Err(AppError::bad_request(format!(
            "{k}: unknown field (expected one of {})",
            known.join(", ")
        )));
    }
    let s = |f: &str| -> Result<Option<String>> {
        match m.get(f) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(v)) => Ok(Some(v.clone())),
            Some(_) => Err(AppError::bad_request(format!("{f}: must be a string"))),
        }
    };
    let enabled = match m.get("enabled") {
        None | Some(Value::Null) => None,
        Some(Value::Bool(b)) => Some(*b),
        Some(_) => return Err(AppError::bad_request("enabled: must be true or false")),
    };
    Ok(NewSchedule {
        name: s("name")?.ok_or_else(|| AppError::bad_request("name: required"))?,
        cron: s("cron")?.ok_or_else(|| AppError::bad_request("cron: required"))?,
        timezone: s("timezone")?,
        queue: s("queue")?,
        kind: s("kind")?.ok_or_else(|| AppError::bad_request("kind: required"))?,
        payload: m
            .get("payload")
            .filter(|v| !v.is_null())
            .map(Value::to_string),
        enabled,
    })
}

/// `POST /api/schedules` (operator).
pub async fn create(
    State(state): State<AppState>,
    Operator(caller): Operator,
    meta: Origin,
    AppJson(body): AppJson<Value>,
) -> Response {
    let mut target = String::from("schedule");
    let now = state.clock.now();
    let outcome = (|| {
        let new = parse(body)?;
        target = format!("schedule:{}", new.name);
        let s = Schedules::build(new, "api", now)?;
        let commit = state.scheduler.schedules.create(&s)?;
        Ok((
            StatusCode::CREATED,
            json!({"ok": true, "schedule": s.to_json(now)}),
            commit,
        ))
    })();
    audited(&state, meta, &caller, "schedule.create", target, outcome).await
}

/// `POST /api/schedules/{name}/run` (operator): enqueue its job now.
pub async fn run(
    State(state): State<AppState>,
    Operator(caller): Operator,
    meta: Origin,
    AppPath(name): AppPath<String>,
) -> Response {
    let now = state.clock.now();
    let outcome = state
        .scheduler
        .schedules
        .run_now(&state.jobs, &name, now)
        .map(|(j, commit)| {
            (
                StatusCode::OK,
                json!({"ok": true, "job": j.full_json()}),
                commit,
            )
        })
        .map_err(AppError::from);
    audited(
        &state,
        meta,
        &caller,
        "schedule.run",
        format!("schedule:{name}"),
        outcome,
    )
    .await
}

async fn set_paused(
    state: AppState,
    caller: crate::auth::Caller,
    meta: Origin,
    name: String,
    paused: bool,
) -> Response {
    let now = state.clock.now();
    let outcome = state
        .scheduler
        .schedules
        .set_paused(&name, paused)
        .map(|(s, commit)| {
            (
                StatusCode::OK,
                json!({"ok": true, "schedule": s.to_json(now)}),
                commit,
            )
        })
        .map_err(AppError::from);
    let action = if paused {
        "schedule.pause"
    } else {
        "schedule.resume"
    };
    audited(
        &state,
        meta,
        &caller,
        action,
        format!("schedule:{name}"),
        outcome,
    )
    .await
}

/// `POST /api/schedules/{name}/pause` (operator).
pub async fn pause(
    State(state): State<AppState>,
    Operator(caller): Operator,
    meta: Origin,
    AppPath(name): AppPath<String>,
) -> Response {
    set_paused(state, caller, meta, name, true).await
}

/// `POST /api/schedules/{name}/resume` (operator).
pub async fn resume(
    State(state): State<AppState>,
    Operator(caller): Operator,
    meta: Origin,
    AppPath(name): AppPath<String>,
) -> Response {
    set_paused(state, caller, meta, name, false).await
}

/// `DELETE /api/schedules/{name}` (operator). A schedule from `echopilot.toml` comes
/// back at the next start unless it is removed from the file too.
pub async fn delete(
    State(state): State<AppState>,
    Operator(caller): Operator,
    meta: Origin,
    AppPath(name): AppPath<String>,
) -> Response {
    let outcome = state
        .scheduler
        .schedules
        .delete(&name)
        .map(|(s, commit)| {
            (
                StatusCode::OK,
                json!({"ok": true, "deleted": s.name, "source": s.source}),
                commit,
            )
        })
        .map_err(AppError::from);
    audited(
        &state,
        meta,
        &caller,
        "schedule.delete",
        format!("schedule:{name}"),
        outcome,
    )
    .await
}
