//! Payments: Stripe webhook intake, the event log, the ledger, fulfilment and
//! reconciliation. No HTTP here (`web::api::payments` is the HTTP face); storage is the
//! [`store::PaymentStore`] trait; jobs are enqueued through the [`Fulfiller`] handle.
//!
//! A delivery is verified over the raw bytes, stored once by its `evt_…` id, then
//! applied to the ledger (see [`ledger`]: order-independent). A paid payment whose
//! metadata names a `job_kind` gets one fulfilment job, ever: the job id is stored on
//! the payment (durably) before the job is enqueued under that id, and enqueuing an id
//! twice is a no-op, so a crash in between is finished later without a second job.

pub mod event;
mod fulfil;
pub mod ledger;
pub mod reconcile;
pub mod signature;
pub mod store;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, Weak};

use serde_json::{Value, json};
use uuid::Uuid;

use crate::clock::{Clock, rfc3339};
use crate::config::Secret;
use crate::logfile::Appender;
use crate::store::{Commit, StoreError};
use event::Incoming;
use fulfil::plan_fulfilment;
use ledger::Payment;
pub use signature::SignatureError;
use store::{Cursor, EventOutcome, PaymentStore, StoredEvent};

/// The settings the domain reads.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `STRIPE_WEBHOOK_SECRET`, split on commas.
    pub secrets: Vec<Secret>,
    /// `STRIPE_TOLERANCE_SECS`.
    pub tolerance_secs: u64,
    /// `RECONCILE_GRACE_SECS`.
    pub grace_secs: u64,
}

/// A job to enqueue for a payment.
#[derive(Debug, Clone, PartialEq)]
pub struct FulfilmentJob {
    pub job_id: String,
    pub kind: String,
    pub queue: Option<String>,
    /// JSON text.
    pub payload: String,
}

/// Why an enqueue did not happen.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FulfilError {
    /// The job can never be enqueued (bad kind or queue name).
    #[error("{0}")]
    Invalid(String),
    /// Try again later (the queue's store failed).
    #[error("{0}")]
    Unavailable(String),
}

/// What payments needs from the job queue (`app` implements it over `Jobs`).
pub trait Fulfiller: Send + Sync {
    /// Enqueue `job` under its id; enqueuing an id that exists already is a success
    /// that changes nothing. The [`Commit`] makes the enqueue durable.
    fn enqueue(&self, job: &FulfilmentJob) -> Result<Commit, FulfilError>;
    /// The job's status (`queued`, `running`, `succeeded`, `dead`, …); `None` when it
    /// does not exist (never enqueued, or pruned).
    fn job_status(&self, job_id: &str) -> Option<String>;
    /// The `payments.fulfilment` flag: while off, paid orders wait (reconciliation
    /// reports them as `fulfilment_paused`) and are fulfilled when it is back on.
    fn fulfilment_enabled(&self) -> bool {
        true
    }
}

#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error(transparent)]
    Signature(#[from] SignatureError),
    #[error("{0}")]
    BadJson(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl WebhookError {
    /// The cause, as `/metrics` names it.
    pub fn label(&self) -> &'static str {
        match self {
            WebhookError::Signature(s) => s.label(),
            WebhookError::BadJson(_) => "bad_json",
            WebhookError::Store(_) => "store",
        }
    }
}

/// What became of a verified delivery.
#[derive(Debug)]
pub struct Received {
    pub id: String,
    pub kind: String,
    pub duplicate: bool,
    pub outcome: EventOutcome,
    pub error: Option<String>,
    pub payment: Option<String>,
    /// Await before answering (after the audit event).
    pub commit: Commit,
}

/// Counters for `/metrics` (since start).
#[derive(Debug, Default, Clone)]
pub struct Counters {
    /// (event type, outcome) → deliveries. Outcomes: applied, ignored, duplicate, failed.
    pub events: BTreeMap<(String, String), u64>,
    /// Deliveries refused by the signature check, by cause.
    pub signature_failures: BTreeMap<&'static str, u64>,
}

/// Cheap to clone.
#[derive(Clone)]
pub struct Payments(Arc<Inner>);

/// A handle that does not keep the domain alive (the job queue's outcome hook holds it).
#[derive(Clone)]
pub struct WeakPayments(Weak<Inner>);

impl WeakPayments {
    pub fn upgrade(&self) -> Option<Payments> {
        self.0.upgrade().map(Payments)
    }
}

struct Inner {
    store: Arc<dyn PaymentStore>,
    settings: Settings,
    clock: Clock,
    log: Appender,
    fulfiller: Arc<dyn Fulfiller>,
    counters: Mutex<Counters>,
}

/// A page of a list.
pub struct Page {
    pub items: Vec<Value>,
    pub next_cursor: Cursor,
}

/// `GET /api/payments` filters.
#[derive(Debug, Clone, Default)]
pub struct PaymentFilter {
    pub status: Option<String>,
    pub customer: Option<String>,
    /// Stripe `created`, unix seconds, inclusive.
    pub since: Option<i64>,
    pub until: Option<i64>,
}

/// `GET /api/payments/events` filters.
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    pub kind: Option<String>,
    /// `applied`, `ignored`, `failed`, `received` or `duplicate`.
    pub outcome: Option<String>,
}

