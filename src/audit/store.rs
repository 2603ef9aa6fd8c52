//! What the audit trail needs from storage, in its own words; sled's implementation is
//! `crate::store::sled_impl::audit`.

use super::{Event, Filter};
use crate::store::{Commit, StoreError};

/// Events in seq order (or newest first), read lazily.
pub type Events<'a> = Box<dyn Iterator<Item = Result<Event, StoreError>> + 'a>;

pub trait AuditStore: Send + Sync {
    /// Append the next event in one transaction: `make` gets the last event's seq and
    /// hash (0 and the genesis hash on an empty trail) and returns the event to store,
    /// whose seq must be one more. Appends are serialised, so the chain has no gaps.
    fn append(
        &self,
        make: &mut dyn FnMut(u64, &str) -> Event,
    ) -> Result<(Event, Commit), StoreError>;

    /// The newest event.
    fn last(&self) -> Result<Option<Event>, StoreError>;

    /// The event with this seq.
    fn get(&self, seq: u64) -> Result<Option<Event>, StoreError>;

    /// Events from seq `from` on, oldest first (verification, catching the file up).
    fn since_seq(&self, from: u64) -> Events<'_>;

    /// Events with a seq below `before` (all when `None`), newest first.
    fn newest_first(&self, before: Option<u64>) -> Events<'_>;

    /// Newest first, from below `filter.before`: every event that matches `filter`, and
    /// perhaps others (the caller checks each). A store narrows by what it indexes
    /// (failures, action, actor; a time range); SQL says it in its `WHERE`.
    fn candidates(&self, filter: &Filter) -> Events<'_> {
        self.newest_first(filter.before)
    }
}
