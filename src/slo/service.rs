//! The SLO service: counters on the request path, the flush into minute records, and the
//! figures read back over windows.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use chrono::{DateTime, Utc};

use super::minutes::{Minute, Totals, add_vec, minute_of, ratio};
use super::slots;
use super::store::MinuteStore;
use super::{
    BURN_WINDOWS, Figures, GaugeSource, MinuteExclusions, Snapshot, budget, burn_rate, hist, live,
};
use crate::config::{Config, SloTargets};
use crate::store::{Commit, StoreError};

pub(super) struct Inner {
    pub(super) live: live::Live,
    minutes: Arc<dyn MinuteStore>,
    pub(super) clock: crate::clock::Clock,
    targets: SloTargets,
    window_days: u64,
    tick_secs: u64,
    first_minute: u64,
    started_at: DateTime<Utc>,
    /// What has been added to the store so far; held while flushing and while reading a
    /// window so the unflushed difference is counted exactly once.
    pub(super) flushed: Mutex<Snapshot>,
    gauges: RwLock<Option<Arc<dyn GaugeSource>>>,
    /// A scheduler runs here, so a stale tick is worth an alert.
    ticks_expected: AtomicBool,
    /// The minute this process last marked up.
    last_marked: AtomicU64,
    exclusions: RwLock<Option<Arc<dyn MinuteExclusions>>>,
}

/// The SLO handle; cheap to clone.
#[derive(Clone)]
pub struct Slo(pub(super) Arc<Inner>);

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
            gauges: RwLock::new(None),
            ticks_expected: AtomicBool::new(false),
            last_marked: AtomicU64::new(u64::MAX),
            exclusions: RwLock::new(None),
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

    /// Install the source of the minutes left out of the figures (maintenance windows).
    pub fn set_exclusions(&self, source: Arc<dyn MinuteExclusions>) {
        *self.0.exclusions.write().unwrap_or_else(|p| p.into_inner()) = Some(source);
    }

    fn excluded(&self, from: u64, to: u64) -> Vec<(u64, u64)> {
        let source = self
            .0
            .exclusions
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        source.map(|s| s.excluded(from, to)).unwrap_or_default()
    }

    /// Minutes since `from` in which requests were refused with 429, with their counts.
    pub fn rate_limited_minutes(&self, from: u64) -> Result<Vec<(u64, u64)>, StoreError> {
        let mut out = Vec::new();
        for r in self.0.minutes.range(from, u64::MAX) {
            let (minute, m) = r?;
            if m.rate_limited > 0 {
                out.push((minute, m.rate_limited));
            }
        }
        Ok(out)
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

    /// Drop minute records (and their slots' sums) a day past the window, a bounded
    /// number per call so a flush stays short.
    fn prune(&self, now_min: u64) -> Result<Commit, StoreError> {
        let keep = (self.0.window_days + 1) * 24 * 60;
        self.0.minutes.prune(now_min.saturating_sub(keep), 1000)
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
        self.0.minutes.merge(minute, &mut |m| {
            m.up |= up;
            m.add(delta);
        })
    }

    /// Sums of the stored minutes `from..=to` (not the unflushed ones), from the
    /// longest slots that fit: at most five short reads of sums, whatever the span.
    pub(super) fn stored(&self, from: u64, to: u64) -> Result<Totals, StoreError> {
        let mut t = slots::read(&*self.0.minutes, &[(from, to)])?;
        Ok(t.pop().unwrap_or_default())
    }

    /// Sums of the stored minutes of each span (as [`Slo::stored`] of each), read together.
    pub(super) fn stored_spans(&self, spans: &[(u64, u64)]) -> Result<Vec<Totals>, StoreError> {
        slots::read(&*self.0.minutes, spans)
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

        // Maintenance minutes are left out of every window, the current one included.
        let window_from = (now_min + 1).saturating_sub(window);
        let excluded = self.excluded(window_from, now_min);
        let now_excluded = excluded.iter().any(|&(a, b)| a <= now_min && now_min <= b);
        let without = |from: u64, mut s: Totals| -> Result<Totals, StoreError> {
            for &(a, b) in &excluded {
                if b >= from {
                    s.sub(&self.stored(a.max(from), b)?);
                }
            }
            Ok(s)
        };
        // Every window ends now: read together, they share the reads of the current
        // day's, hour's and 5 minutes' parts.
        let lengths: Vec<u64> = [window, 60]
            .into_iter()
            .chain(BURN_WINDOWS.iter().map(|(_, m)| *m))
            .collect();
        let spans: Vec<(u64, u64)> = lengths
            .iter()
            .map(|m| ((now_min + 1).saturating_sub(*m), now_min))
            .collect();
        let stored = self.stored_spans(&spans)?;
        let sum = |i: usize| -> Result<Totals, StoreError> {
            let mut s = stored[i].clone();
            if !now_excluded {
                s.add(&pending_t);
            }
            without(spans[i].0, s)
        };

        let win = sum(0)?;
        let hour = sum(1)?;
        let mut burn_rates = Vec::with_capacity(BURN_WINDOWS.len());
        for (k, (label, _)) in BURN_WINDOWS.iter().enumerate() {
            let s = sum(2 + k)?;
            burn_rates.push((*label, burn_rate(t, s.requests, s.errors)));
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
        let excluded_minutes: u64 = excluded
            .iter()
            .filter(|&&(_, b)| b >= first)
            .map(|&(a, b)| b - a.max(first) + 1)
            .sum();
        let observed = (now_min - first + 1).saturating_sub(excluded_minutes);
        let current_marked = now_excluded || self.0.minutes.get(now_min)?.is_some_and(|m| m.up);
        // On a home older than the window, the window's own sums.
        let since_first = match first == spans[0].0 {
            true => stored[0].clone(),
            false => self.stored(first, now_min)?,
        };
        let up_in_window = without(first, since_first)?.up_minutes;
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
            // A window that was all maintenance so far was never down.
            uptime_pct: if observed == 0 {
                100.0
            } else {
                ratio(up, observed) * 100.0
            },
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
