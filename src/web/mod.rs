//! HTTP: the API, the dashboards and the layers around them. Only this module knows
//! HTTP; domains take and return plain types.

pub mod access;
pub mod api;
pub mod audit;
pub mod auth;
pub mod cache;
pub mod change_group;
pub mod dashboard;
pub mod error;
pub mod extract;
pub mod listener;
pub mod measure;
pub mod openapi;
pub mod request_id;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::app::AppState;
use crate::web::error::{AppError, ErrorMessage};

/// What runs between the layers and the router, in this order: the access guard (who
/// the client is; audit events for 401 and 403), the `/dashboard` redirect while
/// `dashboard.v2` is off, and a mutating request's change group. One middleware, so a
/// request boxes one future and clones the router once here, not three times.
pub async fn front(State(state): State<AppState>, req: Request, next: Next) -> Response {
    access::guard(&state, req, |req| async {
        match api::flags::dashboard_redirect(&state, &req) {
            Some(redirect) => redirect,
            None => change_group::run(&state, req, next).await,
        }
    })
    .await
}

/// Unknown routes: our JSON 404 under `/api`, a plain one elsewhere.
pub async fn fallback(req: Request) -> Response {
    let path = req.uri().path();
    if is_api(path) {
        AppError::not_found(format!("no such route: {} {}", req.method(), path)).into_response()
    } else {
        (StatusCode::NOT_FOUND, "not found\n").into_response()
    }
}

fn is_api(path: &str) -> bool {
    path == "/api" || path.starts_with("/api/")
}

/// Errors produced by layers rather than handlers (413 from the body limit, 408 from the
/// timeout, 405 from the router) come with empty or plain bodies; under `/api` they are
/// rewritten into our JSON shape. The state is `MAX_BODY_BYTES`, which a 413 names.
pub async fn json_errors(
    State(max_body_bytes): State<usize>,
    req: Request,
    next: Next,
) -> Response {
    let api = is_api(req.uri().path());
    let resp = next.run(req).await;
    let status = resp.status();
    if !api || !(status.is_client_error() || status.is_server_error()) {
        return resp;
    }
    let is_json = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if is_json || resp.extensions().get::<ErrorMessage>().is_some() {
        return resp;
    }
    let message = match status {
        StatusCode::PAYLOAD_TOO_LARGE => {
            format!("request body too large: the limit is {max_body_bytes} bytes (MAX_BODY_BYTES)")
        }
        StatusCode::REQUEST_TIMEOUT => "request timed out".to_string(),
        StatusCode::METHOD_NOT_ALLOWED => "method not allowed on this route".to_string(),
        s => s
            .canonical_reason()
            .unwrap_or("request failed")
            .to_ascii_lowercase(),
    };
    let (mut parts, _) = resp.into_parts();
    let mut fresh = AppError::new(status, message).into_response();
    // Keep headers such as `Allow` and `Retry-After`, but not the old body's length/type.
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.remove(header::CONTENT_TYPE);
    for (k, v) in parts.headers.iter() {
        fresh.headers_mut().entry(k).or_insert(v.clone());
    }
    let (fresh_parts, body): (_, Body) = fresh.into_parts();
    parts.headers = fresh_parts.headers;
    parts.extensions.extend(fresh_parts.extensions);
    Response::from_parts(parts, body)
}
