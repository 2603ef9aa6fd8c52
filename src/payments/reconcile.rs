//! Reconciliation: what in the ledger does not add up, with totals per currency.
//!
//! Issue kinds: `missing_confirmation`, `unfulfilled`, `fulfilment_paused`,
//! `amount_mismatch`, `over_refund`, `failed_event`, `stale_pending`, `disputed`.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::ledger::{FulfilmentState, JOB_KIND, Payment};
use super::store::StoredReport;
use super::{Fulfiller, Payments};
use crate::clock::rfc3339;
use crate::store::{Commit, StoreError};

/// A payment still pending after this long is stale.
pub const STALE_PENDING_SECS: i64 = 24 * 3600;

#[derive(Debug, Default, Clone, Copy, PartialEq)]
struct Totals {
    count: u64,
    gross: i64,
    refunded: i64,
}

/// One thing to look at.
#[derive(Debug, Clone, PartialEq)]
pub struct Issue {
    pub kind: &'static str,
    pub payment: Option<String>,
    pub detail: String,
}

/// The issues of one payment at `now` (unix seconds).
pub fn payment_issues(
    p: &Payment,
    now: i64,
    grace_secs: u64,
    fulfiller: &dyn Fulfiller,
    enabled: bool,
) -> Vec<Issue> {
    let mut out = Vec::new();
    let mut issue = |kind, detail: String| {
        out.push(Issue {
            kind,
            payment: Some(p.id.clone()),
            detail,
        })
    };
    let confirmed = p.intent_succeeded || p.charge_succeeded || p.invoice_paid;
    if let Some(at) = p.session_completed_at
        && !confirmed
        && now - at > grace_secs as i64
    {
        issue(
            "missing_confirmation",
            format!(
                "checkout {} completed {} s ago and no payment_intent.succeeded or charge.succeeded arrived",
                p.session.as_ref().map_or("?", |s| s.id.as_str()),
                now - at
            ),
        );
    }
    if p.paid()
        && let Some(kind) = p.metadata().get(JOB_KIND)
    {
        match &p.fulfilment {
            None if enabled => issue(
                "unfulfilled",
                format!("paid, and no {kind} job was enqueued"),
            ),
            None => issue(
                "fulfilment_paused",
                format!("paid; its {kind} job waits until payments.fulfilment is on"),
            ),
            Some(f) if f.state == FulfilmentState::Invalid => issue(
                "unfulfilled",
                format!(
                    "its {kind} job cannot be enqueued: {}",
                    f.error.as_deref().unwrap_or("")
                ),
            ),
            Some(f) if f.outcome.as_deref() == Some("succeeded") => {}
            Some(f) => {
                // The copied outcome may be stale (a dead job retried by hand): ask the
                // queue only then, or when no outcome arrived yet.
                let live = fulfiller.job_status(&f.job_id);
                match (live.as_deref(), f.outcome.as_deref()) {
                    (Some("dead") | Some("cancelled"), _)
                    | (None, Some("dead") | Some("cancelled")) => issue(
                        "unfulfilled",
                        format!(
                            "its {kind} job {} is {}{}",
                            f.job_id,
                            live.as_deref().or(f.outcome.as_deref()).unwrap_or("?"),
                            f.error
                                .as_deref()
                                .map(|e| format!(": {e}"))
                                .unwrap_or_default()
                        ),
                    ),
                    (None, None) => issue(
                        "unfulfilled",
                        format!("its {kind} job {} is missing from the queue", f.job_id),
                    ),
                    _ => {}
                }
            }
        }
    }
    if let (Some(s), Some(i)) = (&p.session, &p.intent)
        && let (Some(sa), Some(ia)) = (s.amount, i.amount)
        && sa != ia
    {
        issue(
            "amount_mismatch",
            format!(
                "checkout {} total {sa} ≠ payment intent {} amount {ia}",
                s.id, i.id
            ),
        );
    }
    let refunded = p.refunded();
    if let Some(a) = p.amount()
        && refunded > a
    {
        issue(
            "over_refund",
            format!("refunded {refunded} of {a} {}", p.currency()),
        );
    }
    if p.status() == "pending" && now - p.created() > STALE_PENDING_SECS {
        issue(
            "stale_pending",
            format!("pending for {} h", (now - p.created()) / 3600),
        );
    }
    for (id, d) in &p.disputes {
        issue(
            "disputed",
            format!("dispute {id}: {} {} ({})", d.amount, p.currency(), d.reason),
        );
    }
    out
}

