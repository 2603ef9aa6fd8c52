//! The SLO service: counters on the request path, the flush into minute records, and the
//! figures read back over windows.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use chrono::{DateTime, Utc};

use super::minutes::{Minute, Totals, add_vec, minute_of, ratio};
use super::store::MinuteStore;
use super::{BURN_WINDOWS, Figures, GaugeSource, Snapshot, budget, burn_rate, hist, live};
use crate::config::{Config, SloTargets};
use crate::store::{Commit, StoreError};

struct Inner {
    live: live::Live,
    minutes: Arc<dyn MinuteStore>,
    clock: crate::clock::Clock,
    targets: SloTargets,
    window_days: u64,
    tick_secs: u64,
    first_minute: u64,
    started_at: DateTime<Utc>,
    /// What has been added to the store so far; held while flushing and while reading a
    /// window so the unflushed difference is counted exactly once.
    flushed: Mutex<Snapshot>,
    /// Sums of whole hours that are over (keyed by hour since the epoch): a 30-day window
    /// reads ~720 of these plus at most 120 minute records, instead of 43,200 records.
    closed_hours: Mutex<HashMap<u64, Totals>>,
    gauges: RwLock<Option<Arc<dyn GaugeSource>>>,
    /// A scheduler runs here, so a stale tick is worth an alert.
    ticks_expected: AtomicBool,
    /// The minute this process last marked up.
    last_marked: AtomicU64,
}

/// The SLO handle; cheap to clone.
#[derive(Clone)]
pub struct Slo(Arc<Inner>);

/// See [`Slo::downgrade`].
#[derive(Clone)]
pub struct WeakSlo(std::sync::Weak<Inner>);

impl WeakSlo {
    pub fn upgrade(&self) -> Option<Slo> {
        self.0.upgrade().map(Slo)
    }
}

impl Slo {
    pub fn open(
        minutes: Arc<dyn MinuteStore>,
        config: &Config,
        clock: crate::clock::Clock,
        first_started_at: &str,
    ) -> Result<Slo, StoreError> {
        let now = clock.now();
        let first = DateTime::parse_from_rfc3339(first_started_at)
            .map(|t| t.to_utc())
            .unwrap_or(now);
        Ok(Slo(Arc::new(Inner {
            live: live::Live::default(),
            minutes,
            clock,
            targets: config.slo.clone(),
            window_days: config.slo_window_days,
            tick_secs: config.scheduler_tick_secs,
            first_minute: minute_of(first),
            started_at: now,
            flushed: Mutex::default(),
            closed_hours: Mutex::default(),
            gauges: RwLock::new(None),
            ticks_expected: AtomicBool::new(false),
            last_marked: AtomicU64::new(u64::MAX),
        })))
    }

    pub fn targets(&self) -> &SloTargets {
        &self.0.targets
    }

    pub fn window_days(&self) -> u64 {
        self.0.window_days
    }

    // ---- counting (cheap; called from requests, webhooks, the scheduler, workers) ----

    /// Count one response. `route` is the matched route pattern ([`UNMATCHED`](super::UNMATCHED) when none).
    pub fn record_request(&self, route: &str, status: u16, elapsed: std::time::Duration) {
        let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        self.0.live.record(route, status, micros);
    }

    /// Count a webhook delivery to us (Stripe) as processed or failed.
    pub fn record_webhook(&self, ok: bool) {
        let c = if ok {
            &self.0.live.webhooks_ok
        } else {
            &self.0.live.webhooks_failed
        };
        c.fetch_add(1, Ordering::Relaxed);
    }

    /// Count a scheduler tick made at `at`.
    pub fn record_tick(&self, at: DateTime<Utc>) {
        self.expect_ticks();
        self.0.live.ticks.fetch_add(1, Ordering::Relaxed);
        self.0
            .live
            .last_tick_ms
            .fetch_max(at.timestamp_millis(), Ordering::Relaxed);
    }

    /// Say that a scheduler runs in this process (its first tick says so too): from now
    /// on a tick older than two intervals raises an alert.
    pub fn expect_ticks(&self) {
        self.0.ticks_expected.store(true, Ordering::Relaxed);
    }

    pub fn ticks_expected(&self) -> bool {
        self.0.ticks_expected.load(Ordering::Relaxed)
    }

    /// Count a finished job attempt (`outcome`: succeeded, failed, dead, ...).
    /// A handle that does not keep the SLO alive: for hooks installed in other domains
    /// that the SLO itself refers to (the jobs gauges), so no reference cycle forms.
    pub fn downgrade(&self) -> WeakSlo {
        WeakSlo(Arc::downgrade(&self.0))
    }

