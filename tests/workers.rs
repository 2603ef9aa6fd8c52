//! The worker API's guarantees: a claim belongs to the key that made it, workers read
//! only the jobs they hold, and the server's own jobs are never reported over HTTP.

mod helpers;

use std::time::{Duration, Instant};

use echopilot::jobs::{ClaimRequest, NewJob};
use helpers::{ADMIN_KEY, OPERATOR_KEY, TestApp, VIEWER_KEY, WORKER_KEY};
use serde_json::{Value, json};

/// A second worker key, beside the test keys of every role.
const OTHER_WORKER_KEY: &str = "test-worker-two-0123456789abcde";

async fn spawn_two_workers() -> TestApp {
    let roles = json!({
        OPERATOR_KEY: "operator",
        VIEWER_KEY: "viewer",
        WORKER_KEY: "worker",
        OTHER_WORKER_KEY: "worker",
    })
    .to_string();
    TestApp::spawn_with(&[("ROLES_JSON", &roles)]).await
}

async fn report(app: &TestApp, key: &str, id: &str, action: &str, body: Value) -> (u16, Value) {
    app.post(&format!("/api/job/{id}/{action}"), Some(key), body)
        .await
}

#[tokio::test]
async fn a_claim_belongs_to_the_key_that_made_it() {
    let app = spawn_two_workers().await;
    let id = app
        .enqueue_id(json!({"kind": "email", "payload": {"to": "a@b.c"}}))
        .await;
    let (s, v) = app.claim(json!({"worker": "w1", "lease_secs": 60})).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["job"]["id"], id);
    let before = app.job_full(&id).await;
    assert_eq!(before["worker_key"], echopilot::auth::key_id(WORKER_KEY));

    // Another worker key: refused whatever name it gives, and nothing changes.
    for (action, body) in [
        ("heartbeat", json!({"lease_secs": 86_400})),
        ("heartbeat", json!({"worker": "w1", "lease_secs": 86_400})),
        ("complete", json!({"result": {"forged": true}})),
        ("complete", json!({"worker": "w1", "result": 1})),
        ("fail", json!({"error": "forged"})),
        ("fail", json!({"worker": "w1", "error": "forged"})),
    ] {
        let (s, v) = report(&app, OTHER_WORKER_KEY, &id, action, body).await;
        assert_eq!(s, 409, "{action}: {v}");
        assert!(
            v["error"].as_str().unwrap().contains("another worker"),
            "{v}"
        );
    }
    let (s, v) = app
        .post(
            "/api/jobs/complete",
            Some(OTHER_WORKER_KEY),
            json!({"results": [{"id": id, "result": 1}]}),
        )
        .await;
    assert_eq!((s, v["refused"].clone()), (200, json!(1)), "{v}");
    assert_eq!(app.job_full(&id).await, before);

    // Reading: the holder sees everything, the other worker only the public fields.
    let (_, v) = app.job(&id, Some(WORKER_KEY)).await;
    assert_eq!(v["job"]["payload"], json!({"to": "a@b.c"}), "{v}");
    let (_, v) = app.job(&id, Some(OTHER_WORKER_KEY)).await;
    assert_eq!(v["job"]["status"], "running");
    for hidden in ["payload", "result", "history", "last_error", "worker"] {
        assert!(v["job"].get(hidden).is_none(), "{hidden}: {v}");
    }

    // The holder's key, under another name: refused; under its own: fine.
    let (s, _) = app.heartbeat(&id, json!({"worker": "w2"})).await;
    assert_eq!(s, 409);
    let (s, v) = app.heartbeat(&id, json!({"lease_secs": 60})).await;
    assert_eq!(s, 200, "{v}");

    // An operator may act on any claim, audited as such, naming the worker.
    let (s, v) = report(&app, OPERATOR_KEY, &id, "complete", json!({"result": 2})).await;
    assert_eq!(s, 200, "{v}");
    let events = app.audit_lines().await;
    let done: Vec<&Value> = events
        .iter()
        .filter(|e| e["action"] == "job.complete" && e["ok"] == true)
        .collect();
    assert_eq!(done.len(), 1, "{events:?}");
    assert_eq!(done[0]["target"], format!("job:{id} worker:w1 as:operator"));
    let refused = events
        .iter()
        .filter(|e| e["action"] == "job.complete" && e["ok"] == false)
        .count();
    assert_eq!(refused, 2);
    let heartbeat = events
        .iter()
        .find(|e| e["action"] == "job.heartbeat" && e["ok"] == true)
        .unwrap();
    assert_eq!(heartbeat["target"], format!("job:{id} worker:w1"));

    // Finished: no worker key holds it any more.
    let (_, v) = app.job(&id, Some(WORKER_KEY)).await;
    assert!(v["job"].get("payload").is_none(), "{v}");
    let (_, v) = app.job(&id, Some(VIEWER_KEY)).await;
    assert_eq!(v["job"]["result"], 2);
    app.stop().await;
}

/// A job the server runs itself (its executors claim as `builtin:…`) cannot be
/// reported over HTTP, not even by an admin: its real outcome would be dropped.
#[tokio::test]
async fn the_servers_own_jobs_are_not_reported_over_http() {
    let app = TestApp::spawn().await;
    let (enq, _) = app
        .state
        .jobs
        .enqueue(NewJob {
            kind: "own-work".into(),
            ..NewJob::default()
        })
        .unwrap();
    let id = enq.job.id;
    let (claimed, _) = app
        .state
        .jobs
        .claim(&ClaimRequest {
            kinds: vec!["own-work".into()],
            worker: "builtin:executor".into(),
            lease_secs: 60,
            count: 1,
            ..ClaimRequest::default()
        })
        .unwrap();
    assert_eq!(claimed.len(), 1);
    for key in [WORKER_KEY, OPERATOR_KEY, ADMIN_KEY] {
        for action in ["heartbeat", "complete", "fail"] {
            let (s, v) = report(&app, key, &id, action, json!({})).await;
            assert_eq!(s, 409, "{action}: {v}");
            assert!(
                v["error"].as_str().unwrap().contains("server itself"),
                "{v}"
            );
        }
    }
    assert_eq!(app.job_full(&id).await["status"], "running");
    // Its executor still reports it.
    let (_, commit) = app
        .state
        .jobs
        .complete(&id, Some("builtin:executor"), None)
        .unwrap();
    commit.durable().await.unwrap();
    assert_eq!(app.job_full(&id).await["status"], "succeeded");
    app.stop().await;
}

