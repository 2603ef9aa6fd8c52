//! `/api/jobs` and `/api/job/{id}`: enqueue, list, stats, stuck, retry, cancel. The
//! worker protocol is in `workers`.
//!
//! Every change is synced (group commit) and audited before the answer. Worker calls
//! are audited once per call (a batch claim or batch complete is one event naming the
//! count), which keeps the hot path to one audit write per request.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::app::AppState;
use crate::auth::{Caller, Need};
use crate::jobs::ids::{JobId, JobKind, QueueName};
use crate::jobs::{Filter, Job, JobError, NewJob, Status};
use crate::store::Commit;
use crate::web::access::Origin;
use crate::web::api::schemas::{JobAnswer, JobPage, OkBody};
use crate::web::audit::audited;
use crate::web::auth::{MaybeCaller, Operator, Viewer};
use crate::web::error::{AppError, ErrorBody, Result};
use crate::web::extract::{AppJson, AppPath, AppQuery, MaybeJson, in_range};

/// The operators' and viewers' routes (the general rate limit).
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create, list))
        .routes(routes!(create_batch))
        .routes(routes!(stats))
        .routes(routes!(stuck))
        .routes(routes!(retry_bulk))
        .routes(routes!(show))
        .routes(routes!(retry))
        .routes(routes!(cancel))
}

/// A status to filter on: a job status, or `failed` (scheduled again after an error).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StatusFilter {
    Failed,
    #[serde(untagged)]
    Is(Status),
}

impl StatusFilter {
    fn apply(self, f: &mut Filter) {
        match self {
            StatusFilter::Failed => f.failed = true,
            StatusFilter::Is(s) => f.status = Some(s),
        }
    }
}

/// The names of [`Status`] and `failed`, from the domain's own list.
impl utoipa::PartialSchema for StatusFilter {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        let names = Status::ALL.iter().map(|s| s.as_str()).chain(["failed"]);
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .enum_values(Some(names))
            .into()
    }
}

impl ToSchema for StatusFilter {}

/// What the document says of `CreateJob` that its types cannot: `run_at` and
/// `delay_secs` exclude each other.
pub fn refine_document(doc: &mut Value) {
    doc["components"]["schemas"]["CreateJob"]["not"] =
        json!({"required": ["run_at", "delay_secs"]});
}

/// The body of `POST /api/jobs`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateJob {
    /// Default `default`.
    #[schema(value_type = Option<String>, pattern = r"^[A-Za-z0-9._:-]{1,64}$")]
    queue: Option<QueueName>,
    #[schema(value_type = String, pattern = r"^[A-Za-z0-9._:-]{1,64}$")]
    kind: JobKind,
    /// Any JSON; stored as given.
    payload: Option<Value>,
    #[schema(minimum = -1_000_000, maximum = 1_000_000)]
    priority: Option<i32>,
    #[schema(minimum = 1, maximum = 1000)]
    max_attempts: Option<u32>,
    /// Run at or after this time (or give `delay_secs`, not both).
    run_at: Option<DateTime<Utc>>,
    #[schema(minimum = 0, maximum = 315_360_000)]
    delay_secs: Option<u64>,
    #[schema(minimum = 1, maximum = 86_400)]
    timeout_secs: Option<u64>,
    /// A second enqueue with the same key returns the first job.
    #[schema(min_length = 1, max_length = 200)]
    unique_key: Option<String>,
}

impl CreateJob {
    fn into_new_job(self) -> Result<NewJob> {
        Ok(NewJob {
            queue: self.queue.map(QueueName::into_string),
            kind: self.kind.into_string(),
            payload: self.payload.filter(|v| !v.is_null()).map(|v| v.to_string()),
            priority: self
                .priority
                .map(|p| in_range("priority", p, -1_000_000, 1_000_000))
                .transpose()?,
            max_attempts: self.max_attempts,
            run_at: self.run_at,
            delay_secs: self.delay_secs,
            timeout_secs: self.timeout_secs,
            unique_key: self.unique_key,
            schedule: None,
            id: None,
        })
    }
}

/// `POST /api/jobs` (operator).
#[utoipa::path(post, path = "/api/jobs", tag = "jobs",
    request_body = CreateJob,
    responses(
        (status = 201, description = "queued or scheduled", body = JobAnswer),
        (status = 200, description = "a job with this unique_key already exists", body = JobAnswer),
    ),
    extensions(("x-required-role" = json!("operator"))))]
