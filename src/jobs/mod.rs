//! The durable job queue: enqueue, claim, heartbeat, complete, fail, retry, cancel,
//! stuck detection and pruning. No HTTP here; `web::api::jobs` is the HTTP face.
//!
//! The `jobs` tree (id → [`Job`]) is the truth. Three index trees make the hot paths
//! cheap and are rebuilt from it at every start, so a crash between a record write and
//! an index write can never lose or duplicate a job:
//! - `jobs_ready`: `queue \0 kind \0 priority↓ run_at id` for queued jobs. A claim peeks
//!   the head of every (queue, kind) it may take, picks the best, and *removes* that
//!   index entry: sled's remove is atomic, so exactly one claimer gets it.
//! - `jobs_sched`: `run_at id` for scheduled jobs (delayed or backing off).
//! - `jobs_running`: `id` for running jobs (stuck detection scans only these).
//!
//! Writers here do not sync; the caller calls `store.sync()` (group commit) before it
//! answers, so one sync covers every write of a request.

pub mod executors;
pub mod model;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, broadcast};

use model::ms;
pub use model::{Job, Status, backoff_secs};

use crate::clock::Clock;
use crate::store::{Cas, Record, Store, StoreError, Table};

/// Prefix of the worker name the built-in executors claim with. At start-up their
/// running jobs are stuck at once: the process that ran them is gone.
pub const BUILTIN_WORKER: &str = "builtin:";

pub const DEFAULT_QUEUE: &str = "default";
pub const DEFAULT_MAX_ATTEMPTS: u32 = 25;
pub const DEFAULT_TIMEOUT_SECS: u64 = 300;
pub const DEFAULT_LEASE_SECS: u64 = 300;
pub const MAX_CLAIM: usize = 100;

#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error("no such job: {0}")]
    NotFound(String),
    /// Bad input; the message names the field.
    #[error("{0}")]
    Invalid(String),
    /// The job is not in a state that allows this.
    #[error("{0}")]
    Conflict(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

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

/// What an enqueue asks for, already parsed (the web layer checks types).
#[derive(Debug, Clone, Default)]
pub struct NewJob {
    pub queue: Option<String>,
    pub kind: String,
    /// JSON text.
    pub payload: Option<String>,
    pub priority: Option<i32>,
    pub max_attempts: Option<u32>,
    pub run_at: Option<DateTime<Utc>>,
    pub delay_secs: Option<u64>,
    pub timeout_secs: Option<u64>,
    pub unique_key: Option<String>,
    pub schedule: Option<String>,
}

/// The result of an enqueue: the job, and whether it was already there (unique key).
#[derive(Debug, Clone)]
pub struct Enqueued {
    pub job: Job,
    pub duplicate: bool,
}

/// What a claim asks for.
#[derive(Debug, Clone, Default)]
pub struct ClaimRequest {
    /// Empty: any queue.
    pub queues: Vec<String>,
    /// Empty: any kind.
    pub kinds: Vec<String>,
    pub worker: String,
    pub lease_secs: u64,
    pub count: usize,
}

/// A filter for lists and bulk retries.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub status: Option<Status>,
    pub queue: Option<String>,
    pub kind: Option<String>,
    /// Created at or after this.
    pub since: Option<DateTime<Utc>>,
    /// Only failed attempts waiting to be retried (scheduled with an error).
    pub failed: bool,
}

impl Filter {
    fn matches(&self, j: &Job) -> bool {
        self.status.is_none_or(|s| j.status == s)
            && self.queue.as_ref().is_none_or(|q| &j.queue == q)
            && self.kind.as_ref().is_none_or(|k| &j.kind == k)
            && self.since.is_none_or(|t| j.created_at >= ms(t))
            && (!self.failed || (j.status == Status::Scheduled && j.last_error.is_some()))
    }
}

/// An outcome the SLO module and the scheduler log listen to.
#[derive(Debug, Clone, PartialEq)]
pub struct JobEvent {
    pub id: String,
    pub queue: String,
    pub kind: String,
    pub outcome: Outcome,
    pub attempts: u32,
    pub error: Option<String>,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Succeeded,
    /// A failed attempt; it will be retried after its backoff.
    Failed,
    /// Failed for the last time.
    Dead,
    /// Its lease ran out.
    Stuck,
    Cancelled,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Succeeded => "succeeded",
            Outcome::Failed => "failed",
            Outcome::Dead => "dead",
            Outcome::Stuck => "stuck",
            Outcome::Cancelled => "cancelled",
        }
    }
}

