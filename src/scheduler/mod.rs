//! The scheduler: a tick every `SCHEDULER_TICK_SECS` (cron schedules, stuck jobs,
//! re-queue policy, pruning) and a due loop every second (jobs whose `run_at` arrived,
//! due schedules, the built-in executors). The [`Scheduler`] holds the narrow handles it
//! works on (the job queue, the schedules, the clock); its steps are plain functions
//! ([`tick`], [`due`], [`dispatch`]) so tests call them directly; [`run`] is the loop the
//! supervisor keeps alive.

pub mod cron;
pub mod log;
pub mod schedules;
pub mod store;

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio::sync::{Notify, Semaphore, broadcast};
use tokio_util::sync::CancellationToken;

use crate::clock::Clock;
use crate::jobs::executors::Executors;
use crate::jobs::{BUILTIN_WORKER, ClaimRequest, Job, Jobs, Reporter, Status};
use crate::store::Commit;
use log::SchedLog;
use schedules::Schedules;

/// `running`, `paused` or `stopped` (the loop is not running).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RunState {
    Running,
    Paused,
    Stopped,
}

/// What one tick did (also sent to tick subscribers).
#[derive(Debug, Clone, Default, Serialize)]
pub struct TickReport {
    pub at: String,
    pub tick: u64,
    pub fired: usize,
    pub promoted: usize,
    pub stuck: usize,
    pub requeued: usize,
    pub pruned: usize,
    pub errors: Vec<String>,
}

/// How the tick treats old and stuck jobs (from the configuration).
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    /// `SCHEDULER_TICK_SECS`.
    pub tick_secs: u64,
    /// Slots for the built-in executors (`EXECUTOR_CONCURRENCY`).
    pub concurrency: usize,
    /// Re-queue a stuck job after this long; 0 disables (`STUCK_REQUEUE_AFTER_SECS`).
    pub stuck_requeue_after_secs: u64,
    /// Prune finished jobs older than this (`JOB_RETENTION_DAYS`).
    pub job_retention_days: u64,
}

struct Inner {
    tick_secs: u64,
    stuck_requeue_after_secs: u64,
    job_retention_days: u64,
    paused: AtomicBool,
    alive: AtomicBool,
    restart: AtomicBool,
    ticks: AtomicU64,
    last_tick: Mutex<Option<DateTime<Utc>>>,
    wake: Notify,
    slots: Arc<Semaphore>,
    ticks_tx: broadcast::Sender<TickReport>,
}

/// The scheduler's handle: cheap to clone.
#[derive(Clone)]
pub struct Scheduler {
    inner: Arc<Inner>,
    jobs: Jobs,
    clock: Clock,
    pub schedules: Schedules,
    pub executors: Executors,
    pub log: SchedLog,
    /// Asked before schedules fire (the `scheduler.cron` flag).
    cron_gate: Option<Arc<dyn Fn() -> bool + Send + Sync>>,
}

impl Scheduler {
    pub fn new(
        jobs: Jobs,
        schedules: Schedules,
        clock: Clock,
        executors: Executors,
        log: SchedLog,
        policy: Policy,
    ) -> Self {
        let (ticks_tx, _) = broadcast::channel(64);
        Self {
            inner: Arc::new(Inner {
                tick_secs: policy.tick_secs.max(1),
                stuck_requeue_after_secs: policy.stuck_requeue_after_secs,
                job_retention_days: policy.job_retention_days,
                paused: AtomicBool::new(false),
                alive: AtomicBool::new(false),
                restart: AtomicBool::new(false),
                ticks: AtomicU64::new(0),
                last_tick: Mutex::new(None),
                wake: Notify::new(),
                slots: Arc::new(Semaphore::new(policy.concurrency)),
                ticks_tx,
            }),
            jobs,
            clock,
            schedules,
            executors,
            log,
            cron_gate: None,
        }
    }

    /// Ask `gate` before schedules fire; while it says no, none fires.
    pub fn with_cron_gate(mut self, gate: Arc<dyn Fn() -> bool + Send + Sync>) -> Self {
        self.cron_gate = Some(gate);
        self
    }

    pub fn cron_enabled(&self) -> bool {
        self.cron_gate.as_ref().is_none_or(|g| g())
    }

    pub fn state(&self) -> RunState {
        if !self.inner.alive.load(Ordering::SeqCst) {
            RunState::Stopped
        } else if self.inner.paused.load(Ordering::SeqCst) {
            RunState::Paused
        } else {
            RunState::Running
        }
    }

    /// Called as the loop is handed to the supervisor, so the state reads `running`
    /// from the first request on.
    pub fn mark_starting(&self) {
        self.inner.alive.store(true, Ordering::SeqCst);
    }

    pub fn is_paused(&self) -> bool {
        self.inner.paused.load(Ordering::SeqCst)
    }

