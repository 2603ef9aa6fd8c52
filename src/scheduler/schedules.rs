//! Cron schedules: kept in the `schedules` tree, declared through the API or in
//! `echopilot.toml` `[[schedules]]`, each enqueuing a job when it comes due. A schedule
//! that missed runs while the server was down fires once, not once per missed run.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::cron::CronExpr;
use crate::clock::rfc3339;
use crate::config::ScheduleSpec;
use crate::jobs::model::{ms, time};
use crate::jobs::{JobError, Jobs, NewJob, check_name};
use std::sync::Arc;

use super::store::ScheduleStore;
use crate::store::{Commit, Record, StoreError};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Schedule {
    pub name: String,
    pub cron: String,
    pub timezone: String,
    pub queue: String,
    pub kind: String,
    /// JSON text.
    pub payload: String,
    /// From its definition (`enabled` in the API or the file).
    pub enabled: bool,
    /// Paused by an operator.
    pub paused: bool,
    /// `api` or `config`.
    pub source: String,
    pub created_at: i64,
    pub last_run_at: Option<i64>,
    pub last_job_id: Option<String>,
    pub runs: u64,
}

impl Record for Schedule {
    const NAME: &'static str = "schedule";
    const VERSION: u8 = 1;
}

impl Schedule {
    pub fn active(&self) -> bool {
        self.enabled && !self.paused
    }

    pub fn expr(&self) -> Result<CronExpr, String> {
        CronExpr::parse(&self.cron, Some(&self.timezone))
    }

    /// When it fires next, counting from its last run (or its creation).
    pub fn next_due(&self) -> Option<DateTime<Utc>> {
        let base = time(self.last_run_at.unwrap_or(self.created_at));
        self.expr().ok()?.next_after(base)
    }

    pub fn to_json(&self, now: DateTime<Utc>) -> Value {
        let next: Vec<String> = if self.active() {
            self.expr()
                .map(|e| {
                    let from = match self.next_due() {
                        // Overdue: it fires at the next check, then on the normal times.
                        Some(d) if d <= now => {
                            let mut v = vec![rfc3339(now)];
                            v.extend(e.upcoming(now, 2).into_iter().map(rfc3339));
                            return v;
                        }
                        _ => now,
                    };
                    e.upcoming(from, 3).into_iter().map(rfc3339).collect()
                })
                .unwrap_or_default()
        } else {
            Vec::new()
        };
        json!({
            "name": self.name,
            "cron": self.cron,
            "timezone": self.timezone,
            "queue": self.queue,
            "kind": self.kind,
            "payload": serde_json::from_str::<Value>(&self.payload).unwrap_or(Value::Null),
            "enabled": self.enabled,
            "paused": self.paused,
            "state": if self.active() { "active" } else if self.paused { "paused" } else { "disabled" },
            "source": self.source,
            "created_at": rfc3339(time(self.created_at)),
            "last_run_at": self.last_run_at.map(|t| rfc3339(time(t))),
            "last_job_id": self.last_job_id,
            "runs": self.runs,
            "next_runs": next,
        })
    }
}

/// What the API or the file asks for, before checks.
#[derive(Debug, Clone, Default)]
pub struct NewSchedule {
    pub name: String,
    pub cron: String,
    pub timezone: Option<String>,
    pub queue: Option<String>,
    pub kind: String,
    /// JSON text.
    pub payload: Option<String>,
    pub enabled: Option<bool>,
}

/// A schedule that came due: its name and the job id, or why it could not enqueue.
pub type Fired = (String, Result<String, String>);

