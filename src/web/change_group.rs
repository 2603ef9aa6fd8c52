//! Each mutating request runs as one store change group, so a snapshot taken meanwhile
//! holds all of its writes (a job and the audit event of its creation) or none.

use axum::extract::Request;
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;

use crate::app::AppState;

/// Requests that take snapshots themselves: inside a group they would wait for their
/// own group to end (the API's, and the dashboard's buttons that call it).
const SNAPSHOT_ROUTES: [&str; 2] = ["/api/backups", "/dashboard/backups"];

pub async fn run(state: &AppState, req: Request, next: Next) -> Response {
    let reads = matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    let path = req.uri().path();
    if reads || SNAPSHOT_ROUTES.iter().any(|r| path.starts_with(r)) {
        return next.run(req).await;
    }
    state.store.grouped(next.run(req)).await
}
