//! The queue's service: [`Jobs`] applies the [`transitions`](super::transitions) through
//! a [`JobStore`], tells listeners about outcomes and wakes the built-in executors.
//! Every change hands back the store's [`Commit`]; the caller awaits it before it
//! answers.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use chrono::{DateTime, Utc};
use tokio::sync::futures::OwnedNotified;
use tokio::sync::{Notify, broadcast};

use super::executors;
use super::model::{self, Job, Status, ms};
use super::store::{Change, Inserted, JobStore};
use super::transitions;
use super::types::{
    BUILTIN_WORKER, ClaimRequest, Enqueued, Filter, JobError, JobEvent, MAX_BATCH, MAX_CLAIM,
    NewJob, Outcome, Report, Reporter, truncate,
};
use crate::clock::Clock;
use crate::store::Commit;

/// See [`Jobs::on_outcome`].
type OutcomeHook = Box<dyn Fn(&JobEvent) + Send + Sync>;

/// Cheap to clone: handles and `Arc`s.
#[derive(Clone)]
pub struct Jobs {
    store: Arc<dyn JobStore>,
    clock: Clock,
    events: broadcast::Sender<JobEvent>,
    /// Called for every outcome, in the writer's thread: counters that must not miss
    /// one (a broadcast receiver that falls behind loses events).
    outcome_hook: Arc<OnceLock<OutcomeHook>>,
    /// Woken when a job becomes queued (the dispatcher waits on it).
    pub ready_notify: Arc<Notify>,
    /// Tests fix the random part of the backoff; `u64::MAX` means random.
    jitter: Arc<AtomicU64>,
    /// Woken when any job becomes ready, and at shutdown: long-polling claims wait on it.
    claimable: Arc<Notify>,
    /// Set at shutdown: waiting claims answer at once.
    stopping: Arc<AtomicBool>,
    /// Failed attempts per minute (clock minutes), for the last [`FAILED_WINDOW_SECS`].
    failures: Arc<Mutex<BTreeMap<i64, u64>>>,
    /// Kinds the server runs itself: never handed to an API claim.
    server_kinds: Arc<std::sync::RwLock<BTreeSet<String>>>,
}

/// The window of [`Jobs::recent_failures`]: the last hour (of this process's life).
pub const FAILED_WINDOW_SECS: u64 = 3600;

/// The most of a reported error a job keeps.
const MAX_ERROR_BYTES: usize = 4096;

/// Running jobs read at a time when [`Jobs::open`] looks for the built-in worker's.
const OPEN_PAGE: usize = 500;

/// Keep going past jobs that changed under us; stop on a store failure.
fn skip_conflicts<T>(r: Result<T, JobError>) -> Result<Option<T>, JobError> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(JobError::Conflict(_)) | Err(JobError::NotFound(_)) => Ok(None),
        Err(e) => Err(e),
    }
}

impl Jobs {
    /// The queue over `store`. Jobs a built-in executor was running when the last
    /// process died are stuck now; the returned commit covers that recovery.
    pub fn open(store: Arc<dyn JobStore>, clock: Clock) -> Result<(Jobs, Commit), JobError> {
        let (events, _) = broadcast::channel(4096);
        let jobs = Jobs {
            store,
            clock,
            events,
            outcome_hook: Arc::default(),
            ready_notify: Arc::new(Notify::new()),
            jitter: Arc::new(AtomicU64::new(u64::MAX)),
            claimable: Arc::new(Notify::new()),
            stopping: Arc::default(),
            failures: Arc::default(),
            server_kinds: Arc::new(std::sync::RwLock::new(
                executors::KINDS.iter().map(|k| k.to_string()).collect(),
            )),
        };
        let now = jobs.now();
        let mut commit = Commit::done();
        // Only the built-in worker's jobs were ours: external workers keep their leases.
        // Picked from one read of the running jobs, so a home with many external
        // leases reads each once at start-up; a page at a time, so a home with tens of
        // thousands of them never holds them all in memory at once.
        let running = Filter::status(Status::Running);
        let mut cursor = None;
        loop {
            let (page, next) = jobs.store.list(&running, cursor.as_deref(), OPEN_PAGE)?;
            commit = commit.and(jobs.orphan_ours(page, now)?);
            match next {
                Some(n) => cursor = Some(n),
                None => break,
            }
        }
        Ok((jobs, commit))
    }

