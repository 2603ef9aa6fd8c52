//! The worker protocol of the job queue: claim, heartbeat, complete, fail, and batch
//! complete. Workers in any language call these with a `worker` key (operators and
//! admins may too); each call is one audit event (a batch names its counts). A claim
//! belongs to the key that made it: another worker key's report is a 409; an operator
//! or admin may act on any claim (audited `as:<role>`); the server's own jobs are never
//! reported here.

use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::time::Instant;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::app::AppState;
use crate::auth::{Caller, Need};
use crate::jobs::ids::QueueName;
use crate::jobs::{
    ApiReporter, ClaimRequest, DEFAULT_LEASE_SECS, Job, JobError, MAX_CLAIM, Report,
};
use crate::store::Commit;
use crate::web::access::Origin;
use crate::web::api::jobs::{View, answer_job, change};
use crate::web::api::schemas::{JobAnswer, OkBody};
use crate::web::audit::audited;
use crate::web::auth::Worker;
use crate::web::error::{AppError, ErrorBody, Result};
use crate::web::extract::{AppJson, AppPath, MaybeJson, in_range};

/// The worker routes (the worker rate limit).
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(claim))
        .routes(routes!(complete_batch))
        .routes(routes!(heartbeat))
        .routes(routes!(complete))
        .routes(routes!(fail))
}

/// One name or a list of names (`"queues": "mail"` or `"queues": ["mail", "sms"]`).
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum OneOrMany {
    One(Name),
    Many(Vec<Name>),
}

/// A queue or kind name (see `jobs::ids`).
#[derive(Debug, Clone, Deserialize)]
#[serde(transparent)]
pub struct Name(QueueName);

impl utoipa::PartialSchema for Name {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .pattern(Some(r"^[A-Za-z0-9._:-]{1,64}$"))
            .into()
    }
}

impl ToSchema for Name {}

impl OneOrMany {
    fn into_strings(v: Option<OneOrMany>) -> Vec<String> {
        match v {
            None => Vec::new(),
            Some(OneOrMany::One(n)) => vec![n.0.into_string()],
            Some(OneOrMany::Many(ns)) => ns.into_iter().map(|n| n.0.into_string()).collect(),
        }
    }
}

/// The body of `POST /api/jobs/claim`; empty claims one job of any queue and kind.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Claim {
    /// Only these queues (default: any).
    queues: Option<OneOrMany>,
    /// Only these kinds (default: any).
    kinds: Option<OneOrMany>,
    /// Who holds the lease (default `key:<key id>`); not `builtin:…`.
    #[schema(min_length = 1, max_length = 100)]
    worker: Option<String>,
    /// Default 300.
    #[schema(minimum = 1, maximum = 86_400)]
    lease_secs: Option<u64>,
    /// Claim up to this many; the answer is then a list, `jobs`.
    #[schema(minimum = 1, maximum = 100)]
    count: Option<usize>,
    /// When none is ready, wait up to this long for one (long poll): answered as soon
    /// as a job is ready, at the latest after this (within the request timeout), and at
    /// once when the server stops. Default 0: answer at once.
    #[schema(minimum = 0, maximum = 20)]
    wait_secs: Option<u64>,
}

/// The longest a claim may wait for a job.
pub const MAX_WAIT_SECS: u64 = 20;

fn lease(secs: Option<u64>) -> Result<u64> {
    secs.map(|n| in_range("lease_secs", n, 1, 86_400))
        .transpose()
        .map(|s| s.unwrap_or(DEFAULT_LEASE_SECS))
}

/// `POST /api/jobs/claim` (worker): `{"queues", "kinds", "worker", "lease_secs",
/// "count"}` → `{"job": ...}`, or `{"jobs": [...]}` when `count` is given. Paused: none.
#[utoipa::path(post, path = "/api/jobs/claim", tag = "workers",
    request_body(content = Option<Claim>, description = "optional"),
    responses((status = 200, description = "`job` (or `jobs` with `count`); null or empty when none is ready", body = OkBody)),
    extensions(("x-required-role" = json!("worker"))))]
