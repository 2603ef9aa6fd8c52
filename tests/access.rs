//! Access control, rate limits, the audit trail and the request log.

mod helpers;

use std::time::{Duration, Instant};

use echopilot::auth::key_id;
use helpers::access::{all_audit_events, oneshot_status};
use helpers::{ADMIN_KEY, OPERATOR_KEY, Process, TestApp, VIEWER_KEY, WORKER_KEY, bin};
use reqwest::Method;
use serde_json::{Value, json};

const ROLES: &[(&str, &str)] = &[
    ("viewer", VIEWER_KEY),
    ("operator", OPERATOR_KEY),
    ("admin", ADMIN_KEY),
    ("worker", WORKER_KEY),
];

/// Does a key of `role` satisfy `required` (an operation's `x-required-role`)?
fn allows(required: &str, role: &str) -> bool {
    match required {
        "public" | "signature" | "key" => true,
        "viewer" => matches!(role, "viewer" | "operator" | "admin"),
        "operator" => matches!(role, "operator" | "admin"),
        "admin" => role == "admin",
        "worker" => matches!(role, "worker" | "operator" | "admin"),
        other => panic!("unknown x-required-role {other:?}"),
    }
}

/// An operation of the OpenAPI document: what the role matrix walks, so a new route
/// cannot escape it.
struct Operation {
    method: Method,
    path: String,
    role: String,
    /// Public, but a wrong key is refused (a key shows more).
    key_optional: bool,
    declared: Vec<u16>,
}

fn operations(doc: &Value) -> Vec<Operation> {
    let mut out = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let Ok(m) = Method::from_bytes(method.to_ascii_uppercase().as_bytes()) else {
                continue;
            };
            out.push(Operation {
                method: m,
                // Ids and names that do not exist.
                path: path
                    .replace("{id}", "0190f0f0-0000-7000-8000-000000000000")
                    .replace("{name}", "nope"),
                role: op["x-required-role"]
                    .as_str()
                    .unwrap_or_else(|| panic!("{method} {path} has no x-required-role"))
                    .to_string(),
                key_optional: op["x-key-optional"] == true,
                declared: op["responses"]
                    .as_object()
                    .unwrap()
                    .keys()
                    .map(|k| k.parse().unwrap())
                    .collect(),
            });
        }
    }
    out
}

#[tokio::test]
async fn role_matrix_over_every_route() {
    // Brute-force protection off: this test sends many wrong keys on purpose. A webhook
    // secret, so the signed route answers its 400 (no signature), not "not configured".
    let app = TestApp::spawn_with(&[
        ("AUTH_FAIL_LIMIT_PER_MIN", "0"),
        ("STRIPE_WEBHOOK_SECRET", "whsec_role_matrix"),
    ])
    .await;
    let (_, doc) = app.get("/api/openapi.json", None).await;
    let ops = operations(&doc);
    assert!(ops.len() >= 30, "{} operations", ops.len());
    let mut expected_failed = 0;
    let mut expected_forbidden = 0;
    // `None`: allowed, so anything the operation declares except 401/403.
    for op in &ops {
        let public = matches!(op.role.as_str(), "public" | "signature");
        let mut cases: Vec<(&str, Option<&str>, Option<u16>)> = vec![
            ("no key", None, if public { None } else { Some(401) }),
            (
                "wrong key",
                Some("not-a-live-key-0123456789"),
                if public && !op.key_optional {
                    None
                } else {
                    Some(401)
                },
            ),
        ];
        for &(role, key) in ROLES {
            let want = if allows(&op.role, role) {
                None
            } else {
                Some(403)
            };
            cases.push((role, Some(key), want));
        }
        let (method, path) = (&op.method, &op.path);
        for (label, key, want) in cases {
            let body = (*method == Method::POST).then(|| json!({}));
            let (status, v) = app.send(method.clone(), path, key, body).await;
            match want {
                Some(w) => assert_eq!(status, w, "{method} {path} as {label}: {v}"),
                None => assert!(
                    status != 401 && status != 403 && status < 500,
                    "{method} {path} as {label} (allowed): {status} {v}"
                ),
            }
            assert!(
                op.declared.contains(&status),
                "{method} {path} as {label}: {status} is not declared ({:?})",
                op.declared
            );
            match status {
                401 => expected_failed += 1,
                403 => expected_forbidden += 1,
                _ => {}
            }
            if status >= 400 {
                assert_eq!(v["ok"], false, "{method} {path} as {label}: {v}");
                assert!(v["error"].is_string(), "{v}");
            }
        }
    }
    // Every 401 and 403 is an audit event with `"ok":false` (across the rotation that
    // the admin's call of /api/logs/rotate made).
    app.flush_logs().await;
    let lines = all_audit_events(&app.home);
    let count = |a: &str| lines.iter().filter(|l| l["action"] == a).count();
    assert_eq!(count("auth.failed"), expected_failed);
    assert_eq!(count("auth.forbidden"), expected_forbidden);
    app.stop().await;
}

