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

pub mod alerts;
pub mod hist;
mod live;
pub mod metrics;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::config::{Config, SloTargets};
use crate::store::{Record, Store, StoreError, Table};
use hist::BUCKETS;
pub use live::{OTHER, RouteSnap, Snapshot, UNMATCHED};

const MINUTES_TREE: &str = "slo_minutes";

/// How often the flusher writes the counters to the store.
pub const FLUSH_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// Burn-rate windows, in minutes, with their labels (Google SRE workbook, ch. 5).
pub const BURN_WINDOWS: [(&str, u64); 7] = [
    ("5m", 5),
    ("30m", 30),
    ("1h", 60),
    ("2h", 120),
    ("6h", 360),
    ("1d", 1440),
    ("3d", 4320),
];

/// Minutes since the Unix epoch: the key of a minute record.
pub fn minute_of(t: DateTime<Utc>) -> u64 {
    (t.timestamp().max(0) / 60) as u64
}

fn key_minute(k: &[u8]) -> u64 {
    k.try_into().map(u64::from_be_bytes).unwrap_or(0)
}

/// One route's traffic in one minute.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct RouteMinute {
    pub route: String,
    /// By status class: 1xx … 5xx.
    pub classes: Vec<u64>,
    /// Per latency bucket (see [`hist::BOUNDS_MS`]), not cumulative.
    pub buckets: Vec<u64>,
    pub sum_us: u64,
}

/// Everything counted in one minute. Stored at key `minute_of(t)` (big-endian).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct Minute {
    /// The server was running during this minute.
    pub up: bool,
    pub routes: Vec<RouteMinute>,
    pub webhooks_ok: u64,
    pub webhooks_failed: u64,
    pub ticks: u64,
    pub rate_limited: u64,
    /// (kind, outcome, count).
    pub jobs: Vec<(String, String, u64)>,
}

impl Record for Minute {
    const NAME: &'static str = "slo minute";
    const VERSION: u8 = 1;
}

fn add_vec(into: &mut Vec<u64>, from: &[u64]) {
    if into.len() < from.len() {
        into.resize(from.len(), 0);
    }
    for (a, b) in into.iter_mut().zip(from) {
        *a += b;
    }
}

impl Minute {
    /// Add a difference of counters to this minute.
    pub fn add(&mut self, d: &Snapshot) {
        for (name, r) in &d.routes {
            let idx = match self.routes.iter().position(|x| &x.route == name) {
                Some(i) => i,
                None => {
                    self.routes.push(RouteMinute {
                        route: name.clone(),
                        classes: vec![0; 5],
                        buckets: vec![0; BUCKETS],
                        sum_us: 0,
                    });
                    self.routes.len() - 1
                }
            };
            let m = &mut self.routes[idx];
            add_vec(&mut m.classes, &r.classes);
            add_vec(&mut m.buckets, &r.buckets);
            m.sum_us += r.sum_us;
        }
        self.webhooks_ok += d.webhooks_ok;
        self.webhooks_failed += d.webhooks_failed;
        self.ticks += d.ticks;
        self.rate_limited += d.rate_limited;
        for ((kind, outcome), n) in &d.jobs {
            match self
                .jobs
                .iter_mut()
                .find(|(k, o, _)| k == kind && o == outcome)
            {
                Some(j) => j.2 += n,
                None => self.jobs.push((kind.clone(), outcome.clone(), *n)),
            }
        }
    }
}

/// Sums over a span of minutes.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Totals {
    pub requests: u64,
    pub errors: u64,
    pub buckets: Vec<u64>,
    pub sum_us: u64,
    pub webhooks_ok: u64,
    pub webhooks_failed: u64,
    pub ticks: u64,
    pub rate_limited: u64,
    /// Minutes marked up.
    pub up_minutes: u64,
}

impl Totals {
    fn add_minute(&mut self, m: &Minute) {
        for r in &m.routes {
            self.requests += r.classes.iter().sum::<u64>();
            self.errors += r.classes.get(4).copied().unwrap_or(0);
            add_vec(&mut self.buckets, &r.buckets);
            self.sum_us += r.sum_us;
        }
        self.webhooks_ok += m.webhooks_ok;
        self.webhooks_failed += m.webhooks_failed;
        self.ticks += m.ticks;
        self.rate_limited += m.rate_limited;
        self.up_minutes += u64::from(m.up);
    }

    fn add(&mut self, o: &Totals) {
        self.requests += o.requests;
        self.errors += o.errors;
        add_vec(&mut self.buckets, &o.buckets);
        self.sum_us += o.sum_us;
        self.webhooks_ok += o.webhooks_ok;
        self.webhooks_failed += o.webhooks_failed;
        self.ticks += o.ticks;
        self.rate_limited += o.rate_limited;
        self.up_minutes += o.up_minutes;
    }

    /// errors / requests, 0 with no requests.
    pub fn error_ratio(&self) -> f64 {
        ratio(self.errors, self.requests)
    }

