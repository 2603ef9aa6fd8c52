//! The public status routes under HTTP load, beside a hello-world baseline, and the
//! server's memory. The server is the real binary (`echopilot serve` in a child
//! process, so its RSS is its own); the baseline is one axum route with no layers,
//! served by this process. Load comes from `wrk` when it is on PATH (a C client that
//! keeps up with a fast server on 2 cores), else from an in-process client loop.
//!
//! Beside each rate: the CPU the serving process spent per request (its user + system
//! time from `/proc`, across the load). With `wrk` the server and the baseline run alone
//! in their processes, so this figure is theirs; it moves far less from run to run than
//! the rate does when other work shares the two cores.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::{Value, json};

use super::{Lat, OPERATOR, TempHome, WORKER};

/// The routes measured, each at 64 connections; the summary also at 256.
const ROUTES: [&str; 4] = [
    "/api/status/summary",
    "/api/slo/status",
    "/api/scheduler/status",
    "/metrics",
];

/// One route under load.
pub(super) struct Load {
    pub route: String,
    pub connections: usize,
    pub client: &'static str,
    pub requests: u64,
    pub errors: u64,
    pub secs: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// CPU seconds the serving process spent during the load (`None`: no `/proc`, or
    /// the in-process client, whose own work would be counted too).
    pub cpu_secs: Option<f64>,
}

impl Load {
    fn rate(&self) -> f64 {
        self.requests as f64 / self.secs.max(1e-9)
    }

    /// Server CPU per request, in µs.
    fn cpu_us(&self) -> Option<f64> {
        self.cpu_secs
            .filter(|_| self.requests > 0)
            .map(|c| c * 1e6 / self.requests as f64)
    }
}

/// What the status part measured.
pub(super) struct StatusFigures {
    pub loads: Vec<Load>,
    pub rss_idle_mb: f64,
    pub rss_after_mb: f64,
}

impl StatusFigures {
    /// Each load beside the hello-world load at the same connection count.
    pub(super) fn print(&self) {
        for l in &self.loads {
            let vs = match self.hello(l.connections) {
                Some(h) if l.route != "hello" => {
                    format!("{:>5.1} % of hello", 100.0 * l.rate() / h.rate().max(1e-9))
                }
                _ => String::new(),
            };
            let cpu = l
                .cpu_us()
                .map_or(String::new(), |c| format!("{c:>6.1} µs CPU/req  "));
            println!(
                "GET {:<38} -c{:<4} {:>9.0} req/s  p50 {:>6.2} ms  p99 {:>6.2} ms  {} errors  {cpu}{vs}  ({})",
                l.route,
                l.connections,
                l.rate(),
                l.p50_ms,
                l.p99_ms,
                l.errors,
                l.client
            );
        }
        println!(
            "server RSS: idle {:.1} MB, after load {:.1} MB",
            self.rss_idle_mb, self.rss_after_mb
        );
    }

    fn hello(&self, connections: usize) -> Option<&Load> {
        self.loads
            .iter()
            .find(|l| l.route == "hello" && l.connections == connections)
    }

    pub(super) fn to_json(&self) -> Value {
        let loads: Vec<Value> = self
            .loads
            .iter()
            .map(|l| {
                json!({
                    "route": l.route,
                    "connections": l.connections,
                    "client": l.client,
                    "requests": l.requests,
                    "errors": l.errors,
                    "secs": l.secs,
                    "req_per_s": l.rate().round(),
                    "p50_ms": l.p50_ms,
                    "p99_ms": l.p99_ms,
                    "cpu_us_per_request": l.cpu_us(),
                    "share_of_hello": self.hello(l.connections).map(|h| l.rate() / h.rate().max(1e-9)),
                })
            })
            .collect();
        json!({
            "loads": loads,
            "rss_idle_mb": self.rss_idle_mb,
            "rss_after_load_mb": self.rss_after_mb,
        })
    }
}

/// `echopilot serve` on a fresh home, as a child process.
struct Child {
    proc: std::process::Child,
    base: String,
    _home: TempHome,
}

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.proc.kill();
        let _ = self.proc.wait();
    }
}

