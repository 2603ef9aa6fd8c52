//! The dashboards: v2 ("Boss Mode") at `/dashboard` and the legacy `/dashboard/v1`,
//! server-rendered with askama, working without JavaScript. One file per page: its
//! template struct and its handlers; a page reads through the domains' own methods and
//! its buttons call the JSON API's handlers, so a click is the same operation and the
//! same audit event as the API call.
//!
//! Adding a page: a file with `pub fn router()`, a `.merge` below, a line in `view::NAV`.

mod alerts;
mod assets;
mod audit;
mod backups;
mod charts;
mod flags;
mod incidents;
mod jobs;
mod login;
mod overview;
mod payments;
mod schedules;
pub mod session;
mod traffic;
mod v1;
mod view;

use axum::Router;
use axum::extract::Request;
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::Response;

use crate::app::AppState;
use crate::ratelimit::Class;
use crate::web::access::ClassLayer;

pub use session::SessionKey;

/// Every dashboard route, with the security headers, in the general rate-limit class.
/// Plain axum routes: HTML pages are not part of the OpenAPI document.
pub fn router() -> Router<AppState> {
    Router::new()
        .merge(login::router())
        .merge(overview::router())
        .merge(jobs::router())
        .merge(schedules::router())
        .merge(audit::router())
        .merge(payments::router())
        .merge(flags::router())
        .merge(incidents::router())
        .merge(backups::router())
        .merge(alerts::router())
        .merge(v1::router())
        .merge(assets::router())
        .route_layer(ClassLayer(Class::General))
        .layer(axum::middleware::from_fn(security_headers))
}

/// No script but our own file, no style but our own sheet, nothing from any other
/// origin, no framing; pages are never cached (assets set their own caching).
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

async fn security_headers(req: Request, next: Next) -> Response {
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    resp
}
