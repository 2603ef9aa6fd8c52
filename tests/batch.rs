//! `POST /api/jobs/batch`: many jobs in one request, checked all-or-nothing, one commit
//! and one audit event, unique keys per entry, and durable across `kill -9`.

mod helpers;

use std::collections::HashSet;
use std::time::Duration;

use helpers::{OPERATOR_KEY, Process, TestApp, VIEWER_KEY};
use serde_json::{Value, json};

impl TestApp {
    async fn batch(&self, jobs: Value) -> (u16, Value) {
        self.post(
            "/api/jobs/batch",
            Some(OPERATOR_KEY),
            json!({ "jobs": jobs }),
        )
        .await
    }

    async fn audit_of(&self, action: &str) -> Vec<Value> {
        let (s, v) = self
            .get(&format!("/api/audit?action={action}"), Some(VIEWER_KEY))
            .await;
        assert_eq!(s, 200, "{v}");
        v["events"].as_array().unwrap().clone()
    }

    async fn total(&self, status: &str) -> u64 {
        let (s, v) = self.get("/api/jobs/stats", Some(VIEWER_KEY)).await;
        assert_eq!(s, 200, "{v}");
        v["totals"][status].as_u64().unwrap()
    }
}

#[tokio::test]
async fn a_batch_stores_every_job_in_order_under_one_audit_event() {
    let app = TestApp::spawn().await;
    let jobs: Vec<Value> = (0..250)
        .map(|i| {
            let queue = if i % 5 == 0 { "mail" } else { "default" };
            json!({"queue": queue, "kind": "send", "payload": {"i": i}, "priority": i % 3})
        })
        .chain([json!({"kind": "later", "delay_secs": 3600})])
        .collect();
    let (s, v) = app.batch(Value::Array(jobs)).await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["ok"], json!(true));
    assert_eq!(v["count"], json!(251));
    assert_eq!(v["created"], json!(251));
    let out = v["jobs"].as_array().unwrap();
    for (i, e) in out.iter().take(250).enumerate() {
        assert_eq!(e["duplicate"], json!(false));
        assert_eq!(
            e["job"]["payload"]["i"],
            json!(i),
            "entries keep their order"
        );
    }
    assert_eq!(out[250]["job"]["status"], json!("scheduled"));
    let ids: HashSet<&str> = out
        .iter()
        .map(|e| e["job"]["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 251);
    assert_eq!(app.total("queued").await, 250);
    assert_eq!(app.total("scheduled").await, 1);
    let first = out[0]["job"]["id"].as_str().unwrap();
    let (s, shown) = app
        .get(&format!("/api/job/{first}"), Some(VIEWER_KEY))
        .await;
    assert_eq!(s, 200);
    assert_eq!(shown["job"]["queue"], json!("mail"));

    let events = app.audit_of("job.create_batch").await;
    assert_eq!(events.len(), 1, "{events:?}");
    let target = events[0]["target"].as_str().unwrap();
    let last = out[250]["job"]["id"].as_str().unwrap();
    for part in [
        "count=251".to_string(),
        "duplicates=0".to_string(),
        format!("first={first}"),
        format!("last={last}"),
        "default/later=1,default/send=200,mail/send=50".to_string(),
    ] {
        assert!(target.contains(&part), "{part} not in {target}");
    }
    assert!(app.audit_of("job.create").await.is_empty());

    // Claimable like any other job.
    let (s, c) = app
        .claim(json!({"worker": "w", "queues": ["mail"], "count": 100}))
        .await;
    assert_eq!(s, 200, "{c}");
    assert_eq!(c["jobs"].as_array().unwrap().len(), 50);
    app.stop().await;
}

#[tokio::test]
async fn a_bad_entry_is_named_and_nothing_is_stored() {
    let app = TestApp::spawn().await;
    let ok = json!({"kind": "k"});
    let cases = [
        (json!([ok, ok, {"kind": "bad kind"}]), "jobs[2].kind"),
        (
            json!([ok, {"kind": "k", "priority": 2_000_000}]),
            "jobs[1].priority",
        ),
        (
            json!([ok, ok, ok, {"kind": "k", "max_attempts": 0}]),
            "jobs[3].max_attempts",
        ),
        (
            json!([{"kind": "k", "run_at": "2030-01-01T00:00:00Z", "delay_secs": 5}]),
            "jobs[0].run_at",
        ),
        (json!([ok, {"kind": "k", "bogus": 1}]), "jobs[1]"),
        (json!([ok, {"queue": "q"}]), "jobs[1].kind"),
        (json!([]), "jobs"),
    ];
    for (jobs, named) in cases {
        let (s, v) = app.batch(jobs.clone()).await;
        assert_eq!(s, 400, "{jobs}: {v}");
        assert_eq!(v["ok"], json!(false));
        let error = v["error"].as_str().unwrap();
        assert!(
            error.starts_with(named),
            "{jobs}: {error} should name {named}"
        );
    }
    let too_many: Vec<Value> = (0..1001).map(|_| json!({"kind": "k"})).collect();
    let (s, v) = app.batch(Value::Array(too_many)).await;
    assert_eq!(s, 400, "{v}");
    assert!(v["error"].as_str().unwrap().contains("1000"), "{v}");

    // Two entries with one key: both indexes named.
    let (s, v) = app
        .batch(json!([
            {"kind": "k", "unique_key": "a"},
            {"kind": "k", "unique_key": "b"},
            {"kind": "k"},
            {"kind": "k", "unique_key": "b"},
        ]))
        .await;
    assert_eq!(s, 400, "{v}");
    let error = v["error"].as_str().unwrap();
    assert!(
        error.contains("jobs[3]") && error.contains("jobs[1]"),
        "{error}"
    );

    assert_eq!(
        app.total("queued").await,
        0,
        "a refused batch stores nothing"
    );
    // Refusals are audited too (the ones that reached the handler).
    let events = app.audit_of("job.create_batch").await;
    assert!(events.len() >= 5, "{events:?}");
    assert!(events.iter().all(|e| e["ok"] == json!(false)));
    // A viewer may not.
    let (s, _) = app
        .post("/api/jobs/batch", Some(VIEWER_KEY), json!({"jobs": [ok]}))
        .await;
    assert_eq!(s, 403);
    app.stop().await;
}

#[tokio::test]
async fn each_entry_honours_its_unique_key() {
    let app = TestApp::spawn().await;
    let held = app
        .enqueue_id(json!({"kind": "k", "unique_key": "held"}))
        .await;
    let (s, v) = app
        .batch(json!([
            {"kind": "k", "unique_key": "fresh"},
            {"kind": "k", "unique_key": "held"},
            {"kind": "k"},
        ]))
        .await;
    assert_eq!(s, 201, "{v}");
    let out = v["jobs"].as_array().unwrap();
    assert_eq!(out[0]["duplicate"], json!(false));
    assert_eq!(out[1]["duplicate"], json!(true));
    assert_eq!(out[1]["job"]["id"], json!(held));
    assert_eq!(out[2]["duplicate"], json!(false));
    assert_eq!(v["created"], json!(2));
    assert_eq!(app.total("queued").await, 3);
    let target = app.audit_of("job.create_batch").await[0]["target"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(target.contains("duplicates=1"), "{target}");

    // Every entry a duplicate: 200, nothing new.
    let (s, v) = app
        .batch(json!([{"kind": "k", "unique_key": "fresh"}, {"kind": "k", "unique_key": "held"}]))
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["created"], json!(0));
    assert_eq!(app.total("queued").await, 3);
    app.stop().await;
}

/// Batches answered `201`, then `kill -9`: after a restart every acknowledged job is there.
#[test]
fn kill_dash_nine_keeps_every_acknowledged_batch() {
    let dir = tempfile::tempdir().unwrap();
    let mut p = Process::start(dir.path(), &[]);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let client = reqwest::Client::new();
    let post = |base: String, n: usize| {
        let c = client.clone();
        async move {
            let jobs: Vec<Value> = (0..100)
                .map(|i| json!({"kind": "durable", "payload": {"n": n, "i": i}}))
                .collect();
            let r = c
                .post(format!("{base}/api/jobs/batch"))
                .header("X-Dash-Key", OPERATOR_KEY)
                .json(&json!({ "jobs": jobs }))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 201);
            let v: Value = r.json().await.unwrap();
            v["jobs"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["job"]["id"].as_str().unwrap().to_string())
                .collect::<Vec<_>>()
        }
    };
    let ids: Vec<String> = rt.block_on(async {
        let answers = futures_join(
            (0..4)
                .map(|n| tokio::spawn(post(p.base.clone(), n)))
                .collect(),
        )
        .await;
        answers.into_iter().flatten().collect()
    });
    p.signal("KILL");
    p.wait(Duration::from_secs(10));

    let p2 = Process::start(dir.path(), &[]);
    rt.block_on(async {
        let found = helpers::jobs::all_job_ids(&client, &p2.base, "durable").await;
        assert_eq!(ids.len(), 400);
        for id in &ids {
            assert!(found.contains(id), "job {id} was acknowledged but lost");
        }
        assert_eq!(found.len(), 400);
    });
}

async fn futures_join<T>(handles: Vec<tokio::task::JoinHandle<T>>) -> Vec<T> {
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.unwrap());
    }
    out
}
