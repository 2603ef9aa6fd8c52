//! The payment record and how an event changes it.
//!
//! Stripe retries for days and does not keep order, so applying an event is a *join*:
//! every field is a set union, a maximum, or "the snapshot from the newest event" by
//! (event time, event id). Applying the same events in any order, any number of times,
//! gives the same record (only `updated_at` differs).

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::event::{Fact, Incoming, ObjectFacts};
use crate::clock::rfc3339;
use crate::store::Record;

/// What one Stripe object said, from the newest event about it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Snap {
    /// Event time (unix seconds) and event id: the order of snapshots.
    pub at: i64,
    pub event: String,
    pub id: String,
    pub amount: Option<i64>,
    pub currency: Option<String>,
    pub customer: Option<String>,
    pub email: Option<String>,
    pub metadata: BTreeMap<String, String>,
    pub created: i64,
}

impl Snap {
    fn newer_than(&self, other: &Snap) -> bool {
        (self.at, &self.event) > (other.at, &other.event)
    }
}

fn join_snap(slot: &mut Option<Snap>, new: Snap) {
    match slot {
        Some(old) if !new.newer_than(old) => {}
        _ => *slot = Some(new),
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Dispute {
    pub amount: i64,
    pub reason: String,
}

/// The fulfilment job of a payment: chosen (and stored) before it is enqueued, so a
/// crash between the two is finished later with the same id and never runs twice.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Fulfilment {
    pub job_id: String,
    pub kind: String,
    pub queue: Option<String>,
    /// JSON text.
    pub payload: String,
    pub state: FulfilmentState,
    /// When the job id was chosen (ms).
    pub at: i64,
    /// The job's outcome (`succeeded`, `dead`, `cancelled`), copied when it finished.
    pub outcome: Option<String>,
    pub outcome_at: Option<i64>,
    pub error: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum FulfilmentState {
    /// The id is stored; the job may not be enqueued yet.
    Pending,
    Enqueued,
    /// The metadata asked for a job we cannot enqueue (bad kind or payload).
    Invalid,
}

impl FulfilmentState {
    pub fn as_str(self) -> &'static str {
        match self {
            FulfilmentState::Pending => "pending",
            FulfilmentState::Enqueued => "enqueued",
            FulfilmentState::Invalid => "invalid",
        }
    }
}

/// One payment: a PaymentIntent, or a checkout session / invoice / charge until its
/// intent is known. Amounts in minor units.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Payment {
    pub id: String,
    /// Key of the time-ordered list (a UUIDv7 chosen when the record was created).
    pub list_key: String,
    pub session: Option<Snap>,
    pub intent: Option<Snap>,
    pub charge: Option<Snap>,
    pub invoice: Option<Snap>,
    pub charges: BTreeSet<String>,
    /// Cumulative refunded amount per charge (the largest seen).
    pub refunds: BTreeMap<String, i64>,
    pub disputes: BTreeMap<String, Dispute>,
    /// Unix seconds of the earliest `checkout.session.completed`.
    pub session_completed_at: Option<i64>,
    pub session_paid: bool,
    pub session_expired: bool,
    pub intent_succeeded: bool,
    pub charge_succeeded: bool,
    pub invoice_paid: bool,
    pub invoice_failed: bool,
    /// The newest failure: (event time, event id, message).
    pub failure: Option<(i64, String, String)>,
    pub canceled: Option<String>,
    pub events: BTreeSet<String>,
    pub fulfilment: Option<Fulfilment>,
    /// ms.
    pub first_seen_at: i64,
    pub updated_at: i64,
}

fn time(ms: i64) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

impl Record for Payment {
    const NAME: &'static str = "payment";
    const VERSION: u8 = 1;
}

/// Metadata keys that ask for a fulfilment job.
pub const JOB_KIND: &str = "job_kind";
pub const JOB_QUEUE: &str = "job_queue";
pub const JOB_PAYLOAD: &str = "job_payload";

impl Payment {
    pub fn new(id: &str, list_key: String, now_ms: i64) -> Payment {
        Payment {
            id: id.to_string(),
            list_key,
            session: None,
            intent: None,
            charge: None,
            invoice: None,
            charges: BTreeSet::new(),
            refunds: BTreeMap::new(),
            disputes: BTreeMap::new(),
            session_completed_at: None,
            session_paid: false,
            session_expired: false,
            intent_succeeded: false,
            charge_succeeded: false,
            invoice_paid: false,
            invoice_failed: false,
            failure: None,
            canceled: None,
            events: BTreeSet::new(),
            fulfilment: None,
            first_seen_at: now_ms,
            updated_at: now_ms,
        }
    }

