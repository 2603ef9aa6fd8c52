//! The job's life as pure functions `&Job → Job` (or an error that changes nothing): the
//! service reads a job, asks one of these for its next form, and hands both to the
//! store as one change. No clock, no store, no randomness in here: `now` (ms) and the
//! backoff's `jitter` come in as arguments, so every rule is testable on its own.

use super::model::{Job, Status, backoff_secs, ms};
use super::types::{
    BUILTIN_WORKER, DEFAULT_MAX_ATTEMPTS, DEFAULT_QUEUE, DEFAULT_TIMEOUT_SECS, JobError, NewJob,
    Outcome, Reporter, check_name,
};

/// A new job from an enqueue request, checked field by field.
pub fn new_job(new: NewJob, id: String, now: i64) -> Result<Job, JobError> {
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
    let status = if run_at > now {
        Status::Scheduled
    } else {
        Status::Queued
    };
    Ok(Job {
        id,
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
        unique_key: new.unique_key,
        schedule: new.schedule,
        history: Vec::new(),
        worker_key: None,
    })
}

/// A scheduled job whose `run_at` arrived becomes ready.
pub fn promoted(j: &Job, now: i64) -> Result<Job, JobError> {
    if j.status != Status::Scheduled || j.run_at > now {
        return Err(JobError::Conflict("no longer due".into()));
    }
    let mut n = j.clone();
    n.status = Status::Queued;
    n.updated_at = now;
    Ok(n)
}

/// A ready job taken by `worker` in the server's own code; `lease_secs` 0 means "the
/// job's timeout and a margin".
pub fn claimed(j: &Job, worker: &str, lease_secs: u64, now: i64) -> Job {
    claimed_by(j, worker, None, lease_secs, now)
}

/// [`claimed`], by an API key (`key_id`, `None` for the server's own code): only that
/// key may report on the claim.
pub fn claimed_by(j: &Job, worker: &str, key_id: Option<&str>, lease_secs: u64, now: i64) -> Job {
    let mut n = j.clone();
    n.status = Status::Running;
    n.attempts += 1;
    n.started_at = Some(now);
    n.updated_at = now;
    n.finished_at = None;
    n.worker = Some(worker.to_string());
    n.worker_key = key_id.map(str::to_string);
    let lease = match lease_secs {
        0 => j.timeout_secs + 30,
        l => l,
    };
    n.lease_expires_at = Some(now + (lease as i64) * 1000);
    n.push_attempt(worker, now);
    n
}

