//! `GET /api/supervisor-status`: the background tasks, and who is asking (the
//! runbook's check after rotating a key).

use axum::extract::State;
use serde_json::{Value, json};

use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::app::AppState;
use crate::web::api::schemas::OkBody;
use crate::web::auth::Viewer;
use crate::web::error::Result;
use crate::web::extract::AppJson;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(show))
}

#[utoipa::path(get, path = "/api/supervisor-status", tag = "supervisor",
    responses((status = 200, body = OkBody)),
    extensions(("x-required-role" = json!("viewer"))))]
pub async fn show(State(state): State<AppState>, Viewer(caller): Viewer) -> Result<AppJson<Value>> {
    Ok(AppJson(json!({
        "ok": true,
        "tasks": state.supervisor.tasks(),
        "caller": {"key_id": caller.key_id, "role": caller.role},
    })))
}
