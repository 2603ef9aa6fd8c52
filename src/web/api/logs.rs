//! `POST /api/logs/rotate` (admin): move `audit.ndjson` and `app.log` into
//! `logs/archive/YYYYMMDD/` now; the next line starts fresh files.

use axum::Router;
use axum::extract::State;
use axum::routing::post;
use serde_json::{Value, json};

use crate::app::AppState;
use crate::audit::NewEvent;
use crate::web::access::Origin;
use crate::web::auth::Admin;
use crate::web::error::{AppError, Result};
use crate::web::extract::AppJson;

pub fn router() -> Router<AppState> {
    Router::new().route("/api/logs/rotate", post(rotate))
}

pub async fn rotate(
    State(state): State<AppState>,
    Admin(caller): Admin,
    origin: Origin,
) -> Result<AppJson<Value>> {
    let rotated = state.rotate_logs().await;
    let home = &state.config.home;
    let (ok, error, archived) = match &rotated {
        Ok(files) => (
            true,
            None,
            files
                .iter()
                .map(|p| p.strip_prefix(home).unwrap_or(p).display().to_string())
                .collect::<Vec<_>>(),
        ),
        Err(e) => (false, Some(e.to_string()), Vec::new()),
    };
    state
        .audit
        .record(NewEvent {
            request_id: origin.request_id,
            ip: Some(origin.ip),
            actor: Some(caller),
            action: "logs.rotate".into(),
            target: archived.join(","),
            ok,
            status: if ok { 200 } else { 500 },
            error: error.clone(),
            ..NewEvent::default()
        })
        .await?;
    match rotated {
        Ok(_) => Ok(AppJson(json!({"ok": true, "archived": archived}))),
        Err(e) => Err(AppError::internal(
            anyhow::Error::new(e).context("while rotating logs"),
        )),
    }
}
