//! `/dashboard/payments`: the ledger (filters, pages by cursor), the last recorded
//! reconciliation with its issues, and "Reconcile now" (the API's `POST
//! /api/payments/reconcile`, so the click is the same report and the same audit event).

use askama::Template;
use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chrono::NaiveDate;
use serde::Deserialize;
use serde_json::Value;

use crate::app::AppState;
use crate::payments::PaymentFilter;
use crate::web::access::Origin;
use crate::web::api;
use crate::web::auth::Operator;
use crate::web::error::AppError;
use crate::web::extract::AppQuery;

use super::session::{Action, Button, Session, see_other};
use super::view::{
    Chrome, ErrorPage, Page, PageResult, Pager, Pill, int, outcome_code, page_err, pill, query,
    short_ts,
};

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/dashboard/payments", get(list))
        .route("/dashboard/payments/reconcile", post(reconcile))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PaymentsQuery {
    #[serde(default)]
    status: String,
    #[serde(default)]
    customer: String,
    /// `YYYY-MM-DD` (UTC), compared with Stripe's `created`.
    #[serde(default)]
    since: String,
    #[serde(default)]
    until: String,
    cursor: Option<String>,
    notice: Option<String>,
}

pub(super) struct PaymentRow {
    pub(super) id: String,
    pub(super) pill: Pill,
    pub(super) amount: String,
    pub(super) refunded: String,
    pub(super) customer: String,
    pub(super) email: String,
    pub(super) created: String,
    pub(super) fulfilment: Option<Pill>,
    pub(super) fulfil_job: String,
    pub(super) failure: String,
}

pub(super) struct IssueRow {
    /// Money or data that disagrees is critical; what waits is a warning.
    pub(super) pill: Pill,
    pub(super) kind: String,
    pub(super) payment: String,
    pub(super) detail: String,
}

/// The last recorded reconciliation.
pub(super) struct Report {
    pub(super) recorded: String,
    pub(super) checked: String,
    pub(super) totals: Vec<(String, String, String, String)>,
    pub(super) counts: Vec<(String, u64)>,
    pub(super) issues: Vec<IssueRow>,
    pub(super) more: usize,
}

#[derive(Template)]
#[template(path = "v2/payments.html")]
struct PaymentsPage {
    chrome: Chrome,
    q: PaymentsQuery,
    statuses: &'static [&'static str],
    rows: Vec<PaymentRow>,
    pager: Pager,
    report: Option<Report>,
}

const PER_PAGE: usize = 50;
/// Issues listed on the page; the API has them all.
const ISSUES_SHOWN: usize = 50;

