//! The rate limiter's core: governor's GCRA, one keyed limiter per route class, and the
//! brute-force block on failed keys. No HTTP here: `web::access` applies it.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use governor::clock::{Clock as _, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::config::Config;

/// Which limit a route falls under. A router gets its class as a layer
/// (`web::access::limited`); routes without one (monitoring) are never limited.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Class {
    /// `RATE_LIMIT_PER_MIN`: every route not given another class.
    General,
    /// Claim, heartbeat, complete, fail: `WORKER_RATE_LIMIT_PER_MIN` (workers poll).
    Worker,
    /// The Stripe webhook: `WEBHOOK_RATE_LIMIT_PER_MIN` (Stripe sends bursts).
    Webhook,
}

impl Class {
    pub fn as_str(self) -> &'static str {
        match self {
            Class::General => "general",
            Class::Worker => "worker",
            Class::Webhook => "webhook",
        }
    }
}

/// The name of the failed-key limit, beside the route classes' names (in 429 answers and
/// their audit events).
pub const FAILED_KEYS: &str = "failed_keys";

/// The outcome of a limit check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Allowed,
    /// Refused; `report` is true for the first refusal of this client in this window
    /// (one audit event per client per window, so a flood cannot flood the log).
    Limited {
        retry_after_secs: u64,
        report: bool,
    },
}

/// `n` requests per `window`, refilled evenly; `None` when `n` is 0 (disabled).
fn quota(n: u32, window: Duration) -> Option<Quota> {
    let n = NonZeroU32::new(n)?;
    let period = window / n.get();
    Quota::with_period(period.max(Duration::from_nanos(1))).map(|q| q.allow_burst(n))
}

/// One keyed limiter that can be started afresh: governor's keyed limiters have no reset,
/// so [`Limits::clear`] swaps in a new one.
struct Keyed {
    quota: Quota,
    current: RwLock<Arc<DefaultKeyedRateLimiter<String>>>,
}

impl Keyed {
    fn get(&self) -> Arc<DefaultKeyedRateLimiter<String>> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn reset(&self) {
        *self.current.write().unwrap_or_else(|p| p.into_inner()) =
            Arc::new(RateLimiter::keyed(self.quota));
    }
}

fn limiter(n: u32, window: Duration) -> Option<Keyed> {
    quota(n, window).map(|quota| Keyed {
        quota,
        current: RwLock::new(Arc::new(RateLimiter::keyed(quota))),
    })
}

/// Every limiter, and the bookkeeping around them. Shared behind an `Arc`.
pub struct Limits {
    general: Option<Keyed>,
    worker: Option<Keyed>,
    webhook: Option<Keyed>,
    auth_fail: Option<Keyed>,
    window: Duration,
    clock: DefaultClock,
    /// IPs over the failed-key limit, until when.
    blocked: Mutex<HashMap<String, Instant>>,
    /// When a client's refusal was last reported, per class.
    reported: Mutex<HashMap<String, Instant>>,
}

impl std::fmt::Debug for Limits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limits")
            .field("window", &self.window)
            .finish()
    }
}

fn secs_ceil(d: Duration) -> u64 {
    let s = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    s.max(1)
}

impl Limits {
    pub fn new(config: &Config) -> Self {
        let window = Duration::from_secs(config.rate_limit_window_secs);
        Self {
            general: limiter(config.rate_limit_per_min, window),
            worker: limiter(config.worker_rate_limit_per_min, window),
            webhook: limiter(config.webhook_rate_limit_per_min, window),
            auth_fail: limiter(config.auth_fail_limit_per_min, window),
            window,
            clock: DefaultClock::default(),
            blocked: Mutex::default(),
            reported: Mutex::default(),
        }
    }

    pub fn window(&self) -> Duration {
        self.window
    }

    /// Count one request of `client` (`key:<id>` or `ip:<addr>`) against `class`.
    pub fn check(&self, class: Class, client: &str) -> Verdict {
        let limiter = match class {
            Class::General => &self.general,
            Class::Worker => &self.worker,
            Class::Webhook => &self.webhook,
        };
        let Some(limiter) = limiter else {
            return Verdict::Allowed;
        };
        let key = client.to_string();
        match limiter.get().check_key(&key) {
            Ok(()) => Verdict::Allowed,
            Err(not_until) => Verdict::Limited {
                retry_after_secs: secs_ceil(not_until.wait_time_from(self.clock.now())),
                report: self.first_in_window(&format!("{}:{client}", class.as_str())),
            },
        }
    }

    /// Is `ip` blocked for too many failed keys?
    pub fn blocked(&self, ip: &str) -> Verdict {
        let now = Instant::now();
        let until = self
            .blocked
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(ip)
            .copied();
        match until {
            Some(until) if until > now => Verdict::Limited {
                retry_after_secs: secs_ceil(until - now),
                report: self.first_in_window(&format!("auth:{ip}")),
            },
            _ => Verdict::Allowed,
        }
    }