impl Payments {
    pub fn new(
        store: Arc<dyn PaymentStore>,
        settings: Settings,
        clock: Clock,
        log: Appender,
        fulfiller: Arc<dyn Fulfiller>,
    ) -> Payments {
        Payments(Arc::new(Inner {
            store,
            settings,
            clock,
            log,
            fulfiller,
            counters: Mutex::default(),
        }))
    }

    pub fn downgrade(&self) -> WeakPayments {
        WeakPayments(Arc::downgrade(&self.0))
    }

    pub fn counters(&self) -> Counters {
        self.lock_counters().clone()
    }

    /// The webhook log (`logs/stripe_webhooks.log`).
    pub fn log(&self) -> &Appender {
        &self.0.log
    }

    fn lock_counters(&self) -> std::sync::MutexGuard<'_, Counters> {
        self.0.counters.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn count(&self, kind: &str, outcome: &str) {
        *self
            .lock_counters()
            .events
            .entry((kind.to_string(), outcome.to_string()))
            .or_default() += 1;
    }

    fn now_ms(&self) -> i64 {
        self.0.clock.now().timestamp_millis()
    }

    /// One line of `stripe_webhooks.log`. Ids, types and apply errors come from the
    /// sender's body, so the line goes through the one escaping of text logs: no value
    /// can start a forged line.
    fn log_line(&self, text: &str) {
        let line = format!("{} {text}", rfc3339(self.0.clock.now()));
        self.0
            .log
            .append(crate::logfile::escape(&line).into_owned());
    }

    fn refuse(&self, e: WebhookError) -> WebhookError {
        match &e {
            WebhookError::Signature(s) => {
                *self
                    .lock_counters()
                    .signature_failures
                    .entry(s.label())
                    .or_default() += 1;
            }
            _ => self.count("(unparsed)", e.label()),
        }
        // Causes never carry a secret or a signature.
        self.log_line(&format!("webhook failed: {} ({e})", e.label()));
        e
    }

    /// Take one delivery: verify, apply, store once with its outcome. `Err` only before
    /// the event is stored (a refusal) or when storing it failed.
    ///
    /// Applying first writes the event's record once instead of twice (stored as
    /// received, then its outcome). Applying is idempotent (a payment joins an event
    /// once; replays rely on it too), so a crash after applying and before storing
    /// leaves nothing acknowledged, and Stripe's retry applies it again to no effect.
    pub async fn receive(
        &self,
        header: Option<&[u8]>,
        body: &[u8],
    ) -> Result<Received, WebhookError> {
        let s = &self.0.settings;
        let now = self.0.clock.now();
        signature::verify(header, body, &s.secrets, s.tolerance_secs, now.timestamp())
            .map_err(|e| self.refuse(e.into()))?;
        let ev = event::parse(body).map_err(|m| self.refuse(WebhookError::BadJson(m)))?;
        if let Some(old) = self.0.store.event(&ev.id)?
            && old.outcome != EventOutcome::Received
        {
            let (_, commit) = self.0.store.record_event(&old)?;
            return Ok(self.duplicate(&ev, old, commit));
        }
        let (outcome, error, payment) = self.apply_outcome(&ev).await;
        let stored = StoredEvent {
            id: ev.id.clone(),
            kind: ev.kind.clone(),
            created: ev.created,
            livemode: ev.livemode,
            received_at: self.now_ms(),
            payload: String::from_utf8_lossy(body).into_owned(),
            outcome,
            error: error.clone(),
            payment: payment.clone(),
            applied: 1,
            updated_at: self.now_ms(),
        };
        let (new, commit) = self.0.store.record_event(&stored)?;
        if !new {
            match self.0.store.event(&ev.id)? {
                // A concurrent delivery stored it first: answer with what it stored.
                Some(old) if old.outcome != EventOutcome::Received => {
                    return Ok(self.duplicate(&ev, old, commit));
                }
                // Stored by a delivery that stopped before applying it: this one did.
                _ => {
                    let mut r = self.set_outcome(&ev, (outcome, error, payment))?;
                    r.commit = commit.and(r.commit);
                    r.duplicate = true;
                    return Ok(r);
                }
            }
        }
        Ok(self.recorded(&ev, outcome, error, payment, commit))
    }

