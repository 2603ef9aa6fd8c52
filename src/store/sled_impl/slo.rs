//! The SLO on sled: the `slo_minutes` tree (big-endian minute since the epoch →
//! [`Minute`], merged by compare-and-swap) and the `alerts` tree.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::slo::Minute;
use crate::slo::alerts::{Alert, AlertState};
use crate::slo::store::{AlertStore, Alerts, MinuteStore, Minutes};
use crate::store::{Commit, Store, StoreError, Table};

pub(crate) struct SledMinutes {
    store: Store,
    table: Table<Minute>,
}

fn key_minute(k: &[u8]) -> u64 {
    k.try_into().map(u64::from_be_bytes).unwrap_or(0)
}

impl SledMinutes {
    pub(crate) fn open(store: &Store) -> Result<SledMinutes, StoreError> {
        Ok(SledMinutes {
            store: store.clone(),
            table: store.table("slo_minutes")?,
        })
    }
}

impl MinuteStore for SledMinutes {
    fn merge(&self, minute: u64, f: &mut dyn FnMut(&mut Minute)) -> Result<Commit, StoreError> {
        self.table.update(minute.to_be_bytes(), |old| {
            let mut m = old.unwrap_or_default();
            f(&mut m);
            Some(m)
        })?;
        Ok(self.store.pending())
    }

    fn get(&self, minute: u64) -> Result<Option<Minute>, StoreError> {
        self.table.get(minute.to_be_bytes())
    }

    fn range(&self, from: u64, to: u64) -> Minutes<'_> {
        Box::new(
            self.table
                .range(from.to_be_bytes()..=to.to_be_bytes())
                .map(|r| r.map(|(k, m)| (key_minute(&k), m))),
        )
    }

    fn first(&self) -> Result<Option<u64>, StoreError> {
        Ok(self.table.first()?.map(|(k, _)| key_minute(&k)))
    }

    fn prune(&self, before: u64, limit: usize) -> Result<Commit, StoreError> {
        let mut removed = false;
        for _ in 0..limit {
            match self.table.first()? {
                Some((k, _)) if key_minute(&k) < before => {
                    self.table.remove(&k)?;
                    removed = true;
                }
                _ => break,
            }
        }
        Ok(match removed {
            true => self.store.pending(),
            false => Commit::done(),
        })
    }
}

/// Alerts on sled: the `alerts` tree, big-endian id → [`Alert`]. Ids come from a
/// counter read at open (one process holds a sled store).
pub(crate) struct SledAlerts {
    store: Store,
    table: Table<Alert>,
    next_id: AtomicU64,
}

impl SledAlerts {
    pub(crate) fn open(store: &Store) -> Result<SledAlerts, StoreError> {
        let table: Table<Alert> = store.table("alerts")?;
        let last = match table.last()? {
            Some((_, a)) => a.id,
            None => 0,
        };
        Ok(SledAlerts {
            store: store.clone(),
            table,
            next_id: AtomicU64::new(last + 1),
        })
    }
}

impl AlertStore for SledAlerts {
    fn next_id(&self) -> Result<u64, StoreError> {
        Ok(self.next_id.fetch_add(1, Ordering::Relaxed))
    }

    fn put(&self, alert: &Alert) -> Result<Commit, StoreError> {
        self.table.insert(alert.id.to_be_bytes(), alert)?;
        Ok(self.store.pending())
    }

    fn newest_first(&self) -> Alerts<'_> {
        Box::new(self.table.iter().rev().map(|r| r.map(|(_, a)| a)))
    }

    fn firing(&self) -> Result<Vec<Alert>, StoreError> {
        self.table
            .iter()
            .filter_map(|r| match r {
                Ok((_, a)) if a.state == AlertState::Firing => Some(Ok(a)),
                Ok(_) => None,
                Err(e) => Some(Err(e)),
            })
            .collect()
    }
}
