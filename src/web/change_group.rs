//! Each mutating request runs as one store change group, so a snapshot taken meanwhile
//! holds all of its writes (a job and the audit event of its creation) or none.

use axum::extract::{Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;

use crate::app::AppState;

/// Requests that take snapshots themselves: inside a group they would wait for their
/// own group to end.
const SNAPSHOT_ROUTES: &str = "/api/backups";

pub async fn layer(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let reads = matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    if reads || req.uri().path().starts_with(SNAPSHOT_ROUTES) {
        return next.run(req).await;
    }
    state.store.grouped(next.run(req)).await
}
