//! Disaster-recovery snapshots: `GET /api/backups` (viewer) lists them,
//! `POST /api/backups` (admin) takes and verifies one now, and
//! `POST /api/backups/{name}/verify` (admin) verifies one again. Both changes end in
//! `audited()` (`backup.create`, `backup.verify`); the runner audits a run's later
//! steps (`backup.verify`, `backup.prune`, `backup.copy`) under the same request id.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Value, json};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::app::AppState;
use crate::app::backup::{Asker, Runner};
use crate::audit::NewEvent;
use crate::auth::Caller;
use crate::store::Commit;
use crate::web::access::Origin;
use crate::web::api::schemas::OkBody;
use crate::web::audit::audited;
use crate::web::auth::{Admin, Viewer};
use crate::web::error::{AppError, ErrorBody, Result};
use crate::web::extract::{AppJson, AppPath};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(verify))
}

fn asker(caller: &Caller, origin: &Origin) -> Asker {
    Asker {
        event: NewEvent {
            request_id: origin.request_id.clone(),
            ip: Some(origin.ip.clone()),
            actor: Some(caller.clone()),
            ..NewEvent::default()
        },
    }
}

/// `GET /api/backups` (viewer).
#[utoipa::path(get, path = "/api/backups", tag = "backups",
    responses((status = 200, description = "the snapshots in BACKUP_DIR, newest first, and their ages", body = OkBody)),
    extensions(("x-required-role" = json!("viewer"))))]
pub async fn list(State(state): State<AppState>, _v: Viewer) -> Result<AppJson<Value>> {
    let backups = state.backups.clone();
    let entries = tokio::task::spawn_blocking(move || backups.list())
        .await
        .map_err(AppError::internal)?
        .map_err(|e| AppError::internal(anyhow::anyhow!("{e}")))?;
    let (age, verified_age) = state.backups.ages(state.clock.now());
    Ok(AppJson(json!({
        "ok": true,
        "dir": state.backups.dir().display().to_string(),
        "keep": state.backups.settings().keep,
        "last_backup_age_secs": age,
        "last_verified_age_secs": verified_age,
        "backups": entries.iter().rev().map(|e| e.to_json()).collect::<Vec<_>>(),
    })))
}

/// `POST /api/backups` (admin): take a snapshot now and verify it.
#[utoipa::path(post, path = "/api/backups", tag = "backups",
    responses((status = 201, description = "the snapshot taken and verified", body = OkBody),
        (status = 409, description = "a snapshot is being taken already", body = ErrorBody),
        (status = 500, description = "the snapshot could not be taken or failed its check", body = ErrorBody),
        (status = 503, description = "out of disk space for the snapshot", body = ErrorBody)),
    extensions(("x-required-role" = json!("admin"))))]
pub async fn create(
    State(state): State<AppState>,
    Admin(caller): Admin,
    origin: Origin,
) -> Response {
    let r = Runner::new(&state).take(&asker(&caller, &origin)).await;
    let target = r
        .as_ref()
        .ok()
        .and_then(|v| v["name"].as_str())
        .unwrap_or_default()
        .to_string();
    let outcome = r
        .map(|v| {
            (
                StatusCode::CREATED,
                json!({"ok": true, "backup": v}),
                Commit::done(),
            )
        })
        .map_err(AppError::from);
    audited(&state, origin, &caller, "backup.create", target, outcome).await
}

/// `POST /api/backups/{name}/verify` (admin).
#[utoipa::path(post, path = "/api/backups/{name}/verify", tag = "backups",
    params(("name" = String, Path, description = "a snapshot's file name in BACKUP_DIR")),
    responses((status = 200, description = "the snapshot's checks passed", body = OkBody),
        (status = 400, description = "not a snapshot name", body = ErrorBody),
        (status = 404, description = "no such snapshot", body = ErrorBody),
        (status = 422, description = "the snapshot is damaged", body = ErrorBody),
        (status = 503, description = "out of disk space for the scratch store", body = ErrorBody)),
    extensions(("x-required-role" = json!("admin"))))]
pub async fn verify(
    State(state): State<AppState>,
    Admin(caller): Admin,
    origin: Origin,
    AppPath(name): AppPath<String>,
) -> Response {
    let outcome = Runner::new(&state)
        .verify(&name)
        .await
        .map(|v| {
            (
                StatusCode::OK,
                json!({"ok": true, "verified": v}),
                Commit::done(),
            )
        })
        .map_err(AppError::from);
    audited(&state, origin, &caller, "backup.verify", name, outcome).await
}
