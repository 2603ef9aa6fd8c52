//! The job queue on sled.
//!
//! The `jobs` tree (16-byte UUIDv7 id → [`Job`]) holds the records. Every change writes
//! the record, its index entries and the counts in **one atomic write** (through
//! the store's redo journal, `crate::store::AtomicWrite`), so the indexes never drift from the
//! records, also across a crash, and nothing is rebuilt at open (a home written before
//! these indexes is rebuilt once: `jobs_index`). The index trees (keys in `job_keys`):
//! - `jobs_ready`: `queue \0 kind \0 priority↓ run_at id` for queued jobs: a claim
//!   peeks the head of every (queue, kind) it may take and takes the best.
//! - `jobs_sched`: `run_at id` for scheduled jobs (delayed or backing off).
//! - `jobs_running`: `lease_end id` for running jobs: stuck detection reads only the
//!   leases that ran out.
//! - `jobs_status`: `status queue \0 kind \0 id` for every job: a list filtered by any
//!   of the three reads the ranges of exactly the matching triples (`jobs_list`).
//! - `jobs_finished`: `finished_at id` for finished jobs: pruning reads only what is due.
//! - `jobs_counts`: jobs per (queue, kind, status), also kept in memory, so stats,
//!   health and `/metrics` never walk a tree, and open reads a few keys.
//!
//! `jobs_unique` maps a unique key to the job holding it. Changes are decided and
//! written under one lock (the counts' lock): the home's lock already makes this
//! process the store's only writer, and a change is a few microseconds.

use std::collections::HashSet;
use std::ops::Bound;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use super::job_keys::{
    after_time, id_bytes, pair_prefix, ready_key, status_prefix, tail_id, time_key,
};
use super::jobs_index::{CountMap, Trees};
use super::jobs_list::merged;
use crate::jobs::store::{Change, Counts, Inserted, JobStore, Page, Updated};
use crate::jobs::{Filter, Job, JobError, Status};
use crate::store::{Cas, Commit, Record, Store, StoreError, Table};

mod insert;
mod update;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct UniqueHolder {
    id: String,
}
impl Record for UniqueHolder {
    const NAME: &'static str = "job unique key";
    const VERSION: u8 = 1;
}

/// The sled job store; one per process (it holds the write lock and the counts).
pub(crate) struct SledJobs {
    store: Store,
    t: Trees,
    unique: Table<UniqueHolder>,
    /// Jobs per (queue, kind, status), as in `jobs_counts`. Its lock is the write lock:
    /// every change reads, decides and commits under it.
    counts: Mutex<CountMap>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A failed write leaves the map untouched (it moves only after a commit).
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// How many jobs one atomic write of `prune` removes.
const PRUNE_BATCH: usize = 256;

impl SledJobs {
    /// Open the trees and read the counts (rebuilding the indexes once for a home
    /// written before them).
    pub(crate) fn open(store: &Store) -> Result<SledJobs, StoreError> {
        let t = Trees::open(store)?;
        let counts = match t.load_counts()? {
            Some(c) => c,
            None => t.rebuild()?,
        };
        Ok(SledJobs {
            store: store.clone(),
            t,
            unique: store.table("jobs_unique")?,
            counts: Mutex::new(counts),
        })
    }

