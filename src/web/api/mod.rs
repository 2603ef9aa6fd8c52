//! The JSON API: one module per resource, each with its own `router()`.

pub mod alerts;
pub mod audit;
pub mod backups;
pub mod db;
pub mod jobs;
pub mod logs;
pub mod metrics;
pub mod scheduler;
pub mod schedules;
pub mod slo;
pub mod status;
pub mod supervisor;

use axum::Router;

use crate::app::AppState;

/// Every `/api` route.
pub fn router() -> Router<AppState> {
    Router::new()
        .merge(status::router())
        .merge(db::router())
        .merge(audit::router())
        .merge(supervisor::router())
        .merge(logs::router())
        .merge(slo::router())
        .merge(alerts::router())
        .merge(metrics::router())
        .merge(jobs::router())
        .merge(scheduler::router())
        .merge(schedules::router())
        .merge(backups::router())
}
