//! `POST /api/cache/clear` (operator): the runbook's "Clear LRU caches if stale". Drops
//! the shared status figures (`web::cache`), so the next call renders them anew.

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
use crate::web::auth::Operator;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(clear))
}

/// `POST /api/cache/clear` (operator): `cleared` names the figures that were held.
#[utoipa::path(post, path = "/api/cache/clear", tag = "cache",
    responses((status = 200, body = OkBody)),
    extensions(("x-required-role" = json!("operator"))))]
pub async fn clear(
    State(state): State<AppState>,
    Operator(caller): Operator,
    origin: Origin,
) -> Response {
    let cleared: Vec<&str> = state
        .status_cache
        .clear()
        .into_iter()
        .map(|f| f.as_str())
        .collect();
    let target = format!("cache cleared={}", cleared.len());
    let body = json!({"ok": true, "cleared": cleared});
    let outcome = Ok((StatusCode::OK, body, Commit::done()));
    audited(&state, origin, &caller, "cache.clear", target, outcome).await
}
