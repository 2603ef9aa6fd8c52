//! `/api/flags`: list (viewer), read one (any key, workers included), set (operator);
//! and the `dashboard.v2` switch in front of `/dashboard`.

use axum::Router;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::app::AppState;
use crate::auth::Caller;
use crate::error::{AppError, Result};
use crate::flags::{DASHBOARD_V2, FlagError, FlagName};
use crate::store::Commit;
use crate::web::access::Origin;
use crate::web::api::jobs::audited;
use crate::web::auth::{MaybeCaller, Operator, Viewer};
use crate::web::extract::{AppJson, AppPath};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/flags", get(list))
        .route("/api/flags/{name}", get(show).put(set))
}

impl From<FlagError> for AppError {
    fn from(e: FlagError) -> Self {
        match e {
            FlagError::NotFound(_) => AppError::not_found(e.to_string()),
            FlagError::Invalid(m) => AppError::bad_request(m),
            FlagError::Store(s) => s.into(),
        }
    }
}

/// Answer a change: record its audit event, then wait for the change itself (the audit
/// record's sync covers it, so this costs no second sync).
pub async fn audited_change(
    state: &AppState,
    meta: Origin,
    caller: &Caller,
    action: &str,
    target: String,
    outcome: Result<(StatusCode, Value, Commit)>,
) -> Response {
    let (outcome, commit) = match outcome {
        Ok((s, v, c)) => (Ok((s, v)), Some(c)),
        Err(e) => (Err(e), None),
    };
    let resp = audited(state, meta, caller, action, target, outcome).await;
    if let Some(c) = commit
        && let Err(e) = c.durable().await
    {
        return AppError::from(e).into_response();
    }
    resp
}

/// `GET /api/flags` (viewer): every flag, built-ins first.
pub async fn list(State(state): State<AppState>, _: Viewer) -> Result<AppJson<Value>> {
    let flags: Vec<Value> = state.flags.list().iter().map(|f| f.to_json()).collect();
    Ok(AppJson(json!({"ok": true, "flags": flags})))
}

/// `GET /api/flags/{name}` (any key: users' workers read their flags here).
pub async fn show(
    State(state): State<AppState>,
    MaybeCaller(caller): MaybeCaller,
    AppPath(name): AppPath<String>,
) -> Result<AppJson<Value>> {
    if caller.is_none() {
        return Err(AppError::unauthorized("missing X-Dash-Key header"));
    }
    let name = FlagName::parse(&name)?;
    let flag = state
        .flags
        .get(name.as_str())
        .ok_or_else(|| FlagError::NotFound(name.as_str().to_string()))?;
    Ok(AppJson(json!({"ok": true, "flag": flag.to_json()})))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetFlag {
    enabled: bool,
    #[serde(default)]
    note: String,
}

/// `PUT /api/flags/{name}` (operator) `{"enabled", "note"}`: creates the flag when new.
/// A change of state fires an `info` alert ("feature flag change").
pub async fn set(
    State(state): State<AppState>,
    Operator(caller): Operator,
    meta: Origin,
    AppPath(name): AppPath<String>,
    body: std::result::Result<AppJson<SetFlag>, AppError>,
) -> Response {
    let target = format!("flag:{name}");
    let outcome = (|| {
        let AppJson(body) = body?;
        let name = FlagName::parse(&name)?;
        let (flag, change, commit) =
            state
                .flags
                .set(&name, body.enabled, &body.note, &caller.key_id)?;
        Ok((
            StatusCode::OK,
            json!({"ok": true, "changed": change.is_some(), "flag": flag.to_json()}),
            commit,
            change,
        ))
    })();
    let (outcome, change) = match outcome {
        Ok((s, v, c, change)) => (Ok((s, v, c)), change),
        Err(e) => (Err(e), None),
    };
    let resp = audited_change(&state, meta, &caller, "flag.set", target, outcome).await;
    if let Some(c) = change
        && resp.status().is_success()
    {
        let state_word = if c.enabled { "on" } else { "off" };
        let mut message = format!("feature flag change: {} {state_word} (by {})", c.name, c.by);
        if !c.note.is_empty() {
            message.push_str(&format!(": {}", c.note));
        }
        let alert = format!("feature_flag_change:{}", c.name);
        if let Err(e) = state.alerts.info(&alert, &message).await {
            tracing::error!(error = %e, "could not raise the flag-change alert");
        }
    }
    resp
}

/// With `dashboard.v2` off, `/dashboard` sends the browser to the legacy `/dashboard/v1`
/// (the runbook's "failover to legacy UI"). Read on every request.
pub async fn dashboard_v2(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let path = req.uri().path();
    if (path == "/dashboard" || path == "/dashboard/") && !state.flags.is_enabled(DASHBOARD_V2) {
        return Redirect::to("/dashboard/v1").into_response();
    }
    next.run(req).await
}
