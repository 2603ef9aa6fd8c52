//! The SLO's measuring middleware: times every response and counts it under its matched
//! route pattern (`/api/job/{id}`, not the raw path, so labels stay few), or
//! [`UNMATCHED`] for requests no route took.

use std::time::Instant;

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::middleware::{self, Next};
use axum::response::Response;

use crate::slo::{Slo, UNMATCHED};

/// Wrap `app` (already carrying [`crate::app::layers`]) so every response is counted. As
/// the outermost layer it sees the final status, including 408s and 413s from the layers.
/// `Router::layer` wraps each route, so the route's `MatchedPath` is known here.
pub fn layer(app: Router, slo: &Slo) -> Router {
    app.layer(middleware::from_fn_with_state(slo.clone(), measure))
}

/// The middleware itself.
pub async fn measure(State(slo): State<Slo>, req: Request, next: Next) -> Response {
    let start = Instant::now();
    let route = req.extensions().get::<MatchedPath>().cloned();
    let resp = next.run(req).await;
    let route = route.as_ref().map_or(UNMATCHED, |m| m.as_str());
    slo.record_request(route, resp.status().as_u16(), start.elapsed());
    resp
}
