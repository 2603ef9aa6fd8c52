//! The keys of `audit_index` and the walk over them (see `audit` for the layout).
//!
//! Seqs are grouped in blocks of 64; a key names a condition and a block, and its
//! value is a bitmap of the block's seqs that meet it:
//! - `f block` for failures (`ok: false`);
//! - `a action \0 block`, `c actor \0 block`, `i ip \0 block` (no `i` bit for an event
//!   without an address). A value holding a 0 byte is not indexed: a filter on such a
//!   value reads the events instead.
//!
//! One key per condition and block instead of one per event: a block costs a write
//! when it is full, not one per event and condition, and a snapshot or restore moves
//! a few keys per 64 events. The newest block is kept in memory until it is full and
//! rebuilt from its events at open (see `Pending`).

use std::collections::HashMap;

use super::audit::Entry;
use crate::audit::Event;
use crate::store::{StoreError, Table};

/// Where the index says which layout it holds.
pub(super) const FORMAT_KEY: &[u8] = b"\0format";

/// Seqs per block: the bits of a `u64`.
const BLOCK_BITS: u64 = 64;

/// The block holding `seq`.
pub(super) fn block(seq: u64) -> u64 {
    seq / BLOCK_BITS
}

fn bit(seq: u64) -> u64 {
    1 << (seq % BLOCK_BITS)
}

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
}

fn key(prefix: &[u8], block: u64) -> Vec<u8> {
    let mut k = prefix.to_vec();
    k.extend_from_slice(&block.to_be_bytes());
    k
}

/// The block a key names (its last 8 bytes), if it is a block key.
pub(super) fn block_of(key: &[u8]) -> Option<u64> {
    if key.starts_with(b"\0") {
        return None;
    }
    let b: [u8; 8] = key.get(key.len().checked_sub(8)?..)?.try_into().ok()?;
    Some(u64::from_be_bytes(b))
}

/// The prefixes of the conditions `e` meets.
fn prefixes(e: &Event) -> Vec<Vec<u8>> {
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
        .map(Field::prefix)
        .collect()
}

/// The newest block's bitmaps, not yet written: every older block is in the index.
/// A block is written with the first event of the next one (the same atomic write),
/// so after a crash the newest block is the one holding the last event, and its bits
/// are read again from its events.
#[derive(Debug, Default, Clone)]
pub(super) struct Pending {
    pub(super) block: u64,
    bits: HashMap<Vec<u8>, u64>,
}

impl Pending {
    /// The newest block, read from the events at or above its first seq.
    pub(super) fn new(last_seq: u64, events: impl Iterator<Item = Event>) -> Pending {
        let mut p = Pending {
            block: block(last_seq),
            ..Pending::default()
        };
        for e in events {
            p.add(&e);
        }
        p
    }

    /// Count `e` in (its block must be this one).
    pub(super) fn add(&mut self, e: &Event) {
        for prefix in prefixes(e) {
            *self.bits.entry(prefix).or_default() |= bit(e.seq);
        }
    }

    /// Whether `seq` belongs to a later block, so this one is to be written first.
    pub(super) fn full_before(&self, seq: u64) -> bool {
        block(seq) != self.block
    }

    /// The keys and bitmaps to write when the block is full.
    pub(super) fn entries(&self) -> impl Iterator<Item = (Vec<u8>, Entry)> + '_ {
        self.bits
            .iter()
            .map(|(prefix, bits)| (key(prefix, self.block), Entry::bits(*bits)))
    }

    /// The seqs of this block that meet every field (bit i: seq block * 64 + i).
    fn matching(&self, fields: &[Field]) -> u64 {
        fields.iter().fold(u64::MAX, |acc, f| {
            acc & self.bits.get(&f.prefix()).copied().unwrap_or(0)
        })
    }
}

/// The highest block in `[lo, hi)` with an entry for `prefix`, and its bits.
fn below(
    index: &Table<Entry>,
    prefix: &[u8],
    lo: u64,
    hi: u64,
) -> Result<Option<(u64, u64)>, StoreError> {
    if lo >= hi {
        return Ok(None);
    }
    let Some(r) = index.range(key(prefix, lo)..key(prefix, hi)).next_back() else {
        return Ok(None);
    };
    let (k, v) = r?;
    Ok(block_of(&k).map(|b| (b, v.value)))
}

/// The highest block in `[lo, hi)` that every prefix has an entry for, with the AND
/// of their bits: each prefix in turn is sought to at or below the current candidate
/// until all agree (a leapfrog join over blocks).
fn leapfrog(
    index: &Table<Entry>,
    prefixes: &[Vec<u8>],
    lo: u64,
    hi: u64,
) -> Result<Option<(u64, u64)>, StoreError> {
    let Some(first) = prefixes.first() else {
        return Ok(None);
    };
    let Some((mut b, mut bits)) = below(index, first, lo, hi)? else {
        return Ok(None);
    };
    let (mut agreed, mut i) = (1, 1 % prefixes.len());
    while agreed < prefixes.len() {
        let Some((c, more)) = below(index, &prefixes[i], lo, b + 1)? else {
            return Ok(None);
        };
        if c == b {
            agreed += 1;
            bits &= more;
        } else {
            (b, bits, agreed) = (c, more, 1);
        }
        i = (i + 1) % prefixes.len();
    }
    Ok(Some((b, bits)))
}

/// The bits of block `b` whose seqs lie in `[lo, hi)`.
fn mask(b: u64, lo: u64, hi: u64) -> u64 {
    let first = b * BLOCK_BITS;
    (0..BLOCK_BITS)
        .filter(|i| (lo..hi).contains(&(first + i)))
        .fold(0, |m, i| m | 1 << i)
}

/// The seqs in `[lo, hi)` that meet every field, newest first: the pending block's,
/// then the written blocks below it.
pub(super) struct Walk {
    index: Table<Entry>,
    prefixes: Vec<Vec<u8>>,
    lo: u64,
    hi: u64,
    /// Blocks below this one are still to be read.
    next_block: u64,
    /// The block being emitted and its remaining bits.
    current: (u64, u64),
}

impl Walk {
    pub(super) fn new(
        index: Table<Entry>,
        pending: &Pending,
        fields: &[Field],
        lo: u64,
        hi: u64,
    ) -> Walk {
        let top = pending.block;
        let bits = if hi > top * BLOCK_BITS {
            pending.matching(fields) & mask(top, lo, hi)
        } else {
            0
        };
        Walk {
            index,
            prefixes: fields.iter().map(Field::prefix).collect(),
            lo,
            hi,
            next_block: top.min(block(hi.saturating_sub(1)) + 1),
            current: (top, bits),
        }
    }
}

impl Iterator for Walk {
    type Item = Result<u64, StoreError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let (b, bits) = self.current;
            if bits != 0 {
                let i = 63 - u64::from(bits.leading_zeros());
                self.current.1 &= !(1 << i);
                return Some(Ok(b * BLOCK_BITS + i));
            }
            match leapfrog(&self.index, &self.prefixes, block(self.lo), self.next_block) {
                Ok(Some((b, bits))) => {
                    self.next_block = b;
                    self.current = (b, bits & mask(b, self.lo, self.hi));
                }
                Ok(None) => return None,
                Err(e) => {
                    self.next_block = 0;
                    return Some(Err(e));
                }
            }
        }
    }
}
