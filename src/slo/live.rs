//! In-memory counters on the request path: atomics only, no lock.
//!
//! Routes get a slot in a fixed open-addressing table the first time they are seen (a
//! `OnceLock` per slot, so a new route is claimed without a lock and never moves); when the
//! table is full, further routes share the `other` slot, which bounds both memory and the
//! label cardinality of `/metrics`. Counters are cumulative since the process started:
//! `/metrics` shows them as they are, and the flusher stores their differences per minute.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};

use super::hist::{BUCKETS, bucket_of};

/// How many distinct route labels are counted separately.
const SLOTS: usize = 128;
/// The label of requests that matched no route (404s from the fallback).
pub const UNMATCHED: &str = "unmatched";
/// The label shared by routes past the table's capacity.
pub const OTHER: &str = "other";

/// Counters of one route.
#[derive(Default)]
pub(crate) struct RouteCounters {
    /// Responses by status class: 1xx, 2xx, 3xx, 4xx, 5xx.
    classes: [AtomicU64; 5],
    buckets: [AtomicU64; BUCKETS],
    sum_us: AtomicU64,
}

impl RouteCounters {
    fn record(&self, status: u16, micros: u64) {
        let class = (status / 100).clamp(1, 5) as usize - 1;
        self.classes[class].fetch_add(1, Ordering::Relaxed);
        self.buckets[bucket_of(micros)].fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(micros, Ordering::Relaxed);
    }

    fn snapshot(&self) -> RouteSnap {
        RouteSnap {
            classes: self.classes.each_ref().map(|a| a.load(Ordering::Relaxed)),
            buckets: self.buckets.each_ref().map(|a| a.load(Ordering::Relaxed)),
            sum_us: self.sum_us.load(Ordering::Relaxed),
        }
    }
}

#[derive(Default)]
struct Slot {
    name: OnceLock<Box<str>>,
    counters: RouteCounters,
}

/// A copy of one route's counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteSnap {
    pub classes: [u64; 5],
    pub buckets: [u64; BUCKETS],
    pub sum_us: u64,
}

impl Default for RouteSnap {
    fn default() -> Self {
        Self {
            classes: [0; 5],
            buckets: [0; BUCKETS],
            sum_us: 0,
        }
    }
}

impl RouteSnap {
    pub fn requests(&self) -> u64 {
        self.classes.iter().sum()
    }
    pub fn errors(&self) -> u64 {
        self.classes[4]
    }
    /// `self - earlier`, saturating (counters only grow).
    pub fn minus(&self, earlier: &RouteSnap) -> RouteSnap {
        let mut out = *self;
        for (o, e) in out.classes.iter_mut().zip(earlier.classes) {
            *o = o.saturating_sub(e);
        }
        for (o, e) in out.buckets.iter_mut().zip(earlier.buckets) {
            *o = o.saturating_sub(e);
        }
        out.sum_us = out.sum_us.saturating_sub(earlier.sum_us);
        out
    }
}

/// A copy of every counter at one moment.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    pub routes: BTreeMap<String, RouteSnap>,
    pub webhooks_ok: u64,
    pub webhooks_failed: u64,
    pub ticks: u64,
    pub rate_limited: u64,
    /// (kind, outcome) → count.
    pub jobs: BTreeMap<(String, String), u64>,
}

impl Snapshot {
    /// What happened between `earlier` and `self`.
    pub fn minus(&self, earlier: &Snapshot) -> Snapshot {
        let routes = self
            .routes
            .iter()
            .map(|(k, v)| {
                let e = earlier.routes.get(k).copied().unwrap_or_default();
                (k.clone(), v.minus(&e))
            })
            .filter(|(_, v)| v.requests() > 0)
            .collect();
        let jobs = self
            .jobs
            .iter()
            .map(|(k, v)| {
                (
                    k.clone(),
                    v.saturating_sub(earlier.jobs.get(k).copied().unwrap_or(0)),
                )
            })
            .filter(|(_, v)| *v > 0)
            .collect();
        Snapshot {
            routes,
            webhooks_ok: self.webhooks_ok.saturating_sub(earlier.webhooks_ok),
            webhooks_failed: self.webhooks_failed.saturating_sub(earlier.webhooks_failed),
            ticks: self.ticks.saturating_sub(earlier.ticks),
            rate_limited: self.rate_limited.saturating_sub(earlier.rate_limited),
            jobs,
        }
    }
}

