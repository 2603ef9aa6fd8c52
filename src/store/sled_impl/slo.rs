//! The SLO on sled: the `slo_minutes` tree (big-endian minute since the epoch →
//! [`Minute`]), the `slo_sums` tree (a byte naming the slot length, then the slot's
//! first minute big-endian → [`Totals`]; one key past them marks the sums complete)
//! and the `alerts` tree.
//!
//! A merge changes a minute and the sums of its minute, 5-minute, hour and day slots as one
//! atomic write (`AtomicWrite`), under a lock (one process holds a sled store); SQL says the same with
//! `SELECT … FOR UPDATE` on the minute's row and `INSERT … ON CONFLICT DO UPDATE` of the
//! four sums. A home from before the sums gets them built from its minutes at open.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::slo::Minute;
use crate::slo::Totals;
use crate::slo::alerts::{Alert, AlertState};
use crate::slo::store::{AlertStore, Alerts, MinuteStore, Minutes, Slot, Sums};
use crate::store::{AtomicWrite, Commit, Store, StoreError, Table};

pub(crate) struct SledMinutes {
    store: Store,
    table: Table<Minute>,
    sums: Table<Totals>,
    /// Held by a merge from its reads to its commit.
    merging: Mutex<()>,
}

fn key_minute(k: &[u8]) -> u64 {
    k.try_into().map(u64::from_be_bytes).unwrap_or(0)
}

fn sum_key(slot: Slot, start: u64) -> [u8; 9] {
    let mut k = [0u8; 9];
    k[0] = match slot {
        Slot::Minute => 1,
        Slot::FiveMinutes => 5,
        Slot::Hour => 60,
        Slot::Day => 144,
    };
    k[1..].copy_from_slice(&start.to_be_bytes());
    k
}

/// Sorts after every sum key.
const COMPLETE: [u8; 1] = [0xff];

/// Sums written per batch while building them at open.
const BUILD_BATCH: usize = 1024;

impl SledMinutes {
    pub(crate) fn open(store: &Store) -> Result<SledMinutes, StoreError> {
        let m = SledMinutes {
            store: store.clone(),
            table: store.table("slo_minutes")?,
            sums: store.table("slo_sums")?,
            merging: Mutex::new(()),
        };
        if m.sums.get(COMPLETE)?.is_none() {
            m.build_sums()?;
        }
        Ok(m)
    }

    /// Sum every minute record into its slots (a home from before the sums, or a build
    /// that a crash cut short: it starts over), then mark the sums complete.
    fn build_sums(&self) -> Result<(), StoreError> {
        let _held = self.merging.lock().unwrap_or_else(|p| p.into_inner());
        self.sums.clear()?;
        let mut puts: Vec<(Vec<u8>, Totals)> = Vec::with_capacity(BUILD_BATCH);
        let longer = [Slot::FiveMinutes, Slot::Hour, Slot::Day];
        let mut open: [Option<(u64, Totals)>; 3] = [None, None, None];
        for r in self.table.iter() {
            let (k, minute) = r?;
            let at = key_minute(&k);
            let t = Totals::of(&minute);
            for (slot, acc) in longer.iter().zip(open.iter_mut()) {
                let start = slot.start(at);
                match acc {
                    Some((s, sum)) if *s == start => sum.add(&t),
                    _ => {
                        if let Some((s, sum)) = acc.replace((start, t.clone())) {
                            puts.push((sum_key(*slot, s).to_vec(), sum));
                        }
                    }
                }
            }
            puts.push((sum_key(Slot::Minute, at).to_vec(), t));
            if puts.len() >= BUILD_BATCH {
                self.sums.apply(&puts, &[])?;
                puts.clear();
            }
        }
        for (slot, acc) in longer.iter().zip(open) {
            if let Some((s, sum)) = acc {
                puts.push((sum_key(*slot, s).to_vec(), sum));
            }
        }
        if !puts.is_empty() {
            self.sums.apply(&puts, &[])?;
        }
        self.sums.insert(COMPLETE, &Totals::default())
    }
}

