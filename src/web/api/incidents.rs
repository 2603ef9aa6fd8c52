//! `/api/incidents`: open (operator), list and show (viewer), timeline updates and
//! status moves, the runbook's announcement text, posting it to `ALERT_WEBHOOK_URL`
//! (through the job queue), postmortems.

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::app::AppState;
use crate::error::{AppError, Result};
use crate::glue::alert_job;
use crate::incidents::announce::{self, Kind};
use crate::incidents::{Incident, IncidentError, NewIncident, NewPostmortem, NewUpdate};
use crate::store::Commit;
use crate::web::access::Origin;
use crate::web::api::flags::audited_change;
use crate::web::auth::{Operator, Viewer};
use crate::web::extract::{AppJson, AppPath, AppQuery};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/incidents", get(list).post(open))
        .route("/api/incidents/{id}", get(show))
        .route("/api/incidents/{id}/updates", post(update))
        .route("/api/incidents/{id}/announcement", get(announcement))
        .route("/api/incidents/{id}/announce", post(announce))
        .route("/api/incidents/{id}/postmortem", post(postmortem))
}

impl From<IncidentError> for AppError {
    fn from(e: IncidentError) -> Self {
        match e {
            IncidentError::NotFound(_) => AppError::not_found(e.to_string()),
            IncidentError::Invalid(m) => AppError::bad_request(m),
            IncidentError::Conflict(m) => AppError::conflict(m),
            IncidentError::Store(s) => s.into(),
        }
    }
}

type Body<T> = std::result::Result<AppJson<T>, AppError>;

/// The answer to a change of an existing incident: the incident as it is now.
fn changed((i, commit): (Incident, Commit)) -> Result<(StatusCode, Value, Commit)> {
    Ok((
        StatusCode::OK,
        json!({"ok": true, "incident": i.to_json()}),
        commit,
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    limit: Option<usize>,
    status: Option<String>,
}

/// `GET /api/incidents` (viewer): newest first; `?status=`, `?limit=` (1–1000).
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
pub async fn show(
    State(state): State<AppState>,
    _: Viewer,
    AppPath(id): AppPath<String>,
) -> Result<AppJson<Value>> {
    let i = state.incidents.get(&id)?;
    Ok(AppJson(json!({"ok": true, "incident": i.to_json()})))
}

/// `POST /api/incidents` (operator) `{"title", "severity": "P0".."P3", "impact", "eta"}`.
pub async fn open(
    State(state): State<AppState>,
    Operator(caller): Operator,
    meta: Origin,
    body: Body<NewIncident>,
) -> Response {
    let mut target = "incident".to_string();
    let outcome = (|| {
        let AppJson(b) = body?;
        let (i, commit) = state.incidents.open(b, &caller.key_id)?;
        target = format!("incident:{}", i.id);
        Ok((
            StatusCode::CREATED,
            json!({"ok": true, "incident": i.to_json()}),
            commit,
        ))
    })();
    audited_change(&state, meta, &caller, "incident.open", target, outcome).await
}

/// `POST /api/incidents/{id}/updates` (operator): a timeline entry, maybe a status move;
/// `"status": "resolved"` takes `root_cause`, `resolution`, `prevention`.
pub async fn update(
    State(state): State<AppState>,
    Operator(caller): Operator,
    meta: Origin,
    AppPath(id): AppPath<String>,
    body: Body<NewUpdate>,
) -> Response {
    let mut action = "incident.update";
    let outcome = (|| {
        let AppJson(b) = body?;
        if b.status.as_deref() == Some("resolved") {
            action = "incident.resolve";
        }
        changed(state.incidents.update(&id, b, &caller.key_id)?)
    })();
    audited_change(
        &state,
        meta,
        &caller,
        action,
        format!("incident:{id}"),
        outcome,
    )
    .await
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnnouncementQuery {
    kind: Option<String>,
    format: Option<String>,
}

/// `GET /api/incidents/{id}/announcement?kind=detected|resolved&format=json|text`
/// (viewer): the runbook's template filled in. `kind` defaults to `resolved` for a
/// resolved incident; `format=text` answers the bare text.
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

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct AnnounceBody {
    kind: Option<String>,
}

/// `POST /api/incidents/{id}/announce` (operator) `{"kind"}`: queue the announcement
/// for `ALERT_WEBHOOK_URL` as an `alert.webhook` job (retried like alerts; not held by
/// maintenance: an operator asked for it).
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
        let job = state.jobs.enqueue(alert_job(text.clone()))?;
        // The audit record's sync makes the enqueue durable with it.
        Ok((
            StatusCode::ACCEPTED,
            json!({"ok": true, "kind": kind.as_str(), "text": text, "job_id": job.job.id}),
            Commit::done(),
        ))
    })();
    audited_change(
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
pub async fn postmortem(
    State(state): State<AppState>,
    Operator(caller): Operator,
    meta: Origin,
    AppPath(id): AppPath<String>,
    body: Body<NewPostmortem>,
) -> Response {
    let outcome = (|| {
        let AppJson(b) = body?;
        changed(state.incidents.postmortem(&id, b, &caller.key_id)?)
    })();
    audited_change(
        &state,
        meta,
        &caller,
        "incident.postmortem",
        format!("incident:{id}"),
        outcome,
    )
    .await
}
