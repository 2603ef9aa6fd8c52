//! The public status figures are rendered once per `STATUS_CACHE_MS` and shared;
//! `POST /api/cache/clear` drops them, so a change shows at once. (How long a body may
//! live is checked by the cache's own unit tests, not by timing here.)

mod helpers;

use std::time::{Duration, Instant};

use helpers::{OPERATOR_KEY, TestApp, VIEWER_KEY};
use reqwest::Method;
use serde_json::{Value, json};

const FIGURES: [&str; 4] = [
    "/api/status/summary",
    "/api/slo/status",
    "/api/scheduler/status",
    "/metrics",
];

async fn bodies(app: &TestApp) -> Vec<Value> {
    let mut out = Vec::new();
    for path in FIGURES {
        let (s, v) = app.get(path, None).await;
        assert_eq!(s, 200, "{path}: {v}");
        out.push(v);
    }
    out
}

#[tokio::test]
async fn figures_are_shared_within_the_window_and_cleared_on_demand() {
    let app = TestApp::spawn_with(&[("STATUS_CACHE_MS", "1000")]).await;
    let window = Duration::from_millis(1000);
    // A slow machine may take longer than the window between two reads: try again.
    let mut shared = false;
    for _ in 0..5 {
        let _ = app
            .send(Method::POST, "/api/cache/clear", Some(OPERATOR_KEY), None)
            .await;
        let t = Instant::now();
        let first = bodies(&app).await;
        // Changes that every figure would show: a queued job, requests counted.
        app.enqueue_id(json!({"kind": "k"})).await;
        let second = bodies(&app).await;
        if t.elapsed() < window {
            assert_eq!(first, second, "bodies within the window are the same");
            shared = true;
            break;
        }
    }
    assert!(shared, "never two reads within one window");
    let (_, before) = app.get("/api/scheduler/status", None).await;

    let (s, v) = app
        .send(Method::POST, "/api/cache/clear", Some(OPERATOR_KEY), None)
        .await;
    assert_eq!(s, 200, "{v}");
    let cleared = v["cleared"].as_array().unwrap();
    assert!(cleared.contains(&json!("scheduler_status")), "{v}");
    let (_, after) = app.get("/api/scheduler/status", None).await;
    assert_eq!(
        after["queued"].as_u64().unwrap(),
        before["queued"].as_u64().unwrap() + 1,
        "after a clear the change shows at once: {before} → {after}"
    );

    // Operators only, and audited.
    let (s, _) = app
        .send(Method::POST, "/api/cache/clear", Some(VIEWER_KEY), None)
        .await;
    assert_eq!(s, 403);
    let (_, audit) = app
        .get("/api/audit?action=cache.clear", Some(VIEWER_KEY))
        .await;
    let events = audit["events"].as_array().unwrap();
    assert!(events.len() >= 2, "{audit}");
    assert!(events.iter().any(|e| e["ok"] == json!(true)));
    app.stop().await;
}

#[tokio::test]
async fn without_a_window_every_call_renders() {
    let app = TestApp::spawn_with(&[("STATUS_CACHE_MS", "0")]).await;
    let (_, before) = app.get("/api/scheduler/status", None).await;
    app.enqueue_id(json!({"kind": "k"})).await;
    let (_, after) = app.get("/api/scheduler/status", None).await;
    assert_eq!(
        after["queued"],
        json!(before["queued"].as_u64().unwrap() + 1)
    );
    // Nothing was held to clear.
    let (s, v) = app
        .send(Method::POST, "/api/cache/clear", Some(OPERATOR_KEY), None)
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["cleared"], json!([]));
    app.stop().await;
}

#[test]
fn a_window_over_one_second_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut env = helpers::base_env();
    env.insert("STATUS_CACHE_MS".into(), "1001".into());
    let args = echopilot::config::ServeArgs {
        home: echopilot::config::HomeArg {
            home: Some(dir.path().to_path_buf()),
        },
        bind: Some("127.0.0.1:0".into()),
    };
    let err = echopilot::config::Config::from_sources(&args, &env).unwrap_err();
    assert!(err.to_string().contains("STATUS_CACHE_MS"), "{err}");
}
