//! SLO figures, alerts, delivery and `/metrics` against hand-computed numbers.

mod helpers;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use chrono::{DateTime, Utc};
use echopilot::app::AppState;
use echopilot::slo::alerts::{self, AlertState};
use echopilot::slo::{GaugeSource, minute_of};
use helpers::slo::{manual_state, router_with_test_routes, traffic};
use helpers::{TestApp, VIEWER_KEY, WORKER_KEY};
use serde_json::Value;
use tower::ServiceExt;

fn t0() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-03-02T10:00:00Z")
        .unwrap()
        .to_utc()
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-3
}

async fn call(router: &axum::Router, path: &str) -> StatusCode {
    let resp = router
        .clone()
        .oneshot(Request::get(path).body(Body::empty()).unwrap())
        .await
        .unwrap();
    resp.status()
}

fn mark_up(state: &AppState, from: u64, to: u64) {
    for m in from..=to {
        let _ = state.slo.mark_up(m).unwrap();
    }
}

async fn slo_json(router: &axum::Router) -> Value {
    let resp = router
        .clone()
        .oneshot(Request::get("/api/slo/status").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .unwrap();
    serde_json::from_slice(&body).unwrap()
}

#[tokio::test]
async fn known_traffic_gives_hand_computed_p95_error_rate_budget_and_burn() {
    let home = tempfile::tempdir().unwrap();
    let state = manual_state(home.path(), &[("SLO_AVAILABILITY_PCT", "99")], t0());
    let router = router_with_test_routes(state.clone());

    // No traffic: full budget, zero burn, no NaN (NaN would serialize as null).
    let v = slo_json(&router).await;
    assert_eq!(v["error_budget"]["remaining_pct"], 100.0, "{v}");
    assert_eq!(v["error_budget"]["consumed_pct"], 0.0);
    assert_eq!(v["burn_rates"]["1h"], 0.0);
    assert_eq!(v["availability_pct"], 100.0);
    assert_eq!(v["webhook_success_pct"], 100.0);
    assert!(close(
        v["error_budget"]["allowed_bad_minutes"].as_f64().unwrap(),
        43.2
    ));
    for key in ["5m", "30m", "1h", "2h", "6h", "1d", "3d"] {
        assert!(v["burn_rates"][key].is_number(), "{key}: {v}");
    }
    assert_eq!(v["targets"]["availability_pct"], 99.0);
    assert_eq!(v["targets"]["latency_p95_ms"], 400.0);
    assert_eq!(v["targets"]["scheduler_tick_secs"], 60);

    // Through HTTP: 8 fine, 2 failing (500). Their latency is small (< 400 ms).
    for _ in 0..8 {
        assert_eq!(call(&router, "/api/test/ok").await, 200);
    }
    for _ in 0..2 {
        assert_eq!(call(&router, "/api/test/fail").await, 500);
    }
    // Chosen durations through the recording function: 930 at 20 ms, 60 at 420 ms of
    // which 2 answered 503.
    let slo = &state.slo;
    for _ in 0..930 {
        slo.record_request("/api/test/ok", 200, Duration::from_millis(20));
    }
    for i in 0..60 {
        let status = if i < 2 { 503 } else { 200 };
        slo.record_request("/api/test/ok", status, Duration::from_millis(420));
    }
    // The status calls above and below count too, so read the figures directly first.
    let f = slo.figures().unwrap();
    // 1 status call + 10 HTTP + 990 recorded.
    assert_eq!(f.requests, 1001);
    assert_eq!(f.errors, 4);
    // Rank 0.95 × 1001 = 950.95; 941 observations are ≤ 400 ms, so the rank falls
    // 9.95 into the 60 of (400, 450]: 400 + 50 × 9.95 / 60.
    assert!(
        close(f.latency_p95_ms, 400.0 + 50.0 * 9.95 / 60.0),
        "{}",
        f.latency_p95_ms
    );
    assert!(close(f.error_rate_pct, 400.0 / 1001.0));
    assert!(close(f.availability_pct, 100.0 - 400.0 / 1001.0));
    // Allowed: 1 % of 1001 = 10.01 errors; 4 spent.
    assert!(close(f.budget.consumed_pct, 4.0 / 10.01 * 100.0));
    assert!(close(f.budget.remaining_pct, 100.0 - 4.0 / 10.01 * 100.0));
    // Everything is in the current minute: every window burns (4/1001)/0.01.
    for (_, r) in &f.burn_rates {
        assert!(close(*r, 4.0 / 1001.0 / 0.01), "{r}");
    }
    // The route label is the pattern; unknown routes share one label.
    assert_eq!(call(&router, "/api/nope/123").await, 404);
    let snap = slo.snapshot();
    assert_eq!(snap.routes["/api/test/fail"].errors(), 2);
    assert_eq!(snap.routes["unmatched"].classes[3], 1);
    assert!(snap.routes.keys().all(|k| !k.contains("123")));

    // The HTTP route shows the same numbers (plus the calls made since).
    let v = slo_json(&router).await;
    assert_eq!(v["errors"], 4);
    assert_eq!(v["requests"], 1002);
}

#[tokio::test]
async fn burn_rates_per_window_from_stored_minutes() {
    let home = tempfile::tempdir().unwrap();
    let state = manual_state(home.path(), &[], t0());
    // Five hours in: 1000 requests / 10 errors 100 minutes ago, 100 / 5 two minutes ago.
    state.clock.advance(chrono::Duration::hours(5));
    let now = minute_of(state.clock.now());
    mark_up(&state, minute_of(t0()), now);
    let _ = state
        .slo
        .merge_minute(now - 100, &traffic(1000, 10), true)
        .unwrap();
    let _ = state
        .slo
        .merge_minute(now - 2, &traffic(100, 5), true)
        .unwrap();

    let f = state.slo.figures().unwrap();
    // Allowed error ratio 0.1 %.
    let short = 5.0 / 100.0 / 0.001; // 50×
    let long = 15.0 / 1100.0 / 0.001; // 13.636…×
    assert!(close(f.burn("5m"), short));
    assert!(close(f.burn("30m"), short));
    assert!(close(f.burn("1h"), short));
    for w in ["2h", "6h", "1d", "3d"] {
        assert!(close(f.burn(w), long), "{w}: {}", f.burn(w));
    }
    // The same figures after the hour cache is warm (a second read).
    assert_eq!(state.slo.figures().unwrap().burn_rates, f.burn_rates);

    // 1 h/5 m above 14.4 and 6 h/30 m above 6: both critical; 1 d/2 h above 3 and
    // 3 d/6 h above 1: both warnings; the budget (15 errors for 1.1 allowed) is spent.
    let changes = alerts::evaluate(&state.alerts, &state.slo).await.unwrap();
    let mut fired: Vec<&str> = changes.iter().map(|(n, _)| n.as_str()).collect();
    fired.sort();
    assert_eq!(
        fired,
        [
            "burn_rate_1d",
            "burn_rate_1h",
            "burn_rate_3d",
            "burn_rate_6h",
            "error_budget_critical"
        ]
    );

    // Ten minutes later the 5 m window is clean: the fast-burn alert resolves, the rest
    // stays; nothing fires twice.
    state.clock.advance(chrono::Duration::minutes(10));
    mark_up(&state, now, minute_of(state.clock.now()));
    let changes = alerts::evaluate(&state.alerts, &state.slo).await.unwrap();
    assert_eq!(
        changes,
        [("burn_rate_1h".to_string(), AlertState::Resolved)]
    );
    assert!(
        alerts::evaluate(&state.alerts, &state.slo)
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn a_three_minute_stop_is_three_minutes_down() {
    let home = tempfile::tempdir().unwrap();
    let state = manual_state(home.path(), &[], t0());
    let first = minute_of(t0());
    // Up for minutes 0..=49, stopped for 50, 51, 52, up again 53..=79.
    mark_up(&state, first, first + 49);
    state.clock.advance(chrono::Duration::minutes(79));
    mark_up(&state, first + 53, first + 79);
    let f = state.slo.figures().unwrap();
    assert_eq!(f.observed_minutes, 80);
    assert_eq!(f.up_minutes, 77);
    assert_eq!(f.budget.bad_minutes, 3);
    assert!(close(f.uptime_pct, 96.25));

    // Below 99 %: critical.
    let changes = alerts::evaluate(&state.alerts, &state.slo).await.unwrap();
    assert_eq!(changes, [("uptime_low".to_string(), AlertState::Firing)]);
    let s = echopilot::web::api::status::components(&state);
    let slo = &s.iter().find(|(n, _)| *n == "slo").unwrap().1;
    assert_eq!(slo.to_json()["status"], "unhealthy");

    // 300 minutes with 3 down is exactly 99 %: resolved.
    state.clock.advance(chrono::Duration::minutes(220));
    mark_up(&state, first + 80, first + 299);
    let f = state.slo.figures().unwrap();
    assert!(close(f.uptime_pct, 99.0), "{}", f.uptime_pct);
    let changes = alerts::evaluate(&state.alerts, &state.slo).await.unwrap();
    assert_eq!(changes, [("uptime_low".to_string(), AlertState::Resolved)]);

    // Each change is an audit event.
    let events = state.audit.recent(10).unwrap();
    let actions: Vec<(&str, &str)> = events
        .iter()
        .rev()
        .map(|e| (e.action.as_str(), e.target.as_str()))
        .collect();
    assert_eq!(
        actions,
        [
            ("alert.fired", "alert/uptime_low"),
            ("alert.resolved", "alert/uptime_low")
        ]
    );
}

#[tokio::test]
async fn two_starts_two_minutes_apart_fire_no_uptime_alert() {
    let home = tempfile::tempdir().unwrap();
    let first = minute_of(t0());
    {
        let state = manual_state(home.path(), &[], t0());
        mark_up(&state, first, first);
        assert!(
            alerts::evaluate(&state.alerts, &state.slo)
                .await
                .unwrap()
                .is_empty()
        );
    }
    // Started again two minutes later: minute 1 was down, 2 of 3 minutes up.
    let state = manual_state(home.path(), &[], t0() + chrono::Duration::minutes(2));
    mark_up(&state, first + 2, first + 2);
    let f = state.slo.figures().unwrap();
    assert_eq!((f.observed_minutes, f.up_minutes), (3, 2));
    // Three minutes are too few to judge uptime or the budget by.
    let changes = alerts::evaluate(&state.alerts, &state.slo).await.unwrap();
    assert!(changes.is_empty(), "{changes:?}");
    let s = echopilot::web::api::status::components(&state);
    let slo = &s.iter().find(|(n, _)| *n == "slo").unwrap().1;
    assert_eq!(slo.to_json()["status"], "healthy");
}

#[tokio::test]
async fn budget_and_latency_alerts_fire_and_resolve_at_the_thresholds() {
    let home = tempfile::tempdir().unwrap();
    let state = manual_state(home.path(), &[], t0());
    let first = minute_of(t0());
    state.clock.advance(chrono::Duration::minutes(90));
    mark_up(&state, first, first + 90);
    // 10,000 requests allow 10 errors; 7 leave 30 %: no alert.
    let _ = state
        .slo
        .merge_minute(first + 5, &traffic(10_000, 7), true)
        .unwrap();
    assert!(
        alerts::evaluate(&state.alerts, &state.slo)
            .await
            .unwrap()
            .is_empty()
    );
    // One more failed request: 10,001 requests, 8 errors: 100 − 8/10.001 × 100 = 20.008 %
    // left, below 25 %: warning.
    let _ = state
        .slo
        .merge_minute(first + 6, &traffic(1, 1), true)
        .unwrap();
    let f = state.slo.figures().unwrap();
    assert!(close(f.budget.remaining_pct, 100.0 - 8.0 / 10.001 * 100.0));
    let changes = alerts::evaluate(&state.alerts, &state.slo).await.unwrap();
    assert_eq!(
        changes,
        [("error_budget_low".to_string(), AlertState::Firing)]
    );
    let s = echopilot::web::api::status::components(&state);
    let comp =
        |name: &str| s.iter().find(|(n, _)| *n == name).unwrap().1.to_json()["status"].clone();
    assert_eq!(comp("slo"), "degraded");
    assert_eq!(comp("alerts"), "degraded");

    // Slow traffic now: 20 requests at 600 ms, the only ones of the last hour. Rank
    // 0.95 × 20 = 19 inside (500, 600]: 500 + 100 × 19/20 = 595 ms.
    for _ in 0..20 {
        state
            .slo
            .record_request("/slow", 200, Duration::from_millis(600));
    }
    let f = state.slo.figures().unwrap();
    assert!(close(f.latency_p95_1h_ms, 595.0), "{}", f.latency_p95_1h_ms);
    let changes = alerts::evaluate(&state.alerts, &state.slo).await.unwrap();
    assert_eq!(
        changes,
        [("latency_p95_high".to_string(), AlertState::Firing)]
    );

    // An hour later the slow minute is out of the latency window, and 10,000 good
    // requests more leave 8 errors of 20.021 allowed (60 % left): both resolve.
    state.slo.flush().unwrap();
    state.clock.advance(chrono::Duration::minutes(61));
    let now = minute_of(state.clock.now());
    mark_up(&state, first + 91, now);
    let _ = state
        .slo
        .merge_minute(now, &traffic(10_000, 0), true)
        .unwrap();
    let mut changes = alerts::evaluate(&state.alerts, &state.slo).await.unwrap();
    changes.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        changes,
        [
            ("error_budget_low".to_string(), AlertState::Resolved),
            ("latency_p95_high".to_string(), AlertState::Resolved)
        ]
    );
    let all = state.alerts.list(None, 10).unwrap();
    assert_eq!(all.len(), 2);
    assert!(all.iter().all(|a| a.state == AlertState::Resolved));
    assert!(
        all.iter()
            .all(|a| !a.resolved_at.is_empty() && !a.fired_at.is_empty())
    );
    let firing = state.alerts.list(Some(AlertState::Firing), 10).unwrap();
    assert!(firing.is_empty());
}

#[tokio::test]
async fn deployment_and_flag_changes_are_info_alerts() {
    let home = tempfile::tempdir().unwrap();
    {
        // The first start is no deployment.
        let state = manual_state(home.path(), &[], t0());
        assert!(
            alerts::evaluate(&state.alerts, &state.slo)
                .await
                .unwrap()
                .is_empty()
        );
    }
    {
        // Same version and commit again: still none.
        let state = manual_state(home.path(), &[], t0());
        assert!(
            alerts::evaluate(&state.alerts, &state.slo)
                .await
                .unwrap()
                .is_empty()
        );
    }
    {
        // A run of another version, then this one: a new deployment.
        let store = echopilot::store::Store::open(home.path()).unwrap();
        echopilot::store::meta::record_boot(&store, "2026-03-02T09:00:00Z", "0.0.9", "0ld")
            .unwrap();
    }
    let state = manual_state(home.path(), &[], t0());
    let changes = alerts::evaluate(&state.alerts, &state.slo).await.unwrap();
    assert_eq!(
        changes,
        [("new_deployment".to_string(), AlertState::Firing)]
    );
    assert!(
        state.alerts.firing()[0]
            .message
            .contains("previously 0.0.9 (0ld)")
    );
    // Only once per start.
    assert!(
        alerts::evaluate(&state.alerts, &state.slo)
            .await
            .unwrap()
            .is_empty()
    );

    state
        .alerts
        .info("flag_changed", "flag dashboard.v2 set to off")
        .await
        .unwrap();
    assert_eq!(state.alerts.firing().len(), 2);
    // Info alerts do not change health.
    let s = echopilot::web::api::status::components(&state);
    let alerts = &s.iter().find(|(n, _)| *n == "alerts").unwrap().1;
    assert_eq!(alerts.to_json()["status"], "healthy");
    assert_eq!(alerts.to_json()["info"], 2);
    // An hour later they resolve by themselves.
    state.clock.advance(chrono::Duration::minutes(61));
    mark_up(&state, minute_of(t0()), minute_of(state.clock.now()));
    let mut changes = alerts::evaluate(&state.alerts, &state.slo).await.unwrap();
    changes.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        changes,
        [
            ("flag_changed".to_string(), AlertState::Resolved),
            ("new_deployment".to_string(), AlertState::Resolved)
        ]
    );
}

/// Each bucket of every chart range against the minutes written, summed here.
fn series_match(state: &AppState, written: &BTreeMap<u64, (u64, u64)>, now_min: u64) {
    let ranges = [
        (60, 1),
        (72, 5),
        (288, 5),
        (30, 60),
        (9, 240),
        (5, 360),
        (2, 1440),
        (1, 2000),
    ];
    for (buckets, minutes) in ranges {
        let s = state.slo.series(buckets, minutes).unwrap();
        let start = now_min + 1 - buckets * minutes;
        assert_eq!((s.start_minute, s.buckets.len()), (start, buckets as usize));
        for (i, b) in s.buckets.iter().enumerate() {
            let from = start + i as u64 * minutes;
            let (mut req, mut err, mut up) = (0, 0, 0);
            for (r, e) in written.range(from..from + minutes).map(|(_, v)| v) {
                (req, err, up) = (req + r, err + e, up + 1);
            }
            let got = (
                b.requests,
                b.errors,
                b.up_minutes,
                b.sum_us,
                b.buckets.get(2).copied().unwrap_or(0),
            );
            assert_eq!(
                got,
                (req, err, up, req * 20_000, req),
                "{buckets} × {minutes} min, bucket {i} from minute {from}"
            );
        }
    }
    // The window's figures read the same sums (day slots among them).
    let f = state.slo.figures().unwrap();
    let requests: u64 = written.values().map(|v| v.0).sum();
    let errors: u64 = written.values().map(|v| v.1).sum();
    assert_eq!((f.requests, f.errors), (requests, errors));
}

#[test]
fn chart_buckets_equal_the_minutes_summed_across_slot_boundaries_and_a_restart() {
    let home = tempfile::tempdir().unwrap();
    // 13:37: neither on an hour nor on five minutes, so every range's buckets straddle
    // the stored 5-minute, hour and day slots; the minutes go back past midnight.
    let now = t0() + chrono::Duration::minutes(217);
    let now_min = minute_of(now);
    let mut written: BTreeMap<u64, (u64, u64)> = BTreeMap::new();
    {
        let state = manual_state(home.path(), &[], now);
        for m in now_min - 26 * 60..=now_min {
            // Some minutes down (no record), some written twice (two flushes).
            if m % 7 == 3 && m != now_min {
                continue;
            }
            let (r, e) = (3 + m % 13, m % 3);
            let _ = state.slo.merge_minute(m, &traffic(r, e), true).unwrap();
            let v = written.entry(m).or_default();
            *v = (v.0 + r, v.1 + e);
            if m % 5 == 0 {
                let _ = state.slo.merge_minute(m, &traffic(4, 1), true).unwrap();
                let v = written.entry(m).or_default();
                *v = (v.0 + 4, v.1 + 1);
            }
        }
        series_match(&state, &written, now_min);
    }
    let state = manual_state(home.path(), &[], now);
    series_match(&state, &written, now_min);
    // A minute of a closed hour changed after the fact (a restore, a late flush) moves
    // its slots' sums with it.
    let late = now_min - 3 * 60 - 2;
    let _ = state.slo.merge_minute(late, &traffic(50, 5), true).unwrap();
    let v = written.entry(late).or_default();
    *v = (v.0 + 50, v.1 + 5);
    series_match(&state, &written, now_min);
}

#[tokio::test]
async fn figures_survive_a_restart() {
    let app = TestApp::spawn().await;
    for _ in 0..5 {
        app.summary().await;
    }
    app.state
        .slo
        .record_request("/api/status/summary", 502, Duration::from_millis(30));
    let before = app.state.slo.figures().unwrap();
    assert_eq!(before.requests, 6);
    assert_eq!(before.errors, 1);
    let home = app.stop().await.unwrap();

    let again = TestApp::spawn_in(home.path(), &[]).await;
    let after = again.state.slo.figures().unwrap();
    assert_eq!(after.requests, 6);
    assert_eq!(after.errors, 1);
    assert!(close(after.error_rate_pct, before.error_rate_pct));
    let v = again.slo_status().await;
    assert_eq!(v["ok"], true);
    assert_eq!(v["errors"], 1);
    again.stop().await;
}

#[tokio::test]
async fn alerts_route_needs_a_viewer_and_filters_by_state() {
    let app = TestApp::spawn().await;
    let (s, v) = app.alerts(None, None).await;
    assert_eq!(s, 401, "{v}");
    let (s, _) = app.alerts(None, Some(WORKER_KEY)).await;
    assert_eq!(s, 403);
    app.state
        .alerts
        .info("flag_changed", "flag x on")
        .await
        .unwrap();
    let (s, v) = app.alerts(Some("firing"), Some(VIEWER_KEY)).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["alerts"][0]["name"], "flag_changed");
    assert_eq!(v["alerts"][0]["severity"], "info");
    assert_eq!(v["alerts"][0]["state"], "firing");
    let (_, v) = app.alerts(Some("resolved"), Some(VIEWER_KEY)).await;
    assert_eq!(v["alerts"].as_array().unwrap().len(), 0);
    let (s, v) = app.alerts(Some("bogus"), Some(VIEWER_KEY)).await;
    assert_eq!(s, 400, "{v}");
    assert_eq!(v["ok"], false);
    // The status shows firing alerts.
    let v = app.slo_status().await;
    assert_eq!(v["alerts"][0]["name"], "flag_changed");
    assert!(v["alerts"][0]["since"].is_string());
    app.stop().await;
}