/// Counts per (queue, kind, status), kept in memory (rebuilt at start) so stats,
/// health and the SLO module read them without walking the tree.
type Counts = BTreeMap<(String, String, Status), i64>;

/// Cheap to clone: handles and `Arc`s.
#[derive(Clone)]
pub struct Jobs {
    jobs: Table<Job>,
    ready: Table<Marker>,
    sched: Table<Marker>,
    running: Table<Marker>,
    unique: Table<UniqueHolder>,
    clock: Clock,
    counts: Arc<Mutex<Counts>>,
    /// Every (queue, kind) that ever had a job: the claim's candidates.
    pairs: Arc<Mutex<BTreeSet<(String, String)>>>,
    events: broadcast::Sender<JobEvent>,
    /// Called for every outcome, in the writer's thread: counters that must not miss
    /// one (a broadcast receiver that falls behind loses events).
    outcome_hook: Arc<OnceLock<OutcomeHook>>,
    /// Woken when a job becomes queued (the dispatcher waits on it).
    pub ready_notify: Arc<Notify>,
    /// Tests fix the random part of the backoff; `u64::MAX` means random.
    jitter: Arc<AtomicU64>,
}

fn id_bytes(id: &str) -> Result<[u8; 16], JobError> {
    uuid::Uuid::parse_str(id)
        .map(|u| *u.as_bytes())
        .map_err(|_| JobError::NotFound(id.to_string()))
}

/// See [`Jobs::on_outcome`].
type OutcomeHook = Box<dyn Fn(&JobEvent) + Send + Sync>;

/// i64 → bytes that sort in numeric order.
fn ord_i64(v: i64) -> [u8; 8] {
    ((v as u64) ^ (1 << 63)).to_be_bytes()
}

/// Higher priority sorts first.
fn ord_priority(p: i32) -> [u8; 4] {
    (!((p as u32) ^ 0x8000_0000)).to_be_bytes()
}

fn pair_prefix(queue: &str, kind: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(queue.len() + kind.len() + 2);
    k.extend_from_slice(queue.as_bytes());
    k.push(0);
    k.extend_from_slice(kind.as_bytes());
    k.push(0);
    k
}

fn ready_key(j: &Job, id: &[u8; 16]) -> Vec<u8> {
    let mut k = pair_prefix(&j.queue, &j.kind);
    k.extend_from_slice(&ord_priority(j.priority));
    k.extend_from_slice(&ord_i64(j.run_at));
    k.extend_from_slice(id);
    k
}

fn sched_key(run_at: i64, id: &[u8; 16]) -> Vec<u8> {
    let mut k = Vec::with_capacity(24);
    k.extend_from_slice(&ord_i64(run_at));
    k.extend_from_slice(id);
    k
}

/// Queue and kind names: 1–64 of `A-Z a-z 0-9 . _ : -` (they are parts of index keys).
pub fn check_name(field: &str, v: &str) -> Result<(), JobError> {
    let ok = !v.is_empty()
        && v.len() <= 64
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(JobError::Invalid(format!(
            "{field}: must be 1-64 characters of letters, digits, '.', '_', ':' or '-'"
        )))
    }
}

impl Jobs {
    /// Open the trees and rebuild the indexes and counts from the records. Jobs a
    /// built-in executor was running when the last process died are stuck now.
    pub fn open(store: &Store, clock: Clock) -> Result<Jobs, JobError> {
        let (events, _) = broadcast::channel(4096);
        let jobs = Jobs {
            jobs: store.table("jobs")?,
            ready: store.table("jobs_ready")?,
            sched: store.table("jobs_sched")?,
            running: store.table("jobs_running")?,
            unique: store.table("jobs_unique")?,
            clock,
            counts: Arc::default(),
            pairs: Arc::default(),
            events,
            outcome_hook: Arc::default(),
            ready_notify: Arc::new(Notify::new()),
            jitter: Arc::new(AtomicU64::new(u64::MAX)),
        };
        jobs.rebuild()?;
        Ok(jobs)
    }

