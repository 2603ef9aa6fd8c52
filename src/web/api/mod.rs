//! The JSON API: one module per resource, each with its own `router()`.

pub mod jobs;
pub mod scheduler;
pub mod schedules;
pub mod status;

use axum::Router;

use crate::app::AppState;

/// Every `/api` route.
pub fn router() -> Router<AppState> {
    Router::new()
        .merge(status::router())
        .merge(jobs::router())
        .merge(scheduler::router())
        .merge(schedules::router())
}