#[tokio::test]
async fn alert_webhook_gets_one_firing_and_one_resolve_through_the_job_queue() {
    // A Slack-like receiver that fails its first call.
    let got: Arc<Mutex<Vec<(u16, Value)>>> = Arc::default();
    let g = got.clone();
    let receiver = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |body: String| {
            let g = g.clone();
            async move {
                let mut g = g.lock().unwrap();
                let status = if g.is_empty() { 503 } else { 200 };
                g.push((status, serde_json::from_str(&body).unwrap_or(Value::Null)));
                StatusCode::from_u16(status).unwrap()
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, receiver).await });

    let app = TestApp::spawn_with(&[("ALERT_WEBHOOK_URL", &url)]).await;
    let slo = &app.state.slo;
    for _ in 0..10 {
        slo.record_request("/api/status/summary", 200, Duration::from_secs(2));
    }
    alerts::evaluate(&app.state.alerts, &app.state.slo)
        .await
        .unwrap();
    assert_eq!(app.state.alerts.firing()[0].name, "latency_p95_high");
    for _ in 0..1000 {
        slo.record_request("/api/status/summary", 200, Duration::from_millis(1));
    }
    alerts::evaluate(&app.state.alerts, &app.state.slo)
        .await
        .unwrap();
    assert!(app.state.alerts.firing().is_empty());

    // Each message is an `alert.webhook` job: the firing one was refused (503) and waits
    // for its backoff; the resolve went through.
    let wait_for = |n: usize| {
        let got = got.clone();
        async move {
            let deadline = std::time::Instant::now() + Duration::from_secs(30);
            while got.lock().unwrap().len() < n && std::time::Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    wait_for(2).await;
    let (s, v) = app
        .get("/api/jobs?kind=alert.webhook", Some(helpers::VIEWER_KEY))
        .await;
    assert_eq!(s, 200, "{v}");
    let jobs = v["jobs"].as_array().unwrap().clone();
    assert_eq!(jobs.len(), 2, "{v}");
    let failed = jobs
        .iter()
        .find(|j| j["status"] == "scheduled")
        .unwrap_or_else(|| panic!("no job backing off: {v}"));
    let id = failed["id"].as_str().unwrap();
    let (_, full) = app
        .get(&format!("/api/job/{id}"), Some(helpers::VIEWER_KEY))
        .await;
    let err = full["job"]["last_error"].as_str().unwrap_or_default();
    assert!(err.contains("503"), "{full}");
    assert!(
        !err.contains(&url) && !full.to_string().contains(&url),
        "URL leaked: {full}"
    );
    // An operator retries it now instead of waiting for the backoff.
    let (s, v) = app
        .post(
            &format!("/api/job/{id}/retry"),
            Some(helpers::OPERATOR_KEY),
            serde_json::json!({}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    wait_for(3).await;
    // Give a duplicate the chance to show up.
    tokio::time::sleep(Duration::from_millis(700)).await;
    let got = got.lock().unwrap().clone();
    assert_eq!(got.len(), 3, "{got:?}");
    let text = |i: usize| got[i].1["text"].as_str().unwrap().to_string();
    // Refused firing, the resolve, then the retried firing.
    assert_eq!(got[0].0, 503);
    assert!(
        text(0).starts_with("[WARNING] EchoPilot latency_p95_high"),
        "{}",
        text(0)
    );
    assert!(
        text(1).starts_with("[RESOLVED] EchoPilot latency_p95_high"),
        "{}",
        text(1)
    );
    assert_eq!((got[2].0, text(2)), (200, text(0)));
    app.stop().await;
}

struct FakeGauges;
impl GaugeSource for FakeGauges {
    fn jobs_by_queue_status(&self) -> Vec<(String, String, u64)> {
        vec![("default".into(), "queued".into(), 3)]
    }
    fn queue_depth(&self) -> Vec<(String, u64)> {
        vec![("default".into(), 3)]
    }
    fn stuck_jobs(&self) -> Option<u64> {
        Some(1)
    }
    fn last_backup_age_secs(&self) -> Option<f64> {
        Some(42.5)
    }
}

/// `promtool check metrics` on the text; `None` when promtool is missing outside CI.
fn promtool(text: &str) -> Option<(bool, String)> {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => {
            if std::env::var_os("CI").is_some() {
                panic!("promtool is required in CI (apt-get install prometheus): {e}");
            }
            eprintln!("NOTICE: promtool not found ({e}); skipping the format check");
            return None;
        }
    };
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let msg = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Some((out.status.success(), msg))
}

#[tokio::test]
async fn metrics_scrape_passes_promtool_and_shows_every_family() {
    let app = TestApp::spawn().await;
    app.summary().await;
    app.get("/api/nope", None).await;
    let slo = &app.state.slo;
    slo.record_webhook(true);
    slo.record_webhook(false);
    slo.record_tick(app.state.clock.now());
    slo.record_job_outcome("http", "succeeded");
    slo.record_rate_limited();
    slo.set_gauges(Arc::new(FakeGauges));
    app.state
        .alerts
        .info("flag_changed", "flag \"x\" on")
        .await
        .unwrap();

    let (s, ct, text) = app.metrics(None).await;
    assert_eq!(s, 200);
    assert!(ct.starts_with("text/plain; version=0.0.4"), "{ct}");
    for needle in [
        "echopilot_build_info{version=",
        "echopilot_http_requests_total{route=\"/api/status/summary\",status=\"2xx\"} 1",
        "echopilot_http_requests_total{route=\"unmatched\",status=\"4xx\"} 1",
        "echopilot_http_request_duration_seconds_bucket{route=\"/api/status/summary\",le=\"+Inf\"} 1",
        "echopilot_slo_error_budget_remaining_ratio 1",
        "echopilot_slo_uptime_ratio 1",
        "echopilot_scheduler_tick_age_seconds ",
        "echopilot_webhooks_total{outcome=\"ok\"} 1",
        "echopilot_webhooks_total{outcome=\"failed\"} 1",
        "echopilot_job_outcomes_total{kind=\"http\",outcome=\"succeeded\"} 1",
        "echopilot_rate_limited_requests_total 1",
        "echopilot_audit_events 1",
        "echopilot_alerts_firing{severity=\"info\"} 1",
        "echopilot_jobs{queue=\"default\",status=\"queued\"} 3",
        "echopilot_queue_depth{queue=\"default\"} 3",
        "echopilot_jobs_stuck 1",
        "echopilot_backup_last_age_seconds 42.5",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in\n{text}");
    }
    if let Some((ok, msg)) = promtool(&text) {
        assert!(ok, "promtool check metrics failed:\n{msg}\n---\n{text}");
    }
    app.stop().await;
}

#[tokio::test]
async fn metrics_can_require_a_viewer_key() {
    let app = TestApp::spawn_with(&[("METRICS_KEY_REQUIRED", "true")]).await;
    let (s, _, _) = app.metrics(None).await;
    assert_eq!(s, 401);
    let (s, _, _) = app.metrics(Some(WORKER_KEY)).await;
    assert_eq!(s, 403);
    let (s, _, text) = app.metrics(Some(VIEWER_KEY)).await;
    assert_eq!(s, 200);
    assert!(text.contains("echopilot_build_info"));
    app.stop().await;
}

#[tokio::test]
async fn minutes_past_the_window_are_pruned_and_never_counted() {
    let home = tempfile::tempdir().unwrap();
    let state = manual_state(home.path(), &[("SLO_WINDOW_DAYS", "1")], t0());
    let first = minute_of(t0());
    let _ = state
        .slo
        .merge_minute(first, &traffic(100, 50), true)
        .unwrap();
    // Three days on: the old minute is outside the 1-day window (and its margin day).
    state.clock.advance(chrono::Duration::days(3));
    let now = minute_of(state.clock.now());
    mark_up(&state, now - 1439, now);
    let f = state.slo.figures().unwrap();
    assert_eq!(f.requests, 0);
    assert!(close(f.uptime_pct, 100.0));
    state.slo.flush().unwrap();
    let s = state.slo.figures().unwrap();
    assert_eq!(s.errors, 0);
    // The record itself is gone.
    let stats = state.store.tree_counts();
    let minutes = stats.iter().find(|(n, _)| n == "slo_minutes").unwrap().1;
    assert_eq!(minutes, 1440);
}

/// The domains meet: a job's outcome and the scheduler's ticks reach the SLO counters,
/// and `/metrics` shows the queue's gauges — still a valid exposition.
#[tokio::test]
async fn job_outcomes_ticks_and_queue_gauges_reach_metrics() {
    let app = TestApp::spawn().await;
    let done = app
        .enqueue_id(serde_json::json!({"kind": "report.build", "queue": "reports"}))
        .await;
    app.enqueue_id(serde_json::json!({"kind": "report.build", "queue": "reports"}))
        .await;
    let (s, v) = app
        .claim(serde_json::json!({"worker": "w1", "kinds": ["report.build"]}))
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["job"]["id"], done.as_str());
    let (s, v) = app
        .complete(
            &done,
            serde_json::json!({"worker": "w1", "result": {"rows": 3}}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let (s, _) = app
        .post(
            "/api/scheduler/restart",
            Some(helpers::OPERATOR_KEY),
            serde_json::json!({}),
        )
        .await;
    assert_eq!(s, 200);

    // The feed is a background task: poll until it has caught up.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let text = loop {
        let (_, m) = app.get("/metrics", None).await;
        let text = m.as_str().unwrap_or_default().to_string();
        let fed = text
            .contains(r#"echopilot_job_outcomes_total{kind="report.build",outcome="succeeded"} 1"#)
            && !text.contains("echopilot_scheduler_ticks_total 0");
        if fed || std::time::Instant::now() > deadline {
            break text;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    for line in [
        r#"echopilot_job_outcomes_total{kind="report.build",outcome="succeeded"} 1"#,
        r#"echopilot_jobs{queue="reports",status="succeeded"} 1"#,
        r#"echopilot_jobs{queue="reports",status="queued"} 1"#,
        r#"echopilot_queue_depth{queue="reports"} 1"#,
        "echopilot_jobs_stuck 0",
    ] {
        assert!(text.contains(line), "missing {line}:\n{text}");
    }
    assert!(
        !text.contains("echopilot_scheduler_ticks_total 0"),
        "{text}"
    );
    if let Some((ok, msg)) = promtool(&text) {
        assert!(ok, "promtool: {msg}\n{text}");
    }
    app.stop().await;
}