    /// Where the indexes or counts disagree with the records (tests, checks).
    #[cfg(test)]
    pub(crate) fn disagreements(&self) -> Vec<String> {
        let counts = lock(&self.counts).clone();
        self.t
            .disagreements(&counts, 50)
            .unwrap_or_else(|e| vec![e.to_string()])
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

    /// The `jobs_status` prefixes of every (status, queue, kind) with jobs that
    /// `filter` may match; `None` when it names none of the three (read `jobs` itself).
    fn prefixes(&self, filter: &Filter) -> Option<Vec<Vec<u8>>> {
        let status = match (filter.status, filter.failed) {
            (Some(s), _) => Some(s),
            (None, true) => Some(Status::Scheduled),
            (None, false) => None,
        };
        if status.is_none() && filter.queue.is_none() && filter.kind.is_none() {
            return None;
        }
        Some(
            lock(&self.counts)
                .iter()
                .filter(|((q, k, s), n)| {
                    **n > 0
                        && status.is_none_or(|x| x == *s)
                        && filter.queue.as_ref().is_none_or(|x| x == q)
                        && filter.kind.as_ref().is_none_or(|x| x == k)
                })
                .map(|((q, k, s), _)| status_prefix(*s, q, k))
                .collect(),
        )
    }

    /// Jobs that may match `filter` below id `upper`, newest or oldest first.
    fn candidates(
        &self,
        filter: &Filter,
        upper: Option<[u8; 16]>,
        newest_first: bool,
    ) -> Box<dyn Iterator<Item = Result<Job, JobError>> + '_> {
        match self.prefixes(filter) {
            Some(prefixes) => Box::new(
                merged(&self.t.status, &prefixes, upper, newest_first).filter_map(|r| match r {
                    Ok(id) => self.t.jobs.get(id).map_err(JobError::from).transpose(),
                    Err(e) => Some(Err(e.into())),
                }),
            ),
            None => {
                let hi = upper.map_or_else(|| vec![0xff; 17], |id| id.to_vec());
                let range = self.t.jobs.range(..hi);
                let job = |r: Result<(Vec<u8>, Job), StoreError>| {
                    r.map(|(_, j)| j).map_err(JobError::from)
                };
                if newest_first {
                    Box::new(range.rev().map(job))
                } else {
                    Box::new(range.map(job))
                }
            }
        }
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
        let mut counts = lock(&self.counts);
        if let Some(existing) = self.t.jobs.get(id)? {
            // A caller-chosen id that is already stored (a retried fulfilment).
            return Ok((Inserted::Duplicate(existing), self.store.pending()));
        }
        self.t.write(&mut counts, &[(&id, None, Some(job))])?;
        Ok((Inserted::New(job.clone()), self.store.pending()))
    }

    fn insert_batch(&self, jobs: &[Job]) -> Result<(Vec<Inserted>, Commit), JobError> {
        self.insert_many(jobs)
    }

    fn get(&self, id: &str) -> Result<Option<Job>, JobError> {
        Ok(self.t.jobs.get(id_bytes(id)?)?)
    }

    fn update(&self, id: &str, f: Change<'_>) -> Result<(Job, Job, Commit), JobError> {
        let key = id_bytes(id)?;
        let mut counts = lock(&self.counts);
        let old = self
            .t
            .jobs
            .get(key)?
            .ok_or_else(|| JobError::NotFound(id.to_string()))?;
        let new = f(&old)?;
        self.t
            .write(&mut counts, &[(&key, Some(&old), Some(&new))])?;
        Ok((old, new, self.store.pending()))
    }

