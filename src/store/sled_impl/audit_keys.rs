//! The keys of `audit_index` and the walk over them (see `audit` for the layout).
//!
//! Seqs are grouped in blocks of 1,024; a key names a condition and a block, and its
//! value is a bitmap of the block's seqs that meet it:
//! - `f block` for failures (`ok: false`);
//! - `a action \0 block`, `c actor \0 block`, `i ip \0 block` (no `i` bit for an event
//!   without an address). A value holding a 0 byte is not indexed: a filter on such a
//!   value reads the events instead.
//!
//! One key per condition and block instead of one per event: a block costs a write
//! when it is full, not one per event and condition, and a snapshot or restore moves
//! a few dozen keys per 1,024 events. The newest block is kept in memory until it is full and
//! rebuilt from its events at open (see `Pending`).

use std::collections::HashMap;

use super::audit::Entry;
use crate::audit::Event;
use crate::store::{StoreError, Table};

/// Where the index says which layout it holds.
pub(super) const FORMAT_KEY: &[u8] = b"\0format";

/// Seqs per block.
pub(super) const BLOCK_SEQS: u64 = 1024;
const WORDS: usize = (BLOCK_SEQS / 64) as usize;

/// The block holding `seq`.
pub(super) fn block(seq: u64) -> u64 {
    seq / BLOCK_SEQS
}

/// A block's bitmap: bit i stands for seq `block * BLOCK_SEQS + i`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Bits([u64; WORDS]);

impl Bits {
    const NONE: Bits = Bits([0; WORDS]);
    const ALL: Bits = Bits([u64::MAX; WORDS]);

    fn set(&mut self, seq: u64) {
        let i = (seq % BLOCK_SEQS) as usize;
        self.0[i / 64] |= 1 << (i % 64);
    }

    fn and(mut self, other: &Bits) -> Bits {
        for (a, b) in self.0.iter_mut().zip(other.0) {
            *a &= b;
        }
        self
    }

    /// Only the seqs of block `b` in `[lo, hi)`.
    fn within(mut self, b: u64, lo: u64, hi: u64) -> Bits {
        let first = b * BLOCK_SEQS;
        for (w, word) in self.0.iter_mut().enumerate() {
            for i in 0..64 {
                let seq = first + (w * 64 + i) as u64;
                if !(lo..hi).contains(&seq) {
                    *word &= !(1 << i);
                }
            }
        }
        self
    }

    /// Take the highest bit (its offset in the block).
    fn pop_highest(&mut self) -> Option<u64> {
        let w = self.0.iter().rposition(|&word| word != 0)?;
        let i = 63 - self.0[w].leading_zeros() as usize;
        self.0[w] &= !(1 << i);
        Some((w * 64 + i) as u64)
    }

    /// As stored: the words up to the last one with a bit set.
    pub(super) fn to_entry(self) -> Entry {
        let len = self.0.iter().rposition(|&w| w != 0).map_or(0, |w| w + 1);
        Entry::words(self.0[..len].to_vec())
    }

    pub(super) fn from_entry(e: &Entry) -> Bits {
        let mut b = Bits::NONE;
        for (to, from) in b.0.iter_mut().zip(&e.words) {
            *to = *from;
        }
        b
    }

    /// The seqs set, in order (for checks).
    pub(super) fn seqs(self, b: u64) -> impl Iterator<Item = u64> {
        let mut bits = self;
        std::iter::from_fn(move || bits.pop_highest())
            .map(move |i| b * BLOCK_SEQS + i)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
    }
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
    bits: HashMap<Vec<u8>, Bits>,
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
            self.bits.entry(prefix).or_insert(Bits::NONE).set(e.seq);
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
            .map(|(prefix, bits)| (key(prefix, self.block), bits.to_entry()))
    }

    /// The seqs of this block that meet every field.
    fn matching(&self, fields: &[Field]) -> Bits {
        fields.iter().fold(Bits::ALL, |acc, f| {
            acc.and(self.bits.get(&f.prefix()).unwrap_or(&Bits::NONE))
        })
    }
}

/// The highest block in `[lo, hi)` with an entry for `prefix`, and its bits.
fn below(
    index: &Table<Entry>,
    prefix: &[u8],
    lo: u64,
    hi: u64,
) -> Result<Option<(u64, Bits)>, StoreError> {
    if lo >= hi {
        return Ok(None);
    }
    let Some(r) = index.range(key(prefix, lo)..key(prefix, hi)).next_back() else {
        return Ok(None);
    };
    let (k, v) = r?;
    Ok(block_of(&k).map(|b| (b, Bits::from_entry(&v))))
}

/// The highest block in `[lo, hi)` that every prefix has an entry for, with the AND
/// of their bits: each prefix in turn is sought to at or below the current candidate
/// until all agree (a leapfrog join over blocks).
fn leapfrog(
    index: &Table<Entry>,
    prefixes: &[Vec<u8>],
    lo: u64,
    hi: u64,
) -> Result<Option<(u64, Bits)>, StoreError> {
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
            bits = bits.and(&more);
        } else {
            (b, bits, agreed) = (c, more, 1);
        }
        i = (i + 1) % prefixes.len();
    }
    Ok(Some((b, bits)))
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
    current: (u64, Bits),
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
        let bits = if hi > top * BLOCK_SEQS {
            pending.matching(fields).within(top, lo, hi)
        } else {
            Bits::NONE
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
            let b = self.current.0;
            if let Some(i) = self.current.1.pop_highest() {
                return Some(Ok(b * BLOCK_SEQS + i));
            }
            match leapfrog(&self.index, &self.prefixes, block(self.lo), self.next_block) {
                Ok(Some((b, bits))) => {
                    self.next_block = b;
                    self.current = (b, bits.within(b, self.lo, self.hi));
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
