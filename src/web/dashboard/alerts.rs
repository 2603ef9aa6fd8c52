//! `/dashboard/alerts`: alerts newest first, firing or resolved, paged.

use askama::Template;
use axum::Router;
use axum::extract::State;
use axum::response::IntoResponse;
use axum::routing::get;
use serde::Deserialize;

use crate::app::AppState;
use crate::slo::alerts::AlertState;
use crate::web::error::AppError;
use crate::web::extract::AppQuery;

use super::session::Session;
use super::view::{Chrome, Page, PageResult, Pager, Pill, page_err, pill, query, short_ts};

pub(super) fn router() -> Router<AppState> {
    Router::new().route("/dashboard/alerts", get(list))
}

pub(super) struct AlertRow {
    pub(super) id: u64,
    pub(super) name: String,
    pub(super) severity: Pill,
    pub(super) state: Pill,
    pub(super) message: String,
    pub(super) fired: String,
    pub(super) resolved: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AlertsQuery {
    #[serde(default)]
    state: String,
    page: Option<usize>,
    notice: Option<String>,
}

#[derive(Template)]
#[template(path = "v2/alerts.html")]
struct AlertsPage {
    chrome: Chrome,
    state: String,
    rows: Vec<AlertRow>,
    pager: Pager,
}

const PER_PAGE: usize = 50;

async fn list(
    State(state): State<AppState>,
    session: Session,
    AppQuery(q): AppQuery<AlertsQuery>,
) -> PageResult {
    let filter = match q.state.as_str() {
        "" => None,
        s => Some(s.parse::<AlertState>().map_err(AppError::bad_request)?),
    };
    let page = q.page.unwrap_or(1).clamp(1, 1000 / PER_PAGE);
    let want = page * PER_PAGE + 1;
    let all = state.alerts.list(filter, want).map_err(page_err)?;
    let more = all.len() == want;
    let rows = all
        .into_iter()
        .skip((page - 1) * PER_PAGE)
        .take(PER_PAGE)
        .map(|a| AlertRow {
            id: a.id,
            severity: pill(a.severity.as_str()),
            state: match a.state {
                AlertState::Firing => pill("firing"),
                AlertState::Resolved => pill("resolved"),
            },
            name: a.name,
            message: a.message,
            fired: short_ts(&a.fired_at),
            resolved: if a.resolved_at.is_empty() {
                "—".into()
            } else {
                short_ts(&a.resolved_at)
            },
        })
        .collect::<Vec<_>>();
    let link = |p: usize| {
        let p = p.to_string();
        format!(
            "/dashboard/alerts{}",
            query(&[("state", q.state.as_str()), ("page", p.as_str())])
        )
    };
    let pager = Pager {
        summary: format!("{} alerts shown, newest first", rows.len()),
        newest: (page > 1).then(|| link(page - 1)),
        older: more.then(|| link(page + 1)),
    };
    let page = AlertsPage {
        chrome: Chrome::new(&state, &session, "alerts", "Alerts", q.notice.as_deref()),
        state: q.state,
        rows,
        pager,
    };
    Ok(Page(page).into_response())
}
