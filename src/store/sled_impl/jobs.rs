//! The job queue on sled.
//!
//! The `jobs` tree (16-byte UUIDv7 id → [`Job`]) is the truth. Four index trees make
//! the hot paths cheap and are rebuilt from it at every open, so a crash between a
//! record write and an index write can never lose or duplicate a job:
//! - `jobs_ready`: `queue \0 kind \0 priority↓ run_at id` for queued jobs. A claim peeks
//!   the head of every (queue, kind) it may take, picks the best, and *removes* that
//!   index entry: sled's remove is atomic, so exactly one claimer gets it.
//! - `jobs_sched`: `run_at id` for scheduled jobs (delayed or backing off).
//! - `jobs_running`: `id` for running jobs (stuck detection scans only these).
//! - `jobs_status`: `status id` for every job, so a list of one status (the dead, the
//!   stuck) reads only those records instead of every one.
//!
//! The key encodings are in `job_keys`. `jobs_unique` maps a unique key to the job holding it. A job changes by
//! compare-and-swap on its record, retried on a concurrent change; the indexes follow.
//! Counts per (queue, kind, status) are kept in memory (rebuilt at open), so stats,
//! health and `/metrics` never walk the tree.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use super::job_keys::{id_bytes, ord_i64, pair_prefix, ready_key, sched_key, status_key};
use crate::jobs::store::{Change, Counts, Inserted, JobStore, Page};
use crate::jobs::{Filter, Job, JobError, Status};
use crate::store::{Cas, Commit, Record, Store, StoreError, Table};

mod insert;

