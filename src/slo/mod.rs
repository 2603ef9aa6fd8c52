//! SLOs: what is measured (requests, errors, latency, webhooks, ticks, job outcomes,
//! minutes up), how it is kept (atomics in memory, per-minute records in the `slo_minutes`
//! tree), and the figures read from it (availability, uptime, P95, error budget, burn
//! rates). [`alerts`] turns the figures into alerts; [`metrics`] into Prometheus text.
//!
//! Request path: [`Slo::record_request`] touches atomics only. A supervised task
//! ([`Slo::flush`], every few seconds and once more at shutdown) adds the difference since
//! the last flush to the current minute's record and marks that minute as up. Windows are
//! read from the store plus the not-yet-flushed difference, under the flush lock, so
//! nothing is counted twice.
//!
//! Files: `minutes` (the per-minute record and sums), `budget` (figures, error budget,
//! burn rates), `service` ([`Slo`]: counting, flushing, reading windows), `slots` (a
//! span of minutes read as the stored sums of whole 1-, 5- and 60-minute slots),
//! `series` (the charts' buckets), `store` (what it needs from storage).

pub mod alerts;
mod budget;
pub mod hist;
mod live;
pub mod metrics;
mod minutes;
pub mod series;
mod slots;
pub mod store;

mod service;

pub use budget::{BURN_WINDOWS, Budget, Figures, budget, burn_rate, round4};
pub use live::{OTHER, RouteSnap, Snapshot, UNMATCHED};
pub use minutes::{Minute, RouteMinute, Totals, minute_of};
pub use service::{Slo, WeakSlo};

/// How often the flusher writes the counters to the store.
pub const FLUSH_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// Gauges owned by other domains (jobs, backups), read at scrape time. The lead wires the
/// real one after merging; until then nothing is shown for them.
pub trait GaugeSource: Send + Sync {
    /// (queue, status, count).
    fn jobs_by_queue_status(&self) -> Vec<(String, String, u64)> {
        Vec::new()
    }
    /// (queue, jobs waiting to run).
    fn queue_depth(&self) -> Vec<(String, u64)> {
        Vec::new()
    }
    fn stuck_jobs(&self) -> Option<u64> {
        None
    }
    fn last_backup_age_secs(&self) -> Option<f64> {
        None
    }
    fn last_verified_backup_age_secs(&self) -> Option<f64> {
        None
    }
}

/// Minutes that count neither against uptime nor against the error budget (planned
/// maintenance): sorted, disjoint, inclusive ranges of minutes since the epoch within
/// `from..=to`.
pub trait MinuteExclusions: Send + Sync {
    fn excluded(&self, from: u64, to: u64) -> Vec<(u64, u64)>;
}
