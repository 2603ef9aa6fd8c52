//! `/api/jobs` and `/api/job/{id}`: enqueue, list, stats, stuck, retry, cancel, and the
//! worker protocol (claim, heartbeat, complete, fail, batch complete).
//!
//! Every change is synced (group commit) and audited before the answer. Worker calls
//! are audited once per call (a batch claim or batch complete is one event naming the
//! count), which keeps the hot path to one audit write per request.

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::app::AppState;
use crate::audit::NewEvent;
use crate::auth::Caller;
use crate::error::{AppError, Result};
use crate::jobs::{
    ClaimRequest, DEFAULT_LEASE_SECS, Filter, Job, JobError, MAX_CLAIM, NewJob, Status,
};
use crate::web::access::Origin;
use crate::web::auth::{MaybeCaller, Operator, Viewer, Worker};
use crate::web::extract::{AppJson, AppPath, AppQuery};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/jobs", post(create).get(list))
        .route("/api/jobs/stats", get(stats))
        .route("/api/jobs/stuck", get(stuck))
        .route("/api/jobs/retry", post(retry_bulk))
        .route("/api/jobs/claim", post(claim))
        .route("/api/jobs/complete", post(complete_batch))
        .route("/api/job/{id}", get(show))
        .route("/api/job/{id}/retry", post(retry))
        .route("/api/job/{id}/cancel", post(cancel))
        .route("/api/job/{id}/heartbeat", post(heartbeat))
        .route("/api/job/{id}/complete", post(complete))
        .route("/api/job/{id}/fail", post(fail))
}

impl From<JobError> for AppError {
    fn from(e: JobError) -> Self {
        match e {
            JobError::NotFound(_) => AppError::not_found(e.to_string()),
            JobError::Invalid(m) => AppError::bad_request(m),
            JobError::Conflict(m) => AppError::conflict(m),
            JobError::Store(s) => s.into(),
        }
    }
}

/// Make a change durable and audit it (failures too), then answer; the change and its
/// audit event share one group commit.
pub async fn audited(
    state: &AppState,
    meta: Origin,
    caller: &Caller,
    action: &str,
    target: String,
    outcome: Result<(StatusCode, Value)>,
) -> Response {
    let (ok, status, error) = match &outcome {
        Ok((s, _)) => (true, s.as_u16(), None),
        Err(e) => (false, e.status.as_u16(), Some(e.message.clone())),
    };
    let event = NewEvent {
        request_id: meta.request_id,
        actor: Some(caller.clone()),
        action: action.to_string(),
        target,
        ip: Some(meta.ip),
        ok,
        status,
        error,
        ..NewEvent::default()
    };
    // The change's ticket is taken first, then the audit record syncs: that one sync
    // covers both, so a request costs one sync rather than two.
    let ticket = state.store.sync_ticket();
    let recorded = state.audit.record(event).await;
    let synced = state.store.sync_until(ticket).await;
    if let Err(e) = synced.map_err(AppError::from) {
        return e.into_response();
    }
    if let Err(e) = recorded {
        return AppError::from(e).into_response();
    }
    match outcome {
        Ok((s, v)) => (s, AppJson(v)).into_response(),
        Err(e) => e.into_response(),
    }
}

// ----- reading JSON fields with errors that name them -----

/// An optional JSON body: empty means `{}`.
fn body_json(body: &Bytes) -> Result<Value> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(json!({}));
    }
    serde_json::from_slice(body).map_err(|e| AppError::bad_request(format!("malformed JSON: {e}")))
}

fn object(v: Value) -> Result<Map<String, Value>> {
    match v {
        Value::Object(m) => Ok(m),
        _ => Err(AppError::bad_request("body: expected a JSON object")),
    }
}

fn refuse_unknown(m: &Map<String, Value>, known: &[&str]) -> Result<()> {
    match m.keys().find(|k| !known.contains(&k.as_str())) {
        Some(k) => Err(AppError::bad_request(format!(
            "{k}: unknown field (expected one of {})",
            known.join(", ")
        ))),
        None => Ok(()),
    }
}

fn opt_str(m: &Map<String, Value>, field: &str) -> Result<Option<String>> {
    match m.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(AppError::bad_request(format!("{field}: must be a string"))),
    }
}

fn opt_int(m: &Map<String, Value>, field: &str, min: i64, max: i64) -> Result<Option<i64>> {
    match m.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => match v.as_i64() {
            Some(n) if (min..=max).contains(&n) => Ok(Some(n)),
            _ => Err(AppError::bad_request(format!(
                "{field}: must be an integer from {min} to {max}"
            ))),
        },
    }
}

