//! The built-in executors: `http` (call a URL), `command` (run a program declared in
//! `echopilot.toml` `[commands]`, nothing else) and `alert.webhook` (post an alert to
//! `ALERT_WEBHOOK_URL`). Each returns the result as JSON text, or an error message for
//! the job's `last_error`.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use serde::Deserialize;
use serde_json::{Value, json};

use super::{Job, tail, truncate};
use crate::config::{CommandSpec, Secret};

/// The kinds the server runs itself; every other kind waits for an external worker.
pub const KINDS: [&str; 4] = ["http", "command", ALERT_KIND, BACKUP_KIND];

/// The built-in backup schedule's job: take a snapshot and verify it (run by the
/// handler the server installs with [`Executors::set_backup`]).
pub const BACKUP_KIND: &str = "backup.snapshot";

/// A built-in job run by another domain (so this one does not depend on it).
pub trait Builtin: Send + Sync {
    fn run<'a>(
        &'a self,
        job: &'a Job,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<String, String>> + Send + 'a>>;
}

/// Alert messages: payload `{"text": ...}`, posted as Slack-compatible JSON to
/// `ALERT_WEBHOOK_URL`. The URL stays in the configuration, never in a job (Slack puts
/// its token in the path, and viewers can read payloads).
pub const ALERT_KIND: &str = "alert.webhook";

/// How much of a response body or of each output stream is kept.
pub const KEEP_BYTES: usize = 4096;

/// Asked before every claim whether the executor for a kind may run (feature flags).
pub type Gate = std::sync::Arc<dyn Fn(&str) -> bool + Send + Sync>;

/// What the executors need besides the job.
#[derive(Clone)]
pub struct Executors {
    client: reqwest::Client,
    commands: BTreeMap<String, CommandSpec>,
    home: std::path::PathBuf,
    alert_webhook_url: Option<Secret>,
    gate: Option<Gate>,
    backup: Arc<RwLock<Option<Arc<dyn Builtin>>>>,
}

impl Executors {
    pub fn new(
        commands: BTreeMap<String, CommandSpec>,
        home: &Path,
        alert_webhook_url: Option<Secret>,
    ) -> Self {
        let client = reqwest::Client::builder()
            .user_agent(concat!("echopilot/", env!("CARGO_PKG_VERSION")))
            .build()
            .unwrap_or_default();
        Self {
            client,
            commands,
            home: home.to_path_buf(),
            alert_webhook_url,
            gate: None,
            backup: Arc::default(),
        }
    }
    /// Ask `gate` before every claim: a kind it refuses is not claimed, so its jobs wait.
    pub fn with_gate(mut self, gate: Gate) -> Self {
        self.gate = Some(gate);
        self
    }

    /// The kinds the dispatcher claims now.
    pub fn enabled_kinds(&self) -> Vec<String> {
        KINDS
            .iter()
            .filter(|k| self.gate.as_ref().is_none_or(|g| g(k)))
            .map(|k| k.to_string())
            .collect()
    }

    /// Install the runner of [`BACKUP_KIND`] jobs.
    pub fn set_backup(&self, runner: Arc<dyn Builtin>) {
        *self.backup.write().unwrap_or_else(|p| p.into_inner()) = Some(runner);
    }

    /// Run `job`; `Ok(result JSON)` on success, `Err(message)` on failure.
    pub async fn run(&self, job: &Job) -> Result<String, String> {
        match job.kind.as_str() {
            "http" => self.http(job).await,
            "command" => self.command(job).await,
            ALERT_KIND => self.alert(job).await,
            BACKUP_KIND => {
                let runner = self
                    .backup
                    .read()
                    .unwrap_or_else(|p| p.into_inner())
                    .clone();
                match runner {
                    Some(r) => r.run(job).await,
                    None => Err("no backup runner in this process".into()),
                }
            }
            other => Err(format!("no built-in executor for kind {other:?}")),
        }
    }

