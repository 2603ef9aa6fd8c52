//! What every page shares: the one `IntoResponse` wrapper for templates (a render error
//! becomes a 500 page), the page chrome (nav, user, CSRF token, notice, footer), status
//! pills, pagination and number formatting.

use std::time::Instant;

use askama::Template;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use chrono::{DateTime, Utc};

use crate::app::AppState;
use crate::auth::Need;
use crate::build_info;
use crate::web::error::AppError;

use super::assets;
use super::session::Session;

/// A rendered template: 200 HTML, or the 500 page when rendering fails.
pub(super) struct Page<T>(pub T);

impl<T: Template> IntoResponse for Page<T> {
    fn into_response(self) -> Response {
        match self.0.render() {
            Ok(html) => Html(html).into_response(),
            Err(e) => {
                tracing::error!(error = %e, "dashboard template failed to render");
                ErrorPage::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "This page could not be drawn. The error is in the server log.",
                )
                .into_response()
            }
        }
    }
}

/// A page that says what went wrong, with the right status.
#[derive(Template)]
#[template(path = "v2/error.html")]
pub(super) struct ErrorPage {
    pub(super) status: u16,
    pub(super) reason: String,
    pub(super) message: String,
    pub(super) css: String,
}

impl ErrorPage {
    pub(super) fn new(status: StatusCode, message: &str) -> ErrorPage {
        ErrorPage {
            status: status.as_u16(),
            reason: status.canonical_reason().unwrap_or("Error").to_string(),
            message: message.to_string(),
            css: assets::url("app.css"),
        }
    }
}

impl IntoResponse for ErrorPage {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = self.render().unwrap_or_else(|_| {
            // The error page itself failed: plain text, never a loop.
            format!("{} {}", self.status, self.message)
        });
        let mut resp = (status, Html(body)).into_response();
        resp.extensions_mut()
            .insert(crate::web::error::ErrorMessage(self.message));
        resp
    }
}

impl From<AppError> for ErrorPage {
    fn from(e: AppError) -> Self {
        if e.status.is_server_error() {
            tracing::error!(error = ?e.source, message = %e.message, "dashboard page failed");
        }
        ErrorPage::new(e.status, &e.message)
    }
}

/// Handlers return this: a page, or an error page.
pub(super) type PageResult = Result<Response, ErrorPage>;

/// Turn a domain error into an error page (`?` on a `JobError`, `StoreError`, …).
pub(super) fn page_err<E: Into<AppError>>(e: E) -> ErrorPage {
    ErrorPage::from(e.into())
}

/// One entry of the v2 navigation. Adding a page: its file, its route, and a line here.
pub(super) const NAV: &[(&str, &str)] = &[
    ("overview", "Overview"),
    ("jobs", "Jobs"),
    ("schedules", "Schedules"),
    ("audit", "Audit"),
    ("payments", "Payments"),
    ("flags", "Flags"),
    ("backups", "Backups"),
    ("incidents", "Incidents"),
    ("alerts", "Alerts"),
];

pub(super) struct NavItem {
    pub(super) label: &'static str,
    pub(super) href: String,
    pub(super) current: bool,
    pub(super) badge: Option<usize>,
}

/// A message after an action, chosen from a fixed list by its code (the query carries
/// only the code, so a link cannot put words on our page).
pub(super) struct Notice {
    pub(super) ok: bool,
    pub(super) text: &'static str,
}

