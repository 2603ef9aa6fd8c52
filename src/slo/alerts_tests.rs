use super::*;
use crate::slo::Budget;

fn calm() -> Figures {
    Figures {
        window_days: 30,
        requests: 1000,
        errors: 0,
        availability_pct: 100.0,
        uptime_pct: 100.0,
        latency_p95_ms: 20.0,
        latency_p95_1h_ms: 20.0,
        error_rate_pct: 0.0,
        webhook_success_pct: 100.0,
        scheduler_tick_age_secs: 10.0,
        budget: Budget {
            remaining_pct: 100.0,
            consumed_pct: 0.0,
            allowed_errors: 1.0,
            allowed_bad_minutes: 43.2,
            bad_minutes: 0,
        },
        burn_rates: super::super::BURN_WINDOWS
            .iter()
            .map(|(l, _)| (*l, 0.0))
            .collect(),
        up_minutes: 60,
        observed_minutes: 60,
        rate_limited: 0,
        slowest_routes: Vec::new(),
    }
}

fn names(f: &Figures, ticks: bool) -> Vec<&'static str> {
    conditions(f, 60, ticks).iter().map(|w| w.name).collect()
}

fn with_burn(pairs: &[(&str, f64)]) -> Figures {
    let mut f = calm();
    for (l, v) in pairs {
        for b in f.burn_rates.iter_mut() {
            if b.0 == *l {
                b.1 = *v;
            }
        }
    }
    f
}

#[test]
fn thresholds_of_the_runbook() {
    assert!(names(&calm(), true).is_empty());
    let mut f = calm();
    f.budget.remaining_pct = 24.9;
    assert_eq!(names(&f, true), ["error_budget_low"]);
    f.budget.remaining_pct = 25.0;
    assert!(names(&f, true).is_empty());
    f.budget.remaining_pct = 9.9;
    assert_eq!(names(&f, true), ["error_budget_critical"]);
    let mut f = calm();
    f.uptime_pct = 98.99;
    assert_eq!(names(&f, true), ["uptime_low"]);
    f.uptime_pct = 99.0;
    assert!(names(&f, true).is_empty());
    let mut f = calm();
    f.latency_p95_1h_ms = 500.1;
    assert_eq!(names(&f, true), ["latency_p95_high"]);
    f.latency_p95_1h_ms = 500.0;
    assert!(names(&f, true).is_empty());
}

#[test]
fn uptime_and_budget_wait_for_an_hour_observed() {
    let mut f = calm();
    f.uptime_pct = 66.67;
    f.budget.remaining_pct = 0.0;
    f.observed_minutes = 3;
    f.up_minutes = 2;
    assert!(names(&f, true).is_empty());
    f.observed_minutes = MIN_OBSERVED_MINUTES - 1;
    assert!(names(&f, true).is_empty());
    f.observed_minutes = MIN_OBSERVED_MINUTES;
    assert_eq!(names(&f, true), ["error_budget_critical", "uptime_low"]);
}

#[test]
fn burn_rate_pairs_need_both_windows() {
    assert!(names(&with_burn(&[("1h", 20.0)]), true).is_empty());
    assert_eq!(
        names(&with_burn(&[("1h", 14.5), ("5m", 14.5)]), true),
        ["burn_rate_1h"]
    );
    assert_eq!(
        names(&with_burn(&[("6h", 6.1), ("30m", 6.1)]), true),
        ["burn_rate_6h"]
    );
    assert_eq!(
        names(&with_burn(&[("1d", 3.1), ("2h", 3.1)]), true),
        ["burn_rate_1d"]
    );
    assert_eq!(
        names(&with_burn(&[("3d", 1.1), ("6h", 1.1)]), true),
        ["burn_rate_3d"]
    );
    assert!(names(&with_burn(&[("3d", 1.0), ("6h", 1.0)]), true).is_empty());
}

#[test]
fn stale_tick_only_when_a_scheduler_runs() {
    let mut f = calm();
    f.scheduler_tick_age_secs = 121.0;
    assert_eq!(names(&f, true), ["scheduler_tick_stale"]);
    assert!(names(&f, false).is_empty());
    f.scheduler_tick_age_secs = 120.0;
    assert!(names(&f, true).is_empty());
}
