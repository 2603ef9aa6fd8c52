//! `/api/maintenance`: plan a window (operator), list windows (viewer) with the one in
//! force, the held alert messages and the runbook's suggested low-traffic window.

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use serde_json::{Value, json};

use crate::app::AppState;
use crate::clock::rfc3339;
use crate::error::{AppError, Result};
use crate::maintenance::{Active, MaintenanceError, NewWindow};
use crate::web::access::Origin;
use crate::web::api::flags::audited_change;
use crate::web::auth::{Operator, Viewer};
use crate::web::extract::{AppJson, AppPath};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/maintenance", get(list).post(create))
        .route("/api/maintenance/{id}/end", post(end))
}

impl From<MaintenanceError> for AppError {
    fn from(e: MaintenanceError) -> Self {
        match e {
            MaintenanceError::NotFound(_) => AppError::not_found(e.to_string()),
            MaintenanceError::Invalid(m) => AppError::bad_request(m),
            MaintenanceError::Conflict(m) => AppError::conflict(m),
            MaintenanceError::Store(s) => s.into(),
        }
    }
}

/// The status summary's `maintenance` field.
pub fn active_json(a: &Active) -> Value {
    json!({"active": true, "until": rfc3339(a.until), "reason": a.reason})
}

/// `GET /api/maintenance` (viewer).
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
pub async fn create(
    State(state): State<AppState>,
    Operator(caller): Operator,
    meta: Origin,
    body: std::result::Result<AppJson<NewWindow>, AppError>,
) -> Response {
    let mut target = "maintenance".to_string();
    let outcome = (|| {
        let AppJson(b) = body?;
        let (w, commit) = state.maintenance.create(b, &caller.key_id)?;
        target = format!("maintenance:{}", w.id);
        let now = state.maintenance.now();
        Ok((
            StatusCode::CREATED,
            json!({"ok": true, "window": w.to_json(now)}),
            commit,
        ))
    })();
    audited_change(&state, meta, &caller, "maintenance.create", target, outcome).await
}

/// `POST /api/maintenance/{id}/end` (operator): the work finished early (or a planned
/// window is called off): from now on minutes count again and alerts are sent.
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
    audited_change(
        &state,
        meta,
        &caller,
        "maintenance.end",
        format!("maintenance:{id}"),
        outcome,
    )
    .await
}