    /// Count a failed key (or login) from `ip`. Past `AUTH_FAIL_LIMIT_PER_MIN` the IP is
    /// blocked, whatever key it sends, until the window has passed.
    pub fn auth_failed(&self, ip: &str) -> Verdict {
        let Some(limiter) = &self.auth_fail else {
            return Verdict::Allowed;
        };
        match limiter.get().check_key(&ip.to_string()) {
            Ok(()) => Verdict::Allowed,
            Err(_) => {
                let until = Instant::now() + self.window;
                self.blocked
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(ip.to_string(), until);
                Verdict::Limited {
                    retry_after_secs: secs_ceil(self.window),
                    report: self.first_in_window(&format!("auth:{ip}")),
                }
            }
        }
    }

    fn first_in_window(&self, key: &str) -> bool {
        let now = Instant::now();
        let mut reported = self.reported.lock().unwrap_or_else(|p| p.into_inner());
        match reported.get(key) {
            Some(at) if now.duration_since(*at) < self.window => false,
            _ => {
                reported.insert(key.to_string(), now);
                true
            }
        }
    }

    /// Forget every count and block at once (`POST /api/ratelimits/clear`): every client
    /// starts again with a full allowance. Answers how many addresses were blocked.
    pub fn clear(&self) -> usize {
        for l in [&self.general, &self.worker, &self.webhook, &self.auth_fail]
            .into_iter()
            .flatten()
        {
            l.reset();
        }
        let blocked = {
            let mut b = self.blocked.lock().unwrap_or_else(|p| p.into_inner());
            let n = b.len();
            b.clear();
            n
        };
        self.reported
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
        blocked
    }

    /// Forget clients whose limits have fully refilled (run periodically).
    pub fn retain_recent(&self) {
        for l in [&self.general, &self.worker, &self.webhook, &self.auth_fail]
            .into_iter()
            .flatten()
        {
            let l = l.get();
            l.retain_recent();
            l.shrink_to_fit();
        }
        let now = Instant::now();
        self.blocked
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|_, until| *until > now);
        self.reported
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|_, at| now.duration_since(*at) < self.window);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(env: &[(&str, &str)]) -> Config {
        let args = crate::config::ServeArgs::default();
        let env = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_sources(&args, &env).unwrap()
    }

    #[test]
    fn limits_refuse_past_the_quota_and_report_once() {
        let l = Limits::new(&config(&[("RATE_LIMIT_PER_MIN", "3")]));
        for _ in 0..3 {
            assert_eq!(l.check(Class::General, "ip:a"), Verdict::Allowed);
        }
        match l.check(Class::General, "ip:a") {
            Verdict::Limited {
                retry_after_secs,
                report,
            } => {
                assert!(retry_after_secs >= 1);
                assert!(report);
            }
            v => panic!("{v:?}"),
        }
        assert!(matches!(
            l.check(Class::General, "ip:a"),
            Verdict::Limited { report: false, .. }
        ));
        // Other clients and exempt routes are unaffected.
        assert_eq!(l.check(Class::General, "ip:b"), Verdict::Allowed);
        assert_eq!(l.check(Class::Worker, "ip:a"), Verdict::Allowed);
        l.retain_recent();
    }

    #[test]
    fn zero_disables_and_failed_keys_block_the_ip() {
        let l = Limits::new(&config(&[
            ("RATE_LIMIT_PER_MIN", "0"),
            ("AUTH_FAIL_LIMIT_PER_MIN", "2"),
        ]));
        // More than the default (600) allows: 0 is "off", not "the default".
        for _ in 0..1000 {
            assert_eq!(l.check(Class::General, "ip:a"), Verdict::Allowed);
        }
        assert_eq!(l.blocked("1.1.1.1"), Verdict::Allowed);
        assert_eq!(l.auth_failed("1.1.1.1"), Verdict::Allowed);
        assert_eq!(l.auth_failed("1.1.1.1"), Verdict::Allowed);
        assert!(matches!(
            l.auth_failed("1.1.1.1"),
            Verdict::Limited { report: true, .. }
        ));
        assert!(matches!(
            l.blocked("1.1.1.1"),
            Verdict::Limited { report: false, .. }
        ));
        assert_eq!(l.blocked("2.2.2.2"), Verdict::Allowed);
    }

    #[test]
    fn clear_lifts_blocks_and_refills_every_limit() {
        let l = Limits::new(&config(&[
            ("RATE_LIMIT_PER_MIN", "1"),
            ("AUTH_FAIL_LIMIT_PER_MIN", "1"),
        ]));
        assert_eq!(l.check(Class::General, "ip:a"), Verdict::Allowed);
        assert!(matches!(
            l.check(Class::General, "ip:a"),
            Verdict::Limited { .. }
        ));
        assert_eq!(l.auth_failed("1.1.1.1"), Verdict::Allowed);
        assert!(matches!(l.auth_failed("1.1.1.1"), Verdict::Limited { .. }));
        assert!(matches!(l.blocked("1.1.1.1"), Verdict::Limited { .. }));
        assert_eq!(l.clear(), 1);
        assert_eq!(l.blocked("1.1.1.1"), Verdict::Allowed);
        assert_eq!(l.check(Class::General, "ip:a"), Verdict::Allowed);
        assert_eq!(l.auth_failed("1.1.1.1"), Verdict::Allowed);
        // The first refusal after a clear is reported again.
        assert!(matches!(
            l.check(Class::General, "ip:a"),
            Verdict::Limited { report: true, .. }
        ));
        assert_eq!(l.clear(), 0);
    }
}
