//! The sled backend of [`PaymentStore`].
//!
//! Trees:
//! - `payments`: payment id → [`Payment`]
//! - `payments_by_time`: the payment's `list_key` (UUIDv7 bytes) → id, for newest-first lists
//! - `payments_alias`: `cs_…`/`ch_…`/`in_…` → payment id
//! - `payments_jobs`: fulfilment job id → payment id
//! - `payment_events`: `evt_…` → [`StoredEvent`] (the dedup point: `insert_new`)
//! - `payment_deliveries`: UUIDv7 bytes → [`Delivery`], every verified delivery in order
//! - `payment_events_failed`: `evt_…` of events whose application failed
//! - `payment_reports`: time (ms, big-endian) → [`StoredReport`]
//!
//! Index entries are written before the record they point to; a crash in between
//! leaves an entry whose record does not point back, which readers skip.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::payments::ledger::Payment;
use crate::payments::store::{
    Change, Cursor, Delivery, EventOutcome, PaymentStore, StoredEvent, StoredReport,
};
use crate::store::{Cas, Commit, Record, Store, StoreError, Table};

/// An index entry naming a payment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Ref {
    id: String,
}

impl Record for Ref {
    const NAME: &'static str = "payment index entry";
    const VERSION: u8 = 1;
}

#[derive(Clone)]
pub(crate) struct SledPayments {
    store: Store,
    payments: Table<Payment>,
    by_time: Table<Ref>,
    alias: Table<Ref>,
    jobs: Table<Ref>,
    events: Table<StoredEvent>,
    deliveries: Table<Delivery>,
    failed: Table<Ref>,
    reports: Table<StoredReport>,
}

type Entry<T> = Result<(Vec<u8>, T), StoreError>;

fn uuid_key(s: &str) -> Option<[u8; 16]> {
    Uuid::parse_str(s).ok().map(|u| *u.as_bytes())
}

fn key_string(k: &[u8]) -> Option<String> {
    Uuid::from_slice(k).ok().map(|u| u.to_string())
}

impl SledPayments {
    pub(crate) fn open(store: &Store) -> Result<SledPayments, StoreError> {
        Ok(SledPayments {
            store: store.clone(),
            payments: store.table("payments")?,
            by_time: store.table("payments_by_time")?,
            alias: store.table("payments_alias")?,
            jobs: store.table("payments_jobs")?,
            events: store.table("payment_events")?,
            deliveries: store.table("payment_deliveries")?,
            failed: store.table("payment_events_failed")?,
            reports: store.table("payment_reports")?,
        })
    }

    /// Newest first, after `cursor`: the (key, value) pairs of a time-keyed index.
    fn page<T: Record, U>(
        table: &Table<T>,
        cursor: &Cursor,
        limit: usize,
        mut pick: impl FnMut(&str, &T) -> Result<Option<U>, StoreError>,
    ) -> Result<(Vec<U>, Cursor), StoreError> {
        let upper = cursor.as_deref().and_then(uuid_key);
        let iter: Box<dyn Iterator<Item = Entry<T>>> = match upper {
            Some(u) => Box::new(table.range(..u.to_vec()).rev()),
            None => Box::new(table.iter().rev()),
        };
        let mut out = Vec::new();
        for entry in iter {
            let (k, v) = entry?;
            let Some(key) = key_string(&k) else {
                continue;
            };
            if let Some(u) = pick(&key, &v)? {
                out.push(u);
                if out.len() == limit {
                    return Ok((out, Some(key)));
                }
            }
        }
        Ok((out, None))
    }
}

impl PaymentStore for SledPayments {
    fn record_event(&self, ev: &StoredEvent) -> Result<(bool, Commit), StoreError> {
        // The failed list is an index: written before the record; a reader checks the
        // record's outcome.
        if ev.outcome == EventOutcome::Failed {
            self.failed.insert(&ev.id, &Ref { id: ev.id.clone() })?;
        }
        let new = self.events.insert_new(&ev.id, ev)?;
        self.deliveries.insert(
            Uuid::now_v7().as_bytes(),
            &Delivery {
                event: ev.id.clone(),
                at: ev.received_at,
                duplicate: !new,
            },
        )?;
        Ok((new, self.store.pending()))
    }

    fn event(&self, id: &str) -> Result<Option<StoredEvent>, StoreError> {
        self.events.get(id)
    }