#[tokio::test]
async fn key_rotation_with_two_live_keys_then_restart_without_the_old_one() {
    let tmp = tempfile::tempdir().unwrap();
    let old = "old-admin-key-aaaaaaaaaaaaaaaa";
    let new = "new-admin-key-bbbbbbbbbbbbbbbb";
    let both = json!({old: "admin", new: "admin", VIEWER_KEY: "viewer"}).to_string();
    let app = TestApp::spawn_in(tmp.path(), &[("ROLES_JSON", &both)]).await;
    for k in [old, new] {
        let (s, v) = app.supervisor_status(Some(k)).await;
        assert_eq!(s, 200, "{v}");
        assert_eq!(v["caller"]["key_id"], key_id(k));
        assert_eq!(v["caller"]["role"], "admin");
    }
    app.stop().await;
    let only_new = json!({new: "admin", VIEWER_KEY: "viewer"}).to_string();
    let app = TestApp::spawn_in(tmp.path(), &[("ROLES_JSON", &only_new)]).await;
    let (s, v) = app.supervisor_status(Some(old)).await;
    assert_eq!(s, 401, "{v}");
    assert_eq!(v["ok"], false);
    let (s, _) = app.supervisor_status(Some(new)).await;
    assert_eq!(s, 200);
    app.stop().await;
}

#[tokio::test]
async fn supervisor_status_lists_tasks_and_the_caller() {
    let app = TestApp::spawn().await;
    let (s, v) = app.supervisor_status(Some(VIEWER_KEY)).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["ok"], true);
    assert_eq!(
        v["caller"],
        json!({"key_id": key_id(VIEWER_KEY), "role": "viewer"})
    );
    let tasks = v["tasks"].as_array().unwrap();
    let t = tasks
        .iter()
        .find(|t| t["name"] == "rate-limits")
        .expect("rate-limits task");
    for field in ["state", "restarts", "last_error", "started_at"] {
        assert!(t.get(field).is_some(), "{field} missing in {t}");
    }
    app.stop().await;
}

