//! The job record, its status, and how it shows in JSON.

use chrono::{DateTime, TimeZone, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::clock::rfc3339;
use crate::store::Record;
use crate::store::codec::CodecError;

/// Where a job is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Waiting for `run_at` (a new delayed job, or a failed attempt backing off).
    Scheduled,
    /// Ready: the next claim may take it.
    Queued,
    /// Claimed by a worker holding a lease.
    Running,
    /// Was running, but its lease ran out (dead worker, server crash).
    Stuck,
    Succeeded,
    /// Failed `max_attempts` times.
    Dead,
    Cancelled,
}

impl Status {
    pub const ALL: [Status; 7] = [
        Status::Scheduled,
        Status::Queued,
        Status::Running,
        Status::Stuck,
        Status::Succeeded,
        Status::Dead,
        Status::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Scheduled => "scheduled",
            Status::Queued => "queued",
            Status::Running => "running",
            Status::Stuck => "stuck",
            Status::Succeeded => "succeeded",
            Status::Dead => "dead",
            Status::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<Status> {
        Status::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// Nothing more will happen to it unless someone retries it.
    pub fn is_finished(self) -> bool {
        matches!(self, Status::Succeeded | Status::Dead | Status::Cancelled)
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One attempt at running a job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Attempt {
    pub attempt: u32,
    pub worker: String,
    pub started_at: i64,
    pub finished_at: Option<i64>,
    /// `running`, `succeeded`, `failed`, `stuck`, `cancelled`, `retried`.
    pub outcome: String,
    pub error: Option<String>,
}

/// A stored job. Times are milliseconds since the Unix epoch; JSON payload and result
/// are kept as JSON text (bincode cannot carry `serde_json::Value`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Job {
    pub id: String,
    pub queue: String,
    pub kind: String,
    pub payload: String,
    pub priority: i32,
    pub status: Status,
    pub attempts: u32,
    pub max_attempts: u32,
    pub run_at: i64,
    pub created_at: i64,
    pub updated_at: i64,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    pub lease_expires_at: Option<i64>,
    pub timeout_secs: u64,
    pub worker: Option<String>,
    pub last_error: Option<String>,
    pub result: Option<String>,
    pub unique_key: Option<String>,
    /// The cron schedule that enqueued it, if any.
    pub schedule: Option<String>,
    pub history: Vec<Attempt>,
    /// The id (never the key) of the API key whose claim holds the current lease: only
    /// that key may report on it. `None` for the built-in executors, and for jobs claimed
    /// before version 2 (their reports are refused, so they come back as stuck).
    pub worker_key: Option<String>,
}

impl Record for Job {
    const NAME: &'static str = "job";
    /// 2: `worker_key` appended.
    const VERSION: u8 = 2;

    fn migrate(version: u8, body: &[u8]) -> Result<Self, CodecError> {
        match version {
            // Version 1 is version 2 without its last field. bincode writes fields in
            // order and `None` as one zero byte, so the old body plus that byte is the
            // new layout with no key.
            1 => {
                let mut v2 = Vec::with_capacity(body.len() + 1);
                v2.extend_from_slice(body);
                v2.push(0);
                crate::store::codec::decode_body(Self::NAME, 1, &v2)
            }
            found => Err(CodecError::UnknownVersion {
                record: Self::NAME,
                found,
                expected: Self::VERSION,
            }),
        }
    }
}

/// At most this many attempts are kept in a job's history.
pub const HISTORY_LIMIT: usize = 50;

pub fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

pub fn time(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms)
        .single()
        .unwrap_or(DateTime::<Utc>::MIN_UTC)
}

fn opt_time(ms: Option<i64>) -> Value {
    ms.map(|m| Value::String(rfc3339(time(m))))
        .unwrap_or(Value::Null)
}

fn json_text(s: &str) -> Value {
    serde_json::from_str(s).unwrap_or_else(|_| Value::String(s.to_string()))
}

impl Job {
    /// The fields anyone may see (the public `GET /api/job/{id}`).
    pub fn public_json(&self) -> Value {
        json!({
            "id": self.id,
            "queue": self.queue,
            "kind": self.kind,
            "status": self.status,
            "priority": self.priority,
            "attempts": self.attempts,
            "max_attempts": self.max_attempts,
            "run_at": rfc3339(time(self.run_at)),
            "created_at": rfc3339(time(self.created_at)),
            "started_at": opt_time(self.started_at),
            "finished_at": opt_time(self.finished_at),
            "lease_expires_at": opt_time(self.lease_expires_at),
        })
    }

    /// Everything, for key holders and workers.
    pub fn full_json(&self) -> Value {
        let mut v = self.public_json();
        if let Value::Object(m) = &mut v {
            m.insert("payload".into(), json_text(&self.payload));
            m.insert(
                "result".into(),
                self.result.as_deref().map(json_text).unwrap_or(Value::Null),
            );
            m.insert("last_error".into(), json!(self.last_error));
            m.insert("worker".into(), json!(self.worker));
            m.insert("worker_key".into(), json!(self.worker_key));
            m.insert("timeout_secs".into(), json!(self.timeout_secs));
            m.insert("unique_key".into(), json!(self.unique_key));
            m.insert("schedule".into(), json!(self.schedule));
            m.insert(
                "updated_at".into(),
                Value::String(rfc3339(time(self.updated_at))),
            );
            let history: Vec<Value> = self
                .history
                .iter()
                .map(|a| {
                    json!({
                        "attempt": a.attempt,
                        "worker": a.worker,
                        "started_at": rfc3339(time(a.started_at)),
                        "finished_at": opt_time(a.finished_at),
                        "outcome": a.outcome,
                        "error": a.error,
                    })
                })
                .collect();
            m.insert("history".into(), Value::Array(history));
        }
        v
    }

    /// Does the API key `key_id` hold its current claim? (A worker key then sees the
    /// whole job, as its claim showed it.)
    pub fn held_by_key(&self, key_id: &str) -> bool {
        matches!(self.status, Status::Running | Status::Stuck)
            && self.worker_key.as_deref() == Some(key_id)
    }

    /// May an operator retry it now (`now` in ms)? Stuck (also a running job whose lease
    /// already ran out), dead, cancelled, or failed and waiting for its next attempt.
    pub fn can_retry(&self, now: i64) -> bool {
        let lease_expired =
            self.status == Status::Running && self.lease_expires_at.is_some_and(|l| l <= now);
        matches!(
            self.status,
            Status::Stuck | Status::Dead | Status::Cancelled
        ) || lease_expired
            || (self.status == Status::Scheduled && self.last_error.is_some())
    }

    /// The job as readers see it at `now` (ms): a running job whose lease ran out is
    /// stuck, as `/api/jobs/stuck` lists it, before the next tick stores that.
    pub fn seen_at(mut self, now: i64) -> Job {
        if self.status == Status::Running && self.lease_expires_at.is_some_and(|l| l <= now) {
            self.status = Status::Stuck;
        }
        self
    }

    /// When its lease ran out (ms). A job stuck by a restart counts from when it was
    /// marked, since its lease may still lie in the future.
    pub fn stuck_since(&self) -> i64 {
        let lease = self.lease_expires_at.unwrap_or(self.updated_at);
        match self.status {
            Status::Stuck => lease.min(self.updated_at),
            _ => lease,
        }
    }

    /// Close the current attempt in the history with `outcome`.
    pub(crate) fn close_attempt(&mut self, now: i64, outcome: &str, error: Option<&str>) {
        if let Some(a) = self.history.last_mut()
            && a.finished_at.is_none()
        {
            a.finished_at = Some(now);
            a.outcome = outcome.to_string();
            a.error = error.map(str::to_string);
        }
    }

    /// No worker holds it any more (re-queued): its history keeps who ran it.
    pub(crate) fn release(&mut self) {
        self.worker = None;
        self.worker_key = None;
    }

    pub(crate) fn push_attempt(&mut self, worker: &str, now: i64) {
        self.history.push(Attempt {
            attempt: self.attempts,
            worker: worker.to_string(),
            started_at: now,
            finished_at: None,
            outcome: "running".into(),
            error: None,
        });
        if self.history.len() > HISTORY_LIMIT {
            let extra = self.history.len() - HISTORY_LIMIT;
            self.history.drain(..extra);
        }
    }
}

/// Seconds to wait before the next attempt after `attempts` failed ones: Sidekiq's and
/// Faktory's curve `attempts^4 + 15 + jitter*(attempts+1)`, `jitter` in `0..30`.
pub fn backoff_secs(attempts: u32, jitter: u64) -> u64 {
    let a = u64::from(attempts.min(1000));
    a.saturating_pow(4)
        .saturating_add(15)
        .saturating_add(jitter.saturating_mul(a + 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_curve() {
        assert_eq!(backoff_secs(1, 0), 16);
        assert_eq!(backoff_secs(2, 0), 31);
        assert_eq!(backoff_secs(2, 10), 16 + 15 + 30);
        assert_eq!(backoff_secs(25, 29), 390_625 + 15 + 29 * 26);
    }

    #[test]
    fn status_names_round_trip() {
        for s in Status::ALL {
            assert_eq!(Status::parse(s.as_str()), Some(s));
        }
        assert_eq!(Status::parse("nope"), None);
    }

    #[test]
    fn job_round_trips_through_the_codec() {
        let j = Job {
            id: "x".into(),
            queue: "q".into(),
            kind: "k".into(),
            payload: r#"{"a":[1,2]}"#.into(),
            priority: -3,
            status: Status::Queued,
            attempts: 0,
            max_attempts: 25,
            run_at: 1,
            created_at: 1,
            updated_at: 1,
            started_at: None,
            finished_at: Some(5),
            lease_expires_at: None,
            timeout_secs: 30,
            worker: None,
            last_error: None,
            result: None,
            unique_key: Some("u".into()),
            schedule: None,
            history: vec![],
            worker_key: Some("k1".into()),
        };
        let bytes = crate::store::codec::encode(&j).unwrap();
        assert_eq!(crate::store::codec::decode::<Job>(&bytes).unwrap(), j);
    }

    /// A version 1 record (written before `worker_key`) reads as a job with no key.
    #[test]
    fn version_1_jobs_decode_without_a_key() {
        #[derive(Serialize)]
        struct V1<'a> {
            id: &'a str,
            queue: &'a str,
            kind: &'a str,
            payload: &'a str,
            priority: i32,
            status: Status,
            attempts: u32,
            max_attempts: u32,
            run_at: i64,
            created_at: i64,
            updated_at: i64,
            started_at: Option<i64>,
            finished_at: Option<i64>,
            lease_expires_at: Option<i64>,
            timeout_secs: u64,
            worker: Option<&'a str>,
            last_error: Option<&'a str>,
            result: Option<&'a str>,
            unique_key: Option<&'a str>,
            schedule: Option<&'a str>,
            history: Vec<Attempt>,
        }
        let attempt = Attempt {
            attempt: 1,
            worker: "w".into(),
            started_at: 2,
            finished_at: None,
            outcome: "running".into(),
            error: None,
        };
        let old = V1 {
            id: "x",
            queue: "q",
            kind: "k",
            payload: "{}",
            priority: 1,
            status: Status::Running,
            attempts: 1,
            max_attempts: 3,
            run_at: 1,
            created_at: 1,
            updated_at: 2,
            started_at: Some(2),
            finished_at: None,
            lease_expires_at: Some(9),
            timeout_secs: 30,
            worker: Some("w"),
            last_error: Some("e"),
            result: None,
            unique_key: None,
            schedule: Some("s"),
            history: vec![attempt.clone()],
        };
        let mut bytes = vec![1u8];
        bytes.extend(bincode::serde::encode_to_vec(&old, bincode::config::standard()).unwrap());
        let j: Job = crate::store::codec::decode(&bytes).unwrap();
        assert_eq!(
            (j.worker.as_deref(), j.worker_key, j.history),
            (Some("w"), None, vec![attempt])
        );
        assert_eq!(
            (j.schedule.as_deref(), j.lease_expires_at),
            (Some("s"), Some(9))
        );
    }
}
