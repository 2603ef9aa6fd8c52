//! The audit trail on sled: the `audit` tree, big-endian seq → [`Event`], and
//! `audit_index`, written in the same atomic write as each event (keys in
//! `audit_keys`): failures, and events by action, by actor and by address. The chain's
//! tail (last seq and hash) is read at open and kept under a lock that serialises
//! appends.
//!
//! A query reads candidates in seq order, newest first: with a field filter it walks
//! the matching index ranges together (a leapfrog join: each step seeks every range to
//! the others' seq), so `?ok=false` or `?action=…&actor=…` costs about what it returns;
//! a time bound becomes a seq bound by binary search (seqs follow time).

use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use super::audit_keys::{self, Field};
use crate::audit::chain::GENESIS;
use crate::audit::store::{AuditStore, Events};
use crate::audit::{Event, Filter};
use crate::store::{AtomicWrite, Commit, Record, Store, StoreError, Table};

/// An empty index value (and, under the format key, the index's layout).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub(super) struct Entry {
    format: u32,
}
impl Record for Entry {
    const NAME: &'static str = "audit index entry";
    const VERSION: u8 = 1;
}
const MARK: Entry = Entry { format: 0 };
/// 1: failures, action, actor, ip.
const FORMAT: Entry = Entry { format: 1 };

pub(crate) struct SledAudit {
    store: Store,
    table: Table<Event>,
    index: Table<Entry>,
    tail: Mutex<(u64, String)>,
}

impl SledAudit {
    pub(crate) fn open(store: &Store) -> Result<SledAudit, StoreError> {
        let table: Table<Event> = store.table("audit")?;
        let index: Table<Entry> = store.table("audit_index")?;
        let tail = match table.last()? {
            Some((_, e)) => (e.seq, e.hash),
            None => (0, GENESIS.to_string()),
        };
        let s = SledAudit {
            store: store.clone(),
            table,
            index,
            tail: Mutex::new(tail),
        };
        if s.index.get(audit_keys::FORMAT_KEY)? != Some(FORMAT) {
            s.rebuild()?;
        }
        Ok(s)
    }

    /// Index every stored event (a home from before the index); the format mark goes
    /// last, so an interrupted rebuild runs again.
    fn rebuild(&self) -> Result<(), StoreError> {
        self.index.clear()?;
        let mut puts: Vec<(Vec<u8>, Entry)> = Vec::new();
        for r in self.table.iter() {
            let (_, e) = r?;
            puts.extend(audit_keys::entries(&e).into_iter().map(|k| (k, MARK)));
            if puts.len() >= 50_000 {
                self.index.apply(&puts, &[])?;
                puts.clear();
            }
        }
        self.index.apply(&puts, &[])?;
        self.index.insert(audit_keys::FORMAT_KEY, &FORMAT)
    }

    /// The smallest seq whose event's time passes `pred` (`None`: none does). Seqs
    /// follow time, so `pred` (a lower time bound) holds from some seq on.
    fn first_where(&self, pred: impl Fn(&str) -> bool) -> Result<Option<u64>, StoreError> {
        let Some((_, last)) = self.table.last()? else {
            return Ok(None);
        };
        let holds = |s: u64| -> Result<bool, StoreError> {
            Ok(self.at_or_after(s)?.is_none_or(|e| pred(&e.ts)))
        };
        let (mut lo, mut hi) = (0u64, last.seq + 1);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if holds(mid)? {
                hi = mid;
            } else {
                lo = mid + 1;
            }
        }
        Ok(self.at_or_after(lo)?.map(|e| e.seq))
    }

    /// The first event with a seq at or above `seq`.
    fn at_or_after(&self, seq: u64) -> Result<Option<Event>, StoreError> {
        self.table
            .range(seq.to_be_bytes()..)
            .next()
            .transpose()
            .map(|o| o.map(|(_, e)| e))
    }

    /// The seq bounds `[lo, hi)` that `filter`'s time range and cursor allow.
    fn bounds(&self, filter: &Filter) -> Result<(u64, u64), StoreError> {
        let mut hi = filter.before.unwrap_or(u64::MAX);
        let mut lo = 0;
        if let Some(until) = &filter.until {
            // The first event past `until` bounds the range from above.
            if let Some(s) = self.first_where(|ts| ts > until.as_str())? {
                hi = hi.min(s);
            }
        }
        if let Some(since) = &filter.since {
            lo = self
                .first_where(|ts| ts >= since.as_str())?
                .unwrap_or(u64::MAX);
        }
        Ok((lo, hi))
    }
}