fn opt_strings(m: &Map<String, Value>, field: &str) -> Result<Vec<String>> {
    match m.get(field) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::String(s)) => Ok(vec![s.clone()]),
        Some(Value::Array(a)) => a
            .iter()
            .map(|v| {
                v.as_str().map(str::to_string).ok_or_else(|| {
                    AppError::bad_request(format!("{field}: must be a list of strings"))
                })
            })
            .collect(),
        Some(_) => Err(AppError::bad_request(format!(
            "{field}: must be a list of strings"
        ))),
    }
}

fn parse_time(field: &str, s: &str) -> Result<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.to_utc())
        .map_err(|_| AppError::bad_request(format!("{field}: must be an RFC 3339 time")))
}

fn parse_status(field: &str, s: &str) -> Result<Status> {
    Status::parse(s).ok_or_else(|| {
        AppError::bad_request(format!(
            "{field}: unknown status {s:?} (scheduled, queued, running, stuck, succeeded, dead, cancelled)"
        ))
    })
}

/// The body of `POST /api/jobs` (also used by the benchmark and the schedules).
pub fn parse_new_job(body: Value) -> Result<NewJob> {
    let m = object(body)?;
    refuse_unknown(
        &m,
        &[
            "queue",
            "kind",
            "payload",
            "priority",
            "max_attempts",
            "run_at",
            "delay_secs",
            "timeout_secs",
            "unique_key",
        ],
    )?;
    let kind = opt_str(&m, "kind")?.ok_or_else(|| AppError::bad_request("kind: required"))?;
    let payload = match m.get("payload") {
        None | Some(Value::Null) => None,
        Some(v) => Some(v.to_string()),
    };
    Ok(NewJob {
        queue: opt_str(&m, "queue")?,
        kind,
        payload,
        priority: opt_int(&m, "priority", -1_000_000, 1_000_000)?.map(|p| p as i32),
        max_attempts: opt_int(&m, "max_attempts", 1, 1000)?.map(|n| n as u32),
        run_at: opt_str(&m, "run_at")?
            .map(|s| parse_time("run_at", &s))
            .transpose()?,
        delay_secs: opt_int(&m, "delay_secs", 0, 10 * 365 * 86_400)?.map(|n| n as u64),
        timeout_secs: opt_int(&m, "timeout_secs", 1, 86_400)?.map(|n| n as u64),
        unique_key: opt_str(&m, "unique_key")?,
        schedule: None,
        id: None,
    })
}

// ----- handlers -----

/// `POST /api/jobs` (operator).
pub async fn create(
    State(state): State<AppState>,
    Operator(caller): Operator,
    meta: Origin,
    AppJson(body): AppJson<Value>,
) -> Response {
    let mut target = String::new();
    let outcome = (|| {
        let new = parse_new_job(body)?;
        let r = state.jobs.enqueue(new)?;
        target = format!("job:{}", r.job.id);
        let status = if r.duplicate {
            StatusCode::OK
        } else {
            StatusCode::CREATED
        };
        Ok((
            status,
            json!({"ok": true, "duplicate": r.duplicate, "job": r.job.full_json()}),
        ))
    })();
    audited(&state, meta, &caller, "job.create", target, outcome).await
}

#[derive(Debug, Deserialize)]
pub struct ListQuery {
    status: Option<String>,
    queue: Option<String>,
    kind: Option<String>,
    since: Option<String>,
    limit: Option<usize>,
    cursor: Option<String>,
}

fn filter_from(
    status: Option<&str>,
    queue: Option<String>,
    kind: Option<String>,
    since: Option<&str>,
) -> Result<Filter> {
    let mut f = Filter {
        queue,
        kind,
        ..Filter::default()
    };
    match status {
        None | Some("") => {}
        Some("failed") => f.failed = true,
        Some(s) => f.status = Some(parse_status("status", s)?),
    }
    if let Some(s) = since.filter(|s| !s.is_empty()) {
        f.since = Some(parse_time("since", s)?);
    }
    Ok(f)
}

