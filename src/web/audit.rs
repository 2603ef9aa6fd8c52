//! The audit side of every mutating API call: [`audited`] records the call's outcome
//! (failures too, `"ok": false`) and makes the change and its event durable together,
//! then answers. Every mutating handler ends in it.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::app::AppState;
use crate::audit::NewEvent;
use crate::auth::Caller;
use crate::store::Commit;
use crate::web::access::Origin;
use crate::web::error::{AppError, Result};
use crate::web::extract::AppJson;

/// Audit a change by `caller` (`action` on `target`, e.g. `"job.retry"`, `"job:<id>"`),
/// then answer with `outcome`: its status, body and the change's [`Commit`], or its
/// error. The change and its audit event share one group commit; nothing is answered
/// before both are durable.
pub async fn audited<T: Serialize>(
    state: &AppState,
    origin: Origin,
    caller: &Caller,
    action: &str,
    target: String,
    outcome: Result<(StatusCode, T, Commit)>,
) -> Response {
    let (ok, status, error) = match &outcome {
        Ok((s, _, _)) => (true, s.as_u16(), None),
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
    // The audit record syncs after the change was written: that one sync covers both,
    // so awaiting the change's commit afterwards costs nothing more.
    let recorded = state.audit.record(event).await;
    if let Err(e) = recorded {
        return AppError::from(e).into_response();
    }
    match outcome {
        Ok((s, v, commit)) => match commit.durable().await {
            Ok(()) => (s, AppJson(v)).into_response(),
            Err(e) => AppError::from(e).into_response(),
        },
        Err(e) => e.into_response(),
    }
}
