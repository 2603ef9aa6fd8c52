//! The JSON API: one module per resource, each with its own `router()`.

pub mod alerts;
pub mod metrics;
pub mod slo;
pub mod status;

use axum::Router;

use crate::app::AppState;

/// Every `/api` route.
pub fn router() -> Router<AppState> {
    Router::new()
        .merge(status::router())
        .merge(slo::router())
        .merge(alerts::router())
        .merge(metrics::router())
}