async fn poll_until_ok(app: &TestApp, path: &str, key: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (s, v) = app.get(path, Some(key)).await;
        if s == 200 {
            return;
        }
        assert_eq!(s, 429, "{v}");
        assert!(Instant::now() < deadline, "limit did not clear");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn over_the_limit_gets_429_retry_after_one_audit_event_and_recovers() {
    // 3 per 6 s: one request's allowance comes back every 2 s, so the burst below runs
    // out long before any refill, even on a loaded machine.
    let app =
        TestApp::spawn_with(&[("RATE_LIMIT_PER_MIN", "3"), ("RATE_LIMIT_WINDOW_SECS", "6")]).await;
    let mut served = 0;
    let resp = loop {
        let resp = app
            .raw(Method::GET, "/api/supervisor-status", Some(VIEWER_KEY))
            .await;
        if resp.status() == 429 {
            break resp;
        }
        assert_eq!(resp.status(), 200);
        served += 1;
        assert!(served < 10, "never limited");
    };
    assert!(served >= 3, "limited after {served}");
    let retry: u64 = resp.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=6).contains(&retry), "Retry-After {retry}");
    let body: Value = resp.json().await.unwrap();
    let refused = json!({"ok": false, "error": "Rate limit exceeded", "limit": "general"});
    assert_eq!(body, refused);
    // Refused again (still inside the window): same body, no second audit event.
    let (s, v) = app.supervisor_status(Some(VIEWER_KEY)).await;
    assert_eq!((s, v), (429, refused));
    // Other clients and the exempt summary are not affected.
    assert_eq!(app.supervisor_status(Some(OPERATOR_KEY)).await.0, 200);
    for _ in 0..10 {
        assert_eq!(app.get("/api/status/summary", None).await.0, 200);
    }
    // One event for the flood, not one per refusal; the runbook's grep finds it.
    let text = app.audit_text().await;
    let hits: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("rate_limit_exceeded"))
        .collect();
    assert_eq!(hits.len(), 1, "{text}");
    assert!(hits[0].contains(r#""ok":false"#));
    assert!(hits[0].contains(&format!(r#""actor":"{}""#, key_id(VIEWER_KEY))));
    assert!(hits[0].contains(r#""status":429"#));
    assert!(hits[0].contains("general"), "{}", hits[0]);
    // Both refusals are counted for Prometheus.
    let (_, metrics) = app.get("/metrics", None).await;
    let metrics = metrics.as_str().unwrap_or_default().to_string();
    assert!(
        metrics.contains("echopilot_rate_limited_requests_total 2"),
        "{metrics}"
    );
    // The window passes and the client is served again.
    poll_until_ok(&app, "/api/supervisor-status", VIEWER_KEY).await;
    app.stop().await;
}

/// 0 turns the limit off; it does not mean "the default". So the client sends more
/// than the default allows in one window.
#[tokio::test]
async fn zero_disables_the_limit() {
    let tmp = tempfile::tempdir().unwrap();
    let default = helpers::config(tmp.path(), &helpers::base_env()).rate_limit_per_min;
    let app = TestApp::spawn_with(&[("RATE_LIMIT_PER_MIN", "0")]).await;
    let n = default as usize + 20;
    let mut tasks = tokio::task::JoinSet::new();
    for w in 0..4 {
        let (client, url) = (app.client.clone(), app.url("/api/supervisor-status"));
        tasks.spawn(async move {
            let mut statuses = Vec::new();
            for _ in (w..n).step_by(4) {
                let r = client
                    .get(&url)
                    .header("x-dash-key", VIEWER_KEY)
                    .send()
                    .await
                    .unwrap();
                statuses.push(r.status().as_u16());
            }
            statuses
        });
    }
    let mut sent = 0;
    while let Some(statuses) = tasks.join_next().await {
        for s in statuses.unwrap() {
            assert_eq!(s, 200);
            sent += 1;
        }
    }
    assert_eq!(sent, n);
    app.stop().await;
}

/// The failed-key limit stops further failed attempts from the address (wrong keys,
/// keyless calls to protected routes) and names itself; a valid key from the same
/// address keeps working; an admin lifts the block without a restart.
#[tokio::test]
async fn failed_keys_block_further_failures_but_not_good_keys() {
    let app = TestApp::spawn_with(&[("AUTH_FAIL_LIMIT_PER_MIN", "3")]).await;
    let wrong = "wrong-key-guess-0000000000";
    for _ in 0..4 {
        assert_eq!(app.supervisor_status(Some(wrong)).await.0, 401);
    }
    let refused = json!({"ok": false, "error": "Rate limit exceeded", "limit": "failed_keys"});
    assert_eq!(
        app.supervisor_status(Some(wrong)).await,
        (429, refused.clone())
    );
    assert_eq!(app.supervisor_status(None).await, (429, refused.clone()));
    // Valid keys from the blocked address are served.
    let started = Instant::now();
    let (s, v) = app.supervisor_status(Some(ADMIN_KEY)).await;
    let took = started.elapsed();
    assert_eq!(s, 200, "{v}");
    eprintln!("valid key while its address is blocked: {s} in {took:?}");
    let (s, v) = app
        .post("/api/jobs/claim", Some(WORKER_KEY), json!({"worker": "w1"}))
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(app.get("/api/status/summary", None).await.0, 200);
    let text = app.audit_text().await;
    assert!(
        text.lines()
            .any(|l| l.contains("rate_limit_exceeded") && l.contains("failed_keys")),
        "{text}"
    );
    // The runbook's abuse check: what one address did.
    let (s, v) = app
        .get(
            "/api/audit?ip=127.0.0.1&action=rate_limit_exceeded",
            Some(ADMIN_KEY),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert!(v["count"].as_u64().unwrap() >= 1, "{v}");
    assert!(
        v["events"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["ip"] == "127.0.0.1")
    );
    let (s, v) = app.get("/api/audit?ip=192.0.2.7", Some(ADMIN_KEY)).await;
    assert_eq!((s, v["count"].clone()), (200, json!(0)), "{v}");
    let (s, v) = app.get("/api/audit?ip=nowhere", Some(ADMIN_KEY)).await;
    assert_eq!(s, 400, "{v}");
    assert!(v["error"].as_str().unwrap().contains("ip"), "{v}");
    // Clearing is the admin's, audited, and needs no restart.
    let (s, _) = app
        .post("/api/ratelimits/clear", Some(OPERATOR_KEY), json!({}))
        .await;
    assert_eq!(s, 403);
    let (s, v) = app
        .post("/api/ratelimits/clear", Some(ADMIN_KEY), json!({}))
        .await;
    assert_eq!((s, v), (200, json!({"ok": true, "unblocked_addresses": 1})));
    assert_eq!(app.supervisor_status(Some(wrong)).await.0, 401);
    let events = app.audit_lines().await;
    let cleared: Vec<&Value> = events
        .iter()
        .filter(|e| e["action"] == "ratelimits.clear")
        .collect();
    assert_eq!(cleared.len(), 1, "{events:?}");
    assert_eq!(cleared[0]["actor"], key_id(ADMIN_KEY));
    assert_eq!(cleared[0]["ok"], true);
    app.stop().await;
}

#[tokio::test]
async fn audit_lines_for_each_kind_of_event() {
    let app = TestApp::spawn_with(&[("RATE_LIMIT_PER_MIN", "20")]).await;
    let wrong = "a-wrong-key-that-must-never-be-logged";
    assert_eq!(app.supervisor_status(None).await.0, 401);
    assert_eq!(app.supervisor_status(Some(wrong)).await.0, 401);
    assert_eq!(app.rotate_logs(Some(VIEWER_KEY)).await.0, 403);
    let (s, v) = app.rotate_logs(Some(ADMIN_KEY)).await;
    assert_eq!(s, 200, "{v}");
    let mut limited = false;
    for _ in 0..40 {
        if app.supervisor_status(Some(OPERATOR_KEY)).await.0 == 429 {
            limited = true;
            break;
        }
    }
    assert!(limited);
    app.flush_logs().await;
    let events = all_audit_events(&app.home);
    let find = |action: &str| {
        events
            .iter()
            .find(|e| e["action"] == action)
            .unwrap_or_else(|| panic!("no {action} in {events:?}"))
            .clone()
    };
    let failed: Vec<&Value> = events
        .iter()
        .filter(|e| e["action"] == "auth.failed")
        .collect();
    assert_eq!(failed.len(), 2);
    assert_eq!(failed[0]["actor"], "anonymous");
    assert_eq!(failed[0]["status"], 401);
    assert_eq!(failed[1]["actor"], key_id(wrong));
    assert_eq!(failed[1]["target"], "GET /api/supervisor-status");
    let forbidden = find("auth.forbidden");
    assert_eq!(forbidden["actor"], key_id(VIEWER_KEY));
    assert_eq!(forbidden["role"], "viewer");
    assert_eq!(forbidden["status"], 403);
    let rotate = find("logs.rotate");
    assert_eq!(rotate["ok"], true);
    assert_eq!(rotate["role"], "admin");
    assert!(rotate.get("error").is_none());
    let limit = find("rate_limit_exceeded");
    assert_eq!(limit["actor"], key_id(OPERATOR_KEY));
    // Every field, in order, on every line; request ids and addresses filled in.
    for e in &events {
        let keys: Vec<&str> = e.as_object().unwrap().keys().map(String::as_str).collect();
        let mut want = vec![
            "ts",
            "seq",
            "request_id",
            "actor",
            "role",
            "action",
            "target",
            "ip",
            "ok",
            "status",
        ];
        if e["ok"] == false {
            want.push("error");
        }
        want.extend(["prev_hash", "hash"]);
        assert_eq!(keys, want, "{e}");
        assert!(!e["request_id"].as_str().unwrap().is_empty(), "{e}");
        assert_eq!(e["ip"], "127.0.0.1", "{e}");
    }
    // The raw files: `"ok":false` literally; keys never.
    let mut raw = String::new();
    for e in &events {
        raw.push_str(&e.to_string());
    }
    let current = app.audit_text().await;
    assert!(current.contains(r#""ok":false"#), "{current}");
    let log = app.app_log().await;
    for k in [wrong, ADMIN_KEY, VIEWER_KEY, OPERATOR_KEY] {
        assert!(!raw.contains(k) && !current.contains(k) && !log.contains(k));
    }
    app.stop().await;
}

#[tokio::test]
async fn audit_api_filters_newest_first_with_a_cursor() {
    let app = TestApp::spawn().await;
    for _ in 0..5 {
        assert_eq!(app.supervisor_status(None).await.0, 401);
    }
    assert_eq!(app.rotate_logs(Some(ADMIN_KEY)).await.0, 200);
    let (s, v) = app.audit_query("ok=false&limit=2", VIEWER_KEY).await;
    assert_eq!(s, 200, "{v}");
    let page1 = v["events"].as_array().unwrap().clone();
    assert_eq!(page1.len(), 2);
    assert!(page1[0]["seq"].as_u64() > page1[1]["seq"].as_u64());
    assert!(page1.iter().all(|e| e["ok"] == false));
    let cursor = v["next_cursor"].as_u64().expect("a next page");
    let (_, v2) = app
        .audit_query(&format!("ok=false&limit=10&cursor={cursor}"), VIEWER_KEY)
        .await;
    let page2 = v2["events"].as_array().unwrap();
    assert_eq!(page2.len(), 3);
    assert!(page2[0]["seq"].as_u64() < page1[1]["seq"].as_u64());
    assert!(v2["next_cursor"].is_null());
    let (_, v) = app.audit_query("action=logs.rotate", VIEWER_KEY).await;
    assert_eq!(v["count"], 1);
    assert_eq!(v["events"][0]["actor"], key_id(ADMIN_KEY));
    let (_, v) = app
        .audit_query(&format!("actor={}", key_id(ADMIN_KEY)), VIEWER_KEY)
        .await;
    assert_eq!(v["count"], 1);
    let (_, v) = app
        .audit_query("since=2999-01-01T00:00:00Z", VIEWER_KEY)
        .await;
    assert_eq!(v["count"], 0);
    let (_, v) = app
        .audit_query("until=2999-01-01T00:00:00%2B02:00", VIEWER_KEY)
        .await;
    assert_eq!(v["count"], 6);
    let (s, v) = app.audit_query("since=yesterday", VIEWER_KEY).await;
    assert_eq!(s, 400);
    assert_eq!(v["ok"], false);
    let (s, _) = app.audit_query("limit=0", VIEWER_KEY).await;
    assert_eq!(s, 400);
    app.stop().await;
}

fn verify(home: &std::path::Path) -> (bool, String) {
    let out = bin(home).args(["audit", "verify"]).output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// A stopped server's home whose audit trail holds `n` refused requests; the trail's path.
async fn home_with_refusals(home: &std::path::Path, n: usize) -> std::path::PathBuf {
    let app = TestApp::spawn_in(home, &[]).await;
    for _ in 0..n {
        assert_eq!(app.supervisor_status(None).await.0, 401);
    }
    let path = app.audit_path();
    app.stop().await;
    path
}

#[tokio::test]
async fn verify_catches_edited_removed_and_reordered_lines() {
    let tmp = tempfile::tempdir().unwrap();
    let path = home_with_refusals(tmp.path(), 6).await;
    let (ok, out) = verify(tmp.path());
    assert!(ok, "{out}");
    assert!(out.contains("6 events"), "{out}");

    let original = std::fs::read_to_string(&path).unwrap();
    let lines: Vec<&str> = original.lines().collect();
    let write = |ls: &[String]| std::fs::write(&path, ls.join("\n") + "\n").unwrap();
    let owned: Vec<String> = lines.iter().map(|s| s.to_string()).collect();

    // Edited: seq 3 now claims success.
    let mut edited = owned.clone();
    edited[2] = edited[2].replace(r#""status":401"#, r#""status":200"#);
    write(&edited);
    let (ok, out) = verify(tmp.path());
    assert!(!ok, "{out}");
    assert!(out.contains("seq 3"), "{out}");

    // Removed: seq 4 is gone.
    let mut removed = owned.clone();
    removed.remove(3);
    write(&removed);
    let (ok, out) = verify(tmp.path());
    assert!(!ok, "{out}");
    assert!(out.contains("seq 4"), "{out}");

    // Reordered: 2 and 3 swapped.
    let mut swapped = owned.clone();
    swapped.swap(1, 2);
    write(&swapped);
    let (ok, out) = verify(tmp.path());
    assert!(!ok, "{out}");
    assert!(out.contains("seq 2"), "{out}");

    // Restored, and checked while a server holds the store: the files alone.
    write(&owned);
    let _server = Process::start(tmp.path(), &[]);
    let (ok, out) = verify(tmp.path());
    assert!(ok, "{out}");
    assert!(out.contains("server holds the store"), "{out}");
}

#[tokio::test]
async fn moved_audit_file_is_recreated_without_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let app = TestApp::spawn_in(tmp.path(), &[]).await;
    assert_eq!(app.supervisor_status(None).await.0, 401);
    app.flush_logs().await;
    // The runbook's manual rotation.
    let day = tmp.path().join("logs/archive/20260101");
    std::fs::create_dir_all(&day).unwrap();
    std::fs::rename(app.audit_path(), day.join("audit.ndjson")).unwrap();
    assert!(!app.audit_path().exists());
    assert_eq!(app.supervisor_status(None).await.0, 401);
    let lines = app.audit_lines().await;
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["seq"], 2);
    app.stop().await;
    let (ok, out) = verify(tmp.path());
    assert!(ok, "{out}");
    assert!(out.contains("2 events in 2 files"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rotation_under_concurrent_writes_loses_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let app = TestApp::spawn_in(tmp.path(), &[("LOG_MAX_BYTES", "8192")]).await;
    let mut tasks = Vec::new();
    for t in 0..8u32 {
        let audit = app.state.audit.clone();
        tasks.push(tokio::spawn(async move {
            let n = if t < 4 { 63 } else { 62 };
            for i in 0..n {
                audit
                    .record(echopilot::audit::NewEvent {
                        action: "test.write".into(),
                        target: format!("{t}/{i}"),
                        ok: true,
                        status: 200,
                        ..Default::default()
                    })
                    .await
                    .unwrap();
            }
        }));
    }
    let state = app.state.clone();
    let rotator = tokio::spawn(async move {
        for _ in 0..5 {
            state.rotate_logs().await.unwrap();
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    for t in tasks {
        t.await.unwrap();
    }
    rotator.await.unwrap();
    app.flush_logs().await;
    let events = all_audit_events(tmp.path());
    let seqs: std::collections::BTreeSet<u64> =
        events.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert_eq!(events.len(), 500, "no duplicates");
    assert_eq!(seqs.len(), 500);
    assert_eq!(seqs.first(), Some(&1));
    assert_eq!(seqs.last(), Some(&500));
    let archives: usize = std::fs::read_dir(tmp.path().join("logs/archive"))
        .unwrap()
        .flatten()
        .map(|d| std::fs::read_dir(d.path()).unwrap().count())
        .sum();
    assert!(archives >= 3, "{archives} archives");
    app.stop().await;
    let (ok, out) = verify(tmp.path());
    assert!(ok, "{out}");
    assert!(out.contains("500 events"), "{out}");
}

#[test]
fn logs_rotate_command_moves_the_files() {
    let tmp = tempfile::tempdir().unwrap();
    let logs = tmp.path().join("logs");
    std::fs::create_dir_all(logs.join("ndjson")).unwrap();
    std::fs::write(logs.join("app.log"), "x\n").unwrap();
    let out = bin(tmp.path()).args(["logs", "rotate"]).output().unwrap();
    assert!(out.status.success());
    assert!(!logs.join("app.log").exists());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("1 files rotated"), "{stdout}");
}

#[tokio::test]
async fn every_request_is_logged_and_slow_ones_say_so() {
    let app = TestApp::spawn_with(&[("SLOW_REQUEST_MS", "0")]).await;
    let resp = app.raw(Method::GET, "/api/status/summary", None).await;
    let rid = resp.headers()["x-request-id"].to_str().unwrap().to_string();
    assert_eq!(app.supervisor_status(Some(VIEWER_KEY)).await.0, 200);
    let log = app.app_log().await;
    let mine: Vec<&str> = log.lines().filter(|l| l.contains(&rid)).collect();
    assert_eq!(mine.len(), 2, "{log}");
    assert!(mine.iter().any(|l| l.contains("Slow request")));
    let line = mine.iter().find(|l| !l.contains("Slow request")).unwrap();
    for part in [
        "method=GET",
        "route=/api/status/summary",
        "status=200",
        "duration_ms=",
        "client=127.0.0.1",
    ] {
        assert!(line.contains(part), "{part} missing in {line}");
    }
    let ts = line.split_whitespace().next().unwrap();
    assert!(chrono::DateTime::parse_from_rfc3339(ts).is_ok(), "{line}");
    assert!(log.contains(&format!("key={}", key_id(VIEWER_KEY))));
    app.stop().await;

    // With the default threshold, quick requests get no `Slow request` line.
    let app = TestApp::spawn().await;
    app.summary().await;
    let log = app.app_log().await;
    assert!(log.contains("route=/api/status/summary"));
    assert!(!log.contains("Slow request"), "{log}");
    app.stop().await;
}

#[test]
fn keygen_prints_a_43_character_url_safe_key() {
    let tmp = tempfile::tempdir().unwrap();
    let run = || {
        let out = bin(tmp.path()).arg("keygen").output().unwrap();
        assert!(out.status.success());
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    };
    let (a, b) = (run(), run());
    assert_eq!(a.len(), 43, "{a}");
    assert!(
        a.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    );
    assert_ne!(a, b);
}

#[tokio::test]
async fn events_the_file_missed_are_appended_at_the_next_start() {
    let tmp = tempfile::tempdir().unwrap();
    let app = TestApp::spawn_in(tmp.path(), &[]).await;
    for _ in 0..4 {
        assert_eq!(app.supervisor_status(None).await.0, 401);
    }
    let path = app.audit_path();
    app.stop().await;
    // As if the process died before the writer ran: only the first line made it.
    let text = std::fs::read_to_string(&path).unwrap();
    let first = text.lines().next().unwrap().to_string();
    std::fs::write(&path, first + "\n").unwrap();
    let app = TestApp::spawn_in(tmp.path(), &[]).await;
    let lines = app.audit_lines().await;
    let seqs: Vec<u64> = lines.iter().map(|l| l["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, [1, 2, 3, 4]);
    assert_eq!(app.summary().await["components"]["audit"]["last_seq"], 4);
    app.stop().await;
    let (ok, out) = verify(tmp.path());
    assert!(ok, "{out}");
}

#[tokio::test]
async fn verify_catches_a_removed_last_line_against_the_store() {
    let tmp = tempfile::tempdir().unwrap();
    let path = home_with_refusals(tmp.path(), 3).await;
    let text = std::fs::read_to_string(&path).unwrap();
    let kept: Vec<&str> = text.lines().take(2).collect();
    std::fs::write(&path, kept.join("\n") + "\n").unwrap();
    let (ok, out) = verify(tmp.path());
    assert!(!ok, "{out}");
    assert!(out.contains("seq 3"), "{out}");
}

#[tokio::test]
async fn a_start_writes_the_lines_of_a_store_whose_first_lines_never_reached_the_file() {
    // `kill -9` before the writer's first batch: events stored, the file empty.
    let tmp = tempfile::tempdir().unwrap();
    let path = home_with_refusals(tmp.path(), 3).await;
    std::fs::write(&path, "").unwrap();
    let (ok, out) = verify(tmp.path());
    assert!(!ok, "{out}");
    let app = TestApp::spawn_in(tmp.path(), &[]).await;
    app.stop().await;
    let (ok, out) = verify(tmp.path());
    assert!(ok, "{out}");
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.lines().count() >= 3, "{text}");
    assert!(
        text.lines().next().unwrap().contains("\"seq\":1,"),
        "{text}"
    );
}

/// Worker routes have their own limit, shared by the worker routes and apart from the
/// general one.
#[tokio::test]
async fn worker_routes_have_their_own_limit() {
    let app = TestApp::spawn_with(&[
        ("RATE_LIMIT_PER_MIN", "3"),
        ("WORKER_RATE_LIMIT_PER_MIN", "5"),
    ])
    .await;
    for _ in 0..5 {
        let (s, _) = app
            .post("/api/jobs/claim", Some(WORKER_KEY), json!({}))
            .await;
        assert_ne!(s, 429);
    }
    let (s, _) = app
        .post("/api/job/x/heartbeat", Some(WORKER_KEY), json!({}))
        .await;
    assert_eq!(s, 429, "worker limit shared by the worker routes");
    // The general allowance of the same key is untouched.
    for _ in 0..3 {
        assert_ne!(app.get("/api/jobs", Some(WORKER_KEY)).await.0, 429);
    }
    assert_eq!(app.get("/api/jobs", Some(WORKER_KEY)).await.0, 429);
    app.stop().await;
}

/// The webhook class (its route lives on another branch) on a router of its own, behind
/// the same guard: 0 disables it, while the general limit still holds elsewhere.
#[tokio::test]
async fn the_webhook_class_is_a_layer_of_its_own() {
    use echopilot::ratelimit::Class;
    use echopilot::web::access::ClassLayer;
    use echopilot::web::front;

    let app = TestApp::spawn_with(&[
        ("RATE_LIMIT_PER_MIN", "3"),
        ("WEBHOOK_RATE_LIMIT_PER_MIN", "0"),
    ])
    .await;
    let hook = axum::Router::new()
        .route("/hook", axum::routing::post(|| async { "ok" }))
        .layer(ClassLayer(Class::Webhook));
    let other = axum::Router::new()
        .route("/other", axum::routing::get(|| async { "ok" }))
        .layer(ClassLayer(Class::General));
    let router = hook
        .merge(other)
        .layer(axum::middleware::from_fn_with_state(
            app.state.clone(),
            front,
        ))
        .with_state(app.state.clone());
    let call = |method: &'static str, path: &'static str| oneshot_status(&router, method, path);
    for _ in 0..20 {
        assert_eq!(call("POST", "/hook").await, 200);
    }
    for _ in 0..3 {
        assert_eq!(call("GET", "/other").await, 200);
    }
    assert_eq!(call("GET", "/other").await, 429);
    app.stop().await;
}

#[tokio::test]
async fn forwarded_for_is_trusted_only_when_configured() {
    for (trust, want) in [("false", "127.0.0.1"), ("true", "203.0.113.9")] {
        let app = TestApp::spawn_with(&[("TRUST_PROXY", trust)]).await;
        let resp = app
            .client
            .get(app.url("/api/audit"))
            .header("x-forwarded-for", "198.51.100.1, 203.0.113.9")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 401);
        let lines = app.audit_lines().await;
        assert_eq!(lines[0]["ip"], want, "TRUST_PROXY={trust}");
        assert!(app.app_log().await.contains(&format!("client={want}")));
        app.stop().await;
    }
}

/// A handler marks a failed login with `FailedLogin`; the guard counts it against the
/// address like a wrong key (driven with `oneshot`: no peer address, so "unknown").
#[tokio::test]
async fn failed_logins_marked_by_a_handler_count_against_the_address() {
    use axum::response::IntoResponse;
    use echopilot::ratelimit::Class;
    use echopilot::web::access::{ClassLayer, FailedLogin};
    use echopilot::web::front;

    let app = TestApp::spawn_with(&[("AUTH_FAIL_LIMIT_PER_MIN", "2")]).await;
    let login = || async {
        let mut resp = (axum::http::StatusCode::OK, "bad password").into_response();
        resp.extensions_mut().insert(FailedLogin);
        resp
    };
    let router = axum::Router::new()
        .route("/login", axum::routing::post(login))
        .route("/other", axum::routing::get(|| async { "fine" }))
        .layer(ClassLayer(Class::General))
        .layer(axum::middleware::from_fn_with_state(
            app.state.clone(),
            front,
        ))
        .with_state(app.state.clone());
    let call = |method: &'static str, path: &'static str| oneshot_status(&router, method, path);
    assert_eq!(call("GET", "/other").await, 200);
    for _ in 0..3 {
        assert_eq!(call("POST", "/login").await, 200);
    }
    // Further failed logins are refused; a public route is not a failed attempt.
    assert_eq!(call("POST", "/login").await, 429);
    assert_eq!(call("GET", "/other").await, 200);
    let text = app.audit_text().await;
    assert!(text.contains("rate_limit_exceeded"), "{text}");
    assert!(text.contains(r#""ip":"unknown""#), "{text}");
    app.stop().await;
}
