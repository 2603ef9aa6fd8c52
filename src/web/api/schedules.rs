//! `/api/schedules`: cron schedules (list with their next three runs, create, run now,
//! pause, resume, delete).

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use serde_json::{Value, json};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::app::AppState;
use crate::jobs::ids::{JobKind, QueueName};
use crate::scheduler::schedules::{NewSchedule, Schedules};
use crate::web::access::Origin;
use crate::web::api::schemas::{JobAnswer, OkBody};
use crate::web::audit::audited;
use crate::web::auth::{Operator, Viewer};
use crate::web::error::Result;
use crate::web::extract::{AppJson, AppPath};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(delete))
        .routes(routes!(run))
        .routes(routes!(pause))
        .routes(routes!(resume))
}

/// `GET /api/schedules` (viewer).
#[utoipa::path(get, path = "/api/schedules", tag = "schedules",
    responses((status = 200, description = "every schedule with its next three runs", body = OkBody)),
    extensions(("x-required-role" = json!("viewer"))))]
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

/// The body of `POST /api/schedules`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateSchedule {
    #[schema(pattern = r"^[A-Za-z0-9._:-]{1,64}$")]
    name: String,
    /// 5 fields (`min hour dom mon dow`, Sunday 0 or 7) or 6 with seconds first.
    #[schema(example = "0 3 * * *")]
    cron: String,
    /// An IANA name (`Europe/Paris`) or a fixed offset (`+02:00`); default UTC.
    timezone: Option<String>,
    #[schema(value_type = Option<String>, pattern = r"^[A-Za-z0-9._:-]{1,64}$")]
    queue: Option<QueueName>,
    #[schema(value_type = String, pattern = r"^[A-Za-z0-9._:-]{1,64}$")]
    kind: JobKind,
    /// Any JSON: the payload of each job it enqueues.
    payload: Option<Value>,
    /// Default true.
    enabled: Option<bool>,
}

impl From<CreateSchedule> for NewSchedule {
    fn from(b: CreateSchedule) -> NewSchedule {
        NewSchedule {
            name: b.name,
            cron: b.cron,
            timezone: b.timezone,
            queue: b.queue.map(QueueName::into_string),
            kind: b.kind.into_string(),
            payload: b.payload.filter(|v| !v.is_null()).map(|v| v.to_string()),
            enabled: b.enabled,
        }
    }
}

/// `POST /api/schedules` (operator).
#[utoipa::path(post, path = "/api/schedules", tag = "schedules", request_body = CreateSchedule,
    responses((status = 201, body = OkBody), (status = 409, description = "a schedule of this name exists")),
    extensions(("x-required-role" = json!("operator"))))]
pub async fn create(
    State(state): State<AppState>,
    Operator(caller): Operator,
    origin: Origin,
    AppJson(body): AppJson<CreateSchedule>,
) -> Response {
    let target = format!("schedule:{}", body.name);
    let now = state.clock.now();
    let outcome = Schedules::build(body.into(), "api", now)
        .and_then(|s| state.scheduler.schedules.create(&s).map(|c| (s, c)))
        .map(|(s, commit)| {
            let body = json!({"ok": true, "schedule": s.to_json(now)});
            (StatusCode::CREATED, body, commit)
        })
        .map_err(Into::into);
    audited(&state, origin, &caller, "schedule.create", target, outcome).await
}

/// `POST /api/schedules/{name}/run` (operator): enqueue its job now.
#[utoipa::path(post, path = "/api/schedules/{name}/run", tag = "schedules",
    params(("name" = String, Path, description = "the schedule's name")),
    responses((status = 200, body = JobAnswer)),
    extensions(("x-required-role" = json!("operator"))))]
pub async fn run(
    State(state): State<AppState>,
    Operator(caller): Operator,
    origin: Origin,
    AppPath(name): AppPath<String>,
) -> Response {
    let now = state.clock.now();
    let outcome = state
        .scheduler
        .schedules
        .run_now(&state.jobs, &name, now)
        .map(|(j, commit)| {
            let body = json!({"ok": true, "job": j.full_json()});
            (StatusCode::OK, body, commit)
        })
        .map_err(Into::into);
    audited(
        &state,
        origin,
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
    origin: Origin,
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
        .map_err(Into::into);
    let action = if paused {
        "schedule.pause"
    } else {
        "schedule.resume"
    };
    audited(
        &state,
        origin,
        &caller,
        action,
        format!("schedule:{name}"),
        outcome,
    )
    .await
}

/// `POST /api/schedules/{name}/pause` (operator).
#[utoipa::path(post, path = "/api/schedules/{name}/pause", tag = "schedules",
    params(("name" = String, Path, description = "the schedule's name")),
    responses((status = 200, body = OkBody)),
    extensions(("x-required-role" = json!("operator"))))]
pub async fn pause(
    State(state): State<AppState>,
    Operator(caller): Operator,
    origin: Origin,
    AppPath(name): AppPath<String>,
) -> Response {
    set_paused(state, caller, origin, name, true).await
}

/// `POST /api/schedules/{name}/resume` (operator).
#[utoipa::path(post, path = "/api/schedules/{name}/resume", tag = "schedules",
    params(("name" = String, Path, description = "the schedule's name")),
    responses((status = 200, body = OkBody)),
    extensions(("x-required-role" = json!("operator"))))]
pub async fn resume(
    State(state): State<AppState>,
    Operator(caller): Operator,
    origin: Origin,
    AppPath(name): AppPath<String>,
) -> Response {
    set_paused(state, caller, origin, name, false).await
}

/// `DELETE /api/schedules/{name}` (operator). A schedule from `echopilot.toml` comes
/// back at the next start unless it is removed from the file too.
#[utoipa::path(delete, path = "/api/schedules/{name}", tag = "schedules",
    params(("name" = String, Path, description = "the schedule's name")),
    responses((status = 200, body = OkBody)),
    extensions(("x-required-role" = json!("operator"))))]
pub async fn delete(
    State(state): State<AppState>,
    Operator(caller): Operator,
    origin: Origin,
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
        .map_err(Into::into);
    audited(
        &state,
        origin,
        &caller,
        "schedule.delete",
        format!("schedule:{name}"),
        outcome,
    )
    .await
}
