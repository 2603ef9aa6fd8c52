//! `GET /api/audit`: the audit trail, newest first, with filters and a cursor.

use axum::extract::State;
use serde::Deserialize;
use serde_json::{Value, json};

use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::app::AppState;
use crate::audit::Filter;
use crate::clock::rfc3339;
use crate::web::api::schemas::OkBody;
use crate::web::auth::Viewer;
use crate::web::error::{AppError, Result};
use crate::web::extract::{AppJson, AppQuery, in_range};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list))
}

/// Most events one page may hold.
pub const MAX_LIMIT: usize = 1000;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// Only successes (`true`) or only failures (`false`).
    ok: Option<bool>,
    /// An action such as `auth.failed` (empty: any).
    action: Option<String>,
    /// A caller's key id (empty: any).
    actor: Option<String>,
    /// A client address, IPv4 or IPv6 (empty: any): what one address did, e.g. the
    /// runbook's abuse check `?ip=203.0.113.9&ok=false`.
    #[param(schema_with = ip_schema)]
    ip: Option<String>,
    /// At or after this time.
    #[param(format = DateTime)]
    since: Option<String>,
    /// At or before this time.
    #[param(format = DateTime)]
    until: Option<String>,
    /// 1 to 1000, default 100.
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<usize>,
    /// The `next_cursor` of the previous page.
    #[param(minimum = 0, maximum = 9_223_372_036_854_775_807_i64)]
    cursor: Option<u64>,
}

fn time_bound(name: &str, v: Option<String>) -> Result<Option<String>> {
    v.map(|s| {
        chrono::DateTime::parse_from_rfc3339(s.trim())
            .map(|t| rfc3339(t.to_utc()))
            .map_err(|_| AppError::bad_request(format!("{name} must be an RFC 3339 time")))
    })
    .transpose()
}

/// `ipv4`, `ipv6` or empty: what [`client_address`] accepts, so generated requests
/// (schemathesis) stay within it.
fn ip_schema() -> utoipa::openapi::schema::Schema {
    use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, SchemaFormat, Type};
    let string = |format: Option<&str>| {
        let b = ObjectBuilder::new().schema_type(Type::String);
        match format {
            Some(f) => b.format(Some(SchemaFormat::Custom(f.into()))),
            None => b.max_length(Some(0)),
        }
    };
    OneOfBuilder::new()
        .item(string(Some("ipv4")))
        .item(string(Some("ipv6")))
        .item(string(None))
        .build()
        .into()
}

/// An `ip` filter in the form events store it (`::1`, not `0:0:0:0:0:0:0:1`).
fn client_address(v: Option<String>) -> Result<Option<String>> {
    v.filter(|s| !s.trim().is_empty())
        .map(|s| {
            s.trim()
                .parse::<std::net::IpAddr>()
                .map(|ip| ip.to_string())
                .map_err(|_| AppError::bad_request("ip must be an IPv4 or IPv6 address"))
        })
        .transpose()
}

/// `?ok=false&action=auth.failed&actor=<key id>&ip=<address>&since=..&until=..&limit=50&cursor=..`
#[utoipa::path(get, path = "/api/audit", tag = "audit", params(ListQuery),
    responses((status = 200, body = OkBody)),
    extensions(("x-required-role" = json!("viewer"))))]
pub async fn list(
    State(state): State<AppState>,
    _caller: Viewer,
    AppQuery(q): AppQuery<ListQuery>,
) -> Result<AppJson<Value>> {
    let limit = q.limit.unwrap_or(100);
    if limit == 0 || limit > MAX_LIMIT {
        return Err(AppError::bad_request(format!(
            "limit must be between 1 and {MAX_LIMIT}"
        )));
    }
    let filter = Filter {
        ok: q.ok,
        action: q.action.filter(|s| !s.is_empty()),
        actor: q.actor.filter(|s| !s.is_empty()),
        ip: client_address(q.ip)?,
        since: time_bound("since", q.since)?,
        until: time_bound("until", q.until)?,
        before: q
            .cursor
            .map(|c| in_range("cursor", c, 0, i64::MAX as u64))
            .transpose()?,
        limit,
    };
    let audit = state.audit.clone();
    let (events, next) = tokio::task::spawn_blocking(move || audit.query(&filter))
        .await
        .map_err(|e| AppError::internal(anyhow::anyhow!("audit query task: {e}")))??;
    let events: Vec<Value> = events.iter().map(|e| e.to_json()).collect();
    Ok(AppJson(json!({
        "ok": true,
        "count": events.len(),
        "events": events,
        "next_cursor": next,
    })))
}