/// Every live counter.
pub(crate) struct Live {
    slots: Box<[Slot]>,
    other: Slot,
    pub(crate) webhooks_ok: AtomicU64,
    pub(crate) webhooks_failed: AtomicU64,
    pub(crate) ticks: AtomicU64,
    /// Milliseconds since the epoch of the last tick; `i64::MIN` when none.
    pub(crate) last_tick_ms: AtomicI64,
    pub(crate) rate_limited: AtomicU64,
    /// Job outcomes come from workers, not requests: a short lock is fine there.
    pub(crate) jobs: Mutex<BTreeMap<(String, String), u64>>,
}

impl Default for Live {
    fn default() -> Self {
        Self {
            slots: (0..SLOTS).map(|_| Slot::default()).collect(),
            other: Slot::default(),
            webhooks_ok: AtomicU64::new(0),
            webhooks_failed: AtomicU64::new(0),
            ticks: AtomicU64::new(0),
            last_tick_ms: AtomicI64::new(i64::MIN),
            rate_limited: AtomicU64::new(0),
            jobs: Mutex::default(),
        }
    }
}

/// FNV-1a: a few nanoseconds for a route pattern, no allocation.
fn hash(s: &str) -> usize {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h as usize
}

impl Live {
    fn counters(&self, route: &str) -> &RouteCounters {
        let start = hash(route) % SLOTS;
        for i in 0..SLOTS {
            let slot = &self.slots[(start + i) % SLOTS];
            let name = match slot.name.get() {
                Some(n) => n,
                // Claim the free slot; if another thread claimed it first, `get` says
                // for which route.
                None => slot.name.get_or_init(|| route.into()),
            };
            if &**name == route {
                return &slot.counters;
            }
        }
        &self.other.counters
    }

    /// Count one response: `route` is the matched pattern, `micros` the time taken.
    pub(crate) fn record(&self, route: &str, status: u16, micros: u64) {
        self.counters(route).record(status, micros);
    }

    pub(crate) fn snapshot(&self) -> Snapshot {
        let mut routes = BTreeMap::new();
        for slot in self.slots.iter() {
            if let Some(name) = slot.name.get() {
                routes.insert(name.to_string(), slot.counters.snapshot());
            }
        }
        let other = self.other.counters.snapshot();
        if other.requests() > 0 {
            routes.insert(OTHER.to_string(), other);
        }
        Snapshot {
            routes,
            webhooks_ok: self.webhooks_ok.load(Ordering::Relaxed),
            webhooks_failed: self.webhooks_failed.load(Ordering::Relaxed),
            ticks: self.ticks.load(Ordering::Relaxed),
            rate_limited: self.rate_limited.load(Ordering::Relaxed),
            jobs: self.jobs.lock().unwrap_or_else(|p| p.into_inner()).clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_get_their_own_counters_and_overflow_shares_one() {
        let live = Live::default();
        live.record("/a", 200, 1_000);
        live.record("/a", 503, 1_000);
        live.record("/b", 404, 600_000);
        let s = live.snapshot();
        assert_eq!(s.routes["/a"].requests(), 2);
        assert_eq!(s.routes["/a"].errors(), 1);
        assert_eq!(s.routes["/b"].classes[3], 1);
        for i in 0..(SLOTS + 10) {
            live.record(&format!("/r{i}"), 200, 1);
        }
        let s = live.snapshot();
        assert_eq!(s.routes.len(), SLOTS + 1);
        assert_eq!(s.routes[OTHER].requests(), 12);
    }

    #[test]
    fn differences_between_snapshots() {
        let live = Live::default();
        live.record("/a", 200, 1_000);
        let first = live.snapshot();
        live.record("/a", 500, 2_000);
        let d = live.snapshot().minus(&first);
        assert_eq!(d.routes["/a"].requests(), 1);
        assert_eq!(d.routes["/a"].errors(), 1);
        assert_eq!(d.routes["/a"].sum_us, 2_000);
    }
}
