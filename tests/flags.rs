//! Feature flags: the API, validation and audit, and each built-in flag's effect, read
//! on every use (no restart).

mod helpers;

use std::time::Duration;

use chrono::{DateTime, Utc};
use echopilot::clock::Clock;
use echopilot::flags::{self, FlagName};
use helpers::ops::Receiver;
use helpers::{ADMIN_KEY, OPERATOR_KEY, TestApp, VIEWER_KEY, WORKER_KEY};
use serde_json::json;

fn t0() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-03-02T10:00:00Z")
        .unwrap()
        .to_utc()
}

#[tokio::test]
async fn flags_are_listed_read_by_workers_validated_and_audited() {
    let app = TestApp::spawn().await;
    let (s, v) = app.get("/api/flags", Some(VIEWER_KEY)).await;
    assert_eq!(s, 200, "{v}");
    let names: Vec<&str> = v["flags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "executor.http",
            "executor.command",
            "scheduler.cron",
            "payments.fulfilment",
            "dashboard.v2"
        ]
    );
    assert!(
        v["flags"]
            .as_array()
            .unwrap()
            .iter()
            .all(|f| f["enabled"] == true && f["builtin"] == true && f["default"] == true)
    );
    // Workers read one flag, nothing more; no key is 401.
    assert_eq!(app.get("/api/flags", Some(WORKER_KEY)).await.0, 403);
    let (s, v) = app.get("/api/flags/executor.http", Some(WORKER_KEY)).await;
    assert_eq!((s, &v["flag"]["enabled"]), (200, &json!(true)), "{v}");
    assert_eq!(app.get("/api/flags/executor.http", None).await.0, 401);
    assert_eq!(app.get("/api/flags/no-such", Some(WORKER_KEY)).await.0, 404);
    assert_eq!(app.get("/api/flags/Bad!", Some(WORKER_KEY)).await.0, 400);

    // A user's own flag, for their workers.
    let v = app.set_flag("billing.new-invoices_v2", true).await;
    assert_eq!(v["changed"], true);
    assert_eq!(v["flag"]["builtin"], false);
    let (s, v) = app
        .get("/api/flags/billing.new-invoices_v2", Some(WORKER_KEY))
        .await;
    assert_eq!((s, &v["flag"]["enabled"]), (200, &json!(true)), "{v}");

    // Bad input changes nothing and says why; each attempt is audited.
    let long = "x".repeat(65);
    for (name, body, want) in [
        ("Upper", json!({"enabled": false}), 400),
        ("has space", json!({"enabled": false}), 400),
        (long.as_str(), json!({"enabled": false}), 400),
        ("ok.name", json!({"enabled": "no"}), 400),
        ("ok.name", json!({"enabled": false, "colour": "red"}), 400),
        ("ok.name", json!({"note": "missing enabled"}), 400),
        (
            "ok.name",
            json!({"enabled": true, "note": "two\nlines"}),
            400,
        ),
        (
            "ok.name",
            json!({"enabled": true, "note": "n".repeat(501)}),
            400,
        ),
    ] {
        let (s, v) = app.put_flag(OPERATOR_KEY, name, body).await;
        assert_eq!(s, want, "{name}: {v}");
        assert_eq!(v["ok"], false);
        assert!(v["error"].as_str().is_some_and(|e| !e.is_empty()), "{v}");
    }
    assert_eq!(app.get("/api/flags/ok.name", Some(VIEWER_KEY)).await.0, 404);
    assert_eq!(
        app.put_flag(VIEWER_KEY, "executor.http", json!({"enabled": false}))
            .await
            .0,
        403
    );
    assert_eq!(
        app.put_flag(WORKER_KEY, "executor.http", json!({"enabled": false}))
            .await
            .0,
        403
    );
    app.state.flush_logs().await.unwrap();
    let events = app.audit_events("flag.set").await;
    assert_eq!(events.len(), 9, "{events:?}");
    assert_eq!(events.iter().filter(|e| e["ok"] == false).count(), 8);
    assert!(
        events
            .iter()
            .any(|e| e["ok"] == true && e["target"] == "flag:billing.new-invoices_v2")
    );
    let line = app.audit_text().await;
    assert!(line.contains("\"action\":\"flag.set\""));
    app.stop().await;
}

