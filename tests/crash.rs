//! Crash cycles against the real binary: concurrent enqueues, batch and single claims,
//! completions and failures, signed Stripe webhooks (some sent twice) and flag changes;
//! `kill -9` at a random moment; restart; then check that every acknowledged job,
//! completion, webhook event, flag state and audit event is there, that a stored event
//! sent again is a duplicate, that no completed job is claimable again, that
//! `audit verify` passes and that no `seq` appears twice in the audit files.
//!
//! `CRASH_CYCLES` (default 20) sets the number of cycles; `CRASH_LOAD_MS` (default 1200)
//! the longest stretch of load before a kill.

mod helpers;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use echopilot::payments::signature::sign_header;
use helpers::{OPERATOR_KEY, Process, VIEWER_KEY, WORKER_KEY, bin};
use rand::RngExt;
use serde_json::{Value, json};

/// Limits off: the load is far above a client's fair share.
const ENV: &[(&str, &str)] = &[
    ("RATE_LIMIT_PER_MIN", "0"),
    ("WORKER_RATE_LIMIT_PER_MIN", "0"),
    ("WEBHOOK_RATE_LIMIT_PER_MIN", "0"),
    ("AUTH_FAIL_LIMIT_PER_MIN", "0"),
    ("STUCK_REQUEUE_AFTER_SECS", "0"),
    ("STRIPE_WEBHOOK_SECRET", WEBHOOK_SECRET),
];

const WEBHOOK_SECRET: &str = "whsec_crash_0123456789abcdef0123456789";
/// Flags changed under load, one changer each.
const FLAGS: [&str; 2] = ["crash.one", "crash.two"];

/// What a flag's changer knows: the last state acknowledged, and a change sent after it
/// that got no answer (it may or may not have landed).
#[derive(Default, Clone, Copy)]
struct FlagAck {
    acked: Option<bool>,
    unanswered: Option<bool>,
}

/// What the server acknowledged.
#[derive(Default)]
struct Acks {
    /// Jobs answered `201`.
    enqueued: HashSet<String>,
    /// Jobs whose completion was answered ok.
    completed: HashSet<String>,
    /// Request ids answered 2xx for a mutation: each must have its audit event.
    audited: HashSet<String>,
    /// A claim handed out a job whose completion had been acknowledged.
    reclaimed: Vec<String>,
    /// Webhook events answered `200`, with their PaymentIntent.
    webhooks: HashMap<String, String>,
    /// A resent stored event that was not answered as a duplicate.
    not_duplicate: Vec<String>,
    flags: HashMap<&'static str, FlagAck>,
}

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

struct Load {
    base: String,
    client: reqwest::Client,
    acks: Arc<Mutex<Acks>>,
    stop: Arc<AtomicBool>,
    next_rid: Arc<AtomicU64>,
    cycle: u64,
}

impl Load {
    fn rid(&self) -> String {
        format!(
            "crash-{}-{}",
            self.cycle,
            self.next_rid.fetch_add(1, Ordering::Relaxed)
        )
    }