/// An empty index value.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct Marker {}
impl Record for Marker {
    const NAME: &'static str = "job index entry";
    const VERSION: u8 = 1;
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct UniqueHolder {
    id: String,
}
impl Record for UniqueHolder {
    const NAME: &'static str = "job unique key";
    const VERSION: u8 = 1;
}

/// The sled job store; one per process (it holds the counts).
pub(crate) struct SledJobs {
    store: Store,
    jobs: Table<Job>,
    ready: Table<Marker>,
    sched: Table<Marker>,
    running: Table<Marker>,
    by_status: Table<Marker>,
    unique: Table<UniqueHolder>,
    counts: Mutex<BTreeMap<(String, String, Status), i64>>,
    /// Every (queue, kind) that ever had a job: the claim's candidates.
    pairs: Mutex<BTreeSet<(String, String)>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Counters only: a panic elsewhere leaves nothing half-done behind.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl SledJobs {
    /// Open the trees and rebuild the indexes and counts from the records.
    pub(crate) fn open(store: &Store) -> Result<SledJobs, StoreError> {
        let s = SledJobs {
            store: store.clone(),
            jobs: store.table("jobs")?,
            ready: store.table("jobs_ready")?,
            sched: store.table("jobs_sched")?,
            running: store.table("jobs_running")?,
            by_status: store.table("jobs_status")?,
            unique: store.table("jobs_unique")?,
            counts: Mutex::default(),
            pairs: Mutex::default(),
        };
        s.rebuild()?;
        Ok(s)
    }

    fn rebuild(&self) -> Result<(), StoreError> {
        self.ready.clear()?;
        self.sched.clear()?;
        self.running.clear()?;
        self.by_status.clear()?;
        let mut counts = BTreeMap::new();
        let mut pairs = BTreeSet::new();
        for entry in self.jobs.iter() {
            let (key, job) = entry?;
            let Ok(id): Result<[u8; 16], _> = key.as_slice().try_into() else {
                continue;
            };
            match job.status {
                Status::Queued => self.ready.insert(ready_key(&job, &id), &Marker {})?,
                Status::Scheduled => self.sched.insert(sched_key(job.run_at, &id), &Marker {})?,
                Status::Running => self.running.insert(id, &Marker {})?,
                _ => {}
            }
            self.by_status
                .insert(status_key(job.status, &id), &Marker {})?;
            *counts
                .entry((job.queue.clone(), job.kind.clone(), job.status))
                .or_default() += 1;
            pairs.insert((job.queue, job.kind));
        }
        *lock(&self.counts) = counts;
        *lock(&self.pairs) = pairs;
        Ok(())
    }

    fn bump(&self, queue: &str, kind: &str, from: Option<Status>, to: Option<Status>) {
        let mut counts = lock(&self.counts);
        if let Some(s) = from {
            *counts
                .entry((queue.to_string(), kind.to_string(), s))
                .or_default() -= 1;
        }
        if let Some(s) = to {
            *counts
                .entry((queue.to_string(), kind.to_string(), s))
                .or_default() += 1;
        }
    }

    fn count(&self, status: Status) -> i64 {
        lock(&self.counts)
            .iter()
            .filter(|((_, _, s), _)| *s == status)
            .map(|(_, n)| *n)
            .sum()
    }

    /// Compare-and-swap one record, retried on a concurrent change, then move its index
    /// entries and counts.
    fn change(&self, id: &str, f: Change<'_>) -> Result<(Job, Job), JobError> {
        let key = id_bytes(id)?;
        loop {
            let old = self
                .jobs
                .get(key)?
                .ok_or_else(|| JobError::NotFound(id.to_string()))?;
            let new = f(&old)?;
            if self.jobs.compare_and_swap(key, Some(&old), Some(&new))? == Cas::Swapped {
                self.reindex(&key, &old, &new)?;
                return Ok((old, new));
            }
        }
    }

    fn reindex(&self, key: &[u8; 16], old: &Job, new: &Job) -> Result<(), StoreError> {
        if old.status == Status::Queued && new.status != Status::Queued {
            // Gone already when a claimer took it.
            self.ready.remove(ready_key(old, key))?;
        }
        if old.status == Status::Scheduled
            && (new.status != Status::Scheduled || new.run_at != old.run_at)
        {
            self.sched.remove(sched_key(old.run_at, key))?;
        }
        if old.status == Status::Running && new.status != Status::Running {
            self.running.remove(key)?;
        }
        if new.status == Status::Queued && old.status != Status::Queued {
            self.ready.insert(ready_key(new, key), &Marker {})?;
        }
        if new.status == Status::Scheduled
            && (old.status != Status::Scheduled || new.run_at != old.run_at)
        {
            self.sched.insert(sched_key(new.run_at, key), &Marker {})?;
        }
        if new.status == Status::Running && old.status != Status::Running {
            self.running.insert(key, &Marker {})?;
        }
        if old.status != new.status {
            self.by_status.remove(status_key(old.status, key))?;
            self.by_status
                .insert(status_key(new.status, key), &Marker {})?;
            self.bump(&new.queue, &new.kind, Some(old.status), Some(new.status));
        }
        Ok(())
    }

    /// Take the unique key for `job`; `Some(holder)` when an unfinished job has it.
    fn take_unique(&self, key: &str, job: &Job) -> Result<Option<Job>, JobError> {
        let holder = UniqueHolder { id: job.id.clone() };
        loop {
            if self.unique.insert_new(key.as_bytes(), &holder)? {
                return Ok(None);
            }
            let Some(current) = self.unique.get(key.as_bytes())? else {
                continue;
            };
            match self.get(&current.id)? {
                Some(existing) if !existing.status.is_finished() => return Ok(Some(existing)),
                _ => {
                    if self.unique.compare_and_swap(
                        key.as_bytes(),
                        Some(&current),
                        Some(&holder),
                    )? == Cas::Swapped
                    {
                        return Ok(None);
                    }
                }
            }
        }
    }

    /// The records below id `upper` (all: `None`), oldest first: with a status in the
    /// filter through its `jobs_status` entries, so only jobs of that status are read.
    fn records(
        &self,
        filter: &Filter,
        upper: Option<[u8; 16]>,
    ) -> Box<dyn DoubleEndedIterator<Item = Result<Job, JobError>> + '_> {
        match filter.status {
            Some(st) => {
                let lo = status_key(st, &[0u8; 16]).to_vec();
                let hi = match upper {
                    Some(id) => status_key(st, &id).to_vec(),
                    None => {
                        let mut k = status_key(st, &[0xff; 16]).to_vec();
                        k.push(0xff);
                        k
                    }
                };
                // An entry whose record is gone or moved on (a crash between the two
                // writes) is skipped: the record decides.
                Box::new(self.by_status.range(lo..hi).filter_map(|r| match r {
                    Ok((k, _)) => self.jobs.get(&k[1..]).map_err(JobError::from).transpose(),
                    Err(e) => Some(Err(e.into())),
                }))
            }
            None => {
                let hi = upper.map_or_else(|| vec![0xff; 17], |id| id.to_vec());
                Box::new(
                    self.jobs
                        .range(..hi)
                        .map(|r| r.map(|(_, j)| j).map_err(JobError::from)),
                )
            }
        }
    }

