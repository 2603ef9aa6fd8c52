//! Disaster-recovery snapshots: `GET /api/backups` (viewer) lists them,
//! `POST /api/backups` (admin) takes and verifies one now, and
//! `POST /api/backups/{name}/verify` (admin) verifies one again. Every call that
//! changes something is audited by the runner (`backup.create`, `backup.verify`, …).

use axum::extract::State;
use axum::http::StatusCode;
use serde_json::{Value, json};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::app::AppState;
use crate::app::backup::{Asker, RunError, Runner};
use crate::audit::NewEvent;
use crate::web::access::Origin;
use crate::web::api::schemas::OkBody;
use crate::web::auth::{Admin, Viewer};
use crate::web::error::{AppError, Result};
use crate::web::extract::{AppJson, AppPath};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(verify))
}

fn asker(caller: crate::auth::Caller, origin: Origin) -> Asker {
    Asker {
        event: NewEvent {
            request_id: origin.request_id,
            ip: Some(origin.ip),
            actor: Some(caller),
            ..NewEvent::default()
        },
    }
}

fn answer(r: std::result::Result<Value, RunError>, key: &str) -> Result<AppJson<Value>> {
    match r {
        Ok(v) => Ok(AppJson(json!({"ok": true, key: v}))),
        Err(e) => Err(AppError::new(
            StatusCode::from_u16(e.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            e.message,
        )),
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
        (status = 500, description = "the snapshot could not be taken or failed its check")),
    extensions(("x-required-role" = json!("admin"))))]
pub async fn create(
    State(state): State<AppState>,
    Admin(caller): Admin,
    origin: Origin,
) -> Result<(StatusCode, AppJson<Value>)> {
    let r = Runner::new(&state).take(&asker(caller, origin)).await;
    answer(r, "backup").map(|j| (StatusCode::CREATED, j))
}

/// `POST /api/backups/{name}/verify` (admin).
#[utoipa::path(post, path = "/api/backups/{name}/verify", tag = "backups",
    params(("name" = String, Path, description = "a snapshot's file name in BACKUP_DIR")),
    responses((status = 200, description = "the snapshot's checks passed", body = OkBody),
        (status = 400, description = "not a snapshot name"),
        (status = 404, description = "no such snapshot"),
        (status = 422, description = "the snapshot is damaged")),
    extensions(("x-required-role" = json!("admin"))))]
pub async fn verify(
    State(state): State<AppState>,
    Admin(caller): Admin,
    origin: Origin,
    AppPath(name): AppPath<String>,
) -> Result<AppJson<Value>> {
    let r = Runner::new(&state)
        .verify(&asker(caller, origin), &name)
        .await;
    answer(r, "verified")
}
