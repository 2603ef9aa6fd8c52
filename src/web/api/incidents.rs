//! `/api/incidents`: open (operator), list and show (viewer), timeline updates and
//! status moves, the runbook's announcement text, posting it to `ALERT_WEBHOOK_URL`
//! (through the job queue), postmortems.

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::app::{AppState, alert_job};
use crate::incidents::announce::{self, Kind};
use crate::incidents::{Incident, NewIncident, NewPostmortem, NewUpdate};
use crate::store::Commit;
use crate::web::access::Origin;
use crate::web::api::schemas::OkBody;
use crate::web::audit::audited;
use crate::web::auth::{Operator, Viewer};
use crate::web::error::{AppError, ErrorBody, Result};
use crate::web::extract::{AppJson, AppPath, AppQuery};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, open))
        .routes(routes!(show))
        .routes(routes!(update))
        .routes(routes!(announcement))
        .routes(routes!(announce))
        .routes(routes!(postmortem))
}

/// A body taken as a result, so a bad one is audited too.
type Body<T> = std::result::Result<AppJson<T>, AppError>;

/// The body of `POST /api/incidents`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OpenIncident {
    title: String,
    #[schema(pattern = "^P[0-3]$")]
    severity: String,
    impact: String,
    /// Default `Unknown`.
    eta: Option<String>,
}

impl From<OpenIncident> for NewIncident {
    fn from(b: OpenIncident) -> NewIncident {
        NewIncident {
            title: b.title,
            severity: b.severity,
            impact: b.impact,
            eta: b.eta,
        }
    }
}

/// The body of `POST /api/incidents/{id}/updates`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateIncident {
    message: String,
    /// investigating, identified, monitoring or resolved.
    #[schema(pattern = "^(investigating|identified|monitoring|resolved)$")]
    status: Option<String>,
    eta: Option<String>,
    /// Resolving takes the root cause, resolution and prevention.
    root_cause: Option<String>,
    resolution: Option<String>,
    prevention: Option<String>,
}

impl From<UpdateIncident> for NewUpdate {
    fn from(b: UpdateIncident) -> NewUpdate {
        NewUpdate {
            message: b.message,
            status: b.status,
            eta: b.eta,
            root_cause: b.root_cause,
            resolution: b.resolution,
            prevention: b.prevention,
        }
    }
}

/// The body of `POST /api/incidents/{id}/postmortem`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WritePostmortem {
    timeline: String,
    root_cause: String,
    preventive_measures: String,
    runbook_updates: String,
}

impl From<WritePostmortem> for NewPostmortem {
    fn from(b: WritePostmortem) -> NewPostmortem {
        NewPostmortem {
            timeline: b.timeline,
            root_cause: b.root_cause,
            preventive_measures: b.preventive_measures,
            runbook_updates: b.runbook_updates,
        }
    }
}

/// The answer to a change of an existing incident: the incident as it is now.
fn changed((i, commit): (Incident, Commit)) -> Result<(StatusCode, Value, Commit)> {
    Ok((
        StatusCode::OK,
        json!({"ok": true, "incident": i.to_json()}),
        commit,
    ))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// 1 to 1000, default 100.
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<usize>,
    #[param(pattern = "^(investigating|identified|monitoring|resolved)$")]
    status: Option<String>,
}

/// `GET /api/incidents` (viewer): newest first; `?status=`, `?limit=` (1–1000).
#[utoipa::path(get, path = "/api/incidents", tag = "incidents", params(ListQuery),
    responses((status = 200, description = "incidents, newest first", body = OkBody)),
    extensions(("x-required-role" = json!("viewer"))))]
pub async fn list(
    State(state): State<AppState>,
    _: Viewer,
    AppQuery(q): AppQuery<ListQuery>,
) -> Result<AppJson<Value>> {
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(AppError::bad_request("limit: must be between 1 and 1000"));
    }
    let status = q
        .status
        .as_deref()
        .map(crate::incidents::Status::parse)
        .transpose()?;
    let incidents: Vec<Value> = state
        .incidents
        .list(if status.is_some() { 10_000 } else { limit })?
        .into_iter()
        .filter(|i| status.is_none_or(|s| i.status == s))
        .take(limit)
        .map(|i| i.to_json())
        .collect();
    Ok(AppJson(json!({"ok": true, "incidents": incidents})))
}