    fn scan<'a>(&'a self, filter: &'a Filter) -> impl Iterator<Item = Result<Job, JobError>> + 'a {
        self.records(filter, None).filter(move |r| match r {
            Ok(j) => filter.matches(j),
            Err(_) => true,
        })
    }
}

impl JobStore for SledJobs {
    fn insert(&self, job: &Job) -> Result<(Inserted, Commit), JobError> {
        let id = id_bytes(&job.id)?;
        if let Some(u) = &job.unique_key
            && let Some(existing) = self.take_unique(u, job)?
        {
            // The holder may have been written a moment ago by another request: the
            // answer waits for it too.
            return Ok((Inserted::Duplicate(existing), self.store.pending()));
        }
        if !self.jobs.insert_new(id, job)? {
            // A caller-chosen id that is already stored (a retried fulfilment).
            let existing = self
                .get(&job.id)?
                .ok_or_else(|| JobError::NotFound(job.id.clone()))?;
            return Ok((Inserted::Duplicate(existing), self.store.pending()));
        }
        self.index_new(job, &id)?;
        Ok((Inserted::New(job.clone()), self.store.pending()))
    }

    fn insert_batch(&self, jobs: &[Job]) -> Result<(Vec<Inserted>, Commit), JobError> {
        self.insert_many(jobs)
    }

    fn get(&self, id: &str) -> Result<Option<Job>, JobError> {
        Ok(self.jobs.get(id_bytes(id)?)?)
    }

    fn update(&self, id: &str, f: Change<'_>) -> Result<(Job, Job, Commit), JobError> {
        let (old, new) = self.change(id, f)?;
        Ok((old, new, self.store.pending()))
    }

