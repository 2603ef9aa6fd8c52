//! Stripe for the tests: event fixtures (`tests/fixtures/stripe/`, shaped like real
//! events) and `Stripe-Signature` headers made by Stripe's official Python library.
//!
//! The library is found through `STRIPE_PYTHON` (a Python with `stripe` installed;
//! `.ci/run` makes one under `target/stripe-venv`), else `target/stripe-venv`, else
//! `python3`. Without it the tests skip, except when `CI` is set: then they fail.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use serde_json::{Value, json};

use super::{OPERATOR_KEY, TestApp, VIEWER_KEY};

pub const SECRET: &str = "whsec_test_9f8e7d6c5b4a39281706f5e4d3c2b1a0";

/// A fixture event by type, e.g. `fixture("payment_intent.succeeded")`.
pub fn fixture(kind: &str) -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/stripe")
        .join(format!("{kind}.json"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

/// A fixture with its event id, `created` and object fields replaced.
pub fn event(kind: &str, evt: &str, created: i64, object: &[(&str, Value)]) -> String {
    let mut v = fixture(kind);
    v["id"] = json!(evt);
    v["created"] = json!(created);
    for (k, val) in object {
        v["data"]["object"][*k] = val.clone();
    }
    v.to_string()
}

/// The Python that has Stripe's library, or `None` (a local run without it).
pub fn python() -> Option<PathBuf> {
    static FOUND: OnceLock<Option<PathBuf>> = OnceLock::new();
    FOUND
        .get_or_init(|| {
            let mut candidates = Vec::new();
            if let Ok(p) = std::env::var("STRIPE_PYTHON") {
                candidates.push(PathBuf::from(p));
            }
            candidates.push(
                PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/stripe-venv/bin/python"),
            );
            candidates.push(PathBuf::from("python3"));
            let found = candidates.into_iter().find(|p| {
                Command::new(p)
                    .args(["-c", "import stripe"])
                    .stderr(Stdio::null())
                    .status()
                    .is_ok_and(|s| s.success())
            });
            if found.is_none() {
                assert!(
                    std::env::var_os("CI").is_none(),
                    "CI is set but no Python with Stripe's `stripe` library was found \
                     (set STRIPE_PYTHON, or run .ci/run, which installs it)"
                );
                eprintln!("skipping: Stripe's Python library is not installed (set STRIPE_PYTHON)");
            }
            found
        })
        .clone()
}

/// Sign payloads with `stripe.WebhookSignature.generate_signature_header`, one Python
/// run for the batch: `(payload, secret, timestamp)` → header.
pub fn sign_all(py: &PathBuf, reqs: &[(&str, &str, i64)]) -> Vec<String> {
    let input: Vec<Value> = reqs
        .iter()
        .map(|(p, s, t)| json!({"payload": p, "secret": s, "timestamp": t}))
        .collect();
    let script = "import json,sys,stripe\n\
        reqs=json.load(sys.stdin)\n\
        print(json.dumps([stripe.WebhookSignature.generate_signature_header(r['payload'], r['secret'], timestamp=r['timestamp']) for r in reqs]))";
    let mut child = Command::new(py)
        .args(["-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run python");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(Value::Array(input).to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "python signing failed");
    serde_json::from_slice(&out.stdout).expect("headers")
}

pub fn sign(py: &PathBuf, payload: &str, secret: &str, timestamp: i64) -> String {
    sign_all(py, &[(payload, secret, timestamp)]).remove(0)
}

impl TestApp {
    /// `POST /api/stripe/webhook` with the raw body and an optional signature header.
    pub async fn webhook(&self, body: &str, signature: Option<&str>) -> (u16, Value) {
        let mut req = self
            .client
            .post(self.url("/api/stripe/webhook"))
            .header("content-type", "application/json")
            .body(body.to_string());
        if let Some(s) = signature {
            req = req.header("Stripe-Signature", s);
        }
        let resp = req.send().await.expect("request");
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    /// Sign each body with `secret` at `t` and deliver them in order; every answer
    /// must be 200.
    pub async fn deliver(&self, py: &PathBuf, bodies: &[String], t: i64) -> Vec<Value> {
        let reqs: Vec<(&str, &str, i64)> = bodies.iter().map(|b| (b.as_str(), SECRET, t)).collect();
        let headers = sign_all(py, &reqs);
        let mut out = Vec::new();
        for (b, h) in bodies.iter().zip(headers) {
            let (s, v) = self.webhook(b, Some(&h)).await;
            assert_eq!(s, 200, "{v}");
            out.push(v);
        }
        out
    }

    pub async fn payment(&self, id: &str) -> Value {
        let (s, v) = self
            .get(&format!("/api/payments/{id}"), Some(VIEWER_KEY))
            .await;
        assert_eq!(s, 200, "{v}");
        v["payment"].clone()
    }

    pub async fn reconcile(&self) -> Value {
        let (s, v) = self.get("/api/payments/reconcile", Some(VIEWER_KEY)).await;
        assert_eq!(s, 200, "{v}");
        v
    }

    pub async fn replay(&self, evt: &str) -> (u16, Value) {
        self.post(
            &format!("/api/payments/events/{evt}/replay"),
            Some(OPERATOR_KEY),
            json!({}),
        )
        .await
    }

    /// The lines of a file under the home (logs are flushed first).
    pub async fn file_lines(&self, rel: &str) -> Vec<String> {
        self.state.flush_logs().await.unwrap();
        std::fs::read_to_string(self.home.join(rel))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }
}
