//! What the job queue needs from storage, in its own words. The sled backend is
//! `crate::store::sled_impl::jobs`; a SQL backend implements the same trait (see the
//! `store` module's doc for how each operation maps onto both).
//!
//! Every change is one transaction on one job (or one claim of N jobs) and hands back a
//! [`Commit`]: the caller awaits it once, after whatever else it writes (the audit
//! event), before it answers.

use std::collections::BTreeMap;

use super::model::{Job, Status};
use super::types::{Filter, JobError};
use crate::store::Commit;

/// Jobs per (queue, kind, status).
pub type Counts = BTreeMap<(String, String, Status), u64>;

/// One job's change: sees the job as stored now and returns its next form, or an error
/// that leaves it untouched. May run more than once (a concurrent change retries it), so
/// it must not have side effects.
pub type Change<'a> = &'a mut dyn FnMut(&Job) -> Result<Job, JobError>;

/// The outcome of [`JobStore::insert`].
#[derive(Debug, Clone)]
pub enum Inserted {
    /// The job is stored.
    New(Job),
    /// Its unique key is held by this unfinished job; nothing was stored.
    Duplicate(Job),
}

/// A page of jobs, newest first, and the cursor of the next page.
pub type Page = (Vec<Job>, Option<String>);

pub trait JobStore: Send + Sync {
    /// Store a new job. With a `unique_key` that an unfinished job holds, store nothing
    /// and return that job; a finished holder gives the key up.
    fn insert(&self, job: &Job) -> Result<(Inserted, Commit), JobError>;

    /// One job by id.
    fn get(&self, id: &str) -> Result<Option<Job>, JobError>;

    /// Change one job in one transaction: read it (locked for the change), apply `f`,
    /// write the result. Returns the job before and after.
    fn update(&self, id: &str, f: Change<'_>) -> Result<(Job, Job, Commit), JobError>;

    /// Take up to `n` ready jobs (queued, in one of `queues` and `kinds`; empty means
    /// any), best priority first, then earliest `run_at`, then oldest. Each job goes to
    /// exactly one caller, also across processes; `f` gives its claimed form.
    fn claim(
        &self,
        queues: &[String],
        kinds: &[String],
        n: usize,
        f: &mut dyn FnMut(&Job) -> Job,
    ) -> Result<(Vec<Job>, Commit), JobError>;

    /// Jobs matching `filter`, newest first, after the job `cursor`, at most `limit`.
    fn list(&self, filter: &Filter, cursor: Option<&str>, limit: usize) -> Result<Page, JobError>;

    /// Ids of jobs matching `filter`, oldest first, at most `limit`.
    fn ids(&self, filter: &Filter, limit: usize) -> Result<Vec<String>, JobError>;

    /// Jobs per (queue, kind, status).
    fn counts(&self) -> Counts;

    /// Running jobs whose lease ran out at or before `now` (ms).
    fn expired_leases(&self, now: i64) -> Result<Vec<Job>, JobError>;

    /// Ids of scheduled jobs whose `run_at` is at or before `now` (ms), earliest first.
    fn due(&self, now: i64) -> Result<Vec<String>, JobError>;

    /// The earliest `run_at` (ms) of a scheduled job.
    fn next_run_at(&self) -> Result<Option<i64>, JobError>;

    /// Remove finished jobs that finished before `before` (ms), giving their unique
    /// keys up. Returns how many went.
    fn prune(&self, before: i64) -> Result<(usize, Commit), JobError>;
}
