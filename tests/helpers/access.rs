//! `TestApp` methods for access control, the audit trail and the log files.

use std::path::{Path, PathBuf};

use serde_json::Value;

use super::TestApp;

/// Call `router` once in-process (no peer address: the client is "unknown") and give
/// the status.
pub async fn oneshot_status(router: &axum::Router, method: &str, path: &str) -> u16 {
    use tower::ServiceExt;
    let req = axum::http::Request::builder()
        .method(method)
        .uri(path)
        .body(axum::body::Body::empty())
        .unwrap();
    router.clone().oneshot(req).await.unwrap().status().as_u16()
}

impl TestApp {
    /// Every queued audit and request-log line is on disk.
    pub async fn flush_logs(&self) {
        self.state.flush_logs().await.expect("flush logs");
    }

    pub fn audit_path(&self) -> PathBuf {
        self.home.join("logs/ndjson/audit.ndjson")
    }

    /// The current `audit.ndjson`, as text (after a flush).
    pub async fn audit_text(&self) -> String {
        self.flush_logs().await;
        std::fs::read_to_string(self.audit_path()).unwrap_or_default()
    }

    /// The current `audit.ndjson`, one JSON value per line.
    pub async fn audit_lines(&self) -> Vec<Value> {
        self.audit_text()
            .await
            .lines()
            .map(|l| serde_json::from_str(l).expect("audit line is JSON"))
            .collect()
    }

    /// `logs/app.log` (after a flush).
    pub async fn app_log(&self) -> String {
        self.flush_logs().await;
        std::fs::read_to_string(self.home.join("logs/app.log")).unwrap_or_default()
    }

    /// A request returning the whole response (headers too).
    pub async fn raw(
        &self,
        method: reqwest::Method,
        path: &str,
        key: Option<&str>,
    ) -> reqwest::Response {
        let mut req = self.client.request(method, self.url(path));
        if let Some(k) = key {
            req = req.header("X-Dash-Key", k);
        }
        req.send().await.expect("request")
    }

    /// `GET /api/audit?{query}`.
    pub async fn audit_query(&self, query: &str, key: &str) -> (u16, Value) {
        self.get(&format!("/api/audit?{query}"), Some(key)).await
    }

    /// `GET /api/supervisor-status`.
    pub async fn supervisor_status(&self, key: Option<&str>) -> (u16, Value) {
        self.get("/api/supervisor-status", key).await
    }

    /// `POST /api/logs/rotate`.
    pub async fn rotate_logs(&self, key: Option<&str>) -> (u16, Value) {
        self.post("/api/logs/rotate", key, serde_json::json!({}))
            .await
    }
}

/// Every audit file under a home's `logs/` (current and archived), lines parsed.
pub fn all_audit_events(home: &Path) -> Vec<Value> {
    let mut files = vec![home.join("logs/ndjson/audit.ndjson")];
    if let Ok(days) = std::fs::read_dir(home.join("logs/archive")) {
        for d in days.flatten() {
            for f in std::fs::read_dir(d.path()).unwrap().flatten() {
                let name = f.file_name().to_string_lossy().to_string();
                if name.starts_with("audit") && name.ends_with(".ndjson") {
                    files.push(f.path());
                }
            }
        }
    }
    files
        .iter()
        .filter_map(|f| std::fs::read_to_string(f).ok())
        .flat_map(|t| {
            t.lines()
                .map(|l| serde_json::from_str::<Value>(l).expect("audit line is JSON"))
                .collect::<Vec<_>>()
        })
        .collect()
}