    pub fn record_job_outcome(&self, kind: &str, outcome: &str) {
        let mut jobs = self.0.live.jobs.lock().unwrap_or_else(|p| p.into_inner());
        *jobs
            .entry((kind.to_string(), outcome.to_string()))
            .or_insert(0) += 1;
    }

    /// Count a request refused by the rate limiter.
    pub fn record_rate_limited(&self) {
        self.0.live.rate_limited.fetch_add(1, Ordering::Relaxed);
    }

    /// Install the source of the jobs and backup gauges shown by `/metrics`.
    pub fn set_gauges(&self, source: Arc<dyn GaugeSource>) {
        *self.0.gauges.write().unwrap_or_else(|p| p.into_inner()) = Some(source);
    }

    pub(crate) fn gauges(&self) -> Option<Arc<dyn GaugeSource>> {
        self.0
            .gauges
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The counters since this process started (what `/metrics` shows).
    pub fn snapshot(&self) -> Snapshot {
        self.0.live.snapshot()
    }

    /// Seconds since the last scheduler tick, or since this process started when there was
    /// none yet (a fresh server is not "stale").
    pub fn tick_age_secs(&self, now: DateTime<Utc>) -> f64 {
        let last = self.0.live.last_tick_ms.load(Ordering::Relaxed);
        let since = if last == i64::MIN {
            self.0.started_at.timestamp_millis()
        } else {
            last
        };
        ((now.timestamp_millis() - since).max(0)) as f64 / 1000.0
    }

    pub fn tick_secs(&self) -> u64 {
        self.0.tick_secs
    }

    // ---- the store ----

    /// Add what was counted since the last flush to the current minute and mark it up.
    /// Returns the commit of what was written, if anything was.
    pub fn flush(&self) -> Result<Option<Commit>, StoreError> {
        let now = minute_of(self.0.clock.now());
        let mut flushed = self.0.flushed.lock().unwrap_or_else(|p| p.into_inner());
        let snap = self.0.live.snapshot();
        let delta = snap.minus(&flushed);
        // An idle server writes (and syncs) once a minute, to mark it up.
        if delta == Snapshot::default() && self.0.last_marked.load(Ordering::Relaxed) == now {
            return Ok(None);
        }
        let merged = self.merge_minute(now, &delta, true)?;
        self.0.last_marked.store(now, Ordering::Relaxed);
        *flushed = snap;
        drop(flushed);
        let pruned = self.prune(now)?;
        Ok(Some(merged.and(pruned)))
    }

    /// Drop minute records a day past the window (and their cached hours), a bounded
    /// number per call so a flush stays short.
    fn prune(&self, now_min: u64) -> Result<Commit, StoreError> {
        let keep = (self.0.window_days + 1) * 24 * 60;
        let cutoff = now_min.saturating_sub(keep);
        let commit = self.0.minutes.prune(cutoff, 1000)?;
        self.0
            .closed_hours
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|h, _| *h >= cutoff / 60);
        Ok(commit)
    }

    /// Flush, then wait until it is on disk.
    pub async fn flush_durable(&self) -> Result<(), StoreError> {
        if let Some(commit) = self.flush()? {
            commit.durable().await?;
        }
        Ok(())
    }

    /// Mark `minute` as up (the flusher does this every few seconds; tests write marks
    /// directly to model stops).
    pub fn mark_up(&self, minute: u64) -> Result<Commit, StoreError> {
        self.merge_minute(minute, &Snapshot::default(), true)
    }

