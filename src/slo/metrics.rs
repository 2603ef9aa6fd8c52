//! `/metrics` in the Prometheus text format (version 0.0.4), built from our own counters
//! at scrape time.
//!
//! Why not `metrics-exporter-prometheus`: its recorder is process-global and can be
//! installed once, while one process may hold several servers (every integration test),
//! and our counters already live in [`super::Slo`] — mirroring them into a second set of
//! counters would double the request-path cost. `prometheus-client` would need the same
//! mirroring and emits OpenMetrics (`# EOF`, another content type). So a small writer
//! (escaping, HELP/TYPE once per family, cumulative histogram buckets) renders the state
//! directly; `tests/slo.rs` runs `promtool check metrics` on a real scrape.

use std::collections::BTreeMap;
use std::fmt::Write;

use super::Slo;
use super::alerts::Alerts;
use super::hist::{BOUNDS_MS, BUCKETS};
use crate::audit::Audit;
use crate::build_info;

/// The content type Prometheus expects for this format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A text exposition being written.
#[derive(Default)]
pub struct Text(String);

/// Escape a label value: backslash, double quote and newline.
pub fn escape(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

fn number(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        }
    } else {
        format!("{v}")
    }
}

impl Text {
    /// Start a family: `# HELP` and `# TYPE` lines.
    pub fn family(&mut self, name: &str, kind: &str, help: &str) {
        let help = help.replace('\\', "\\\\").replace('\n', "\\n");
        let _ = writeln!(self.0, "# HELP {name} {help}");
        let _ = writeln!(self.0, "# TYPE {name} {kind}");
    }

    /// One sample line.
    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.0.push_str(name);
        if !labels.is_empty() {
            self.0.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.0.push(',');
                }
                let _ = write!(self.0, "{k}=\"{}\"", escape(v));
            }
            self.0.push('}');
        }
        let _ = writeln!(self.0, " {}", number(value));
    }

    /// A one-sample family.
    pub fn single(&mut self, name: &str, kind: &str, help: &str, value: f64) {
        self.family(name, kind, help);
        self.sample(name, &[], value);
    }

    /// The samples of one histogram series: per-bucket counts (not cumulative), and the
    /// sum in seconds.
    pub fn histogram(
        &mut self,
        name: &str,
        labels: &[(&str, &str)],
        counts: &[u64; BUCKETS],
        sum_secs: f64,
    ) {
        let mut cumulative = 0u64;
        let bucket = format!("{name}_bucket");
        for (i, c) in counts.iter().enumerate() {
            cumulative += c;
            let le = match BOUNDS_MS.get(i) {
                Some(ms) => number(*ms as f64 / 1000.0),
                None => "+Inf".to_string(),
            };
            let mut l: Vec<(&str, &str)> = labels.to_vec();
            l.push(("le", &le));
            self.sample(&bucket, &l, cumulative as f64);
        }
        self.sample(&format!("{name}_sum"), labels, sum_secs);
        self.sample(&format!("{name}_count"), labels, cumulative as f64);
    }

    pub fn finish(self) -> String {
        self.0
    }
}

const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// What `/metrics` reads: the SLO counters (and, through them, the queue's gauges), the
/// alerts, the audit trail's length, the process uptime and Stripe's webhook counters.
pub struct Sources<'a> {
    pub slo: &'a Slo,
    pub alerts: &'a Alerts,
    pub audit: &'a Audit,
    pub uptime: std::time::Duration,
    /// Verified Stripe deliveries by (event type, outcome).
    pub webhook_events: &'a BTreeMap<(String, String), u64>,
    /// Stripe deliveries refused by the signature check, by cause.
    pub signature_failures: &'a BTreeMap<&'static str, u64>,
}

