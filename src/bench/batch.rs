//! Bulk enqueue over HTTP: `POST /api/jobs/batch` from concurrent producers.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::{Figures, Lat, OPERATOR, client, post, start_server};

/// `producers` concurrent producers, each posting batches of `batch` until `jobs` are in.
pub(super) async fn http_enqueue_batch(
    parent: &Path,
    producers: usize,
    batch: usize,
    jobs: usize,
    max: Duration,
) -> anyhow::Result<Figures> {
    let srv = start_server(parent).await?;
    let c = client();
    let url = format!("{}/api/jobs/batch", srv.base);
    let next = Arc::new(AtomicUsize::new(0));
    let syncs0 = srv.state.store.syncs();
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..producers {
        let (c, url, next) = (c.clone(), url.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let (mut lat, mut done) = (Vec::new(), 0usize);
            loop {
                let first = next.fetch_add(batch, Ordering::Relaxed);
                if first >= jobs || start.elapsed() > max {
                    break;
                }
                let n = batch.min(jobs - first);
                let entries: Vec<Value> = (first..first + n)
                    .map(|i| json!({"kind": "bench", "payload": {"n": i}}))
                    .collect();
                let body = json!({ "jobs": entries });
                let t = Instant::now();
                let (s, v) = post(&c, &url, OPERATOR, &body).await?;
                if s != 201 {
                    anyhow::bail!("batch enqueue answered {s}: {v}");
                }
                lat.push(t.elapsed().as_micros() as u32);
                done += n;
            }
            anyhow::Ok((lat, done))
        }));
    }
    let (mut lat, mut done) = (Lat::default(), 0);
    for t in tasks {
        let (l, n) = t.await??;
        lat.0.extend(l);
        done += n;
    }
    let secs = start.elapsed().as_secs_f64();
    let syncs = srv.state.store.syncs() - syncs0;
    srv.stop().await;
    Ok(Figures {
        name: format!("bulk enqueue http, {producers} producers, batches of {batch}"),
        jobs: done,
        secs,
        syncs,
        lat: vec![("batch", lat)],
    })
}
