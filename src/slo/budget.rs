//! The error budget and burn rates: the figures of a window, and the pure arithmetic
//! that makes them.

use crate::config::SloTargets;

use super::minutes::ratio;

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

/// Round for display (4 decimals): the JSON stays readable and stable.
pub fn round4(x: f64) -> f64 {
    if x.is_finite() {
        (x * 10_000.0).round() / 10_000.0
    } else {
        0.0
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
