//! `/dashboard/flags`: every flag with its state, what it switches, who set it when and
//! why; turning one on or off takes a note and goes through the API's `PUT
//! /api/flags/{name}` handler (the same audit event and flag-change alert). Below, the
//! recent changes.

use askama::Template;
use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chrono::Duration;
use serde::Deserialize;

use crate::app::AppState;
use crate::flags::builtin;
use crate::web::access::Origin;
use crate::web::api;
use crate::web::auth::Operator;
use crate::web::error::AppError;
use crate::web::extract::{AppJson, AppPath, AppQuery};

use super::session::{Action, CsrfForm, Session, see_other};
use super::view::{
    Chrome, Page, PageResult, Pager, Pill, date_time, outcome_code, page_err, short_ts,
};

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/dashboard/flags", get(list))
        .route("/dashboard/flags/{name}", post(set))
}

pub(super) struct FlagRow {
    pub(super) name: String,
    pub(super) pill: Pill,
    pub(super) enabled: bool,
    pub(super) builtin: bool,
    pub(super) default: String,
    pub(super) switches: String,
    pub(super) note: String,
    pub(super) by: String,
    pub(super) at: String,
    /// What a click asks first (turning the dashboard itself off, for one).
    pub(super) confirm: String,
}

pub(super) struct ChangeRow {
    pub(super) at: String,
    pub(super) name: String,
    pub(super) from: Pill,
    pub(super) to: Pill,
    pub(super) by: String,
    pub(super) note: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FlagsQuery {
    page: Option<usize>,
    notice: Option<String>,
}

#[derive(Template)]
#[template(path = "v2/flags.html")]
struct FlagsPage {
    chrome: Chrome,
    rows: Vec<FlagRow>,
    pager: Pager,
    changes: Vec<ChangeRow>,
}

const PER_PAGE: usize = 50;
/// Changes listed: the newest of the last 30 days.
const CHANGES_SHOWN: usize = 20;

fn on_off(enabled: bool) -> Pill {
    if enabled {
        Pill {
            class: "ok",
            icon: "●",
            word: "On".into(),
        }
    } else {
        Pill {
            class: "neutral",
            icon: "○",
            word: "Off".into(),
        }
    }
}

async fn list(
    State(state): State<AppState>,
    session: Session,
    AppQuery(q): AppQuery<FlagsQuery>,
) -> PageResult {
    let all = state.flags.list();
    let total = all.len();
    let page = q.page.unwrap_or(1).max(1);
    let rows = all
        .into_iter()
        .skip((page - 1) * PER_PAGE)
        .take(PER_PAGE)
        .map(|f| {
            let b = builtin(&f.name);
            let confirm = if f.enabled && f.name == crate::flags::DASHBOARD_V2 {
                "Turn dashboard.v2 off? /dashboard then sends everyone to the legacy v1.".into()
            } else {
                String::new()
            };
            FlagRow {
                pill: on_off(f.enabled),
                enabled: f.enabled,
                builtin: b.is_some(),
                default: b
                    .map(|b| if b.default { "on" } else { "off" }.to_string())
                    .unwrap_or_default(),
                switches: b.map(|b| b.switches.to_string()).unwrap_or_default(),
                at: if f.updated_at.is_empty() {
                    "never set".into()
                } else {
                    short_ts(&f.updated_at)
                },
                by: f.updated_by,
                note: f.note,
                name: f.name,
                confirm,
            }
        })
        .collect();
    let since = state.clock.now() - Duration::days(30);
    let mut changes = state.flags.changes_since(since, 10_000).map_err(page_err)?;
    changes.reverse();
    let changes = changes
        .into_iter()
        .take(CHANGES_SHOWN)
        .map(|c| ChangeRow {
            at: date_time(c.at()),
            from: on_off(c.was),
            to: on_off(c.enabled),
            name: c.name,
            by: c.by,
            note: c.note,
        })
        .collect();
    let pager = Pager {
        summary: format!("{total} flags"),
        newest: (page > 1).then(|| format!("/dashboard/flags?page={}", page - 1)),
        older: (page * PER_PAGE < total).then(|| format!("/dashboard/flags?page={}", page + 1)),
    };
    let page = FlagsPage {
        chrome: Chrome::new(&state, &session, "flags", "Flags", q.notice.as_deref()),
        rows,
        pager,
        changes,
    };
    Ok(Page(page).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SetForm {
    csrf: String,
    /// `true` or `false`: the state asked for.
    enabled: String,
    #[serde(default)]
    note: String,
}

impl CsrfForm for SetForm {
    fn csrf(&self) -> &str {
        &self.csrf
    }
}

/// `POST /dashboard/flags/{name}`: the API's set, then back with a notice.
async fn set(
    State(state): State<AppState>,
    origin: Origin,
    AppPath(name): AppPath<String>,
    Action { session, form }: Action<SetForm>,
) -> Response {
    // The form's fields become the API's own body, checked by its own rules.
    let body = match form.enabled.as_str() {
        "true" | "false" => serde_json::from_value::<api::flags::SetFlag>(serde_json::json!({
            "enabled": form.enabled == "true",
            "note": form.note.trim(),
        }))
        .map(AppJson)
        .map_err(|e| AppError::bad_request(e.to_string())),
        other => Err(AppError::bad_request(format!(
            "enabled: {other:?} is not true or false"
        ))),
    };
    let enabled = form.enabled == "true";
    let answer = api::flags::set(
        State(state),
        Operator(session.caller),
        origin,
        AppPath(name),
        body,
    )
    .await;
    let ok = if enabled { "flag_on" } else { "flag_off" };
    see_other(&format!(
        "/dashboard/flags?notice={}",
        outcome_code(answer.status(), ok)
    ))
}
