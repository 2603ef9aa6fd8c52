//! What the flags need from storage, in their own words.

use super::{Flag, FlagChange};
use crate::store::{Commit, StoreError};

pub trait FlagStore: Send + Sync {
    /// Every flag ever set.
    fn load_flags(&self) -> Result<Vec<Flag>, StoreError>;
    /// Write the flag and, when its state changed, the change record: both or neither.
    fn save_flag(&self, flag: &Flag, change: Option<&FlagChange>) -> Result<Commit, StoreError>;
    /// Changes at or after `since_ms`, oldest first, at most `limit`.
    fn changes_since(&self, since_ms: i64, limit: usize) -> Result<Vec<FlagChange>, StoreError>;
}