pub async fn claim(
    State(state): State<AppState>,
    Worker(caller): Worker,
    origin: Origin,
    MaybeJson(body): MaybeJson<Claim>,
) -> Response {
    let worker = body
        .worker
        .clone()
        .unwrap_or_else(|| format!("key:{}", caller.key_id));
    let listed = body.count.is_some();
    let claimed = claim_jobs(&state, &caller, &worker, body).await;
    let target = match &claimed {
        Ok((jobs, _)) if jobs.len() == 1 => format!("job:{} worker:{worker}", jobs[0].id),
        Ok((jobs, _)) => format!("worker:{worker} claimed={}", jobs.len()),
        Err(_) => String::from("jobs"),
    };
    let outcome = claimed.map(|(jobs, commit)| {
        let list: Vec<Value> = jobs.iter().map(|j| j.full_json()).collect();
        let body = if listed {
            json!({"ok": true, "jobs": list})
        } else {
            json!({"ok": true, "job": list.into_iter().next()})
        };
        (StatusCode::OK, body, commit)
    });
    audited(&state, origin, &caller, "job.claim", target, outcome).await
}

/// Check a claim and take its jobs (none while the scheduler is paused), waiting up to
/// `wait_secs` for one when none is ready.
async fn claim_jobs(
    state: &AppState,
    caller: &Caller,
    worker: &str,
    body: Claim,
) -> Result<(Vec<Job>, Commit)> {
    let wait = body
        .wait_secs
        .map(|n| in_range("wait_secs", n, 0, MAX_WAIT_SECS))
        .transpose()?
        .unwrap_or(0);
    let req = claim_request(worker, body)?;
    // Answer before the request timeout would cut the request off.
    let timeout = Duration::from_secs(state.config.request_timeout_secs);
    let wait = Duration::from_secs(wait).min(timeout.saturating_sub(Duration::from_secs(1)));
    let deadline = Instant::now() + wait;
    let mut commit = Commit::done();
    loop {
        // Taken before the claim, so a job queued right after it still wakes us.
        let ready = state.jobs.claimable();
        let (jobs, c) = take(state, caller, &req)?;
        commit = commit.and(c);
        if !jobs.is_empty() || state.jobs.is_stopping() || Instant::now() >= deadline {
            return Ok((jobs, commit));
        }
        tokio::select! {
            _ = ready => {}
            _ = tokio::time::sleep_until(deadline) => {}
        }
    }
}

/// A claim's body, checked.
fn claim_request(worker: &str, body: Claim) -> Result<ClaimRequest> {
    if worker.is_empty() || worker.len() > 100 || worker.starts_with(crate::jobs::BUILTIN_WORKER) {
        return Err(AppError::bad_request(
            "worker: must be 1-100 characters and not start with \"builtin:\"",
        ));
    }
    let count = body
        .count
        .map(|n| in_range("count", n, 1, MAX_CLAIM))
        .transpose()?;
    let req = ClaimRequest {
        queues: OneOrMany::into_strings(body.queues),
        kinds: OneOrMany::into_strings(body.kinds),
        lease_secs: lease(body.lease_secs)?,
        count: count.unwrap_or(1),
        worker: worker.to_string(),
    };
    Ok(req)
}

/// One try at a claim (none while the scheduler is paused).
fn take(state: &AppState, caller: &Caller, req: &ClaimRequest) -> Result<(Vec<Job>, Commit)> {
    if state.scheduler.is_paused() {
        return Ok((Vec::new(), Commit::done()));
    }
    Ok(state.jobs.claim_for_key(req, &caller.key_id)?)
}

/// The caller of a report, as the queue checks it against the claim: a worker key only
/// on its own claims, an operator or admin on any.
fn reporter<'a>(caller: &'a Caller, worker: Option<&'a str>) -> ApiReporter<'a> {
    ApiReporter {
        key_id: &caller.key_id,
        worker,
        any_claim: Need::Operator.allows(caller.role),
    }
}

/// The audit target of a report: the job, the worker whose claim it was, and, when an
/// operator or admin acted on another key's claim, `as:<role>`.
fn report_target(
    id: &str,
    caller: &Caller,
    worker: Option<&str>,
    done: &Result<(Job, Commit)>,
) -> String {
    let (holder, key) = match done {
        Ok((j, _)) => (j.worker.clone(), j.worker_key.clone()),
        Err(_) => (worker.map(str::to_string), None),
    };
    let holder = holder.unwrap_or_else(|| format!("key:{}", caller.key_id));
    let mut t = format!("job:{id} worker:{holder}");
    if done.is_ok() && key.as_deref() != Some(caller.key_id.as_str()) {
        t.push_str(&format!(" as:{}", caller.role));
    }
    t
}

/// Audit and answer a worker's report on one job.
async fn answer_report(
    state: &AppState,
    origin: Origin,
    caller: &Caller,
    action: &str,
    (id, worker): (&str, Option<&str>),
    outcome: Result<(Job, Commit)>,
) -> Response {
    let target = report_target(id, caller, worker, &outcome);
    answer_job(state, origin, caller, action, target, outcome, View::Public).await
}

