//! Disaster-recovery snapshots: `GET /api/backups` (viewer) lists them,
//! `POST /api/backups` (admin) takes and verifies one now, and
//! `POST /api/backups/{name}/verify` (admin) verifies one again. Every call that
//! changes something is audited by the runner (`backup.create`, `backup.verify`, …).

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use serde_json::{Value, json};

use crate::app::AppState;
use crate::audit::NewEvent;
use crate::error::{AppError, Result};
use crate::glue_backup::{Asker, RunError, Runner};
use crate::web::access::Origin;
use crate::web::auth::{Admin, Viewer};
use crate::web::extract::AppJson;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/backups", get(list).post(create))
        .route("/api/backups/{name}/verify", post(verify))
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

pub async fn create(
    State(state): State<AppState>,
    Admin(caller): Admin,
    origin: Origin,
) -> Result<(StatusCode, AppJson<Value>)> {
    let r = Runner::new(&state).take(&asker(caller, origin)).await;
    answer(r, "backup").map(|j| (StatusCode::CREATED, j))
}

pub async fn verify(
    State(state): State<AppState>,
    Admin(caller): Admin,
    origin: Origin,
    Path(name): Path<String>,
) -> Result<AppJson<Value>> {
    let r = Runner::new(&state)
        .verify(&asker(caller, origin), &name)
        .await;
    answer(r, "verified")
}