fn spawn_server(parent: &Path) -> anyhow::Result<Child> {
    let path = parent.join(format!("echopilot-bench-serve-{}", std::process::id()));
    std::fs::create_dir_all(&path).with_context(|| format!("while creating {}", path.display()))?;
    let home = TempHome(path);
    let exe = std::env::current_exe().context("while finding this binary")?;
    let mut proc = Command::new(exe)
        .args(["serve", "--bind", "127.0.0.1:0"])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("RUST_LOG", "warn")
        .env("ECHOPILOT_HOME", &home.0)
        .env("ALLOW_DIRTY", "true")
        .env(
            "ROLES_JSON",
            json!({OPERATOR: "operator", WORKER: "worker"}).to_string(),
        )
        // Limits would measure the limiter, not the routes.
        .env("RATE_LIMIT_PER_MIN", "0")
        .env("WORKER_RATE_LIMIT_PER_MIN", "0")
        .env("SLOW_REQUEST_MS", "100000")
        .current_dir(&home.0)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .context("while starting echopilot serve")?;
    let stdout = proc.stdout.take().context("no stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let line = lines.next().context("the server printed nothing")??;
    let base = line
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .with_context(|| format!("no address in {line:?}"))?
        .to_string();
    // Keep draining stdout so the server never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    Ok(Child {
        proc,
        base,
        _home: home,
    })
}

/// VmRSS of `pid`, in MB (0 where /proc is missing).
fn rss_mb(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

/// User + system CPU seconds process `pid` has used, from `/proc/<pid>/stat` (fields 14
/// and 15, counted in clock ticks, after the command name, which may hold spaces and
/// parentheses itself).
fn cpu_secs(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_cpu_ticks(&stat).map(|t| t as f64 / rustix::param::clock_ticks_per_second() as f64)
}

fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut f = rest.split_whitespace().skip(11);
    let utime: u64 = f.next()?.parse().ok()?;
    let stime: u64 = f.next()?.parse().ok()?;
    Some(utime + stime)
}

/// The baseline: one JSON route, no layers, on this process's runtime.
async fn start_hello() -> anyhow::Result<String> {
    let app = axum::Router::new().route(
        "/hello",
        axum::routing::get(|| async { axum::Json(json!({"ok": true, "hello": "world"})) }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/hello", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(url)
}

fn wrk_on_path() -> bool {
    Command::new("wrk")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

/// A wrk latency such as `1.23ms`, `830.00us` or `1.02s`, in ms.
fn wrk_ms(s: &str) -> Option<f64> {
    let (num, factor) = if let Some(n) = s.strip_suffix("us") {
        (n, 0.001)
    } else if let Some(n) = s.strip_suffix("ms") {
        (n, 1.0)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1000.0)
    } else {
        (s, 1.0)
    };
    num.parse::<f64>().ok().map(|v| v * factor)
}

/// The figures of `wrk --latency` output.
fn parse_wrk(out: &str, route: &str, connections: usize, secs: f64) -> Load {
    let mut load = Load {
        route: route.to_string(),
        connections,
        client: "wrk",
        requests: 0,
        errors: 0,
        secs,
        p50_ms: 0.0,
        p99_ms: 0.0,
        cpu_secs: None,
    };
    for line in out.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["50%", v] => load.p50_ms = wrk_ms(v).unwrap_or(0.0),
            ["99%", v] => load.p99_ms = wrk_ms(v).unwrap_or(0.0),
            [n, "requests", "in", t, ..] => {
                load.requests = n.parse().unwrap_or(0);
                if let Some(s) = t.trim_end_matches(',').strip_suffix('s') {
                    load.secs = s.parse().unwrap_or(secs);
                }
            }
            ["Non-2xx", "or", "3xx", "responses:", n] => load.errors += n.parse().unwrap_or(0),
            ["Socket", "errors:", rest @ ..] => {
                load.errors += rest
                    .iter()
                    .filter_map(|w| w.trim_end_matches(',').parse::<u64>().ok())
                    .sum::<u64>();
            }
            _ => {}
        }
    }
    load
}

async fn with_wrk(url: &str, route: &str, connections: usize, secs: u64) -> anyhow::Result<Load> {
    let out = tokio::process::Command::new("wrk")
        .args([
            "-t2",
            &format!("-c{connections}"),
            &format!("-d{secs}s"),
            "--latency",
            url,
        ])
        .output()
        .await
        .context("while running wrk")?;
    Ok(parse_wrk(
        &String::from_utf8_lossy(&out.stdout),
        route,
        connections,
        secs as f64,
    ))
}

