//! `/dashboard/incidents`: incidents newest first (open or resolved), opening one, and an
//! incident's page: its timeline, the runbook's communication templates filled in
//! (ready to copy), a timeline update that may move or resolve it, and the postmortem.
//! Every change goes through the API's handlers: the same checks and audit events.

use askama::Template;
use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::json;

use crate::app::AppState;
use crate::incidents::announce::{self, Kind};
use crate::incidents::{Incident, Severity, Status};
use crate::web::access::Origin;
use crate::web::api;
use crate::web::auth::Operator;
use crate::web::error::AppError;
use crate::web::extract::{AppJson, AppPath, AppQuery};

use super::session::{Action, CsrfForm, Session, see_other};
use super::view::{
    Chrome, Page, PageResult, Pager, Pill, date_time, duration, outcome_code, page_err, pill, query,
};

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/dashboard/incidents", get(list).post(open))
        .route("/dashboard/incidents/{id}", get(show))
        .route("/dashboard/incidents/{id}/update", post(update))
        .route("/dashboard/incidents/{id}/postmortem", post(postmortem))
}

pub(super) struct IncidentRow {
    pub(super) id: String,
    pub(super) short_id: String,
    pub(super) title: String,
    pub(super) severity: Pill,
    pub(super) status: Pill,
    pub(super) opened: String,
    pub(super) took: String,
    pub(super) postmortem: Option<Pill>,
}

/// How a severity looks: P0/P1 critical, P2 warning, P3 neutral; the word says which.
fn severity_pill(s: Severity) -> Pill {
    pill(match s {
        Severity::P0 | Severity::P1 => "critical",
        Severity::P2 => "warning",
        Severity::P3 => "queued",
    })
    .with_word(&format!("{} {}", s.as_str(), s.label()))
}

fn status_pill(s: Status) -> Pill {
    pill(match s {
        Status::Resolved => "resolved",
        Status::Monitoring => "running",
        _ => "warning",
    })
    .with_word(s.as_str())
}

fn short(id: &str) -> String {
    format!("…{}", &id[id.len().saturating_sub(8)..])
}