    fn set_event_outcome(
        &self,
        id: &str,
        outcome: EventOutcome,
        error: Option<String>,
        payment: Option<String>,
        now_ms: i64,
    ) -> Result<Commit, StoreError> {
        if outcome == EventOutcome::Failed {
            self.failed.insert(id, &Ref { id: id.to_string() })?;
        }
        self.events.update(id, |cur| {
            let mut e = cur?;
            e.outcome = outcome;
            e.error = error.clone();
            if payment.is_some() {
                e.payment = payment.clone();
            }
            if outcome != EventOutcome::Received {
                e.applied += 1;
            }
            e.updated_at = now_ms;
            Some(e)
        })?;
        if outcome != EventOutcome::Failed {
            self.failed.remove(id)?;
        }
        Ok(self.store.pending())
    }

    fn list_deliveries(
        &self,
        cursor: &Cursor,
        keep: &mut dyn FnMut(&Delivery, &StoredEvent) -> bool,
        limit: usize,
    ) -> Result<(Vec<(Delivery, StoredEvent)>, Cursor), StoreError> {
        Self::page(&self.deliveries, cursor, limit, |_, d| {
            Ok(self
                .events
                .get(&d.event)?
                .filter(|e| keep(d, e))
                .map(|e| (d.clone(), e)))
        })
    }

    fn failed_events(&self) -> Result<Vec<StoredEvent>, StoreError> {
        let mut out = Vec::new();
        for entry in self.failed.iter() {
            let (_, r) = entry?;
            if let Some(e) = self.events.get(&r.id)?
                && e.outcome == EventOutcome::Failed
            {
                out.push(e);
            }
        }
        Ok(out)
    }

    fn update_payment(
        &self,
        id: &str,
        aliases: &[String],
        change: Change<'_>,
    ) -> Result<(Option<Payment>, Commit), StoreError> {
        let written = loop {
            let cur = self.payments.get(id)?;
            let Some(new) = change(cur.clone()) else {
                return Ok((cur, Commit::done()));
            };
            if cur.is_none()
                && let Some(k) = uuid_key(&new.list_key)
            {
                self.by_time.insert(k, &Ref { id: id.to_string() })?;
            }
            if self
                .payments
                .compare_and_swap(id, cur.as_ref(), Some(&new))?
                == Cas::Swapped
            {
                break new;
            }
        };
        for a in aliases.iter().filter(|a| a.as_str() != id) {
            if self.alias.get(a)?.is_none_or(|r| r.id != id) {
                self.alias.insert(a, &Ref { id: id.to_string() })?;
            }
        }
        Ok((Some(written), self.store.pending()))
    }

    fn payment(&self, id: &str) -> Result<Option<Payment>, StoreError> {
        if let Some(p) = self.payments.get(id)? {
            return Ok(Some(p));
        }
        match self.alias.get(id)? {
            Some(r) => self.payments.get(&r.id),
            None => Ok(None),
        }
    }

    fn resolve(&self, alias: &str) -> Result<Option<String>, StoreError> {
        Ok(self.alias.get(alias)?.map(|r| r.id))
    }

    fn list_payments(
        &self,
        cursor: &Cursor,
        keep: &mut dyn FnMut(&Payment) -> bool,
        limit: usize,
    ) -> Result<(Vec<Payment>, Cursor), StoreError> {
        Self::page(&self.by_time, cursor, limit, |key, r| {
            // An entry left by a retried or crashed creation does not match its record.
            Ok(self
                .payments
                .get(&r.id)?
                .filter(|p| p.list_key == key && keep(p)))
        })
    }

    fn for_each_payment(
        &self,
        f: &mut dyn FnMut(Payment) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        for entry in self.payments.iter() {
            f(entry?.1)?;
        }
        Ok(())
    }

    fn link_job(&self, job_id: &str, payment: &str) -> Result<(), StoreError> {
        self.jobs.insert(
            job_id,
            &Ref {
                id: payment.to_string(),
            },
        )
    }

    fn payment_for_job(&self, job_id: &str) -> Result<Option<String>, StoreError> {
        Ok(self.jobs.get(job_id)?.map(|r| r.id))
    }

    fn save_report(&self, report: &StoredReport) -> Result<Commit, StoreError> {
        self.reports.insert(report.at.to_be_bytes(), report)?;
        Ok(self.store.pending())
    }

    fn last_report(&self) -> Result<Option<StoredReport>, StoreError> {
        Ok(self.reports.last()?.map(|(_, r)| r))
    }
}