/// `GET /api/jobs` (viewer): newest first; `next_cursor` pages on.
pub async fn list(
    State(state): State<AppState>,
    _: Viewer,
    AppQuery(q): AppQuery<ListQuery>,
) -> Result<AppJson<Value>> {
    let filter = filter_from(q.status.as_deref(), q.queue, q.kind, q.since.as_deref())?;
    let limit = q.limit.unwrap_or(50).clamp(1, 500);
    let (jobs, next) = state.jobs.list(&filter, q.cursor.as_deref(), limit)?;
    let jobs: Vec<Value> = jobs.iter().map(|j| j.full_json()).collect();
    Ok(AppJson(json!({
        "ok": true,
        "count": jobs.len(),
        "jobs": jobs,
        "next_cursor": next,
    })))
}

/// `GET /api/jobs/stats` (viewer): counts per status per queue, and totals.
pub async fn stats(State(state): State<AppState>, _: Viewer) -> Result<AppJson<Value>> {
    let counts = state.jobs.counts();
    let mut totals: Map<String, Value> = Status::ALL
        .iter()
        .map(|s| (s.as_str().to_string(), json!(0)))
        .collect();
    let mut queues = Map::new();
    for (q, per) in &counts {
        let mut m: Map<String, Value> = Status::ALL
            .iter()
            .map(|s| (s.as_str().to_string(), json!(0)))
            .collect();
        for (s, n) in per {
            m.insert(s.as_str().into(), json!(n));
            let t = totals.get(s.as_str()).and_then(Value::as_u64).unwrap_or(0);
            totals.insert(s.as_str().into(), json!(t + n));
        }
        queues.insert(q.clone(), Value::Object(m));
    }
    Ok(AppJson(
        json!({"ok": true, "totals": totals, "queues": queues}),
    ))
}

/// `GET /api/jobs/stuck` (viewer): with how long each has been stuck and its worker.
pub async fn stuck(State(state): State<AppState>, _: Viewer) -> Result<AppJson<Value>> {
    let now = state.clock.now();
    let jobs = state.jobs.stuck(now)?;
    let now_ms = crate::jobs::model::ms(now);
    let out: Vec<Value> = jobs
        .iter()
        .map(|j| {
            let since = j.stuck_since();
            let mut v = j.full_json();
            if let Value::Object(m) = &mut v {
                m.insert(
                    "stuck_for_secs".into(),
                    json!(((now_ms - since).max(0)) / 1000),
                );
                m.insert("last_worker".into(), json!(j.worker));
            }
            v
        })
        .collect();
    Ok(AppJson(
        json!({"ok": true, "count": out.len(), "jobs": out}),
    ))
}

/// `GET /api/job/{id}`: public fields for anyone; everything for a key holder. A wrong
/// key is a 401, not an anonymous read.
pub async fn show(
    State(state): State<AppState>,
    MaybeCaller(caller): MaybeCaller,
    AppPath(id): AppPath<String>,
) -> Result<AppJson<Value>> {
    let job = state.jobs.get(&id)?;
    let v = match caller {
        Some(_) => job.full_json(),
        None => job.public_json(),
    };
    Ok(AppJson(json!({"ok": true, "job": v})))
}

/// `POST /api/job/{id}/retry` (operator).
pub async fn retry(
    State(state): State<AppState>,
    Operator(caller): Operator,
    meta: Origin,
    AppPath(id): AppPath<String>,
) -> Response {
    let outcome = state.jobs.retry(&id).map_err(AppError::from);
    answer_job(&state, meta, &caller, "job.retry", &id, outcome, View::Full).await
}

/// `POST /api/job/{id}/cancel` (operator).
pub async fn cancel(
    State(state): State<AppState>,
    Operator(caller): Operator,
    meta: Origin,
    AppPath(id): AppPath<String>,
) -> Response {
    let outcome = state.jobs.cancel(&id).map_err(AppError::from);
    answer_job(
        &state,
        meta,
        &caller,
        "job.cancel",
        &id,
        outcome,
        View::Full,
    )
    .await
}

/// Which fields of a job an answer shows: workers get the public ones.
#[derive(Clone, Copy)]
enum View {
    Public,
    Full,
}

/// Answer a change to one job with the job, audited (failures too).
async fn answer_job(
    state: &AppState,
    meta: Origin,
    caller: &Caller,
    action: &str,
    id: &str,
    outcome: Result<Job>,
    view: View,
) -> Response {
    let outcome = outcome.map(|j| {
        let v = match view {
            View::Public => j.public_json(),
            View::Full => j.full_json(),
        };
        (StatusCode::OK, json!({"ok": true, "job": v}))
    });
    audited(state, meta, caller, action, format!("job:{id}"), outcome).await
}

