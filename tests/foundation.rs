//! The foundation: the summary, the error shapes, restarts, signals, refusals.

mod helpers;

use std::time::Duration;

use axum::routing::post;
use echopilot::web::extract::AppJson;
use helpers::{Process, TestApp, bin};
use serde_json::{Value, json};
use tower::ServiceExt;

#[tokio::test]
async fn summary_is_healthy_with_stable_keys_and_request_ids() {
    let app = TestApp::spawn().await;
    let resp = app
        .client
        .get(app.url("/api/status/summary"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.headers().contains_key("x-request-id"));
    let text = resp.text().await.unwrap();
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["ok"], true);
    assert_eq!(v["status"], "healthy", "{v}");
    assert_eq!(v["version"], env!("CARGO_PKG_VERSION"));
    assert!(v["commit"].as_str().is_some_and(|c| !c.is_empty()));
    assert_eq!(v["components"]["store"]["status"], "healthy");
    assert_eq!(v["components"]["store"]["backend"], "sled");
    assert!(v["components"]["disk"]["free_bytes"].as_u64().unwrap() > 0);
    // Key order is fixed, so two snapshots diff cleanly.
    let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        [
            "ok",
            "status",
            "version",
            "commit",
            "built_at",
            "started_at",
            "uptime_secs",
            "flags_off",
            "components"
        ]
    );
    let comps: Vec<&String> = v["components"].as_object().unwrap().keys().collect();
    let again = app.summary().await;
    let comps2: Vec<&String> = again["components"].as_object().unwrap().keys().collect();
    assert_eq!(comps, comps2);
    // An id sent by the client is kept.
    let resp = app
        .client
        .get(app.url("/api/status/summary"))
        .header("x-request-id", "abc-123")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["x-request-id"], "abc-123");
    app.stop().await;
}

/// Two summaries of an idle healthy server a second apart, compared with `diff`: one
/// field a line, and only a few coarse figures move.
#[tokio::test]
async fn two_idle_summaries_differ_in_a_few_lines() {
    let app = TestApp::spawn().await;
    let text = |app: &TestApp| {
        let req = app.client.get(app.url("/api/status/summary"));
        async move { req.send().await.unwrap().text().await.unwrap() }
    };
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a.json"), tmp.path().join("b.json"));
    let first = text(&app).await;
    std::fs::write(&a, &first).unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    std::fs::write(&b, text(&app).await).unwrap();

    // Pretty-printed: one field a line.
    assert!(first.starts_with("{\n  \"ok\": true,\n"), "{first}");
    assert!(first.lines().count() > 40, "{first}");
    let v: Value = serde_json::from_str(&first).unwrap();
    assert!(v["components"]["disk"]["free_pct"].is_u64(), "{v}");

    let out = std::process::Command::new("diff")
        .arg(&a)
        .arg(&b)
        .output()
        .expect("diff");
    let diff = String::from_utf8_lossy(&out.stdout);
    let changed: Vec<&str> = diff.lines().filter(|l| l.starts_with('<')).collect();
    // uptime and tick age move each second; the shared host's free space and the P95
    // may move a step.
    assert!(changed.len() <= 4, "{diff}");
    let moving = [
        "uptime_secs",
        "tick_age_secs",
        "last_tick",
        "latency_p95_ms",
        "free_pct",
        "free_bytes",
    ];
    for line in &changed {
        assert!(moving.iter().any(|k| line.contains(k)), "{diff}");
    }
    app.stop().await;
}

#[tokio::test]
async fn unknown_api_routes_and_wrong_methods_answer_json() {
    let app = TestApp::spawn().await;
    let (s, v) = app.get("/api/no/such/thing", None).await;
    assert_eq!(s, 404);
    assert_eq!(v["ok"], false);
    assert!(v["error"].as_str().unwrap().contains("/api/no/such/thing"));
    let (s, v) = app.post("/api/status/summary", None, json!({})).await;
    assert_eq!(s, 405);
    assert_eq!(
        v,
        json!({"ok": false, "error": "method not allowed on this route"})
    );
    // Outside the API a 404 is not JSON.
    let resp = app.client.get(app.url("/nope")).send().await.unwrap();
    assert_eq!(resp.status(), 404);
    app.stop().await;
}

#[tokio::test]
async fn oversized_bodies_get_413_in_our_shape() {
    let app = TestApp::spawn_with(&[("MAX_BODY_BYTES", "1024")]).await;
    let big = "x".repeat(4096);
    let resp = app
        .client
        .post(app.url("/api/status/summary"))
        .header("content-type", "application/json")
        .body(big)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 413);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["ok"], false);
    // It names the limit, so a client knows what to send (issue 10, item 16).
    assert_eq!(
        v["error"],
        "request body too large: the limit is 1024 bytes (MAX_BODY_BYTES)"
    );
    // The limit answers before the handler, yet the SLO and the request log outside the
    // router know the route.
    let (_, _, metrics) = app.metrics(None).await;
    assert!(
        metrics.contains(
            "echopilot_http_requests_total{route=\"/api/status/summary\",status=\"4xx\"} 1"
        ),
        "{metrics}"
    );
    let log = app.app_log().await;
    assert!(
        log.lines()
            .any(|l| l.contains("method=POST route=/api/status/summary status=413")),
        "{log}"
    );
    app.stop().await;
}

