//! `GET /api/events/markers?since=…&until=…` (viewer): what changed when, for the
//! dashboards to draw on their charts: deployments, flag changes, incident transitions,
//! maintenance windows and bursts of 429s. Oldest first.

use axum::extract::State;
use chrono::{DateTime, Duration, Utc};
use serde::Deserialize;
use serde_json::{Value, json};
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::app::AppState;
use crate::clock::rfc3339;
use crate::slo::minute_of;
use crate::web::api::schemas::OkBody;
use crate::web::auth::Viewer;
use crate::web::error::{AppError, Result};
use crate::web::extract::{AppJson, AppQuery};

/// A minute with at least this many refused requests is a burst worth a marker.
pub const RATE_LIMIT_BURST: u64 = 10;
/// Markers of one answer at most.
const MAX_MARKERS: usize = 1000;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct MarkersQuery {
    /// RFC 3339; default a day ago.
    #[param(format = DateTime)]
    since: Option<String>,
    /// RFC 3339; default no end.
    #[param(format = DateTime)]
    until: Option<String>,
}

fn parse(field: &str, v: &str) -> Result<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(v)
        .map(|t| t.to_utc())
        .map_err(|e| AppError::bad_request(format!("{field}: expected RFC 3339 ({e})")))
}

fn at_ms(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

/// `since` defaults to a day ago, `until` to no end (planned windows show ahead).
#[utoipa::path(get, path = "/api/events/markers", tag = "markers", params(MarkersQuery),
    responses((status = 200, description = "markers (`kind`, `at`, `id`, `label`), oldest first", body = OkBody)),
    extensions(("x-required-role" = json!("viewer"))))]
pub async fn list(
    State(state): State<AppState>,
    _: Viewer,
    AppQuery(q): AppQuery<MarkersQuery>,
) -> Result<AppJson<Value>> {
    let now = state.clock.now();
    let since = match &q.since {
        Some(s) => parse("since", s)?,
        None => now - Duration::days(1),
    };
    let until = q.until.as_deref().map(|u| parse("until", u)).transpose()?;
    let within = |t: DateTime<Utc>| t >= since && until.is_none_or(|u| t <= u);
    let mut out: Vec<(DateTime<Utc>, Value)> = Vec::new();
    let mut add = |t: DateTime<Utc>, kind: &str, id: &str, label: String| {
        if within(t) {
            out.push((
                t,
                json!({"at": rfc3339(t), "kind": kind, "id": id, "label": label}),
            ));
        }
    };

    for a in state.alerts.list(None, MAX_MARKERS)? {
        if a.name == "new_deployment"
            && let Ok(t) = DateTime::parse_from_rfc3339(&a.fired_at)
        {
            add(t.to_utc(), "deployment", &a.id.to_string(), a.message);
        }
    }
    for c in state.flags.changes_since(since, MAX_MARKERS)? {
        let word = if c.enabled { "on" } else { "off" };
        let mut label = format!("flag {} {word}", c.name);
        if !c.note.is_empty() {
            label.push_str(&format!(": {}", c.note));
        }
        add(c.at(), "flag", &c.name, label);
    }
    for i in state.incidents.list(MAX_MARKERS)? {
        for (n, u) in i.updates.iter().enumerate() {
            let label = if n == 0 {
                format!("{} incident opened: {}", i.severity.as_str(), i.title)
            } else {
                format!("{} {}: {}", i.severity.as_str(), u.status.as_str(), i.title)
            };
            add(at_ms(u.at_ms), "incident", &i.id, label);
        }
    }
    for w in state
        .maintenance
        .list()?
        .iter()
        .filter(|w| !w.is_cancelled())
    {
        add(
            w.start(),
            "maintenance",
            &w.id,
            format!("maintenance starts: {}", w.reason),
        );
        add(
            w.end(),
            "maintenance",
            &w.id,
            format!("maintenance ends: {}", w.reason),
        );
    }
    for (minute, n) in state.slo.rate_limited_minutes(minute_of(since))? {
        if n >= RATE_LIMIT_BURST {
            let t = at_ms(i64::try_from(minute * 60_000).unwrap_or(i64::MAX));
            add(
                t,
                "rate_limit",
                "",
                format!("{n} requests refused with 429 in one minute"),
            );
        }
    }
    out.sort_by_key(|(t, _)| *t);
    out.truncate(MAX_MARKERS);
    let markers: Vec<Value> = out.into_iter().map(|(_, v)| v).collect();
    Ok(AppJson(json!({
        "ok": true,
        "since": rfc3339(since),
        "until": until.map(rfc3339),
        "markers": markers,
    })))
}