    fn claim(
        &self,
        queues: &[String],
        kinds: &[String],
        n: usize,
        f: &mut dyn FnMut(&Job) -> Job,
    ) -> Result<(Vec<Job>, Commit), JobError> {
        let candidates: Vec<Vec<u8>> = lock(&self.pairs)
            .iter()
            .filter(|(q, k)| {
                (queues.is_empty() || queues.iter().any(|x| x == q))
                    && (kinds.is_empty() || kinds.iter().any(|x| x == k))
            })
            .map(|(q, k)| pair_prefix(q, k))
            .collect();
        let mut out = Vec::with_capacity(n);
        let mut heads: Vec<Option<Vec<u8>>> = vec![None; candidates.len()];
        while out.len() < n {
            // The best head among the candidate (queue, kind) ranges.
            let mut best: Option<(usize, Vec<u8>)> = None;
            for (i, prefix) in candidates.iter().enumerate() {
                if heads[i].is_none() {
                    heads[i] = match self.ready.scan_prefix(prefix).next() {
                        Some(r) => Some(r?.0),
                        None => None,
                    };
                }
                if let Some(h) = &heads[i] {
                    let rank = &h[prefix.len()..];
                    if best
                        .as_ref()
                        .is_none_or(|(bi, bk)| rank < &bk[candidates[*bi].len()..])
                    {
                        best = Some((i, h.clone()));
                    }
                }
            }
            let Some((i, key)) = best else {
                break;
            };
            heads[i] = None;
            if self.ready.remove(&key)?.is_none() {
                continue; // another claimer took it
            }
            let Some(id) = key
                .get(key.len() - 16..)
                .and_then(|b| uuid::Uuid::from_slice(b).ok())
            else {
                continue;
            };
            let r = self.change(&id.to_string(), &mut |j| {
                if j.status != Status::Queued {
                    return Err(JobError::Conflict("not queued".into()));
                }
                Ok(f(j))
            });
            match r {
                Ok((_, job)) => out.push(job),
                // Cancelled (or changed) between our removal and our write: skip it.
                Err(JobError::Conflict(_)) | Err(JobError::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        let commit = match out.is_empty() {
            true => Commit::done(),
            false => self.store.pending(),
        };
        Ok((out, commit))
    }

    fn list(&self, filter: &Filter, cursor: Option<&str>, limit: usize) -> Result<Page, JobError> {
        let upper = match cursor {
            Some(c) => {
                Some(id_bytes(c).map_err(|_| JobError::Invalid("cursor: not a job id".into()))?)
            }
            None => None,
        };
        let mut out = Vec::new();
        let mut more = false;
        for job in self.records(filter, upper).rev() {
            let job = job?;
            if !filter.matches(&job) {
                continue;
            }
            if out.len() == limit {
                more = true;
                break;
            }
            out.push(job);
        }
        let next = if more {
            out.last().map(|j| j.id.clone())
        } else {
            None
        };
        Ok((out, next))
    }

    fn ids(&self, filter: &Filter, limit: usize) -> Result<Vec<String>, JobError> {
        if let Some(s) = filter.status
            && self.count(s) <= 0
        {
            return Ok(Vec::new());
        }
        self.scan(filter)
            .take(limit)
            .map(|r| r.map(|j| j.id))
            .collect()
    }

    fn counts(&self) -> Counts {
        lock(&self.counts)
            .iter()
            .filter(|(_, n)| **n > 0)
            .map(|(k, n)| (k.clone(), *n as u64))
            .collect()
    }

    fn expired_leases(&self, now: i64) -> Result<Vec<Job>, JobError> {
        let mut out = Vec::new();
        for entry in self.running.iter() {
            let (key, _) = entry?;
            match self.jobs.get(&key)? {
                Some(j)
                    if j.status == Status::Running
                        && j.lease_expires_at.is_some_and(|l| l <= now) =>
                {
                    out.push(j)
                }
                Some(_) => {}
                // A stale entry (the job was pruned): drop it.
                None => {
                    self.running.remove(&key)?;
                }
            }
        }
        Ok(out)
    }

    fn due(&self, now: i64) -> Result<Vec<String>, JobError> {
        let mut upper = ord_i64(now).to_vec();
        upper.extend_from_slice(&[0xff; 16]);
        let mut out = Vec::new();
        for r in self.sched.range(..=upper) {
            let (key, _) = r?;
            let Some(id) = key.get(8..24).and_then(|b| uuid::Uuid::from_slice(b).ok()) else {
                continue;
            };
            // A stale entry (the job moved on) is dropped; the record decides.
            match self.jobs.get(id.as_bytes())? {
                Some(j)
                    if j.status == Status::Scheduled
                        && sched_key(j.run_at, id.as_bytes()) == key =>
                {
                    out.push(id.to_string())
                }
                _ => {
                    self.sched.remove(&key)?;
                }
            }
        }
        Ok(out)
    }

    fn next_run_at(&self) -> Result<Option<i64>, JobError> {
        Ok(self.sched.first()?.and_then(|(k, _)| {
            let b: [u8; 8] = k.get(..8)?.try_into().ok()?;
            Some((u64::from_be_bytes(b) ^ (1 << 63)) as i64)
        }))
    }

    fn prune(&self, before: i64) -> Result<(usize, Commit), JobError> {
        let old: Vec<(Vec<u8>, Job)> = self
            .jobs
            .iter()
            .filter_map(|r| match r {
                Ok((k, j))
                    if j.status.is_finished() && j.finished_at.is_some_and(|f| f < before) =>
                {
                    Some(Ok((k, j)))
                }
                Ok(_) => None,
                Err(e) => Some(Err(e)),
            })
            .collect::<Result<_, _>>()?;
        let mut n = 0;
        for (key, job) in old {
            if self.jobs.compare_and_swap(&key, Some(&job), None)? == Cas::Swapped {
                n += 1;
                if let Ok(id) = <[u8; 16]>::try_from(key.as_slice()) {
                    self.by_status.remove(status_key(job.status, &id))?;
                }
                self.bump(&job.queue, &job.kind, Some(job.status), None);
                if let Some(u) = &job.unique_key {
                    let holder = UniqueHolder { id: job.id.clone() };
                    self.unique
                        .compare_and_swap(u.as_bytes(), Some(&holder), None)?;
                }
            }
        }
        let commit = match n {
            0 => Commit::done(),
            _ => self.store.pending(),
        };
        Ok((n, commit))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jobs::{NewJob, transitions};

    #[test]
    fn indexes_are_rebuilt_from_the_records_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let jobs = SledJobs::open(&store).unwrap();
        let new = |kind: &str| {
            let id = uuid::Uuid::now_v7().to_string();
            let j = NewJob {
                kind: kind.into(),
                ..NewJob::default()
            };
            transitions::new_job(j, id, 0).unwrap()
        };
        let a = new("k");
        let _ = jobs.insert(&a).unwrap();
        // A crash after the claimer removed the index entry, before it wrote the record:
        // the record still says queued.
        jobs.ready
            .remove(ready_key(&a, &id_bytes(&a.id).unwrap()))
            .unwrap();
        assert!(
            jobs.claim(&[], &[], 10, &mut |j| j.clone())
                .unwrap()
                .0
                .is_empty()
        );

        let reopened = SledJobs::open(&store).unwrap();
        assert_eq!(reopened.count(Status::Queued), 1);
        let (c, _) = reopened
            .claim(&[], &[], 10, &mut |j| transitions::claimed(j, "w", 10, 1))
            .unwrap();
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].id, a.id);
        assert_eq!(
            reopened
                .counts()
                .get(&("default".into(), "k".into(), Status::Running)),
            Some(&1)
        );
    }

    #[test]
    fn a_one_status_list_follows_the_status_index() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let jobs = SledJobs::open(&store).unwrap();
        let mut ids = Vec::new();
        for _ in 0..5 {
            let id = uuid::Uuid::now_v7().to_string();
            let j = NewJob {
                kind: "k".into(),
                ..NewJob::default()
            };
            let _ = jobs
                .insert(&transitions::new_job(j, id.clone(), 0).unwrap())
                .unwrap();
            ids.push(id);
        }
        for id in [&ids[1], &ids[3]] {
            let _ = jobs
                .update(id, &mut |j| transitions::cancelled(j, 1))
                .unwrap();
        }
        let cancelled = Filter::status(Status::Cancelled);
        let (page, next) = jobs.list(&cancelled, None, 1).unwrap();
        assert_eq!(page.iter().map(|j| &j.id).collect::<Vec<_>>(), [&ids[3]]);
        let (page, next) = jobs.list(&cancelled, next.as_deref(), 1).unwrap();
        assert_eq!(page.iter().map(|j| &j.id).collect::<Vec<_>>(), [&ids[1]]);
        assert_eq!(next, None);
        let queued = jobs.ids(&Filter::status(Status::Queued), 10).unwrap();
        assert_eq!(queued, [ids[0].clone(), ids[2].clone(), ids[4].clone()]);

        // A job moved back leaves the old status's list; the index is rebuilt at open.
        let _ = jobs
            .update(&ids[3], &mut |j| transitions::retried(j, 2))
            .unwrap();
        let reopened = SledJobs::open(&store).unwrap();
        let (page, _) = reopened.list(&cancelled, None, 10).unwrap();
        assert_eq!(page.iter().map(|j| &j.id).collect::<Vec<_>>(), [&ids[1]]);
        assert_eq!(
            reopened
                .ids(&Filter::status(Status::Queued), 10)
                .unwrap()
                .len(),
            4
        );
    }
}
