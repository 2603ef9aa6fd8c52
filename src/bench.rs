//! `echopilot bench`: figures for the durable job queue (a benchmark, never a test).
//!
//! It first measures the disk (1,000 × 4 KiB write + `fdatasync`), because durable
//! throughput is bounded by it and the disk's rate swings, then runs each workload on a
//! fresh home with a real server on 127.0.0.1:0 (or in-process), and prints jobs/s,
//! the multiple of the disk's sync rate, p50/p99 per call and syncs per job.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::app::{self, AppState};
use crate::config::{Config, HomeArg, ServeArgs};
use crate::jobs::{ClaimRequest, NewJob};
use crate::store::Commit;

mod batch;
mod payments;
mod report;
pub(crate) mod seed;
mod snapshot;
mod status;

/// Options of `echopilot bench`.
#[derive(Debug, Clone)]
pub(crate) struct BenchOptions {
    /// Where the temporary homes go (default: the system temp folder).
    pub home: Option<PathBuf>,
    /// Jobs per workload.
    pub jobs: usize,
    /// Longest time one workload may run; the figure is over what it did.
    pub max_secs: u64,
    /// Run only workloads whose name contains this.
    pub only: Option<String>,
    /// Also print every figure as one JSON document, the last line of the output.
    pub json: bool,
}

struct Server {
    base: String,
    state: AppState,
    token: CancellationToken,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
    _dir: TempHome,
}

/// A bench home, removed when dropped.
struct TempHome(PathBuf);

