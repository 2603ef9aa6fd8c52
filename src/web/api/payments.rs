//! Stripe's webhook (`POST /api/stripe/webhook`, signature-checked) and the payments
//! API: list, show, events, replay, reconcile.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use utoipa::IntoParams;
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{
    KnownFormat, Object, ObjectBuilder, OneOfBuilder, Schema, SchemaFormat, Type,
};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::app::AppState;
use crate::audit::NewEvent;
use crate::payments::store::EventOutcome;
use crate::payments::{EventFilter, PaymentFilter, SignatureError, WebhookError};
use crate::store::Commit;
use crate::web::access::Origin;
use crate::web::api::schemas::OkBody;
use crate::web::audit::audited;
use crate::web::auth::{Operator, Viewer};
use crate::web::error::{AppError, ErrorBody, Result};
use crate::web::extract::{AppJson, AppPath, AppQuery};

/// The payments API (viewer and operator routes, the general rate-limit class).
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list))
        .routes(routes!(events))
        .routes(routes!(replay))
        .routes(routes!(reconcile, record))
        .routes(routes!(show))
}

/// Stripe's webhook, signed instead of keyed; `web::api` puts it in the webhook class.
pub fn webhook_router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(webhook))
}

/// Most items one page may hold.
pub const MAX_LIMIT: usize = 500;

/// Audit a delivery from Stripe (no key: the actor is `stripe`; failures too, and a
/// stored event that failed to apply as `"ok": false`), make the event durable with its
/// audit record, then answer.
async fn answer(
    state: &AppState,
    origin: Origin,
    target: String,
    outcome: Result<(StatusCode, Value, Commit)>,
    audit_error: Option<String>,
) -> Response {
    let (ok, status, error) = match &outcome {
        Ok((s, _, _)) => (audit_error.is_none(), s.as_u16(), audit_error),
        Err(e) => (false, e.status.as_u16(), Some(e.message.clone())),
    };
    let event = NewEvent {
        request_id: origin.request_id,
        actor: None,
        actor_id: Some("stripe".to_string()),
        action: "stripe.webhook".to_string(),
        target,
        ip: Some(origin.ip),
        ok,
        status,
        error,
    };
    // The audit record syncs after the event was stored: one group commit for both.
    if let Err(e) = state.audit.record(event).await {
        return AppError::from(e).into_response();
    }
    match outcome {
        Ok((status, body, commit)) => match commit.durable().await {
            Ok(()) => (status, AppJson(body)).into_response(),
            Err(e) => AppError::from(e).into_response(),
        },
        Err(e) => e.into_response(),
    }
}

/// `POST /api/stripe/webhook`: verified over the raw body, stored once, applied. A
/// verified event is answered `200` once stored, even when applying it failed (it is
/// then a `failed_event`, replayable): a 5xx would only make Stripe resend it.
#[utoipa::path(post, path = "/api/stripe/webhook", tag = "payments",
    request_body(content = Object, description = "a Stripe event, as Stripe sends it; \
        `Stripe-Signature` is checked over the raw bytes before it is read"),
    params(("Stripe-Signature" = String, Header, description = "`t=<unix>,v1=<hex>[,v1=…]`")),
    responses(
        (status = 200, description = "stored (or a duplicate): id, type, outcome, duplicate, payment", body = OkBody),
        (status = 400, description = "missing or malformed header, timestamp outside tolerance, no matching signature, bad JSON", body = ErrorBody),
        (status = 503, description = "no STRIPE_WEBHOOK_SECRET is set", body = ErrorBody)),
    extensions(("x-required-role" = json!("signature"))))]
pub async fn webhook(
    State(state): State<AppState>,
    meta: Origin,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let header = headers.get("stripe-signature").map(|v| v.as_bytes());
    let (outcome, target, audit_error) = match state.payments.receive(header, &body).await {
        Ok(r) => {
            let failed = r.outcome == EventOutcome::Failed;
            state.slo.record_webhook(!failed);
            let mut v = json!({
                "ok": true,
                "id": r.id,
                "type": r.kind,
                "outcome": r.outcome.as_str(),
                "duplicate": r.duplicate,
                "payment": r.payment,
            });
            if let Some(e) = &r.error {
                v["error"] = Value::String(e.clone());
            }
            let audit_error = r.error.map(|e| format!("apply failed: {e}"));
            (
                Ok((StatusCode::OK, v, r.commit)),
                format!("stripe_event:{}", r.id),
                audit_error,
            )
        }
        Err(e) => {
            state.slo.record_webhook(false);
            let err = match &e {
                WebhookError::Store(s) => AppError::internal(anyhow::anyhow!("{s}")),
                WebhookError::Signature(SignatureError::NotConfigured) => {
                    AppError::unavailable(e.to_string())
                }
                _ => AppError::bad_request(e.to_string()),
            };
            (Err(err), "stripe_event".to_string(), None)
        }
    };
    answer(&state, meta, target, outcome, audit_error).await
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// pending, succeeded, partially_refunded, refunded, failed, canceled or expired
    /// (empty: any).
    #[param(schema_with = status_schema)]
    status: Option<String>,
    customer: Option<String>,
    /// RFC 3339; compared with Stripe's `created` (empty: no bound).
    #[param(schema_with = time_schema)]
    since: Option<String>,
    /// RFC 3339 (empty: no bound).
    #[param(schema_with = time_schema)]
    until: Option<String>,
    #[param(minimum = 1, maximum = 500)]
    limit: Option<usize>,
    /// The `next_cursor` of the previous page.
    cursor: Option<String>,
}