    /// Join one event's facts into the record.
    pub fn apply(&mut self, ev: &Incoming, obj: &ObjectFacts, fact: &Fact, now_ms: i64) {
        let snap = Snap {
            at: ev.created,
            event: ev.id.clone(),
            id: obj.id.clone(),
            amount: obj.amount,
            currency: obj.currency.clone(),
            customer: obj.customer.clone(),
            email: obj.email.clone(),
            metadata: obj.metadata.clone(),
            created: obj.created,
        };
        self.events.insert(ev.id.clone());
        self.updated_at = now_ms;
        match fact {
            Fact::SessionCompleted { paid } => {
                join_snap(&mut self.session, snap);
                self.session_completed_at = Some(
                    self.session_completed_at
                        .map_or(ev.created, |t| t.min(ev.created)),
                );
                self.session_paid |= paid;
            }
            Fact::SessionExpired => {
                join_snap(&mut self.session, snap);
                self.session_expired = true;
            }
            Fact::IntentSucceeded | Fact::IntentFailed { .. } | Fact::IntentCanceled { .. } => {
                join_snap(&mut self.intent, snap);
                match fact {
                    Fact::IntentSucceeded => self.intent_succeeded = true,
                    Fact::IntentFailed { error } => self.note_failure(ev, error),
                    Fact::IntentCanceled { reason } => {
                        self.canceled = Some(reason.clone()).max(self.canceled.take());
                    }
                    _ => {}
                }
            }
            Fact::ChargeSucceeded | Fact::ChargeRefunded { .. } => {
                self.charges.insert(obj.id.clone());
                join_snap(&mut self.charge, snap);
                match fact {
                    Fact::ChargeSucceeded => self.charge_succeeded = true,
                    Fact::ChargeRefunded { amount_refunded } => {
                        let r = self.refunds.entry(obj.id.clone()).or_insert(0);
                        *r = (*r).max(*amount_refunded);
                    }
                    _ => {}
                }
            }
            Fact::Dispute { amount, reason } => {
                if let Some(ch) = &obj.charge {
                    self.charges.insert(ch.clone());
                }
                self.disputes.insert(
                    obj.id.clone(),
                    Dispute {
                        amount: *amount,
                        reason: reason.clone(),
                    },
                );
            }
            Fact::InvoicePaid | Fact::InvoiceFailed => {
                join_snap(&mut self.invoice, snap);
                match fact {
                    Fact::InvoicePaid => self.invoice_paid = true,
                    _ => {
                        self.invoice_failed = true;
                        self.note_failure(ev, "invoice payment failed");
                    }
                }
            }
        }
    }

    fn note_failure(&mut self, ev: &Incoming, message: &str) {
        let f = (ev.created, ev.id.clone(), message.to_string());
        if self
            .failure
            .as_ref()
            .is_none_or(|old| (f.0, &f.1) > (old.0, &old.1))
        {
            self.failure = Some(f);
        }
    }

    /// Money arrived (intent, charge, paid checkout or invoice).
    pub fn paid(&self) -> bool {
        self.intent_succeeded || self.charge_succeeded || self.session_paid || self.invoice_paid
    }

    /// The amount charged: the intent's, else the charge's, invoice's or session's.
    pub fn amount(&self) -> Option<i64> {
        [&self.intent, &self.charge, &self.invoice, &self.session]
            .into_iter()
            .find_map(|s| s.as_ref().and_then(|s| s.amount))
    }

    fn first<T>(&self, f: impl Fn(&Snap) -> Option<T>) -> Option<T> {
        [&self.intent, &self.charge, &self.invoice, &self.session]
            .into_iter()
            .find_map(|s| s.as_ref().and_then(&f))
    }

    pub fn currency(&self) -> String {
        self.first(|s| s.currency.clone()).unwrap_or_default()
    }

    pub fn customer(&self) -> Option<String> {
        self.first(|s| s.customer.clone())
    }

    pub fn refunded(&self) -> i64 {
        self.refunds.values().sum()
    }

    /// Stripe's `created` of the earliest object seen.
    pub fn created(&self) -> i64 {
        [&self.session, &self.intent, &self.charge, &self.invoice]
            .into_iter()
            .filter_map(|s| s.as_ref().map(|s| s.created))
            .min()
            .unwrap_or(self.first_seen_at / 1000)
    }

    /// Effective metadata: the intent's (and charge's, invoice's), overlaid by the
    /// checkout session's, where fulfilment instructions usually live.
    pub fn metadata(&self) -> BTreeMap<String, String> {
        let mut m = BTreeMap::new();
        for s in [&self.invoice, &self.charge, &self.intent, &self.session]
            .into_iter()
            .flatten()
        {
            m.extend(s.metadata.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
        m
    }

    pub fn status(&self) -> &'static str {
        if self.paid() {
            let refunded = self.refunded();
            match self.amount() {
                Some(a) if refunded >= a && a > 0 => "refunded",
                _ if refunded > 0 => "partially_refunded",
                _ => "succeeded",
            }
        } else if self.canceled.is_some() {
            "canceled"
        } else if self.session_expired {
            "expired"
        } else if self.failure.is_some() {
            "failed"
        } else {
            "pending"
        }
    }

    pub fn to_json(&self) -> Value {
        let amount = self.amount();
        let refunded = self.refunded();
        let disputes: Vec<Value> = self
            .disputes
            .iter()
            .map(|(id, d)| json!({"id": id, "amount": d.amount, "reason": d.reason}))
            .collect();
        json!({
            "id": self.id,
            "status": self.status(),
            "amount": amount,
            "currency": self.currency(),
            "amount_refunded": refunded,
            "net": amount.map(|a| a - refunded),
            "customer": self.customer(),
            "email": self.first(|s| s.email.clone()),
            "checkout_session": self.session.as_ref().map(|s| &s.id),
            "checkout_amount": self.session.as_ref().and_then(|s| s.amount),
            "payment_intent": self.intent.as_ref().map(|s| &s.id),
            "invoice": self.invoice.as_ref().map(|s| &s.id),
            "charges": self.charges,
            "disputes": disputes,
            "metadata": self.metadata(),
            "failure": self.failure.as_ref().map(|f| &f.2),
            "canceled": self.canceled,
            "event_ids": self.events,
            "fulfilment": self.fulfilment.as_ref().map(|f| json!({
                "job_id": f.job_id,
                "kind": f.kind,
                "queue": f.queue,
                "state": f.state.as_str(),
                "outcome": f.outcome,
                "outcome_at": f.outcome_at.map(|t| rfc3339(time(t))),
                "error": f.error,
            })),
            "created": chrono::DateTime::from_timestamp(self.created(), 0).map(rfc3339),
            "updated_at": rfc3339(time(self.updated_at)),
        })
    }
}
