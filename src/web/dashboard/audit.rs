//! `/dashboard/audit`: the audit trail, newest first, filtered by outcome, action,
//! actor and time; failures are one click away (`?ok=false`).

use askama::Template;
use axum::Router;
use axum::extract::State;
use axum::response::IntoResponse;
use axum::routing::get;
use serde::Deserialize;

use crate::app::AppState;
use crate::audit::{Event, Filter};
use crate::clock::rfc3339;
use crate::web::error::AppError;
use crate::web::extract::AppQuery;

use super::session::Session;
use super::view::{
    Chrome, ErrorPage, Page, PageResult, Pager, Pill, page_err, pill, query, short_ts,
};

pub(super) fn router() -> Router<AppState> {
    Router::new().route("/dashboard/audit", get(show))
}

/// One event as the tables show it.
pub(super) struct AuditRow {
    pub(super) seq: u64,
    pub(super) time: String,
    pub(super) actor: String,
    pub(super) role: String,
    pub(super) action: String,
    pub(super) target: String,
    pub(super) ip: String,
    pub(super) pill: Pill,
    pub(super) status: u16,
    pub(super) error: String,
}

impl AuditRow {
    pub(super) fn from_event(e: &Event) -> AuditRow {
        let word = match (e.ok, e.status) {
            (true, _) => "ok",
            (false, 401 | 403) => "denied",
            (false, 409) => "conflict",
            (false, 429) => "limited",
            (false, _) => "failed",
        };
        let base = match word {
            "ok" => "ok",
            "conflict" | "limited" => "warning",
            _ => "failed",
        };
        let p = pill(base).with_word(word);
        AuditRow {
            seq: e.seq,
            time: short_ts(&e.ts),
            actor: e.actor.clone(),
            role: e.role.clone(),
            action: e.action.clone(),
            target: e.target.clone(),
            ip: e.ip.clone(),
            pill: p,
            status: e.status,
            error: e.error.clone().unwrap_or_default(),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AuditQuery {
    #[serde(default)]
    ok: String,
    #[serde(default)]
    action: String,
    #[serde(default)]
    actor: String,
    #[serde(default)]
    since: String,
    #[serde(default)]
    until: String,
    before: Option<u64>,
    limit: Option<usize>,
    notice: Option<String>,
}

#[derive(Template)]
#[template(path = "v2/audit.html")]
struct AuditPage {
    chrome: Chrome,
    q: AuditQuery,
    rows: Vec<AuditRow>,
    pager: Pager,
    failures_href: String,
}

fn bound(name: &str, v: &str) -> Result<Option<String>, ErrorPage> {
    let v = v.trim();
    if v.is_empty() {
        return Ok(None);
    }
    // The form's datetime-local (no zone: UTC) or a full RFC 3339 time.
    let parsed = chrono::DateTime::parse_from_rfc3339(v)
        .map(|t| t.to_utc())
        .or_else(|_| {
            chrono::NaiveDateTime::parse_from_str(v, "%Y-%m-%dT%H:%M").map(|t| t.and_utc())
        })
        .or_else(|_| {
            chrono::NaiveDateTime::parse_from_str(v, "%Y-%m-%dT%H:%M:%S").map(|t| t.and_utc())
        })
        .map_err(|_| {
            ErrorPage::from(AppError::bad_request(format!(
                "{name} must be a time like 2026-03-14T09:00 (UTC)"
            )))
        })?;
    Ok(Some(rfc3339(parsed)))
}

async fn show(
    State(state): State<AppState>,
    session: Session,
    AppQuery(q): AppQuery<AuditQuery>,
) -> PageResult {
    let ok = match q.ok.as_str() {
        "" => None,
        "true" => Some(true),
        "false" => Some(false),
        _ => return Err(AppError::bad_request("ok must be true or false").into()),
    };
    let limit = q.limit.unwrap_or(50).clamp(1, 200);
    let filter = Filter {
        ok,
        action: Some(q.action.trim().to_string()).filter(|s| !s.is_empty()),
        actor: Some(q.actor.trim().to_string()).filter(|s| !s.is_empty()),
        ip: None,
        since: bound("since", &q.since)?,
        until: bound("until", &q.until)?,
        before: q.before,
        limit,
    };
    let audit = state.audit.clone();
    let (events, next) = tokio::task::spawn_blocking(move || audit.query(&filter))
        .await
        .map_err(|e| page_err(anyhow::anyhow!("audit query task: {e}")))?
        .map_err(page_err)?;
    let limit_s = limit.to_string();
    let base = [
        ("ok", q.ok.as_str()),
        ("action", q.action.as_str()),
        ("actor", q.actor.as_str()),
        ("since", q.since.as_str()),
        ("until", q.until.as_str()),
        ("limit", if limit == 50 { "" } else { limit_s.as_str() }),
    ];
    let older = next.map(|n| {
        let n = n.to_string();
        let mut p = base.to_vec();
        p.push(("before", n.as_str()));
        format!("/dashboard/audit{}", query(&p))
    });
    let pager = Pager {
        summary: format!("{} events shown, newest first", events.len()),
        newest: q
            .before
            .map(|_| format!("/dashboard/audit{}", query(&base))),
        older,
    };
    let chrome = Chrome::new(&state, &session, "audit", "Audit", q.notice.as_deref());
    let page = AuditPage {
        chrome,
        rows: events.iter().map(AuditRow::from_event).collect(),
        pager,
        failures_href: "/dashboard/audit?ok=false".into(),
        q,
    };
    Ok(Page(page).into_response())
}
