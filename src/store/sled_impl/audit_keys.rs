//! The keys of `audit_index` and the walk over them (see `audit` for the layout).
//!
//! - `f seq` for each failure (`ok: false`);
//! - `a action \0 seq`, `c actor \0 seq`, `i ip \0 seq` for each event (no `i` entry
//!   without an address). A value holding a 0 byte is not indexed: a filter on such a
//!   value reads the events instead.

use super::audit::Entry;
use crate::audit::Event;
use crate::store::{StoreError, Table};

/// Where the index says which layout it holds.
pub(super) const FORMAT_KEY: &[u8] = b"\0format";

/// One indexed condition.
#[derive(Debug, Clone)]
pub(super) enum Field {
    Failure,
    Action(String),
    Actor(String),
    Ip(String),
}

impl Field {
    fn prefix(&self) -> Vec<u8> {
        let (tag, value) = match self {
            Field::Failure => return b"f".to_vec(),
            Field::Action(v) => (b'a', v),
            Field::Actor(v) => (b'c', v),
            Field::Ip(v) => (b'i', v),
        };
        let mut k = vec![tag];
        k.extend_from_slice(value.as_bytes());
        k.push(0);
        k
    }

    /// Can the index hold this value?
    pub(super) fn indexable(&self) -> bool {
        match self {
            Field::Failure => true,
            Field::Action(v) | Field::Actor(v) | Field::Ip(v) => !v.contains('\0'),
        }
    }

    fn key(&self, seq: u64) -> Vec<u8> {
        let mut k = self.prefix();
        k.extend_from_slice(&seq.to_be_bytes());
        k
    }
}

/// The index entries of one event.
pub(super) fn entries(e: &Event) -> Vec<Vec<u8>> {
    let mut fields = vec![
        Field::Action(e.action.clone()),
        Field::Actor(e.actor.clone()),
    ];
    if !e.ok {
        fields.push(Field::Failure);
    }
    if !e.ip.is_empty() {
        fields.push(Field::Ip(e.ip.clone()));
    }
    fields
        .iter()
        .filter(|f| f.indexable())
        .map(|f| f.key(e.seq))
        .collect()
}

/// The highest seq in `[lo, hi)` under `field`.
fn below(index: &Table<Entry>, field: &Field, lo: u64, hi: u64) -> Result<Option<u64>, StoreError> {
    if lo >= hi {
        return Ok(None);
    }
    let last = index.range(field.key(lo)..field.key(hi)).next_back();
    Ok(match last {
        Some(r) => {
            let (k, _) = r?;
            k.get(k.len().saturating_sub(8)..)
                .and_then(|b| b.try_into().ok())
                .map(u64::from_be_bytes)
        }
        None => None,
    })
}

/// The highest seq in `[lo, hi)` that every field holds: each field in turn is sought
/// to at or below the current candidate until all agree (a leapfrog join).
pub(super) fn leapfrog(
    index: &Table<Entry>,
    fields: &[Field],
    lo: u64,
    hi: u64,
) -> Result<Option<u64>, StoreError> {
    let Some(first) = fields.first() else {
        return Ok(None);
    };
    let Some(mut s) = below(index, first, lo, hi)? else {
        return Ok(None);
    };
    let (mut agreed, mut i) = (1, 1 % fields.len());
    while agreed < fields.len() {
        let Some(t) = below(index, &fields[i], lo, s + 1)? else {
            return Ok(None);
        };
        if t == s {
            agreed += 1;
        } else {
            s = t;
            agreed = 1;
        }
        i = (i + 1) % fields.len();
    }
    Ok(Some(s))
}
