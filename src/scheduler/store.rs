//! What the schedules need from storage, in their own words; sled's implementation is
//! `crate::store::sled_impl::schedules`. Each change is one transaction on one schedule
//! and hands back a [`Commit`].

use super::schedules::Schedule;
use crate::store::{Commit, StoreError};

pub trait ScheduleStore: Send + Sync {
    /// Every schedule, by name.
    fn list(&self) -> Result<Vec<Schedule>, StoreError>;

    fn get(&self, name: &str) -> Result<Option<Schedule>, StoreError>;

    /// Insert or replace.
    fn put(&self, s: &Schedule) -> Result<Commit, StoreError>;

    /// Insert unless the name is taken; `None` when it is.
    fn insert_new(&self, s: &Schedule) -> Result<Option<Commit>, StoreError>;

    /// Change one schedule in one transaction (`f` may run more than once); `None` when
    /// there is no such schedule.
    fn update(
        &self,
        name: &str,
        f: &mut dyn FnMut(&mut Schedule),
    ) -> Result<Option<(Schedule, Commit)>, StoreError>;

    /// Remove one; `None` when there is no such schedule.
    fn remove(&self, name: &str) -> Result<Option<(Schedule, Commit)>, StoreError>;
}