/// Without wrk: `connections` client tasks in this process for `secs`.
async fn with_loop(url: &str, route: &str, connections: usize, secs: u64) -> anyhow::Result<Load> {
    let c = reqwest::Client::builder()
        .pool_max_idle_per_host(connections)
        .build()?;
    let stop = Arc::new(AtomicBool::new(false));
    let errors = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..connections {
        let (c, url, stop, errors) = (c.clone(), url.to_string(), stop.clone(), errors.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                let ok = match c.get(&url).send().await {
                    Ok(r) => r.status().is_success() && r.bytes().await.is_ok(),
                    Err(_) => false,
                };
                if ok {
                    lat.push(t.elapsed().as_micros() as u32);
                } else {
                    errors.fetch_add(1, Ordering::Relaxed);
                }
            }
            lat
        }));
    }
    tokio::time::sleep(Duration::from_secs(secs)).await;
    stop.store(true, Ordering::Relaxed);
    let mut lat = Lat::default();
    for t in tasks {
        lat.0.extend(t.await?);
    }
    Ok(Load {
        route: route.to_string(),
        connections,
        client: "in-process",
        requests: lat.0.len() as u64,
        errors: errors.load(Ordering::Relaxed),
        secs: start.elapsed().as_secs_f64(),
        p50_ms: lat.pct(0.50),
        p99_ms: lat.pct(0.99),
        cpu_secs: None,
    })
}

/// Every status route and the baseline under the same load, and the server's RSS idle
/// and after it.
pub(super) async fn run(parent: &Path, secs: u64) -> anyhow::Result<StatusFigures> {
    let server = spawn_server(parent)?;
    let hello = start_hello().await?;
    // Let start-up settle before the idle figure.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_idle_mb = rss_mb(server.proc.id());
    let wrk = wrk_on_path();
    if !wrk {
        println!("(wrk is not on PATH: an in-process client loop makes the load)");
    }
    // Each load with the process that serves it: the baseline is served by this one.
    let (child, this) = (server.proc.id(), std::process::id());
    let mut plan: Vec<(String, &str, usize, u32)> = vec![(hello.clone(), "hello", 64, this)];
    for r in ROUTES {
        plan.push((format!("{}{r}", server.base), r, 64, child));
    }
    plan.push((hello.clone(), "hello", 256, this));
    plan.push((
        format!("{}{}", server.base, ROUTES[0]),
        ROUTES[0],
        256,
        child,
    ));
    let mut loads = Vec::new();
    for (url, route, c, pid) in plan {
        loads.push(match wrk {
            true => {
                let before = cpu_secs(pid);
                let mut load = with_wrk(&url, route, c, secs).await?;
                load.cpu_secs = before.zip(cpu_secs(pid)).map(|(a, b)| b - a);
                load
            }
            false => with_loop(&url, route, c, secs).await?,
        });
    }
    Ok(StatusFigures {
        loads,
        rss_idle_mb,
        rss_after_mb: rss_mb(server.proc.id()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrk_output_is_read() {
        let out = "Running 5s test @ http://127.0.0.1:1/hello
  2 threads and 64 connections
  Latency Distribution
     50%  520.00us
     75%    1.10ms
     90%    2.00ms
     99%   12.34ms
  512345 requests in 5.01s, 70.00MB read
  Socket errors: connect 0, read 2, write 0, timeout 1
  Non-2xx or 3xx responses: 4
Requests/sec: 102264.37
";
        let l = parse_wrk(out, "hello", 64, 5.0);
        assert_eq!(l.requests, 512_345);
        assert!((l.secs - 5.01).abs() < 1e-9);
        assert!((l.p50_ms - 0.52).abs() < 1e-9);
        assert!((l.p99_ms - 12.34).abs() < 1e-9);
        assert_eq!(l.errors, 7);
        assert_eq!(wrk_ms("1.02s"), Some(1020.0));
    }

    #[test]
    fn cpu_ticks_are_read_after_any_command_name() {
        // Fields 14 and 15 (utime 417, stime 83) behind a name with spaces and a `)`.
        let stat = "4242 (ep (x) y) S 1 4242 4242 0 -1 4194560 9000 0 0 0 417 83 0 0 20 0 9 0 \
                    100 1000000 300 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0";
        assert_eq!(parse_cpu_ticks(stat), Some(500));
        assert_eq!(parse_cpu_ticks("4242 (ep) S 1"), None);
        // This process's own figure grows while it works.
        let before = cpu_secs(std::process::id()).expect("a stat file for this process");
        let start = Instant::now();
        let mut spin = 0u64;
        while cpu_secs(std::process::id()).unwrap() <= before && start.elapsed().as_secs() < 10 {
            spin = std::hint::black_box(spin.wrapping_mul(31).wrapping_add(7));
        }
        assert!(cpu_secs(std::process::id()).unwrap() > before);
    }
}
