//! What the SLO needs from storage, in its own words: per-minute records. Sled's
//! implementation is `crate::store::sled_impl::slo`.

use super::alerts::Alert;
use super::minutes::Minute;
use crate::store::{Commit, StoreError};

/// Minute records in minute order, read lazily.
pub type Minutes<'a> = Box<dyn Iterator<Item = Result<(u64, Minute), StoreError>> + 'a>;

pub trait MinuteStore: Send + Sync {
    /// Change one minute's record in one transaction (an absent one starts empty); `f`
    /// may run more than once. Several processes may add to the same minute.
    fn merge(&self, minute: u64, f: &mut dyn FnMut(&mut Minute)) -> Result<Commit, StoreError>;

    fn get(&self, minute: u64) -> Result<Option<Minute>, StoreError>;

    /// Records of the minutes `from..=to`, oldest first.
    fn range(&self, from: u64, to: u64) -> Minutes<'_>;

    /// The oldest minute stored.
    fn first(&self) -> Result<Option<u64>, StoreError>;

    /// Remove up to `limit` records older than `before`.
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
