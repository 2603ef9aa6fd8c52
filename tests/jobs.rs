//! The job queue over HTTP: enqueue, the worker protocol, every status transition,
//! exclusive claims, backoff on a manual clock, stuck jobs, and `kill -9`.

mod helpers;

use std::collections::HashSet;
use std::time::Duration;

use chrono::DateTime;
use echopilot::clock::Clock;
use echopilot::jobs::{ClaimRequest, NewJob};
use echopilot::scheduler;
use helpers::{OPERATOR_KEY, Process, TestApp, VIEWER_KEY, WORKER_KEY};
use serde_json::{Value, json};

fn t0() -> chrono::DateTime<chrono::Utc> {
    DateTime::parse_from_rfc3339("2026-03-01T12:00:00Z")
        .unwrap()
        .to_utc()
}

fn secs_between(a: &Value, b: &Value) -> i64 {
    let a = DateTime::parse_from_rfc3339(a.as_str().unwrap()).unwrap();
    let b = DateTime::parse_from_rfc3339(b.as_str().unwrap()).unwrap();
    (b - a).num_seconds()
}

#[tokio::test]
async fn enqueue_validates_and_shows_public_or_full_fields() {
    let app = TestApp::spawn().await;
    let (s, v) = app
        .enqueue(json!({"kind": "email", "payload": {"to": "a@b.c"}, "priority": 3}))
        .await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["ok"], true);
    assert_eq!(v["duplicate"], false);
    let job = &v["job"];
    assert_eq!(job["status"], "queued");
    assert_eq!(job["queue"], "default");
    assert_eq!(job["max_attempts"], 25);
    let id = job["id"].as_str().unwrap().to_string();
    assert_eq!(uuid::Uuid::parse_str(&id).unwrap().get_version_num(), 7);

    // Without a key: public fields only.
    let (s, v) = app.job(&id, None).await;
    assert_eq!(s, 200);
    assert_eq!(v["job"]["status"], "queued");
    assert!(v["job"].get("payload").is_none(), "{v}");
    assert!(v["job"].get("history").is_none());
    // A viewer sees the payload; a wrong key is refused, not treated as anonymous.
    let (s, v) = app.job(&id, Some(VIEWER_KEY)).await;
    assert_eq!(s, 200);
    assert_eq!(v["job"]["payload"], json!({"to": "a@b.c"}));
    assert!(v["job"]["history"].is_array());
    let (s, _) = app.job(&id, Some("wrong-key-wrong-key-wrong")).await;
    assert_eq!(s, 401);
    let (s, v) = app.job("0190c0de-0000-7000-8000-000000000000", None).await;
    assert_eq!(s, 404, "{v}");
    let (s, _) = app.job("not-an-id", None).await;
    assert_eq!(s, 404);

    // Bad input: 400 naming the field, nothing stored.
    for (body, field) in [
        (json!({}), "kind"),
        (json!({"kind": 5}), "kind"),
        (json!({"kind": "a b"}), "kind"),
        (json!({"kind": "x", "queue": ""}), "queue"),
        (json!({"kind": "x", "priority": "high"}), "priority"),
        (json!({"kind": "x", "max_attempts": 0}), "max_attempts"),
        (json!({"kind": "x", "run_at": "tomorrow"}), "run_at"),
        (json!({"kind": "x", "delay_secs": -1}), "delay_secs"),
        (json!({"kind": "x", "timeout_secs": 0}), "timeout_secs"),
        (json!({"kind": "x", "colour": "red"}), "colour"),
        (
            json!({"kind": "x", "run_at": "2026-01-01T00:00:00Z", "delay_secs": 5}),
            "run_at",
        ),
        (json!([1, 2]), "body"),
    ] {
        let (s, v) = app.enqueue(body.clone()).await;
        assert_eq!(s, 400, "{body} → {v}");
        assert!(
            v["error"].as_str().unwrap().contains(field),
            "{body}: {v} should name {field}"
        );
    }
    let stats = app.jobs_stats().await;
    assert_eq!(stats["totals"]["queued"], 1, "{stats}");

    // Roles: a viewer or a worker may not enqueue; no key is 401.
    let (s, _) = app
        .post("/api/jobs", Some(VIEWER_KEY), json!({"kind": "x"}))
        .await;
    assert_eq!(s, 403);
    let (s, _) = app
        .post("/api/jobs", Some(WORKER_KEY), json!({"kind": "x"}))
        .await;
    assert_eq!(s, 403);
    let (s, _) = app.post("/api/jobs", None, json!({"kind": "x"})).await;
    assert_eq!(s, 401);
    let (s, _) = app.get("/api/jobs", Some(WORKER_KEY)).await;
    assert_eq!(s, 403);

    // The enqueue is in the audit log.
    let audit = app.audit_text().await;
    assert!(
        audit.contains(&format!("\"target\":\"job:{id}\"")),
        "{audit}"
    );
    assert!(audit.contains("\"action\":\"job.create\""));
    app.stop().await;
}

