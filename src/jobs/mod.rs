//! The durable job queue: enqueue, claim, heartbeat, complete, fail, retry, cancel,
//! stuck detection and pruning. No HTTP here; `web::api::jobs` is the HTTP face.
//!
//! - [`model`]: the job record and its JSON views
//! - `types`: requests, filters, outcomes, errors
//! - [`transitions`]: the job's life as pure functions `Job → Job`
//! - [`store`]: the storage it needs ([`JobStore`]); sled's is in `store::sled_impl::jobs`
//! - `service`: [`Jobs`], which ties them together and tells listeners
//! - [`executors`]: the built-in `http` / `command` / alert executors

pub mod executors;
pub mod ids;
pub mod model;
mod service;
pub mod store;
pub mod transitions;
mod types;

pub use model::{Job, Status, backoff_secs};
pub use service::{FAILED_WINDOW_SECS, Jobs};
pub use store::JobStore;
pub use types::{
    ApiReporter, BUILTIN_WORKER, ClaimRequest, DEFAULT_LEASE_SECS, DEFAULT_MAX_ATTEMPTS,
    DEFAULT_QUEUE, DEFAULT_TIMEOUT_SECS, Enqueued, Filter, JobError, JobEvent, MAX_BATCH,
    MAX_CLAIM, NewJob, Outcome, Report, Reporter, check_name, tail, truncate,
};