#[tokio::test]
async fn a_change_is_an_info_alert_a_marker_and_shows_in_the_summary() {
    let app = TestApp::spawn().await;
    assert_eq!(app.summary().await["flags_off"], json!([]));
    let v = app.set_flag("executor.http", false).await;
    assert_eq!(v["changed"], true);
    assert_eq!(v["flag"]["enabled"], false);
    assert_eq!(v["flag"]["note"], "test");
    let summary = app.summary().await;
    assert_eq!(summary["flags_off"], json!(["executor.http"]));
    // An info alert does not change health.
    assert_eq!(summary["status"], app.summary().await["status"]);
    let (_, alerts) = app.alerts(Some("firing"), Some(VIEWER_KEY)).await;
    let flag_alerts: Vec<_> = alerts["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["name"] == "feature_flag_change:executor.http")
        .collect();
    assert_eq!(flag_alerts.len(), 1, "{alerts}");
    assert_eq!(flag_alerts[0]["severity"], "info");
    assert!(
        flag_alerts[0]["message"]
            .as_str()
            .unwrap()
            .starts_with("feature flag change: executor.http off"),
        "{alerts}"
    );
    // Setting the same state again changes nothing and raises nothing.
    let v = app.set_flag("executor.http", false).await;
    assert_eq!(v["changed"], false);
    let (_, all) = app.alerts(None, Some(VIEWER_KEY)).await;
    let n = all["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["name"] == "feature_flag_change:executor.http")
        .count();
    assert_eq!(n, 1);
    let m = app.markers("").await;
    let flags: Vec<_> = m["markers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["kind"] == "flag")
        .collect();
    assert_eq!(flags.len(), 1, "{m}");
    assert_eq!(flags[0]["id"], "executor.http");
    assert_eq!(flags[0]["label"], "flag executor.http off: test");
    app.set_flag("executor.http", true).await;
    assert_eq!(app.summary().await["flags_off"], json!([]));
    app.stop().await;
}

#[tokio::test]
async fn executor_http_off_jobs_wait_on_they_run() {
    let hook = Receiver::start().await;
    let app = TestApp::spawn_with(&[("SCHEDULER_TICK_SECS", "3600")]).await;
    app.set_flag("executor.http", false).await;
    let id = app
        .enqueue_id(json!({"kind": "http", "payload": {"url": hook.url, "method": "POST", "body": {"text": "hi"}}}))
        .await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let j = app.job_full(&id).await;
    assert_eq!(j["status"], "queued", "{j}");
    assert_eq!(j["attempts"], 0, "{j}");
    assert!(hook.texts().is_empty());
    app.set_flag("executor.http", true).await;
    app.wait_status(&id, "succeeded").await;
    assert_eq!(hook.wait_for(1).await, ["hi"]);
    app.stop().await;
}

#[tokio::test]
async fn executor_command_off_jobs_wait_on_they_run() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("echopilot.toml"),
        "[commands.greet]\nprogram = \"echo\"\nargs = [\"hello\"]\n",
    )
    .unwrap();
    let app = TestApp::spawn_in(dir.path(), &[("SCHEDULER_TICK_SECS", "3600")]).await;
    app.set_flag("executor.command", false).await;
    let id = app
        .enqueue_id(json!({"kind": "command", "payload": {"command": "greet"}}))
        .await;
    // The http executor is not affected.
    let hook = Receiver::start().await;
    let other = app
        .enqueue_id(json!({"kind": "http", "payload": {"url": hook.url, "method": "POST", "body": {"text": "x"}}}))
        .await;
    app.wait_status(&other, "succeeded").await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let j = app.job_full(&id).await;
    assert_eq!(
        (&j["status"], &j["attempts"]),
        (&json!("queued"), &json!(0)),
        "{j}"
    );
    app.set_flag("executor.command", true).await;
    let j = app.wait_status(&id, "succeeded").await;
    assert_eq!(j["result"]["stdout"], "hello\n");
    app.stop().await;
}

#[tokio::test]
async fn scheduler_cron_off_schedules_do_not_fire() {
    let clock = Clock::manual(t0());
    let app = TestApp::spawn_with_clock(clock.clone(), &[("SCHEDULER_TICK_SECS", "3600")]).await;
    let (s, v) = app
        .post(
            "/api/schedules",
            Some(OPERATOR_KEY),
            json!({"name": "every-minute", "cron": "* * * * *", "kind": "report"}),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    app.set_flag("scheduler.cron", false).await;
    let jobs = || async {
        let (_, v) = app.jobs_list("?kind=report").await;
        v["jobs"].as_array().unwrap().len()
    };
    for _ in 0..3 {
        clock.advance(chrono::Duration::minutes(1));
        echopilot::scheduler::due(&app.state.scheduler)
            .await
            .unwrap();
        echopilot::scheduler::tick(&app.state.scheduler).await;
    }
    assert_eq!(jobs().await, 0);
    app.set_flag("scheduler.cron", true).await;
    clock.advance(chrono::Duration::minutes(1));
    echopilot::scheduler::due(&app.state.scheduler)
        .await
        .unwrap();
    assert_eq!(jobs().await, 1);
    app.stop().await;
}

#[tokio::test]
async fn dashboard_v2_off_redirects_to_v1() {
    let app = TestApp::spawn().await;
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let get = |path: &'static str| {
        let c = client.clone();
        let url = app.url(path);
        async move { c.get(url).send().await.unwrap() }
    };
    // On: /dashboard is v2 (a visitor without a session is sent to /login, not to v1).
    let to_v1 = |r: &reqwest::Response| {
        r.headers()
            .get("location")
            .is_some_and(|l| l.as_bytes().starts_with(b"/dashboard/v1"))
    };
    assert!(!to_v1(&get("/dashboard").await));
    app.set_flag("dashboard.v2", false).await;
    for path in ["/dashboard", "/dashboard/"] {
        let r = get(path).await;
        assert_eq!(r.status(), 303, "{path}");
        assert_eq!(r.headers()["location"], "/dashboard/v1");
    }
    // The legacy pages themselves are never sent to themselves.
    assert!(!to_v1(&get("/dashboard/v1").await));
    app.set_flag("dashboard.v2", true).await;
    assert!(!to_v1(&get("/dashboard").await));
    app.stop().await;
}

#[tokio::test]
async fn the_read_handle_for_payments_sees_each_change_at_once() {
    let app = TestApp::spawn().await;
    let handle = app.state.flags.clone();
    let mut changes = handle.subscribe();
    assert!(handle.is_enabled(flags::PAYMENTS_FULFILMENT));
    app.set_flag("payments.fulfilment", false).await;
    assert!(!handle.is_enabled(flags::PAYMENTS_FULFILMENT));
    assert_eq!(handle.builtins_off(), [flags::PAYMENTS_FULFILMENT]);
    app.set_flag("payments.fulfilment", true).await;
    assert!(handle.is_enabled(flags::PAYMENTS_FULFILMENT));
    let off = changes.recv().await.unwrap();
    let on = changes.recv().await.unwrap();
    assert_eq!(
        (off.name.as_str(), off.enabled, off.was),
        ("payments.fulfilment", false, true)
    );
    assert!(on.enabled && !on.was);
    // Unknown flags are off.
    assert!(!handle.is_enabled("no.such.flag"));
    app.stop().await;
}

#[tokio::test]
async fn flags_survive_a_restart() {
    let app = TestApp::spawn().await;
    app.set_flag("executor.http", false).await;
    app.set_flag("team.beta", true).await;
    let home = app.stop().await.unwrap();
    let app = TestApp::spawn_in(home.path(), &[]).await;
    assert!(!app.state.flags.is_enabled(flags::EXECUTOR_HTTP));
    assert!(app.state.flags.is_enabled("team.beta"));
    let (_, v) = app.get("/api/flags/team.beta", Some(ADMIN_KEY)).await;
    assert_eq!(
        v["flag"]["updated_by"].as_str().map(str::is_empty),
        Some(false)
    );
    app.stop().await;
    drop(home);
    assert!(FlagName::parse("executor.http").is_ok());
}
