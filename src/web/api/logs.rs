//! `POST /api/logs/rotate` (admin): move `audit.ndjson` and `app.log` into
//! `logs/archive/YYYYMMDD/` now; the next line starts fresh files.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::json;

use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::app::AppState;
use crate::store::Commit;
use crate::web::access::Origin;
use crate::web::api::schemas::OkBody;
use crate::web::audit::audited;
use crate::web::auth::Admin;
use crate::web::error::AppError;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(rotate))
}

#[utoipa::path(post, path = "/api/logs/rotate", tag = "logs",
    responses((status = 200, body = OkBody)),
    extensions(("x-required-role" = json!("admin"))))]
pub async fn rotate(
    State(state): State<AppState>,
    Admin(caller): Admin,
    origin: Origin,
) -> Response {
    let home = &state.config.home;
    let rotated = state.rotate_logs().await;
    let archived: Vec<String> = match &rotated {
        Ok(files) => files
            .iter()
            .map(|p| p.strip_prefix(home).unwrap_or(p).display().to_string())
            .collect(),
        Err(_) => Vec::new(),
    };
    let target = archived.join(",");
    let outcome = rotated
        .map(|_| {
            let body = json!({"ok": true, "archived": archived});
            // Moving files changes nothing in the store.
            (StatusCode::OK, body, Commit::done())
        })
        .map_err(|e| AppError::internal(anyhow::Error::new(e).context("while rotating logs")));
    audited(&state, origin, &caller, "logs.rotate", target, outcome).await
}