impl Drop for TempHome {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

const OPERATOR: &str = "bench-operator-key-0123456789abcdef";
const WORKER: &str = "bench-worker-key-0123456789abcdefgh";

fn open_state(parent: &Path) -> anyhow::Result<(AppState, TempHome)> {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let path = parent.join(format!(
        "echopilot-bench-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&path).with_context(|| format!("while creating {}", path.display()))?;
    let dir = TempHome(path);
    let env: HashMap<String, String> = HashMap::from([
        (
            "ROLES_JSON".to_string(),
            json!({OPERATOR: "operator", WORKER: "worker"}).to_string(),
        ),
        // Limits would measure the limiter, not the queue.
        ("RATE_LIMIT_PER_MIN".to_string(), "0".to_string()),
        ("WORKER_RATE_LIMIT_PER_MIN".to_string(), "0".to_string()),
        ("SLOW_REQUEST_MS".to_string(), "100000".to_string()),
        ("WEBHOOK_RATE_LIMIT_PER_MIN".to_string(), "0".to_string()),
        (
            "STRIPE_WEBHOOK_SECRET".to_string(),
            payments::SECRET.to_string(),
        ),
    ]);
    let args = ServeArgs {
        home: HomeArg {
            home: Some(dir.0.clone()),
        },
        bind: Some("127.0.0.1:0".into()),
    };
    let config = Config::from_sources(&args, &env)?;
    let state = AppState::open(config)?;
    Ok((state, dir))
}

async fn start_server(parent: &Path) -> anyhow::Result<Server> {
    let (state, dir) = open_state(parent)?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let token = CancellationToken::new();
    let task = tokio::spawn(app::serve(listener, state.clone(), token.clone()));
    Ok(Server {
        base,
        state,
        token,
        task,
        _dir: dir,
    })
}

impl Server {
    async fn stop(self) {
        self.token.cancel();
        let _ = self.task.await;
    }
}

/// The disk's durable write rate: 1,000 × (4 KiB write + fdatasync), per second.
pub(crate) fn disk_sync_rate(dir: &Path) -> anyhow::Result<f64> {
    let path = dir.join(format!("echopilot-fsync-probe-{}", std::process::id()));
    let mut f = std::fs::File::create(&path)
        .with_context(|| format!("while creating {}", path.display()))?;
    let block = [0x5au8; 4096];
    let start = Instant::now();
    for _ in 0..1000 {
        f.write_all(&block)?;
        f.sync_data()?;
    }
    let secs = start.elapsed().as_secs_f64();
    drop(f);
    let _ = std::fs::remove_file(&path);
    Ok(1000.0 / secs)
}

#[derive(Default)]
struct Lat(Vec<u32>);

impl Lat {
    fn pct(&mut self, p: f64) -> f64 {
        if self.0.is_empty() {
            return 0.0;
        }
        self.0.sort_unstable();
        let i = ((self.0.len() as f64 - 1.0) * p).round() as usize;
        f64::from(self.0[i]) / 1000.0
    }
}

struct Figures {
    name: String,
    jobs: usize,
    secs: f64,
    syncs: u64,
    lat: Vec<(&'static str, Lat)>,
}

fn report(all: &mut [Figures], disk: f64) {
    if let Some(f) = all.last_mut() {
        print_figures(f, disk);
    }
}

fn print_figures(f: &mut Figures, disk: f64) {
    let rate = f.jobs as f64 / f.secs.max(1e-9);
    let mut lat = String::new();
    for (call, l) in f.lat.iter_mut() {
        if !l.0.is_empty() {
            lat.push_str(&format!(
                "  {call} p50 {:.2} ms p99 {:.2} ms",
                l.pct(0.50),
                l.pct(0.99)
            ));
        }
    }
    println!(
        "{:<44} {:>7} jobs {:>6.2} s {:>9.0} jobs/s {:>6.2}x disk  {:.3} syncs/job{lat}",
        f.name,
        f.jobs,
        f.secs,
        rate,
        rate / disk,
        f.syncs as f64 / f.jobs.max(1) as f64
    );
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(64)
        .build()
        .unwrap_or_default()
}

async fn post(
    c: &reqwest::Client,
    url: &str,
    key: &str,
    body: &Value,
) -> anyhow::Result<(u16, Value)> {
    let r = c
        .post(url)
        .header("X-Dash-Key", key)
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await?;
    let s = r.status().as_u16();
    let v: Value = r.json().await.unwrap_or(Value::Null);
    Ok((s, v))
}

/// `senders` tasks share `n` numbered calls (stopping once `max` has passed) and time
/// each: `call(i)` prepares a request, the future it returns is what is timed.
async fn timed_calls<F, Fut>(
    senders: usize,
    n: usize,
    max: Duration,
    call: F,
) -> anyhow::Result<(Lat, f64)>
where
    F: Fn(usize) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = anyhow::Result<()>> + Send + 'static,
{
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..senders {
        let (next, call) = (next.clone(), call.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n || start.elapsed() > max {
                    break;
                }
                let request = call(i);
                let t = Instant::now();
                request.await?;
                lat.push(t.elapsed().as_micros() as u32);
            }
            anyhow::Ok(lat)
        }));
    }
    let mut lat = Lat::default();
    for t in tasks {
        lat.0.extend(t.await??);
    }
    Ok((lat, start.elapsed().as_secs_f64()))
}

/// Durable enqueue over HTTP by `producers` concurrent producers.
async fn http_enqueue(
    parent: &Path,
    producers: usize,
    jobs: usize,
    max: Duration,
) -> anyhow::Result<Figures> {
    let srv = start_server(parent).await?;
    let c = client();
    let url = format!("{}/api/jobs", srv.base);
    let syncs0 = srv.state.store.syncs();
    let (lat, secs) = timed_calls(producers, jobs, max, move |i| {
        let (c, url) = (c.clone(), url.clone());
        let body = json!({"kind": "bench", "payload": {"n": i}});
        async move {
            let (s, v) = post(&c, &url, OPERATOR, &body).await?;
            if s != 201 {
                anyhow::bail!("enqueue answered {s}: {v}");
            }
            Ok(())
        }
    })
    .await?;
    let syncs = srv.state.store.syncs() - syncs0;
    srv.stop().await;
    Ok(Figures {
        name: format!("enqueue http, {producers} producer(s)"),
        jobs: lat.0.len(),
        secs,
        syncs,
        lat: vec![("enqueue", lat)],
    })
}

/// Durable enqueue in-process: enqueue + group-commit sync per job.
async fn local_enqueue(
    parent: &Path,
    producers: usize,
    jobs: usize,
    max: Duration,
) -> anyhow::Result<Figures> {
    let (state, _dir) = open_state(parent)?;
    let syncs0 = state.store.syncs();
    let st = state.clone();
    let (lat, secs) = timed_calls(producers, jobs, max, move |i| {
        let state = st.clone();
        async move {
            let (_, commit) = state.jobs.enqueue(NewJob {
                kind: "bench".into(),
                payload: Some(format!("{{\"n\":{i}}}")),
                ..NewJob::default()
            })?;
            commit.durable().await?;
            Ok(())
        }
    })
    .await?;
    Ok(Figures {
        name: format!("enqueue in-process, {producers} producer(s)"),
        jobs: lat.0.len(),
        secs,
        syncs: state.store.syncs() - syncs0,
        lat: vec![("enqueue", lat)],
    })
}

fn preload(state: &AppState, jobs: usize) -> anyhow::Result<()> {
    for i in 0..jobs {
        // Made durable all at once by the checkpoint below.
        let _ = state.jobs.enqueue(NewJob {
            kind: "bench".into(),
            payload: Some(format!("{{\"n\":{i}}}")),
            ..NewJob::default()
        })?;
    }
    state.store.checkpoint()?;
    Ok(())
}

/// Drain preloaded jobs over HTTP: claim (one or a batch) then complete (one or a batch).
async fn http_drain(
    parent: &Path,
    workers: usize,
    batch: usize,
    jobs: usize,
    max: Duration,
) -> anyhow::Result<Figures> {
    let srv = start_server(parent).await?;
    preload(&srv.state, jobs)?;
    let c = client();
    let syncs0 = srv.state.store.syncs();
    let start = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..workers {
        let c = c.clone();
        let base = srv.base.clone();
        tasks.push(tokio::spawn(async move {
            let (mut claim_lat, mut done_lat, mut done) = (Vec::new(), Vec::new(), 0usize);
            let worker = format!("bench-{w}");
            while start.elapsed() <= max {
                let t = Instant::now();
                let body = if batch > 1 {
                    json!({"worker": worker, "count": batch, "lease_secs": 300})
                } else {
                    json!({"worker": worker, "lease_secs": 300})
                };
                let (s, v) = post(&c, &format!("{base}/api/jobs/claim"), WORKER, &body).await?;
                if s != 200 {
                    anyhow::bail!("claim answered {s}: {v}");
                }
                claim_lat.push(t.elapsed().as_micros() as u32);
                let ids: Vec<String> = if batch > 1 {
                    v["jobs"]
                        .as_array()
                        .map(|a| {
                            a.iter()
                                .filter_map(|j| j["id"].as_str().map(str::to_string))
                                .collect()
                        })
                        .unwrap_or_default()
                } else {
                    v["job"]["id"]
                        .as_str()
                        .map(str::to_string)
                        .into_iter()
                        .collect()
                };
                if ids.is_empty() {
                    break;
                }
                let t = Instant::now();
                if batch > 1 {
                    let results: Vec<Value> = ids
                        .iter()
                        .map(|id| json!({"id": id, "result": {"ok": 1}}))
                        .collect();
                    let body = json!({"worker": worker, "results": results});
                    let (s, v) =
                        post(&c, &format!("{base}/api/jobs/complete"), WORKER, &body).await?;
                    if s != 200 {
                        anyhow::bail!("batch complete answered {s}: {v}");
                    }
                } else {
                    let body = json!({"worker": worker, "result": {"ok": 1}});
                    let (s, v) = post(
                        &c,
                        &format!("{base}/api/job/{}/complete", ids[0]),
                        WORKER,
                        &body,
                    )
                    .await?;
                    if s != 200 {
                        anyhow::bail!("complete answered {s}: {v}");
                    }
                }
                done_lat.push(t.elapsed().as_micros() as u32);
                done += ids.len();
            }
            anyhow::Ok((claim_lat, done_lat, done))
        }));
    }
    let (mut cl, mut dl, mut done) = (Lat::default(), Lat::default(), 0);
    for t in tasks {
        let (c, d, n) = t.await??;
        cl.0.extend(c);
        dl.0.extend(d);
        done += n;
    }
    let secs = start.elapsed().as_secs_f64();
    let syncs = srv.state.store.syncs() - syncs0;
    srv.stop().await;
    let mode = if batch > 1 {
        format!("batches of {batch}")
    } else {
        "single".into()
    };
    Ok(Figures {
        name: format!("drain http, {workers} workers, {mode}"),
        jobs: done,
        secs,
        syncs,
        lat: vec![("claim", cl), ("complete", dl)],
    })
}

/// The same drain in-process: claim, sync, complete, sync, as a worker would.
async fn local_drain(
    parent: &Path,
    workers: usize,
    batch: usize,
    jobs: usize,
    max: Duration,
) -> anyhow::Result<Figures> {
    let (state, _dir) = open_state(parent)?;
    preload(&state, jobs)?;
    let syncs0 = state.store.syncs();
    let start = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..workers {
        let state = state.clone();
        tasks.push(tokio::spawn(async move {
            let (mut claim_lat, mut done_lat, mut done) = (Vec::new(), Vec::new(), 0usize);
            let worker = format!("bench-{w}");
            while start.elapsed() <= max {
                let t = Instant::now();
                let (claimed, commit) = state.jobs.claim(&ClaimRequest {
                    worker: worker.clone(),
                    lease_secs: 300,
                    count: batch,
                    ..ClaimRequest::default()
                })?;
                commit.durable().await?;
                claim_lat.push(t.elapsed().as_micros() as u32);
                if claimed.is_empty() {
                    break;
                }
                let t = Instant::now();
                let mut commit = Commit::done();
                for j in &claimed {
                    let (_, c) =
                        state
                            .jobs
                            .complete(&j.id, Some(&worker), Some("{\"ok\":1}".into()))?;
                    commit = commit.and(c);
                }
                commit.durable().await?;
                done_lat.push(t.elapsed().as_micros() as u32);
                done += claimed.len();
            }
            anyhow::Ok((claim_lat, done_lat, done))
        }));
    }
    let (mut cl, mut dl, mut done) = (Lat::default(), Lat::default(), 0);
    for t in tasks {
        let (c, d, n) = t.await??;
        cl.0.extend(c);
        dl.0.extend(d);
        done += n;
    }
    let secs = start.elapsed().as_secs_f64();
    let mode = if batch > 1 {
        format!("batches of {batch}")
    } else {
        "single".into()
    };
    Ok(Figures {
        name: format!("drain in-process, {workers} workers, {mode}"),
        jobs: done,
        secs,
        syncs: state.store.syncs() - syncs0,
        lat: vec![("claim", cl), ("complete", dl)],
    })
}

/// Run every workload and print the figures.
pub(crate) async fn run(opts: BenchOptions) -> anyhow::Result<()> {
    let parent = opts.home.clone().unwrap_or_else(std::env::temp_dir);
    std::fs::create_dir_all(&parent)?;
    let max = Duration::from_secs(opts.max_secs.max(1));
    let n = opts.jobs.max(1);
    let want = |name: &str| opts.only.as_deref().is_none_or(|o| name.contains(o));
    println!(
        "echopilot bench: {} jobs per workload, at most {} s each, homes under {}",
        n,
        max.as_secs(),
        parent.display()
    );
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!("cores: {cores} (shared with whatever else runs on this machine)");
    let disk = tokio::task::spawn_blocking({
        let p = parent.clone();
        move || disk_sync_rate(&p)
    })
    .await??;
    println!("disk: {disk:.0} fdatasync/s (1,000 x 4 KiB write + fdatasync)\n");

    // With no `--only`, the table: single enqueue (1 and 32 producers), bulk
    // enqueue, the 8-worker drains, the status routes; more shapes when asked by name.
    let table = opts.only.is_none();
    let mut all = Vec::new();
    if want("enqueue-http") {
        all.push(http_enqueue(&parent, 1, n, max).await?);
        report(&mut all, disk);
        all.push(http_enqueue(&parent, 32, n, max).await?);
        report(&mut all, disk);
    }
    if want("bulk-enqueue") {
        all.push(batch::http_enqueue_batch(&parent, 4, 100, n, max).await?);
        report(&mut all, disk);
    }
    if !table && want("enqueue-local") {
        all.push(local_enqueue(&parent, 1, n, max).await?);
        report(&mut all, disk);
        all.push(local_enqueue(&parent, 32, n, max).await?);
        report(&mut all, disk);
    }
    for batch in [1, 100] {
        for workers in [2, 8, 32] {
            if want("drain-http") && (!table || workers == 8) {
                all.push(http_drain(&parent, workers, batch, n, max).await?);
                report(&mut all, disk);
            }
        }
    }
    for batch in [1, 100] {
        for workers in [2, 8, 32] {
            if !table && want("drain-local") {
                all.push(local_drain(&parent, workers, batch, n, max).await?);
                report(&mut all, disk);
            }
        }
    }
    let mut status_figures = None;
    if want("status") {
        let f = status::run(&parent, (max.as_secs() / 4).clamp(2, 10)).await?;
        f.print();
        status_figures = Some(f);
    }
    if want("webhooks") {
        all.push(payments::webhooks(&parent, 16, n, max).await?);
        report(&mut all, disk);
    }
    if want("reconcile") {
        payments::reconcile(&parent, 100_000).await?;
    }
    let mut snapshot_figures = None;
    if opts.only.as_deref().is_some_and(|o| "snapshot".contains(o)) {
        // Heavy (a 10⁶-event store): only when asked for by name.
        snapshot_figures = Some(snapshot::run(&parent).await?);
    }
    let disk_after = tokio::task::spawn_blocking({
        let p = parent.clone();
        move || disk_sync_rate(&p)
    })
    .await??;
    println!("\ndisk after: {disk_after:.0} fdatasync/s");
    if opts.json {
        let mut doc = report::document(cores, disk, disk_after, &mut all, status_figures.as_ref());
        if let Some(f) = snapshot_figures {
            doc["snapshot"] = f;
        }
        println!("{doc}");
    }
    Ok(())
}
