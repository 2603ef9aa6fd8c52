//! The sled backend of each domain's storage trait: byte-key layouts, compare-and-swap
//! loops and index trees live here, one file per domain, and nowhere else.

pub(crate) mod audit;
mod audit_keys;
#[cfg(test)]
mod audit_tests;
pub(crate) mod db_maintenance;
pub(crate) mod flags;
pub(crate) mod incidents;
mod job_keys;
pub(crate) mod jobs;
mod jobs_index;
mod jobs_list;
#[cfg(test)]
mod jobs_tests;
pub(crate) mod maintenance;
pub(crate) mod payments;
pub(crate) mod schedules;
pub(crate) mod slo;
mod snapshot;

pub use snapshot::SledTarget;