/// `GET /api/incidents/{id}` (viewer).
#[utoipa::path(get, path = "/api/incidents/{id}", tag = "incidents",
    params(("id" = String, Path, description = "the incident's id")),
    responses((status = 200, description = "the incident with its timeline", body = OkBody)),
    extensions(("x-required-role" = json!("viewer"))))]
pub async fn show(
    State(state): State<AppState>,
    _: Viewer,
    AppPath(id): AppPath<String>,
) -> Result<AppJson<Value>> {
    let i = state.incidents.get(&id)?;
    Ok(AppJson(json!({"ok": true, "incident": i.to_json()})))
}

/// `POST /api/incidents` (operator) `{"title", "severity": "P0".."P3", "impact", "eta"}`.
#[utoipa::path(post, path = "/api/incidents", tag = "incidents", request_body = OpenIncident,
    responses((status = 201, description = "opened, status investigating", body = OkBody)),
    extensions(("x-required-role" = json!("operator"))))]
pub async fn open(
    State(state): State<AppState>,
    Operator(caller): Operator,
    meta: Origin,
    body: Body<OpenIncident>,
) -> Response {
    let mut target = "incident".to_string();
    let outcome = (|| {
        let AppJson(b) = body?;
        let (i, commit) = state.incidents.open(b.into(), &caller.key_id)?;
        target = format!("incident:{}", i.id);
        Ok((
            StatusCode::CREATED,
            json!({"ok": true, "incident": i.to_json()}),
            commit,
        ))
    })();
    audited(&state, meta, &caller, "incident.open", target, outcome).await
}

/// `POST /api/incidents/{id}/updates` (operator): a timeline entry, maybe a status move;
/// `"status": "resolved"` takes `root_cause`, `resolution`, `prevention`.
#[utoipa::path(post, path = "/api/incidents/{id}/updates", tag = "incidents",
    params(("id" = String, Path, description = "the incident's id")),
    request_body = UpdateIncident,
    responses(
        (status = 200, description = "the incident as it is now", body = OkBody),
        (status = 409, description = "the incident is resolved", body = ErrorBody),
    ),
    extensions(("x-required-role" = json!("operator"))))]
pub async fn update(
    State(state): State<AppState>,
    Operator(caller): Operator,
    meta: Origin,
    AppPath(id): AppPath<String>,
    body: Body<UpdateIncident>,
) -> Response {
    let mut action = "incident.update";
    let outcome = (|| {
        let AppJson(b) = body?;
        if b.status.as_deref() == Some("resolved") {
            action = "incident.resolve";
        }
        changed(state.incidents.update(&id, b.into(), &caller.key_id)?)
    })();
    audited(
        &state,
        meta,
        &caller,
        action,
        format!("incident:{id}"),
        outcome,
    )
    .await
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct AnnouncementQuery {
    /// Default: `resolved` for a resolved incident, else `detected`.
    #[param(pattern = "^(detected|resolved)$")]
    kind: Option<String>,
    /// Default `json`.
    #[param(pattern = "^(json|text)$")]
    format: Option<String>,
}

/// `GET /api/incidents/{id}/announcement?kind=detected|resolved&format=json|text`
/// (viewer): the runbook's template filled in. `kind` defaults to `resolved` for a
/// resolved incident; `format=text` answers the bare text.
#[utoipa::path(get, path = "/api/incidents/{id}/announcement", tag = "incidents",
    params(("id" = String, Path, description = "the incident's id"), AnnouncementQuery),
    responses(
        (status = 200, description = "the filled-in template (JSON, or text/plain with format=text)", body = OkBody),
        (status = 409, description = "a resolved announcement of an unresolved incident", body = ErrorBody),
    ),
    extensions(("x-required-role" = json!("viewer"))))]