pub async fn create(
    State(state): State<AppState>,
    Operator(caller): Operator,
    origin: Origin,
    AppJson(body): AppJson<CreateJob>,
) -> Response {
    let enqueued = body
        .into_new_job()
        .and_then(|new| Ok(state.jobs.enqueue(new)?));
    let target = match &enqueued {
        Ok((r, _)) => format!("job:{}", r.job.id),
        Err(_) => String::new(),
    };
    let outcome = enqueued.map(|(r, commit)| {
        let status = if r.duplicate {
            StatusCode::OK
        } else {
            StatusCode::CREATED
        };
        let body = json!({"ok": true, "duplicate": r.duplicate, "job": r.job.full_json()});
        (status, body, commit)
    });
    audited(&state, origin, &caller, "job.create", target, outcome).await
}

/// The body of `POST /api/jobs/batch`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateJobs {
    /// Each as the body of `POST /api/jobs`.
    #[schema(min_items = 1, max_items = 1000)]
    jobs: Vec<CreateJob>,
}

/// `POST /api/jobs/batch` (operator): up to 1,000 jobs, all checked before any is
/// stored, one commit and one audit event for the batch.
#[utoipa::path(post, path = "/api/jobs/batch", tag = "jobs",
    request_body = CreateJobs,
    responses(
        (status = 201, description = "stored; each entry says whether it was a duplicate", body = OkBody),
        (status = 200, description = "every entry's unique_key was held already", body = OkBody),
    ),
    extensions(("x-required-role" = json!("operator"))))]
pub async fn create_batch(
    State(state): State<AppState>,
    Operator(caller): Operator,
    origin: Origin,
    AppJson(body): AppJson<CreateJobs>,
) -> Response {
    let sent = body.jobs.len();
    let enqueued = body
        .jobs
        .into_iter()
        .enumerate()
        .map(|(i, j)| {
            j.into_new_job().map_err(|mut e| {
                e.message = format!("jobs[{i}].{}", e.message);
                e
            })
        })
        .collect::<Result<Vec<_>>>()
        .and_then(|news| Ok(state.jobs.enqueue_batch(news)?));
    let target = match &enqueued {
        Ok((r, _)) => batch_summary(r),
        Err(_) => format!("jobs count={sent}"),
    };
    let outcome = enqueued.map(|(r, commit)| {
        let status = match r.iter().all(|e| e.duplicate) {
            true => StatusCode::OK,
            false => StatusCode::CREATED,
        };
        let jobs: Vec<Value> = r
            .iter()
            .map(|e| json!({"duplicate": e.duplicate, "job": e.job.full_json()}))
            .collect();
        let created = r.iter().filter(|e| !e.duplicate).count();
        let body = json!({"ok": true, "count": jobs.len(), "created": created, "jobs": jobs});
        (status, body, commit)
    });
    audited(&state, origin, &caller, "job.create_batch", target, outcome).await
}

/// The batch's audit target: count, duplicates, first and last id, jobs per queue/kind.
fn batch_summary(r: &[crate::jobs::Enqueued]) -> String {
    let mut per: std::collections::BTreeMap<(&str, &str), usize> = Default::default();
    for e in r {
        *per.entry((&e.job.queue, &e.job.kind)).or_default() += 1;
    }
    let per: Vec<String> = per
        .iter()
        .map(|((q, k), n)| format!("{q}/{k}={n}"))
        .collect();
    let id = |e: Option<&crate::jobs::Enqueued>| e.map_or("", |e| e.job.id.as_str()).to_string();
    format!(
        "jobs count={} duplicates={} first={} last={} {}",
        r.len(),
        r.iter().filter(|e| e.duplicate).count(),
        id(r.first()),
        id(r.last()),
        per.join(",")
    )
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    #[param(inline)]
    status: Option<StatusFilter>,
    #[param(value_type = Option<String>, pattern = r"^[A-Za-z0-9._:-]{1,64}$")]
    queue: Option<QueueName>,
    #[param(value_type = Option<String>, pattern = r"^[A-Za-z0-9._:-]{1,64}$")]
    kind: Option<JobKind>,
    /// Created at or after this time.
    since: Option<DateTime<Utc>>,
    /// 1 to 500, default 50 (larger values are cut to 500).
    #[param(minimum = 1)]
    limit: Option<usize>,
    /// The `next_cursor` of the previous page (empty: the first page).
    #[param(
        pattern = r"^([0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})?$"
    )]
    cursor: Option<String>,
}

/// A filter from its parts.
fn filter_from(
    status: Option<StatusFilter>,
    queue: Option<QueueName>,
    kind: Option<JobKind>,
    since: Option<DateTime<Utc>>,
) -> Filter {
    let mut f = Filter {
        queue: queue.map(QueueName::into_string),
        kind: kind.map(JobKind::into_string),
        since,
        ..Filter::default()
    };
    if let Some(s) = status {
        s.apply(&mut f);
    }
    f
}

