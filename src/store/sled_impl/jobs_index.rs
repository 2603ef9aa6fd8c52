//! The job store's index entries and counts: what a job's record implies in each index
//! tree, how a change of records moves them (one atomic write with the records), the
//! rebuild for a home written before these indexes, and a check that they agree.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::job_keys::{count_key, parse_count_key, ready_key, status_key, time_key};
use crate::jobs::{Job, Status};
use crate::store::{AtomicWrite, Record, Store, StoreError, Table};

/// An empty index value.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub(super) struct Marker {}
impl Record for Marker {
    const NAME: &'static str = "job index entry";
    const VERSION: u8 = 1;
}

/// A count of jobs (and, under [`FORMAT_KEY`], the index format).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub(super) struct Count {
    pub(super) n: u64,
}
impl Record for Count {
    const NAME: &'static str = "job count";
    const VERSION: u8 = 1;
}

/// Where `jobs_counts` says which index layout the trees hold. Count keys start with a
/// queue name, never with a 0 byte.
const FORMAT_KEY: &[u8] = b"\0format";
/// 2: indexes written with their records; `jobs_status` by (status, queue, kind),
/// `jobs_running` by lease end, `jobs_finished`, `jobs_counts`.
const FORMAT: u64 = 2;

/// Jobs per (queue, kind, status).
pub(super) type CountMap = BTreeMap<(String, String, Status), i64>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Index {
    /// Queued jobs, in claim order.
    Ready,
    /// Scheduled jobs by `run_at`.
    Sched,
    /// Running jobs by lease end.
    Running,
    /// Every job by (status, queue, kind, id): the lists.
    Status,
    /// Finished jobs by `finished_at`: pruning.
    Finished,
}

const ALL: [Index; 5] = [
    Index::Ready,
    Index::Sched,
    Index::Running,
    Index::Status,
    Index::Finished,
];

/// The entries `job` has, from its record alone.
pub(super) fn entries(j: &Job, id: &[u8; 16]) -> Vec<(Index, Vec<u8>)> {
    let mut out = vec![(Index::Status, status_key(j, id))];
    match j.status {
        Status::Queued => out.push((Index::Ready, ready_key(j, id))),
        Status::Scheduled => out.push((Index::Sched, time_key(j.run_at, id))),
        Status::Running => out.push((
            Index::Running,
            time_key(j.lease_expires_at.unwrap_or(i64::MAX), id),
        )),
        s if s.is_finished() => {
            if let Some(f) = j.finished_at {
                out.push((Index::Finished, time_key(f, id)));
            }
        }
        _ => {}
    }
    out
}

/// The trees of the job store.
pub(super) struct Trees {
    pub(super) jobs: Table<Job>,
    pub(super) ready: Table<Marker>,
    pub(super) sched: Table<Marker>,
    pub(super) running: Table<Marker>,
    pub(super) status: Table<Marker>,
    pub(super) finished: Table<Marker>,
    pub(super) counts: Table<Count>,
}

/// One record's change: `None` before is an insert, `None` after a removal.
pub(super) type RecordChange<'a> = (&'a [u8; 16], Option<&'a Job>, Option<&'a Job>);

impl Trees {
    pub(super) fn open(store: &Store) -> Result<Trees, StoreError> {
        Ok(Trees {
            jobs: store.table("jobs")?,
            ready: store.table("jobs_ready")?,
            sched: store.table("jobs_sched")?,
            running: store.table("jobs_running")?,
            status: store.table("jobs_status")?,
            finished: store.table("jobs_finished")?,
            counts: store.table("jobs_counts")?,
        })
    }

    pub(super) fn index(&self, i: Index) -> &Table<Marker> {
        match i {
            Index::Ready => &self.ready,
            Index::Sched => &self.sched,
            Index::Running => &self.running,
            Index::Status => &self.status,
            Index::Finished => &self.finished,
        }
    }

