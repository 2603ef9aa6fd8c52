//! What the queue's callers hand in and get back: requests, filters, outcomes, errors,
//! and the limits on names and sizes.

use chrono::{DateTime, Utc};

use super::model::{Job, Status, ms};
use crate::store::StoreError;

/// Prefix of the worker name the built-in executors claim with. At start-up their
/// running jobs are stuck at once: the process that ran them is gone.
pub const BUILTIN_WORKER: &str = "builtin:";

pub const DEFAULT_QUEUE: &str = "default";
pub const DEFAULT_MAX_ATTEMPTS: u32 = 25;
pub const DEFAULT_TIMEOUT_SECS: u64 = 300;
pub const DEFAULT_LEASE_SECS: u64 = 300;
pub const MAX_CLAIM: usize = 100;
/// The most jobs one batch enqueue stores.
pub const MAX_BATCH: usize = 1000;

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

impl crate::error::Classify for JobError {
    fn kind(&self) -> crate::error::ErrorKind {
        use crate::error::ErrorKind;
        match self {
            JobError::NotFound(_) => ErrorKind::NotFound,
            JobError::Invalid(_) => ErrorKind::Invalid,
            JobError::Conflict(_) => ErrorKind::Conflict,
            JobError::Store(s) => s.kind(),
        }
    }
    fn public_message(&self) -> String {
        match self {
            JobError::Store(s) => s.public_message(),
            e => e.to_string(),
        }
    }
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
    /// A job id chosen by the caller (a UUID): enqueuing the same id again is a
    /// duplicate, whatever became of the job, so a caller that recorded the id first can
    /// retry the enqueue after a crash without running the job twice.
    pub id: Option<String>,
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

/// Who reports on a claimed job (heartbeat, complete, fail).
#[derive(Debug, Clone, Copy)]
pub enum Reporter<'a> {
    /// Code inside the server (a built-in executor, the reconciler), checked by the
    /// worker name it claimed with when it gives one.
    Internal(Option<&'a str>),
    /// A caller of the worker API.
    Api(ApiReporter<'a>),
}

/// One entry of a worker's batch of reports ([`Jobs::report_batch`](super::Jobs::report_batch)).
#[derive(Debug, Clone)]
pub enum Report {
    /// A successful attempt; the result is JSON text.
    Complete(Option<String>),
    /// A failed attempt; `retry: false` makes it permanent.
    Fail { error: String, retry: bool },
}

/// A worker-API caller, as the queue checks it against the claim.
#[derive(Debug, Clone, Copy)]
pub struct ApiReporter<'a> {
    /// The caller's key id: a worker key may report only on its own claims.
    pub key_id: &'a str,
    /// The worker name the caller gave, checked against the claim's when given.
    pub worker: Option<&'a str>,
    /// Operators and admins may act on any claim (the design's role table).
    pub any_claim: bool,
}

impl<'a> From<Option<&'a str>> for Reporter<'a> {
    fn from(worker: Option<&'a str>) -> Self {
        Reporter::Internal(worker)
    }
}

impl<'a> From<Option<&'a String>> for Reporter<'a> {
    fn from(worker: Option<&'a String>) -> Self {
        Reporter::Internal(worker.map(String::as_str))
    }
}

impl<'a> From<ApiReporter<'a>> for Reporter<'a> {
    fn from(r: ApiReporter<'a>) -> Self {
        Reporter::Api(r)
    }
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
    /// Jobs in one status, nothing else asked.
    pub fn status(status: Status) -> Filter {
        Filter {
            status: Some(status),
            ..Filter::default()
        }
    }

    /// Whether `j` passes (a SQL backend says the same in its `WHERE`).
    pub fn matches(&self, j: &Job) -> bool {
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

/// Queue and kind names: 1–64 of `A-Z a-z 0-9 . _ : -` (they are parts of index keys).
pub fn check_name(field: &str, v: &str) -> Result<(), JobError> {
    if super::ids::is_name(v) {
        Ok(())
    } else {
        Err(JobError::Invalid(format!(
            "{field}: {}",
            super::ids::NAME_RULE
        )))
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
    fn names_are_checked() {
        assert!(check_name("queue", "default").is_ok());
        assert!(check_name("queue", "a.b:c-d_e").is_ok());
        assert!(check_name("queue", "").is_err());
        assert!(check_name("kind", "with space").is_err());
        assert!(check_name("kind", "nul\0").is_err());
    }

    #[test]
    fn truncate_and_tail_respect_chars() {
        assert_eq!(truncate("héllo", 2), "h");
        assert_eq!(tail("héllo", 4), "llo");
        assert_eq!(tail("abc", 10), "abc");
    }
}
