//! One method per flags, incidents, maintenance and markers endpoint, and a
//! Slack-like webhook receiver that records what it is sent.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::{OPERATOR_KEY, TestApp, VIEWER_KEY};

impl TestApp {
    /// `PUT /api/flags/{name}` as `key`.
    pub async fn put_flag(&self, key: &str, name: &str, body: Value) -> (u16, Value) {
        self.send(
            reqwest::Method::PUT,
            &format!("/api/flags/{name}"),
            Some(key),
            Some(body),
        )
        .await
    }

    /// Switch a flag as an operator (asserting 200).
    pub async fn set_flag(&self, name: &str, enabled: bool) -> Value {
        let (s, v) = self
            .put_flag(
                OPERATOR_KEY,
                name,
                json!({"enabled": enabled, "note": "test"}),
            )
            .await;
        assert_eq!(s, 200, "{v}");
        v
    }

    /// Open an incident as an operator (asserting 201); returns it.
    pub async fn open_incident(&self, body: Value) -> Value {
        let (s, v) = self.post("/api/incidents", Some(OPERATOR_KEY), body).await;
        assert_eq!(s, 201, "{v}");
        v["incident"].clone()
    }

    /// Open an incident and return its id.
    pub async fn open_incident_id(&self, body: Value) -> String {
        self.open_incident(body).await["id"]
            .as_str()
            .unwrap()
            .to_string()
    }

    /// `POST /api/incidents/{id}/announce` as an operator.
    pub async fn announce(&self, id: &str) -> (u16, Value) {
        self.post(
            &format!("/api/incidents/{id}/announce"),
            Some(OPERATOR_KEY),
            json!({}),
        )
        .await
    }

    pub async fn incident_update(&self, id: &str, body: Value) -> (u16, Value) {
        self.post(
            &format!("/api/incidents/{id}/updates"),
            Some(OPERATOR_KEY),
            body,
        )
        .await
    }

    /// The announcement as bare text (`format=text`): status and body bytes.
    pub async fn announcement_text(&self, id: &str, kind: &str) -> (u16, Vec<u8>) {
        let resp = self
            .client
            .get(self.url(&format!(
                "/api/incidents/{id}/announcement?kind={kind}&format=text"
            )))
            .header("X-Dash-Key", VIEWER_KEY)
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        (status, resp.bytes().await.unwrap().to_vec())
    }

    pub async fn plan_maintenance(&self, body: Value) -> (u16, Value) {
        self.post("/api/maintenance", Some(OPERATOR_KEY), body)
            .await
    }

    pub async fn markers(&self, query: &str) -> Value {
        let (s, v) = self
            .get(&format!("/api/events/markers{query}"), Some(VIEWER_KEY))
            .await;
        assert_eq!(s, 200, "{v}");
        v
    }

    /// Audit events with `action`, newest first.
    pub async fn audit_events(&self, action: &str) -> Vec<Value> {
        let (s, v) = self
            .get(&format!("/api/audit?action={action}"), Some(VIEWER_KEY))
            .await;
        assert_eq!(s, 200, "{v}");
        v["events"].as_array().cloned().unwrap_or_default()
    }
}

/// A webhook receiver on a free port: every JSON body it gets, in order.
#[derive(Clone)]
pub struct Receiver {
    pub url: String,
    pub got: Arc<Mutex<Vec<Value>>>,
}

impl Receiver {
    pub async fn start() -> Receiver {
        let got: Arc<Mutex<Vec<Value>>> = Arc::default();
        let g = got.clone();
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move |body: String| {
                let g = g.clone();
                async move {
                    g.lock()
                        .unwrap()
                        .push(serde_json::from_str(&body).unwrap_or(Value::Null));
                    "ok"
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Receiver { url, got }
    }

    /// The `text` of every message so far.
    pub fn texts(&self) -> Vec<String> {
        self.got
            .lock()
            .unwrap()
            .iter()
            .map(|v| v["text"].as_str().unwrap_or_default().to_string())
            .collect()
    }

    /// Wait (generously: the machine is shared) until `n` messages arrived.
    pub async fn wait_for(&self, n: usize) -> Vec<String> {
        let start = Instant::now();
        while self.got.lock().unwrap().len() < n {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "only {:?} arrived, wanted {n}",
                self.texts()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.texts()
    }
}