/// `GET /api/jobs` (viewer): newest first; `next_cursor` pages on.
#[utoipa::path(get, path = "/api/jobs", tag = "jobs", params(ListQuery),
    responses((status = 200, body = JobPage)),
    extensions(("x-required-role" = json!("viewer"))))]
pub async fn list(
    State(state): State<AppState>,
    _: Viewer,
    AppQuery(q): AppQuery<ListQuery>,
) -> Result<AppJson<Value>> {
    let filter = filter_from(q.status, q.queue, q.kind, q.since);
    let limit = in_range("limit", q.limit.unwrap_or(50), 1, usize::MAX)?.min(500);
    let cursor = q.cursor.as_deref().filter(|c| !c.is_empty());
    if cursor.is_some_and(|c| c.len() != 36 || JobId::parse(c).is_err()) {
        return Err(AppError::bad_request("cursor: not a job id"));
    }
    let (jobs, next) = state.jobs.list(&filter, cursor, limit)?;
    let jobs: Vec<Value> = jobs.iter().map(|j| j.full_json()).collect();
    Ok(AppJson(json!({
        "ok": true,
        "count": jobs.len(),
        "jobs": jobs,
        "next_cursor": next,
    })))
}

/// `GET /api/jobs/stats` (viewer): counts per status per queue, and totals; `failed`:
/// attempts that failed (to be retried, or dead) in the last `failed_window_secs`
/// (3600: the last hour, counted since this process started).
#[utoipa::path(get, path = "/api/jobs/stats", tag = "jobs",
    responses((status = 200, body = OkBody)),
    extensions(("x-required-role" = json!("viewer"))))]
pub async fn stats(State(state): State<AppState>, _: Viewer) -> Result<AppJson<Value>> {
    let counts = state.jobs.counts();
    let zeros = || -> Map<String, Value> {
        Status::ALL
            .iter()
            .map(|s| (s.as_str().to_string(), json!(0)))
            .collect()
    };
    let mut totals = zeros();
    let mut queues = Map::new();
    for (q, per) in &counts {
        let mut m = zeros();
        for (s, n) in per {
            m.insert(s.as_str().into(), json!(n));
            let t = totals.get(s.as_str()).and_then(Value::as_u64).unwrap_or(0);
            totals.insert(s.as_str().into(), json!(t + n));
        }
        queues.insert(q.clone(), Value::Object(m));
    }
    Ok(AppJson(json!({
        "ok": true,
        "totals": totals,
        "queues": queues,
        "failed": state.jobs.recent_failures(),
        "failed_window_secs": crate::jobs::FAILED_WINDOW_SECS,
    })))
}

/// `GET /api/jobs/stuck` (viewer): with how long each has been stuck and its worker.
#[utoipa::path(get, path = "/api/jobs/stuck", tag = "jobs",
    responses((status = 200, body = OkBody)),
    extensions(("x-required-role" = json!("viewer"))))]
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

/// `GET /api/job/{id}`: public fields for anyone; everything for viewers and up, and for
/// the worker key whose claim holds it. A wrong key is a 401, not an anonymous read.
#[utoipa::path(get, path = "/api/job/{id}", tag = "jobs",
    params(("id" = String, Path, description = "the job's id")),
    responses((status = 200, body = JobAnswer)),
    extensions(("x-required-role" = json!("public")), ("x-key-optional" = json!(true))))]
pub async fn show(
    State(state): State<AppState>,
    MaybeCaller(caller): MaybeCaller,
    AppPath(id): AppPath<String>,
) -> Result<AppJson<Value>> {
    let id = JobId::parse(&id)?;
    let job = state.jobs.get(id.as_str())?;
    // Viewers and up read everything; a worker key only the jobs its claim holds
    // (it had them from the claim anyway).
    let full = caller.is_some_and(|c| Need::Viewer.allows(c.role) || job.held_by_key(&c.key_id));
    let v = if full {
        job.full_json()
    } else {
        job.public_json()
    };
    Ok(AppJson(json!({"ok": true, "job": v})))
}

/// `POST /api/job/{id}/retry` (operator).
#[utoipa::path(post, path = "/api/job/{id}/retry", tag = "jobs",
    params(("id" = String, Path, description = "the job's id")),
    responses((status = 200, body = JobAnswer), (status = 409, description = "the job's status does not allow this", body = ErrorBody)),
    extensions(("x-required-role" = json!("operator"))))]
pub async fn retry(
    State(state): State<AppState>,
    Operator(caller): Operator,
    origin: Origin,
    AppPath(id): AppPath<String>,
) -> Response {
    let outcome = change(&id, |id| state.jobs.retry(id));
    answer_job(
        &state,
        origin,
        &caller,
        "job.retry",
        format!("job:{id}"),
        outcome,
        View::Full,
    )
    .await
}

