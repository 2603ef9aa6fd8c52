//! The test harness: a `TestApp` with a fresh temp home, served either in-process on
//! `127.0.0.1:0` or as the real `echopilot` binary, plus one method per endpoint.
#![allow(dead_code, unreachable_pub)]

pub mod slo;

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use echopilot::app::{self, AppState};
use echopilot::clock::Clock;
use echopilot::config::{Config, HomeArg, ServeArgs};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

pub mod access;
pub mod dashboard;
pub mod jobs;
pub mod ops;
pub mod stripe;

pub const ADMIN_KEY: &str = "test-admin-key-0123456789abcdef";
pub const OPERATOR_KEY: &str = "test-operator-key-0123456789abc";
pub const VIEWER_KEY: &str = "test-viewer-key-0123456789abcde";
pub const WORKER_KEY: &str = "test-worker-key-0123456789abcde";

/// The environment every test server gets: one key per role.
pub fn base_env() -> HashMap<String, String> {
    let roles = serde_json::json!({
        OPERATOR_KEY: "operator",
        VIEWER_KEY: "viewer",
        WORKER_KEY: "worker",
    });
    HashMap::from([
        ("DASHBOARD_KEY".to_string(), ADMIN_KEY.to_string()),
        ("ROLES_JSON".to_string(), roles.to_string()),
        // The host's own disk must not decide a test's health: only the disk tests
        // judge free space.
        ("DISK_DEGRADED_FREE_PCT".to_string(), "0".to_string()),
        ("DISK_DEGRADED_FREE_BYTES".to_string(), "0".to_string()),
        ("DISK_UNHEALTHY_FREE_PCT".to_string(), "0".to_string()),
        ("DISK_UNHEALTHY_FREE_BYTES".to_string(), "0".to_string()),
        // A test reads the figures right after it changed them; the cache has its own tests.
        ("STATUS_CACHE_MS".to_string(), "0".to_string()),
    ])
}

/// Build a config for `home` from `env` (as the binary would from its environment).
pub fn config(home: &Path, env: &HashMap<String, String>) -> Config {
    let args = ServeArgs {
        home: HomeArg {
            home: Some(home.to_path_buf()),
        },
        bind: Some("127.0.0.1:0".into()),
    };
    Config::from_sources(&args, env).expect("test config")
}

/// A server running inside the test process.
pub struct TestApp {
    pub base: String,
    pub home: PathBuf,
    pub state: AppState,
    pub client: reqwest::Client,
    shutdown: CancellationToken,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    _tmp: Option<tempfile::TempDir>,
}

impl TestApp {
    /// A fresh home with the default test keys.
    pub async fn spawn() -> TestApp {
        Self::spawn_with(&[]).await
    }

    /// A fresh home; `extra` adds or overrides environment settings.
    pub async fn spawn_with(extra: &[(&str, &str)]) -> TestApp {
        let tmp = tempfile::tempdir().unwrap();
        let mut app = Self::spawn_in(tmp.path(), extra).await;
        app._tmp = Some(tmp);
        app
    }

    /// Serve on an existing home (restarts keep their data).
    pub async fn spawn_in(home: &Path, extra: &[(&str, &str)]) -> TestApp {
        Self::spawn_in_with_clock(home, Clock::system(), extra).await
    }

    /// A fresh home served with a manual clock (time moves only when the test says).
    pub async fn spawn_with_clock(clock: Clock, extra: &[(&str, &str)]) -> TestApp {
        let tmp = tempfile::tempdir().unwrap();
        let mut app = Self::spawn_in_with_clock(tmp.path(), clock, extra).await;
        app._tmp = Some(tmp);
        app
    }

    /// Serve on an existing home with the given clock.
    pub async fn spawn_in_with_clock(home: &Path, clock: Clock, extra: &[(&str, &str)]) -> TestApp {
        let mut env = base_env();
        for (k, v) in extra {
            env.insert(k.to_string(), v.to_string());
        }
        let state = AppState::open_with_clock(config(home, &env), clock).expect("open state");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(app::serve(listener, state.clone(), shutdown.clone()));
        TestApp {
            base: format!("http://{addr}"),
            home: home.to_path_buf(),
            state,
            client: reqwest::Client::new(),
            shutdown,
            task: Some(task),
            _tmp: None,
        }
    }

    /// Stop gracefully and wait; the home stays (when it is not the app's own temp dir).
    pub async fn stop(mut self) -> Option<tempfile::TempDir> {
        self.shutdown.cancel();
        if let Some(t) = self.task.take() {
            t.await.unwrap().unwrap();
        }
        self._tmp.take()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub async fn get(&self, path: &str, key: Option<&str>) -> (u16, Value) {
        self.send(reqwest::Method::GET, path, key, None).await
    }

    pub async fn post(&self, path: &str, key: Option<&str>, body: Value) -> (u16, Value) {
        self.send(reqwest::Method::POST, path, key, Some(body))
            .await
    }

    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        key: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut req = self.client.request(method, self.url(path));
        if let Some(k) = key {
            req = req.header("X-Dash-Key", k);
        }
        if let Some(b) = body {
            req = req
                .header("content-type", "application/json")
                .body(b.to_string());
        }
        let resp = req.send().await.expect("request");
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        let json = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, json)
    }

    pub async fn summary(&self) -> Value {
        let (s, v) = self.get("/api/status/summary", None).await;
        assert_eq!(s, 200, "{v}");
        v
    }
}

/// The real binary, started as a child process.
pub struct Process {
    pub child: Child,
    pub base: String,
}

/// A command for the `echopilot` binary with a clean environment.
pub fn bin(home: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_echopilot"));
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("RUST_LOG", "warn")
        .env("ECHOPILOT_HOME", home)
        .current_dir(home);
    for (k, v) in base_env() {
        cmd.env(k, v);
    }
    cmd
}

impl Process {
    /// Start `echopilot serve` on `home` (port chosen by the OS) and wait until it listens.
    pub fn start(home: &Path, extra: &[(&str, &str)]) -> Process {
        let mut cmd = bin(home);
        cmd.arg("serve");
        // A test that sets PORT wants the server there (the CLI finds it the same way).
        if !extra.iter().any(|(k, _)| *k == "PORT") {
            cmd.args(["--bind", "127.0.0.1:0"]);
        }
        cmd.env("ALLOW_DIRTY", "true")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        for (k, v) in extra {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn echopilot");
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let line = lines
            .next()
            .expect("server printed nothing")
            .expect("read stdout");
        let base = line
            .split_whitespace()
            .find(|w| w.starts_with("http://"))
            .unwrap_or_else(|| panic!("no address in {line:?}"))
            .to_string();
        // Keep draining stdout so the server never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Process { child, base }
    }

    /// Send a signal (`TERM`, `KILL`, `INT`) with the system's `kill`.
    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([&format!("-{sig}"), &self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -{sig} failed");
    }

    /// Wait for exit, at most `limit`; returns the exit code and how long it took.
    pub fn wait(&mut self, limit: Duration) -> (Option<i32>, Duration) {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return (status.code(), start.elapsed());
            }
            if start.elapsed() > limit {
                let _ = self.child.kill();
                panic!("server did not exit within {limit:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn get_json(&self, path: &str) -> (u16, Value) {
        blocking_get(&format!("{}{}", self.base, path))
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A blocking GET on a throwaway runtime (for process tests outside async).
pub fn blocking_get(url: &str) -> (u16, Value) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let resp = reqwest::get(url).await.expect("request");
        let status = resp.status().as_u16();
        let v = resp.json().await.unwrap_or(Value::Null);
        (status, v)
    })
}