    pub fn p95_ms(&self) -> f64 {
        hist::quantile_ms(&self.buckets, 0.95)
    }
}

/// `a / b`, 0 when `b` is 0: no figure is ever NaN.
fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 { 0.0 } else { a as f64 / b as f64 }
}

/// Round for display (4 decimals): the JSON stays readable and stable.
pub fn round4(x: f64) -> f64 {
    if x.is_finite() {
        (x * 10_000.0).round() / 10_000.0
    } else {
        0.0
    }
}

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

/// The figures of the SLO window and the burn-rate windows at one moment.
#[derive(Debug, Clone, PartialEq)]
pub struct Figures {
    pub window_days: u64,
    pub requests: u64,
    pub errors: u64,
    pub availability_pct: f64,
    pub uptime_pct: f64,
    pub latency_p95_ms: f64,
    /// P95 of the last hour: what the latency alert watches.
    pub latency_p95_1h_ms: f64,
    pub error_rate_pct: f64,
    pub webhook_success_pct: f64,
    pub scheduler_tick_age_secs: f64,
    pub budget: Budget,
    /// In the order of [`BURN_WINDOWS`].
    pub burn_rates: Vec<(&'static str, f64)>,
    pub up_minutes: u64,
    pub observed_minutes: u64,
    pub rate_limited: u64,
    /// Routes of the last hour, slowest P95 first (at most 5).
    pub slowest_routes: Vec<(String, u64, f64)>,
}

impl Figures {
    pub fn burn(&self, label: &str) -> f64 {
        self.burn_rates
            .iter()
            .find(|(l, _)| *l == label)
            .map(|(_, r)| *r)
            .unwrap_or(0.0)
    }
}

/// The error budget of the window.
#[derive(Debug, Clone, PartialEq)]
pub struct Budget {
    /// 100 − consumed. Not clamped: below 0 says by how much the budget is overspent.
    pub remaining_pct: f64,
    /// Bad requests as a share of the allowed bad requests.
    pub consumed_pct: f64,
    /// Requests allowed to fail in the window so far: requests × (1 − availability target).
    pub allowed_errors: f64,
    /// Minutes the window may be down: window minutes × (1 − uptime target).
    pub allowed_bad_minutes: f64,
    /// Minutes down so far (observed minutes not marked up).
    pub bad_minutes: u64,
}

/// Compute the budget; pure so the arithmetic is tested on its own.
pub fn budget(t: &SloTargets, window_days: u64, requests: u64, errors: u64, down: u64) -> Budget {
    let allowed_fraction = (1.0 - t.availability_pct / 100.0).max(0.0);
    let allowed_errors = requests as f64 * allowed_fraction;
    let consumed_pct = if requests == 0 || errors == 0 {
        0.0
    } else if allowed_errors <= 0.0 {
        // A 100 % target allows nothing: any error spends the whole budget.
        100.0
    } else {
        errors as f64 / allowed_errors * 100.0
    };
    Budget {
        remaining_pct: 100.0 - consumed_pct,
        consumed_pct,
        allowed_errors,
        allowed_bad_minutes: (window_days * 24 * 60) as f64 * (1.0 - t.uptime_pct / 100.0).max(0.0),
        bad_minutes: down,
    }
}

/// Burn rate: the window's error ratio over the allowed one; 0 without traffic.
pub fn burn_rate(t: &SloTargets, requests: u64, errors: u64) -> f64 {
    let allowed = (1.0 - t.availability_pct / 100.0).max(0.0);
    let r = ratio(errors, requests);
    if r == 0.0 {
        0.0
    } else if allowed <= 0.0 {
        f64::MAX
    } else {
        r / allowed
    }
}

struct Inner {
    live: live::Live,
    table: Table<Minute>,
    store: Store,
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
        store: &Store,
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
            table: store.table(MINUTES_TREE)?,
            store: store.clone(),
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

    /// Count one response. `route` is the matched route pattern ([`UNMATCHED`] when none).
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
    /// Returns whether anything was written.
    pub fn flush(&self) -> Result<bool, StoreError> {
        let now = minute_of(self.0.clock.now());
        let mut flushed = self.0.flushed.lock().unwrap_or_else(|p| p.into_inner());
        let snap = self.0.live.snapshot();
        let delta = snap.minus(&flushed);
        // An idle server writes (and syncs) once a minute, to mark it up.
        if delta == Snapshot::default() && self.0.last_marked.load(Ordering::Relaxed) == now {
            return Ok(false);
        }
        self.merge_minute(now, &delta, true)?;
        self.0.last_marked.store(now, Ordering::Relaxed);
        *flushed = snap;
        drop(flushed);
        self.prune(now)?;
        Ok(true)
    }

