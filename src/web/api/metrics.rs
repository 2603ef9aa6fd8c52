//! `GET /metrics`: Prometheus text. Public unless `METRICS_KEY_REQUIRED=true`, then a
//! viewer key is needed.

use axum::extract::State;
use axum::http::header;
use axum::http::request::Parts;
use axum::response::IntoResponse;

use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::app::AppState;
use crate::auth::Need;
use crate::slo::metrics;
use crate::web::auth::require;
use crate::web::error::ErrorBody;
use crate::web::error::Result;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(show))
}

#[utoipa::path(get, path = "/metrics", tag = "metrics",
    responses(
        (status = 200, description = "Prometheus text format", content_type = "text/plain; version=0.0.4; charset=utf-8", body = String),
        (status = 401, description = "METRICS_KEY_REQUIRED=true and no or a wrong key", body = ErrorBody),
        (status = 403, description = "METRICS_KEY_REQUIRED=true and a key without a read role", body = ErrorBody),
    ),
    extensions(("x-required-role" = json!("public"))))]
pub async fn show(State(state): State<AppState>, parts: Parts) -> Result<impl IntoResponse> {
    if state.config.metrics_key_required {
        require(&parts, &state, Need::Viewer)?;
    }
    let text = metrics::render(&metrics::Sources {
        slo: &state.slo,
        alerts: &state.alerts,
        audit: &state.audit,
        uptime: state.uptime(),
    })?;
    Ok(([(header::CONTENT_TYPE, metrics::CONTENT_TYPE)], text))
}