#[tokio::test]
async fn unique_key_returns_the_unfinished_job() {
    let app = TestApp::spawn().await;
    let (s, v) = app
        .enqueue(json!({"kind": "sync", "unique_key": "order-42"}))
        .await;
    assert_eq!(s, 201);
    let id = v["job"]["id"].clone();
    let (s, v) = app
        .enqueue(json!({"kind": "sync", "unique_key": "order-42"}))
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["duplicate"], true);
    assert_eq!(v["job"]["id"], id);
    // Once it finished, the key is free again.
    let (_, c) = app.claim(json!({"worker": "w1"})).await;
    assert_eq!(c["job"]["id"], id);
    let (s, _) = app
        .complete(id.as_str().unwrap(), json!({"result": {"n": 1}}))
        .await;
    assert_eq!(s, 200);
    let (s, v) = app
        .enqueue(json!({"kind": "sync", "unique_key": "order-42"}))
        .await;
    assert_eq!(s, 201, "{v}");
    assert_ne!(v["job"]["id"], id);
    app.stop().await;
}

#[tokio::test]
async fn worker_protocol_and_every_transition() {
    let clock = Clock::manual(t0());
    let app = TestApp::spawn_with_clock(clock.clone(), &[]).await;
    app.state.jobs.set_jitter(Some(7));

    // Claim order: priority first, then run_at, then id.
    let low = app
        .enqueue_id(json!({"kind": "report", "priority": 0}))
        .await;
    let high = app
        .enqueue_id(json!({"kind": "report", "priority": 10}))
        .await;
    let low2 = app
        .enqueue_id(json!({"kind": "report", "priority": 0}))
        .await;
    let (s, v) = app
        .claim(
            json!({"worker": "w1", "queues": ["default"], "kinds": ["report"], "lease_secs": 60}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["job"]["id"], high.as_str());
    assert_eq!(v["job"]["status"], "running");
    assert_eq!(v["job"]["attempts"], 1);
    assert_eq!(v["job"]["worker"], "w1");
    assert_eq!(
        secs_between(&v["job"]["started_at"], &v["job"]["lease_expires_at"]),
        60
    );
    let (_, v) = app.claim(json!({"worker": "w1", "count": 5})).await;
    let ids: Vec<&str> = v["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [low.as_str(), low2.as_str()]);
    // Nothing left: job null.
    let (s, v) = app.claim(json!({"worker": "w1"})).await;
    assert_eq!((s, &v["job"]), (200, &Value::Null));

    // Heartbeat extends the lease; another worker may not report on it.
    clock.advance(chrono::Duration::seconds(30));
    let (s, v) = app
        .heartbeat(&high, json!({"worker": "w1", "lease_secs": 120}))
        .await;
    assert_eq!(s, 200, "{v}");
    let full = app.job_full(&high).await;
    assert_eq!(
        secs_between(
            &json!(echopilot::clock::rfc3339(clock.now())),
            &full["lease_expires_at"]
        ),
        120
    );
    let (s, _) = app.complete(&high, json!({"worker": "w2"})).await;
    assert_eq!(s, 409);

    // running → succeeded, with the result kept; a second report is refused.
    let (s, v) = app
        .complete(&high, json!({"worker": "w1", "result": {"rows": 3}}))
        .await;
    assert_eq!(s, 200, "{v}");
    let full = app.job_full(&high).await;
    assert_eq!(full["status"], "succeeded");
    assert_eq!(full["result"], json!({"rows": 3}));
    assert_eq!(full["history"][0]["outcome"], "succeeded");
    let (s, _) = app.complete(&high, json!({})).await;
    assert_eq!(s, 409);

    // running → scheduled (failed attempt) with backoff 1^4 + 15 + 7*(1+1) = 30 s.
    let (s, v) = app.fail(&low, json!({"error": "smtp down"})).await;
    assert_eq!(s, 200, "{v}");
    let full = app.job_full(&low).await;
    assert_eq!(full["status"], "scheduled");
    assert_eq!(full["last_error"], "smtp down");
    assert_eq!(
        secs_between(
            &json!(echopilot::clock::rfc3339(clock.now())),
            &full["run_at"]
        ),
        30
    );
    // Not claimable before its time, claimable once it arrives (scheduled → queued).
    clock.advance(chrono::Duration::seconds(29));
    let (_, v) = app.claim(json!({"worker": "w1"})).await;
    assert_eq!(v["job"], Value::Null, "{v}");
    clock.advance(chrono::Duration::seconds(1));
    let (_, v) = app.claim(json!({"worker": "w1"})).await;
    assert_eq!(v["job"]["id"], low.as_str(), "{v}");
    assert_eq!(v["job"]["attempts"], 2);
    // Second failure: 2^4 + 15 + 7*3 = 52 s.
    app.fail(&low, json!({"error": "again"})).await;
    let full = app.job_full(&low).await;
    assert_eq!(
        secs_between(
            &json!(echopilot::clock::rfc3339(clock.now())),
            &full["run_at"]
        ),
        52
    );
    assert_eq!(full["history"].as_array().unwrap().len(), 2);

    // A failed (scheduled) job can be retried now: → queued.
    let (s, v) = app.retry(&low).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["job"]["status"], "queued");

    // queued → cancelled; cancelled → queued by retry; a running job can be cancelled
    // and its worker's report is then refused.
    let (s, v) = app.cancel(&low).await;
    assert_eq!((s, v["job"]["status"].as_str()), (200, Some("cancelled")));
    let (s, _) = app.cancel(&low).await;
    assert_eq!(s, 409);
    let (s, v) = app.retry(&low).await;
    assert_eq!((s, v["job"]["status"].as_str()), (200, Some("queued")));
    let (_, v) = app.claim(json!({"worker": "w1"})).await;
    assert_eq!(v["job"]["id"], low.as_str());
    app.cancel(&low).await;
    let (s, _) = app.complete(&low, json!({})).await;
    assert_eq!(s, 409);

    // max_attempts reached: running → dead; dead → queued by retry.
    let once = app
        .enqueue_id(json!({"kind": "once", "max_attempts": 1}))
        .await;
    app.claim(json!({"worker": "w1", "kinds": ["once"]})).await;
    app.fail(&once, json!({"error": "fatal"})).await;
    let full = app.job_full(&once).await;
    assert_eq!(full["status"], "dead");
    assert!(full["finished_at"].is_string());
    let (s, v) = app.retry(&once).await;
    assert_eq!(
        (s, v["job"]["status"].as_str()),
        (200, Some("queued")),
        "{v}"
    );
    // A queued or succeeded job cannot be retried.
    let (s, _) = app.retry(&once).await;
    assert_eq!(s, 409);
    let (s, _) = app.retry(&high).await;
    assert_eq!(s, 409);

    // Delayed enqueue: scheduled until run_at.
    let (s, v) = app
        .enqueue(json!({"kind": "later", "delay_secs": 600}))
        .await;
    assert_eq!(s, 201);
    assert_eq!(v["job"]["status"], "scheduled");

    // Workers may claim and report, but not retry or cancel.
    let (s, _) = app
        .post(
            &format!("/api/job/{once}/retry"),
            Some(WORKER_KEY),
            json!({}),
        )
        .await;
    assert_eq!(s, 403);
    let (s, _) = app
        .post("/api/jobs/claim", Some(VIEWER_KEY), json!({}))
        .await;
    assert_eq!(s, 403);
    app.stop().await;
}

#[tokio::test]
async fn backoff_uses_the_injected_clock_and_random_part() {
    let clock = Clock::manual(t0());
    let dir = tempfile::tempdir().unwrap();
    let cfg = helpers::config(dir.path(), &helpers::base_env());
    let state = echopilot::app::AppState::open_with_clock(cfg, clock.clone()).unwrap();
    for (attempt, jitter) in [(1u32, 0u64), (2, 29), (3, 5)] {
        state.jobs.set_jitter(Some(jitter));
        let j = state
            .jobs
            .enqueue(NewJob {
                kind: format!("k{attempt}"),
                ..NewJob::default()
            })
            .unwrap()
            .0
            .job;
        // Bring it to `attempt` attempts.
        for _ in 0..attempt {
            let (c, _) = state
                .jobs
                .claim(&ClaimRequest {
                    kinds: vec![j.kind.clone()],
                    worker: "w".into(),
                    lease_secs: 10,
                    count: 1,
                    ..ClaimRequest::default()
                })
                .unwrap();
            assert_eq!(c.len(), 1);
            let (f, _) = state.jobs.fail(&j.id, Some("w"), "boom").unwrap();
            let a = i64::from(f.attempts);
            let expected = a.pow(4) + 15 + jitter as i64 * (a + 1);
            assert_eq!((f.run_at - clock.now().timestamp_millis()) / 1000, expected);
            clock.advance(chrono::Duration::seconds(expected));
        }
    }
}

#[tokio::test]
async fn sixteen_claimers_never_share_a_job() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = helpers::config(dir.path(), &helpers::base_env());
    let state = echopilot::app::AppState::open(cfg).unwrap();
    for i in 0..500 {
        let _ = state
            .jobs
            .enqueue(NewJob {
                kind: if i % 2 == 0 { "a".into() } else { "b".into() },
                priority: Some(i % 3),
                ..NewJob::default()
            })
            .unwrap();
    }
    let mut tasks = Vec::new();
    for w in 0..16 {
        let jobs = state.jobs.clone();
        tasks.push(tokio::task::spawn_blocking(move || {
            let mut got = Vec::new();
            loop {
                let (c, _) = jobs
                    .claim(&ClaimRequest {
                        worker: format!("w{w}"),
                        lease_secs: 60,
                        count: 1 + w % 3,
                        ..ClaimRequest::default()
                    })
                    .unwrap();
                if c.is_empty() {
                    break;
                }
                got.extend(c.into_iter().map(|j| j.id));
            }
            got
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    let unique: HashSet<&String> = all.iter().collect();
    assert_eq!(all.len(), 500, "every job claimed once");
    assert_eq!(unique.len(), 500, "no job claimed twice");
    assert_eq!(state.jobs.count(echopilot::jobs::Status::Running), 500);
}

#[tokio::test]
async fn concurrent_http_claims_and_batch_complete() {
    let app = TestApp::spawn().await;
    for _ in 0..120 {
        app.enqueue_id(json!({"kind": "batch", "queue": "bulk"}))
            .await;
    }
    let mut tasks = Vec::new();
    for w in 0..8 {
        let client = app.client.clone();
        let url = app.url("/api/jobs/claim");
        tasks.push(tokio::spawn(async move {
            let mut got = Vec::new();
            loop {
                let v: Value = client
                    .post(&url)
                    .header("X-Dash-Key", WORKER_KEY)
                    .json(&json!({"worker": format!("w{w}"), "queues": ["bulk"], "count": 7}))
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                let jobs = v["jobs"].as_array().unwrap().clone();
                if jobs.is_empty() {
                    break;
                }
                got.extend(
                    jobs.iter()
                        .map(|j| (j["id"].as_str().unwrap().to_string(), format!("w{w}"))),
                );
            }
            got
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    let ids: HashSet<&String> = all.iter().map(|(id, _)| id).collect();
    assert_eq!((all.len(), ids.len()), (120, 120));
    // One batch completes most; one entry fails; one entry names another worker.
    let (w, _) = (&all[0].1, ());
    let mine: Vec<&(String, String)> = all.iter().filter(|(_, ww)| ww == w).collect();
    let mut results: Vec<Value> = mine
        .iter()
        .map(|(id, _)| json!({"id": id, "result": {"done": true}}))
        .collect();
    results[0] = json!({"id": mine[0].0, "error": "bad row"});
    let other = all.iter().find(|(_, ww)| ww != w).unwrap();
    results.push(json!({"id": other.0, "result": 1}));
    let (s, v) = app
        .complete_batch(json!({"worker": w, "results": results}))
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["completed"], mine.len() - 1);
    assert_eq!(v["failed"], 1);
    assert_eq!(v["refused"], 1);
    assert_eq!(app.job_full(&mine[1].0).await["status"], "succeeded");
    assert_eq!(app.job_full(&mine[0].0).await["status"], "scheduled");
    let (s, v) = app.complete_batch(json!({"results": "x"})).await;
    assert_eq!(s, 400, "{v}");
    app.stop().await;
}

#[tokio::test]
async fn stuck_jobs_are_listed_retried_and_requeued_by_policy() {
    let clock = Clock::manual(t0());
    let app =
        TestApp::spawn_with_clock(clock.clone(), &[("STUCK_REQUEUE_AFTER_SECS", "300")]).await;
    let a = app.enqueue_id(json!({"kind": "crawl"})).await;
    let b = app.enqueue_id(json!({"kind": "crawl"})).await;
    let (_, v) = app
        .claim(json!({"worker": "w-dies", "lease_secs": 10, "count": 2}))
        .await;
    assert_eq!(v["jobs"].as_array().unwrap().len(), 2);
    assert_eq!(app.stuck_jobs().await["count"], 0);

    // The lease runs out: listed as stuck at once, with its worker and how long.
    clock.advance(chrono::Duration::seconds(25));
    let stuck = app.stuck_jobs().await;
    assert_eq!(stuck["count"], 2, "{stuck}");
    assert_eq!(stuck["jobs"][0]["last_worker"], "w-dies");
    assert_eq!(stuck["jobs"][0]["stuck_for_secs"], 15);
    assert_eq!(app.job_full(&b).await["status"], "stuck");
    let (_, listed) = app.jobs_list("?status=running").await;
    assert!(
        listed["jobs"]
            .as_array()
            .unwrap()
            .iter()
            .all(|j| j["status"] == "stuck"),
        "{listed}"
    );
    // The tick marks them stuck in the store; the summary says degraded.
    let r = scheduler::tick(&app.state.scheduler).await;
    assert!(r.stuck <= 2);
    assert_eq!(app.job_full(&a).await["status"], "stuck");
    assert_eq!(app.scheduler_status().await["stuck"], 2);
    let summary = app.summary().await;
    assert_eq!(
        summary["components"]["jobs"]["status"], "degraded",
        "{summary}"
    );
    assert_eq!(summary["components"]["jobs"]["stuck"], 2);

    // By hand: stuck → queued, then it runs again (attempt 2).
    let (s, v) = app.retry(&a).await;
    assert_eq!(
        (s, v["job"]["status"].as_str()),
        (200, Some("queued")),
        "{v}"
    );
    let (_, v) = app.claim(json!({"worker": "w2", "lease_secs": 60})).await;
    assert_eq!(v["job"]["id"], a.as_str());
    assert_eq!(v["job"]["attempts"], 2);

    // By policy: re-queued as a failed attempt once stuck for STUCK_REQUEUE_AFTER_SECS.
    clock.advance(chrono::Duration::seconds(100));
    scheduler::tick(&app.state.scheduler).await;
    assert_eq!(app.job_full(&b).await["status"], "stuck");
    clock.advance(chrono::Duration::seconds(300));
    scheduler::tick(&app.state.scheduler).await;
    let full = app.job_full(&b).await;
    assert_eq!(full["status"], "queued", "{full}");
    assert!(full["last_error"].as_str().unwrap().contains("stuck"));
    // A late report from the dead worker is refused now.
    let (s, _) = app.complete(&b, json!({"worker": "w-dies"})).await;
    assert_eq!(s, 409);
    app.stop().await;
}

/// The runbook's "Process Stuck Job": list, look, retry — with no tick in between.
#[tokio::test]
async fn a_job_listed_as_stuck_can_be_retried_before_any_tick() {
    let clock = Clock::manual(t0());
    let app = TestApp::spawn_with_clock(clock.clone(), &[]).await;
    let id = app.enqueue_id(json!({"kind": "crawl"})).await;
    let (_, v) = app
        .claim(json!({"worker": "w-gone", "lease_secs": 5}))
        .await;
    assert_eq!(v["job"]["id"], id.as_str());
    // Not stuck while the lease holds: a retry is refused and changes nothing.
    let (s, _) = app.retry(&id).await;
    assert_eq!(s, 409);
    assert_eq!(app.job_full(&id).await["status"], "running");
    clock.advance(chrono::Duration::seconds(6));
    let stuck = app.stuck_jobs().await;
    assert_eq!(stuck["jobs"][0]["id"], id.as_str(), "{stuck}");
    // The job and the summary agree with the stuck list at once, before any tick.
    let (s, v) = app.get(&format!("/api/job/{id}"), None).await;
    assert_eq!((s, v["job"]["status"].as_str()), (200, Some("stuck")));
    let summary = app.summary().await;
    let jobs = &summary["components"]["jobs"];
    assert_eq!(
        (jobs["status"].as_str(), &jobs["stuck"], &jobs["running"]),
        (Some("degraded"), &json!(1), &json!(0)),
        "{summary}"
    );
    let (s, v) = app.retry(&id).await;
    assert_eq!(
        (s, v["job"]["status"].as_str()),
        (200, Some("queued")),
        "{v}"
    );
    let full = app.job_full(&id).await;
    assert_eq!(full["history"][0]["outcome"], "retried", "{full}");
    assert_eq!(app.stuck_jobs().await["count"], 0);
    // The worker that lost its lease cannot report any more.
    let (s, _) = app.complete(&id, json!({"worker": "w-gone"})).await;
    assert_eq!(s, 409);
    app.stop().await;
}

#[tokio::test]
async fn list_filters_cursor_stats_and_bulk_retry() {
    let app = TestApp::spawn().await;
    let mut ids = Vec::new();
    for i in 0..6 {
        let q = if i < 4 { "mail" } else { "sms" };
        ids.push(
            app.enqueue_id(json!({"kind": "send", "queue": q, "max_attempts": 1}))
                .await,
        );
    }
    // All fail once: dead.
    let (_, v) = app.claim(json!({"worker": "w", "count": 10})).await;
    for j in v["jobs"].as_array().unwrap() {
        app.fail(j["id"].as_str().unwrap(), json!({"error": "x"}))
            .await;
    }
    let stats = app.jobs_stats().await;
    assert_eq!(stats["queues"]["mail"]["dead"], 4, "{stats}");
    assert_eq!(stats["queues"]["sms"]["dead"], 2);
    assert_eq!(stats["totals"]["dead"], 6);

    let (s, v) = app.jobs_list("?status=dead&queue=mail&limit=3").await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["count"], 3);
    // Newest first.
    assert_eq!(v["jobs"][0]["id"], ids[3].as_str());
    let cursor = v["next_cursor"].as_str().unwrap().to_string();
    let (_, v) = app
        .jobs_list(&format!("?status=dead&queue=mail&limit=3&cursor={cursor}"))
        .await;
    assert_eq!(v["count"], 1);
    assert_eq!(v["jobs"][0]["id"], ids[0].as_str());
    assert_eq!(v["next_cursor"], Value::Null);
    let (s, v) = app.jobs_list("?status=nope").await;
    assert_eq!(s, 400, "{v}");
    let (s, _) = app.jobs_list("?since=yesterday").await;
    assert_eq!(s, 400);

    // Bulk: all dead in `mail` go back to queued.
    let (s, v) = app
        .retry_bulk(json!({"status": "dead", "queue": "mail"}))
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["moved"], 4);
    let stats = app.jobs_stats().await;
    assert_eq!(stats["queues"]["mail"]["queued"], 4);
    assert_eq!(stats["queues"]["sms"]["dead"], 2);
    let (s, _) = app.retry_bulk(json!({"status": "queued"})).await;
    assert_eq!(s, 400);
    let audit = app.audit_text().await;
    assert!(audit.contains("job.retry_bulk"));
    assert!(audit.contains("moved=4"));
    app.stop().await;
}

/// Enqueue over HTTP, `kill -9` right after the last 201, restart: every acknowledged
/// job is there. A job a worker held becomes stuck, and can be retried.
#[test]
fn kill_dash_nine_loses_no_acknowledged_job() {
    let dir = tempfile::tempdir().unwrap();
    let mut p = Process::start(dir.path(), &[]);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let client = reqwest::Client::new();
    let base = p.base.clone();
    let n = 150;
    let ids: Vec<String> = rt.block_on(async {
        let mut ids = Vec::new();
        // Ten at a time, so group commit is exercised too.
        for chunk in 0..(n / 10) {
            let mut futs = Vec::new();
            for i in 0..10 {
                let c = client.clone();
                let url = format!("{base}/api/jobs");
                futs.push(tokio::spawn(async move {
                    let r = c
                        .post(url)
                        .header("X-Dash-Key", OPERATOR_KEY)
                        .json(&json!({"kind": "durable", "payload": {"n": chunk * 10 + i}}))
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(r.status(), 201);
                    let v: Value = r.json().await.unwrap();
                    v["job"]["id"].as_str().unwrap().to_string()
                }));
            }
            for f in futs {
                ids.push(f.await.unwrap());
            }
        }
        // A worker holds one with a short lease.
        let v: Value = client
            .post(format!("{base}/api/jobs/claim"))
            .header("X-Dash-Key", WORKER_KEY)
            .json(&json!({"worker": "doomed", "lease_secs": 1}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        ids.push(v["job"]["id"].as_str().unwrap().to_string());
        ids
    });
    p.signal("KILL");
    p.wait(Duration::from_secs(10));
    std::thread::sleep(Duration::from_millis(1100));

    let p2 = Process::start(dir.path(), &[]);
    let held = ids.last().unwrap().clone();
    rt.block_on(async {
        let found = helpers::jobs::all_job_ids(&client, &p2.base, "durable").await;
        for id in &ids {
            assert!(found.contains(id), "job {id} was acknowledged but lost");
        }
        assert_eq!(found.len(), n);
        // The held job: its lease ran out while the server was down; the first tick
        // (at start) marks it stuck, and it can be retried by hand.
        let mut status = Value::Null;
        for _ in 0..100 {
            let v: Value = client
                .get(format!("{}/api/job/{held}", p2.base))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            status = v["job"]["status"].clone();
            if status == "stuck" {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(status, "stuck");
        let r = client
            .post(format!("{}/api/job/{held}/retry", p2.base))
            .header("X-Dash-Key", OPERATOR_KEY)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    });
}

/// A worker in a shell: `curl -X POST` with no body and no Content-Type claims, beats
/// and completes; `null` is no body too; a body that is not JSON is still a 400.
#[tokio::test]
async fn worker_routes_take_a_bare_post() {
    let app = TestApp::spawn().await;
    let id = app.enqueue_id(json!({"kind": "bare"})).await;
    let bare = |path: String, body: &'static str| {
        let req = app
            .client
            .post(app.url(&path))
            .header("x-dash-key", WORKER_KEY)
            .body(body);
        async move {
            let r = req.send().await.unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap())
        }
    };
    let (s, v) = bare("/api/jobs/claim".into(), "").await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["job"]["id"], id.as_str());
    let (s, v) = bare(format!("/api/job/{id}/heartbeat"), "null").await;
    assert_eq!((s, &v["job"]["status"]), (200, &json!("running")), "{v}");
    let (s, v) = bare(format!("/api/job/{id}/complete"), "{oops").await;
    assert_eq!(s, 400, "{v}");
    assert!(
        v["error"].as_str().unwrap().starts_with("malformed JSON"),
        "{v}"
    );
    let (s, v) = bare(format!("/api/job/{id}/complete"), "").await;
    assert_eq!((s, &v["job"]["status"]), (200, &json!("succeeded")), "{v}");
    app.stop().await;
}

/// A change and its audit event share one group commit: an enqueue, a retry and a
/// batch claim each cost one sync, not two. Driven through the router alone, with no
/// background task to sync in between.
#[tokio::test]
async fn a_change_and_its_audit_event_cost_one_sync() {
    use tower::ServiceExt;
    let dir = tempfile::tempdir().unwrap();
    let cfg = helpers::config(dir.path(), &helpers::base_env());
    let state = echopilot::app::AppState::open(cfg).unwrap();
    let app = echopilot::app::router(state.clone());
    let call = |key: &'static str, path: String, body: Value| {
        let app = app.clone();
        async move {
            let req = axum::http::Request::post(path)
                .header("content-type", "application/json")
                .header("X-Dash-Key", key)
                .body(axum::body::Body::from(body.to_string()))
                .unwrap();
            let resp = app.oneshot(req).await.unwrap();
            let status = resp.status().as_u16();
            let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
                .await
                .unwrap();
            (status, serde_json::from_slice::<Value>(&bytes).unwrap())
        }
    };
    let before = state.store.syncs();
    let (s, v) = call(
        helpers::OPERATOR_KEY,
        "/api/jobs".into(),
        json!({"kind": "k", "max_attempts": 1}),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(state.store.syncs() - before, 1);
    let id = v["job"]["id"].as_str().unwrap().to_string();

    let before = state.store.syncs();
    let (s, v) = call(
        helpers::WORKER_KEY,
        "/api/jobs/claim".into(),
        json!({"count": 5}),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["jobs"].as_array().unwrap().len(), 1);
    assert_eq!(state.store.syncs() - before, 1);

    let (s, _) = call(
        helpers::WORKER_KEY,
        format!("/api/job/{id}/fail"),
        json!({"error": "boom"}),
    )
    .await;
    assert_eq!(s, 200);
    let before = state.store.syncs();
    let (s, v) = call(
        helpers::OPERATOR_KEY,
        format!("/api/job/{id}/retry"),
        json!({}),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["job"]["status"], "queued");
    assert_eq!(state.store.syncs() - before, 1);
    // Both halves are there: the change and its event.
    assert_eq!(
        state.jobs.get(&id).unwrap().status,
        echopilot::jobs::Status::Queued
    );
    assert!(
        state
            .audit
            .recent(1)
            .unwrap()
            .iter()
            .any(|e| e.action == "job.retry" && e.ok)
    );
}