pub async fn announcement(
    State(state): State<AppState>,
    _: Viewer,
    AppPath(id): AppPath<String>,
    AppQuery(q): AppQuery<AnnouncementQuery>,
) -> Result<Response> {
    let i = state.incidents.get(&id)?;
    let kind = match q.kind.as_deref() {
        Some(k) => Kind::parse(k)?,
        None => Kind::for_incident(&i),
    };
    let text = announce::render(&i, kind)?;
    match q.format.as_deref() {
        None | Some("json") => Ok(AppJson(
            json!({"ok": true, "id": i.id, "kind": kind.as_str(), "text": text}),
        )
        .into_response()),
        Some("text") => {
            Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], text).into_response())
        }
        Some(other) => Err(AppError::bad_request(format!(
            "format: {other:?} is not one of json, text"
        ))),
    }
}

/// The body of `POST /api/incidents/{id}/announce`.
#[derive(Debug, Deserialize, Default, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AnnounceBody {
    /// detected or resolved; default as for the announcement.
    #[schema(pattern = "^(detected|resolved)$")]
    kind: Option<String>,
}

/// `POST /api/incidents/{id}/announce` (operator) `{"kind"}`: queue the announcement
/// for `ALERT_WEBHOOK_URL` as an `alert.webhook` job (retried like alerts; not held by
/// maintenance: an operator asked for it).
#[utoipa::path(post, path = "/api/incidents/{id}/announce", tag = "incidents",
    params(("id" = String, Path, description = "the incident's id")),
    request_body = AnnounceBody,
    responses(
        (status = 202, description = "queued as an alert.webhook job", body = OkBody),
        (status = 409, description = "ALERT_WEBHOOK_URL is not set, or the kind does not fit the incident", body = ErrorBody),
    ),
    extensions(("x-required-role" = json!("operator"))))]
pub async fn announce(
    State(state): State<AppState>,
    Operator(caller): Operator,
    meta: Origin,
    AppPath(id): AppPath<String>,
    body: Body<AnnounceBody>,
) -> Response {
    let outcome = (|| {
        let AppJson(b) = body?;
        if state.config.alert_webhook_url.is_none() {
            return Err(AppError::conflict(
                "ALERT_WEBHOOK_URL is not set: nowhere to post the announcement",
            ));
        }
        let i = state.incidents.get(&id)?;
        let kind = match b.kind.as_deref() {
            Some(k) => Kind::parse(k)?,
            None => Kind::for_incident(&i),
        };
        let text = announce::render(&i, kind)?;
        let (job, commit) = state.jobs.enqueue(alert_job(text.clone()))?;
        Ok((
            StatusCode::ACCEPTED,
            json!({"ok": true, "kind": kind.as_str(), "text": text, "job_id": job.job.id}),
            commit,
        ))
    })();
    audited(
        &state,
        meta,
        &caller,
        "incident.announce",
        format!("incident:{id}"),
        outcome,
    )
    .await
}

/// `POST /api/incidents/{id}/postmortem` (operator): timeline, root cause, preventive
/// measures, runbook updates.
#[utoipa::path(post, path = "/api/incidents/{id}/postmortem", tag = "incidents",
    params(("id" = String, Path, description = "the incident's id")),
    request_body = WritePostmortem,
    responses(
        (status = 200, description = "the incident with its postmortem", body = OkBody),
        (status = 409, description = "the incident is not resolved", body = ErrorBody),
    ),
    extensions(("x-required-role" = json!("operator"))))]
pub async fn postmortem(
    State(state): State<AppState>,
    Operator(caller): Operator,
    meta: Origin,
    AppPath(id): AppPath<String>,
    body: Body<WritePostmortem>,
) -> Response {
    let outcome = (|| {
        let AppJson(b) = body?;
        changed(state.incidents.postmortem(&id, b.into(), &caller.key_id)?)
    })();
    audited(
        &state,
        meta,
        &caller,
        "incident.postmortem",
        format!("incident:{id}"),
        outcome,
    )
    .await
}