/// Cents (or the currency's minor unit) as `1,234.50 USD`; zero-decimal currencies whole.
pub(super) fn money(minor: i64, currency: &str) -> String {
    const WHOLE: &[&str] = &[
        "bif", "clp", "djf", "gnf", "jpy", "kmf", "krw", "mga", "pyg", "rwf", "ugx", "vnd", "vuv",
        "xaf", "xof", "xpf",
    ];
    let cur = currency.to_uppercase();
    let sign = if minor < 0 { "-" } else { "" };
    let abs = minor.unsigned_abs();
    if WHOLE.contains(&currency.to_lowercase().as_str()) {
        format!("{sign}{} {cur}", int(abs))
    } else {
        format!("{sign}{}.{:02} {cur}", int(abs / 100), abs % 100)
    }
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn day_bound(field: &str, v: &str, end: bool) -> Result<Option<i64>, ErrorPage> {
    let v = v.trim();
    if v.is_empty() {
        return Ok(None);
    }
    let d = NaiveDate::parse_from_str(v, "%Y-%m-%d").map_err(|_| {
        page_err(AppError::bad_request(format!(
            "{field}: expected YYYY-MM-DD"
        )))
    })?;
    let t = if end {
        d.and_hms_opt(23, 59, 59)
    } else {
        d.and_hms_opt(0, 0, 0)
    };
    Ok(t.map(|t| t.and_utc().timestamp()))
}

impl PaymentRow {
    fn of(p: &Value) -> PaymentRow {
        let cur = text(&p["currency"]);
        let f = &p["fulfilment"];
        PaymentRow {
            id: text(&p["id"]),
            pill: pill(match p["status"].as_str().unwrap_or("") {
                "succeeded" => "succeeded",
                "pending" => "queued",
                "partially_refunded" | "refunded" => "warning",
                "failed" => "failed",
                _ => "cancelled",
            })
            .with_word(&text(&p["status"]).replace('_', " ")),
            amount: p["amount"]
                .as_i64()
                .map(|a| money(a, &cur))
                .unwrap_or_else(|| "—".into()),
            refunded: match p["amount_refunded"].as_i64() {
                Some(r) if r > 0 => money(r, &cur),
                _ => String::new(),
            },
            customer: text(&p["customer"]),
            email: text(&p["email"]),
            created: p["created"].as_str().map(short_ts).unwrap_or_default(),
            // The job's outcome once known, else where the fulfilment stands.
            fulfilment: f["state"].as_str().map(|st| {
                let word = f["outcome"].as_str().unwrap_or(st);
                pill(match word {
                    "succeeded" => "succeeded",
                    "dead" | "failed" | "cancelled" | "invalid" => "failed",
                    "pending" => "scheduled",
                    _ => "queued",
                })
                .with_word(word)
            }),
            fulfil_job: text(&f["job_id"]),
            failure: text(&p["failure"]),
        }
    }
}

fn report(last: Option<Value>) -> Option<Report> {
    let r = last?;
    let issues: Vec<&Value> = r["issues"]
        .as_array()
        .map(|a| a.iter().collect())
        .unwrap_or_default();
    Some(Report {
        recorded: r["recorded_at"].as_str().map(short_ts).unwrap_or_default(),
        checked: int(r["checked"].as_u64().unwrap_or(0)),
        totals: r["totals"]
            .as_object()
            .map(|m| {
                m.iter()
                    .map(|(cur, t)| {
                        let m = |k: &str| money(t[k].as_i64().unwrap_or(0), cur);
                        (
                            format!(
                                "{} {}",
                                int(t["count"].as_u64().unwrap_or(0)),
                                cur.to_uppercase()
                            ),
                            m("gross"),
                            m("refunded"),
                            m("net"),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default(),
        counts: r["issue_counts"]
            .as_object()
            .map(|m| {
                m.iter()
                    .map(|(k, n)| (k.clone(), n.as_u64().unwrap_or(0)))
                    .collect()
            })
            .unwrap_or_default(),
        more: issues.len().saturating_sub(ISSUES_SHOWN),
        issues: issues
            .into_iter()
            .take(ISSUES_SHOWN)
            .map(|i| IssueRow {
                pill: pill(match i["kind"].as_str().unwrap_or("") {
                    "failed_event" | "amount_mismatch" | "over_refund" | "disputed" => "critical",
                    _ => "warning",
                }),
                kind: text(&i["kind"]),
                payment: text(&i["payment"]),
                detail: text(&i["detail"]),
            })
            .collect(),
    })
}

async fn list(
    State(state): State<AppState>,
    session: Session,
    AppQuery(mut q): AppQuery<PaymentsQuery>,
) -> PageResult {
    q.cursor = q.cursor.filter(|c| !c.is_empty());
    if !q.status.is_empty() && !api::payments::STATUSES.contains(&q.status.as_str()) {
        return Err(page_err(AppError::bad_request(format!(
            "status: unknown status {:?} ({})",
            q.status,
            api::payments::STATUSES.join(", ")
        ))));
    }
    let filter = PaymentFilter {
        status: Some(q.status.clone()).filter(|s| !s.is_empty()),
        customer: Some(q.customer.trim().to_string()).filter(|s| !s.is_empty()),
        since: day_bound("since", &q.since, false)?,
        until: day_bound("until", &q.until, true)?,
    };
    let payments = state.payments.clone();
    let cursor = q.cursor.clone();
    let (page, last) = tokio::task::spawn_blocking(move || {
        Ok::<_, crate::store::StoreError>((
            payments.list(&filter, &cursor, PER_PAGE)?,
            payments.last_report()?,
        ))
    })
    .await
    .map_err(|e| page_err(anyhow::anyhow!("payments page task: {e}")))?
    .map_err(page_err)?;
    let rows: Vec<PaymentRow> = page.items.iter().map(PaymentRow::of).collect();
    let keep = [
        ("status", q.status.as_str()),
        ("customer", q.customer.as_str()),
        ("since", q.since.as_str()),
        ("until", q.until.as_str()),
    ];
    let pager = Pager {
        summary: format!("{} payments shown, newest first", rows.len()),
        newest: q
            .cursor
            .as_ref()
            .map(|_| format!("/dashboard/payments{}", query(&keep))),
        older: page.next_cursor.map(|c| {
            let mut p = keep.to_vec();
            p.push(("cursor", c.as_str()));
            format!("/dashboard/payments{}", query(&p))
        }),
    };
    let page = PaymentsPage {
        chrome: Chrome::new(
            &state,
            &session,
            "payments",
            "Payments",
            q.notice.as_deref(),
        ),
        q,
        statuses: &api::payments::STATUSES,
        rows,
        pager,
        report: report(last),
    };
    Ok(Page(page).into_response())
}

/// `POST /dashboard/payments/reconcile`: run and record a reconciliation, then back.
async fn reconcile(
    State(state): State<AppState>,
    origin: Origin,
    Action { session, .. }: Action<Button>,
) -> Response {
    let answer = api::payments::record(State(state), Operator(session.caller), origin).await;
    see_other(&format!(
        "/dashboard/payments?notice={}",
        outcome_code(answer.status(), "reconciled")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn money_reads_in_major_units() {
        assert_eq!(money(123_450, "usd"), "1,234.50 USD");
        assert_eq!(money(-5, "eur"), "-0.05 EUR");
        assert_eq!(money(1500, "jpy"), "1,500 JPY");
    }
}