    /// Drop minute records a day past the window (and their cached hours), a bounded
    /// number per call so a flush stays short.
    fn prune(&self, now_min: u64) -> Result<(), StoreError> {
        let keep = (self.0.window_days + 1) * 24 * 60;
        let cutoff = now_min.saturating_sub(keep);
        for _ in 0..1000 {
            match self.0.table.first()? {
                Some((k, _)) if key_minute(&k) < cutoff => {
                    self.0.table.remove(&k)?;
                }
                _ => break,
            }
        }
        self.0
            .closed_hours
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|h, _| *h >= cutoff / 60);
        Ok(())
    }

    /// Flush, then wait until it is on disk.
    pub async fn flush_durable(&self) -> Result<(), StoreError> {
        if self.flush()? {
            self.0.store.sync().await?;
        }
        Ok(())
    }

    /// Mark `minute` as up (the flusher does this every few seconds; tests write marks
    /// directly to model stops).
    pub fn mark_up(&self, minute: u64) -> Result<(), StoreError> {
        self.merge_minute(minute, &Snapshot::default(), true)
    }

    /// Add `delta` to `minute`'s record (tests feed past minutes through this).
    pub fn merge_minute(&self, minute: u64, delta: &Snapshot, up: bool) -> Result<(), StoreError> {
        self.0.table.update(minute.to_be_bytes(), |old| {
            let mut m = old.unwrap_or_default();
            m.up |= up;
            m.add(delta);
            Some(m)
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
        Ok(())
    }

    fn sum_range(&self, from: u64, to: u64) -> Result<Totals, StoreError> {
        let mut t = Totals::default();
        for r in self.0.table.range(from.to_be_bytes()..=to.to_be_bytes()) {
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
        let first_mark = match self.0.table.first()? {
            Some((k, _)) => key_minute(&k),
            None => now_min,
        };
        let first = self
            .0
            .first_minute
            .max(first_mark)
            .max((now_min + 1).saturating_sub(window));
        let first = first.min(now_min);
        let observed = now_min - first + 1;
        let current_marked = self
            .0
            .table
            .get(now_min.to_be_bytes())?
            .is_some_and(|m| m.up);
        let up_in_window = self.stored(first, now_min, now_min)?.up_minutes;
        let up = (up_in_window + u64::from(!current_marked)).min(observed);

        // Slowest routes of the last hour, from the minute records.
        let mut routes: BTreeMap<String, Vec<u64>> = BTreeMap::new();
        let from = (now_min + 1).saturating_sub(60);
        for r in self
            .0
            .table
            .range(from.to_be_bytes()..=now_min.to_be_bytes())
        {
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

/// Start the SLO's background tasks: the flusher (every [`FLUSH_EVERY`], and once more
/// when cancelled so a graceful stop loses nothing), the alert evaluator and, with
/// `ALERT_WEBHOOK_URL`, the webhook sender.
pub fn start(state: &crate::app::AppState) {
    let slo = state.slo.clone();
    state.supervisor.spawn("slo_flush", move |token| {
        let slo = slo.clone();
        async move {
            loop {
                slo.flush_durable().await?;
                tokio::select! {
                    _ = token.cancelled() => {
                        slo.flush_durable().await?;
                        return Ok(());
                    }
                    _ = tokio::time::sleep(FLUSH_EVERY) => {}
                }
            }
        }
    });
    let st = state.clone();
    state.supervisor.spawn("alerts", move |token| {
        let st = st.clone();
        async move {
            loop {
                if let Err(e) = alerts::evaluate(&st).await {
                    tracing::error!(error = %e, "alert evaluation failed");
                }
                tokio::select! {
                    _ = token.cancelled() => return Ok(()),
                    _ = tokio::time::sleep(alerts::EVALUATE_EVERY) => {}
                }
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn targets() -> SloTargets {
        SloTargets {
            availability_pct: 99.9,
            uptime_pct: 99.9,
            latency_p95_ms: 400.0,
            error_rate_pct: 1.0,
            webhook_success_pct: 99.0,
        }
    }

    #[test]
    fn budget_arithmetic() {
        let t = targets();
        // No traffic: the whole budget is left, nothing is NaN.
        let b = budget(&t, 30, 0, 0, 0);
        assert_eq!(b.remaining_pct, 100.0);
        assert_eq!(b.consumed_pct, 0.0);
        assert!((b.allowed_bad_minutes - 43.2).abs() < 1e-9);
        // 10,000 requests allow 10 errors; 5 spend half.
        let b = budget(&t, 30, 10_000, 5, 0);
        assert!((b.consumed_pct - 50.0).abs() < 1e-9);
        assert!((b.remaining_pct - 50.0).abs() < 1e-9);
        // 30 errors overspend: remaining goes negative, by design.
        let b = budget(&t, 30, 10_000, 30, 0);
        assert!((b.remaining_pct + 200.0).abs() < 1e-9);
    }

    #[test]
    fn burn_rate_is_error_ratio_over_allowed() {
        let t = targets();
        assert_eq!(burn_rate(&t, 0, 0), 0.0);
        // 2 % errors against 0.1 % allowed: burning 20× too fast.
        assert!((burn_rate(&t, 1000, 20) - 20.0).abs() < 1e-9);
    }
}
