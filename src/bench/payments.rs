//! The payments workloads of `echopilot bench`: signed Stripe webhooks over HTTP from
//! 16 concurrent senders (each event stored and audited durably before its `200`), and
//! `GET /api/payments/reconcile` over 100,000 payments.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::{Figures, OPERATOR, client, start_server, timed_calls};
use crate::payments::signature::sign_header;

/// The signing secret of the bench homes (`STRIPE_WEBHOOK_SECRET`).
pub(super) const SECRET: &str = "whsec_bench_0123456789abcdef0123456789";

fn event(i: usize, now: i64) -> String {
    json!({
        "id": format!("evt_bench_{i:08}"),
        "object": "event",
        "api_version": "2024-06-20",
        "created": now,
        "livemode": false,
        "pending_webhooks": 1,
        "request": {"id": null, "idempotency_key": null},
        "type": "payment_intent.succeeded",
        "data": {"object": {
            "id": format!("pi_bench_{i:08}"),
            "object": "payment_intent",
            "amount": 1000 + (i % 5000) as i64,
            "amount_received": 1000 + (i % 5000) as i64,
            "currency": if i.is_multiple_of(3) { "eur" } else { "usd" },
            "customer": format!("cus_bench_{:04}", i % 1000),
            "created": now - 60,
            "latest_charge": format!("ch_bench_{i:08}"),
            "metadata": {"order_id": format!("ord_{i}")},
            "status": "succeeded"
        }}
    })
    .to_string()
}

/// `senders` concurrent senders of signed webhooks.
pub(super) async fn webhooks(
    parent: &Path,
    senders: usize,
    n: usize,
    max: Duration,
) -> anyhow::Result<Figures> {
    let srv = start_server(parent).await?;
    let c = client();
    let url = format!("{}/api/stripe/webhook", srv.base);
    let syncs0 = srv.state.store.syncs();
    let (lat, secs) = timed_calls(senders, n, max, move |i| {
        let (c, url) = (c.clone(), url.clone());
        let now = chrono::Utc::now().timestamp();
        let body = event(i, now);
        let header = sign_header(SECRET, now, body.as_bytes());
        async move {
            let r = c
                .post(&url)
                .header("Stripe-Signature", header)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await?;
            let s = r.status().as_u16();
            let v: Value = r.json().await.unwrap_or(Value::Null);
            if s != 200 || v["outcome"] != "applied" {
                anyhow::bail!("webhook answered {s}: {v}");
            }
            Ok(())
        }
    })
    .await?;
    let syncs = srv.state.store.syncs() - syncs0;
    srv.stop().await;
    Ok(Figures {
        name: format!("webhooks http, {senders} senders (events)"),
        jobs: lat.0.len(),
        secs,
        syncs,
        lat: vec![("webhook", lat)],
    })
}

/// Load `n` payments (in-process, through the same intake), then time
/// `GET /api/payments/reconcile` over HTTP a few times.
pub(super) async fn reconcile(parent: &Path, n: usize) -> anyhow::Result<()> {
    let srv = start_server(parent).await?;
    let load = Instant::now();
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let (payments, next) = (srv.state.payments.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    break;
                }
                let now = chrono::Utc::now().timestamp();
                let body = event(i, now);
                let header = sign_header(SECRET, now, body.as_bytes());
                // Durable at the end (one checkpoint for the load), not per event.
                let _ = payments
                    .receive(Some(header.as_bytes()), body.as_bytes())
                    .await?;
            }
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    srv.state.store.checkpoint()?;
    println!(
        "reconcile: loaded {n} payments in {:.1} s",
        load.elapsed().as_secs_f64()
    );
    let c = client();
    let url = format!("{}/api/payments/reconcile", srv.base);
    let mut times = Vec::new();
    for _ in 0..3 {
        let t = Instant::now();
        let r = c.get(&url).header("X-Dash-Key", OPERATOR).send().await?;
        let s = r.status().as_u16();
        let v: Value = r.json().await.unwrap_or(Value::Null);
        let ms = t.elapsed().as_secs_f64() * 1000.0;
        if s != 200 || v["checked"] != json!(n) {
            anyhow::bail!("reconcile answered {s}: checked {}", v["checked"]);
        }
        times.push(ms);
    }
    times.sort_by(f64::total_cmp);
    println!(
        "{:<44} {:>7} payments  best {:.0} ms  median {:.0} ms  (GET /api/payments/reconcile over HTTP)",
        "reconcile", n, times[0], times[1]
    );
    srv.stop().await;
    Ok(())
}
