//! `GET /metrics`: Prometheus text. Public unless `METRICS_KEY_REQUIRED=true`, then a
//! viewer key is needed.

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::http::request::Parts;
use axum::response::IntoResponse;
use axum::routing::get;

use crate::app::AppState;
use crate::auth::Need;
use crate::error::Result;
use crate::slo::metrics;
use crate::web::auth::require;

pub fn router() -> Router<AppState> {
    Router::new().route("/metrics", get(show))
}

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