/// `POST /api/jobs/retry` (operator): every job matching a filter (`status`, default
/// `dead`; `failed`, `stuck`, `cancelled`; `queue`, `kind`, `limit`).
pub async fn retry_bulk(
    State(state): State<AppState>,
    Operator(caller): Operator,
    meta: Origin,
    body: Bytes,
) -> Response {
    let mut target = String::from("jobs");
    let outcome = (|| {
        let m = object(body_json(&body)?)?;
        refuse_unknown(&m, &["status", "queue", "kind", "limit"])?;
        let status = opt_str(&m, "status")?.unwrap_or_else(|| "dead".into());
        if !matches!(status.as_str(), "dead" | "stuck" | "cancelled" | "failed") {
            return Err(AppError::bad_request(
                "status: must be dead, stuck, cancelled or failed",
            ));
        }
        let filter = filter_from(
            Some(&status),
            opt_str(&m, "queue")?,
            opt_str(&m, "kind")?,
            None,
        )?;
        let limit = opt_int(&m, "limit", 1, 100_000)?.unwrap_or(10_000) as usize;
        let moved = state.jobs.retry_bulk(&filter, limit)?;
        target = format!(
            "jobs status={status} queue={} kind={} moved={}",
            filter.queue.as_deref().unwrap_or("*"),
            filter.kind.as_deref().unwrap_or("*"),
            moved.len()
        );
        Ok((
            StatusCode::OK,
            json!({"ok": true, "moved": moved.len(), "ids": moved}),
        ))
    })();
    audited(&state, meta, &caller, "job.retry_bulk", target, outcome).await
}

/// `POST /api/jobs/claim` (worker): `{"queues", "kinds", "worker", "lease_secs",
/// "count"}` → `{"job": ...}`, or `{"jobs": [...]}` when `count` is given. Paused: none.
pub async fn claim(
    State(state): State<AppState>,
    Worker(caller): Worker,
    meta: Origin,
    body: Bytes,
) -> Response {
    let mut target = String::from("jobs");
    let outcome = (|| {
        let m = object(body_json(&body)?)?;
        refuse_unknown(&m, &["queues", "kinds", "worker", "lease_secs", "count"])?;
        let worker = opt_str(&m, "worker")?.unwrap_or_else(|| format!("key:{}", caller.key_id));
        if worker.is_empty()
            || worker.len() > 100
            || worker.starts_with(crate::jobs::BUILTIN_WORKER)
        {
            return Err(AppError::bad_request(
                "worker: must be 1-100 characters and not start with \"builtin:\"",
            ));
        }
        let count = opt_int(&m, "count", 1, MAX_CLAIM as i64)?;
        let req = ClaimRequest {
            queues: opt_strings(&m, "queues")?,
            kinds: opt_strings(&m, "kinds")?,
            lease_secs: opt_int(&m, "lease_secs", 1, 86_400)?
                .map(|n| n as u64)
                .unwrap_or(DEFAULT_LEASE_SECS),
            count: count.unwrap_or(1) as usize,
            worker: worker.clone(),
        };
        let jobs = if state.scheduler.is_paused() {
            Vec::new()
        } else {
            state.jobs.claim(&req)?
        };
        target = format!("worker:{worker} claimed={}", jobs.len());
        if let Some(j) = jobs.first()
            && jobs.len() == 1
        {
            target = format!("job:{} worker:{worker}", j.id);
        }
        let list: Vec<Value> = jobs.iter().map(|j| j.full_json()).collect();
        Ok((
            StatusCode::OK,
            if count.is_some() {
                json!({"ok": true, "jobs": list})
            } else {
                json!({"ok": true, "job": list.into_iter().next()})
            },
        ))
    })();
    audited(&state, meta, &caller, "job.claim", target, outcome).await
}

fn worker_body(body: &Bytes, known: &[&str]) -> Result<Map<String, Value>> {
    let m = object(body_json(body)?)?;
    refuse_unknown(&m, known)?;
    Ok(m)
}

