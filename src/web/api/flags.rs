//! `/api/flags`: list (viewer), read one (any key, workers included), set (operator);
//! and the `dashboard.v2` switch in front of `/dashboard`.

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::app::AppState;
use crate::flags::{DASHBOARD_V2, FlagError, FlagName};
use crate::web::access::Origin;
use crate::web::api::schemas::OkBody;
use crate::web::audit::audited;
use crate::web::auth::{AnyKey, Operator, Viewer};
use crate::web::error::{AppError, Result};
use crate::web::extract::{AppJson, AppPath};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list))
        .routes(routes!(show, set))
}

/// `GET /api/flags` (viewer): every flag, built-ins first.
#[utoipa::path(get, path = "/api/flags", tag = "flags",
    responses((status = 200, description = "every flag, built-ins first", body = OkBody)),
    extensions(("x-required-role" = json!("viewer"))))]
pub async fn list(State(state): State<AppState>, _: Viewer) -> Result<AppJson<Value>> {
    let flags: Vec<Value> = state.flags.list().iter().map(|f| f.to_json()).collect();
    Ok(AppJson(json!({"ok": true, "flags": flags})))
}

/// `GET /api/flags/{name}` (any key: users' workers read their flags here).
#[utoipa::path(get, path = "/api/flags/{name}", tag = "flags",
    params(("name" = String, Path, description = "the flag's name", pattern = r"^[a-z0-9._-]{1,64}$")),
    responses((status = 200, description = "the flag", body = OkBody)),
    extensions(("x-required-role" = json!("key"))))]
pub async fn show(
    State(state): State<AppState>,
    _: AnyKey,
    AppPath(name): AppPath<String>,
) -> Result<AppJson<Value>> {
    let name = FlagName::parse(&name)?;
    let flag = state
        .flags
        .get(name.as_str())
        .ok_or_else(|| FlagError::NotFound(name.as_str().to_string()))?;
    Ok(AppJson(json!({"ok": true, "flag": flag.to_json()})))
}

/// The body of `PUT /api/flags/{name}`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetFlag {
    enabled: bool,
    /// Why: one line, at most 500 characters.
    #[serde(default)]
    #[schema(max_length = 500)]
    note: String,
}

/// `PUT /api/flags/{name}` (operator) `{"enabled", "note"}`: creates the flag when new.
/// A change of state fires an `info` alert ("feature flag change").
#[utoipa::path(put, path = "/api/flags/{name}", tag = "flags",
    params(("name" = String, Path, description = "the flag's name", pattern = r"^[a-z0-9._-]{1,64}$")),
    request_body = SetFlag,
    responses((status = 200, description = "the flag as it is now; `changed` says whether its state moved", body = OkBody)),
    extensions(("x-required-role" = json!("operator"))))]
pub async fn set(
    State(state): State<AppState>,
    Operator(caller): Operator,
    meta: Origin,
    AppPath(name): AppPath<String>,
    // Taken as a result so a bad body is audited too.
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
    let resp = audited(&state, meta, &caller, "flag.set", target, outcome).await;
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
pub fn dashboard_redirect(state: &AppState, req: &Request) -> Option<Response> {
    let path = req.uri().path();
    let legacy =
        (path == "/dashboard" || path == "/dashboard/") && !state.flags.is_enabled(DASHBOARD_V2);
    legacy.then(|| Redirect::to("/dashboard/v1").into_response())
}
