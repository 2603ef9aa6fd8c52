//! The overview's charts: requests and errors, P95 latency against its target and
//! alert lines, and the error budget over the SLO window; each with the markers of
//! what changed when (deployments, flag changes, incidents, maintenance, 429 bursts),
//! taken from the same list as `GET /api/events/markers`.

use chrono::DateTime;

use crate::app::AppState;
use crate::config::SloTargets;
use crate::slo::Figures;
use crate::slo::series::Series;
use crate::web::api::markers::{self, RATE_LIMIT_BURST};

use super::charts::{Chart, Layer, Marker, Threshold, axis};
use super::view::{ErrorPage, compact, page_err};

/// The charts as SVG text, with the lines under their titles.
pub(super) struct Traffic {
    pub(super) requests_chart: String,
    pub(super) errors_chart: String,
    pub(super) requests_note: String,
    pub(super) p95_chart: String,
    pub(super) p95_note: String,
    pub(super) budget_chart: String,
    pub(super) budget_note: String,
    /// `5-minute buckets over 24 h`.
    pub(super) buckets_note: String,
}

/// A span the traffic charts can show: the links above them (plain links, no script).
pub(super) struct Range {
    pub(super) key: &'static str,
    /// How the link and the notes name it.
    pub(super) label: &'static str,
    buckets: u64,
    bucket_minutes: u64,
    /// One bucket, in words.
    per: &'static str,
    ticks: &'static str,
}

pub(super) static RANGES: [Range; 5] = [
    Range {
        key: "1h",
        label: "1 h",
        buckets: 60,
        bucket_minutes: 1,
        per: "1 min",
        ticks: "%H:%M",
    },
    Range {
        key: "6h",
        label: "6 h",
        buckets: 72,
        bucket_minutes: 5,
        per: "5 min",
        ticks: "%H:%M",
    },
    Range {
        key: "24h",
        label: "24 h",
        buckets: 288,
        bucket_minutes: 5,
        per: "5 min",
        ticks: "%H:%M",
    },
    Range {
        key: "7d",
        label: "7 d",
        buckets: 168,
        bucket_minutes: 60,
        per: "1 h",
        ticks: "%b %-d",
    },
    Range {
        key: "30d",
        label: "30 d",
        buckets: 180,
        bucket_minutes: 240,
        per: "4 h",
        ticks: "%b %-d",
    },
];

/// The range a `?range=` names; 24 h by default.
pub(super) fn range(key: Option<&str>) -> Result<&'static Range, ErrorPage> {
    let key = key.filter(|k| !k.is_empty()).unwrap_or("24h");
    RANGES.iter().find(|r| r.key == key).ok_or_else(|| {
        page_err(crate::web::error::AppError::bad_request(format!(
            "range: {key:?} is not one of 1h, 6h, 24h, 7d, 30d"
        )))
    })
}

/// Markers a chart draws at most: the newest.
const MAX_DRAWN: usize = 8;

/// Evenly spaced time labels under a series.
fn time_ticks(s: &Series, parts: usize, fmt: &str) -> Vec<(f64, String)> {
    let span = s.buckets.len() as u64 * s.bucket_minutes;
    (0..=parts)
        .map(|k| {
            let f = k as f64 / parts as f64;
            let minute = s.start_minute + (span as f64 * f) as u64;
            let t: DateTime<chrono::Utc> =
                DateTime::from_timestamp((minute * 60) as i64, 0).unwrap_or_default();
            (f, t.format(fmt).to_string())
        })
        .collect()
}