impl MinuteStore for SledMinutes {
    fn merge(&self, minute: u64, f: &mut dyn FnMut(&mut Minute)) -> Result<Commit, StoreError> {
        let key = minute.to_be_bytes();
        let _held = self.merging.lock().unwrap_or_else(|p| p.into_inner());
        let old = self.table.get(key)?;
        let before = old.as_ref().map(Totals::of).unwrap_or_default();
        let mut m = old.unwrap_or_default();
        f(&mut m);
        let after = Totals::of(&m);
        let mut w = AtomicWrite::new();
        self.table.put_in(&mut w, key, &m)?;
        for slot in Slot::ALL {
            let k = sum_key(slot, slot.start(minute));
            let mut sum = self.sums.get(k)?.unwrap_or_default();
            sum.sub(&before);
            sum.add(&after);
            self.sums.put_in(&mut w, k, &sum)?;
        }
        w.commit()?;
        Ok(self.store.pending())
    }

    fn sums(&self, slot: Slot, from: u64, to: u64) -> Sums<'_> {
        // One slot: a lookup costs less than an iterator.
        if from == to {
            return Box::new(
                self.sums
                    .get(sum_key(slot, from))
                    .transpose()
                    .map(move |r| r.map(|t| (from, t)))
                    .into_iter(),
            );
        }
        Box::new(
            self.sums
                .range(sum_key(slot, from)..=sum_key(slot, to))
                .map(|r| r.map(|(k, t)| (key_minute(&k[1..]), t))),
        )
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
        let _held = self.merging.lock().unwrap_or_else(|p| p.into_inner());
        let mut removes: Vec<Vec<u8>> = Vec::new();
        for r in self.table.range(..before.to_be_bytes()).take(limit) {
            removes.push(r?.0);
        }
        let minutes = removes.len();
        if minutes > 0 {
            self.table.apply(&[], &removes)?;
        }
        // Slots that end before `before`.
        let mut sums: Vec<Vec<u8>> = Vec::new();
        for slot in Slot::ALL {
            let end = (before + 1).saturating_sub(slot.minutes());
            if end == 0 {
                continue;
            }
            for r in self
                .sums
                .range(sum_key(slot, 0)..sum_key(slot, end))
                .take(limit)
            {
                sums.push(r?.0);
            }
        }
        if !sums.is_empty() {
            self.sums.apply(&[], &sums)?;
        }
        Ok(match minutes + sums.len() {
            0 => Commit::done(),
            _ => self.store.pending(),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn add(m: &mut Minute, requests: u64) {
        m.up = true;
        m.routes.push(crate::slo::RouteMinute {
            route: "/x".into(),
            classes: vec![0, requests, 0, 0, 1],
            buckets: vec![requests + 1],
            sum_us: 7,
        });
    }

    fn all(m: &SledMinutes, slot: Slot) -> Vec<(u64, u64, u64)> {
        m.sums(slot, 0, u64::MAX / 2)
            .map(|r| r.unwrap())
            .map(|(s, t)| (s, t.requests, t.up_minutes))
            .collect()
    }

    #[test]
    fn sums_follow_merges_are_built_for_an_older_home_and_pruned_by_slot_end() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let m = SledMinutes::open(&store).unwrap();
        for (minute, n) in [(118, 1), (119, 2), (120, 3), (124, 4), (125, 5), (185, 6)] {
            let _ = m.merge(minute, &mut |r| add(r, n)).unwrap();
        }
        let _ = m.merge(120, &mut |r| add(r, 10)).unwrap();
        // Each request line adds its count and one 5xx.
        let hours = vec![(60, 2 + 3, 2), (120, 15 + 5 + 6, 3), (180, 7, 1)];
        let fives = vec![(115, 2 + 3, 2), (120, 15 + 5, 2), (125, 6, 1), (185, 7, 1)];
        assert_eq!(all(&m, Slot::Hour), hours);
        assert_eq!(all(&m, Slot::FiveMinutes), fives);
        assert_eq!(all(&m, Slot::Minute).len(), 6);
        assert_eq!(all(&m, Slot::Minute)[2], (120, 4 + 11, 1), "merged twice");

        // A home whose sums are missing (older than them, or a build cut short) gets
        // them from its minutes at open.
        m.sums.clear().unwrap();
        let m = SledMinutes::open(&store).unwrap();
        assert_eq!(all(&m, Slot::Hour), hours);
        assert_eq!(all(&m, Slot::FiveMinutes), fives);

        // Before minute 125: minutes 118..=124 go, and the slots that ended by then.
        let _ = m.prune(125, 100).unwrap();
        assert_eq!(m.first().unwrap(), Some(125));
        assert_eq!(all(&m, Slot::FiveMinutes), fives[2..]);
        assert_eq!(all(&m, Slot::Hour), hours[1..]);
        assert_eq!(all(&m, Slot::Minute).len(), 2);
    }
}
