//! `POST /api/ratelimits/clear` (admin): forget every rate-limit count and failed-key
//! block now, without a restart (the runbook's "Clear Rate Limits").

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

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(clear))
}

/// Answers how many addresses were blocked for failed keys before the clear.
#[utoipa::path(post, path = "/api/ratelimits/clear", tag = "ratelimits",
    responses((status = 200, body = OkBody)),
    extensions(("x-required-role" = json!("admin"))))]
pub async fn clear(
    State(state): State<AppState>,
    Admin(caller): Admin,
    origin: Origin,
) -> Response {
    let unblocked = state.access.limits.clear();
    let body = json!({"ok": true, "unblocked_addresses": unblocked});
    // The limits live in memory only: nothing to make durable but the audit event.
    let outcome = Ok((StatusCode::OK, body, Commit::done()));
    let target = format!("unblocked:{unblocked}");
    audited(&state, origin, &caller, "ratelimits.clear", target, outcome).await
}
