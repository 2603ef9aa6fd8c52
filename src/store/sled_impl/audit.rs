//! The audit trail on sled: the `audit` tree, big-endian seq → [`Event`], and
//! `audit_index` (keys in `audit_keys`): failures, and events by action, by actor and
//! by address, as bitmaps over blocks of 1,024 seqs. A block is written in the same
//! atomic write as the first event of the next block; until then its bits live in
//! memory beside the chain's tail (last seq and hash), read at open and kept under a
//! lock that serialises appends.
//!
//! A query reads candidates in seq order, newest first: with a field filter it walks
//! the matching blocks together (a leapfrog join: each step seeks every condition's
//! blocks to the others'), so `?ok=false` or `?action=…&actor=…` costs about what it
//! returns; a time bound becomes a seq bound by binary search (seqs follow time).

use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use super::audit_keys::{self, Field, Pending, Walk};
use crate::audit::chain::GENESIS;
use crate::audit::store::{AuditStore, Events};
use crate::audit::{Event, Filter};
use crate::store::{AtomicWrite, Commit, Record, Store, StoreError, Table};

/// A block's bitmap, 64 seqs a word (and, under the format key, the index's layout).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub(super) struct Entry {
    pub(super) words: Vec<u64>,
}
impl Record for Entry {
    const NAME: &'static str = "audit index entry";
    // 1: an empty value per event and condition (the first layout).
    const VERSION: u8 = 2;
}
impl Entry {
    pub(super) fn words(words: Vec<u64>) -> Entry {
        Entry { words }
    }
}
/// 2: a bitmap per block of `BLOCK_SEQS` seqs and condition (1: a key per event).
fn format() -> Entry {
    Entry::words(vec![2, audit_keys::BLOCK_SEQS])
}

/// What an append reads and changes, under one lock.
struct Tail {
    seq: u64,
    hash: String,
    pending: Pending,
}

pub(crate) struct SledAudit {
    store: Store,
    table: Table<Event>,
    index: Table<Entry>,
    tail: Mutex<Tail>,
}

impl SledAudit {
    pub(crate) fn open(store: &Store) -> Result<SledAudit, StoreError> {
        let table: Table<Event> = store.table("audit")?;
        let index: Table<Entry> = store.table("audit_index")?;
        let (seq, hash) = match table.last()? {
            Some((_, e)) => (e.seq, e.hash),
            None => (0, GENESIS.to_string()),
        };
        // An index of another layout (or none: a home from before it) decodes as
        // something else or not at all; either way it is built anew.
        if !matches!(index.get(audit_keys::FORMAT_KEY), Ok(Some(f)) if f == format()) {
            rebuild(&table, &index)?;
        }
        let first = audit_keys::block(seq) * audit_keys::BLOCK_SEQS;
        let newest: Vec<Event> = table
            .range(first.to_be_bytes()..)
            .map(|r| r.map(|(_, e)| e))
            .collect::<Result<_, _>>()?;
        let pending = Pending::new(seq, newest.into_iter());
        Ok(SledAudit {
            store: store.clone(),
            table,
            index,
            tail: Mutex::new(Tail { seq, hash, pending }),
        })
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

/// Index every stored event but the newest block's (kept pending); the format mark
/// goes last, so an interrupted rebuild runs again.
fn rebuild(table: &Table<Event>, index: &Table<Entry>) -> Result<(), StoreError> {
    index.clear()?;
    let mut puts: Vec<(Vec<u8>, Entry)> = Vec::new();
    let mut block = Pending::default();
    for r in table.iter() {
        let (_, e) = r?;
        if block.full_before(e.seq) {
            puts.extend(block.entries());
            block = Pending::new(e.seq, std::iter::empty());
            if puts.len() >= 50_000 {
                index.apply(&puts, &[])?;
                puts.clear();
            }
        }
        block.add(&e);
    }
    index.apply(&puts, &[])?;
    index.insert(audit_keys::FORMAT_KEY, &format())
}

impl AuditStore for SledAudit {
    fn append(
        &self,
        make: &mut dyn FnMut(u64, &str) -> Event,
    ) -> Result<(Event, Commit), StoreError> {
        let mut tail = self.tail.lock().unwrap_or_else(|p| p.into_inner());
        let event = make(tail.seq, &tail.hash);
        let key = event.seq.to_be_bytes();
        let full = tail.pending.full_before(event.seq);
        if full {
            let mut w = AtomicWrite::new();
            self.table.put_in(&mut w, key, &event)?;
            for (k, entry) in tail.pending.entries() {
                self.index.put_in(&mut w, k, &entry)?;
            }
            w.commit()?;
        } else {
            // One key, written once: atomic by itself, and no journal record can hold
            // it to write it again (see `AtomicWrite`).
            self.table.insert(key, &event)?;
        }
        if full {
            tail.pending = Pending::new(event.seq, std::iter::empty());
        }
        tail.pending.add(&event);
        tail.seq = event.seq;
        tail.hash.clone_from(&event.hash);
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
        let walk = {
            let tail = self.tail.lock().unwrap_or_else(|p| p.into_inner());
            Walk::new(self.index.clone(), &tail.pending, &fields, lo, hi)
        };
        let table = self.table.clone();
        // A bit always has its event (written before its block); checked anyway.
        Box::new(walk.filter_map(move |seq| match seq {
            Ok(seq) => table.get(seq.to_be_bytes()).transpose(),
            Err(e) => Some(Err(e)),
        }))
    }
}
