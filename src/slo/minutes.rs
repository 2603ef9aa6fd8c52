//! The per-minute record and sums over spans of minutes.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::hist::{self, BUCKETS};
use super::live::Snapshot;
use crate::store::Record;

/// Minutes since the Unix epoch: the key of a minute record.
pub fn minute_of(t: DateTime<Utc>) -> u64 {
    (t.timestamp().max(0) / 60) as u64
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

pub(super) fn add_vec(into: &mut Vec<u64>, from: &[u64]) {
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

/// Sums over a span of minutes; also what the store keeps per slot of 1, 5 and 60
/// minutes beside the minute records (see [`Slot`](super::store::Slot)).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
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

impl Record for Totals {
    const NAME: &'static str = "slo sums";
    const VERSION: u8 = 1;
}

impl Totals {
    /// The sums of one minute's record.
    pub fn of(m: &Minute) -> Totals {
        let mut t = Totals::default();
        t.add_minute(m);
        t
    }

    pub(super) fn add_minute(&mut self, m: &Minute) {
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

    pub fn add(&mut self, o: &Totals) {
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

    /// Take away the sums of minutes that do not count (maintenance), or a record's old
    /// sums from its slot's before its new ones are added.
    pub fn sub(&mut self, o: &Totals) {
        self.requests = self.requests.saturating_sub(o.requests);
        self.errors = self.errors.saturating_sub(o.errors);
        for (a, b) in self.buckets.iter_mut().zip(&o.buckets) {
            *a = a.saturating_sub(*b);
        }
        self.sum_us = self.sum_us.saturating_sub(o.sum_us);
        self.webhooks_ok = self.webhooks_ok.saturating_sub(o.webhooks_ok);
        self.webhooks_failed = self.webhooks_failed.saturating_sub(o.webhooks_failed);
        self.ticks = self.ticks.saturating_sub(o.ticks);
        self.rate_limited = self.rate_limited.saturating_sub(o.rate_limited);
        self.up_minutes = self.up_minutes.saturating_sub(o.up_minutes);
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
pub(super) fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 { 0.0 } else { a as f64 / b as f64 }
}
