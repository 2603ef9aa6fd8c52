//! `GET /metrics`: Prometheus text. Public unless `METRICS_KEY_REQUIRED=true`, then a
//! viewer key is needed.

use axum::extract::State;
use axum::http::request::Parts;

use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::app::AppState;
use crate::auth::Need;
use crate::slo::metrics;
use crate::web::auth::require;
use crate::web::cache::{Figure, Rendered};
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
pub async fn show(State(state): State<AppState>, parts: Parts) -> Result<Rendered> {
    if state.config.metrics_key_required {
        require(&parts, &state, Need::Viewer)?;
    }
    state
        .status_cache
        .get(Figure::Metrics, || {
            let stripe = state.payments.counters();
            let text = metrics::render(&metrics::Sources {
                slo: &state.slo,
                alerts: &state.alerts,
                audit: &state.audit,
                uptime: state.uptime(),
                webhook_events: &stripe.events,
                signature_failures: &stripe.signature_failures,
            })?;
            Ok(Rendered {
                content_type: metrics::CONTENT_TYPE,
                body: text.into(),
            })
        })
        .await
}
