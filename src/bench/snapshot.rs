//! `echopilot bench --only snapshot`: a store of 100,000 jobs and 1,000,000 audit
//! events; snapshot and restore times, snapshot size against the store's, and the p99
//! of 32 producers enqueueing over HTTP with and without a snapshot running.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::{Lat, OPERATOR, client, open_state, post};
use crate::app::{self, AppState};
use crate::audit::NewEvent;
use crate::backup;
use crate::jobs::NewJob;

const JOBS: usize = 100_000;
const EVENTS: usize = 1_000_000;
const PRODUCERS: usize = 32;

fn mib(b: u64) -> f64 {
    b as f64 / (1024.0 * 1024.0)
}

async fn preload(state: &AppState) -> anyhow::Result<()> {
    let t = Instant::now();
    let mut commit = crate::store::Commit::done();
    for i in 0..JOBS {
        let (_, c) = state.jobs.enqueue(NewJob {
            kind: "bench".into(),
            payload: Some(format!("{{\"n\":{i},\"to\":\"customer-{i}@example.com\"}}")),
            ..NewJob::default()
        })?;
        // Each pending commit covers every write before it: the last one is enough.
        commit = c;
    }
    commit.durable().await?;
    // Audit events go through the real chain (one lock, group-committed syncs).
    let next = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..64 {
        let (audit, next) = (state.audit.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            while next.fetch_add(1, Ordering::Relaxed) < EVENTS as u64 {
                audit
                    .record(NewEvent {
                        action: "job.create".into(),
                        target: "job:bench".into(),
                        ip: Some("127.0.0.1".into()),
                        request_id: Some(uuid::Uuid::new_v4().to_string()),
                        ok: true,
                        status: 201,
                        actor_id: Some("bench".into()),
                        ..NewEvent::default()
                    })
                    .await?;
            }
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    // Each record returned once durable; the flush writes the file lines.
    state.audit.flush().await?;
    println!(
        "preload: {JOBS} jobs + {EVENTS} audit events in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    Ok(())
}

/// 32 producers for `secs`; with `snapshot`, one snapshot starts after 0.5 s and only
/// requests that started while it ran are counted.
async fn producers(
    state: &AppState,
    base: &str,
    secs: f64,
    snapshot: bool,
) -> anyhow::Result<(Lat, Option<f64>)> {
    let c = client();
    let url = format!("{base}/api/jobs");
    let stop = Arc::new(AtomicBool::new(false));
    let epoch = Instant::now();
    let mut tasks = Vec::new();
    for p in 0..PRODUCERS {
        let (c, url, stop) = (c.clone(), url.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat: Vec<(f64, u32)> = Vec::new();
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let body = json!({"kind": "bench", "payload": {"p": p, "i": i}});
                let t = Instant::now();
                let (s, v) = post(&c, &url, OPERATOR, &body).await?;
                if s != 201 {
                    anyhow::bail!("enqueue answered {s}: {v}");
                }
                lat.push(((t - epoch).as_secs_f64(), t.elapsed().as_micros() as u32));
                i += 1;
            }
            anyhow::Ok(lat)
        }));
    }
    let mut window = (0.0, f64::MAX);
    let mut snap_secs = None;
    if snapshot {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let b = state.backups.clone();
        let start = epoch.elapsed().as_secs_f64();
        let taken = tokio::task::spawn_blocking(move || b.take(None)).await??;
        let end = epoch.elapsed().as_secs_f64();
        window = (start, end);
        snap_secs = Some(end - start);
        let _ = std::fs::remove_file(&taken.path);
        tokio::time::sleep(Duration::from_millis(300)).await;
    } else {
        tokio::time::sleep(Duration::from_secs_f64(secs)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let mut lat = Lat::default();
    for t in tasks {
        for (at, us) in t.await?? {
            if at >= window.0 && at <= window.1 {
                lat.0.push(us);
            }
        }
    }
    Ok((lat, snap_secs))
}

/// Returns the figures, for `--json`.
pub(super) async fn run(parent: &Path) -> anyhow::Result<serde_json::Value> {
    let (state, home) = open_state(parent)?;
    preload(&state).await?;
    let store_bytes = backup::archive::size_of(state.store.path());

    // Snapshot of the quiet store.
    let b = state.backups.clone();
    let taken = tokio::task::spawn_blocking(move || b.take(None)).await??;
    println!(
        "snapshot: {} records in {:.2} s, {:.1} MiB; store on disk {:.1} MiB (snapshot = {:.1} % of the store)",
        taken.header.records,
        taken.secs,
        mib(taken.size_bytes),
        mib(store_bytes),
        taken.size_bytes as f64 * 100.0 / store_bytes.max(1) as f64
    );
    // Restore = checksum + decompress into a fresh store + count check (what verify does).
    let b = state.backups.clone();
    let path = taken.path.clone();
    let verified = tokio::task::spawn_blocking(move || b.verify(&path, None)).await??;
    println!(
        "restore: {} records into a fresh store in {:.2} s (checksum, decompress, write, sync, compare counts)",
        verified.header.records, verified.secs
    );
    let _ = std::fs::remove_file(&taken.path);

    // 32 producers over HTTP, without and with a snapshot running.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let token = CancellationToken::new();
    let server = tokio::spawn(app::serve(listener, state.clone(), token.clone()));
    let (mut quiet, _) = producers(&state, &base, 3.0, false).await?;
    let (mut busy, snap) = producers(&state, &base, 0.0, true).await?;
    let (q99, b99) = (quiet.pct(0.99), busy.pct(0.99));
    println!(
        "32 producers: p99 {q99:.2} ms without a snapshot ({} requests), {b99:.2} ms while one ran ({} requests, snapshot {:.2} s): {:.2}x",
        quiet.0.len(),
        busy.0.len(),
        snap.unwrap_or(0.0),
        b99 / q99.max(1e-9)
    );
    token.cancel();
    let _ = server.await;
    drop(home);
    Ok(json!({
        "records": taken.header.records,
        "snapshot_secs": taken.secs,
        "snapshot_bytes": taken.size_bytes,
        "store_bytes": store_bytes,
        "verify_secs": verified.secs,
        "p99_ms_quiet": q99,
        "p99_ms_during_snapshot": b99,
        "snapshot_secs_beside_producers": snap,
        "p99_ratio": b99 / q99.max(1e-9),
    }))
}
