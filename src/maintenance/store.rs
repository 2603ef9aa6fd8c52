//! What maintenance windows need from storage, in their own words.

use super::{Held, Window};
use crate::store::{Commit, StoreError};

pub trait MaintenanceStore: Send + Sync {
    fn add_window(&self, window: &Window) -> Result<Commit, StoreError>;
    /// Windows that end after `after_ms`, by start.
    fn windows_ending_after(&self, after_ms: i64) -> Result<Vec<Window>, StoreError>;
    fn get_window(&self, id: &str) -> Result<Option<Window>, StoreError>;
    /// Move a window's end (ending it early, or cancelling it with `end_ms = start_ms`).
    fn set_window_end(&self, id: &str, end_ms: i64)
    -> Result<Option<(Window, Commit)>, StoreError>;
    /// Keep an alert message until the window is over.
    fn hold_message(&self, message: &Held) -> Result<Commit, StoreError>;
    /// The oldest held messages, at most `limit`.
    fn held_messages(&self, limit: usize) -> Result<Vec<Held>, StoreError>;
    fn held_count(&self) -> Result<usize, StoreError>;
    /// A held message was delivered: forget it.
    fn release_message(&self, id: &str) -> Result<Commit, StoreError>;
}