/// Render every metric of this server.
pub fn render(sources: &Sources<'_>) -> anyhow::Result<String> {
    let slo = sources.slo;
    let snap = slo.snapshot();
    let figures = slo.figures()?;
    let mut t = Text::default();

    t.family(
        "echopilot_build_info",
        "gauge",
        "Version and commit of the running binary (always 1).",
    );
    t.sample(
        "echopilot_build_info",
        &[
            ("version", build_info::VERSION),
            ("commit", &build_info::commit_label()),
        ],
        1.0,
    );
    t.single(
        "echopilot_uptime_seconds",
        "gauge",
        "Seconds since this process started serving.",
        sources.uptime.as_secs_f64(),
    );

    t.family(
        "echopilot_http_requests_total",
        "counter",
        "HTTP responses since start, by matched route and status class.",
    );
    for (route, r) in &snap.routes {
        for (class, n) in CLASSES.iter().zip(r.classes) {
            if n > 0 {
                t.sample(
                    "echopilot_http_requests_total",
                    &[("route", route), ("status", class)],
                    n as f64,
                );
            }
        }
    }
    t.family(
        "echopilot_http_request_duration_seconds",
        "histogram",
        "Time to produce the response, by matched route.",
    );
    for (route, r) in &snap.routes {
        t.histogram(
            "echopilot_http_request_duration_seconds",
            &[("route", route)],
            &r.buckets,
            r.sum_us as f64 / 1e6,
        );
    }

    t.single(
        "echopilot_slo_error_budget_remaining_ratio",
        "gauge",
        "Share of the availability error budget left in the SLO window (negative when overspent).",
        figures.budget.remaining_pct / 100.0,
    );
    t.single(
        "echopilot_slo_availability_ratio",
        "gauge",
        "Share of requests without a 5xx in the SLO window.",
        figures.availability_pct / 100.0,
    );
    t.single(
        "echopilot_slo_uptime_ratio",
        "gauge",
        "Share of minutes up since the first start, inside the SLO window.",
        figures.uptime_pct / 100.0,
    );
    t.single(
        "echopilot_slo_latency_p95_seconds",
        "gauge",
        "P95 response time over the SLO window.",
        figures.latency_p95_ms / 1000.0,
    );
    t.family(
        "echopilot_slo_burn_rate",
        "gauge",
        "Error-budget burn rate per window (1 = spending exactly the budget).",
    );
    for (w, r) in &figures.burn_rates {
        t.sample("echopilot_slo_burn_rate", &[("window", w)], *r);
    }

    t.single(
        "echopilot_scheduler_tick_age_seconds",
        "gauge",
        "Seconds since the last scheduler tick (since start when none yet).",
        figures.scheduler_tick_age_secs,
    );
    t.single(
        "echopilot_scheduler_ticks_total",
        "counter",
        "Scheduler ticks since start.",
        snap.ticks as f64,
    );
    t.family(
        "echopilot_webhooks_total",
        "counter",
        "Incoming webhooks since start, by outcome.",
    );
    t.sample(
        "echopilot_webhooks_total",
        &[("outcome", "ok")],
        snap.webhooks_ok as f64,
    );
    t.sample(
        "echopilot_webhooks_total",
        &[("outcome", "failed")],
        snap.webhooks_failed as f64,
    );
    t.family(
        "echopilot_stripe_webhook_events_total",
        "counter",
        "Verified Stripe webhook deliveries since start, by event type and outcome (applied, ignored, duplicate, failed; bad_json for a signed body that is no event).",
    );
    for ((kind, outcome), n) in sources.webhook_events {
        t.sample(
            "echopilot_stripe_webhook_events_total",
            &[("type", kind), ("outcome", outcome)],
            *n as f64,
        );
    }
    t.family(
        "echopilot_stripe_signature_failures_total",
        "counter",
        "Stripe webhook deliveries refused by the signature check since start, by cause.",
    );
    for (cause, n) in sources.signature_failures {
        t.sample(
            "echopilot_stripe_signature_failures_total",
            &[("cause", cause)],
            *n as f64,
        );
    }
    t.family(
        "echopilot_job_outcomes_total",
        "counter",
        "Finished job attempts since start, by kind and outcome.",
    );
    for ((kind, outcome), n) in &snap.jobs {
        t.sample(
            "echopilot_job_outcomes_total",
            &[("kind", kind), ("outcome", outcome)],
            *n as f64,
        );
    }
    t.single(
        "echopilot_rate_limited_requests_total",
        "counter",
        "Requests refused by the rate limiter since start.",
        snap.rate_limited as f64,
    );
    let audit_events = sources.audit.recent(1)?.first().map(|e| e.seq).unwrap_or(0);
    t.single(
        "echopilot_audit_events",
        "gauge",
        "Audit events recorded in the store.",
        audit_events as f64,
    );
    t.family(
        "echopilot_alerts_firing",
        "gauge",
        "Alerts firing now, by severity.",
    );
    let firing = sources.alerts.firing();
    for sev in ["critical", "warning", "info"] {
        let n = firing.iter().filter(|a| a.severity.as_str() == sev).count();
        t.sample("echopilot_alerts_firing", &[("severity", sev)], n as f64);
    }

    if let Some(g) = slo.gauges() {
        t.family("echopilot_jobs", "gauge", "Jobs by queue and status.");
        for (queue, status, n) in g.jobs_by_queue_status() {
            t.sample(
                "echopilot_jobs",
                &[("queue", &queue), ("status", &status)],
                n as f64,
            );
        }
        t.family(
            "echopilot_queue_depth",
            "gauge",
            "Jobs waiting to run, by queue.",
        );
        for (queue, n) in g.queue_depth() {
            t.sample("echopilot_queue_depth", &[("queue", &queue)], n as f64);
        }
        if let Some(n) = g.stuck_jobs() {
            t.single(
                "echopilot_jobs_stuck",
                "gauge",
                "Running jobs whose lease expired.",
                n as f64,
            );
        }
        if let Some(age) = g.last_backup_age_secs() {
            t.single(
                "echopilot_backup_last_age_seconds",
                "gauge",
                "Seconds since the last successful backup.",
                age,
            );
        }
        if let Some(age) = g.last_verified_backup_age_secs() {
            t.single(
                "echopilot_backup_last_verified_age_seconds",
                "gauge",
                "Seconds since the newest snapshot that passed verification was taken.",
                age,
            );
        }
    }
    Ok(t.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_escaped_and_histograms_cumulative() {
        let mut t = Text::default();
        t.family("x_total", "counter", "A test.");
        t.sample("x_total", &[("route", "a\"b\\c\nd")], 3.0);
        let mut counts = [0u64; BUCKETS];
        counts[0] = 2;
        counts[BUCKETS - 1] = 1;
        t.family("d_seconds", "histogram", "Durations.");
        t.histogram("d_seconds", &[("route", "/r")], &counts, 12.5);
        let s = t.finish();
        assert!(s.contains("x_total{route=\"a\\\"b\\\\c\\nd\"} 3\n"), "{s}");
        assert!(
            s.contains("d_seconds_bucket{route=\"/r\",le=\"0.005\"} 2\n"),
            "{s}"
        );
        assert!(
            s.contains("d_seconds_bucket{route=\"/r\",le=\"10\"} 2\n"),
            "{s}"
        );
        assert!(
            s.contains("d_seconds_bucket{route=\"/r\",le=\"+Inf\"} 3\n"),
            "{s}"
        );
        assert!(s.contains("d_seconds_sum{route=\"/r\"} 12.5\n"), "{s}");
        assert!(s.contains("d_seconds_count{route=\"/r\"} 3\n"), "{s}");
    }
}