pub(super) fn notice(code: Option<&str>) -> Option<Notice> {
    let (ok, text) = match code? {
        "retried" => (true, "Job re-queued. It runs at the next claim."),
        "cancelled" => (true, "Job cancelled."),
        "bulk_retried" => (
            true,
            "Dead jobs re-queued (recorded in the audit log as job.retry_bulk).",
        ),
        "ran" => (true, "Schedule fired: its job is queued."),
        "paused" => (true, "Paused."),
        "resumed" => (true, "Resumed."),
        "restarted" => (true, "Scheduler restarted."),
        "reconciled" => (
            true,
            "Reconciliation recorded: the report below is the new one.",
        ),
        "confirm" => (
            false,
            "Tick the confirmation box first: nothing was changed.",
        ),
        "conflict" => (
            false,
            "Refused: the job is not in a state that allows this. Nothing was changed.",
        ),
        "flag_on" => (
            true,
            "Flag turned on (recorded in the audit log as flag.set).",
        ),
        "flag_off" => (
            true,
            "Flag turned off (recorded in the audit log as flag.set).",
        ),
        "incident_opened" => (true, "Incident opened. Post the announcement below."),
        "incident_updated" => (true, "Timeline updated."),
        "postmortem" => (true, "Postmortem saved."),
        "backup_taken" => (true, "Snapshot taken and verified."),
        "backup_verified" => (true, "Snapshot verified: it restores."),
        "backup_corrupt" => (
            false,
            "The snapshot failed verification: it is damaged (a critical alert is raised).",
        ),
        "backup_failed" => (
            false,
            "The snapshot could not be taken or failed its check; see the audit log and alerts.",
        ),
        "invalid" => (
            false,
            "Refused: a field is missing or invalid (the audit log names it). Nothing was changed.",
        ),
        "not_found" => (false, "Not found: it may have been pruned."),
        "failed" => (false, "The action failed; see the audit log."),
        _ => return None,
    };
    Some(Notice { ok, text })
}