/// The markers inside series `s`, by bucket, from `all` (one read for every chart). A
/// bucket with a burst of 429s is found in the series itself (as many refusals per
/// bucket as a burst has per minute), so no chart scans the minutes.
fn markers_of(all: &[markers::Marker], s: &Series) -> Vec<Marker> {
    let mut out: Vec<Marker> = all
        .iter()
        .filter_map(|m| {
            s.index_of(crate::slo::minute_of(m.at)).map(|at| Marker {
                at,
                label: m.short.clone(),
                title: m.label.clone(),
                kind: m.kind,
            })
        })
        .collect();
    for (at, b) in s.buckets.iter().enumerate() {
        if b.rate_limited >= RATE_LIMIT_BURST {
            out.push(Marker {
                at,
                label: format!("429 ×{}", b.rate_limited),
                title: format!(
                    "{} requests refused with 429 in {} minutes",
                    b.rate_limited, s.bucket_minutes
                ),
                kind: "rate_limit",
            });
        }
    }
    out.sort_by_key(|m| m.at);
    let skip = out.len().saturating_sub(MAX_DRAWN);
    out.into_iter().skip(skip).collect()
}

fn start_of(s: &Series) -> DateTime<chrono::Utc> {
    DateTime::from_timestamp((s.start_minute * 60) as i64, 0).unwrap_or_default()
}

