//! `/api/maintenance`: plan a window (operator), list windows (viewer) with the one in
//! force, the held alert messages and the runbook's suggested low-traffic window.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use serde_json::{Value, json};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::app::AppState;
use crate::clock::rfc3339;
use crate::maintenance::{Active, NewWindow};
use crate::web::access::Origin;
use crate::web::api::schemas::OkBody;
use crate::web::audit::audited;
use crate::web::auth::{Operator, Viewer};
use crate::web::error::{AppError, ErrorBody, Result};
use crate::web::extract::{AppJson, AppPath};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(end))
}

/// The body of `POST /api/maintenance`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PlanWindow {
    /// RFC 3339; now when absent. Not in the past.
    #[schema(format = DateTime)]
    start: Option<String>,
    /// RFC 3339; at most 7 days after the start.
    #[schema(format = DateTime)]
    end: String,
    reason: String,
}

impl From<PlanWindow> for NewWindow {
    fn from(b: PlanWindow) -> NewWindow {
        NewWindow {
            start: b.start,
            end: b.end,
            reason: b.reason,
        }
    }
}

/// The status summary's `maintenance` field.
pub fn active_json(a: &Active) -> Value {
    json!({"active": true, "until": rfc3339(a.until), "reason": a.reason})
}

/// `GET /api/maintenance` (viewer).
#[utoipa::path(get, path = "/api/maintenance", tag = "maintenance",
    responses((status = 200, description = "windows, the active one, held alert messages, the suggested next window", body = OkBody)),
    extensions(("x-required-role" = json!("viewer"))))]
pub async fn list(State(state): State<AppState>, _: Viewer) -> Result<AppJson<Value>> {
    let m = &state.maintenance;
    let now = m.now();
    let windows: Vec<Value> = m.list()?.iter().map(|w| w.to_json(now)).collect();
    let (start, end) = m.suggested();
    Ok(AppJson(json!({
        "ok": true,
        "active": m.active_at(now)?.as_ref().map(active_json),
        "held_alert_messages": m.held_count()?,
        "suggested": {"start": rfc3339(start), "end": rfc3339(end)},
        "windows": windows,
    })))
}

/// `POST /api/maintenance` (operator) `{"start", "end", "reason"}` (RFC 3339; no
/// `start` means now).
#[utoipa::path(post, path = "/api/maintenance", tag = "maintenance", request_body = PlanWindow,
    responses((status = 201, description = "the window", body = OkBody)),
    extensions(("x-required-role" = json!("operator"))))]
pub async fn create(
    State(state): State<AppState>,
    Operator(caller): Operator,
    meta: Origin,
    // Taken as a result so a bad body is audited too.
    body: std::result::Result<AppJson<PlanWindow>, AppError>,
) -> Response {
    let mut target = "maintenance".to_string();
    let outcome = (|| {
        let AppJson(b) = body?;
        let (w, commit) = state.maintenance.create(b.into(), &caller.key_id)?;
        target = format!("maintenance:{}", w.id);
        let now = state.maintenance.now();
        Ok((
            StatusCode::CREATED,
            json!({"ok": true, "window": w.to_json(now)}),
            commit,
        ))
    })();
    audited(&state, meta, &caller, "maintenance.create", target, outcome).await
}

/// `POST /api/maintenance/{id}/end` (operator): the work finished early (or a planned
/// window is called off): from now on minutes count again and alerts are sent.
#[utoipa::path(post, path = "/api/maintenance/{id}/end", tag = "maintenance",
    params(("id" = String, Path, description = "the window's id")),
    responses(
        (status = 200, description = "the window, ended or cancelled", body = OkBody),
        (status = 409, description = "the window is over already", body = ErrorBody),
    ),
    extensions(("x-required-role" = json!("operator"))))]
pub async fn end(
    State(state): State<AppState>,
    Operator(caller): Operator,
    meta: Origin,
    AppPath(id): AppPath<String>,
) -> Response {
    let outcome = state
        .maintenance
        .end(&id)
        .map(|(w, commit)| {
            let now = state.maintenance.now();
            (
                StatusCode::OK,
                json!({"ok": true, "window": w.to_json(now)}),
                commit,
            )
        })
        .map_err(AppError::from);
    audited(
        &state,
        meta,
        &caller,
        "maintenance.end",
        format!("maintenance:{id}"),
        outcome,
    )
    .await
}
