//! Dashboard render times on a big home: 100,000 jobs and 1,000,000 audit events by
//! default. Fills a temp home, serves it, signs a session in, and times each page
//! (server time as seen on loopback). Prints figures; not a test.
//!
//! `cargo run --release --example dashboard_bench -- [jobs] [audit_events] [rounds] [slo_days]`
//!
//! `slo_days` (default 30, the SLO window) fills that many days of per-minute SLO
//! records with traffic on a dozen routes, as a home that has served for a month has:
//! the overview's charts and figures read them.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use echopilot::app::{self, AppState};
use echopilot::audit::NewEvent;
use echopilot::auth::{Caller, Role};
use echopilot::config::{Config, HomeArg, ServeArgs};
use echopilot::jobs::{ClaimRequest, NewJob};

fn pct(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i].as_secs_f64() * 1000.0
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let jobs: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(100_000);
    let events: usize = args
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let rounds: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(40);
    let slo_days: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(30);
    let tmp = tempfile::tempdir()?;
    // No rate limit: the rounds would pass the default 600 requests a minute.
    let env = [
        ("DASHBOARD_KEY", "bench-admin-key-0123456789abcdef"),
        ("RATE_LIMIT_PER_MIN", "0"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let sargs = ServeArgs {
        home: HomeArg {
            home: Some(tmp.path().to_path_buf()),
        },
        bind: Some("127.0.0.1:0".into()),
    };
    let state = AppState::open(Config::from_sources(&sargs, &env)?)?;

    let t = Instant::now();
    let kinds = [
        "email.send_receipt",
        "report.daily_digest",
        "crm.sync_contacts",
        "webhook.deliver",
    ];
    let queues = ["default", "payments", "notifications"];
    // The commits are left to the one checkpoint below.
    for i in 0..jobs {
        let _ = state.jobs.enqueue(NewJob {
            queue: Some(queues[i % 3].into()),
            kind: kinds[i % 4].into(),
            payload: Some(format!("{{\"n\":{i}}}")),
            max_attempts: Some(1),
            ..NewJob::default()
        })?;
    }
    // Some dead (failed once) and some stuck (lease ran out) among them.
    for (lease, n, fail) in [(300, 1000, true), (1, 50, false)] {
        let claimed = state.jobs.claim(&ClaimRequest {
            queues: vec![],
            kinds: vec![],
            worker: "bench".into(),
            lease_secs: lease,
            count: n,
        })?;
        if fail {
            for j in claimed.0 {
                let _ = state.jobs.fail(&j.id, Some("bench"), "bench failure")?;
            }
        }
    }
    // One flush for the whole setup (the blocking checkpoint, as at start-up).
    state.store.checkpoint()?;
    println!("{jobs} jobs in {:.1} s", t.elapsed().as_secs_f64());

    // A month of traffic: every minute up, a dozen routes with a spread of latencies,
    // a few errors and webhooks, now and then a burst of 429s.
    let t = Instant::now();
    let now_min = echopilot::slo::minute_of(state.clock.now());
    let minutes = slo_days * 24 * 60;
    for m in now_min.saturating_sub(minutes)..now_min {
        let mut snap = echopilot::slo::Snapshot {
            webhooks_ok: m % 7,
            webhooks_failed: u64::from(m % 997 == 0),
            ticks: 12,
            rate_limited: if m % 1440 == 17 { 25 } else { 0 },
            ..Default::default()
        };
        for r in 0..12u64 {
            let mut rs = echopilot::slo::RouteSnap::default();
            let n = 5 + (m + r * 13) % 40;
            rs.classes[1] = n;
            rs.classes[3] = (m + r) % 3;
            rs.classes[4] = u64::from((m + r) % 211 == 0);
            rs.buckets[(2 + (m + r) % 9) as usize] = n + rs.classes[3] + rs.classes[4];
            rs.sum_us = n * 35_000;
            snap.routes.insert(format!("/api/bench/route{r}"), rs);
        }
        let _ = state.slo.merge_minute(m, &snap, true)?;
    }
    println!(
        "{minutes} SLO minutes ({slo_days} d) in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    state.store.checkpoint()?;

    let t = Instant::now();
    let tasks = 64;
    let mut handles = Vec::new();
    for w in 0..tasks {
        let audit = state.audit.clone();
        let n = events / tasks + usize::from(w < events % tasks);
        handles.push(tokio::spawn(async move {
            for i in 0..n {
                let ok = i % 100 != 0;
                audit
                    .record(NewEvent {
                        action: if ok {
                            "job.retry".into()
                        } else {
                            "auth.failed".into()
                        },
                        target: format!("bench:{w}/{i}"),
                        ok,
                        status: if ok { 200 } else { 401 },
                        error: (!ok).then(|| "invalid key".to_string()),
                        ..Default::default()
                    })
                    .await
                    .unwrap();
            }
        }));
    }
    for h in handles {
        h.await?;
    }
    println!(
        "{events} audit events in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    tokio::time::sleep(Duration::from_secs(2)).await;

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr: SocketAddr = listener.local_addr()?;
    let token = tokio_util::sync::CancellationToken::new();
    let server = tokio::spawn(app::serve(listener, state.clone(), token.clone()));
    let caller = Caller {
        key_id: echopilot::auth::key_id("bench-admin-key-0123456789abcdef"),
        role: Role::Admin,
    };
    let cookie = format!(
        "ep_session={}",
        state
            .session_key
            .issue(&caller, state.clock.now().timestamp())
    );
    let some_job = state
        .jobs
        .list(&Default::default(), None, 1)?
        .0
        .first()
        .map(|j| j.id.clone())
        .unwrap_or_default();
    let client = reqwest::Client::new();
    let pages = [
        "/dashboard".to_string(),
        "/dashboard/jobs".into(),
        "/dashboard/jobs?status=dead".into(),
        "/dashboard/jobs?status=stuck".into(),
        "/dashboard/jobs?status=succeeded".into(),
        format!("/dashboard/jobs/{some_job}"),
        "/dashboard/schedules".into(),
        "/dashboard/audit".into(),
        "/dashboard/audit?ok=false".into(),
        "/dashboard/alerts".into(),
        "/dashboard?range=1h".into(),
        "/dashboard?range=6h".into(),
        "/dashboard?range=7d".into(),
        "/dashboard?range=30d".into(),
        "/dashboard/payments".into(),
        "/dashboard/flags".into(),
        "/dashboard/incidents".into(),
        "/dashboard/backups".into(),
        "/dashboard/v1".into(),
    ];
    // The first view of a page after the fill reads from disk what the fill pushed out
    // of the cache: shown on its own (`first`), the rounds after it are the figures.
    println!(
        "{:<36} {:>8} {:>8} {:>8} {:>8}",
        "page", "first ms", "p50 ms", "p95 ms", "max ms"
    );
    for p in &pages {
        let view = || async {
            let t = Instant::now();
            let r = client
                .get(format!("http://{addr}{p}"))
                .header("cookie", &cookie)
                .send()
                .await?;
            let status = r.status();
            let landed = r.url().path().to_string();
            let _ = r.bytes().await?;
            let took = t.elapsed();
            assert!(status.is_success(), "{p}: {status}");
            assert!(p.starts_with(&landed), "{p} was redirected to {landed}");
            anyhow::Ok(took)
        };
        let first = view().await?;
        let mut times = Vec::with_capacity(rounds);
        for _ in 0..rounds {
            times.push(view().await?);
        }
        times.sort();
        println!(
            "{:<36} {:>8.1} {:>8.1} {:>8.1} {:>8.1}",
            p,
            first.as_secs_f64() * 1000.0,
            pct(&times, 0.5),
            pct(&times, 0.95),
            pct(&times, 1.0)
        );
    }
    token.cancel();
    let _ = server.await;
    Ok(())
}