    /// Mark stuck each job of `running` the built-in worker holds, checked again as each
    /// is written (`Jobs::open`).
    fn orphan_ours(&self, running: Vec<Job>, now: i64) -> Result<Commit, JobError> {
        let builtin = |j: &Job| {
            j.worker
                .as_deref()
                .is_some_and(|w| w.starts_with(BUILTIN_WORKER))
        };
        let mut commit = Commit::done();
        for job in running.into_iter().filter(|j| builtin(j)) {
            let r = self.store.update(&job.id, &mut |j| {
                if !builtin(j) {
                    return Err(JobError::Conflict("an external worker's".into()));
                }
                transitions::orphaned(j, now)
            });
            if let Some((_, _, c)) = skip_conflicts(r)? {
                commit = commit.and(c);
            }
        }
        Ok(commit)
    }

    /// Outcomes as they happen (succeeded, failed, dead, stuck, cancelled).
    pub fn subscribe(&self) -> broadcast::Receiver<JobEvent> {
        self.events.subscribe()
    }

    /// Install the function called for every outcome, synchronously and without loss
    /// (unlike [`Jobs::subscribe`]). It must be cheap. Only the first call takes effect.
    pub fn on_outcome(&self, hook: impl Fn(&JobEvent) + Send + Sync + 'static) {
        let _ = self.outcome_hook.set(Box::new(hook));
    }