    fn update_batch(
        &self,
        changes: &mut [(&str, Change<'_>)],
    ) -> Result<(Updated, Commit), JobError> {
        self.update_many(changes)
    }

    fn claim(
        &self,
        queues: &[String],
        kinds: &[String],
        n: usize,
        f: &mut dyn FnMut(&Job) -> Job,
    ) -> Result<(Vec<Job>, Commit), JobError> {
        let candidates: Vec<Vec<u8>> = lock(&self.counts)
            .keys()
            .filter(|(q, k, _)| {
                (queues.is_empty() || queues.iter().any(|x| x == q))
                    && (kinds.is_empty() || kinds.iter().any(|x| x == k))
            })
            .map(|(q, k, _)| pair_prefix(q, k))
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        // Held for the whole claim: the jobs taken are written as one change at its end,
        // so no other claimer may read them as ready meanwhile.
        let mut counts = lock(&self.counts);
        let mut taken: Vec<([u8; 16], Job, Job)> = Vec::with_capacity(n);
        // The last key taken from each range: its next head lies past it (the ready
        // entries of the jobs taken go only with the change at the end).
        let mut past: Vec<Option<Vec<u8>>> = vec![None; candidates.len()];
        let mut heads: Vec<Option<Vec<u8>>> = vec![None; candidates.len()];
        // Heads found not to match their record: a damaged index; that (queue, kind)
        // is passed over instead of peeked forever (`db check --deep` reports it).
        let mut stale: HashSet<Vec<u8>> = HashSet::new();
        let mut done = vec![false; candidates.len()];
        while taken.len() < n {
            // The best head among the candidate (queue, kind) ranges.
            let mut best: Option<(usize, Vec<u8>)> = None;
            for (i, prefix) in candidates.iter().enumerate() {
                if done[i] {
                    continue;
                }
                if heads[i].is_none() {
                    let next = match &past[i] {
                        None => self.t.ready.scan_prefix(prefix).next(),
                        Some(last) => self
                            .t
                            .ready
                            .range::<&[u8], _>((Bound::Excluded(last.as_slice()), Bound::Unbounded))
                            .next(),
                    };
                    heads[i] = match next {
                        Some(r) => Some(r?.0).filter(|k| k.starts_with(prefix)),
                        None => None,
                    };
                }
                match &heads[i] {
                    Some(h) if stale.contains(h) => done[i] = true,
                    Some(h) => {
                        let rank = &h[prefix.len()..];
                        if best
                            .as_ref()
                            .is_none_or(|(bi, bk)| rank < &bk[candidates[*bi].len()..])
                        {
                            best = Some((i, h.clone()));
                        }
                    }
                    None => done[i] = true,
                }
            }
            let Some((i, key)) = best else {
                break;
            };
            heads[i] = None;
            past[i] = Some(key.clone());
            let Some(id) = tail_id(&key) else {
                stale.insert(key);
                continue;
            };
            let Some(job) = self.t.jobs.get(id)? else {
                stale.insert(key);
                continue;
            };
            if job.status != Status::Queued || ready_key(&job, &id) != key {
                // Taken (or changed) by another caller between the peek and the lock,
                // or a damaged entry when it is still there.
                if self.t.ready.get(&key)?.is_some() {
                    stale.insert(key);
                }
                continue;
            }
            let claimed = f(&job);
            taken.push((id, job, claimed));
        }
        if taken.is_empty() {
            return Ok((Vec::new(), Commit::done()));
        }
        let changes: Vec<_> = taken
            .iter()
            .map(|(id, old, new)| (id, Some(old), Some(new)))
            .collect();
        self.t.write(&mut counts, &changes)?;
        drop(counts);
        let out = taken.into_iter().map(|(_, _, claimed)| claimed).collect();
        Ok((out, self.store.pending()))
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
        for job in self.candidates(filter, upper, true) {
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
        let mut out = Vec::new();
        for job in self.candidates(filter, None, false) {
            let job = job?;
            if out.len() == limit {
                break;
            }
            if filter.matches(&job) {
                out.push(job.id);
            }
        }
        Ok(out)
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
        for r in self.t.running.range(..after_time(now)) {
            let (key, _) = r?;
            let Some(id) = tail_id(&key) else { continue };
            if let Some(j) = self.t.jobs.get(id)?
                && j.status == Status::Running
                && j.lease_expires_at.is_some_and(|l| l <= now)
            {
                out.push(j);
            }
        }
        Ok(out)
    }

    fn due(&self, now: i64) -> Result<Vec<String>, JobError> {
        let mut out = Vec::new();
        for r in self.t.sched.range(..after_time(now)) {
            let (key, _) = r?;
            let Some(id) = tail_id(&key) else { continue };
            // The record decides (an entry always matches it; checked anyway).
            if let Some(j) = self.t.jobs.get(id)?
                && j.status == Status::Scheduled
                && time_key(j.run_at, &id) == key
            {
                out.push(uuid::Uuid::from_bytes(id).to_string());
            }
        }
        Ok(out)
    }

    fn next_run_at(&self) -> Result<Option<i64>, JobError> {
        Ok(self.t.sched.first()?.and_then(|(k, _)| {
            let b: [u8; 8] = k.get(..8)?.try_into().ok()?;
            Some(super::job_keys::from_ord_i64(b))
        }))
    }

    fn prune(&self, before: i64) -> Result<(usize, Commit), JobError> {
        let due: Vec<[u8; 16]> = self
            .t
            .finished
            .range(..time_key(before, &[0; 16]))
            .map(|r| r.map(|(k, _)| tail_id(&k)))
            .filter_map(Result::transpose)
            .collect::<Result<_, _>>()?;
        let mut n = 0;
        for chunk in due.chunks(PRUNE_BATCH) {
            let mut gone: Vec<([u8; 16], Job)> = Vec::new();
            {
                let mut counts = lock(&self.counts);
                for id in chunk {
                    if let Some(j) = self.t.jobs.get(id)?
                        && j.status.is_finished()
                        && j.finished_at.is_some_and(|f| f < before)
                    {
                        gone.push((*id, j));
                    }
                }
                let changes: Vec<_> = gone.iter().map(|(id, j)| (id, Some(j), None)).collect();
                self.t.write(&mut counts, &changes)?;
            }
            for (_, job) in &gone {
                if let Some(u) = &job.unique_key {
                    let holder = UniqueHolder { id: job.id.clone() };
                    self.unique
                        .compare_and_swap(u.as_bytes(), Some(&holder), None)?;
                }
            }
            n += gone.len();
        }
        let commit = match n {
            0 => Commit::done(),
            _ => self.store.pending(),
        };
        Ok((n, commit))
    }
}