    /// Write records, their index entries and the counts as one atomic change, then
    /// move `counts` (the caller holds its lock: the store's write lock).
    pub(super) fn write(
        &self,
        counts: &mut CountMap,
        changes: &[RecordChange<'_>],
    ) -> Result<(), StoreError> {
        let mut w = AtomicWrite::new();
        let mut deltas: CountMap = BTreeMap::new();
        for (id, old, new) in changes {
            match new {
                Some(j) => self.jobs.put_in(&mut w, id, j)?,
                None => self.jobs.remove_in(&mut w, id),
            }
            let before = old.map(|j| entries(j, id)).unwrap_or_default();
            let after = new.map(|j| entries(j, id)).unwrap_or_default();
            for e in before.iter().filter(|e| !after.contains(e)) {
                self.index(e.0).remove_in(&mut w, &e.1);
            }
            for e in after.iter().filter(|e| !before.contains(e)) {
                self.index(e.0).put_in(&mut w, &e.1, &Marker {})?;
            }
            for (j, d) in [(old, -1), (new, 1)] {
                if let Some(j) = j {
                    *deltas
                        .entry((j.queue.clone(), j.kind.clone(), j.status))
                        .or_default() += d;
                }
            }
        }
        deltas.retain(|_, d| *d != 0);
        for ((q, k, s), d) in &deltas {
            let key = (q.clone(), k.clone(), *s);
            let n = counts.get(&key).copied().unwrap_or(0) + d;
            self.counts
                .put_in(&mut w, count_key(q, k, *s), &Count { n: n.max(0) as u64 })?;
        }
        w.commit()?;
        for (k, d) in deltas {
            *counts.entry(k).or_default() += d;
        }
        Ok(())
    }

    /// The counts as stored, or `None` when the indexes predate this layout (or a
    /// rebuild did not finish).
    pub(super) fn load_counts(&self) -> Result<Option<CountMap>, StoreError> {
        if self.counts.get(FORMAT_KEY)? != Some(Count { n: FORMAT }) {
            return Ok(None);
        }
        let mut out = BTreeMap::new();
        for r in self.counts.range([1u8]..) {
            let (k, c) = r?;
            if let Some(key) = parse_count_key(&k) {
                out.insert(key, c.n as i64);
            }
        }
        Ok(Some(out))
    }

    /// Rebuild every index and the counts from the records (a home from before these
    /// indexes). The format mark is written last: an interrupted rebuild runs again.
    pub(super) fn rebuild(&self) -> Result<CountMap, StoreError> {
        self.counts.clear()?;
        for i in ALL {
            self.index(i).clear()?;
        }
        let mut pending: Vec<(Index, Vec<u8>)> = Vec::new();
        let mut counts: CountMap = BTreeMap::new();
        let mut n = 0u64;
        for r in self.jobs.iter() {
            let (key, job) = r?;
            let Ok(id) = <[u8; 16]>::try_from(key.as_slice()) else {
                continue;
            };
            pending.extend(entries(&job, &id));
            *counts.entry((job.queue, job.kind, job.status)).or_default() += 1;
            n += 1;
            if pending.len() >= 50_000 {
                self.flush(&mut pending)?;
            }
        }
        self.flush(&mut pending)?;
        let puts: Vec<(Vec<u8>, Count)> = counts
            .iter()
            .map(|((q, k, s), c)| (count_key(q, k, *s), Count { n: *c as u64 }))
            .collect();
        self.counts.apply(&puts, &[])?;
        self.counts.insert(FORMAT_KEY, &Count { n: FORMAT })?;
        if n > 0 {
            tracing::info!(jobs = n, "job indexes rebuilt from the records");
        }
        Ok(counts)
    }

    fn flush(&self, pending: &mut Vec<(Index, Vec<u8>)>) -> Result<(), StoreError> {
        for i in ALL {
            let puts: Vec<(Vec<u8>, Marker)> = pending
                .iter()
                .filter(|(t, _)| *t == i)
                .map(|(_, k)| (k.clone(), Marker {}))
                .collect();
            if !puts.is_empty() {
                self.index(i).apply(&puts, &[])?;
            }
        }
        pending.clear();
        Ok(())
    }

    /// Where the indexes and counts disagree with the records (at most `max` lines).
    #[cfg(test)]
    pub(super) fn disagreements(
        &self,
        counts: &CountMap,
        max: usize,
    ) -> Result<Vec<String>, StoreError> {
        let mut want: Vec<(Index, Vec<u8>)> = Vec::new();
        let mut recount: CountMap = BTreeMap::new();
        for r in self.jobs.iter() {
            let (key, job) = r?;
            if let Ok(id) = <[u8; 16]>::try_from(key.as_slice()) {
                want.extend(entries(&job, &id));
            }
            *recount
                .entry((job.queue, job.kind, job.status))
                .or_default() += 1;
        }
        let mut out = Vec::new();
        for i in ALL {
            let mut expected: Vec<&Vec<u8>> = want
                .iter()
                .filter(|(t, _)| *t == i)
                .map(|(_, k)| k)
                .collect();
            expected.sort();
            let mut have = Vec::new();
            for r in self.index(i).iter() {
                have.push(r?.0);
            }
            for k in &have {
                if expected.binary_search(&k).is_err() {
                    out.push(format!(
                        "{i:?}: entry {:?} without its record",
                        super::job_keys::tail_id(k)
                    ));
                }
            }
            for k in expected {
                if have.binary_search(k).is_err() {
                    out.push(format!(
                        "{i:?}: record {:?} without its entry",
                        super::job_keys::tail_id(k)
                    ));
                }
            }
        }
        let live = |m: &CountMap| -> CountMap {
            m.iter()
                .filter(|(_, n)| **n != 0)
                .map(|(k, n)| (k.clone(), *n))
                .collect()
        };
        if live(counts) != live(&recount) {
            out.push(format!(
                "counts {:?} != records {:?}",
                live(counts),
                live(&recount)
            ));
        }
        let stored = self.load_counts()?.unwrap_or_default();
        if live(&stored) != live(&recount) {
            out.push(format!(
                "stored counts {:?} != records {:?}",
                live(&stored),
                live(&recount)
            ));
        }
        out.truncate(max);
        Ok(out)
    }
}
