//! The JSON API: one module per resource, each with its own `router()` of
//! `#[utoipa::path]` handlers, so the OpenAPI document is built with the routes.
//! A resource joins a route class here: general unless it says otherwise.

pub mod alerts;
pub mod audit;
pub mod backups;
pub mod cache;
pub mod db;
pub mod flags;
pub mod incidents;
pub mod jobs;
pub mod logs;
pub mod maintenance;
pub mod markers;
pub mod metrics;
pub mod payments;
pub mod ratelimits;
pub mod scheduler;
pub mod schedules;
pub mod schemas;
pub mod slo;
pub mod status;
pub mod supervisor;
pub mod workers;

use std::sync::Arc;

use axum::{Extension, Router};
use serde_json::Value;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::app::AppState;
use crate::ratelimit::Class;
use crate::web::access::limited;
use crate::web::openapi::{self, ApiDoc, OpenApiJson};

/// Every route, with its OpenAPI entry and its rate-limit class.
fn routes() -> OpenApiRouter<AppState> {
    let general = OpenApiRouter::new()
        .merge(db::router())
        .merge(audit::router())
        .merge(supervisor::router())
        .merge(logs::router())
        .merge(slo::router())
        .merge(alerts::router())
        .merge(jobs::router())
        .merge(scheduler::router())
        .merge(schedules::router())
        .merge(flags::router())
        .merge(incidents::router())
        .merge(maintenance::router())
        .merge(markers::router())
        .merge(payments::router())
        .merge(backups::router())
        .merge(ratelimits::router())
        .merge(cache::router())
        .routes(routes!(openapi::show));
    // Monitoring must get through: never limited.
    let exempt = OpenApiRouter::new()
        .merge(status::router())
        .merge(metrics::router());
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(limited(Class::General, general))
        .merge(limited(Class::Worker, workers::router()))
        .merge(limited(Class::Webhook, payments::webhook_router()))
        .merge(exempt)
}

/// Every `/api` route (and `/metrics`), serving the document at `/api/openapi.json`.
pub fn router() -> Router<AppState> {
    let (router, doc) = routes().split_for_parts();
    let json = OpenApiJson(Arc::new(finish(doc).to_string()));
    router.layer(Extension(json))
}

/// The OpenAPI document, as `/api/openapi.json` serves it.
pub fn document() -> Value {
    finish(routes().into_openapi())
}

fn finish(doc: utoipa::openapi::OpenApi) -> Value {
    let mut v = openapi::finish(doc);
    jobs::refine_document(&mut v);
    v
}