/// The payment states a list filters on (the dashboard offers the same).
pub const STATUSES: [&str; 7] = [
    "pending",
    "succeeded",
    "partially_refunded",
    "refunded",
    "failed",
    "canceled",
    "expired",
];

/// What `outcome` may be: an event's stored outcome, or a repeated delivery.
const OUTCOMES: [&str; 5] = ["applied", "duplicate", "ignored", "failed", "received"];

/// A value list for a filter; the empty value (`?status=`) is no filter, so it is
/// one of the values.
fn values_schema(values: &[&str]) -> Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(std::iter::once("").chain(values.iter().copied())))
        .build()
}

fn status_schema() -> Object {
    values_schema(&STATUSES)
}

fn outcome_schema() -> Object {
    values_schema(&OUTCOMES)
}

/// An RFC 3339 time, or empty (no bound).
fn time_schema() -> RefOr<Schema> {
    OneOfBuilder::new()
        .item(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime))),
        )
        .item(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .max_length(Some(0)),
        )
        .into()
}

fn unix_bound(name: &str, v: Option<String>) -> Result<Option<i64>> {
    v.filter(|s| !s.is_empty())
        .map(|s| {
            chrono::DateTime::parse_from_rfc3339(s.trim())
                .map(|t| t.timestamp())
                .map_err(|_| AppError::bad_request(format!("{name}: must be an RFC 3339 time")))
        })
        .transpose()
}

fn limit(v: Option<usize>) -> Result<usize> {
    let n = v.unwrap_or(50);
    if n == 0 || n > MAX_LIMIT {
        return Err(AppError::bad_request(format!(
            "limit: must be between 1 and {MAX_LIMIT}"
        )));
    }
    Ok(n)
}

/// Run a store read off the async threads (lists and reports walk trees).
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> std::result::Result<T, crate::store::StoreError> + Send + 'static,
) -> Result<T> {
    Ok(tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| AppError::internal(anyhow::anyhow!("payments task: {e}")))??)
}

/// `GET /api/payments?status=&customer=&since=&until=&limit=&cursor=` (viewer).
#[utoipa::path(get, path = "/api/payments", tag = "payments", params(ListQuery),
    responses((status = 200, description = "payments newest first, and the next page's cursor", body = OkBody)),
    extensions(("x-required-role" = json!("viewer"))))]
pub async fn list(
    State(state): State<AppState>,
    _: Viewer,
    AppQuery(mut q): AppQuery<ListQuery>,
) -> Result<AppJson<Value>> {
    // An empty parameter (`?status=`) is no filter.
    q.status = q.status.filter(|s| !s.is_empty());
    q.cursor = q.cursor.filter(|s| !s.is_empty());
    if let Some(s) = q.status.as_deref()
        && !STATUSES.contains(&s)
    {
        return Err(AppError::bad_request(format!(
            "status: unknown status {s:?} ({})",
            STATUSES.join(", ")
        )));
    }
    let filter = PaymentFilter {
        status: q.status,
        customer: q.customer.filter(|c| !c.is_empty()),
        since: unix_bound("since", q.since)?,
        until: unix_bound("until", q.until)?,
    };
    let limit = limit(q.limit)?;
    let p = state.payments.clone();
    let page = blocking(move || p.list(&filter, &q.cursor, limit)).await?;
    Ok(AppJson(json!({
        "ok": true,
        "count": page.items.len(),
        "payments": page.items,
        "next_cursor": page.next_cursor,
    })))
}

/// `GET /api/payments/{id}` (viewer): by intent, session, charge or invoice id.
#[utoipa::path(get, path = "/api/payments/{id}", tag = "payments",
    params(("id" = String, Path, description = "a PaymentIntent, checkout session, charge or invoice id")),
    responses((status = 200, description = "the payment with the events that built it", body = OkBody)),
    extensions(("x-required-role" = json!("viewer"))))]