/// `POST /api/job/{id}/heartbeat` (worker): `{"worker", "lease_secs"}`.
pub async fn heartbeat(
    State(state): State<AppState>,
    Worker(caller): Worker,
    meta: Origin,
    AppPath(id): AppPath<String>,
    body: Bytes,
) -> Response {
    let outcome = (|| {
        let m = worker_body(&body, &["worker", "lease_secs"])?;
        let lease = opt_int(&m, "lease_secs", 1, 86_400)?
            .map(|n| n as u64)
            .unwrap_or(DEFAULT_LEASE_SECS);
        Ok(state
            .jobs
            .heartbeat(&id, opt_str(&m, "worker")?.as_deref(), lease)?)
    })();
    answer_job(
        &state,
        meta,
        &caller,
        "job.heartbeat",
        &id,
        outcome,
        View::Public,
    )
    .await
}

/// `POST /api/job/{id}/complete` (worker): `{"worker", "result"}`.
pub async fn complete(
    State(state): State<AppState>,
    Worker(caller): Worker,
    meta: Origin,
    AppPath(id): AppPath<String>,
    body: Bytes,
) -> Response {
    let outcome = (|| {
        let m = worker_body(&body, &["worker", "result"])?;
        let result = m
            .get("result")
            .filter(|v| !v.is_null())
            .map(Value::to_string);
        Ok(state
            .jobs
            .complete(&id, opt_str(&m, "worker")?.as_deref(), result)?)
    })();
    answer_job(
        &state,
        meta,
        &caller,
        "job.complete",
        &id,
        outcome,
        View::Public,
    )
    .await
}

/// `POST /api/job/{id}/fail` (worker): `{"worker", "error"}`.
pub async fn fail(
    State(state): State<AppState>,
    Worker(caller): Worker,
    meta: Origin,
    AppPath(id): AppPath<String>,
    body: Bytes,
) -> Response {
    let outcome = (|| {
        let m = worker_body(&body, &["worker", "error"])?;
        let error = opt_str(&m, "error")?.unwrap_or_else(|| "failed".into());
        Ok(state
            .jobs
            .fail(&id, opt_str(&m, "worker")?.as_deref(), &error)?)
    })();
    answer_job(
        &state,
        meta,
        &caller,
        "job.fail",
        &id,
        outcome,
        View::Public,
    )
    .await
}

/// `POST /api/jobs/complete` (worker): `{"worker", "results": [{"id", "result"} |
/// {"id", "error"}]}`, up to 1,000 at once; one sync and one audit event for the batch.
/// Each entry answers on its own: `{"id", "ok", "status" | "error"}`.
pub async fn complete_batch(
    State(state): State<AppState>,
    Worker(caller): Worker,
    meta: Origin,
    AppJson(body): AppJson<Value>,
) -> Response {
    let mut target = String::from("jobs");
    let outcome = (|| {
        let m = object(body)?;
        refuse_unknown(&m, &["worker", "results"])?;
        let worker = opt_str(&m, "worker")?;
        let Some(Value::Array(results)) = m.get("results") else {
            return Err(AppError::bad_request("results: required, a list"));
        };
        if results.len() > 1000 {
            return Err(AppError::bad_request("results: at most 1000 at once"));
        }
        let mut answers = Vec::with_capacity(results.len());
        let (mut done, mut failed, mut refused) = (0, 0, 0);
        for (i, r) in results.iter().enumerate() {
            let Some(e) = r.as_object() else {
                return Err(AppError::bad_request(format!(
                    "results[{i}]: must be an object"
                )));
            };
            let Some(id) = e.get("id").and_then(Value::as_str) else {
                return Err(AppError::bad_request(format!("results[{i}].id: required")));
            };
            let r = match e.get("error").and_then(Value::as_str) {
                Some(err) => state
                    .jobs
                    .fail(id, worker.as_deref(), err)
                    .inspect(|_| failed += 1),
                None => {
                    let result = e
                        .get("result")
                        .filter(|v| !v.is_null())
                        .map(Value::to_string);
                    state
                        .jobs
                        .complete(id, worker.as_deref(), result)
                        .inspect(|_| done += 1)
                }
            };
            answers.push(match r {
                Ok(j) => json!({"id": id, "ok": true, "status": j.status}),
                Err(JobError::Store(e)) => return Err(e.into()),
                Err(e) => {
                    refused += 1;
                    json!({"id": id, "ok": false, "error": e.to_string()})
                }
            });
        }
        target = format!(
            "worker:{} completed={done} failed={failed} refused={refused}",
            worker.as_deref().unwrap_or("-")
        );
        Ok((
            StatusCode::OK,
            json!({"ok": true, "completed": done, "failed": failed, "refused": refused, "results": answers}),
        ))
    })();
    audited(&state, meta, &caller, "job.complete_batch", target, outcome).await
}
