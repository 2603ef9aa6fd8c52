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

/// Each entry's answer from [`JobStore::update_batch`]: the job before and after its
/// change, or why it was refused.
pub type Updated = Vec<Result<(Job, Job), JobError>>;

/// The outcome of [`JobStore::insert`].
#[derive(Debug, Clone)]
pub enum Inserted {
    /// The job is stored.
    New(Job),
    /// Its id is taken (whatever became of that job), or its unique key is held by
    /// this unfinished job; nothing was stored.
    Duplicate(Job),
}

/// A page of jobs, newest first, and the cursor of the next page.
pub type Page = (Vec<Job>, Option<String>);

pub trait JobStore: Send + Sync {
    /// Store a new job. With an id that is already stored, or a `unique_key` that an
    /// unfinished job holds, store nothing and return that job; a finished holder gives
    /// the key up. (SQL: `INSERT … ON CONFLICT (id) DO NOTHING`.)
    fn insert(&self, job: &Job) -> Result<(Inserted, Commit), JobError>;

    /// Store several new jobs as one change under one commit: each entry as
    /// [`Self::insert`] would (a taken id or a held unique key gives that job back), the
    /// new ones all or none. The entries' unique keys differ (the caller checks).
    /// (SQL: one transaction of `INSERT … ON CONFLICT DO NOTHING`.)
    fn insert_batch(&self, jobs: &[Job]) -> Result<(Vec<Inserted>, Commit), JobError>;

    /// One job by id.
    fn get(&self, id: &str) -> Result<Option<Job>, JobError>;

    /// Change one job in one transaction: read it (locked for the change), apply `f`,
    /// write the result. Returns the job before and after.
    fn update(&self, id: &str, f: Change<'_>) -> Result<(Job, Job, Commit), JobError>;

    /// Several [`Self::update`]s as one transaction under one commit (a worker's batch of
    /// reports). Entries are applied in order, each to the job as the ones before it left
    /// it; an entry whose job is missing or whose change refuses gets that error and
    /// changes nothing, the others are written all together. A store failure fails all.
    /// (SQL: one transaction of `SELECT … FOR UPDATE` and `UPDATE` per entry.)
    fn update_batch(
        &self,
        changes: &mut [(&str, Change<'_>)],
    ) -> Result<(Updated, Commit), JobError>;

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
    /// With a status in the filter it reads only jobs of that status (the dashboard
    /// lists the dead and the stuck on every view; an index on (status, id) in SQL).
    fn list(&self, filter: &Filter, cursor: Option<&str>, limit: usize) -> Result<Page, JobError>;

    /// Ids of jobs matching `filter`, oldest first, at most `limit`; like [`Self::list`],
    /// reads only jobs of the filter's status when it names one.
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