pub async fn show(
    State(state): State<AppState>,
    _: Viewer,
    AppPath(id): AppPath<String>,
) -> Result<AppJson<Value>> {
    let p = state.payments.clone();
    let key = id.clone();
    match blocking(move || p.show(&key)).await? {
        Some(v) => Ok(AppJson(json!({"ok": true, "payment": v}))),
        None => Err(AppError::not_found(format!("no such payment: {id}"))),
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct EventsQuery {
    /// A Stripe event type (`charge.refunded`).
    #[serde(rename = "type")]
    kind: Option<String>,
    /// applied, duplicate, ignored, failed or received (empty: any).
    #[param(schema_with = outcome_schema)]
    outcome: Option<String>,
    #[param(minimum = 1, maximum = 500)]
    limit: Option<usize>,
    cursor: Option<String>,
}

/// `GET /api/payments/events?type=&outcome=&limit=&cursor=` (viewer): every delivery of
/// a verified event, newest first, with what became of it.
#[utoipa::path(get, path = "/api/payments/events", tag = "payments", params(EventsQuery),
    responses((status = 200, description = "deliveries newest first, and the next page's cursor", body = OkBody)),
    extensions(("x-required-role" = json!("viewer"))))]
pub async fn events(
    State(state): State<AppState>,
    _: Viewer,
    AppQuery(mut q): AppQuery<EventsQuery>,
) -> Result<AppJson<Value>> {
    // An empty parameter (`?outcome=`) is no filter.
    q.outcome = q.outcome.filter(|s| !s.is_empty());
    q.cursor = q.cursor.filter(|s| !s.is_empty());
    if let Some(o) = q.outcome.as_deref()
        && !OUTCOMES.contains(&o)
    {
        return Err(AppError::bad_request(format!(
            "outcome: unknown outcome {o:?} ({})",
            OUTCOMES.join(", ")
        )));
    }
    let filter = EventFilter {
        kind: q.kind.filter(|k| !k.is_empty()),
        outcome: q.outcome,
    };
    let limit = limit(q.limit)?;
    let p = state.payments.clone();
    let page = blocking(move || p.events(&filter, &q.cursor, limit)).await?;
    Ok(AppJson(json!({
        "ok": true,
        "count": page.items.len(),
        "events": page.items,
        "next_cursor": page.next_cursor,
    })))
}

/// `POST /api/payments/events/{id}/replay` (operator): apply a stored event again.
#[utoipa::path(post, path = "/api/payments/events/{id}/replay", tag = "payments",
    params(("id" = String, Path, description = "the event's `evt_…` id")),
    responses((status = 200, description = "applied again: its outcome (a failure names its error)", body = OkBody)),
    extensions(("x-required-role" = json!("operator"))))]
pub async fn replay(
    State(state): State<AppState>,
    Operator(caller): Operator,
    origin: Origin,
    AppPath(id): AppPath<String>,
) -> Response {
    let target = format!("stripe_event:{id}");
    let outcome = match state.payments.replay(&id).await {
        Ok(Some(r)) => Ok((
            StatusCode::OK,
            json!({
                "ok": true,
                "id": r.id,
                "type": r.kind,
                "outcome": r.outcome.as_str(),
                "error": r.error,
                "payment": r.payment,
            }),
            r.commit,
        )),
        Ok(None) => Err(AppError::not_found(format!("no such event: {id}"))),
        Err(e) => Err(e.into()),
    };
    audited(
        &state,
        origin,
        &caller,
        "payment.event.replay",
        target,
        outcome,
    )
    .await
}

/// `GET /api/payments/reconcile` (viewer): the report, and when one was last recorded.
#[utoipa::path(get, path = "/api/payments/reconcile", tag = "payments",
    responses((status = 200, description = "checked, totals per currency, issues, last_recorded", body = OkBody)),
    extensions(("x-required-role" = json!("viewer"))))]
pub async fn reconcile(State(state): State<AppState>, _: Viewer) -> Result<AppJson<Value>> {
    let p = state.payments.clone();
    let (mut report, last) = blocking(move || Ok((p.reconcile()?, p.last_report()?))).await?;
    report["last_recorded"] = last.map_or(Value::Null, |l| {
        json!({
            "recorded_at": l["recorded_at"],
            "checked": l["checked"],
            "issues": l["issues"].as_array().map_or(0, Vec::len),
        })
    });
    Ok(AppJson(report))
}

/// `POST /api/payments/reconcile` (operator): run it and keep the report with its time.
#[utoipa::path(post, path = "/api/payments/reconcile", tag = "payments",
    responses((status = 200, description = "the report, with its recorded_at", body = OkBody)),
    extensions(("x-required-role" = json!("operator"))))]
pub async fn record(
    State(state): State<AppState>,
    Operator(caller): Operator,
    origin: Origin,
) -> Response {
    let p = state.payments.clone();
    let outcome = blocking(move || p.record_reconcile())
        .await
        .map(|(report, commit)| (StatusCode::OK, report, commit));
    audited(
        &state,
        origin,
        &caller,
        "payments.reconcile",
        "payments".to_string(),
        outcome,
    )
    .await
}
