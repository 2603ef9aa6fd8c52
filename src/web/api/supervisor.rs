//! `GET /api/supervisor-status`: the background tasks, and who is asking (the
//! runbook's check after rotating a key).

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use serde_json::{Value, json};

use crate::app::AppState;
use crate::web::auth::Viewer;
use crate::web::error::Result;
use crate::web::extract::AppJson;

pub fn router() -> Router<AppState> {
    Router::new().route("/api/supervisor-status", get(show))
}

pub async fn show(State(state): State<AppState>, Viewer(caller): Viewer) -> Result<AppJson<Value>> {
    Ok(AppJson(json!({
        "ok": true,
        "tasks": state.supervisor.tasks(),
        "caller": {"key_id": caller.key_id, "role": caller.role},
    })))
}