    /// The answer to a delivery of an event already stored with its outcome.
    fn duplicate(&self, ev: &Incoming, old: StoredEvent, commit: Commit) -> Received {
        self.count(&ev.kind, "duplicate");
        self.log_line(&format!("webhook ok {} {} duplicate", ev.id, ev.kind));
        Received {
            id: ev.id.clone(),
            kind: ev.kind.clone(),
            duplicate: true,
            outcome: old.outcome,
            error: old.error,
            payment: old.payment,
            commit,
        }
    }

    /// Apply a stored event again (`POST /api/payments/events/{id}/replay`). `None`
    /// when no such event is stored.
    pub async fn replay(&self, id: &str) -> Result<Option<Received>, StoreError> {
        let Some(stored) = self.0.store.event(id)? else {
            return Ok(None);
        };
        let ev = match event::parse(stored.payload.as_bytes()) {
            Ok(ev) => ev,
            Err(m) => {
                let commit = self.0.store.set_event_outcome(
                    id,
                    EventOutcome::Failed,
                    Some(m.clone()),
                    None,
                    self.now_ms(),
                )?;
                return Ok(Some(Received {
                    id: stored.id,
                    kind: stored.kind,
                    duplicate: false,
                    outcome: EventOutcome::Failed,
                    error: Some(m),
                    payment: None,
                    commit,
                }));
            }
        };
        self.apply_and_record(&ev).await.map(Some)
    }

    async fn apply_and_record(&self, ev: &Incoming) -> Result<Received, StoreError> {
        let applied = self.apply_outcome(ev).await;
        self.set_outcome(ev, applied)
    }

    /// Write what became of a stored event; the answer for it.
    fn set_outcome(
        &self,
        ev: &Incoming,
        (outcome, error, payment): (EventOutcome, Option<String>, Option<String>),
    ) -> Result<Received, StoreError> {
        let commit = self.0.store.set_event_outcome(
            &ev.id,
            outcome,
            error.clone(),
            payment.clone(),
            self.now_ms(),
        )?;
        Ok(self.recorded(ev, outcome, error, payment, commit))
    }

    /// Apply `ev`: what became of it, the failure, and the payment it joined.
    async fn apply_outcome(&self, ev: &Incoming) -> (EventOutcome, Option<String>, Option<String>) {
        match self.apply(ev).await {
            Ok(Some(p)) => (EventOutcome::Applied, None, Some(p)),
            Ok(None) => (EventOutcome::Ignored, None, None),
            Err(e) => (EventOutcome::Failed, Some(e), None),
        }
    }

    /// Count and log an applied event; the answer for it.
    fn recorded(
        &self,
        ev: &Incoming,
        outcome: EventOutcome,
        error: Option<String>,
        payment: Option<String>,
        commit: Commit,
    ) -> Received {
        self.count(&ev.kind, outcome.as_str());
        match &error {
            Some(e) => self.log_line(&format!("webhook failed: apply {} {}: {e}", ev.id, ev.kind)),
            None => self.log_line(&format!(
                "webhook ok {} {} {} payment={}",
                ev.id,
                ev.kind,
                outcome.as_str(),
                payment.as_deref().unwrap_or("-")
            )),
        }
        Received {
            id: ev.id.clone(),
            kind: ev.kind.clone(),
            duplicate: false,
            outcome,
            error,
            payment,
            commit,
        }
    }

