//! Schedules on sled: the `schedules` tree, name → [`Schedule`].

use crate::scheduler::schedules::Schedule;
use crate::scheduler::store::ScheduleStore;
use crate::store::{Commit, Store, StoreError, Table};

pub(crate) struct SledSchedules {
    store: Store,
    table: Table<Schedule>,
}

impl SledSchedules {
    pub(crate) fn open(store: &Store) -> Result<SledSchedules, StoreError> {
        Ok(SledSchedules {
            store: store.clone(),
            table: store.table("schedules")?,
        })
    }
}

impl ScheduleStore for SledSchedules {
    fn list(&self) -> Result<Vec<Schedule>, StoreError> {
        self.table.iter().map(|r| r.map(|(_, s)| s)).collect()
    }

    fn get(&self, name: &str) -> Result<Option<Schedule>, StoreError> {
        self.table.get(name)
    }

    fn put(&self, s: &Schedule) -> Result<Commit, StoreError> {
        self.table.insert(&s.name, s)?;
        Ok(self.store.pending())
    }

    fn insert_new(&self, s: &Schedule) -> Result<Option<Commit>, StoreError> {
        Ok(self
            .table
            .insert_new(&s.name, s)?
            .then(|| self.store.pending()))
    }

    fn update(
        &self,
        name: &str,
        f: &mut dyn FnMut(&mut Schedule),
    ) -> Result<Option<(Schedule, Commit)>, StoreError> {
        let s = self.table.update(name, |cur| {
            let mut s = cur?;
            f(&mut s);
            Some(s)
        })?;
        Ok(s.map(|s| (s, self.store.pending())))
    }

    fn remove(&self, name: &str) -> Result<Option<(Schedule, Commit)>, StoreError> {
        Ok(self.table.remove(name)?.map(|s| (s, self.store.pending())))
    }
}