    /// POST with a fresh request id; `None` when the connection failed (no answer, so
    /// nothing acknowledged).
    async fn post(&self, path: &str, key: &str, body: Value) -> Option<(u16, Value, String)> {
        let req = self
            .client
            .post(format!("{}{}", self.base, path))
            .header("X-Dash-Key", key)
            .body(body.to_string());
        self.send(req).await
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> Option<(u16, Value, String)> {
        let rid = self.rid();
        let resp = req
            .header("X-Request-Id", &rid)
            .header("content-type", "application/json")
            .send()
            .await
            .ok()?;
        let status = resp.status().as_u16();
        let v: Value = resp.json().await.ok()?;
        Some((status, v, rid))
    }

    fn ack_audited(&self, rid: String) {
        self.acks.lock().unwrap().audited.insert(rid);
    }

    fn check_claimed(&self, jobs: &[Value]) {
        let mut a = self.acks.lock().unwrap();
        for j in jobs {
            let id = j["id"].as_str().unwrap_or_default().to_string();
            if a.completed.contains(&id) {
                a.reclaimed.push(id);
            }
        }
    }

    async fn producer(self: Arc<Self>, n: usize) {
        let mut i = 0u64;
        while !self.stop.load(Ordering::Relaxed) {
            i += 1;
            let body = json!({"queue": "crash", "kind": "work", "payload": {"p": n, "i": i}});
            let Some((status, v, rid)) = self.post("/api/jobs", OPERATOR_KEY, body).await else {
                continue;
            };
            if status == 201 {
                let id = v["job"]["id"].as_str().unwrap().to_string();
                let mut a = self.acks.lock().unwrap();
                a.enqueued.insert(id);
                a.audited.insert(rid);
            }
        }
    }

    /// Claims 20 at a time and reports them in one batch, one in four as a failure.
    async fn batch_worker(self: Arc<Self>, n: usize) {
        let worker = format!("batch-{n}");
        while !self.stop.load(Ordering::Relaxed) {
            let claim =
                json!({"worker": worker, "count": 20, "lease_secs": 600, "queues": ["crash"]});
            let Some((200, v, rid)) = self.post("/api/jobs/claim", WORKER_KEY, claim).await else {
                continue;
            };
            self.ack_audited(rid);
            let jobs = v["jobs"].as_array().cloned().unwrap_or_default();
            self.check_claimed(&jobs);
            if jobs.is_empty() {
                tokio::time::sleep(Duration::from_millis(5)).await;
                continue;
            }
            let results: Vec<Value> = jobs
                .iter()
                .enumerate()
                .map(|(i, j)| {
                    if i % 4 == 3 {
                        json!({"id": j["id"], "error": "boom"})
                    } else {
                        json!({"id": j["id"], "result": {"done": true}})
                    }
                })
                .collect();
            let body = json!({"worker": worker, "results": results});
            let Some((200, v, rid)) = self.post("/api/jobs/complete", WORKER_KEY, body).await
            else {
                continue;
            };
            self.ack_audited(rid);
            let mut a = self.acks.lock().unwrap();
            for (entry, sent) in v["results"].as_array().unwrap().iter().zip(&results) {
                if entry["ok"] == json!(true) && sent.get("result").is_some() {
                    a.completed
                        .insert(entry["id"].as_str().unwrap().to_string());
                }
            }
        }
    }

    /// Claims one job at a time; completes it, or fails one in four.
    async fn single_worker(self: Arc<Self>, n: usize) {
        let worker = format!("single-{n}");
        let mut i = 0u64;
        while !self.stop.load(Ordering::Relaxed) {
            let claim = json!({"worker": worker, "lease_secs": 600, "queues": ["crash"]});
            let Some((200, v, rid)) = self.post("/api/jobs/claim", WORKER_KEY, claim).await else {
                continue;
            };
            self.ack_audited(rid);
            if v["job"].is_null() {
                tokio::time::sleep(Duration::from_millis(5)).await;
                continue;
            }
            self.check_claimed(std::slice::from_ref(&v["job"]));
            let id = v["job"]["id"].as_str().unwrap().to_string();
            i += 1;
            let (path, body) = if i.is_multiple_of(4) {
                (
                    format!("/api/job/{id}/fail"),
                    json!({"worker": worker, "error": "boom"}),
                )
            } else {
                (
                    format!("/api/job/{id}/complete"),
                    json!({"worker": worker, "result": {"done": true}}),
                )
            };
            let completes = !i.is_multiple_of(4);
            let Some((200, _, rid)) = self.post(&path, WORKER_KEY, body).await else {
                continue;
            };
            let mut a = self.acks.lock().unwrap();
            a.audited.insert(rid);
            if completes {
                a.completed.insert(id);
            }
        }
    }

    /// Signed `payment_intent.succeeded` events; one in five resends an event that was
    /// already acknowledged, which must come back a duplicate.
    async fn webhook_sender(self: Arc<Self>, n: usize) {
        let url = format!("{}/api/stripe/webhook", self.base);
        let mut i = 0u64;
        while !self.stop.load(Ordering::Relaxed) {
            i += 1;
            let resend = if i.is_multiple_of(5) {
                let a = self.acks.lock().unwrap();
                a.webhooks
                    .iter()
                    .next()
                    .map(|(e, p)| (e.clone(), p.clone()))
            } else {
                None
            };
            let (event_id, intent) = resend.clone().unwrap_or_else(|| {
                let tag = format!("{}_{n}_{i}", self.cycle);
                (format!("evt_crash_{tag}"), format!("pi_crash_{tag}"))
            });
            let now = chrono::Utc::now().timestamp();
            let body = json!({
                "id": event_id, "object": "event", "api_version": "2024-06-20",
                "created": now, "livemode": false, "pending_webhooks": 1,
                "type": "payment_intent.succeeded",
                "data": {"object": {
                    "id": intent, "object": "payment_intent", "amount": 1200,
                    "amount_received": 1200, "currency": "usd", "customer": "cus_crash",
                    "created": now, "status": "succeeded", "metadata": {}
                }}
            })
            .to_string();
            let sig = sign_header(WEBHOOK_SECRET, now, body.as_bytes());
            let req = self
                .client
                .post(&url)
                .header("Stripe-Signature", sig)
                .body(body);
            let Some((200, v, rid)) = self.send(req).await else {
                continue;
            };
            let mut a = self.acks.lock().unwrap();
            a.audited.insert(rid);
            if resend.is_some() && v["duplicate"] != json!(true) {
                a.not_duplicate.push(format!("{event_id}: {v}"));
            }
            a.webhooks.insert(event_id, intent);
        }
    }

    /// Turns one flag on and off, one change at a time.
    async fn flag_changer(self: Arc<Self>, flag: &'static str) {
        let url = format!("{}/api/flags/{flag}", self.base);
        let mut enabled = rand::rng().random_bool(0.5);
        while !self.stop.load(Ordering::Relaxed) {
            enabled = !enabled;
            self.acks
                .lock()
                .unwrap()
                .flags
                .entry(flag)
                .or_default()
                .unanswered = Some(enabled);
            let req = self
                .client
                .put(&url)
                .header("X-Dash-Key", OPERATOR_KEY)
                .body(json!({"enabled": enabled, "note": "crash load"}).to_string());
            // No answer: the server is gone (or going); what was sent stays unanswered.
            let Some((status, v, rid)) = self.send(req).await else {
                break;
            };
            assert_eq!(status, 200, "flag change answered {status}: {v}");
            {
                let mut a = self.acks.lock().unwrap();
                a.audited.insert(rid);
                *a.flags.entry(flag).or_default() = FlagAck {
                    acked: Some(enabled),
                    unanswered: None,
                };
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

async fn get(client: &reqwest::Client, url: &str) -> (u16, Value) {
    let resp = client
        .get(url)
        .header("X-Dash-Key", VIEWER_KEY)
        .send()
        .await
        .expect("request after restart");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// Every job with `status`, through the list's cursor.
async fn ids_with_status(client: &reqwest::Client, base: &str, status: &str) -> HashSet<String> {
    let mut out = HashSet::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut url = format!("{base}/api/jobs?status={status}&limit=500");
        if let Some(c) = &cursor {
            url.push_str(&format!("&cursor={c}"));
        }
        let (s, v) = get(client, &url).await;
        assert_eq!(s, 200, "{v}");
        for j in v["jobs"].as_array().unwrap() {
            out.insert(j["id"].as_str().unwrap().to_string());
        }
        match v["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => return out,
        }
    }
}

/// Every audit line in the current file and the archives: (seq, request id).
fn audit_lines(home: &Path) -> Vec<(u64, String)> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        let Ok(rd) = std::fs::read_dir(dir) else {
            return;
        };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.file_name().is_some_and(|n| {
                let n = n.to_string_lossy();
                n.starts_with("audit") && n.ends_with(".ndjson")
            }) {
                out.push(p);
            }
        }
    }
    let mut files = Vec::new();
    walk(&home.join("logs"), &mut files);
    let mut out = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let v: Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("{}: a line is not JSON ({e}): {line}", f.display()));
            out.push((
                v["seq"].as_u64().unwrap(),
                v["request_id"].as_str().unwrap_or_default().to_string(),
            ));
        }
    }
    out
}