    /// Join the event into its payment; `Ok(None)` for a type we ignore. The error is
    /// the event's `failed` reason.
    async fn apply(&self, ev: &Incoming) -> Result<Option<String>, String> {
        let Some((obj, fact)) = event::facts(ev)? else {
            return Ok(None);
        };
        let st = &self.0.store;
        let key = if obj.id.starts_with("pi_") {
            obj.id.clone()
        } else if let Some(pi) = &obj.payment_intent {
            pi.clone()
        } else {
            // A dispute finds its payment through its charge; a session or invoice
            // without an intent through an earlier alias, else it is its own key.
            let probe = obj.charge.clone().unwrap_or_else(|| obj.id.clone());
            st.resolve(&probe)
                .map_err(|e| e.to_string())?
                .unwrap_or(probe)
        };
        let aliases: Vec<String> = [Some(obj.id.clone()), obj.charge.clone()]
            .into_iter()
            .flatten()
            .collect();
        let now = self.now_ms();
        let list_key = Uuid::now_v7().to_string();
        let job_id = Uuid::now_v7().to_string();
        let enabled = self.0.fulfiller.fulfilment_enabled();
        let (written, commit) = st
            .update_payment(&key, &aliases, &mut |cur| {
                let mut p = cur.unwrap_or_else(|| Payment::new(&key, list_key.clone(), now));
                p.apply(ev, &obj, &fact, now);
                if enabled && p.fulfilment.is_none() {
                    p.fulfilment = plan_fulfilment(&p, &job_id, now);
                }
                Some(p)
            })
            .map_err(|e| e.to_string())?;
        if let Some(p) = written {
            self.finish_fulfilment(&p, commit)
                .await
                .map_err(|e| e.to_string())?;
        }
        Ok(Some(key))
    }

    /// One payment with the events that built it; `None` when unknown.
    pub fn show(&self, id: &str) -> Result<Option<Value>, StoreError> {
        let Some(p) = self.0.store.payment(id)? else {
            return Ok(None);
        };
        let mut events = Vec::new();
        for eid in &p.events {
            if let Some(e) = self.0.store.event(eid)? {
                events.push(event_json(&e, None));
            }
        }
        let mut v = p.to_json();
        v["events"] = Value::Array(events);
        Ok(Some(v))
    }

    pub fn list(
        &self,
        f: &PaymentFilter,
        cursor: &Cursor,
        limit: usize,
    ) -> Result<Page, StoreError> {
        let (items, next_cursor) = self.0.store.list_payments(
            cursor,
            &mut |p| {
                f.status.as_deref().is_none_or(|s| p.status() == s)
                    && f.customer
                        .as_deref()
                        .is_none_or(|c| p.customer().as_deref() == Some(c))
                    && f.since.is_none_or(|t| p.created() >= t)
                    && f.until.is_none_or(|t| p.created() <= t)
            },
            limit,
        )?;
        Ok(Page {
            items: items.iter().map(Payment::to_json).collect(),
            next_cursor,
        })
    }

    /// Every delivery of a verified event, newest first.
    pub fn events(
        &self,
        f: &EventFilter,
        cursor: &Cursor,
        limit: usize,
    ) -> Result<Page, StoreError> {
        let (items, next_cursor) = self.0.store.list_deliveries(
            cursor,
            &mut |d, e| {
                let outcome = if d.duplicate {
                    "duplicate"
                } else {
                    e.outcome.as_str()
                };
                f.kind.as_deref().is_none_or(|k| e.kind == k)
                    && f.outcome.as_deref().is_none_or(|o| o == outcome)
            },
            limit,
        )?;
        Ok(Page {
            items: items.iter().map(|(d, e)| event_json(e, Some(d))).collect(),
            next_cursor,
        })
    }

    pub(crate) fn store(&self) -> &dyn PaymentStore {
        self.0.store.as_ref()
    }

    pub(crate) fn fulfiller(&self) -> &dyn Fulfiller {
        self.0.fulfiller.as_ref()
    }

    pub(crate) fn settings(&self) -> &Settings {
        &self.0.settings
    }

    pub(crate) fn clock(&self) -> &Clock {
        &self.0.clock
    }
}

fn event_json(e: &StoredEvent, delivery: Option<&store::Delivery>) -> Value {
    let ms = |t: i64| rfc3339(chrono::DateTime::from_timestamp_millis(t).unwrap_or_default());
    let duplicate = delivery.is_some_and(|d| d.duplicate);
    json!({
        "id": e.id,
        "type": e.kind,
        "received_at": ms(delivery.map_or(e.received_at, |d| d.at)),
        "created": chrono::DateTime::from_timestamp(e.created, 0).map(rfc3339),
        "outcome": if duplicate { "duplicate" } else { e.outcome.as_str() },
        "error": e.error,
        "payment": e.payment,
        "livemode": e.livemode,
        "applied": e.applied,
    })
}

#[cfg(test)]
mod tests;
