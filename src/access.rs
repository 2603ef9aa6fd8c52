//! The per-request side of access control: rate limits (governor's GCRA, one keyed
//! limiter per route class), the brute-force block on failed keys, who the client is,
//! and the request log `logs/app.log`. The HTTP glue is in `web::access`.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use governor::clock::{Clock as _, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::config::Config;
use crate::logfile::Appender;

/// Which limit a route falls under.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Class {
    /// Everything not listed below: `RATE_LIMIT_PER_MIN`.
    General,
    /// Claim, heartbeat, complete, fail: `WORKER_RATE_LIMIT_PER_MIN` (workers poll).
    Worker,
    /// The Stripe webhook: `WEBHOOK_RATE_LIMIT_PER_MIN` (Stripe sends bursts).
    Webhook,
    /// `/metrics` and `/api/status/summary`: never limited (monitoring must get through).
    Exempt,
}

impl Class {
    pub fn of(path: &str) -> Class {
        match path {
            "/metrics" | "/api/status/summary" => Class::Exempt,
            "/api/stripe/webhook" => Class::Webhook,
            "/api/jobs/claim" | "/api/jobs/complete" => Class::Worker,
            p => match p.strip_prefix("/api/job/").and_then(|r| r.split_once('/')) {
                Some((id, "heartbeat" | "complete" | "fail")) if !id.is_empty() => Class::Worker,
                _ => Class::General,
            },
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Class::General => "general",
            Class::Worker => "worker",
            Class::Webhook => "webhook",
            Class::Exempt => "exempt",
        }
    }
}

/// The client's address: the peer, or with `TRUST_PROXY` the last address in
/// `X-Forwarded-For` (the one our proxy appended; earlier ones are the client's word).
pub fn client_ip(
    peer: Option<SocketAddr>,
    forwarded_for: Option<&str>,
    trust_proxy: bool,
) -> String {
    if trust_proxy
        && let Some(ip) = forwarded_for
            .and_then(|v| v.rsplit(',').next())
            .and_then(|s| s.trim().parse::<IpAddr>().ok())
    {
        return ip.to_string();
    }
    peer.map(|p| p.ip().to_string())
        .unwrap_or_else(|| "unknown".to_string())
}

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

fn limiter(n: u32, window: Duration) -> Option<DefaultKeyedRateLimiter<String>> {
    quota(n, window).map(RateLimiter::keyed)
}

/// Every limiter, and the bookkeeping around them. Shared behind an `Arc`.
pub struct Limits {
    general: Option<DefaultKeyedRateLimiter<String>>,
    worker: Option<DefaultKeyedRateLimiter<String>>,
    webhook: Option<DefaultKeyedRateLimiter<String>>,
    auth_fail: Option<DefaultKeyedRateLimiter<String>>,
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
            Class::Exempt => return Verdict::Allowed,
        };
        let Some(limiter) = limiter else {
            return Verdict::Allowed;
        };
        let key = client.to_string();
        match limiter.check_key(&key) {
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
        match limiter.check_key(&ip.to_string()) {
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

    /// Forget clients whose limits have fully refilled (run periodically).
    pub fn retain_recent(&self) {
        for l in [&self.general, &self.worker, &self.webhook, &self.auth_fail]
            .into_iter()
            .flatten()
        {
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

/// The access handle in `AppState`: the limits and the request log. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Access {
    pub limits: Arc<Limits>,
    /// `logs/app.log`.
    pub request_log: Appender,
}

/// One request, as the request log writes it.
#[derive(Debug, Clone)]
pub struct RequestLine<'a> {
    pub ts: &'a str,
    pub request_id: &'a str,
    pub method: &'a str,
    /// The matched route (`/api/job/{id}`), or `-` when none matched.
    pub route: &'a str,
    pub status: u16,
    pub duration_ms: u64,
    pub client: &'a str,
    /// The caller's key id, or `-`.
    pub key_id: &'a str,
}

impl RequestLine<'_> {
    fn fields(&self) -> String {
        let line = format!(
            "request_id={} method={} route={} status={} duration_ms={} client={} key={}",
            self.request_id,
            self.method,
            self.route,
            self.status,
            self.duration_ms,
            self.client,
            self.key_id
        );
        crate::logfile::escape(&line).into_owned()
    }

    /// The line for every request.
    pub fn line(&self) -> String {
        format!("{} INFO request {}", self.ts, self.fields())
    }

    /// The extra line for a request at least `SLOW_REQUEST_MS` long.
    pub fn slow_line(&self) -> String {
        format!("{} WARN Slow request {}", self.ts, self.fields())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_classes() {
        assert_eq!(Class::of("/metrics"), Class::Exempt);
        assert_eq!(Class::of("/api/status/summary"), Class::Exempt);
        assert_eq!(Class::of("/api/stripe/webhook"), Class::Webhook);
        assert_eq!(Class::of("/api/jobs/claim"), Class::Worker);
        assert_eq!(Class::of("/api/jobs/complete"), Class::Worker);
        assert_eq!(Class::of("/api/job/abc/heartbeat"), Class::Worker);
        assert_eq!(Class::of("/api/job/abc/fail"), Class::Worker);
        assert_eq!(Class::of("/api/job/abc/retry"), Class::General);
        assert_eq!(Class::of("/api/job//fail"), Class::General);
        assert_eq!(Class::of("/api/audit"), Class::General);
    }

    #[test]
    fn client_ip_trusts_forwarded_for_only_when_told() {
        let peer: SocketAddr = "10.0.0.1:5000".parse().unwrap();
        let xff = Some("1.2.3.4, 5.6.7.8");
        assert_eq!(client_ip(Some(peer), xff, false), "10.0.0.1");
        assert_eq!(client_ip(Some(peer), xff, true), "5.6.7.8");
        assert_eq!(client_ip(Some(peer), Some("garbage"), true), "10.0.0.1");
        assert_eq!(client_ip(None, None, false), "unknown");
    }

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
        assert_eq!(l.check(Class::Exempt, "ip:a"), Verdict::Allowed);
        l.retain_recent();
    }

    #[test]
    fn zero_disables_and_failed_keys_block_the_ip() {
        let l = Limits::new(&config(&[
            ("RATE_LIMIT_PER_MIN", "0"),
            ("AUTH_FAIL_LIMIT_PER_MIN", "2"),
        ]));
        for _ in 0..100 {
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
}
