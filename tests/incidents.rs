//! Incidents and maintenance windows: the runbook's templates byte for byte, status
//! transitions, the postmortem rule, `AUTO_INCIDENTS`, held alert messages, the error
//! budget without maintenance minutes, markers, and the audit trail of each change.

mod helpers;

use std::time::Duration;

use chrono::{DateTime, Utc};
use echopilot::clock::{Clock, rfc3339};
use echopilot::slo::alerts::{self, AlertState};
use echopilot::slo::minute_of;
use helpers::ops::Receiver;
use helpers::slo::{manual_state, traffic};
use helpers::{OPERATOR_KEY, TestApp, VIEWER_KEY};
use serde_json::{Value, json};

fn t0() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-03-02T10:00:00Z")
        .unwrap()
        .to_utc()
}

fn checkout() -> Value {
    json!({
        "title": "Checkout failing",
        "severity": "P1",
        "impact": "Payments fail for all users",
        "eta": "30 minutes",
    })
}

#[tokio::test]
async fn an_incident_from_detection_to_resolution_renders_the_runbook_templates_exactly() {
    let clock = Clock::manual(t0());
    let app = TestApp::spawn_with_clock(clock.clone(), &[]).await;
    let i = app.open_incident(checkout()).await;
    assert_eq!(i["status"], "investigating");
    assert_eq!(i["severity"], "P1");
    let id = i["id"].as_str().unwrap().to_string();

    let (s, detected) = app.announcement_text(&id, "detected").await;
    assert_eq!(s, 200);
    let want = "\u{1F6A8} INCIDENT: Checkout failing\n\
                Severity: P1\n\
                Impact: Payments fail for all users\n\
                Status: Investigating\n\
                ETA: 30 minutes";
    assert_eq!(String::from_utf8(detected.clone()).unwrap(), want);
    // The real emoji, not the runbook file's mis-encoded bytes.
    assert_eq!(detected[..4], [0xF0, 0x9F, 0x9A, 0xA8]);
    // No announcement of a resolution before there is one.
    assert_eq!(app.announcement_text(&id, "resolved").await.0, 409);

    let (s, v) = app
        .incident_update(
            &id,
            json!({"message": "bad deploy found", "status": "identified"}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    clock.advance(chrono::Duration::minutes(125));
    // Resolving needs the three fields, and only resolving takes them.
    let (s, v) = app
        .incident_update(
            &id,
            json!({"message": "fixed", "status": "resolved", "root_cause": "x"}),
        )
        .await;
    assert_eq!(s, 400, "{v}");
    assert!(v["error"].as_str().unwrap().contains("resolution"), "{v}");
    let (s, _) = app
        .incident_update(&id, json!({"message": "hm", "root_cause": "x"}))
        .await;
    assert_eq!(s, 400);
    let (s, v) = app
        .incident_update(
            &id,
            json!({
                "message": "rolled back",
                "status": "resolved",
                "root_cause": "A bad deploy of the payment form",
                "resolution": "Rolled back to the previous release",
                "prevention": "Smoke-test checkout before each deploy",
            }),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let inc = &v["incident"];
    assert_eq!(inc["status"], "resolved");
    assert_eq!(inc["duration_secs"], 125 * 60);
    assert_eq!(inc["updates"].as_array().unwrap().len(), 3);
    assert_eq!(inc["resolved_at"], rfc3339(clock.now()));

    let (s, resolved) = app.announcement_text(&id, "resolved").await;
    assert_eq!(s, 200);
    let want = "\u{2705} RESOLVED: Checkout failing\n\
                Root Cause: A bad deploy of the payment form\n\
                Resolution: Rolled back to the previous release\n\
                Prevention: Smoke-test checkout before each deploy\n\
                Duration: 2h 5m";
    assert_eq!(String::from_utf8(resolved.clone()).unwrap(), want);
    assert_eq!(resolved[..3], [0xE2, 0x9C, 0x85]);
    // The JSON form carries the same text; the kind follows the status by default.
    let (_, v) = app
        .get(
            &format!("/api/incidents/{id}/announcement"),
            Some(VIEWER_KEY),
        )
        .await;
    assert_eq!(
        (v["kind"].as_str(), v["text"].as_str()),
        (Some("resolved"), Some(want))
    );

    // A resolved incident is over: no more moves.
    let (s, v) = app
        .incident_update(&id, json!({"message": "again?", "status": "investigating"}))
        .await;
    assert_eq!(s, 409, "{v}");
    let (_, v) = app
        .get(&format!("/api/incidents/{id}"), Some(VIEWER_KEY))
        .await;
    assert_eq!(v["incident"]["status"], "resolved");

    // Each change was audited.
    app.state.flush_logs().await.unwrap();
    for (action, ok, failed) in [
        ("incident.open", 1, 0),
        ("incident.update", 1, 2),
        ("incident.resolve", 1, 1),
    ] {
        let ev = app.audit_events(action).await;
        let n_ok = ev.iter().filter(|e| e["ok"] == true).count();
        let n_failed = ev.iter().filter(|e| e["ok"] == false).count();
        assert_eq!((n_ok, n_failed), (ok, failed), "{action}: {ev:?}");
        assert!(ev.iter().all(|e| e["target"] == format!("incident:{id}")));
    }
    // The timeline is on the charts.
    let m = app.markers(&format!("?since={}", rfc3339(t0()))).await;
    let labels: Vec<&str> = m["markers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["kind"] == "incident")
        .map(|m| m["label"].as_str().unwrap())
        .collect();
    assert_eq!(
        labels,
        [
            "P1 incident opened: Checkout failing",
            "P1 identified: Checkout failing",
            "P1 resolved: Checkout failing"
        ]
    );
    app.stop().await;
}

#[tokio::test]
async fn bad_incident_input_is_refused_and_audited() {
    let app = TestApp::spawn().await;
    for (body, want) in [
        (json!({"title": "x", "severity": "P4", "impact": "y"}), 400),
        (json!({"title": "x", "severity": "p1", "impact": "y"}), 400),
        (
            json!({"title": "two\nlines", "severity": "P2", "impact": "y"}),
            400,
        ),
        (json!({"title": " ", "severity": "P2", "impact": "y"}), 400),
        (
            json!({"title": "x".repeat(501), "severity": "P2", "impact": "y"}),
            400,
        ),
        (json!({"title": "x", "severity": "P2"}), 400),
        (
            json!({"title": "x", "severity": "P2", "impact": "y", "owner": "me"}),
            400,
        ),
    ] {
        let (s, v) = app
            .post("/api/incidents", Some(OPERATOR_KEY), body.clone())
            .await;
        assert_eq!(s, want, "{body}: {v}");
        assert_eq!(v["ok"], false);
    }
    assert_eq!(
        app.post("/api/incidents", Some(VIEWER_KEY), checkout())
            .await
            .0,
        403
    );
    let (_, v) = app.get("/api/incidents", Some(VIEWER_KEY)).await;
    assert_eq!(v["incidents"], json!([]));
    let i = app.open_incident(checkout()).await;
    let id = i["id"].as_str().unwrap();
    // The ETA defaults to the template's "Unknown".
    let i2 = app
        .open_incident(json!({"title": "Slow pages", "severity": "P3", "impact": "Docs slow"}))
        .await;
    assert_eq!(i2["eta"], "Unknown");
    let (s, _) = app
        .incident_update(id, json!({"message": "x", "status": "closed"}))
        .await;
    assert_eq!(s, 400);
    let (s, _) = app
        .incident_update(
            "0190f0f0-0000-7000-8000-000000000000",
            json!({"message": "x"}),
        )
        .await;
    assert_eq!(s, 404);
    let (s, _) = app
        .get(
            &format!("/api/incidents/{id}/announcement?kind=later"),
            Some(VIEWER_KEY),
        )
        .await;
    assert_eq!(s, 400);
    // Postmortems follow a resolution.
    let pm = json!({"timeline": "t", "root_cause": "r", "preventive_measures": "p", "runbook_updates": "u"});
    let (s, _) = app
        .post(
            &format!("/api/incidents/{id}/postmortem"),
            Some(OPERATOR_KEY),
            pm,
        )
        .await;
    assert_eq!(s, 409);
    let (_, v) = app
        .get("/api/incidents?status=investigating", Some(VIEWER_KEY))
        .await;
    assert_eq!(v["incidents"].as_array().unwrap().len(), 2);
    app.state.flush_logs().await.unwrap();
    let opened = app.audit_events("incident.open").await;
    assert_eq!(opened.iter().filter(|e| e["ok"] == false).count(), 7);
    assert_eq!(opened.iter().filter(|e| e["ok"] == true).count(), 2);
    assert_eq!(
        app.audit_events("incident.postmortem").await[0]["ok"],
        false
    );
    app.stop().await;
}

#[tokio::test]
async fn a_resolved_p0_or_p1_without_a_postmortem_after_48_hours_is_a_warning() {
    let clock = Clock::manual(t0());
    let app = TestApp::spawn_with_clock(clock.clone(), &[]).await;
    let overdue = |app: &TestApp| {
        app.state
            .alerts
            .firing()
            .into_iter()
            .find(|a| a.name == "postmortem_overdue")
    };
    let resolve = json!({"message": "done", "status": "resolved", "root_cause": "r",
                         "resolution": "s", "prevention": "p"});
    let p0 = app
        .open_incident(json!({"title": "Outage", "severity": "P0", "impact": "everything"}))
        .await;
    let p0 = p0["id"].as_str().unwrap().to_string();
    let p2 = app
        .open_incident(json!({"title": "Typo", "severity": "P2", "impact": "a label"}))
        .await;
    let p2 = p2["id"].as_str().unwrap().to_string();
    for id in [&p0, &p2] {
        assert_eq!(app.incident_update(id, resolve.clone()).await.0, 200);
    }
    clock.advance(chrono::Duration::hours(48) - chrono::Duration::minutes(1));
    alerts::evaluate(&app.state.alerts, &app.state.slo)
        .await
        .unwrap();
    assert!(overdue(&app).is_none());
    clock.advance(chrono::Duration::minutes(1));
    alerts::evaluate(&app.state.alerts, &app.state.slo)
        .await
        .unwrap();
    let a = overdue(&app).expect("postmortem_overdue fires at 48 h");
    assert_eq!(a.severity, alerts::Severity::Warning);
    assert!(
        a.message.contains(&p0) && !a.message.contains(&p2),
        "{}",
        a.message
    );

    let (s, v) = app
        .post(
            &format!("/api/incidents/{p0}/postmortem"),
            Some(OPERATOR_KEY),
            json!({
                "timeline": "10:00 alert\n10:04 acknowledged\n12:05 resolved",
                "root_cause": "disk full",
                "preventive_measures": "alert on free space",
                "runbook_updates": "added a disk check",
            }),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["incident"]["postmortem"]["root_cause"], "disk full");
    let changes = alerts::evaluate(&app.state.alerts, &app.state.slo)
        .await
        .unwrap();
    assert!(
        changes.contains(&("postmortem_overdue".to_string(), AlertState::Resolved)),
        "{changes:?}"
    );
    assert!(overdue(&app).is_none());
    app.state.flush_logs().await.unwrap();
    assert_eq!(app.audit_events("incident.postmortem").await[0]["ok"], true);
    app.stop().await;
}

#[tokio::test]
async fn auto_incidents_open_one_p1_per_critical_alert() {
    for auto in [false, true] {
        let home = tempfile::tempdir().unwrap();
        let flag = if auto { "true" } else { "false" };
        let state = manual_state(home.path(), &[("AUTO_INCIDENTS", flag)], t0());
        // Budget rules judge only an observed hour (no false alarm after a restart): an
        // hour up since the first start, then the bad minute.
        let hour = echopilot::slo::alerts::MIN_OBSERVED_MINUTES;
        state.clock.advance(chrono::Duration::minutes(hour as i64));
        let now = minute_of(t0()) + hour;
        for m in 0..=hour {
            let _ = state.slo.mark_up(now - m).unwrap();
        }
        let _ = state
            .slo
            .merge_minute(now, &traffic(1000, 500), true)
            .unwrap();
        alerts::evaluate(&state.alerts, &state.slo).await.unwrap();
        assert!(
            state
                .alerts
                .firing()
                .iter()
                .any(|a| a.name == "error_budget_critical")
        );
        let list = state.incidents.list(100).unwrap();
        let budget: Vec<_> = list
            .iter()
            .filter(|i| i.alert == "error_budget_critical")
            .collect();
        if !auto {
            assert!(list.is_empty());
            continue;
        }
        assert_eq!(budget.len(), 1, "{list:?}");
        assert_eq!(budget[0].severity.as_str(), "P1");
        assert_eq!(budget[0].opened_by, "auto");
        // Every incident came from a critical alert.
        let critical = state
            .alerts
            .firing()
            .iter()
            .filter(|a| a.severity == alerts::Severity::Critical)
            .count();
        assert_eq!(list.len(), critical);
        // Audited as the system's own change.
        let mut audited = 0;
        for _ in 0..100 {
            let filter = echopilot::audit::Filter {
                action: Some("incident.open".into()),
                limit: 100,
                ..Default::default()
            };
            audited = state.audit.query(&filter).unwrap().0.len();
            if audited == list.len() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(audited, list.len());
        // Still firing: no second incident.
        state.clock.advance(chrono::Duration::seconds(30));
        alerts::evaluate(&state.alerts, &state.slo).await.unwrap();
        assert_eq!(state.incidents.list(100).unwrap().len(), list.len());
    }
}

#[tokio::test]
async fn announce_posts_the_text_to_the_alert_webhook_through_the_job_queue() {
    let hook = Receiver::start().await;
    let app = TestApp::spawn_with(&[("ALERT_WEBHOOK_URL", &hook.url)]).await;
    let id = app.open_incident_id(checkout()).await;
    let (s, v) = app.announce(&id).await;
    assert_eq!(s, 202, "{v}");
    let job = v["job_id"].as_str().unwrap().to_string();
    let texts = hook.wait_for(1).await;
    assert!(texts[0].starts_with("\u{1F6A8} INCIDENT: Checkout failing\nSeverity: P1\n"));
    assert_eq!(texts[0], v["text"].as_str().unwrap());
    let j = app.wait_status(&job, "succeeded").await;
    assert_eq!(j["kind"], "alert.webhook");
    app.state.flush_logs().await.unwrap();
    assert_eq!(app.audit_events("incident.announce").await[0]["ok"], true);
    app.stop().await;

    // Without a webhook there is nowhere to post: refused, audited, nothing queued.
    let app = TestApp::spawn().await;
    let id = app.open_incident_id(checkout()).await;
    let (s, v) = app.announce(&id).await;
    assert_eq!(s, 409, "{v}");
    let (_, jobs) = app.jobs_list("?kind=alert.webhook").await;
    assert_eq!(jobs["jobs"], json!([]));
    app.state.flush_logs().await.unwrap();
    assert_eq!(app.audit_events("incident.announce").await[0]["ok"], false);
    app.stop().await;
}

#[tokio::test]
async fn maintenance_minutes_count_neither_against_uptime_nor_the_budget() {
    let home = tempfile::tempdir().unwrap();
    let state = manual_state(home.path(), &[], t0());
    let first = minute_of(t0());
    let start = t0() + chrono::Duration::minutes(10);
    let (w, commit) = state
        .maintenance
        .create(
            echopilot::maintenance::NewWindow {
                start: Some(rfc3339(start)),
                end: rfc3339(start + chrono::Duration::minutes(10)),
                reason: "database upgrade".into(),
            },
            "test",
        )
        .unwrap();
    commit.durable().await.unwrap();
    assert_eq!(w.reason, "database upgrade");
    // Up before and after the window, down (restarting) inside it, where the errors are.
    for m in (first..first + 10).chain(first + 20..=first + 30) {
        let _ = state.slo.mark_up(m).unwrap();
    }
    let _ = state
        .slo
        .merge_minute(first + 5, &traffic(10_000, 0), true)
        .unwrap();
    let _ = state
        .slo
        .merge_minute(first + 15, &traffic(100, 50), false)
        .unwrap();
    let _ = state
        .slo
        .merge_minute(first + 25, &traffic(10_000, 5), true)
        .unwrap();
    state.clock.advance(chrono::Duration::minutes(30));
    let f = state.slo.figures().unwrap();
    assert_eq!((f.requests, f.errors), (20_000, 5));
    // 5 errors of the 20 the 99.9 % target allows.
    assert!((f.budget.remaining_pct - 75.0).abs() < 1e-9, "{f:?}");
    assert_eq!(f.uptime_pct, 100.0);
    assert_eq!(f.observed_minutes, 21);
    assert_eq!(f.budget.bad_minutes, 0);
    // The same minutes outside a window would have spent the budget and the uptime.
    let other = tempfile::tempdir().unwrap();
    let plain = manual_state(other.path(), &[], t0());
    for m in (first..first + 10).chain(first + 20..=first + 30) {
        let _ = plain.slo.mark_up(m).unwrap();
    }
    let _ = plain
        .slo
        .merge_minute(first + 15, &traffic(100, 50), false)
        .unwrap();
    plain.clock.advance(chrono::Duration::minutes(30));
    let f = plain.slo.figures().unwrap();
    assert!(f.budget.remaining_pct < 0.0 && f.uptime_pct < 99.0, "{f:?}");
}

#[tokio::test]
async fn alerts_are_held_during_a_window_and_sent_after_it() {
    let hook = Receiver::start().await;
    let clock = Clock::manual(t0());
    let app = TestApp::spawn_with_clock(clock.clone(), &[("ALERT_WEBHOOK_URL", &hook.url)]).await;
    let before = app.summary().await;
    assert!(before.get("maintenance").is_none());
    let end = t0() + chrono::Duration::minutes(30);
    let (s, v) = app
        .plan_maintenance(json!({"end": rfc3339(end), "reason": "kernel update"}))
        .await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["window"]["state"], "active");
    let summary = app.summary().await;
    assert_eq!(
        summary["maintenance"],
        json!({"active": true, "until": rfc3339(end), "reason": "kernel update"})
    );
    assert_eq!(summary["status"], before["status"]);

    // The alert fires (stored, listed) but its message waits.
    app.set_flag("executor.command", false).await;
    assert!(
        app.state
            .alerts
            .firing()
            .iter()
            .any(|a| a.name == "feature_flag_change:executor.command")
    );
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(hook.texts().is_empty(), "{:?}", hook.texts());
    let (_, jobs) = app.jobs_list("?kind=alert.webhook").await;
    assert_eq!(jobs["jobs"], json!([]));
    let (_, m) = app.get("/api/maintenance", Some(VIEWER_KEY)).await;
    assert_eq!(m["held_alert_messages"], 1, "{m}");
    assert_eq!(m["active"]["reason"], "kernel update");

    clock.advance(chrono::Duration::minutes(31));
    let texts = hook.wait_for(1).await;
    assert!(
        texts[0].starts_with("[INFO] EchoPilot feature_flag_change:executor.command:"),
        "{texts:?}"
    );
    assert!(app.summary().await.get("maintenance").is_none());
    let (_, m) = app.get("/api/maintenance", Some(VIEWER_KEY)).await;
    assert_eq!(m["held_alert_messages"], 0);
    assert_eq!(m["windows"][0]["state"], "over");
    // Sent once (the jump of the clock may raise other alerts meanwhile).
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let flag_messages = hook
        .texts()
        .iter()
        .filter(|t| t.contains("feature_flag_change"))
        .count();
    assert_eq!(flag_messages, 1, "{:?}", hook.texts());
    app.stop().await;
}

#[tokio::test]
async fn maintenance_windows_are_validated_listed_marked_and_audited() {
    let clock = Clock::manual(t0());
    let app = TestApp::spawn_with_clock(clock.clone(), &[]).await;
    let at = |mins: i64| rfc3339(t0() + chrono::Duration::minutes(mins));
    for (body, want) in [
        (json!({"start": at(60), "end": at(30), "reason": "x"}), 400),
        (json!({"start": at(-10), "end": at(30), "reason": "x"}), 400),
        (
            json!({"start": "tonight", "end": at(30), "reason": "x"}),
            400,
        ),
        (
            json!({"start": at(0), "end": at(8 * 24 * 60), "reason": "x"}),
            400,
        ),
        (json!({"start": at(0), "end": at(30), "reason": " "}), 400),
        (json!({"start": at(0), "end": at(30)}), 400),
    ] {
        let (s, v) = app.plan_maintenance(body.clone()).await;
        assert_eq!(s, want, "{body}: {v}");
        assert_eq!(v["ok"], false);
    }
    let (s, _) = app
        .post(
            "/api/maintenance",
            Some(VIEWER_KEY),
            json!({"end": at(30), "reason": "x"}),
        )
        .await;
    assert_eq!(s, 403);
    // The runbook's low-traffic window, tomorrow at 02:00 UTC.
    let (_, m) = app.get("/api/maintenance", Some(VIEWER_KEY)).await;
    assert_eq!(m["suggested"]["start"], "2026-03-03T02:00:00.000Z");
    assert_eq!(m["suggested"]["end"], "2026-03-03T06:00:00.000Z");
    let (s, v) = app
        .plan_maintenance(json!({"start": m["suggested"]["start"], "end": m["suggested"]["end"], "reason": "upgrade sled"}))
        .await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["window"]["state"], "planned");
    assert!(app.summary().await.get("maintenance").is_none());
    let (_, m) = app.get("/api/maintenance", Some(VIEWER_KEY)).await;
    assert_eq!(m["windows"].as_array().unwrap().len(), 1);
    assert_eq!(m["active"], Value::Null);
    let marks = app.markers("").await;
    let labels: Vec<&str> = marks["markers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["kind"] == "maintenance")
        .map(|m| m["label"].as_str().unwrap())
        .collect();
    assert_eq!(
        labels,
        [
            "maintenance starts: upgrade sled",
            "maintenance ends: upgrade sled"
        ]
    );
    let (s, _) = app
        .get("/api/events/markers?since=yesterday", Some(VIEWER_KEY))
        .await;
    assert_eq!(s, 400);
    app.state.flush_logs().await.unwrap();
    let ev = app.audit_events("maintenance.create").await;
    assert_eq!(ev.iter().filter(|e| e["ok"] == true).count(), 1);
    assert_eq!(ev.iter().filter(|e| e["ok"] == false).count(), 6);
    app.stop().await;
}

#[tokio::test]
async fn a_window_ended_early_counts_again_and_a_planned_one_can_be_called_off() {
    let clock = Clock::manual(t0());
    let app = TestApp::spawn_with_clock(clock.clone(), &[]).await;
    let at = |mins: i64| rfc3339(t0() + chrono::Duration::minutes(mins));
    let (_, v) = app
        .plan_maintenance(json!({"end": at(120), "reason": "reindex"}))
        .await;
    let now_id = v["window"]["id"].as_str().unwrap().to_string();
    let (_, v) = app
        .plan_maintenance(json!({"start": at(600), "end": at(660), "reason": "later"}))
        .await;
    let later_id = v["window"]["id"].as_str().unwrap().to_string();
    clock.advance(chrono::Duration::minutes(10));
    assert!(app.summary().await.get("maintenance").is_some());
    let end = |id: String| {
        let app = &app;
        async move {
            app.post(
                &format!("/api/maintenance/{id}/end"),
                Some(OPERATOR_KEY),
                json!({}),
            )
            .await
        }
    };
    let (s, v) = end(now_id.clone()).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["window"]["state"], "over");
    assert_eq!(v["window"]["end"], rfc3339(clock.now()));
    assert!(app.summary().await.get("maintenance").is_none());
    assert_eq!(end(now_id).await.0, 409);
    let (s, v) = end(later_id).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["window"]["state"], "cancelled");
    // Only the ten minutes that were maintenance are left out.
    let first = minute_of(t0());
    let out = app
        .state
        .maintenance
        .excluded_minutes(first, first + 24 * 60)
        .unwrap();
    assert_eq!(out, [(first, first + 9)]);
    assert_eq!(end("nope".into()).await.0, 404);
    app.state.flush_logs().await.unwrap();
    let ev = app.audit_events("maintenance.end").await;
    assert_eq!(ev.iter().filter(|e| e["ok"] == true).count(), 2);
    assert_eq!(ev.iter().filter(|e| e["ok"] == false).count(), 2);
    app.stop().await;
}

#[tokio::test]
async fn a_burst_of_429s_is_a_chart_marker() {
    let clock = Clock::manual(t0());
    let app = TestApp::spawn_with_clock(clock.clone(), &[]).await;
    let first = minute_of(t0());
    let refused = |n: u64| echopilot::slo::Snapshot {
        rate_limited: n,
        ..Default::default()
    };
    let _ = app
        .state
        .slo
        .merge_minute(first, &refused(4), true)
        .unwrap();
    let _ = app
        .state
        .slo
        .merge_minute(first + 1, &refused(12), true)
        .unwrap();
    clock.advance(chrono::Duration::minutes(2));
    let m = app.markers(&format!("?since={}", rfc3339(t0()))).await;
    let bursts: Vec<&Value> = m["markers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["kind"] == "rate_limit")
        .collect();
    assert_eq!(bursts.len(), 1, "{m}");
    assert_eq!(
        bursts[0]["at"],
        rfc3339(t0() + chrono::Duration::minutes(1))
    );
    assert_eq!(
        bursts[0]["label"],
        "12 requests refused with 429 in one minute"
    );
    app.stop().await;
}