/// The body of a heartbeat.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Heartbeat {
    /// The lease holder (checked when given).
    worker: Option<String>,
    /// Extend the lease by this much (default 300).
    #[schema(minimum = 1, maximum = 86_400)]
    lease_secs: Option<u64>,
}

/// `POST /api/job/{id}/heartbeat` (worker): `{"worker", "lease_secs"}`.
#[utoipa::path(post, path = "/api/job/{id}/heartbeat", tag = "workers",
    params(("id" = String, Path, description = "the job's id")),
    request_body(content = Option<Heartbeat>, description = "optional"),
    responses((status = 200, body = JobAnswer), (status = 409, description = "not running, or held by another worker", body = ErrorBody)),
    extensions(("x-required-role" = json!("worker"))))]
pub async fn heartbeat(
    State(state): State<AppState>,
    Worker(caller): Worker,
    origin: Origin,
    AppPath(id): AppPath<String>,
    MaybeJson(body): MaybeJson<Heartbeat>,
) -> Response {
    let worker = body.worker.as_deref();
    let by = reporter(&caller, worker);
    let outcome = lease(body.lease_secs)
        .and_then(|secs| change(&id, |id| state.jobs.heartbeat(id, by, secs)));
    let action = "job.heartbeat";
    answer_report(&state, origin, &caller, action, (&id, worker), outcome).await
}

/// The body of a completion.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Complete {
    /// The lease holder (checked when given).
    worker: Option<String>,
    /// Any JSON: what the job produced.
    result: Option<Value>,
}

fn result_text(v: Option<Value>) -> Option<String> {
    v.filter(|v| !v.is_null()).map(|v| v.to_string())
}

/// `POST /api/job/{id}/complete` (worker): `{"worker", "result"}`.
#[utoipa::path(post, path = "/api/job/{id}/complete", tag = "workers",
    params(("id" = String, Path, description = "the job's id")),
    request_body(content = Option<Complete>, description = "optional"),
    responses((status = 200, body = JobAnswer), (status = 409, description = "not running, or held by another worker", body = ErrorBody)),
    extensions(("x-required-role" = json!("worker"))))]
pub async fn complete(
    State(state): State<AppState>,
    Worker(caller): Worker,
    origin: Origin,
    AppPath(id): AppPath<String>,
    MaybeJson(body): MaybeJson<Complete>,
) -> Response {
    let result = result_text(body.result);
    let worker = body.worker.as_deref();
    let by = reporter(&caller, worker);
    let outcome = change(&id, |id| state.jobs.complete(id, by, result));
    let action = "job.complete";
    answer_report(&state, origin, &caller, action, (&id, worker), outcome).await
}

/// The body of a failure report.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Fail {
    /// The lease holder (checked when given).
    worker: Option<String>,
    /// What went wrong (default `failed`).
    error: Option<String>,
    /// `false`: a permanent failure, `dead` at once (default `true`: retried with backoff
    /// until `max_attempts`).
    retry: Option<bool>,
}

/// `POST /api/job/{id}/fail` (worker): `{"worker", "error"}`.
#[utoipa::path(post, path = "/api/job/{id}/fail", tag = "workers",
    params(("id" = String, Path, description = "the job's id")),
    request_body(content = Option<Fail>, description = "optional"),
    responses((status = 200, body = JobAnswer), (status = 409, description = "not running, or held by another worker", body = ErrorBody)),
    extensions(("x-required-role" = json!("worker"))))]
pub async fn fail(
    State(state): State<AppState>,
    Worker(caller): Worker,
    origin: Origin,
    AppPath(id): AppPath<String>,
    MaybeJson(body): MaybeJson<Fail>,
) -> Response {
    let error = body.error.unwrap_or_else(|| "failed".into());
    let worker = body.worker.as_deref();
    let by = reporter(&caller, worker);
    let retry = body.retry.unwrap_or(true);
    let outcome = change(&id, |id| state.jobs.fail_with(id, by, &error, retry));
    let action = "job.fail";
    answer_report(&state, origin, &caller, action, (&id, worker), outcome).await
}

/// One entry of a batch completion: `result` completes the job, `error` fails it; an
/// entry with both, or neither, is refused on its own.
#[derive(Debug, Deserialize, ToSchema)]
pub struct BatchEntry {
    id: String,
    /// What the job produced (any JSON, `null` included).
    #[serde(default, deserialize_with = "present")]
    result: Option<Value>,
    /// What went wrong: a failed attempt.
    error: Option<String>,
    /// With `error`: `false` makes it permanent (`dead` at once).
    retry: Option<bool>,
}

