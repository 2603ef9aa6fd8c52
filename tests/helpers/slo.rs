//! SLO, alerts and metrics endpoints, and a manual-clock state for time-driven tests.

use std::collections::BTreeMap;
use std::path::Path;

use axum::Router;
use axum::http::StatusCode;
use axum::routing::get;
use chrono::{DateTime, Utc};
use echopilot::app::{self, AppState};
use echopilot::clock::Clock;
use echopilot::slo::{RouteSnap, Snapshot};
use serde_json::Value;

use super::{TestApp, base_env, config};

impl TestApp {
    pub async fn slo_status(&self) -> Value {
        let (s, v) = self.get("/api/slo/status", None).await;
        assert_eq!(s, 200, "{v}");
        v
    }

    pub async fn alerts(&self, state: Option<&str>, key: Option<&str>) -> (u16, Value) {
        let path = match state {
            Some(s) => format!("/api/alerts?state={s}"),
            None => "/api/alerts".to_string(),
        };
        self.get(&path, key).await
    }

    /// `/metrics`: status, content type, body.
    pub async fn metrics(&self, key: Option<&str>) -> (u16, String, String) {
        let mut req = self.client.get(self.url("/metrics"));
        if let Some(k) = key {
            req = req.header("X-Dash-Key", k);
        }
        let resp = req.send().await.expect("request");
        let status = resp.status().as_u16();
        let ct = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        (status, ct, resp.text().await.unwrap())
    }
}

/// `requests` on one route, `errors` of them 5xx, all in the (10, 25] ms bucket.
pub fn traffic(requests: u64, errors: u64) -> Snapshot {
    let mut r = RouteSnap::default();
    r.classes[1] = requests - errors;
    r.classes[4] = errors;
    r.buckets[2] = requests;
    r.sum_us = requests * 20_000;
    Snapshot {
        routes: BTreeMap::from([("/api/test/ok".to_string(), r)]),
        ..Snapshot::default()
    }
}

/// A state on `home` whose clock stands at `start` until advanced (no server, no
/// background tasks: tests call the plain functions).
pub fn manual_state(home: &Path, extra: &[(&str, &str)], start: DateTime<Utc>) -> AppState {
    let mut env = base_env();
    for (k, v) in extra {
        env.insert(k.to_string(), v.to_string());
    }
    AppState::open_with_clock(config(home, &env), Clock::manual(start)).expect("open state")
}

/// The application's routes plus `/api/test/ok` and `/api/test/fail` (500), with the
/// real layers and the measuring middleware: the failing route exists only in tests.
pub fn router_with_test_routes(state: AppState) -> Router {
    let cfg = state.config.clone();
    let app = Router::new()
        .route("/api/test/ok", get(|| async { "fine" }))
        .route(
            "/api/test/fail",
            get(|| async { (StatusCode::INTERNAL_SERVER_ERROR, "boom") }),
        )
        .merge(echopilot::web::api::router())
        .fallback(echopilot::web::fallback)
        .with_state(state.clone());
    echopilot::web::measure::layer(app::layers(app, &cfg), &state.slo)
}