fn audit_verify(home: &Path) -> (bool, String) {
    let out = bin(home)
        .args(["audit", "verify", "--home"])
        .arg(home)
        .output()
        .expect("run audit verify");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_dash_nine_cycles_lose_nothing_acknowledged() {
    let cycles = env_num("CRASH_CYCLES", 20);
    let max_load = env_num("CRASH_LOAD_MS", 1200).max(100);
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().to_path_buf();
    let acks = Arc::new(Mutex::new(Acks::default()));
    let client = reqwest::Client::new();
    let started = Instant::now();
    let mut checked_enqueued = 0usize;

    let mut server = Process::start(&home, ENV);
    for cycle in 0..cycles {
        let stop = Arc::new(AtomicBool::new(false));
        let load = Arc::new(Load {
            base: server.base.clone(),
            client: client.clone(),
            acks: acks.clone(),
            stop: stop.clone(),
            next_rid: Arc::new(AtomicU64::new(0)),
            cycle,
        });
        let mut tasks = Vec::new();
        for n in 0..4 {
            tasks.push(tokio::spawn(load.clone().producer(n)));
        }
        for n in 0..2 {
            tasks.push(tokio::spawn(load.clone().batch_worker(n)));
            tasks.push(tokio::spawn(load.clone().single_worker(n)));
            tasks.push(tokio::spawn(load.clone().webhook_sender(n)));
        }
        for flag in FLAGS {
            tasks.push(tokio::spawn(load.clone().flag_changer(flag)));
        }
        let pause = rand::rng().random_range(100..=max_load);
        tokio::time::sleep(Duration::from_millis(pause)).await;
        server.signal("KILL");
        server.wait(Duration::from_secs(10));
        stop.store(true, Ordering::Relaxed);
        for t in tasks {
            t.await.unwrap();
        }

        // Restart: what the crashed server acknowledged must all be there.
        server = Process::start(&home, ENV);
        let (new_ids, completed): (Vec<String>, HashSet<String>) = {
            let a = acks.lock().unwrap();
            assert!(
                a.reclaimed.is_empty(),
                "cycle {cycle}: completed jobs were claimed again: {:?}",
                a.reclaimed
            );
            let mut all: Vec<String> = a.enqueued.iter().cloned().collect();
            all.sort();
            (all, a.completed.clone())
        };
        // Jobs acknowledged since the last check (ids sort by creation time).
        for id in new_ids.iter().skip(checked_enqueued) {
            let (s, v) = get(&client, &format!("{}/api/job/{id}", server.base)).await;
            assert_eq!(s, 200, "cycle {cycle}: acknowledged job {id} lost: {v}");
            if completed.contains(id) {
                assert_eq!(
                    v["job"]["status"], "succeeded",
                    "cycle {cycle}: acknowledged completion of {id} reverted: {v}"
                );
            }
        }
        checked_enqueued = new_ids.len();
        let (webhooks, flags, not_duplicate) = {
            let a = acks.lock().unwrap();
            let w: Vec<(String, String)> = a
                .webhooks
                .iter()
                .map(|(e, p)| (e.clone(), p.clone()))
                .collect();
            (w, a.flags.clone(), a.not_duplicate.clone())
        };
        assert!(
            not_duplicate.is_empty(),
            "cycle {cycle}: a stored event sent again was not a duplicate: {not_duplicate:?}"
        );
        // Events of this cycle (and a sample of older ones): their payment is there.
        let tag = format!("evt_crash_{cycle}_");
        for (event, intent) in webhooks
            .iter()
            .filter(|(e, _)| e.starts_with(&tag))
            .chain(webhooks.iter().take(20))
        {
            let (s, v) = get(&client, &format!("{}/api/payments/{intent}", server.base)).await;
            assert_eq!(
                s, 200,
                "cycle {cycle}: acknowledged event {event} lost: {v}"
            );
        }
        for (flag, ack) in &flags {
            let (s, v) = get(&client, &format!("{}/api/flags/{flag}", server.base)).await;
            let Some(acked) = ack.acked else {
                continue;
            };
            assert_eq!(s, 200, "cycle {cycle}: flag {flag} lost: {v}");
            let now = v["flag"]["enabled"].as_bool();
            assert!(
                now == Some(acked) || now == ack.unanswered,
                "cycle {cycle}: flag {flag} is {now:?}, acknowledged {acked}: {v}"
            );
            // What the restarted server holds is what the next cycle starts from.
            acks.lock().unwrap().flags.insert(
                flag,
                FlagAck {
                    acked: now,
                    unanswered: None,
                },
            );
        }

        // Stop cleanly and check the trail over the store and the files.
        server.signal("TERM");
        let (code, _) = server.wait(Duration::from_secs(15));
        assert_eq!(code, Some(0), "cycle {cycle}: clean stop failed");
        let (ok, text) = audit_verify(&home);
        assert!(ok, "cycle {cycle}: audit verify failed:\n{text}");
        let lines = audit_lines(&home);
        let mut seen = HashMap::new();
        for (seq, _) in &lines {
            *seen.entry(*seq).or_insert(0u32) += 1;
        }
        let twice: Vec<_> = seen
            .iter()
            .filter(|(_, n)| **n > 1)
            .map(|(s, _)| *s)
            .collect();
        assert!(
            twice.is_empty(),
            "cycle {cycle}: seq twice in the files: {twice:?}"
        );
        let in_files: HashSet<&str> = lines.iter().map(|(_, r)| r.as_str()).collect();
        {
            let a = acks.lock().unwrap();
            let missing: Vec<_> = a
                .audited
                .iter()
                .filter(|r| !in_files.contains(r.as_str()))
                .take(5)
                .collect();
            assert!(
                missing.is_empty(),
                "cycle {cycle}: acknowledged requests without their audit event: {missing:?}"
            );
        }
        server = Process::start(&home, ENV);
    }

    // At the end: every acknowledged completion is still a success, and none of them
    // waits in the queue again.
    let completed = acks.lock().unwrap().completed.clone();
    for status in ["queued", "scheduled", "running"] {
        let ids = ids_with_status(&client, &server.base, status).await;
        let both: Vec<_> = ids.intersection(&completed).take(5).collect();
        assert!(both.is_empty(), "succeeded and {status}: {both:?}");
    }
    let succeeded = ids_with_status(&client, &server.base, "succeeded").await;
    let reverted: Vec<_> = completed.difference(&succeeded).take(5).collect();
    assert!(reverted.is_empty(), "completions reverted: {reverted:?}");
    let a = acks.lock().unwrap();
    eprintln!(
        "crash: {cycles} cycles in {:.1} s; acknowledged {} enqueues, {} completions, {} \
         webhook events, {} audited requests; lost 0, verify failures 0",
        started.elapsed().as_secs_f64(),
        a.enqueued.len(),
        a.completed.len(),
        a.webhooks.len(),
        a.audited.len()
    );
}

/// The runbook's manual rotation, run as written.
const RUNBOOK_ROTATE: &str =
    "mkdir -p logs/archive/$(date +%Y%m%d); mv logs/ndjson/*.ndjson logs/archive/$(date +%Y%m%d)/";

fn sh(home: &Path, script: &str) {
    let ok = std::process::Command::new("sh")
        .args(["-c", script])
        .current_dir(home)
        .status()
        .unwrap()
        .success();
    assert!(ok, "{script}");
}

/// Audited requests: each failed key is one `auth.failed` event.
async fn make_events(app: &helpers::TestApp, n: usize) {
    for _ in 0..n {
        let (s, _) = app.get("/api/jobs", Some("wrong-key-0123456789")).await;
        assert_eq!(s, 401);
    }
    app.state.flush_logs().await.unwrap();
}

/// Running the runbook's rotation recipe several times a day keeps every line in some
/// file, and `audit verify` still passes; removing any archive file then fails it,
/// naming the missing range.
#[tokio::test]
async fn manual_rotation_twice_a_day_keeps_every_line() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().to_path_buf();
    let app = helpers::TestApp::spawn_in(&home, &[("AUTH_FAIL_LIMIT_PER_MIN", "0")]).await;
    make_events(&app, 5).await;
    sh(&home, RUNBOOK_ROTATE);
    make_events(&app, 4).await;
    sh(&home, RUNBOOK_ROTATE);
    make_events(&app, 3).await;
    sh(&home, RUNBOOK_ROTATE);
    make_events(&app, 2).await;
    let last = app.state.audit.last_seq();
    app.stop().await;

    let mut seqs: Vec<u64> = audit_lines(&home).into_iter().map(|(s, _)| s).collect();
    seqs.sort();
    assert_eq!(
        seqs,
        (1..=last).collect::<Vec<_>>(),
        "every event, each once"
    );
    let (ok, text) = audit_verify(&home);
    assert!(ok, "{text}");

    // The moved files carry their range in their names.
    let day = std::fs::read_dir(home.join("logs/archive"))
        .unwrap()
        .flatten()
        .find(|e| e.path().is_dir())
        .unwrap()
        .path();
    let mut names: Vec<String> = std::fs::read_dir(&day)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().to_string())
        .collect();
    names.sort();
    assert_eq!(names.len(), 3, "{names:?}");
    assert!(
        names
            .iter()
            .all(|n| n.starts_with("audit.") && n.contains('-')),
        "{names:?}"
    );

    // A middle archive removed: verify names the hole.
    let middle = names
        .iter()
        .find(|n| !n.starts_with("audit.1-"))
        .unwrap()
        .clone();
    let moved = home.join("removed.ndjson");
    std::fs::rename(day.join(&middle), &moved).unwrap();
    let (ok, text) = audit_verify(&home);
    assert!(!ok, "a removed archive must fail verify:\n{text}");
    assert!(
        text.contains("missing") || text.contains("removed"),
        "{text}"
    );
    std::fs::rename(&moved, day.join(&middle)).unwrap();

    // The oldest archive removed, with no retention record: verify fails too.
    let first = names.iter().find(|n| n.starts_with("audit.1-")).unwrap();
    std::fs::remove_file(day.join(first)).unwrap();
    let (ok, text) = audit_verify(&home);
    assert!(!ok, "a removed first archive must fail verify:\n{text}");
    assert!(text.contains("events 1.."), "{text}");
}