impl IncidentRow {
    fn of(i: &Incident, now: chrono::DateTime<chrono::Utc>) -> IncidentRow {
        IncidentRow {
            id: i.id.clone(),
            short_id: short(&i.id),
            title: i.title.clone(),
            severity: severity_pill(i.severity),
            status: status_pill(i.status),
            opened: date_time(i.opened_at()),
            took: match i.duration() {
                Some(d) => format!("took {}", announce::duration(d)),
                None => format!("open {}", duration((now - i.opened_at()).num_seconds())),
            },
            postmortem: if i.postmortem.is_some() {
                Some(pill("ok").with_word("postmortem written"))
            } else if i.postmortem_overdue(now) {
                Some(pill("critical").with_word("postmortem overdue"))
            } else if i.severity.needs_postmortem() && i.resolved_at().is_some() {
                Some(pill("warning").with_word("postmortem due in 48 h"))
            } else {
                None
            },
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ListQuery {
    /// `open` (not resolved) or `resolved`; empty for all.
    #[serde(default)]
    state: String,
    page: Option<usize>,
    notice: Option<String>,
}

#[derive(Template)]
#[template(path = "v2/incidents.html")]
struct IncidentsPage {
    chrome: Chrome,
    state: String,
    rows: Vec<IncidentRow>,
    pager: Pager,
    severities: Vec<(&'static str, String)>,
}

const PER_PAGE: usize = 50;
/// Incidents a list reads at most (pages beyond are the API's).
const MAX_READ: usize = 1000;

const SEVERITIES: [Severity; 4] = [Severity::P0, Severity::P1, Severity::P2, Severity::P3];

async fn list(
    State(state): State<AppState>,
    session: Session,
    AppQuery(q): AppQuery<ListQuery>,
) -> PageResult {
    let keep = |i: &Incident| match q.state.as_str() {
        "open" => i.status != Status::Resolved,
        "resolved" => i.status == Status::Resolved,
        _ => true,
    };
    if !["", "open", "resolved"].contains(&q.state.as_str()) {
        return Err(page_err(AppError::bad_request(format!(
            "state: {:?} is not open or resolved",
            q.state
        ))));
    }
    let now = state.clock.now();
    let page = q.page.unwrap_or(1).clamp(1, MAX_READ / PER_PAGE);
    let all = state.incidents.list(MAX_READ).map_err(page_err)?;
    let matching: Vec<&Incident> = all.iter().filter(|i| keep(i)).collect();
    let total = matching.len();
    let rows = matching
        .into_iter()
        .skip((page - 1) * PER_PAGE)
        .take(PER_PAGE)
        .map(|i| IncidentRow::of(i, now))
        .collect();
    let link = |p: usize| {
        let p = p.to_string();
        format!(
            "/dashboard/incidents{}",
            query(&[("state", q.state.as_str()), ("page", p.as_str())])
        )
    };
    let pager = Pager {
        summary: format!("{total} incidents, newest first"),
        newest: (page > 1).then(|| link(page - 1)),
        older: (page * PER_PAGE < total).then(|| link(page + 1)),
    };
    let page = IncidentsPage {
        chrome: Chrome::new(
            &state,
            &session,
            "incidents",
            "Incidents",
            q.notice.as_deref(),
        ),
        state: q.state,
        rows,
        pager,
        severities: SEVERITIES
            .iter()
            .map(|s| (s.as_str(), format!("{} — {}", s.as_str(), s.label())))
            .collect(),
    };
    Ok(Page(page).into_response())
}

pub(super) struct UpdateRow {
    pub(super) at: String,
    pub(super) by: String,
    pub(super) status: Pill,
    pub(super) message: String,
}

#[derive(Template)]
#[template(path = "v2/incident.html")]
struct IncidentPage {
    chrome: Chrome,
    row: IncidentRow,
    i: Incident,
    updates: Vec<UpdateRow>,
    detected: String,
    resolved: Option<String>,
    resolved_at: String,
    statuses: [&'static str; 4],
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct NoticeQuery {
    notice: Option<String>,
}

async fn show(
    State(state): State<AppState>,
    session: Session,
    AppPath(id): AppPath<String>,
    AppQuery(q): AppQuery<NoticeQuery>,
) -> PageResult {
    let i = state.incidents.get(&id).map_err(page_err)?;
    let updates = i
        .updates
        .iter()
        .rev()
        .map(|u| UpdateRow {
            at: date_time(chrono::DateTime::from_timestamp_millis(u.at_ms).unwrap_or_default()),
            by: u.by.clone(),
            status: status_pill(u.status),
            message: u.message.clone(),
        })
        .collect();
    let page = IncidentPage {
        chrome: Chrome::new(
            &state,
            &session,
            "incidents",
            &format!("Incident {}", i.title),
            q.notice.as_deref(),
        ),
        row: IncidentRow::of(&i, state.clock.now()),
        detected: announce::render(&i, Kind::Detected).map_err(page_err)?,
        resolved: announce::render(&i, Kind::Resolved).ok(),
        resolved_at: i.resolved_at().map(date_time).unwrap_or_default(),
        updates,
        statuses: ["investigating", "identified", "monitoring", "resolved"],
        i,
    };
    Ok(Page(page).into_response())
}

/// An empty field is a field not given (the API's `None`).
fn given(v: &str) -> Option<&str> {
    Some(v.trim()).filter(|v| !v.is_empty())
}

/// Back to the page of incident `id` with a notice for the API's answer.
fn back(id: &str, answer: &Response, ok: &'static str) -> Response {
    see_other(&format!(
        "/dashboard/incidents/{}?notice={}",
        super::session::urlencode(id),
        outcome_code(answer.status(), ok)
    ))
}

/// A form's fields as the API's JSON body, parsed by the API's own type.
fn body<T: serde::de::DeserializeOwned>(v: serde_json::Value) -> Result<AppJson<T>, AppError> {
    serde_json::from_value(v)
        .map(AppJson)
        .map_err(|e| AppError::bad_request(e.to_string()))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct OpenForm {
    csrf: String,
    #[serde(default)]
    title: String,
    #[serde(default)]
    severity: String,
    #[serde(default)]
    impact: String,
    #[serde(default)]
    eta: String,
}

impl CsrfForm for OpenForm {
    fn csrf(&self) -> &str {
        &self.csrf
    }
}

/// `POST /dashboard/incidents`: the API's open; on to the new incident's page.
async fn open(
    State(state): State<AppState>,
    origin: Origin,
    Action { session, form }: Action<OpenForm>,
) -> Response {
    let b = body::<api::incidents::OpenIncident>(json!({
        "title": form.title,
        "severity": form.severity,
        "impact": form.impact,
        "eta": given(&form.eta),
    }));
    let answer = api::incidents::open(State(state), Operator(session.caller), origin, b).await;
    if !answer.status().is_success() {
        return see_other(&format!(
            "/dashboard/incidents?notice={}",
            outcome_code(answer.status(), "incident_opened")
        ));
    }
    let bytes = axum::body::to_bytes(answer.into_body(), 1 << 20)
        .await
        .unwrap_or_default();
    let id = serde_json::from_slice::<serde_json::Value>(&bytes)
        .ok()
        .and_then(|v| v["incident"]["id"].as_str().map(str::to_string))
        .unwrap_or_default();
    see_other(&format!(
        "/dashboard/incidents/{}?notice=incident_opened",
        super::session::urlencode(&id)
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct UpdateForm {
    csrf: String,
    #[serde(default)]
    message: String,
    /// Empty: the status stays.
    #[serde(default)]
    status: String,
    #[serde(default)]
    eta: String,
    #[serde(default)]
    root_cause: String,
    #[serde(default)]
    resolution: String,
    #[serde(default)]
    prevention: String,
}

impl CsrfForm for UpdateForm {
    fn csrf(&self) -> &str {
        &self.csrf
    }
}

/// `POST /dashboard/incidents/{id}/update`: a timeline entry, maybe a move or the
/// resolution (which takes root cause, resolution and prevention).
async fn update(
    State(state): State<AppState>,
    origin: Origin,
    AppPath(id): AppPath<String>,
    Action { session, form }: Action<UpdateForm>,
) -> Response {
    let b = body::<api::incidents::UpdateIncident>(json!({
        "message": form.message,
        "status": given(&form.status),
        "eta": given(&form.eta),
        "root_cause": given(&form.root_cause),
        "resolution": given(&form.resolution),
        "prevention": given(&form.prevention),
    }));
    let answer = api::incidents::update(
        State(state),
        Operator(session.caller),
        origin,
        AppPath(id.clone()),
        b,
    )
    .await;
    back(&id, &answer, "incident_updated")
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PostmortemForm {
    csrf: String,
    #[serde(default)]
    timeline: String,
    #[serde(default)]
    root_cause: String,
    #[serde(default)]
    preventive_measures: String,
    #[serde(default)]
    runbook_updates: String,
}

impl CsrfForm for PostmortemForm {
    fn csrf(&self) -> &str {
        &self.csrf
    }
}

/// `POST /dashboard/incidents/{id}/postmortem`: the runbook's four parts.
async fn postmortem(
    State(state): State<AppState>,
    origin: Origin,
    AppPath(id): AppPath<String>,
    Action { session, form }: Action<PostmortemForm>,
) -> Response {
    let b = body::<api::incidents::WritePostmortem>(json!({
        "timeline": form.timeline,
        "root_cause": form.root_cause,
        "preventive_measures": form.preventive_measures,
        "runbook_updates": form.runbook_updates,
    }));
    let answer = api::incidents::postmortem(
        State(state),
        Operator(session.caller),
        origin,
        AppPath(id.clone()),
        b,
    )
    .await;
    back(&id, &answer, "postmortem")
}