    /// Fix the random part of the backoff (tests); `None` makes it random again.
    pub fn set_jitter(&self, fixed: Option<u64>) {
        self.jitter
            .store(fixed.unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    fn jitter(&self) -> u64 {
        match self.jitter.load(Ordering::Relaxed) {
            u64::MAX => {
                use rand::RngExt;
                rand::rng().random_range(0..30)
            }
            fixed => fixed,
        }
    }

    fn now(&self) -> i64 {
        ms(self.clock.now())
    }

    // ----- reading -----

    /// The job as it stands now (see [`Job::seen_at`]).
    pub fn get(&self, id: &str) -> Result<Job, JobError> {
        self.store
            .get(id)?
            .map(|j| j.seen_at(self.now()))
            .ok_or_else(|| JobError::NotFound(id.to_string()))
    }

    /// Newest first, starting after the job `cursor` (an id), at most `limit`.
    /// Returns the jobs and the cursor for the next page.
    pub fn list(
        &self,
        filter: &Filter,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<(Vec<Job>, Option<String>), JobError> {
        let (jobs, next) = self.store.list(filter, cursor, limit)?;
        let now = self.now();
        Ok((jobs.into_iter().map(|j| j.seen_at(now)).collect(), next))
    }

    /// Counts per queue per status.
    pub fn counts(&self) -> BTreeMap<String, BTreeMap<Status, u64>> {
        let mut out: BTreeMap<String, BTreeMap<Status, u64>> = BTreeMap::new();
        for ((q, _, s), n) in self.store.counts() {
            *out.entry(q).or_default().entry(s).or_default() += n;
        }
        out
    }

    /// Total jobs with `status`, all queues.
    pub fn count(&self, status: Status) -> u64 {
        self.store
            .counts()
            .iter()
            .filter(|((_, _, s), _)| *s == status)
            .map(|(_, n)| *n)
            .sum()
    }

    /// Running jobs whose lease ran out, not yet marked stuck by a tick.
    pub fn lapsed(&self) -> Result<u64, JobError> {
        Ok(self.store.expired_leases(self.now())?.len() as u64)
    }

    /// Stuck jobs: marked stuck, plus running ones whose lease already ran out.
    pub fn stuck(&self, now: DateTime<Utc>) -> Result<Vec<Job>, JobError> {
        let mut out = self.store.expired_leases(ms(now))?;
        for id in self.store.ids(&Filter::status(Status::Stuck), usize::MAX)? {
            if let Some(j) = self.store.get(&id)? {
                out.push(j);
            }
        }
        Ok(out)
    }

    /// Attempts that failed (retried later, or dead) in the last [`FAILED_WINDOW_SECS`]
    /// seconds, counted in memory since this process started.
    pub fn recent_failures(&self) -> u64 {
        let now_min = self.now().div_euclid(60_000);
        let first = now_min - (FAILED_WINDOW_SECS / 60) as i64 + 1;
        let f = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        f.range(first..).map(|(_, n)| *n).sum()
    }

    fn count_failure(&self, at_ms: i64) {
        let minute = at_ms.div_euclid(60_000);
        let mut f = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        *f.entry(minute).or_default() += 1;
        let keep = minute - (FAILED_WINDOW_SECS / 60) as i64;
        while f.first_key_value().is_some_and(|(m, _)| *m < keep) {
            f.pop_first();
        }
    }

    /// Resolves when a job may have become ready to claim (or at shutdown). Take it
    /// *before* an empty claim and await it after, so a job queued in between is not
    /// missed.
    pub fn claimable(&self) -> Pin<Box<OwnedNotified>> {
        let mut n = Box::pin(self.claimable.clone().notified_owned());
        n.as_mut().enable();
        n
    }

    /// The server is stopping: wake every waiting claim, and let none wait again.
    pub fn stop_waiting(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        self.claimable.notify_waiters();
    }

    /// Set by [`Jobs::stop_waiting`].
    pub fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }

    /// The earliest `run_at` of a scheduled job (the dispatcher sleeps until then).
    pub fn next_run_at(&self) -> Result<Option<DateTime<Utc>>, JobError> {
        Ok(self.store.next_run_at()?.map(model::time))
    }

    // ----- writing -----

    /// Tell the listeners, and wake the executors when a job became ready.
    fn changed(&self, old: &Job, new: &Job) {
        if new.status == Status::Queued && old.status != Status::Queued {
            self.wake_executors(&new.kind);
        }
        let Some(outcome) = transitions::outcome(old, new) else {
            return;
        };
        if matches!(outcome, Outcome::Failed | Outcome::Dead) {
            self.count_failure(new.updated_at);
        }
        let event = JobEvent {
            id: new.id.clone(),
            queue: new.queue.clone(),
            kind: new.kind.clone(),
            outcome,
            attempts: new.attempts,
            error: new.last_error.clone(),
            at: model::time(new.updated_at),
        };
        if let Some(hook) = self.outcome_hook.get() {
            hook(&event);
        }
        let _ = self.events.send(event);
    }

    /// A job of `kind` became ready: wake the built-in executors for their kinds, and
    /// every long-polling claim.
    fn wake_executors(&self, kind: &str) {
        if executors::KINDS.contains(&kind) {
            self.ready_notify.notify_waiters();
        }
        self.claimable.notify_waiters();
    }

    /// Change one job through `f`, then tell the listeners.
    fn apply(
        &self,
        id: &str,
        mut f: impl FnMut(&Job) -> Result<Job, JobError>,
    ) -> Result<(Job, Commit), JobError> {
        let (old, new, commit) = self.store.update(id, &mut f)?;
        self.changed(&old, &new);
        Ok((new, commit))
    }

    /// Put a new job in.
    pub fn enqueue(&self, new: NewJob) -> Result<(Enqueued, Commit), JobError> {
        let id = match &new.id {
            Some(s) => uuid::Uuid::parse_str(s)
                .map_err(|_| JobError::Invalid("id: must be a UUID".into()))?
                .hyphenated()
                .to_string(),
            None => uuid::Uuid::now_v7().to_string(),
        };
        let job = transitions::new_job(new, id, self.now())?;
        let (inserted, commit) = self.store.insert(&job)?;
        Ok(match inserted {
            Inserted::New(job) => {
                if job.status == Status::Queued {
                    self.wake_executors(&job.kind);
                }
                (
                    Enqueued {
                        job,
                        duplicate: false,
                    },
                    commit,
                )
            }
            Inserted::Duplicate(job) => (
                Enqueued {
                    job,
                    duplicate: true,
                },
                commit,
            ),
        })
    }

    /// Put up to [`MAX_BATCH`] new jobs in as one change under one commit. Every entry is
    /// checked first: an error names the entry (`jobs[3].kind: …`) and nothing is stored.
    /// Each entry's unique key is honoured as in [`Jobs::enqueue`]; two entries with the
    /// same key are refused. Answers in the entries' order.
    pub fn enqueue_batch(&self, news: Vec<NewJob>) -> Result<(Vec<Enqueued>, Commit), JobError> {
        if news.is_empty() || news.len() > MAX_BATCH {
            return Err(JobError::Invalid(format!(
                "jobs: must hold 1 to {MAX_BATCH} jobs"
            )));
        }
        let now = self.now();
        let mut keys: HashMap<&str, usize> = HashMap::new();
        for (i, new) in news.iter().enumerate() {
            if new.id.is_some() {
                return Err(JobError::Invalid(format!(
                    "jobs[{i}].id: not allowed in a batch"
                )));
            }
            if let Some(u) = new.unique_key.as_deref()
                && let Some(first) = keys.insert(u, i)
            {
                return Err(JobError::Invalid(format!(
                    "jobs[{i}].unique_key: the same as jobs[{first}].unique_key"
                )));
            }
        }
        let jobs = news
            .into_iter()
            .enumerate()
            .map(|(i, new)| {
                transitions::new_job(new, uuid::Uuid::now_v7().to_string(), now).map_err(
                    |e| match e {
                        JobError::Invalid(m) => JobError::Invalid(format!("jobs[{i}].{m}")),
                        e => e,
                    },
                )
            })
            .collect::<Result<Vec<_>, _>>()?;
        let (inserted, commit) = self.store.insert_batch(&jobs)?;
        let mut woken = BTreeSet::new();
        let out = inserted
            .into_iter()
            .map(|ins| match ins {
                Inserted::New(job) => {
                    if job.status == Status::Queued && woken.insert(job.kind.clone()) {
                        self.wake_executors(&job.kind);
                    }
                    Enqueued {
                        job,
                        duplicate: false,
                    }
                }
                Inserted::Duplicate(job) => Enqueued {
                    job,
                    duplicate: true,
                },
            })
            .collect();
        Ok((out, commit))
    }

    /// Move scheduled jobs whose `run_at` arrived to the ready queue. Returns how many.
    pub fn promote_due(&self) -> Result<(usize, Commit), JobError> {
        let now = self.now();
        let mut moved = 0;
        let mut commit = Commit::done();
        for id in self.store.due(now)? {
            if let Some((_, c)) =
                skip_conflicts(self.apply(&id, |j| transitions::promoted(j, now)))?
            {
                moved += 1;
                commit = commit.and(c);
            }
        }
        Ok((moved, commit))
    }

    /// Claim up to `req.count` ready jobs: best priority first, then earliest `run_at`,
    /// then oldest id. Exclusive: each job goes to exactly one claimer. For the server's
    /// own code; API callers claim with [`Jobs::claim_for_key`].
    pub fn claim(&self, req: &ClaimRequest) -> Result<(Vec<Job>, Commit), JobError> {
        self.claim_as(req, None)
    }

    /// `kind` is run by the server itself (beside the built-in executors' kinds): API
    /// claims never receive its jobs, which their workers could not report anyway.
    pub fn run_here(&self, kind: &str) {
        self.server_kinds
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(kind.to_string());
    }

    /// The kinds an API claim may take: those asked for (or every kind the queue holds)
    /// less the server's own.
    fn external_kinds(&self, asked: &[String]) -> Vec<String> {
        let own = self.server_kinds.read().unwrap_or_else(|p| p.into_inner());
        let wanted: BTreeSet<String> = if asked.is_empty() {
            self.store.counts().into_keys().map(|(_, k, _)| k).collect()
        } else {
            asked.iter().cloned().collect()
        };
        wanted.into_iter().filter(|k| !own.contains(k)).collect()
    }

    /// [`Jobs::claim`] for an API key (`key_id`, never the key): the claims are that
    /// key's, and only it (or an operator) may report on them.
    pub fn claim_for_key(
        &self,
        req: &ClaimRequest,
        key_id: &str,
    ) -> Result<(Vec<Job>, Commit), JobError> {
        self.claim_as(req, Some(key_id))
    }

    fn claim_as(
        &self,
        req: &ClaimRequest,
        key_id: Option<&str>,
    ) -> Result<(Vec<Job>, Commit), JobError> {
        let (_, promoted) = self.promote_due()?;
        let now = self.now();
        let count = req.count.clamp(1, MAX_CLAIM);
        let kinds = match key_id {
            Some(_) => {
                let kinds = self.external_kinds(&req.kinds);
                if kinds.is_empty() {
                    return Ok((Vec::new(), promoted));
                }
                kinds
            }
            None => req.kinds.clone(),
        };
        let (jobs, commit) = self.store.claim(&req.queues, &kinds, count, &mut |j| {
            transitions::claimed_by(j, &req.worker, key_id, req.lease_secs, now)
        })?;
        Ok((jobs, promoted.and(commit)))
    }

    /// Extend a running job's lease (a stuck one comes back to running). `by`: a worker
    /// name (`Option<&str>`, the server's own code) or an [`ApiReporter`](super::ApiReporter).
    pub fn heartbeat<'a>(
        &self,
        id: &str,
        by: impl Into<Reporter<'a>>,
        lease_secs: u64,
    ) -> Result<(Job, Commit), JobError> {
        let now = self.now();
        let by = by.into();
        self.apply(id, |j| transitions::heartbeat(j, by, lease_secs, now))
    }

    /// A successful attempt. `result` is JSON text.
    pub fn complete<'a>(
        &self,
        id: &str,
        by: impl Into<Reporter<'a>>,
        result: Option<String>,
    ) -> Result<(Job, Commit), JobError> {
        let now = self.now();
        let by = by.into();
        self.apply(id, |j| transitions::completed(j, by, result.clone(), now))
    }