/// A field that is there, even as `null` (absent stays `None` through `default`).
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Option<Value>, D::Error> {
    Value::deserialize(d).map(Some)
}

/// The body of `POST /api/jobs/complete`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CompleteBatch {
    /// The lease holder (checked when given).
    worker: Option<String>,
    /// Up to 1000 entries.
    #[schema(max_items = 1000)]
    results: Vec<BatchEntry>,
}

/// `POST /api/jobs/complete` (worker): `{"worker", "results": [{"id", "result"} |
/// {"id", "error"}]}`, up to 1,000 at once; one sync and one audit event for the batch.
/// Each entry answers on its own: `{"id", "ok", "status" | "error"}`.
#[utoipa::path(post, path = "/api/jobs/complete", tag = "workers",
    request_body = CompleteBatch,
    responses((status = 200, body = OkBody)),
    extensions(("x-required-role" = json!("worker"))))]
pub async fn complete_batch(
    State(state): State<AppState>,
    Worker(caller): Worker,
    origin: Origin,
    AppJson(body): AppJson<CompleteBatch>,
) -> Response {
    let worker = body.worker;
    let by = reporter(&caller, worker.as_deref());
    let applied = apply_batch(&state, by, body.results);
    let target = match &applied {
        Ok(t) => format!(
            "worker:{} completed={} failed={} refused={}",
            worker.unwrap_or_else(|| format!("key:{}", caller.key_id)),
            t.completed,
            t.failed,
            t.refused
        ),
        Err(_) => String::from("jobs"),
    };
    let outcome = applied.map(|t| {
        let body = json!({"ok": true, "completed": t.completed, "failed": t.failed,
            "refused": t.refused, "results": t.results});
        (StatusCode::OK, body, t.commit)
    });
    audited(
        &state,
        origin,
        &caller,
        "job.complete_batch",
        target,
        outcome,
    )
    .await
}

/// What a batch did, entry by entry.
struct BatchTally {
    completed: usize,
    failed: usize,
    refused: usize,
    results: Vec<Value>,
    /// Covers every change of the batch.
    commit: Commit,
}

/// Complete or fail each entry; an entry the queue refuses is answered on its own, a
/// store failure fails the batch.
fn apply_batch(
    state: &AppState,
    by: ApiReporter<'_>,
    entries: Vec<BatchEntry>,
) -> Result<BatchTally> {
    if entries.len() > 1000 {
        return Err(AppError::bad_request("results: at most 1000 at once"));
    }
    // Entries that name both or neither are answered here; the rest go as one change.
    let mut answers: Vec<Option<Value>> = Vec::with_capacity(entries.len());
    let mut reports: Vec<(&str, Report)> = Vec::with_capacity(entries.len());
    for e in &entries {
        let report = match (&e.result, &e.error) {
            (Some(_), Some(_)) => Err("give either result (complete) or error (fail), not both"),
            (None, None) => Err("give result (complete) or error (fail)"),
            (None, Some(err)) => Ok(Report::Fail {
                error: err.clone(),
                retry: e.retry.unwrap_or(true),
            }),
            (Some(result), None) => Ok(Report::Complete(result_text(Some(result.clone())))),
        };
        match report {
            Ok(r) => {
                reports.push((&e.id, r));
                answers.push(None);
            }
            Err(why) => {
                let err = JobError::Invalid(why.into());
                answers.push(Some(
                    json!({"id": e.id, "ok": false, "error": err.to_string()}),
                ));
            }
        }
    }
    let (outcomes, commit) = state.jobs.report_batch(by, &reports)?;
    let mut t = BatchTally {
        completed: 0,
        failed: 0,
        refused: answers.iter().filter(|a| a.is_some()).count(),
        results: Vec::with_capacity(entries.len()),
        commit,
    };
    let mut outcomes = reports.iter().zip(outcomes);
    for answer in answers {
        t.results.push(match answer {
            Some(refused) => refused,
            None => {
                let Some(((id, report), outcome)) = outcomes.next() else {
                    break;
                };
                match outcome {
                    Ok(j) => {
                        match report {
                            Report::Complete(_) => t.completed += 1,
                            Report::Fail { .. } => t.failed += 1,
                        }
                        json!({"id": id, "ok": true, "status": j.status})
                    }
                    Err(err) => {
                        t.refused += 1;
                        json!({"id": id, "ok": false, "error": err.to_string()})
                    }
                }
            }
        });
    }
    Ok(t)
}
