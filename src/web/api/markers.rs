//! `GET /api/events/markers?since=…&until=…` (viewer): what changed when, for the
//! dashboards to draw on their charts: deployments, flag changes, incident transitions,
//! maintenance windows and bursts of 429s. Oldest first. [`collect`] is the one list:
//! the overview's charts draw the same markers.

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
pub const MAX_MARKERS: usize = 1000;

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

/// One event on the time axis: what the API answers and the dashboard draws.
#[derive(Debug, Clone)]
pub struct Marker {
    pub at: DateTime<Utc>,
    /// `deployment`, `flag`, `incident`, `maintenance` or `rate_limit`.
    pub kind: &'static str,
    pub id: String,
    pub label: String,
    /// A few words for a chart's label (the full label is its tooltip).
    pub short: String,
}

/// Every marker between `since` and `until`, oldest first, at most [`MAX_MARKERS`].
/// `bursts`: also the minutes with [`RATE_LIMIT_BURST`] or more 429s (a scan of the
/// minutes; a chart of coarse buckets finds its bursts in its own series instead).
pub fn collect(
    state: &AppState,
    since: DateTime<Utc>,
    until: Option<DateTime<Utc>>,
    bursts: bool,
) -> Result<Vec<Marker>> {
    let within = |t: DateTime<Utc>| t >= since && until.is_none_or(|u| t <= u);
    let mut out: Vec<Marker> = Vec::new();
    let mut add =
        |at: DateTime<Utc>, kind: &'static str, id: &str, label: String, short: String| {
            if within(at) {
                out.push(Marker {
                    at,
                    kind,
                    id: id.to_string(),
                    label,
                    short,
                });
            }
        };

    let mut deployed = false;
    for a in state.alerts.list(None, MAX_MARKERS)? {
        if a.name == "new_deployment"
            && let Ok(t) = DateTime::parse_from_rfc3339(&a.fired_at)
        {
            let short = a
                .message
                .split(" (")
                .next()
                .unwrap_or("deployed")
                .to_string();
            let this = format!(
                "deployed {} ({})",
                state.instance.version, state.instance.commit
            );
            deployed |= a.message.starts_with(&this);
            add(
                t.to_utc(),
                "deployment",
                &a.id.to_string(),
                a.message,
                short,
            );
        }
    }
    // A start of the same build is a restart: a deployment marker too, unless this
    // start already has its `new_deployment` alert.
    let inst = &state.instance;
    if !inst.previous_started_at.is_empty()
        && !deployed
        && let Ok(t) = DateTime::parse_from_rfc3339(&inst.started_at)
    {
        add(
            t.to_utc(),
            "deployment",
            "",
            format!("server restarted ({} {})", inst.version, inst.commit),
            "restart".into(),
        );
    }
    for c in state.flags.changes_since(since, MAX_MARKERS)? {
        let word = if c.enabled { "on" } else { "off" };
        let short = format!("flag {} {word}", c.name);
        let mut label = short.clone();
        if !c.note.is_empty() {
            label.push_str(&format!(": {}", c.note));
        }
        add(c.at(), "flag", &c.name, label, short);
    }
    for i in state.incidents.list(MAX_MARKERS)? {
        let sev = i.severity.as_str();
        for (n, u) in i.updates.iter().enumerate() {
            let (label, short) = if n == 0 {
                (
                    format!("{sev} incident opened: {}", i.title),
                    format!("{sev} {}", crate::jobs::truncate(&i.title, 32)),
                )
            } else {
                (
                    format!("{sev} {}: {}", u.status.as_str(), i.title),
                    format!("{sev} {}", u.status.as_str()),
                )
            };
            add(at_ms(u.at_ms), "incident", &i.id, label, short);
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
            "maintenance".into(),
        );
        add(
            w.end(),
            "maintenance",
            &w.id,
            format!("maintenance ends: {}", w.reason),
            "maintenance ends".into(),
        );
    }
    if bursts {
        for (minute, n) in state.slo.rate_limited_minutes(minute_of(since))? {
            if n >= RATE_LIMIT_BURST {
                let t = at_ms(i64::try_from(minute * 60_000).unwrap_or(i64::MAX));
                add(
                    t,
                    "rate_limit",
                    "",
                    format!("{n} requests refused with 429 in one minute"),
                    format!("429 ×{n}"),
                );
            }
        }
    }
    out.sort_by_key(|m| m.at);
    out.truncate(MAX_MARKERS);
    Ok(out)
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
    let markers: Vec<Value> = collect(&state, since, until, true)?
        .into_iter()
        .map(|m| json!({"at": rfc3339(m.at), "kind": m.kind, "id": m.id, "label": m.label}))
        .collect();
    Ok(AppJson(json!({
        "ok": true,
        "since": rfc3339(since),
        "until": until.map(rfc3339),
        "markers": markers,
    })))
}