    async fn http(&self, job: &Job) -> Result<String, String> {
        #[derive(Deserialize)]
        struct Payload {
            url: String,
            #[serde(default)]
            method: Option<String>,
            #[serde(default)]
            headers: BTreeMap<String, String>,
            #[serde(default)]
            body: Option<Value>,
        }
        let p: Payload = serde_json::from_str(&job.payload).map_err(|e| {
            format!("http payload: expected {{\"url\", \"method\", \"headers\", \"body\"}}: {e}")
        })?;
        if !(p.url.starts_with("http://") || p.url.starts_with("https://")) {
            return Err("http payload: url must start with http:// or https://".into());
        }
        let method = p.method.as_deref().unwrap_or("GET").to_ascii_uppercase();
        let method = reqwest::Method::from_bytes(method.as_bytes())
            .map_err(|_| format!("http payload: bad method {method:?}"))?;
        let mut req = self
            .client
            .request(method, &p.url)
            .timeout(Duration::from_secs(job.timeout_secs.max(1)));
        for (k, v) in &p.headers {
            req = req.header(k, v);
        }
        match p.body {
            None | Some(Value::Null) => {}
            Some(Value::String(s)) => req = req.body(s),
            Some(v) => req = req.json(&v),
        }
        let resp = req.send().await.map_err(|e| format!("http: {e}"))?;
        let status = resp.status();
        let bytes = resp.bytes().await.map_err(|e| format!("http body: {e}"))?;
        let body = String::from_utf8_lossy(&bytes[..bytes.len().min(KEEP_BYTES)]).to_string();
        if status.is_success() {
            Ok(json!({"status": status.as_u16(), "body": body}).to_string())
        } else {
            Err(format!(
                "http status {}: {}",
                status.as_u16(),
                truncate(&body, 512)
            ))
        }
    }

    async fn alert(&self, job: &Job) -> Result<String, String> {
        #[derive(Deserialize)]
        struct Payload {
            text: String,
        }
        let p: Payload = serde_json::from_str(&job.payload)
            .map_err(|e| format!("alert payload: expected {{\"text\"}}: {e}"))?;
        let Some(url) = &self.alert_webhook_url else {
            return Err("ALERT_WEBHOOK_URL is not set".into());
        };
        let resp = self
            .client
            .post(url.expose())
            .timeout(Duration::from_secs(job.timeout_secs.clamp(1, 30)))
            .json(&json!({ "text": p.text }))
            .send()
            .await
            // The URL is a secret: never let it reach `last_error`.
            .map_err(|e| format!("alert webhook: {}", e.without_url()))?;
        let status = resp.status();
        if status.is_success() {
            Ok(json!({"status": status.as_u16()}).to_string())
        } else {
            Err(format!("alert webhook answered {}", status.as_u16()))
        }
    }

    async fn command(&self, job: &Job) -> Result<String, String> {
        #[derive(Deserialize)]
        struct Payload {
            command: String,
            #[serde(default)]
            args: Vec<String>,
        }
        let p: Payload = serde_json::from_str(&job.payload).map_err(|e| {
            format!("command payload: expected {{\"command\": \"<name>\", \"args\": [...]}}: {e}")
        })?;
        let Some(spec) = self.commands.get(&p.command) else {
            return Err(format!(
                "command {:?} is not declared in echopilot.toml [commands]; refusing to run it",
                p.command
            ));
        };
        let timeout = Duration::from_secs(spec.timeout_secs.unwrap_or(job.timeout_secs).max(1));
        let mut cmd = tokio::process::Command::new(&spec.program);
        cmd.args(&spec.args)
            .args(&p.args)
            .current_dir(spec.cwd.as_deref().unwrap_or(&self.home))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let child = cmd.spawn().map_err(|e| {
            format!(
                "command {:?}: cannot start {}: {e}",
                p.command, spec.program
            )
        })?;
        // Dropping the future on timeout drops the child, which kills it.
        let out = match tokio::time::timeout(timeout, child.wait_with_output()).await {
            Ok(Ok(out)) => out,
            Ok(Err(e)) => return Err(format!("command {:?}: {e}", p.command)),
            Err(_) => {
                return Err(format!(
                    "command {:?} timed out after {}s and was killed",
                    p.command,
                    timeout.as_secs()
                ));
            }
        };
        let stdout = tail(&String::from_utf8_lossy(&out.stdout), KEEP_BYTES);
        let stderr = tail(&String::from_utf8_lossy(&out.stderr), KEEP_BYTES);
        let code = out.status.code();
        if out.status.success() {
            Ok(json!({"exit_code": code, "stdout": stdout, "stderr": stderr}).to_string())
        } else {
            Err(format!(
                "command {:?} exited with {}: {}",
                p.command,
                code.map_or("a signal".to_string(), |c| format!("status {c}")),
                tail(&stderr, 1024)
            ))
        }
    }
}
