//! What the payments domain needs from storage, in its own words. The sled backend is
//! `crate::store::sled_impl::payments`; a SQL backend would make each method one
//! transaction (`update_payment` as `SELECT … FOR UPDATE` + `UPDATE`).

use serde::{Deserialize, Serialize};

use super::ledger::Payment;
use crate::store::{Commit, Record, StoreError};

/// What became of a stored event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum EventOutcome {
    /// Stored, not applied yet (a crash in between: the next delivery or a replay
    /// applies it).
    Received,
    Applied,
    /// A type we do not handle.
    Ignored,
    /// Applying failed; the error is kept and `replay` tries again.
    Failed,
}

impl EventOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            EventOutcome::Received => "received",
            EventOutcome::Applied => "applied",
            EventOutcome::Ignored => "ignored",
            EventOutcome::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<EventOutcome> {
        [
            EventOutcome::Received,
            EventOutcome::Applied,
            EventOutcome::Ignored,
            EventOutcome::Failed,
        ]
        .into_iter()
        .find(|o| o.as_str() == s)
    }
}

/// A verified event, stored once by its `evt_…` id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredEvent {
    pub id: String,
    pub kind: String,
    /// Stripe's `created` (unix seconds).
    pub created: i64,
    pub livemode: bool,
    /// ms.
    pub received_at: i64,
    /// The raw body, exactly as signed.
    pub payload: String,
    pub outcome: EventOutcome,
    pub error: Option<String>,
    pub payment: Option<String>,
    /// How many times it was applied (replays included).
    pub applied: u32,
    pub updated_at: i64,
}

impl Record for StoredEvent {
    const NAME: &'static str = "payment event";
    const VERSION: u8 = 1;
}

/// One delivery of a verified event, in the order received (the first one, and every
/// retry Stripe sent after it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Delivery {
    pub event: String,
    pub at: i64,
    pub duplicate: bool,
}

impl Record for Delivery {
    const NAME: &'static str = "payment delivery";
    const VERSION: u8 = 1;
}

/// A stored reconciliation report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredReport {
    /// ms.
    pub at: i64,
    /// The report's JSON text.
    pub json: String,
}

impl Record for StoredReport {
    const NAME: &'static str = "reconciliation report";
    const VERSION: u8 = 1;
}

/// Where a list starts: after the item with this key (the `next_cursor` of a page).
pub type Cursor = Option<String>;

/// The change applied to a payment; may run more than once (retried on conflict).
pub type Change<'a> = &'a mut dyn FnMut(Option<Payment>) -> Option<Payment>;

pub trait PaymentStore: Send + Sync {
    /// Store a verified event (with its outcome, or `Received` before it is applied)
    /// unless its id is known. `true` when it is new; either way the delivery is
    /// logged, and a new failed event is listed among the failed.
    fn record_event(&self, ev: &StoredEvent) -> Result<(bool, Commit), StoreError>;

    fn event(&self, id: &str) -> Result<Option<StoredEvent>, StoreError>;

    /// Set what became of an event.
    fn set_event_outcome(
        &self,
        id: &str,
        outcome: EventOutcome,
        error: Option<String>,
        payment: Option<String>,
        now_ms: i64,
    ) -> Result<Commit, StoreError>;

    /// Deliveries, newest first, starting after `cursor`, with their events.
    fn list_deliveries(
        &self,
        cursor: &Cursor,
        keep: &mut dyn FnMut(&Delivery, &StoredEvent) -> bool,
        limit: usize,
    ) -> Result<(Vec<(Delivery, StoredEvent)>, Cursor), StoreError>;

    /// Events whose application failed (for reconciliation).
    fn failed_events(&self) -> Result<Vec<StoredEvent>, StoreError>;

    /// Change the payment `id` in one transaction: `change` gets the current record
    /// (or `None`) and returns the new one (`None`: leave it). `aliases` are other ids
    /// (`cs_…`, `ch_…`, `in_…`) that find it. Returns the record as written.
    fn update_payment(
        &self,
        id: &str,
        aliases: &[String],
        change: Change<'_>,
    ) -> Result<(Option<Payment>, Commit), StoreError>;

    /// The payment with this id or alias.
    fn payment(&self, id: &str) -> Result<Option<Payment>, StoreError>;

    /// The payment key an alias points to.
    fn resolve(&self, alias: &str) -> Result<Option<String>, StoreError>;

    /// Payments, newest first, after `cursor`, that `keep` accepts.
    fn list_payments(
        &self,
        cursor: &Cursor,
        keep: &mut dyn FnMut(&Payment) -> bool,
        limit: usize,
    ) -> Result<(Vec<Payment>, Cursor), StoreError>;

    /// Every payment, in no particular order (reconciliation).
    fn for_each_payment(
        &self,
        f: &mut dyn FnMut(Payment) -> Result<(), StoreError>,
    ) -> Result<(), StoreError>;

    /// Note that job `job_id` fulfils payment `payment` (its outcome finds it).
    fn link_job(&self, job_id: &str, payment: &str) -> Result<(), StoreError>;

    fn payment_for_job(&self, job_id: &str) -> Result<Option<String>, StoreError>;

    fn save_report(&self, report: &StoredReport) -> Result<Commit, StoreError>;

    fn last_report(&self) -> Result<Option<StoredReport>, StoreError>;
}