    pub fn pause(&self) {
        self.inner.paused.store(true, Ordering::SeqCst);
    }

    pub fn resume(&self) {
        self.inner.paused.store(false, Ordering::SeqCst);
        self.inner.wake.notify_one();
    }

    /// Unpause and ask the loop to start over: recover stuck jobs and tick now.
    pub fn restart(&self) {
        self.inner.paused.store(false, Ordering::SeqCst);
        self.inner.restart.store(true, Ordering::SeqCst);
        self.inner.wake.notify_one();
    }

    pub fn tick_interval_secs(&self) -> u64 {
        self.inner.tick_secs
    }

    pub fn ticks(&self) -> u64 {
        self.inner.ticks.load(Ordering::SeqCst)
    }

    pub fn last_tick(&self) -> Option<DateTime<Utc>> {
        *self
            .inner
            .last_tick
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    pub fn next_tick(&self) -> Option<DateTime<Utc>> {
        self.last_tick()
            .map(|t| t + chrono::Duration::seconds(self.inner.tick_secs as i64))
    }

    /// Every tick's report, as it happens (the SLO module counts them).
    pub fn subscribe_ticks(&self) -> broadcast::Receiver<TickReport> {
        self.inner.ticks_tx.subscribe()
    }

    /// Free built-in executor slots.
    pub fn free_slots(&self) -> usize {
        self.inner.slots.available_permits()
    }
}

/// One scheduler tick: fire due schedules (unless paused), mark stuck jobs, re-queue
/// per `STUCK_REQUEUE_AFTER_SECS`, prune per `JOB_RETENTION_DAYS`. Its writes are
/// durable before it returns (one commit for all).
pub async fn tick(sched: &Scheduler) -> TickReport {
    let now = sched.clock.now();
    let mut r = TickReport {
        at: crate::clock::rfc3339(now),
        ..TickReport::default()
    };
    let mut commit = Commit::done();
    if !sched.is_paused() {
        match fire_schedules(sched, now) {
            Ok((n, c)) => {
                r.fired = n;
                commit = commit.and(c);
            }
            Err(e) => r.errors.push(format!("schedules: {e}")),
        }
    }
    match sched.jobs.promote_due() {
        Ok((n, c)) => {
            r.promoted = n;
            commit = commit.and(c);
        }
        Err(e) => r.errors.push(format!("promote: {e}")),
    }
    match sched.jobs.mark_stuck() {
        Ok((v, c)) => {
            commit = commit.and(c);
            r.stuck = v.len();
            for j in &v {
                sched.log.error(&format!(
                    "job {} ({}/{}) stuck: lease of worker {} expired",
                    j.id,
                    j.queue,
                    j.kind,
                    j.worker.as_deref().unwrap_or("-")
                ));
            }
        }
        Err(e) => r.errors.push(format!("stuck: {e}")),
    }
    let after = sched.inner.stuck_requeue_after_secs;
    if after > 0 {
        match sched.jobs.requeue_stuck(after) {
            Ok((v, c)) => {
                commit = commit.and(c);
                r.requeued = v.len();
                for j in &v {
                    sched.log.info(&format!(
                        "job {} re-queued after being stuck {}s or more (attempt {}/{})",
                        j.id, after, j.attempts, j.max_attempts
                    ));
                }
            }
            Err(e) => r.errors.push(format!("requeue: {e}")),
        }
    }
    match sched.jobs.prune(sched.inner.job_retention_days) {
        Ok((n, c)) => {
            r.pruned = n;
            commit = commit.and(c);
        }
        Err(e) => r.errors.push(format!("prune: {e}")),
    }
    if let Err(e) = commit.durable().await {
        r.errors.push(format!("sync: {e}"));
    }
    *sched
        .inner
        .last_tick
        .lock()
        .unwrap_or_else(|p| p.into_inner()) = Some(now);
    r.tick = sched.inner.ticks.fetch_add(1, Ordering::SeqCst) + 1;
    let line = format!(
        "tick {} fired={} promoted={} stuck={} requeued={} pruned={} queued={} running={} scheduled={} dead={}",
        r.tick,
        r.fired,
        r.promoted,
        r.stuck,
        r.requeued,
        r.pruned,
        sched.jobs.count(Status::Queued),
        sched.jobs.count(Status::Running),
        sched.jobs.count(Status::Scheduled),
        sched.jobs.count(Status::Dead),
    );
    sched.log.info(&line);
    for e in &r.errors {
        sched.log.error(&format!("tick {}: {e}", r.tick));
    }
    let _ = sched.inner.ticks_tx.send(r.clone());
    r
}

fn fire_schedules(sched: &Scheduler, now: DateTime<Utc>) -> anyhow::Result<(usize, Commit)> {
    if !sched.cron_enabled() {
        return Ok((0, Commit::done()));
    }
    let (fired, commit) = sched.schedules.fire_due(&sched.jobs, now)?;
    for (name, r) in &fired {
        match r {
            Ok(id) => sched.log.info(&format!("schedule {name} fired: job {id}")),
            Err(e) => sched
                .log
                .error(&format!("schedule {name} failed to fire: {e}")),
        }
    }
    Ok((fired.iter().filter(|(_, r)| r.is_ok()).count(), commit))
}

/// The every-second step: promote jobs whose `run_at` arrived, fire due schedules and
/// hand ready jobs to the built-in executors. Nothing starts while paused.
pub async fn due(sched: &Scheduler) -> anyhow::Result<()> {
    if sched.is_paused() {
        return Ok(());
    }
    let now = sched.clock.now();
    let (_, fired) = fire_schedules(sched, now)?;
    let (_, promoted) = sched.jobs.promote_due()?;
    fired.and(promoted).durable().await?;
    dispatch(sched).await?;
    Ok(())
}

/// Claim ready jobs of the built-in kinds into free executor slots; each runs in its
/// own task and reports like an external worker would. Returns how many started.
pub async fn dispatch(sched: &Scheduler) -> anyhow::Result<usize> {
    let kinds = sched.executors.enabled_kinds();
    if kinds.is_empty() || sched.is_paused() {
        return Ok(0);
    }
    let mut started = 0;
    loop {
        let Ok(permit) = sched.inner.slots.clone().try_acquire_owned() else {
            break;
        };
        let (claimed, commit) = sched.jobs.claim(&ClaimRequest {
            queues: Vec::new(),
            kinds: kinds.clone(),
            worker: format!("{BUILTIN_WORKER}executor"),
            // The lease covers the job's whole timeout, plus a margin to report.
            lease_secs: 0,
            count: 1,
        })?;
        let Some(job) = claimed.into_iter().next() else {
            break;
        };
        // Durable before it runs: after a crash it shows as stuck, never as queued
        // again with its side effects done.
        commit.durable().await?;
        started += 1;
        let sched = sched.clone();
        tokio::spawn(async move {
            execute(&sched, job).await;
            drop(permit);
            sched.inner.wake.notify_one();
        });
    }
    Ok(started)
}

async fn execute(sched: &Scheduler, job: Job) {
    let outcome = sched.executors.run(&job).await;
    let res = match outcome {
        Ok(result) => sched
            .jobs
            .complete(&job.id, Reporter::Internal(None), Some(result)),
        Err(e) => sched.jobs.fail(&job.id, Reporter::Internal(None), &e),
    };
    match res {
        Ok((_, commit)) => {
            if let Err(e) = commit.durable().await {
                sched
                    .log
                    .error(&format!("job {}: sync failed: {e}", job.id));
            }
        }
        Err(e) => sched.log.error(&format!(
            "job {}: could not record its outcome: {e}",
            job.id
        )),
    }
}

/// Marks the loop alive while it runs, and stopped when it ends or panics.
struct Alive(Arc<Inner>);
impl Drop for Alive {
    fn drop(&mut self) {
        self.0.alive.store(false, Ordering::SeqCst);
    }
}

/// The scheduler loop, run under the supervisor.
pub async fn run(sched: Scheduler, token: CancellationToken) -> anyhow::Result<()> {
    let inner = sched.inner.clone();
    inner.alive.store(true, Ordering::SeqCst);
    let _alive = Alive(inner.clone());
    sched.log.info("scheduler started");
    let mut last_due = tokio::time::Instant::now() - Duration::from_secs(2);
    loop {
        if inner.restart.swap(false, Ordering::SeqCst) {
            sched.log.info("scheduler restarted by an operator");
            tick(&sched).await;
        }
        let now = sched.clock.now();
        let tick_due = sched.next_tick().is_none_or(|t| t <= now);
        if tick_due {
            tick(&sched).await;
        }
        // Schedules are checked once a second; an early wake-up only dispatches.
        let r = if last_due.elapsed() >= Duration::from_millis(900) {
            last_due = tokio::time::Instant::now();
            due(&sched).await
        } else {
            dispatch(&sched).await.map(|_| ())
        };
        if let Err(e) = r {
            sched.log.error(&format!("due check failed: {e:#}"));
        }
        // Sleep until the next job's run_at, at most a second; wake early on an
        // enqueue, a finished job, resume or restart.
        let mut wait = Duration::from_secs(1);
        if let Ok(Some(next)) = sched.jobs.next_run_at()
            && let Ok(d) = (next - sched.clock.now()).to_std()
        {
            wait = wait.min(d + Duration::from_millis(1));
        }
        tokio::select! {
            _ = token.cancelled() => break,
            _ = inner.wake.notified() => {}
            _ = sched.jobs.ready_notify.notified() => {}
            _ = tokio::time::sleep(wait) => {}
        }
    }
    sched.log.info("scheduler stopped");
    Ok(())
}