impl AuditStore for SledAudit {
    fn append(
        &self,
        make: &mut dyn FnMut(u64, &str) -> Event,
    ) -> Result<(Event, Commit), StoreError> {
        let mut tail = self.tail.lock().unwrap_or_else(|p| p.into_inner());
        let event = make(tail.0, &tail.1);
        let mut w = AtomicWrite::new();
        self.table.put_in(&mut w, event.seq.to_be_bytes(), &event)?;
        for k in audit_keys::entries(&event) {
            self.index.put_in(&mut w, k, &MARK)?;
        }
        w.commit()?;
        *tail = (event.seq, event.hash.clone());
        Ok((event, self.store.pending()))
    }

    fn last(&self) -> Result<Option<Event>, StoreError> {
        Ok(self.table.last()?.map(|(_, e)| e))
    }

    fn get(&self, seq: u64) -> Result<Option<Event>, StoreError> {
        self.table.get(seq.to_be_bytes())
    }

    fn since_seq(&self, from: u64) -> Events<'_> {
        Box::new(
            self.table
                .range(from.to_be_bytes()..)
                .map(|r| r.map(|(_, e)| e)),
        )
    }

    fn newest_first(&self, before: Option<u64>) -> Events<'_> {
        match before {
            Some(b) => Box::new(
                self.table
                    .range(..b.to_be_bytes())
                    .rev()
                    .map(|r| r.map(|(_, e)| e)),
            ),
            None => Box::new(self.table.iter().rev().map(|r| r.map(|(_, e)| e))),
        }
    }

    fn candidates(&self, filter: &Filter) -> Events<'_> {
        let (lo, hi) = match self.bounds(filter) {
            Ok(b) => b,
            Err(e) => return Box::new(std::iter::once(Err(e))),
        };
        if lo >= hi {
            return Box::new(std::iter::empty());
        }
        let mut fields = Vec::new();
        if filter.ok == Some(false) {
            fields.push(Field::Failure);
        }
        if let Some(a) = &filter.action {
            fields.push(Field::Action(a.clone()));
        }
        if let Some(a) = &filter.actor {
            fields.push(Field::Actor(a.clone()));
        }
        // Events without an address have no entry: an empty one is looked for by scan.
        if let Some(ip) = filter.ip.as_ref().filter(|ip| !ip.is_empty()) {
            fields.push(Field::Ip(ip.clone()));
        }
        // A value no index can hold (a 0 byte) is looked for by reading every event.
        fields.retain(Field::indexable);
        if fields.is_empty() {
            return Box::new(
                self.table
                    .range(lo.to_be_bytes()..hi.to_be_bytes())
                    .rev()
                    .map(|r| r.map(|(_, e)| e)),
            );
        }
        let index = self.index.clone();
        let table = self.table.clone();
        let mut upper = hi;
        Box::new(std::iter::from_fn(move || {
            loop {
                let seq = match audit_keys::leapfrog(&index, &fields, lo, upper) {
                    Ok(Some(seq)) => seq,
                    Ok(None) => return None,
                    Err(e) => {
                        upper = lo;
                        return Some(Err(e));
                    }
                };
                upper = seq;
                // An entry always has its event (one atomic write); checked anyway.
                match table.get(seq.to_be_bytes()) {
                    Ok(Some(e)) => return Some(Ok(e)),
                    Ok(None) => continue,
                    Err(e) => return Some(Err(e)),
                }
            }
        }))
    }
}
