//! What the SLO needs from storage, in its own words: per-minute records, and the sums
//! of aligned slots of 1, 5 and 60 minutes kept beside them, so that a chart or a window
//! reads a few hundred small sums instead of thousands of minute records. Sled's
//! implementation is `crate::store::sled_impl::slo`.

use super::alerts::Alert;
use super::minutes::{Minute, Totals};
use crate::store::{Commit, StoreError};

/// Minute records in minute order, read lazily.
pub type Minutes<'a> = Box<dyn Iterator<Item = Result<(u64, Minute), StoreError>> + 'a>;

/// Sums of slots, `(first minute of the slot, sums)`, in minute order, read lazily.
pub type Sums<'a> = Box<dyn Iterator<Item = Result<(u64, Totals), StoreError>> + 'a>;

/// A length of slot whose sums the store keeps: slots start at multiples of their
/// length (minutes since the epoch, so days are UTC days), and each length divides the
/// next: an hour is 12 five-minute slots.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot {
    Minute,
    FiveMinutes,
    Hour,
    Day,
}

impl Slot {
    /// Longest first.
    pub const ALL: [Slot; 4] = [Slot::Day, Slot::Hour, Slot::FiveMinutes, Slot::Minute];

    pub fn minutes(self) -> u64 {
        match self {
            Slot::Minute => 1,
            Slot::FiveMinutes => 5,
            Slot::Hour => 60,
            Slot::Day => 1440,
        }
    }

    /// The first minute of the slot holding `minute`.
    pub fn start(self, minute: u64) -> u64 {
        minute - minute % self.minutes()
    }
}

pub trait MinuteStore: Send + Sync {
    /// Change one minute's record (an absent one starts empty) and the sums of the
    /// slots holding it, in one transaction; `f` may run more than once. Several
    /// processes may add to the same minute.
    fn merge(&self, minute: u64, f: &mut dyn FnMut(&mut Minute)) -> Result<Commit, StoreError>;

    /// The sums of the `slot`s starting in `from..=to`, oldest first; a slot with no
    /// minute record has none.
    fn sums(&self, slot: Slot, from: u64, to: u64) -> Sums<'_>;

    fn get(&self, minute: u64) -> Result<Option<Minute>, StoreError>;

    /// Records of the minutes `from..=to`, oldest first.
    fn range(&self, from: u64, to: u64) -> Minutes<'_>;

    /// The oldest minute stored.
    fn first(&self) -> Result<Option<u64>, StoreError>;

    /// Remove up to `limit` records older than `before`, and the sums of slots that
    /// end before it.
    fn prune(&self, before: u64, limit: usize) -> Result<Commit, StoreError>;
}

/// What the alerts need from storage.
pub trait AlertStore: Send + Sync {
    /// A fresh alert id, larger than every id handed out before.
    fn next_id(&self) -> Result<u64, StoreError>;

    /// Insert or replace an alert (by id).
    fn put(&self, alert: &Alert) -> Result<Commit, StoreError>;

    /// Alerts newest first.
    fn newest_first(&self) -> Alerts<'_>;

    /// Alerts firing now.
    fn firing(&self) -> Result<Vec<Alert>, StoreError>;
}

/// Alerts read lazily.
pub type Alerts<'a> = Box<dyn Iterator<Item = Result<Alert, StoreError>> + 'a>;