    /// Add `delta` to `minute`'s record (tests feed past minutes through this).
    pub fn merge_minute(
        &self,
        minute: u64,
        delta: &Snapshot,
        up: bool,
    ) -> Result<Commit, StoreError> {
        let commit = self.0.minutes.merge(minute, &mut |m| {
            m.up |= up;
            m.add(delta);
        })?;
        // A write into an hour that is over (only tests and restores do that) makes its
        // cached sum stale.
        let now_hour = minute_of(self.0.clock.now()) / 60;
        if minute / 60 < now_hour {
            self.0
                .closed_hours
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&(minute / 60));
        }
        Ok(commit)
    }

    fn sum_range(&self, from: u64, to: u64) -> Result<Totals, StoreError> {
        let mut t = Totals::default();
        for r in self.0.minutes.range(from, to) {
            let (_, m) = r?;
            t.add_minute(&m);
        }
        Ok(t)
    }

    /// Sums of the stored minutes `from..=to` (not the unflushed ones).
    fn stored(&self, from: u64, to: u64, now_min: u64) -> Result<Totals, StoreError> {
        let mut t = Totals::default();
        let mut m = from;
        while m <= to {
            let hour = m / 60;
            let hour_end = hour * 60 + 59;
            if m == hour * 60 && hour_end <= to && hour_end < now_min {
                let cached = self
                    .0
                    .closed_hours
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .get(&hour)
                    .cloned();
                let h = match cached {
                    Some(h) => h,
                    None => {
                        let h = self.sum_range(m, hour_end)?;
                        self.0
                            .closed_hours
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .insert(hour, h.clone());
                        h
                    }
                };
                t.add(&h);
            } else {
                t.add(&self.sum_range(m, hour_end.min(to))?);
            }
            m = hour_end + 1;
        }
        Ok(t)
    }

    /// Compute every figure now.
    pub fn figures(&self) -> Result<Figures, StoreError> {
        let now = self.0.clock.now();
        let now_min = minute_of(now);
        let window = self.0.window_days * 24 * 60;
        let t = &self.0.targets;

        let flushed = self.0.flushed.lock().unwrap_or_else(|p| p.into_inner());
        let unflushed = self.0.live.snapshot().minus(&flushed);
        let mut pending = Minute::default();
        pending.add(&unflushed);
        let mut pending_t = Totals::default();
        pending_t.add_minute(&pending);

        let sum = |minutes: u64| -> Result<Totals, StoreError> {
            let from = (now_min + 1).saturating_sub(minutes);
            let mut s = self.stored(from, now_min, now_min)?;
            s.add(&pending_t);
            Ok(s)
        };

        let win = sum(window)?;
        let hour = sum(60)?;
        let mut burn_rates = Vec::with_capacity(BURN_WINDOWS.len());
        for (label, minutes) in BURN_WINDOWS {
            let s = sum(minutes)?;
            burn_rates.push((label, burn_rate(t, s.requests, s.errors)));
        }

        // Uptime: minutes since the first start (inside the window), the current one
        // counted as up — we are answering.
        // Minutes before the first mark were never measured (a home older than this
        // code): they count neither as up nor as down.
        let first_mark = self.0.minutes.first()?.unwrap_or(now_min);
        let first = self
            .0
            .first_minute
            .max(first_mark)
            .max((now_min + 1).saturating_sub(window));
        let first = first.min(now_min);
        let observed = now_min - first + 1;
        let current_marked = self.0.minutes.get(now_min)?.is_some_and(|m| m.up);
        let up_in_window = self.stored(first, now_min, now_min)?.up_minutes;
        let up = (up_in_window + u64::from(!current_marked)).min(observed);

        // Slowest routes of the last hour, from the minute records.
        let mut routes: BTreeMap<String, Vec<u64>> = BTreeMap::new();
        let from = (now_min + 1).saturating_sub(60);
        for r in self.0.minutes.range(from, now_min) {
            let (_, m) = r?;
            for rm in m.routes {
                add_vec(routes.entry(rm.route).or_default(), &rm.buckets);
            }
        }
        for rm in pending.routes {
            add_vec(routes.entry(rm.route).or_default(), &rm.buckets);
        }
        drop(flushed);
        let mut slowest: Vec<(String, u64, f64)> = routes
            .into_iter()
            .map(|(r, b)| {
                let n = b.iter().sum();
                let p95 = hist::quantile_ms(&b, 0.95);
                (r, n, p95)
            })
            .collect();
        slowest.sort_by(|a, b| b.2.total_cmp(&a.2).then_with(|| a.0.cmp(&b.0)));
        slowest.truncate(5);

        let webhooks = win.webhooks_ok + win.webhooks_failed;
        Ok(Figures {
            window_days: self.0.window_days,
            requests: win.requests,
            errors: win.errors,
            availability_pct: 100.0 - win.error_ratio() * 100.0,
            uptime_pct: ratio(up, observed) * 100.0,
            latency_p95_ms: win.p95_ms(),
            latency_p95_1h_ms: hour.p95_ms(),
            error_rate_pct: win.error_ratio() * 100.0,
            webhook_success_pct: if webhooks == 0 {
                100.0
            } else {
                ratio(win.webhooks_ok, webhooks) * 100.0
            },
            scheduler_tick_age_secs: self.tick_age_secs(now),
            budget: budget(
                t,
                self.0.window_days,
                win.requests,
                win.errors,
                observed - up,
            ),
            burn_rates,
            up_minutes: up,
            observed_minutes: observed,
            rate_limited: win.rate_limited,
            slowest_routes: slowest,
        })
    }
}
