//! `/dashboard/backups`: the disaster-recovery snapshots, newest first, with their
//! verification; an admin takes one now or verifies one again (the API's handlers, so
//! the runner's audit events and alerts are the same). Other roles see no button.

use askama::Template;
use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;

use crate::app::AppState;
use crate::backup::Entry;
use crate::web::access::Origin;
use crate::web::api;
use crate::web::auth::Admin;
use crate::web::extract::{AppPath, AppQuery};

use super::overview::Card;
use super::session::{AdminAction, Button, Session, see_other};
use super::view::{
    Chrome, Page, PageResult, Pager, Pill, bytes, duration, int, outcome_code, page_err, pill,
    short_ts,
};

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/dashboard/backups", get(list).post(take))
        .route("/dashboard/backups/{name}/verify", post(verify))
}

pub(super) struct BackupRow {
    pub(super) name: String,
    pub(super) created: String,
    pub(super) size: String,
    pub(super) records: String,
    pub(super) verified: Pill,
    pub(super) verified_at: String,
    pub(super) error: String,
}

impl BackupRow {
    pub(super) fn of(e: &Entry) -> BackupRow {
        let verified = match &e.verified {
            Some(v) if v.ok => pill("ok").with_word("verified"),
            Some(_) => pill("critical").with_word("failed verification"),
            None => pill("queued").with_word("not verified"),
        };
        BackupRow {
            name: e.name.clone(),
            created: short_ts(&e.created_at),
            size: bytes(e.size_bytes),
            records: int(e.records),
            verified,
            verified_at: e
                .verified
                .as_ref()
                .map(|v| short_ts(&v.at))
                .unwrap_or_default(),
            error: e
                .verified
                .as_ref()
                .and_then(|v| v.error.clone())
                .unwrap_or_default(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct BackupsQuery {
    page: Option<usize>,
    notice: Option<String>,
}

#[derive(Template)]
#[template(path = "v2/backups.html")]
struct BackupsPage {
    chrome: Chrome,
    rows: Vec<BackupRow>,
    pager: Pager,
    dir: String,
    keep: usize,
    last: String,
    last_verified: String,
    stale: bool,
}

const PER_PAGE: usize = 50;

/// The overview's "Last backup" card: the newest snapshot's age, whether it verified,
/// its size, and when the backup schedule runs next.
pub(super) fn card(state: &AppState, schedules: &[crate::scheduler::schedules::Schedule]) -> Card {
    let now = state.clock.now();
    let newest = state.backups.list().ok().and_then(|mut l| l.pop());
    let next = schedules
        .iter()
        .find(|s| s.name == crate::app::backup::SCHEDULE && !s.paused)
        .and_then(|s| {
            s.to_json(now)["next_runs"][0]
                .as_str()
                .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        })
        .map(|t| format!("next {} UTC", t.format("%a %H:%M")))
        .unwrap_or_else(|| "no backup schedule".into());
    let link = Some(("/dashboard/backups".to_string(), "Backups →"));
    let Some(b) = newest else {
        return Card {
            title: "Last backup",
            span: "",
            value: "None".into(),
            unit: "",
            note: format!("no snapshot yet · {next}"),
            pill: Some(pill("warning").with_word("No backup")),
            class: "edge-warn",
            link,
        };
    };
    let age = chrono::DateTime::parse_from_rfc3339(&b.created_at)
        .map(|t| (now - t.to_utc()).num_seconds())
        .ok();
    let row = BackupRow::of(&b);
    let stale = age.is_none_or(|a| a > STALE_SECS);
    let word = format!("{} · {}", row.verified.word, row.size);
    let at = row.created.get(11..16).unwrap_or(&row.created).to_string();
    Card {
        title: "Last backup",
        span: "",
        value: age.map(duration).unwrap_or_else(|| "—".into()),
        unit: if age.is_some() { "ago" } else { "" },
        note: format!("taken {at} UTC · {next}"),
        pill: Some(row.verified.with_word(&word)),
        class: if b.verified.as_ref().is_some_and(|v| !v.ok) {
            "edge-crit"
        } else if stale {
            "edge-warn"
        } else {
            ""
        },
        link,
    }
}

/// A newest snapshot older than this is late (a nightly schedule and some slack).
const STALE_SECS: i64 = 26 * 3600;

fn ago(age: Option<f64>) -> String {
    age.map(|a| format!("{} ago", duration(a as i64)))
        .unwrap_or_else(|| "never".into())
}

async fn list(
    State(state): State<AppState>,
    session: Session,
    AppQuery(q): AppQuery<BackupsQuery>,
) -> PageResult {
    let backups = state.backups.clone();
    let entries = tokio::task::spawn_blocking(move || backups.list())
        .await
        .map_err(|e| page_err(anyhow::anyhow!("backups page task: {e}")))?
        .map_err(|e| page_err(anyhow::anyhow!("{e}")))?;
    let (age, verified_age) = state.backups.ages(state.clock.now());
    let total = entries.len();
    let page = q.page.unwrap_or(1).max(1);
    let rows = entries
        .iter()
        .rev()
        .skip((page - 1) * PER_PAGE)
        .take(PER_PAGE)
        .map(BackupRow::of)
        .collect();
    let pager = Pager {
        summary: format!("{total} snapshots, newest first"),
        newest: (page > 1).then(|| format!("/dashboard/backups?page={}", page - 1)),
        older: (page * PER_PAGE < total).then(|| format!("/dashboard/backups?page={}", page + 1)),
    };
    let page = BackupsPage {
        chrome: Chrome::new(&state, &session, "backups", "Backups", q.notice.as_deref()),
        rows,
        pager,
        dir: state.backups.dir().display().to_string(),
        keep: state.backups.settings().keep,
        last: ago(age),
        last_verified: ago(verified_age),
        stale: age.is_none_or(|a| a > STALE_SECS as f64),
    };
    Ok(Page(page).into_response())
}

/// `POST /dashboard/backups` (admin): take a snapshot now and verify it.
async fn take(
    State(state): State<AppState>,
    origin: Origin,
    AdminAction { session, .. }: AdminAction<Button>,
) -> Response {
    let answer = api::backups::create(State(state), Admin(session.caller), origin)
        .await
        .into_response();
    let code = match answer.status().as_u16() {
        500 => "backup_failed",
        _ => outcome_code(answer.status(), "backup_taken"),
    };
    see_other(&format!("/dashboard/backups?notice={code}"))
}

/// `POST /dashboard/backups/{name}/verify` (admin).
async fn verify(
    State(state): State<AppState>,
    origin: Origin,
    AppPath(name): AppPath<String>,
    AdminAction { session, .. }: AdminAction<Button>,
) -> Response {
    let answer = api::backups::verify(State(state), Admin(session.caller), origin, AppPath(name))
        .await
        .into_response();
    let code = match answer.status().as_u16() {
        422 => "backup_corrupt",
        _ => outcome_code(answer.status(), "backup_verified"),
    };
    see_other(&format!("/dashboard/backups?notice={code}"))
}
