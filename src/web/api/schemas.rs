//! Shapes of answers shared by several resources, for the OpenAPI document. The
//! handlers build these bodies as JSON; schemathesis (`.ci/schemathesis.sh`) checks
//! every answer against them, so a drift fails CI.

use serde_json::Value;
use utoipa::ToSchema;

/// A success with fields of its own besides `ok`.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct OkBody {
    /// Always `true`.
    ok: bool,
}

/// A job as the API shows it. Anyone sees the first fields; viewers and up see them all,
/// and so does a worker key for a job its claim holds.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct JobView {
    id: String,
    queue: String,
    kind: String,
    /// scheduled, queued, running, stuck, succeeded, dead or cancelled.
    status: String,
    priority: i32,
    attempts: u32,
    max_attempts: u32,
    #[schema(format = DateTime)]
    run_at: String,
    #[schema(format = DateTime)]
    created_at: String,
    #[schema(format = DateTime)]
    started_at: Option<String>,
    #[schema(format = DateTime)]
    finished_at: Option<String>,
    #[schema(format = DateTime)]
    lease_expires_at: Option<String>,
    /// The job's input (key holders only).
    #[schema(required = false)]
    payload: Option<Value>,
    /// What the job returned (key holders only).
    #[schema(required = false)]
    result: Option<Value>,
    #[schema(required = false)]
    last_error: Option<String>,
    #[schema(required = false)]
    worker: Option<String>,
    /// The key id whose claim holds the current lease (none for the server's own).
    #[schema(required = false)]
    worker_key: Option<String>,
    #[schema(required = false)]
    timeout_secs: Option<u64>,
    #[schema(required = false)]
    unique_key: Option<String>,
    #[schema(required = false)]
    schedule: Option<String>,
    #[schema(format = DateTime, required = false)]
    updated_at: Option<String>,
    /// One entry per attempt (key holders only).
    #[schema(required = false)]
    history: Option<Vec<Value>>,
}

/// One job.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct JobAnswer {
    ok: bool,
    job: JobView,
}

/// A page of jobs, newest first; `next_cursor` asks for the next page.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct JobPage {
    ok: bool,
    count: usize,
    jobs: Vec<JobView>,
    next_cursor: Option<String>,
}

/// One component of the status summary: its status and what explains it.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct ComponentView {
    #[schema(pattern = "^(healthy|degraded|unhealthy)$")]
    status: String,
}

/// `GET /api/status/summary`.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct StatusSummary {
    ok: bool,
    /// The worst component's status.
    #[schema(pattern = "^(healthy|degraded|unhealthy)$")]
    status: String,
    version: String,
    commit: String,
    built_at: String,
    #[schema(format = DateTime)]
    started_at: String,
    uptime_secs: u64,
    /// The built-in feature flags that are off.
    flags_off: Vec<String>,
    /// Only during a maintenance window: `active`, `until`, `reason`.
    #[schema(required = false)]
    maintenance: Option<Value>,
    /// `store`, `disk`, `supervisor`, `audit`, `slo`, `alerts`, `scheduler`, `jobs`.
    components: std::collections::BTreeMap<String, ComponentView>,
}

/// `GET /api/scheduler/status`, and the answer to pause, resume and restart.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct SchedulerStatus {
    ok: bool,
    #[schema(pattern = "^(running|paused|stopped)$")]
    state: String,
    #[schema(format = DateTime)]
    last_tick: Option<String>,
    #[schema(format = DateTime)]
    next_tick: Option<String>,
    tick_interval_secs: u64,
    ticks: u64,
    queued: u64,
    running: u64,
    scheduled: u64,
    stuck: u64,
    dead: u64,
    executor_slots_free: u64,
    /// Set by restart.
    #[schema(required = false)]
    restarted: Option<bool>,
}