impl Payments {
    /// The report `GET /api/payments/reconcile` answers.
    pub fn reconcile(&self) -> Result<Value, StoreError> {
        let now = self.clock().now().timestamp();
        let grace = self.settings().grace_secs;
        let fulfiller = self.fulfiller();
        let enabled = fulfiller.fulfilment_enabled();
        let mut checked = 0u64;
        let mut totals: BTreeMap<String, Totals> = BTreeMap::new();
        let mut issues = Vec::new();
        self.store().for_each_payment(&mut |p| {
            checked += 1;
            if p.paid() {
                let t = totals.entry(p.currency()).or_default();
                t.count += 1;
                t.gross += p.amount().unwrap_or(0);
                t.refunded += p.refunded();
            }
            issues.extend(payment_issues(&p, now, grace, fulfiller, enabled));
            Ok(())
        })?;
        for e in self.store().failed_events()? {
            issues.push(Issue {
                kind: "failed_event",
                payment: e.payment.clone(),
                detail: format!(
                    "{} ({}) failed to apply: {}; replay with POST /api/payments/events/{}/replay",
                    e.id,
                    e.kind,
                    e.error.as_deref().unwrap_or(""),
                    e.id
                ),
            });
        }
        let totals: serde_json::Map<String, Value> = totals
            .into_iter()
            .map(|(c, t)| {
                (
                    c,
                    json!({"count": t.count, "gross": t.gross, "refunded": t.refunded, "net": t.gross - t.refunded}),
                )
            })
            .collect();
        let mut by_kind: BTreeMap<&str, u64> = BTreeMap::new();
        for i in &issues {
            *by_kind.entry(i.kind).or_default() += 1;
        }
        let issues: Vec<Value> = issues
            .into_iter()
            .map(|i| json!({"kind": i.kind, "payment": i.payment, "detail": i.detail}))
            .collect();
        Ok(json!({
            "ok": true,
            "generated_at": rfc3339(self.clock().now()),
            "checked": checked,
            "fulfilment_enabled": enabled,
            "totals": totals,
            "issue_counts": by_kind,
            "issues": issues,
        }))
    }

    /// Run a reconciliation and keep the report with its time (the dashboard shows the
    /// last one).
    pub fn record_reconcile(&self) -> Result<(Value, Commit), StoreError> {
        let mut report = self.reconcile()?;
        let at = self.clock().now();
        report["recorded_at"] = Value::String(rfc3339(at));
        let commit = self.store().save_report(&StoredReport {
            at: at.timestamp_millis(),
            json: report.to_string(),
        })?;
        Ok((report, commit))
    }

    /// The last recorded report.
    pub fn last_report(&self) -> Result<Option<Value>, StoreError> {
        Ok(self
            .store()
            .last_report()?
            .and_then(|r| serde_json::from_str(&r.json).ok()))
    }

    /// The scheduled run (the `payments.reconcile` job): finish waiting fulfilments,
    /// then record a report. Returns the job's result.
    pub async fn scheduled_reconcile(&self) -> Result<Value, StoreError> {
        let resumed = self.resume_fulfilment().await?;
        let (report, commit) = self.record_reconcile()?;
        commit.durable().await?;
        Ok(json!({
            "checked": report["checked"],
            "issues": report["issues"].as_array().map_or(0, Vec::len),
            "fulfilments_resumed": resumed,
            "recorded_at": report["recorded_at"],
        }))
    }
}