    fn rebuild(&self) -> Result<(), JobError> {
        self.ready.clear()?;
        self.sched.clear()?;
        self.running.clear()?;
        let now = ms(self.clock.now());
        let mut counts = Counts::new();
        let mut pairs = BTreeSet::new();
        for entry in self.jobs.iter() {
            let (key, mut job) = entry?;
            let Ok(id): Result<[u8; 16], _> = key.as_slice().try_into() else {
                continue;
            };
            if job.status == Status::Running
                && job
                    .worker
                    .as_deref()
                    .is_some_and(|w| w.starts_with(BUILTIN_WORKER))
            {
                // Its executor died with the previous process.
                job.status = Status::Stuck;
                job.updated_at = now;
                job.close_attempt(now, "stuck", Some("the server stopped while it ran"));
                self.jobs.insert(id, &job)?;
            }
            match job.status {
                Status::Queued => self.ready.insert(ready_key(&job, &id), &Marker {})?,
                Status::Scheduled => self.sched.insert(sched_key(job.run_at, &id), &Marker {})?,
                Status::Running => self.running.insert(id, &Marker {})?,
                _ => {}
            }
            *counts
                .entry((job.queue.clone(), job.kind.clone(), job.status))
                .or_default() += 1;
            pairs.insert((job.queue, job.kind));
        }
        *self.counts.lock().unwrap_or_else(|p| p.into_inner()) = counts;
        *self.pairs.lock().unwrap_or_else(|p| p.into_inner()) = pairs;
        Ok(())
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

    pub fn get(&self, id: &str) -> Result<Job, JobError> {
        let key = id_bytes(id)?;
        self.jobs
            .get(key)?
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
        let upper: Vec<u8> = match cursor {
            Some(c) => id_bytes(c)
                .map_err(|_| JobError::Invalid("cursor: not a job id".into()))?
                .to_vec(),
            None => vec![0xff; 17],
        };
        let mut out = Vec::new();
        let mut more = false;
        for entry in self.jobs.range(..upper).rev() {
            let (_, job) = entry?;
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

    /// Counts per queue per status, and totals.
    pub fn counts(&self) -> BTreeMap<String, BTreeMap<Status, u64>> {
        let counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        let mut out: BTreeMap<String, BTreeMap<Status, u64>> = BTreeMap::new();
        for ((q, _, s), n) in counts.iter() {
            if *n > 0 {
                *out.entry(q.clone()).or_default().entry(*s).or_default() += *n as u64;
            }
        }
        out
    }

    /// Total jobs with `status`, all queues.
    pub fn count(&self, status: Status) -> u64 {
        let counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        counts
            .iter()
            .filter(|((_, _, s), _)| *s == status)
            .map(|(_, n)| (*n).max(0) as u64)
            .sum()
    }

    /// Stuck jobs: marked stuck, plus running ones whose lease already ran out.
    pub fn stuck(&self, now: DateTime<Utc>) -> Result<Vec<Job>, JobError> {
        let now = ms(now);
        let mut out = Vec::new();
        for entry in self.running.iter() {
            let (key, _) = entry?;
            if let Some(j) = self.jobs.get(&key)?
                && j.status == Status::Running
                && j.lease_expires_at.is_some_and(|l| l <= now)
            {
                out.push(j);
            }
        }
        if self.count(Status::Stuck) > 0 {
            for entry in self.jobs.iter() {
                let (_, j) = entry?;
                if j.status == Status::Stuck {
                    out.push(j);
                }
            }
        }
        Ok(out)
    }

    // ----- writing -----

    fn bump(&self, queue: &str, kind: &str, from: Option<Status>, to: Option<Status>) {
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
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

    /// Put a new job in.
    pub fn enqueue(&self, new: NewJob) -> Result<Enqueued, JobError> {
        let now_dt = self.clock.now();
        let now = ms(now_dt);
        let queue = new.queue.unwrap_or_else(|| DEFAULT_QUEUE.to_string());
        check_name("queue", &queue)?;
        check_name("kind", &new.kind)?;
        let max_attempts = new.max_attempts.unwrap_or(DEFAULT_MAX_ATTEMPTS);
        if !(1..=1000).contains(&max_attempts) {
            return Err(JobError::Invalid("max_attempts: must be 1 to 1000".into()));
        }
        let timeout_secs = new.timeout_secs.unwrap_or(DEFAULT_TIMEOUT_SECS);
        if !(1..=86_400).contains(&timeout_secs) {
            return Err(JobError::Invalid("timeout_secs: must be 1 to 86400".into()));
        }
        if new.run_at.is_some() && new.delay_secs.is_some() {
            return Err(JobError::Invalid(
                "run_at: give either run_at or delay_secs, not both".into(),
            ));
        }
        let run_at = match (new.run_at, new.delay_secs) {
            (Some(t), _) => ms(t),
            (None, Some(d)) => {
                if d > 10 * 365 * 86_400 {
                    return Err(JobError::Invalid("delay_secs: at most ten years".into()));
                }
                now + (d as i64) * 1000
            }
            (None, None) => now,
        };
        if let Some(u) = &new.unique_key
            && (u.is_empty() || u.len() > 200)
        {
            return Err(JobError::Invalid(
                "unique_key: must be 1 to 200 characters".into(),
            ));
        }
        let uuid = uuid::Uuid::now_v7();
        let id = *uuid.as_bytes();
        let status = if run_at > now {
            Status::Scheduled
        } else {
            Status::Queued
        };
        let job = Job {
            id: uuid.to_string(),
            queue,
            kind: new.kind,
            payload: new.payload.unwrap_or_else(|| "{}".into()),
            priority: new.priority.unwrap_or(0),
            status,
            attempts: 0,
            max_attempts,
            run_at,
            created_at: now,
            updated_at: now,
            started_at: None,
            finished_at: None,
            lease_expires_at: None,
            timeout_secs,
            worker: None,
            last_error: None,
            result: None,
            unique_key: new.unique_key.clone(),
            schedule: new.schedule,
            history: Vec::new(),
        };
        if let Some(u) = &new.unique_key {
            let holder = UniqueHolder { id: job.id.clone() };
            loop {
                if self.unique.insert_new(u.as_bytes(), &holder)? {
                    break;
                }
                let Some(current) = self.unique.get(u.as_bytes())? else {
                    continue;
                };
                match self.get(&current.id) {
                    Ok(existing) if !existing.status.is_finished() => {
                        return Ok(Enqueued {
                            job: existing,
                            duplicate: true,
                        });
                    }
                    _ => {
                        if self.unique.compare_and_swap(
                            u.as_bytes(),
                            Some(&current),
                            Some(&holder),
                        )? == Cas::Swapped
                        {
                            break;
                        }
                    }
                }
            }
        }
        self.jobs.insert(id, &job)?;
        match status {
            Status::Queued => self.ready.insert(ready_key(&job, &id), &Marker {})?,
            _ => self.sched.insert(sched_key(run_at, &id), &Marker {})?,
        }
        self.note_pair(&job.queue, &job.kind);
        self.bump(&job.queue, &job.kind, None, Some(status));
        if status == Status::Queued {
            self.wake_executors(&job.kind);
        }
        Ok(Enqueued {
            job,
            duplicate: false,
        })
    }

    /// Only the built-in executors wait on this; external workers poll.
    fn wake_executors(&self, kind: &str) {
        if executors::KINDS.contains(&kind) {
            self.ready_notify.notify_waiters();
        }
    }

    fn note_pair(&self, queue: &str, kind: &str) {
        let mut pairs = self.pairs.lock().unwrap_or_else(|p| p.into_inner());
        if !pairs.contains(&(queue.to_string(), kind.to_string())) {
            pairs.insert((queue.to_string(), kind.to_string()));
        }
    }

    /// Change one job with `f` (compare-and-swap, retried on a concurrent change), then
    /// move its index entries and counts. `f` sees the current record and returns the
    /// new one, or an error that leaves everything untouched.
    fn change<F>(&self, id: &str, mut f: F) -> Result<(Job, Job), JobError>
    where
        F: FnMut(&Job) -> Result<Job, JobError>,
    {
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

    fn reindex(&self, key: &[u8; 16], old: &Job, new: &Job) -> Result<(), JobError> {
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
            self.wake_executors(&new.kind);
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
            self.bump(&new.queue, &new.kind, Some(old.status), Some(new.status));
            let outcome = match new.status {
                Status::Succeeded => Some(Outcome::Succeeded),
                Status::Dead => Some(Outcome::Dead),
                Status::Stuck => Some(Outcome::Stuck),
                Status::Cancelled => Some(Outcome::Cancelled),
                Status::Scheduled
                    if old.status == Status::Running || old.status == Status::Stuck =>
                {
                    Some(Outcome::Failed)
                }
                _ => None,
            };
            if let Some(outcome) = outcome {
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
        }
        Ok(())
    }

    /// Move scheduled jobs whose `run_at` arrived to the ready queue. Returns how many.
    pub fn promote_due(&self) -> Result<usize, JobError> {
        let now = self.now();
        let mut upper = ord_i64(now).to_vec();
        upper.extend_from_slice(&[0xff; 16]);
        let mut moved = 0;
        let due: Vec<Vec<u8>> = self
            .sched
            .range(..=upper)
            .map(|r| r.map(|(k, _)| k))
            .collect::<Result<_, _>>()?;
        for key in due {
            let Some(id) = key.get(8..24).and_then(|b| uuid::Uuid::from_slice(b).ok()) else {
                continue;
            };
            let r = self.change(&id.to_string(), |j| {
                if j.status != Status::Scheduled || j.run_at > now {
                    return Err(JobError::Conflict("no longer due".into()));
                }
                let mut n = j.clone();
                n.status = Status::Queued;
                n.updated_at = now;
                Ok(n)
            });
            match r {
                Ok(_) => moved += 1,
                Err(JobError::Conflict(_)) | Err(JobError::NotFound(_)) => {
                    // A stale entry (the job moved on): drop it.
                    self.sched.remove(&key)?;
                }
                Err(e) => return Err(e),
            }
        }
        Ok(moved)
    }

    /// The earliest `run_at` of a scheduled job (the dispatcher sleeps until then).
    pub fn next_run_at(&self) -> Result<Option<DateTime<Utc>>, JobError> {
        Ok(self.sched.first()?.and_then(|(k, _)| {
            let b: [u8; 8] = k.get(..8)?.try_into().ok()?;
            let v = (u64::from_be_bytes(b) ^ (1 << 63)) as i64;
            Some(model::time(v))
        }))
    }

    /// Claim up to `req.count` ready jobs: best priority first, then earliest `run_at`,
    /// then oldest id. Exclusive: each index entry is removed by exactly one claimer.
    pub fn claim(&self, req: &ClaimRequest) -> Result<Vec<Job>, JobError> {
        self.promote_due()?;
        let candidates: Vec<Vec<u8>> = {
            let pairs = self.pairs.lock().unwrap_or_else(|p| p.into_inner());
            pairs
                .iter()
                .filter(|(q, k)| {
                    (req.queues.is_empty() || req.queues.iter().any(|x| x == q))
                        && (req.kinds.is_empty() || req.kinds.iter().any(|x| x == k))
                })
                .map(|(q, k)| pair_prefix(q, k))
                .collect()
        };
        let count = req.count.clamp(1, MAX_CLAIM);
        let mut out = Vec::with_capacity(count);
        let mut heads: Vec<Option<Vec<u8>>> = vec![None; candidates.len()];
        'outer: while out.len() < count {
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
                break 'outer;
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
            let now = self.now();
            let r = self.change(&id.to_string(), |j| {
                if j.status != Status::Queued {
                    return Err(JobError::Conflict("not queued".into()));
                }
                let mut n = j.clone();
                n.status = Status::Running;
                n.attempts += 1;
                n.started_at = Some(now);
                n.updated_at = now;
                n.finished_at = None;
                n.worker = Some(req.worker.clone());
                let lease = match req.lease_secs {
                    0 => j.timeout_secs + 30,
                    l => l,
                };
                n.lease_expires_at = Some(now + (lease as i64) * 1000);
                n.push_attempt(&req.worker, now);
                Ok(n)
            });
            match r {
                Ok((_, job)) => out.push(job),
                // Cancelled (or changed) between our removal and our write: skip it.
                Err(JobError::Conflict(_)) | Err(JobError::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    /// A worker may report on a job it holds: running (or stuck but not yet re-queued),
    /// and, when it names itself, by the same name.
    fn check_holder(j: &Job, worker: Option<&str>) -> Result<(), JobError> {
        if !matches!(j.status, Status::Running | Status::Stuck) {
            return Err(JobError::Conflict(format!(
                "job {} is {}, not running",
                j.id, j.status
            )));
        }
        if let Some(w) = worker
            && j.worker.as_deref() != Some(w)
        {
            return Err(JobError::Conflict(format!(
                "job {} is held by another worker",
                j.id
            )));
        }
        Ok(())
    }

    /// Extend a running job's lease (a stuck one comes back to running).
    pub fn heartbeat(
        &self,
        id: &str,
        worker: Option<&str>,
        lease_secs: u64,
    ) -> Result<Job, JobError> {
        let now = self.now();
        let (_, job) = self.change(id, |j| {
            Self::check_holder(j, worker)?;
            let mut n = j.clone();
            n.status = Status::Running;
            n.lease_expires_at = Some(now + (lease_secs.max(1) as i64) * 1000);
            n.updated_at = now;
            Ok(n)
        })?;
        Ok(job)
    }

    /// A successful attempt. `result` is JSON text.
    pub fn complete(
        &self,
        id: &str,
        worker: Option<&str>,
        result: Option<String>,
    ) -> Result<Job, JobError> {
        let now = self.now();
        let (_, job) = self.change(id, |j| {
            Self::check_holder(j, worker)?;
            let mut n = j.clone();
            n.status = Status::Succeeded;
            n.result = result.clone();
            n.finished_at = Some(now);
            n.updated_at = now;
            n.lease_expires_at = None;
            n.close_attempt(now, "succeeded", None);
            Ok(n)
        })?;
        Ok(job)
    }

    /// A failed attempt: back to `scheduled` with backoff, or `dead` after the last one.
    pub fn fail(&self, id: &str, worker: Option<&str>, error: &str) -> Result<Job, JobError> {
        let now = self.now();
        let jitter = self.jitter();
        let error = truncate(error, 4096);
        let (_, job) = self.change(id, |j| {
            Self::check_holder(j, worker)?;
            Ok(self.failed(j, now, jitter, &error))
        })?;
        Ok(job)
    }

    fn failed(&self, j: &Job, now: i64, jitter: u64, error: &str) -> Job {
        let mut n = j.clone();
        n.last_error = Some(error.to_string());
        n.lease_expires_at = None;
        n.updated_at = now;
        n.close_attempt(now, "failed", Some(error));
        if n.attempts >= n.max_attempts {
            n.status = Status::Dead;
            n.finished_at = Some(now);
        } else {
            n.status = Status::Scheduled;
            n.run_at = now + (backoff_secs(n.attempts, jitter) as i64) * 1000;
        }
        n
    }

    /// Back to `queued` now: a stuck, dead, cancelled or failed (scheduled after an
    /// error) job. The attempt count is kept.
    pub fn retry(&self, id: &str) -> Result<Job, JobError> {
        let now = self.now();
        let (_, job) = self.change(id, |j| {
            // Stuck as `/api/jobs/stuck` shows it: the lease ran out, even if no tick has
            // marked it yet (the runbook retries straight from that list).
            let lease_expired =
                j.status == Status::Running && j.lease_expires_at.is_some_and(|l| l <= now);
            let allowed = matches!(j.status, Status::Stuck | Status::Dead | Status::Cancelled)
                || lease_expired
                || (j.status == Status::Scheduled && j.last_error.is_some());
            if !allowed {
                return Err(JobError::Conflict(format!(
                    "job {} is {}; only stuck, dead, cancelled or failed jobs can be retried",
                    j.id, j.status
                )));
            }
            let mut n = j.clone();
            if n.status == Status::Stuck || lease_expired {
                n.close_attempt(now, "retried", Some("retried by hand while stuck"));
            }
            n.status = Status::Queued;
            n.run_at = now;
            n.updated_at = now;
            n.finished_at = None;
            n.lease_expires_at = None;
            if n.attempts >= n.max_attempts {
                // A dead job gets one more attempt.
                n.max_attempts = n.attempts + 1;
            }
            Ok(n)
        })?;
        Ok(job)
    }

    /// Cancel a job that is not finished. A worker still running it gets 409 when it
    /// reports.
    pub fn cancel(&self, id: &str) -> Result<Job, JobError> {
        let now = self.now();
        let (_, job) = self.change(id, |j| {
            if j.status.is_finished() {
                return Err(JobError::Conflict(format!(
                    "job {} is already {}",
                    j.id, j.status
                )));
            }
            let mut n = j.clone();
            n.status = Status::Cancelled;
            n.finished_at = Some(now);
            n.updated_at = now;
            n.lease_expires_at = None;
            n.close_attempt(now, "cancelled", None);
            Ok(n)
        })?;
        Ok(job)
    }

    /// Retry every job matching `filter` (at most `limit`); returns the ids moved.
    pub fn retry_bulk(&self, filter: &Filter, limit: usize) -> Result<Vec<String>, JobError> {
        let ids: Vec<String> = self
            .jobs
            .iter()
            .filter_map(|r| match r {
                Ok((_, j)) if filter.matches(&j) => Some(Ok(j.id)),
                Ok(_) => None,
                Err(e) => Some(Err(e)),
            })
            .take(limit)
            .collect::<Result<_, _>>()?;
        let mut moved = Vec::new();
        for id in ids {
            match self.retry(&id) {
                Ok(_) => moved.push(id),
                Err(JobError::Conflict(_)) | Err(JobError::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(moved)
    }

    /// Mark running jobs whose lease ran out as stuck. Returns them.
    pub fn mark_stuck(&self) -> Result<Vec<Job>, JobError> {
        let now = self.now();
        let mut out = Vec::new();
        let keys: Vec<Vec<u8>> = self
            .running
            .iter()
            .map(|r| r.map(|(k, _)| k))
            .collect::<Result<_, _>>()?;
        for key in keys {
            let Ok(id) = uuid::Uuid::from_slice(&key) else {
                continue;
            };
            let r = self.change(&id.to_string(), |j| {
                if j.status != Status::Running || j.lease_expires_at.is_none_or(|l| l > now) {
                    return Err(JobError::Conflict("not expired".into()));
                }
                let mut n = j.clone();
                n.status = Status::Stuck;
                n.updated_at = now;
                Ok(n)
            });
            match r {
                Ok((_, j)) => out.push(j),
                Err(JobError::Conflict(_)) => {}
                Err(JobError::NotFound(_)) => {
                    self.running.remove(&key)?;
                }
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    /// Mark every running job stuck now, whatever its lease says: after a restore the
    /// workers that held them are gone. They are then recovered as after a crash.
    pub fn mark_all_stuck(&self, why: &str) -> Result<usize, JobError> {
        let now = self.now();
        let keys: Vec<Vec<u8>> = self
            .running
            .iter()
            .map(|r| r.map(|(k, _)| k))
            .collect::<Result<_, _>>()?;
        let mut n = 0;
        for key in keys {
            let Ok(id) = uuid::Uuid::from_slice(&key) else {
                continue;
            };
            let r = self.change(&id.to_string(), |j| {
                if j.status != Status::Running {
                    return Err(JobError::Conflict("not running".into()));
                }
                let mut next = j.clone();
                next.status = Status::Stuck;
                next.updated_at = now;
                next.close_attempt(now, "stuck", Some(why));
                Ok(next)
            });
            match r {
                Ok(_) => n += 1,
                Err(JobError::Conflict(_) | JobError::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(n)
    }

    /// Re-queue, as a failed attempt, stuck jobs whose lease ran out at least
    /// `after_secs` ago. Returns them.
    pub fn requeue_stuck(&self, after_secs: u64) -> Result<Vec<Job>, JobError> {
        let now = self.now();
        let mut out = Vec::new();
        if self.count(Status::Stuck) == 0 {
            return Ok(out);
        }
        let limit = now - (after_secs as i64) * 1000;
        let ids: Vec<String> = self
            .jobs
            .iter()
            .filter_map(|r| match r {
                Ok((_, j)) if j.status == Status::Stuck => Some(Ok(j.id)),
                Ok(_) => None,
                Err(e) => Some(Err(e)),
            })
            .collect::<Result<_, _>>()?;
        for id in ids {
            let jitter = self.jitter();
            let r = self.change(&id, |j| {
                if j.status != Status::Stuck || j.stuck_since() > limit {
                    return Err(JobError::Conflict("not yet".into()));
                }
                let mut n = self.failed(j, now, jitter, "stuck: lease expired, re-queued");
                if n.status == Status::Scheduled {
                    // Re-queued now, not after a backoff: it already waited.
                    n.status = Status::Queued;
                    n.run_at = now;
                }
                Ok(n)
            });
            match r {
                Ok((_, j)) => out.push(j),
                Err(JobError::Conflict(_)) | Err(JobError::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    /// Remove finished jobs older than `days`. Returns how many.
    pub fn prune(&self, days: u64) -> Result<usize, JobError> {
        let limit = self.now() - (days as i64) * 86_400_000;
        let old: Vec<(Vec<u8>, Job)> = self
            .jobs
            .iter()
            .filter_map(|r| match r {
                Ok((k, j))
                    if j.status.is_finished() && j.finished_at.is_some_and(|f| f < limit) =>
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
                self.bump(&job.queue, &job.kind, Some(job.status), None);
                if let Some(u) = &job.unique_key {
                    let holder = UniqueHolder { id: job.id.clone() };
                    self.unique
                        .compare_and_swap(u.as_bytes(), Some(&holder), None)?;
                }
            }
        }
        Ok(n)
    }
}

/// At most `max` bytes of `s`, cut at a character boundary.
pub fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

/// The last `max` bytes of `s`, cut at a character boundary.
pub fn tail(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut start = s.len() - max;
    while !s.is_char_boundary(start) {
        start += 1;
    }
    s[start..].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_orders() {
        assert!(ord_priority(10) < ord_priority(0));
        assert!(ord_priority(0) < ord_priority(-5));
        assert!(ord_priority(i32::MAX) < ord_priority(i32::MIN));
        assert!(ord_i64(-1) < ord_i64(0));
        assert!(ord_i64(5) < ord_i64(1_000_000));
    }

    #[test]
    fn names_are_checked() {
        assert!(check_name("queue", "default").is_ok());
        assert!(check_name("queue", "a.b:c-d_e").is_ok());
        assert!(check_name("queue", "").is_err());
        assert!(check_name("kind", "with space").is_err());
        assert!(check_name("kind", "nul\0").is_err());
    }

    #[test]
    fn indexes_are_rebuilt_from_the_records_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let clock = Clock::system();
        let jobs = Jobs::open(&store, clock.clone()).unwrap();
        let a = jobs
            .enqueue(NewJob {
                kind: "k".into(),
                ..NewJob::default()
            })
            .unwrap()
            .job;
        // A crash after the claimer removed the index entry, before it wrote the record:
        // the record still says queued.
        let key = id_bytes(&a.id).unwrap();
        jobs.ready.remove(ready_key(&a, &key)).unwrap();
        // A built-in executor's job that was running when the process died.
        let b = jobs
            .enqueue(NewJob {
                kind: "http".into(),
                ..NewJob::default()
            })
            .unwrap()
            .job;
        let claimed = jobs
            .claim(&ClaimRequest {
                kinds: vec!["http".into()],
                worker: format!("{BUILTIN_WORKER}executor"),
                count: 1,
                ..ClaimRequest::default()
            })
            .unwrap();
        assert_eq!(claimed[0].id, b.id);

        let reopened = Jobs::open(&store, clock).unwrap();
        assert_eq!(reopened.count(Status::Queued), 1);
        assert_eq!(reopened.count(Status::Stuck), 1);
        assert_eq!(reopened.get(&b.id).unwrap().status, Status::Stuck);
        let c = reopened
            .claim(&ClaimRequest {
                worker: "w".into(),
                lease_secs: 10,
                count: 10,
                ..ClaimRequest::default()
            })
            .unwrap();
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].id, a.id);
    }

    #[test]
    fn truncate_and_tail_respect_chars() {
        assert_eq!(truncate("héllo", 2), "h");
        assert_eq!(tail("héllo", 4), "llo");
        assert_eq!(tail("abc", 10), "abc");
    }
}