pub(super) fn build(
    state: &AppState,
    f: &Figures,
    targets: &SloTargets,
    r: &Range,
) -> Result<Traffic, ErrorPage> {
    // The chosen range for traffic and latency, the SLO window in 6-hour buckets.
    let day = state
        .slo
        .series(r.buckets, r.bucket_minutes)
        .map_err(page_err)?;
    let window = state.slo.series(f.window_days * 4, 360).map_err(page_err)?;
    let since = start_of(&day).min(start_of(&window));
    let all = markers::collect(state, since, Some(state.clock.now()), false).map_err(page_err)?;
    let markers_day = markers_of(&all, &day);
    let markers_window = markers_of(&all, &window);
    let day_ticks = time_ticks(&day, 6, r.ticks);
    let (per, span) = (r.per, r.label);
    let requests: Vec<f64> = day.buckets.iter().map(|b| b.requests as f64).collect();
    let errors: Vec<f64> = day.buckets.iter().map(|b| b.errors as f64).collect();
    let (rmax, rticks) = axis(requests.iter().cloned().fold(0.0, f64::max), 4.0, compact);
    let (emax, eticks) = axis(errors.iter().cloned().fold(0.0, f64::max), 2.0, compact);
    let day_req: u64 = day.buckets.iter().map(|b| b.requests).sum();
    let day_err: u64 = day.buckets.iter().map(|b| b.errors).sum();
    let requests_chart = Chart {
        label: format!("Requests per {per} over the last {span}; {day_req} in all"),
        height: 170,
        y_max: rmax,
        y_ticks: rticks,
        x_ticks: Vec::new(),
        layers: vec![Layer::Area(requests)],
        thresholds: Vec::new(),
        markers: markers_day.clone(),
        latest: None,
    }
    .svg();
    let errors_chart = Chart {
        label: format!("Errors (5xx) per {per} over the last {span}; {day_err} in all"),
        height: 80,
        y_max: emax,
        y_ticks: eticks.into_iter().step_by(2).collect(),
        x_ticks: day_ticks.clone(),
        layers: vec![Layer::Bars(errors)],
        thresholds: Vec::new(),
        markers: Vec::new(),
        latest: None,
    }
    .svg();
    let p95: Vec<f64> = day
        .buckets
        .iter()
        .map(|b| if b.requests == 0 { 0.0 } else { b.p95_ms() })
        .collect();
    let p50: Vec<f64> = day
        .buckets
        .iter()
        .map(|b| crate::slo::hist::quantile_ms(&b.buckets, 0.5))
        .collect();
    let latest_p50 = p50.last().copied().unwrap_or(0.0);
    let alert_ms = 500.0_f64.max(targets.latency_p95_ms);
    let pmax_seen = p95.iter().cloned().fold(0.0, f64::max);
    let (pmax, pticks) = axis(pmax_seen.max(alert_ms * 1.15), 100.0, |v| format!("{v:.0}"));
    let latest_p95 = p95.last().copied().unwrap_or(0.0);
    let p95_chart = Chart {
        label: format!(
            "P95 and P50 latency per {per} over the last {span}, against the {} ms target and the {alert_ms} ms alert line",
            targets.latency_p95_ms
        ),
        height: 250,
        y_max: pmax,
        y_ticks: pticks,
        x_ticks: day_ticks,
        layers: vec![Layer::Line(p95, "p95"), Layer::Line(p50, "p50")],
        thresholds: vec![
            Threshold { value: alert_ms, label: format!("Alert {alert_ms:.0}"), class: "alert", band: Some(true) },
            Threshold { value: targets.latency_p95_ms, label: format!("Target {:.0}", targets.latency_p95_ms), class: "target", band: None },
        ],
        markers: markers_day,
        latest: Some(format!("{latest_p95:.0} ms")),
    }
    .svg();

    let left = f.budget.remaining_pct;
    let allowed = (1.0 - targets.availability_pct / 100.0).max(0.0);
    let (mut cr, mut ce) = (0u64, 0u64);
    let n = window.buckets.len().max(1);
    let mut remaining = Vec::with_capacity(n);
    for b in &window.buckets {
        cr += b.requests;
        ce += b.errors;
        let used = if ce == 0 {
            0.0
        } else if cr == 0 || allowed == 0.0 {
            100.0
        } else {
            ce as f64 / (cr as f64 * allowed) * 100.0
        };
        remaining.push((100.0 - used).clamp(0.0, 100.0));
    }
    let even: Vec<f64> = (0..n)
        .map(|i| 100.0 - 100.0 * (i + 1) as f64 / n as f64)
        .collect();
    let budget_chart = Chart {
        label: format!(
            "Error budget remaining over the {}-day window: {:.1}% left",
            f.window_days, left
        ),
        height: 190,
        y_max: 100.0,
        y_ticks: [0.0, 25.0, 50.0, 75.0, 100.0]
            .iter()
            .map(|v| (*v, format!("{v:.0}%")))
            .collect(),
        x_ticks: time_ticks(&window, 4, "%b %-d"),
        layers: vec![Layer::Line(remaining, "budget"), Layer::Dashed(even)],
        thresholds: vec![Threshold {
            value: 25.0,
            label: "Low budget < 25%".into(),
            class: "low",
            band: Some(false),
        }],
        markers: markers_window,
        latest: Some(format!("{:.1}%", left.clamp(-999.0, 100.0))),
    }
    .svg();

    Ok(Traffic {
        buckets_note: format!("{per} buckets over {span}"),
        requests_chart,
        errors_chart,
        requests_note: format!(
            "per {per} · last {span} · {} requests · {} errors",
            compact(day_req as f64),
            compact(day_err as f64)
        ),
        p95_chart,
        p95_note: format!(
            "per {per} · last {span} · window P95 {:.0} ms · now P95 {latest_p95:.0} ms, P50 {latest_p50:.0} ms",
            f.latency_p95_ms
        ),
        budget_chart,
        budget_note: format!(
            "SLO {}% successful requests · {}-day window · allowed errors {:.0}, spent {}",
            targets.availability_pct, f.window_days, f.budget.allowed_errors, f.errors
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_cover_their_span_and_unknown_ones_are_refused() {
        for r in &RANGES {
            assert!(
                r.buckets <= 300,
                "{}: a chart of at most 300 buckets",
                r.key
            );
        }
        let minutes = |k: &str| {
            let r = range(Some(k)).ok().unwrap();
            r.buckets * r.bucket_minutes
        };
        assert_eq!(minutes("1h"), 60);
        assert_eq!(minutes("24h"), 24 * 60);
        assert_eq!(minutes("7d"), 7 * 24 * 60);
        assert_eq!(minutes("30d"), 30 * 24 * 60);
        assert_eq!(range(None).ok().unwrap().key, "24h");
        assert_eq!(range(Some("")).ok().unwrap().key, "24h");
        assert!(range(Some("2y")).is_err());
    }
}