    /// A failed attempt: back to `scheduled` with backoff, or `dead` after the last one.
    pub fn fail<'a>(
        &self,
        id: &str,
        by: impl Into<Reporter<'a>>,
        error: &str,
    ) -> Result<(Job, Commit), JobError> {
        self.fail_with(id, by, error, true)
    }

    /// [`Jobs::fail`]; with `retry: false` a permanent failure, `dead` at once.
    pub fn fail_with<'a>(
        &self,
        id: &str,
        by: impl Into<Reporter<'a>>,
        error: &str,
        retry: bool,
    ) -> Result<(Job, Commit), JobError> {
        let now = self.now();
        let jitter = self.jitter();
        let error = truncate(error, MAX_ERROR_BYTES);
        let by = by.into();
        self.apply(id, |j| {
            transitions::failed_by(j, by, &error, retry, now, jitter)
        })
    }

    /// A worker's batch of reports as one change under one commit: each entry as
    /// [`Jobs::complete`] or [`Jobs::fail_with`] would, answered on its own (a refused
    /// entry changes nothing). A store failure fails the whole batch.
    pub fn report_batch<'a>(
        &self,
        by: impl Into<Reporter<'a>>,
        reports: &[(&str, Report)],
    ) -> Result<(Vec<Result<Job, JobError>>, Commit), JobError> {
        let now = self.now();
        let by = by.into();
        // Each failure's error cut to size and its backoff's random part, drawn once:
        // the changes may run again.
        let prepared: Vec<(Report, u64)> = reports
            .iter()
            .map(|(_, r)| match r {
                Report::Fail { error, retry } => (
                    Report::Fail {
                        error: truncate(error, MAX_ERROR_BYTES),
                        retry: *retry,
                    },
                    self.jitter(),
                ),
                complete => (complete.clone(), 0),
            })
            .collect();
        let mut fns: Vec<_> = prepared
            .iter()
            .map(|(r, jitter)| {
                move |j: &Job| match r {
                    Report::Complete(result) => transitions::completed(j, by, result.clone(), now),
                    Report::Fail { error, retry } => {
                        transitions::failed_by(j, by, error, *retry, now, *jitter)
                    }
                }
            })
            .collect();
        let mut changes: Vec<(&str, Change<'_>)> = reports
            .iter()
            .zip(fns.iter_mut())
            .map(|((id, _), f)| (*id, f as Change<'_>))
            .collect();
        let (updated, commit) = self.store.update_batch(&mut changes)?;
        let out = updated
            .into_iter()
            .map(|r| {
                r.map(|(old, new)| {
                    self.changed(&old, &new);
                    new
                })
            })
            .collect();
        Ok((out, commit))
    }

    /// Back to `queued` now: a stuck, dead, cancelled or failed (scheduled after an
    /// error) job. The attempt count is kept.
    pub fn retry(&self, id: &str) -> Result<(Job, Commit), JobError> {
        let now = self.now();
        self.apply(id, |j| transitions::retried(j, now))
    }

    /// Cancel a job that is not finished. A worker still running it gets 409 when it
    /// reports.
    pub fn cancel(&self, id: &str) -> Result<(Job, Commit), JobError> {
        let now = self.now();
        self.apply(id, |j| transitions::cancelled(j, now))
    }

    /// Retry every job matching `filter` (at most `limit`); returns the ids moved.
    pub fn retry_bulk(
        &self,
        filter: &Filter,
        limit: usize,
    ) -> Result<(Vec<String>, Commit), JobError> {
        let mut moved = Vec::new();
        let mut commit = Commit::done();
        for id in self.store.ids(filter, limit)? {
            if let Some((_, c)) = skip_conflicts(self.retry(&id))? {
                moved.push(id);
                commit = commit.and(c);
            }
        }
        Ok((moved, commit))
    }

    /// Mark running jobs whose lease ran out as stuck. Returns them.
    pub fn mark_stuck(&self) -> Result<(Vec<Job>, Commit), JobError> {
        let now = self.now();
        let mut out = Vec::new();
        let mut commit = Commit::done();
        for j in self.store.expired_leases(now)? {
            if let Some((j, c)) =
                skip_conflicts(self.apply(&j.id, |j| transitions::marked_stuck(j, now)))?
            {
                out.push(j);
                commit = commit.and(c);
            }
        }
        Ok((out, commit))
    }

    /// Mark every running job stuck now, whatever its lease says: after a restore the
    /// workers that held them are gone. They are then recovered as after a crash.
    pub fn mark_all_stuck(&self, why: &str) -> Result<(usize, Commit), JobError> {
        let now = self.now();
        let mut n = 0;
        let mut commit = Commit::done();
        for id in self
            .store
            .ids(&Filter::status(Status::Running), usize::MAX)?
        {
            if let Some((_, c)) =
                skip_conflicts(self.apply(&id, |j| transitions::abandoned(j, now, why)))?
            {
                n += 1;
                commit = commit.and(c);
            }
        }
        Ok((n, commit))
    }

    /// Re-queue, as a failed attempt, stuck jobs whose lease ran out at least
    /// `after_secs` ago. Returns them.
    pub fn requeue_stuck(&self, after_secs: u64) -> Result<(Vec<Job>, Commit), JobError> {
        let now = self.now();
        let limit = now - (after_secs as i64) * 1000;
        let mut out = Vec::new();
        let mut commit = Commit::done();
        for id in self.store.ids(&Filter::status(Status::Stuck), usize::MAX)? {
            let jitter = self.jitter();
            if let Some((j, c)) =
                skip_conflicts(self.apply(&id, |j| transitions::requeued(j, limit, now, jitter)))?
            {
                out.push(j);
                commit = commit.and(c);
            }
        }
        Ok((out, commit))
    }

    /// Remove finished jobs older than `days`. Returns how many.
    pub fn prune(&self, days: u64) -> Result<(usize, Commit), JobError> {
        self.store.prune(self.now() - (days as i64) * 86_400_000)
    }
}