#[derive(Debug, thiserror::Error)]
pub enum ScheduleError {
    #[error("no such schedule: {0}")]
    NotFound(String),
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Conflict(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Job(#[from] JobError),
}

impl crate::error::Classify for ScheduleError {
    fn kind(&self) -> crate::error::ErrorKind {
        use crate::error::ErrorKind;
        match self {
            ScheduleError::NotFound(_) => ErrorKind::NotFound,
            ScheduleError::Invalid(_) => ErrorKind::Invalid,
            ScheduleError::Conflict(_) => ErrorKind::Conflict,
            ScheduleError::Store(s) => s.kind(),
            ScheduleError::Job(j) => j.kind(),
        }
    }
    fn public_message(&self) -> String {
        match self {
            ScheduleError::Store(s) => s.public_message(),
            ScheduleError::Job(j) => j.public_message(),
            e => e.to_string(),
        }
    }
}

/// Cheap to clone.
#[derive(Clone)]
pub struct Schedules {
    store: Arc<dyn ScheduleStore>,
}

fn check_schedule_name(name: &str) -> Result<(), ScheduleError> {
    check_name("name", name).map_err(|e| ScheduleError::Invalid(e.to_string()))
}

impl Schedules {
    pub fn new(store: Arc<dyn ScheduleStore>) -> Schedules {
        Schedules { store }
    }

    /// Check a definition and build the record (not stored).
    pub fn build(
        new: NewSchedule,
        source: &str,
        now: DateTime<Utc>,
    ) -> Result<Schedule, ScheduleError> {
        check_schedule_name(&new.name)?;
        let timezone = new.timezone.unwrap_or_else(|| "UTC".into());
        CronExpr::parse(&new.cron, Some(&timezone)).map_err(ScheduleError::Invalid)?;
        let queue = new
            .queue
            .unwrap_or_else(|| crate::jobs::DEFAULT_QUEUE.into());
        check_name("queue", &queue).map_err(|e| ScheduleError::Invalid(e.to_string()))?;
        check_name("kind", &new.kind).map_err(|e| ScheduleError::Invalid(e.to_string()))?;
        Ok(Schedule {
            name: new.name,
            cron: new.cron,
            timezone,
            queue,
            kind: new.kind,
            payload: new.payload.unwrap_or_else(|| "{}".into()),
            enabled: new.enabled.unwrap_or(true),
            paused: false,
            source: source.into(),
            created_at: ms(now),
            last_run_at: None,
            last_job_id: None,
            runs: 0,
        })
    }

    /// Install the schedules of `echopilot.toml`, keeping each one's last run and
    /// pause. A bad one fails start-up with its name.
    pub fn load_config(
        &self,
        specs: &[ScheduleSpec],
        now: DateTime<Utc>,
    ) -> Result<Commit, ScheduleError> {
        self.load(specs, "config", now)
    }

    /// Install the server's own schedules (the nightly backup), as [`Self::load_config`].
    pub fn load_builtin(
        &self,
        specs: &[ScheduleSpec],
        now: DateTime<Utc>,
    ) -> Result<Commit, ScheduleError> {
        self.load(specs, "builtin", now)
    }

    fn load(
        &self,
        specs: &[ScheduleSpec],
        source: &str,
        now: DateTime<Utc>,
    ) -> Result<Commit, ScheduleError> {
        let mut commit = Commit::done();
        for spec in specs {
            let payload = match &spec.payload {
                None => None,
                Some(v) => Some(
                    serde_json::to_string(v)
                        .map_err(|e| ScheduleError::Invalid(format!("payload: {e}")))?,
                ),
            };
            let new = NewSchedule {
                name: spec.name.clone(),
                cron: spec.cron.clone(),
                timezone: spec.timezone.clone(),
                queue: spec.queue.clone(),
                kind: spec.kind.clone(),
                payload,
                enabled: Some(spec.enabled),
            };
            let mut s = Self::build(new, source, now).map_err(|e| {
                ScheduleError::Invalid(format!("{source} schedule {:?}: {e}", spec.name))
            })?;
            if let Some(old) = self.store.get(&s.name)? {
                s.created_at = old.created_at;
                s.last_run_at = old.last_run_at;
                s.last_job_id = old.last_job_id;
                s.runs = old.runs;
                s.paused = old.paused;
            }
            commit = commit.and(self.store.put(&s)?);
        }
        Ok(commit)
    }

    pub fn list(&self) -> Result<Vec<Schedule>, ScheduleError> {
        Ok(self.store.list()?)
    }

    pub fn get(&self, name: &str) -> Result<Schedule, ScheduleError> {
        self.store
            .get(name)?
            .ok_or_else(|| ScheduleError::NotFound(name.to_string()))
    }

    pub fn create(&self, s: &Schedule) -> Result<Commit, ScheduleError> {
        self.store
            .insert_new(s)?
            .ok_or_else(|| ScheduleError::Conflict(format!("schedule {:?} already exists", s.name)))
    }

    pub fn set_paused(
        &self,
        name: &str,
        paused: bool,
    ) -> Result<(Schedule, Commit), ScheduleError> {
        self.store
            .update(name, &mut |s| s.paused = paused)?
            .ok_or_else(|| ScheduleError::NotFound(name.to_string()))
    }

    pub fn delete(&self, name: &str) -> Result<(Schedule, Commit), ScheduleError> {
        self.store
            .remove(name)?
            .ok_or_else(|| ScheduleError::NotFound(name.to_string()))
    }

    /// Enqueue the schedule's job now and record the run.
    pub fn run_now(
        &self,
        jobs: &Jobs,
        name: &str,
        now: DateTime<Utc>,
    ) -> Result<(crate::jobs::Job, Commit), ScheduleError> {
        let s = self.get(name)?;
        let (job, enqueued) = jobs.enqueue(NewJob {
            queue: Some(s.queue.clone()),
            kind: s.kind.clone(),
            payload: Some(s.payload.clone()),
            schedule: Some(s.name.clone()),
            ..NewJob::default()
        })?;
        let id = job.job.id.clone();
        let recorded = self.store.update(name, &mut |s| {
            s.last_run_at = Some(ms(now));
            s.last_job_id = Some(id.clone());
            s.runs += 1;
        })?;
        let commit = match recorded {
            Some((_, c)) => enqueued.and(c),
            None => enqueued,
        };
        Ok((job.job, commit))
    }

    /// Fire every active schedule that is due at `now`, once each however many runs it
    /// missed. Returns (name, job id) per firing; errors are per schedule.
    pub fn fire_due(
        &self,
        jobs: &Jobs,
        now: DateTime<Utc>,
    ) -> Result<(Vec<Fired>, Commit), ScheduleError> {
        let mut fired = Vec::new();
        let mut commit = Commit::done();
        for s in self.list()? {
            if !s.active() {
                continue;
            }
            match s.next_due() {
                Some(due) if due <= now => {
                    let r = match self.run_now(jobs, &s.name, now) {
                        Ok((j, c)) => {
                            commit = commit.and(c);
                            Ok(j.id)
                        }
                        Err(e) => Err(e.to_string()),
                    };
                    fired.push((s.name.clone(), r));
                }
                _ => {}
            }
        }
        Ok((fired, commit))
    }
}