/// A permanent failure is dead at once; a failed attempt back in the queue shows no
/// current worker; the stats count failed attempts of the last hour.
#[tokio::test]
async fn permanent_failures_requeued_workers_and_the_failed_count() {
    let app = TestApp::spawn().await;
    let a = app.enqueue_id(json!({"kind": "email"})).await;
    let b = app.enqueue_id(json!({"kind": "email"})).await;
    let (s, v) = app.claim(json!({"worker": "w1", "count": 2})).await;
    assert_eq!((s, v["jobs"].as_array().unwrap().len()), (200, 2), "{v}");

    let (s, v) = app
        .fail(&a, json!({"error": "no such address", "retry": false}))
        .await;
    assert_eq!(s, 200, "{v}");
    let job = app.job_full(&a).await;
    assert_eq!(
        (job["status"].clone(), job["attempts"].clone()),
        (json!("dead"), json!(1))
    );

    let (s, _) = app.fail(&b, json!({"error": "smtp down"})).await;
    assert_eq!(s, 200);
    let job = app.job_full(&b).await;
    assert_eq!(job["status"], "scheduled");
    assert_eq!(
        (job["worker"].clone(), job["worker_key"].clone()),
        (Value::Null, Value::Null)
    );
    assert_eq!(job["history"][0]["worker"], "w1");

    let stats = app.jobs_stats().await;
    assert_eq!(stats["failed"], 2, "{stats}");
    assert_eq!(stats["failed_window_secs"], 3600);
    app.stop().await;
}

/// A batch entry with both `result` and `error`, or neither, is refused on its own,
/// saying why; the others proceed.
#[tokio::test]
async fn batch_entries_with_both_or_neither_are_refused_alone() {
    let app = TestApp::spawn().await;
    let mut ids = Vec::new();
    for _ in 0..4 {
        ids.push(app.enqueue_id(json!({"kind": "email"})).await);
    }
    let (s, v) = app.claim(json!({"count": 4})).await;
    assert_eq!(s, 200, "{v}");
    let (s, v) = app
        .complete_batch(json!({"results": [
            {"id": ids[0], "result": {"sent": true}, "error": "and failed too"},
            {"id": ids[1]},
            {"id": ids[2], "result": null},
            {"id": ids[3], "error": "bounced", "retry": false},
        ]}))
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        (
            v["completed"].clone(),
            v["failed"].clone(),
            v["refused"].clone()
        ),
        (json!(1), json!(1), json!(2)),
        "{v}"
    );
    let results = v["results"].as_array().unwrap();
    assert_eq!(results[0]["ok"], false);
    assert!(
        results[0]["error"].as_str().unwrap().contains("not both"),
        "{v}"
    );
    assert_eq!(results[1]["ok"], false);
    assert!(
        results[1]["error"].as_str().unwrap().contains("result"),
        "{v}"
    );
    assert_eq!(results[2]["status"], "succeeded");
    assert_eq!(results[3]["status"], "dead");
    for id in &ids[..2] {
        assert_eq!(app.job_full(id).await["status"], "running");
    }
    app.stop().await;
}

/// `wait_secs` long-polls: answered as soon as a job is ready, and at once when the
/// server stops; more than 20 is refused.
#[tokio::test]
async fn a_claim_waits_for_a_job_and_stops_waiting_at_shutdown() {
    let app = TestApp::spawn().await;
    let (s, v) = app.claim(json!({"wait_secs": 21})).await;
    assert_eq!(s, 400, "{v}");
    assert!(v["error"].as_str().unwrap().contains("wait_secs"), "{v}");

    let started = Instant::now();
    let waiting = {
        let (client, url) = (app.client.clone(), app.url("/api/jobs/claim"));
        tokio::spawn(async move {
            let resp = client
                .post(url)
                .header("x-dash-key", WORKER_KEY)
                .json(&json!({"worker": "w1", "wait_secs": 20}))
                .send()
                .await
                .unwrap();
            (resp.status().as_u16(), resp.json::<Value>().await.unwrap())
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!waiting.is_finished(), "answered before any job was ready");
    let id = app.enqueue_id(json!({"kind": "email"})).await;
    let (s, v) = waiting.await.unwrap();
    assert_eq!((s, v["job"]["id"].clone()), (200, json!(id)), "{v}");
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "waited out its time"
    );

    // Shutdown ends a wait at once: the claim answers, empty.
    let started = Instant::now();
    let waiting = {
        let (client, url) = (app.client.clone(), app.url("/api/jobs/claim"));
        tokio::spawn(async move {
            let resp = client
                .post(url)
                .header("x-dash-key", WORKER_KEY)
                .json(&json!({"wait_secs": 20}))
                .send()
                .await
                .unwrap();
            (resp.status().as_u16(), resp.json::<Value>().await.unwrap())
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    app.stop().await;
    let (s, v) = waiting.await.unwrap();
    assert_eq!((s, v["job"].clone()), (200, Value::Null), "{v}");
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "shutdown waited for the claim"
    );
}
