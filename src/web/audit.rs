//! The audit side of every mutating API call: [`audited`] records the call's outcome
//! (failures too, `"ok": false`) and makes the change and its event durable together,
//! then answers. Every mutating handler ends in it.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::app::AppState;
use crate::audit::NewEvent;
use crate::auth::Caller;
use crate::web::access::Origin;
use crate::web::error::{AppError, Result};
use crate::web::extract::AppJson;

/// Audit a change by `caller` (`action` on `target`, e.g. `"job.retry"`, `"job:<id>"`),
/// then answer with `outcome`: its status and body, or its error. The change and its
/// audit event share one group commit; nothing is answered before both are durable.
pub async fn audited<T: Serialize>(
    state: &AppState,
    origin: Origin,
    caller: &Caller,
    action: &str,
    target: String,
    outcome: Result<(StatusCode, T)>,
) -> Response {
    let (ok, status, error) = match &outcome {
        Ok((s, _)) => (true, s.as_u16(), None),
        Err(e) => (false, e.status.as_u16(), Some(e.message.clone())),
    };
    let event = NewEvent {
        request_id: origin.request_id,
        actor: Some(caller.clone()),
        action: action.to_string(),
        target,
        ip: Some(origin.ip),
        ok,
        status,
        error,
        ..NewEvent::default()
    };
    // The change's commit is taken first, then the audit record syncs: that one sync
    // covers both, so a request costs one sync rather than two. (When the domain
    // operations hand back their own `Commit`, the handler passes it in instead.)
    let commit = state.store.pending();
    let recorded = state.audit.record(event).await;
    let synced = commit.durable().await;
    if let Err(e) = synced.map_err(AppError::from) {
        return e.into_response();
    }
    if let Err(e) = recorded {
        return AppError::from(e).into_response();
    }
    match outcome {
        Ok((s, v)) => (s, AppJson(v)).into_response(),
        Err(e) => e.into_response(),
    }
}