/// A worker may report on a job it holds: running (or stuck but not yet re-queued),
/// and, when it names itself, by the same name. Over the API, a built-in executor's job
/// is never reported (its outcome would be lost), and a worker key reports only on its
/// own claims; operators and admins may act on any other.
fn check_holder(j: &Job, by: Reporter<'_>) -> Result<(), JobError> {
    if !matches!(j.status, Status::Running | Status::Stuck) {
        return Err(JobError::Conflict(format!(
            "job {} is {}, not running",
            j.id, j.status
        )));
    }
    let worker = match by {
        Reporter::Internal(w) => w,
        Reporter::Api(a) => {
            if let Some(w) = j
                .worker
                .as_deref()
                .filter(|w| w.starts_with(BUILTIN_WORKER))
            {
                return Err(JobError::Conflict(format!(
                    "job {} is run by the server itself ({w}); it cannot be reported over the API",
                    j.id
                )));
            }
            if !a.any_claim && j.worker_key.as_deref() != Some(a.key_id) {
                return Err(JobError::Conflict(format!(
                    "job {} is held by another worker key",
                    j.id
                )));
            }
            a.worker
        }
    };
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

/// The lease extended (a stuck job comes back to running).
pub fn heartbeat(j: &Job, by: Reporter<'_>, lease_secs: u64, now: i64) -> Result<Job, JobError> {
    check_holder(j, by)?;
    let mut n = j.clone();
    n.status = Status::Running;
    n.lease_expires_at = Some(now + (lease_secs.max(1) as i64) * 1000);
    n.updated_at = now;
    Ok(n)
}

/// A successful attempt; `result` is JSON text.
pub fn completed(
    j: &Job,
    by: Reporter<'_>,
    result: Option<String>,
    now: i64,
) -> Result<Job, JobError> {
    check_holder(j, by)?;
    let mut n = j.clone();
    n.status = Status::Succeeded;
    n.result = result;
    n.finished_at = Some(now);
    n.updated_at = now;
    n.lease_expires_at = None;
    n.close_attempt(now, "succeeded", None);
    Ok(n)
}

/// A failed attempt reported by its holder; `retry: false` is a permanent failure:
/// `dead` at once, whatever attempts remain (Sidekiq's `retry: false`).
pub fn failed_by(
    j: &Job,
    by: Reporter<'_>,
    error: &str,
    retry: bool,
    now: i64,
    jitter: u64,
) -> Result<Job, JobError> {
    check_holder(j, by)?;
    Ok(failed(j, error, retry, now, jitter))
}

/// A failed attempt: back to `scheduled` with backoff (no worker holds it then: its
/// history keeps who ran it), or `dead` after the last one or when told not to retry.
fn failed(j: &Job, error: &str, retry: bool, now: i64, jitter: u64) -> Job {
    let mut n = j.clone();
    n.last_error = Some(error.to_string());
    n.lease_expires_at = None;
    n.updated_at = now;
    n.close_attempt(now, "failed", Some(error));
    if !retry || n.attempts >= n.max_attempts {
        n.status = Status::Dead;
        n.finished_at = Some(now);
    } else {
        n.status = Status::Scheduled;
        n.run_at = now + (backoff_secs(n.attempts, jitter) as i64) * 1000;
        n.release();
    }
    n
}

/// Back to `queued` now: a stuck, dead, cancelled or failed (scheduled after an error)
/// job. The attempt count is kept; a dead job gets one more attempt.
pub fn retried(j: &Job, now: i64) -> Result<Job, JobError> {
    // Stuck as `/api/jobs/stuck` shows it: the lease ran out, even if no tick has
    // marked it yet (the runbook retries straight from that list).
    let lease_expired = j.status == Status::Running && j.lease_expires_at.is_some_and(|l| l <= now);
    if !j.can_retry(now) {
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
    n.release();
    if n.attempts >= n.max_attempts {
        n.max_attempts = n.attempts + 1;
    }
    Ok(n)
}

/// Cancelled, unless it is finished. A worker still running it gets a conflict when it
/// reports.
pub fn cancelled(j: &Job, now: i64) -> Result<Job, JobError> {
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
}

/// A running job whose lease ran out is stuck.
pub fn marked_stuck(j: &Job, now: i64) -> Result<Job, JobError> {
    if j.status != Status::Running || j.lease_expires_at.is_none_or(|l| l > now) {
        return Err(JobError::Conflict("not expired".into()));
    }
    let mut n = j.clone();
    n.status = Status::Stuck;
    n.updated_at = now;
    Ok(n)
}

/// A job a built-in executor ran when the previous process died: stuck at once.
pub fn orphaned(j: &Job, now: i64) -> Result<Job, JobError> {
    abandoned(j, now, "the server stopped while it ran")
}

/// A running job whose worker is gone, whatever its lease says (`why` goes into its
/// attempt): stuck at once.
pub fn abandoned(j: &Job, now: i64, why: &str) -> Result<Job, JobError> {
    if j.status != Status::Running {
        return Err(JobError::Conflict("not running".into()));
    }
    let mut n = j.clone();
    n.status = Status::Stuck;
    n.updated_at = now;
    n.close_attempt(now, "stuck", Some(why));
    Ok(n)
}

/// A job stuck since `limit` (ms) or earlier is re-queued as a failed attempt: now, not
/// after a backoff (it already waited), or dead after its last attempt.
pub fn requeued(j: &Job, limit: i64, now: i64, jitter: u64) -> Result<Job, JobError> {
    if j.status != Status::Stuck || j.stuck_since() > limit {
        return Err(JobError::Conflict("not yet".into()));
    }
    let mut n = failed(j, "stuck: lease expired, re-queued", true, now, jitter);
    if n.status == Status::Scheduled {
        n.status = Status::Queued;
        n.run_at = now;
    }
    Ok(n)
}

/// The outcome a change stands for, if it is one (listeners count these).
pub fn outcome(old: &Job, new: &Job) -> Option<Outcome> {
    if old.status == new.status {
        return None;
    }
    match new.status {
        Status::Succeeded => Some(Outcome::Succeeded),
        Status::Dead => Some(Outcome::Dead),
        Status::Stuck => Some(Outcome::Stuck),
        Status::Cancelled => Some(Outcome::Cancelled),
        Status::Scheduled if matches!(old.status, Status::Running | Status::Stuck) => {
            Some(Outcome::Failed)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jobs::ApiReporter;

    fn queued() -> Job {
        new_job(
            NewJob {
                kind: "k".into(),
                max_attempts: Some(2),
                ..NewJob::default()
            },
            "id".into(),
            1_000,
        )
        .unwrap()
    }

    #[test]
    fn a_job_lives_claim_fail_fail_dead_retry() {
        let j = queued();
        assert_eq!(j.status, Status::Queued);
        let r = claimed(&j, "w", 10, 2_000);
        assert_eq!((r.status, r.attempts), (Status::Running, 1));
        assert_eq!(r.lease_expires_at, Some(12_000));
        assert!(completed(&r, Some("other").into(), None, 3_000).is_err());
        let f = failed_by(&r, Some("w").into(), "boom", true, 3_000, 0).unwrap();
        assert_eq!((f.worker.as_deref(), f.worker_key.as_deref()), (None, None));
        assert_eq!(f.history[0].worker, "w");
        assert_eq!(f.status, Status::Scheduled);
        assert_eq!(f.run_at, 3_000 + 16_000);
        assert_eq!(outcome(&r, &f), Some(Outcome::Failed));
        let r2 = claimed(&promoted(&f, 20_000).unwrap(), "w", 10, 20_000);
        let d = failed_by(&r2, Reporter::Internal(None), "boom", true, 21_000, 0).unwrap();
        assert_eq!(d.status, Status::Dead);
        assert_eq!(outcome(&r2, &d), Some(Outcome::Dead));
        let again = retried(&d, 22_000).unwrap();
        assert_eq!((again.status, again.max_attempts), (Status::Queued, 3));
        assert!(retried(&again, 22_000).is_err());
    }

    #[test]
    fn leases_run_out_into_stuck_then_requeue() {
        let r = claimed(&queued(), "w", 10, 0);
        assert!(marked_stuck(&r, 9_999).is_err());
        let s = marked_stuck(&r, 10_000).unwrap();
        assert_eq!(outcome(&r, &s), Some(Outcome::Stuck));
        assert!(requeued(&s, 9_999, 20_000, 0).is_err());
        let q = requeued(&s, 10_000, 20_000, 0).unwrap();
        assert_eq!((q.status, q.run_at), (Status::Queued, 20_000));
        assert_eq!(q.worker, None, "a re-queued job has no current worker");
        assert!(cancelled(&q, 21_000).is_ok());
        let done = completed(&r, Some("w").into(), None, 5).unwrap();
        assert!(cancelled(&done, 6).is_err());
    }

    #[test]
    fn a_claim_belongs_to_its_key_and_builtin_jobs_to_the_server() {
        let api = |key_id, worker, any_claim| {
            Reporter::Api(ApiReporter {
                key_id,
                worker,
                any_claim,
            })
        };
        let r = claimed_by(&queued(), "w1", Some("k1"), 10, 0);
        assert_eq!(r.worker_key.as_deref(), Some("k1"));
        // Another worker key, with or without the holder's name: refused.
        assert!(completed(&r, api("k2", None, false), None, 1).is_err());
        assert!(completed(&r, api("k2", Some("w1"), false), None, 1).is_err());
        assert!(heartbeat(&r, api("k2", None, false), 10, 1).is_err());
        assert!(failed_by(&r, api("k2", None, false), "x", true, 1, 0).is_err());
        // The holder's key, with its name or none; not under another name.
        assert!(completed(&r, api("k1", Some("w2"), false), None, 1).is_err());
        assert!(completed(&r, api("k1", None, false), None, 1).is_ok());
        assert!(completed(&r, api("k1", Some("w1"), false), None, 1).is_ok());
        // An operator's or admin's key may act on it.
        assert!(completed(&r, api("k9", None, true), None, 1).is_ok());
        // A claim from before keys were kept: no worker key may report on it.
        let mut old = r.clone();
        old.worker_key = None;
        assert!(completed(&old, api("k1", None, false), None, 1).is_err());
        // The built-in executor's jobs: never over the API, even for an admin.
        let b = claimed(&queued(), "builtin:executor", 10, 0);
        let err = completed(&b, api("k9", None, true), None, 1).unwrap_err();
        assert!(err.to_string().contains("server itself"), "{err}");
        assert!(completed(&b, Reporter::Internal(None), None, 1).is_ok());
    }

    #[test]
    fn retry_false_is_dead_at_once() {
        let r = claimed(&queued(), "w", 10, 0);
        assert_eq!(r.max_attempts, 2);
        let d = failed_by(&r, Some("w").into(), "bad input", false, 1, 0).unwrap();
        assert_eq!((d.status, d.attempts), (Status::Dead, 1));
        assert_eq!(outcome(&r, &d), Some(Outcome::Dead));
    }
}