/// The notice code for an action's answer (the JSON API's status).
pub(super) fn outcome_code(status: StatusCode, ok_code: &'static str) -> &'static str {
    match status.as_u16() {
        200..=299 => ok_code,
        400 | 422 => "invalid",
        404 => "not_found",
        409 => "conflict",
        _ => "failed",
    }
}

/// Header, navigation and footer of every v2 page.
pub(super) struct Chrome {
    pub(super) title: String,
    pub(super) nav: Vec<NavItem>,
    pub(super) user: String,
    pub(super) role: String,
    pub(super) csrf: String,
    pub(super) can_operate: bool,
    /// Backups are the admin's.
    pub(super) can_admin: bool,
    pub(super) notice: Option<Notice>,
    pub(super) css: String,
    pub(super) js: String,
    pub(super) version: &'static str,
    pub(super) commit: String,
    pub(super) store_line: String,
    pub(super) now: String,
    started: Instant,
}

impl Chrome {
    pub(super) fn new(
        state: &AppState,
        s: &Session,
        active: &str,
        title: &str,
        notice_code: Option<&str>,
    ) -> Chrome {
        let firing = state.alerts.firing().len();
        Chrome {
            title: title.to_string(),
            nav: NAV
                .iter()
                .map(|(id, label)| NavItem {
                    label,
                    href: if *id == "overview" {
                        "/dashboard".into()
                    } else {
                        format!("/dashboard/{id}")
                    },
                    current: *id == active,
                    badge: (*id == "alerts" && firing > 0).then_some(firing),
                })
                .collect(),
            user: s.caller.key_id.clone(),
            role: s.caller.role.to_string(),
            csrf: s.csrf.clone(),
            can_operate: s.can(Need::Operator),
            can_admin: s.can(Need::Admin),
            notice: notice(notice_code),
            css: assets::url("app.css"),
            js: assets::url("app.js"),
            version: build_info::VERSION,
            commit: build_info::commit_label(),
            store_line: format!("sled store {}", bytes(state.store.size_on_disk())),
            now: hms(state.clock.now()),
            started: Instant::now(),
        }
    }

    /// Milliseconds since the page's data was first read (shown in the footer).
    pub(super) fn elapsed_ms(&self) -> String {
        format!("{:.1}", self.started.elapsed().as_secs_f64() * 1000.0)
    }
}

/// How a status looks: a colour class, a shape and a word (never colour alone).
pub(super) struct Pill {
    pub(super) class: &'static str,
    pub(super) icon: &'static str,
    pub(super) word: String,
}

impl Pill {
    /// The same look with another word.
    pub(super) fn with_word(mut self, word: &str) -> Pill {
        self.word = capitalized(word);
        self
    }
}

fn capitalized(w: &str) -> String {
    let mut word = w.to_string();
    if let Some(f) = word.get_mut(0..1) {
        f.make_ascii_uppercase();
    }
    word
}

pub(super) fn pill(status: &str) -> Pill {
    let (class, icon) = match status {
        "succeeded" | "healthy" | "running_ok" | "ok" | "resolved" => ("ok", "●"),
        "stuck" | "degraded" | "warning" | "paused" => ("warn", "▲"),
        "dead" | "unhealthy" | "critical" | "failed" | "firing" | "stopped" => ("crit", "◆"),
        "running" => ("run", "◎"),
        "scheduled" => ("neutral", "◌"),
        "queued" => ("neutral", "○"),
        "info" => ("info", "●"),
        _ => ("neutral", "■"),
    };
    Pill {
        class,
        icon,
        word: capitalized(status),
    }
}

/// `12,345`.
pub(super) fn int(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// `954`, `4.1k`, `0.79 M`.
pub(super) fn compact(n: f64) -> String {
    if n >= 1_000_000.0 {
        format!("{:.2} M", n / 1_000_000.0)
    } else if n >= 10_000.0 {
        format!("{:.0}k", n / 1000.0)
    } else if n >= 1000.0 {
        format!("{:.1}k", n / 1000.0)
    } else if n.fract() == 0.0 {
        format!("{n:.0}")
    } else {
        format!("{n:.1}")
    }
}

pub(super) fn bytes(n: u64) -> String {
    let n = n as f64;
    if n >= 1e9 {
        format!("{:.2} GB", n / 1e9)
    } else if n >= 1e6 {
        format!("{:.1} MB", n / 1e6)
    } else {
        format!("{:.0} kB", n / 1e3)
    }
}

/// `47 s`, `18 min`, `3 h 05 min`, `2 d 4 h`.
pub(super) fn duration(secs: i64) -> String {
    let s = secs.max(0);
    match s {
        0..60 => format!("{s} s"),
        60..3600 => format!("{} min", s / 60),
        3600..86_400 => format!("{} h {:02} min", s / 3600, (s % 3600) / 60),
        _ => format!("{} d {} h", s / 86_400, (s % 86_400) / 3600),
    }
}

pub(super) fn hms(t: DateTime<Utc>) -> String {
    t.format("%H:%M:%S").to_string()
}

pub(super) fn date_time(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S").to_string()
}

/// An RFC 3339 time as `YYYY-MM-DD HH:MM:SS`, or as given when it does not parse.
pub(super) fn short_ts(ts: &str) -> String {
    DateTime::parse_from_rfc3339(ts)
        .map(|t| date_time(t.to_utc()))
        .unwrap_or_else(|_| ts.to_string())
}

/// A link to the next page of a list, keeping the filters.
pub(super) struct Pager {
    /// Shown: "Showing 1–25 of 10,643" or "25 shown".
    pub(super) summary: String,
    pub(super) newest: Option<String>,
    pub(super) older: Option<String>,
}

/// Build a query string from pairs, skipping empty values.
pub(super) fn query(pairs: &[(&str, &str)]) -> String {
    let parts: Vec<String> = pairs
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| format!("{k}={}", super::session::urlencode(v)))
        .collect();
    if parts.is_empty() {
        String::new()
    } else {
        format!("?{}", parts.join("&"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_well() {
        assert_eq!(int(10643), "10,643");
        assert_eq!(int(7), "7");
        assert_eq!(int(1_000_000), "1,000,000");
        assert_eq!(compact(954.0), "954");
        assert_eq!(compact(787_000.0), "787k");
        assert_eq!(compact(4100.0), "4.1k");
        assert_eq!(duration(47), "47 s");
        assert_eq!(duration(18 * 60 + 5), "18 min");
        assert_eq!(duration(3 * 3600 + 300), "3 h 05 min");
        assert_eq!(query(&[("status", "dead"), ("queue", "")]), "?status=dead");
    }

    struct Broken;
    impl std::fmt::Display for Broken {
        fn fmt(&self, _: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            Err(std::fmt::Error)
        }
    }

    #[derive(Template)]
    #[template(source = "<p>{{ broken }}</p>", ext = "html")]
    struct BrokenPage {
        broken: Broken,
    }

    #[test]
    fn a_render_error_is_a_500_page() {
        let resp = Page(BrokenPage { broken: Broken }).into_response();
        assert_eq!(resp.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert!(
            resp.headers()[axum::http::header::CONTENT_TYPE]
                .to_str()
                .unwrap()
                .starts_with("text/html")
        );
    }

    #[test]
    fn notices_come_from_a_fixed_list() {
        assert!(notice(Some("retried")).unwrap().ok);
        assert!(notice(Some("<script>")).is_none());
        assert_eq!(outcome_code(StatusCode::CONFLICT, "retried"), "conflict");
    }
}