/// `POST /api/job/{id}/cancel` (operator).
#[utoipa::path(post, path = "/api/job/{id}/cancel", tag = "jobs",
    params(("id" = String, Path, description = "the job's id")),
    responses((status = 200, body = JobAnswer), (status = 409, description = "the job's status does not allow this", body = ErrorBody)),
    extensions(("x-required-role" = json!("operator"))))]
pub async fn cancel(
    State(state): State<AppState>,
    Operator(caller): Operator,
    origin: Origin,
    AppPath(id): AppPath<String>,
) -> Response {
    let outcome = change(&id, |id| state.jobs.cancel(id));
    answer_job(
        &state,
        origin,
        &caller,
        "job.cancel",
        format!("job:{id}"),
        outcome,
        View::Full,
    )
    .await
}

/// Apply `f` to the job named by the path's `id` (a malformed id names no job: 404).
pub(crate) fn change(
    id: &str,
    f: impl FnOnce(&str) -> Result<(Job, Commit), JobError>,
) -> Result<(Job, Commit)> {
    let id = JobId::parse(id)?;
    Ok(f(id.as_str())?)
}

/// Which fields of a job an answer shows: workers get the public ones.
#[derive(Clone, Copy)]
pub(crate) enum View {
    Public,
    Full,
}

/// Answer a change to one job with the job, audited (failures too).
pub(crate) async fn answer_job(
    state: &AppState,
    origin: Origin,
    caller: &Caller,
    action: &str,
    target: String,
    outcome: Result<(Job, Commit)>,
    view: View,
) -> Response {
    let outcome = outcome.map(|(j, commit)| {
        let v = match view {
            View::Public => j.public_json(),
            View::Full => j.full_json(),
        };
        (StatusCode::OK, json!({"ok": true, "job": v}), commit)
    });
    audited(state, origin, caller, action, target, outcome).await
}

/// What a bulk retry may select.
#[derive(Debug, Clone, Copy, Default, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum RetryStatus {
    #[default]
    Dead,
    Stuck,
    Cancelled,
    Failed,
}

impl RetryStatus {
    fn filter(self) -> StatusFilter {
        match self {
            RetryStatus::Dead => StatusFilter::Is(Status::Dead),
            RetryStatus::Stuck => StatusFilter::Is(Status::Stuck),
            RetryStatus::Cancelled => StatusFilter::Is(Status::Cancelled),
            RetryStatus::Failed => StatusFilter::Failed,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            RetryStatus::Dead => "dead",
            RetryStatus::Stuck => "stuck",
            RetryStatus::Cancelled => "cancelled",
            RetryStatus::Failed => "failed",
        }
    }
}

/// The body of `POST /api/jobs/retry`; empty means every dead job.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RetryBulk {
    /// Default `dead`.
    #[serde(default)]
    status: RetryStatus,
    #[schema(value_type = Option<String>, pattern = r"^[A-Za-z0-9._:-]{1,64}$")]
    queue: Option<QueueName>,
    #[schema(value_type = Option<String>, pattern = r"^[A-Za-z0-9._:-]{1,64}$")]
    kind: Option<JobKind>,
    /// At most this many (default 10000).
    #[schema(minimum = 1, maximum = 100_000)]
    limit: Option<usize>,
}

/// `POST /api/jobs/retry` (operator): every job matching a filter (`status`, default
/// `dead`; `failed`, `stuck`, `cancelled`; `queue`, `kind`, `limit`).
#[utoipa::path(post, path = "/api/jobs/retry", tag = "jobs",
    request_body(content = Option<RetryBulk>, description = "optional; empty retries every dead job"),
    responses((status = 200, body = OkBody)),
    extensions(("x-required-role" = json!("operator"))))]
pub async fn retry_bulk(
    State(state): State<AppState>,
    Operator(caller): Operator,
    origin: Origin,
    MaybeJson(body): MaybeJson<RetryBulk>,
) -> Response {
    let status = body.status;
    let filter = filter_from(Some(status.filter()), body.queue, body.kind, None);
    let moved = body
        .limit
        .map(|n| in_range("limit", n, 1, 100_000))
        .transpose()
        .and_then(|limit| Ok(state.jobs.retry_bulk(&filter, limit.unwrap_or(10_000))?));
    let target = format!(
        "jobs status={} queue={} kind={} moved={}",
        status.as_str(),
        filter.queue.as_deref().unwrap_or("*"),
        filter.kind.as_deref().unwrap_or("*"),
        moved.as_ref().map_or(0, |(ids, _)| ids.len())
    );
    let outcome = moved.map(|(ids, commit)| {
        (
            StatusCode::OK,
            json!({"ok": true, "moved": ids.len(), "ids": ids}),
            commit,
        )
    });
    audited(&state, origin, &caller, "job.retry_bulk", target, outcome).await
}