/// Routes built on `AppJson` behind the real layers: malformed JSON, wrong fields and a
/// streamed oversized body all come back in our shape.
#[tokio::test]
async fn malformed_json_bodies_get_our_error_shape() {
    #[derive(serde::Deserialize)]
    struct Body {
        #[allow(dead_code)]
        kind: String,
    }
    let tmp = tempfile::tempdir().unwrap();
    let mut env = helpers::base_env();
    env.insert("MAX_BODY_BYTES".into(), "2048".into());
    let config = helpers::config(tmp.path(), &env);
    let router = axum::Router::new().route(
        "/api/echo",
        post(|AppJson(_b): AppJson<Body>| async { AppJson(json!({"ok": true})) }),
    );
    let app = echopilot::app::layers(router, &config);

    let call = |body: &'static str, ct: &'static str| {
        let app = app.clone();
        async move {
            let req = axum::http::Request::post("/api/echo")
                .header("content-type", ct)
                .body(axum::body::Body::from(body))
                .unwrap();
            let resp = app.oneshot(req).await.unwrap();
            let status = resp.status().as_u16();
            let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
                .await
                .unwrap();
            (status, serde_json::from_slice::<Value>(&bytes).unwrap())
        }
    };
    let (s, v) = call("{not json", "application/json").await;
    assert_eq!(s, 400);
    assert_eq!(v["ok"], false);
    assert!(
        v["error"].as_str().unwrap().starts_with("malformed JSON"),
        "{v}"
    );
    // A body that does not fit is bad input like any other: 400, naming the field.
    let (s, v) = call(r#"{"kind": 5}"#, "application/json").await;
    assert_eq!(s, 400);
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .starts_with("kind: invalid type"),
        "{v}"
    );
    let (s, v) = call(r#"{"knd": "x"}"#, "application/json").await;
    assert_eq!((s, v["error"].as_str().unwrap()), (400, "kind: required"));
    let (s, v) = call(r#"{"kind": "x"}"#, "text/plain").await;
    assert_eq!(s, 415);
    assert_eq!(v["ok"], false);
    let (s, v) = call(r#"{"kind": "x"}"#, "application/json").await;
    assert_eq!((s, v), (200, json!({"ok": true})));
    // A body without Content-Length that grows past the limit.
    let stream = futures_stream(4096);
    let req = axum::http::Request::post("/api/echo")
        .header("content-type", "application/json")
        .body(stream)
        .unwrap();
    let resp = app.clone().oneshot(req).await.unwrap();
    assert_eq!(resp.status(), 413);
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .unwrap();
    let v: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(v["ok"], false);
}

fn futures_stream(n: usize) -> axum::body::Body {
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        (0..n / 256).map(|_| Ok(vec![b' '; 256])).collect();
    axum::body::Body::from_stream(tokio_stream_iter(chunks))
}

fn tokio_stream_iter(
    items: Vec<Result<Vec<u8>, std::io::Error>>,
) -> impl futures_core::Stream<Item = Result<Vec<u8>, std::io::Error>> {
    struct Iter(std::vec::IntoIter<Result<Vec<u8>, std::io::Error>>);
    impl futures_core::Stream for Iter {
        type Item = Result<Vec<u8>, std::io::Error>;
        fn poll_next(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<Self::Item>> {
            std::task::Poll::Ready(self.0.next())
        }
    }
    Iter(items.into_iter())
}

#[tokio::test]
async fn data_survives_a_restart_on_the_same_home() {
    let tmp = tempfile::tempdir().unwrap();
    let app = TestApp::spawn_in(tmp.path(), &[]).await;
    let first = app.summary().await["components"]["store"]["first_started_at"].clone();
    // An audit event written through the running server.
    app.state
        .audit
        .record(echopilot::audit::NewEvent {
            action: "test.write".into(),
            target: "restart".into(),
            ok: true,
            status: 200,
            ..Default::default()
        })
        .await
        .unwrap();
    app.stop().await;

    let app = TestApp::spawn_in(tmp.path(), &[]).await;
    assert_eq!(
        app.summary().await["components"]["store"]["first_started_at"],
        first
    );
    assert_eq!(app.state.instance.boots, 2);
    let events = app.state.audit.recent(10).unwrap();
    assert!(
        events
            .iter()
            .any(|e| e.action == "test.write" && e.target == "restart")
    );
    app.stop().await;
}

#[test]
fn sigterm_and_sigint_exit_zero_promptly() {
    let tmp = tempfile::tempdir().unwrap();
    for sig in ["TERM", "INT"] {
        let mut p = Process::start(tmp.path(), &[]);
        let (s, v) = p.get_json("/api/status/summary");
        assert_eq!(s, 200);
        assert_eq!(v["status"], "healthy");
        p.signal(sig);
        let (code, took) = p.wait(Duration::from_secs(10));
        assert_eq!(code, Some(0), "SIG{sig}");
        assert!(took < Duration::from_secs(10));
    }
}

#[test]
fn second_instance_on_same_home_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let mut first = Process::start(tmp.path(), &[]);
    let out = bin(tmp.path())
        .args(["serve", "--bind", "127.0.0.1:0"])
        .env("ALLOW_DIRTY", "true")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("already running"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    // The first one is unharmed.
    assert_eq!(first.get_json("/api/status/summary").0, 200);
    first.signal("TERM");
    assert_eq!(first.wait(Duration::from_secs(10)).0, Some(0));
}

#[test]
fn invalid_configuration_stops_start_up_naming_the_setting() {
    let tmp = tempfile::tempdir().unwrap();
    for (name, value) in [
        ("PORT", "abc"),
        ("ROLES_JSON", "{oops"),
        ("RATE_LIMIT_PER_MIN", "-1"),
    ] {
        let out = bin(tmp.path())
            .arg("serve")
            .env("ALLOW_DIRTY", "true")
            .env(name, value)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{name}={value} was accepted");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(name), "{name}: {err}");
    }
    // A secret never shows in the refusal.
    let out = bin(tmp.path())
        .arg("serve")
        .env("ALLOW_DIRTY", "true")
        .env("ROLES_JSON", r#"{"my-secret-key-value-123": "superuser"}"#)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("ROLES_JSON") && !err.contains("my-secret-key-value-123"),
        "{err}"
    );
}

#[test]
fn version_and_dirty_refusal() {
    let tmp = tempfile::tempdir().unwrap();
    let out = bin(tmp.path()).arg("--version").output().unwrap();
    let v = String::from_utf8_lossy(&out.stdout);
    assert!(
        v.starts_with(&format!("echopilot {} (", env!("CARGO_PKG_VERSION"))),
        "{v}"
    );
    let dirty = v.trim_end().ends_with("-dirty)");
    // Without ALLOW_DIRTY: a dirty build refuses, a clean one serves.
    let mut child = bin(tmp.path())
        .args(["serve", "--bind", "127.0.0.1:0"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    if dirty {
        let out = child.wait_with_output().unwrap();
        assert!(!out.status.success());
        assert!(String::from_utf8_lossy(&out.stderr).contains("ALLOW_DIRTY"));
    } else {
        std::thread::sleep(Duration::from_millis(500));
        assert!(
            child.try_wait().unwrap().is_none(),
            "clean build refused to serve"
        );
        child.kill().unwrap();
        let _ = child.wait();
    }
}

#[test]
fn db_check_and_stats() {
    let tmp = tempfile::tempdir().unwrap();
    let out = bin(tmp.path()).args(["db", "check"]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("ok: store"));
    let out = bin(tmp.path()).args(["db", "stats"]).output().unwrap();
    let s = String::from_utf8_lossy(&out.stdout);
    assert!(s.contains("tree meta:"), "{s}");

    // While the server holds the store, the same commands ask it over HTTP.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port().to_string()
    };
    let mut server = Process::start(tmp.path(), &[("PORT", &port)]);
    let out = bin(tmp.path())
        .args(["db", "check"])
        .env("PORT", &port)
        .output()
        .unwrap();
    let s = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{s}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(s.contains("running server's store answers"), "{s}");
    let out = bin(tmp.path())
        .args(["db", "stats"])
        .env("PORT", &port)
        .output()
        .unwrap();
    let s = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(s.contains("tree meta:") && s.contains("tree jobs:"), "{s}");
    // Without a key the server refuses, and the CLI says why.
    let out = bin(tmp.path())
        .args(["db", "stats"])
        .env("PORT", &port)
        .env_remove("DASHBOARD_KEY")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("401"));
    server.signal("TERM");
    assert_eq!(server.wait(Duration::from_secs(10)).0, Some(0));
}

#[tokio::test]
async fn runbook_log_files_exist_on_a_fresh_home() {
    let app = TestApp::spawn().await;
    for f in [
        "logs/ndjson/audit.ndjson",
        "logs/app.log",
        "logs/scheduler.log",
    ] {
        assert!(app.home.join(f).is_file(), "{f} missing");
    }
    assert!(app.home.join("backups/disaster_recovery").is_dir());
    app.stop().await;
}
