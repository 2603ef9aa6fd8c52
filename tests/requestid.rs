//! Client request ids: kept only when short and plain; request-log fields cannot be
//! forged by any value a client controls.

mod helpers;

use helpers::TestApp;

async fn get_with_id(app: &TestApp, path: &str, id: &str) -> reqwest::Response {
    app.client
        .get(app.url(path))
        .header("x-request-id", id)
        .send()
        .await
        .expect("request")
}

/// Bytes under `dir`, recursively.
fn dir_bytes(dir: &std::path::Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_bytes(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

#[tokio::test]
async fn a_plain_short_client_id_is_kept() {
    let app = TestApp::spawn().await;
    let id = "abc.DEF_1:2-3";
    let resp = get_with_id(&app, "/api/status/summary", id).await;
    assert_eq!(resp.headers()["x-request-id"], id);
    let id64 = "a".repeat(64);
    let resp = get_with_id(&app, "/api/status/summary", &id64).await;
    assert_eq!(resp.headers()["x-request-id"], id64.as_str());
    app.stop().await;
}

#[tokio::test]
async fn long_or_odd_client_ids_are_replaced_everywhere() {
    let app = TestApp::spawn_with(&[("SLOW_REQUEST_MS", "0")]).await;
    let forged = "forged-1 WARN Slow request request_id=x status=200";
    let long = "b".repeat(65);
    for bad in [forged, long.as_str(), "a\"b", "ü"] {
        // A protected route without a key: answered 401 and audited.
        let resp = get_with_id(&app, "/api/jobs", bad).await;
        assert_eq!(resp.status(), 401);
        let rid = resp.headers()["x-request-id"].to_str().unwrap().to_string();
        assert_ne!(rid, bad);
        assert!(!rid.is_empty() && rid.len() <= 64, "{rid}");
    }
    let audit = app.audit_text().await;
    assert!(!audit.contains("forged-1"), "{audit}");
    assert!(!audit.contains(&long), "{audit}");
    let log = app.app_log().await;
    assert!(!log.contains("forged-1"), "{log}");
    assert!(!log.contains(&long), "{log}");
    // Every `Slow request` line is one of ours: it starts with a timestamp and a level.
    for line in log.lines().filter(|l| l.contains("Slow request")) {
        let mut words = line.split_whitespace();
        let ts = words.next().unwrap();
        assert!(chrono::DateTime::parse_from_rfc3339(ts).is_ok(), "{line}");
        assert_eq!(words.next(), Some("WARN"), "{line}");
        assert_eq!(words.next(), Some("Slow"), "{line}");
    }
    app.stop().await;
}

#[tokio::test]
async fn keyless_requests_with_a_big_id_write_little() {
    let app = TestApp::spawn().await;
    app.flush_logs().await;
    let audit0 = std::fs::metadata(app.audit_path())
        .map(|m| m.len())
        .unwrap_or(0);
    let log_path = app.home.join("logs/app.log");
    let log0 = std::fs::metadata(&log_path).map(|m| m.len()).unwrap_or(0);
    let store0 = dir_bytes(&app.home.join("data"));
    let big = "c".repeat(200_000);
    let n = 20u64;
    for _ in 0..n {
        let resp = get_with_id(&app, "/api/jobs", &big).await;
        assert_eq!(resp.status(), 401);
    }
    app.flush_logs().await;
    let audit = std::fs::metadata(app.audit_path())
        .map(|m| m.len())
        .unwrap_or(0)
        - audit0;
    let log = std::fs::metadata(&log_path).map(|m| m.len()).unwrap_or(0) - log0;
    let store = dir_bytes(&app.home.join("data")).saturating_sub(store0);
    eprintln!(
        "per keyless request with a 200 KB id: audit {} B, app.log {} B, store {} B",
        audit / n,
        log / n,
        store / n
    );
    // One request's worth of lines, not the id: well under a kilobyte each.
    assert!(audit / n < 2_000, "audit {audit}");
    assert!(log / n < 1_000, "log {log}");
    app.stop().await;
}
