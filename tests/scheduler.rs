//! The scheduler: status, pause/resume/restart, cron schedules (firing, catch-up once,
//! config), run_at wake-up, the built-in executors, and `logs/scheduler.log`.

mod helpers;

use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::get;
use chrono::DateTime;
use echopilot::clock::Clock;
use echopilot::jobs::{Filter, Status};
use echopilot::scheduler;
use helpers::{TestApp, VIEWER_KEY};
use serde_json::{Value, json};

fn t(s: &str) -> chrono::DateTime<chrono::Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().to_utc()
}

fn write_toml(dir: &std::path::Path, text: &str) {
    std::fs::write(dir.join("echopilot.toml"), text).unwrap();
}

/// Jobs a schedule enqueued so far.
fn jobs_of(app: &TestApp, kind: &str) -> Vec<Value> {
    let (jobs, _) = app
        .state
        .jobs
        .list(
            &Filter {
                kind: Some(kind.into()),
                ..Filter::default()
            },
            None,
            1000,
        )
        .unwrap();
    jobs.iter().map(|j| j.full_json()).collect()
}

async fn wait_until<F: Fn() -> bool>(what: &str, f: F) {
    let start = Instant::now();
    while !f() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "timed out: {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn status_pause_resume_restart() {
    let app = TestApp::spawn_with(&[("SCHEDULER_TICK_SECS", "30")]).await;
    let st = app.scheduler_status().await;
    assert_eq!(st["ok"], true);
    assert_eq!(st["state"], "running", "{st}");
    assert_eq!(st["tick_interval_secs"], 30);
    for k in [
        "last_tick",
        "next_tick",
        "ticks",
        "queued",
        "running",
        "scheduled",
        "stuck",
        "dead",
    ] {
        assert!(st.get(k).is_some(), "{k} missing in {st}");
    }
    // The first tick runs at start.
    let start = Instant::now();
    while app.scheduler_status().await["ticks"] == 0 {
        assert!(start.elapsed() < Duration::from_secs(30));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let st = app.scheduler_status().await;
    assert!(
        st["last_tick"].is_string() && st["next_tick"].is_string(),
        "{st}"
    );

    // Viewers may not pause; operators may.
    let (s, _) = app
        .post("/api/scheduler/pause", Some(VIEWER_KEY), json!({}))
        .await;
    assert_eq!(s, 403);
    let (s, v) = app.scheduler("pause").await;
    assert_eq!((s, v["state"].as_str()), (200, Some("paused")), "{v}");
    let summary = app.summary().await;
    assert_eq!(summary["components"]["scheduler"]["status"], "degraded");
    assert_eq!(summary["status"], "degraded");

    // Paused: enqueues are accepted, nothing is handed out.
    let id = app.enqueue_id(json!({"kind": "report"})).await;
    let (s, v) = app.claim(json!({"worker": "w"})).await;
    assert_eq!((s, &v["job"]), (200, &Value::Null), "{v}");

    let (s, v) = app.scheduler("resume").await;
    assert_eq!((s, v["state"].as_str()), (200, Some("running")));
    let (_, v) = app.claim(json!({"worker": "w"})).await;
    assert_eq!(v["job"]["id"], id.as_str());

    // Restart: unpauses and ticks now.
    app.scheduler("pause").await;
    let before = app.scheduler_status().await["ticks"].as_u64().unwrap();
    let (s, v) = app.scheduler("restart").await;
    assert_eq!(s, 200);
    assert_eq!(v["restarted"], true);
    assert_eq!(v["state"], "running");
    let start = Instant::now();
    while app.scheduler_status().await["ticks"].as_u64().unwrap() <= before {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "restart did not tick"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let summary = app.summary().await;
    assert_eq!(
        summary["components"]["scheduler"]["status"], "healthy",
        "{summary}"
    );
    let audit = app.audit_text().await;
    assert!(audit.contains("scheduler.pause") && audit.contains("scheduler.restart"));
    // The log has tick lines.
    let log = std::fs::read_to_string(app.home.join("logs/scheduler.log")).unwrap();
    assert!(log.contains("INFO tick 1 "), "{log}");
    app.stop().await;
}

#[tokio::test]
async fn cron_fires_when_due_and_catches_up_once() {
    let clock = Clock::manual(t("2026-01-05T10:00:30Z"));
    let app = TestApp::spawn_with_clock(clock.clone(), &[]).await;
    let (s, v) = app
        .create_schedule(json!({
            "name": "digest", "cron": "*/5 * * * *", "kind": "digest",
            "queue": "mail", "payload": {"list": "all"}
        }))
        .await;
    assert_eq!(s, 201, "{v}");
    let sch = &v["schedule"];
    assert_eq!(
        sch["next_runs"],
        json!([
            "2026-01-05T10:05:00.000Z",
            "2026-01-05T10:10:00.000Z",
            "2026-01-05T10:15:00.000Z"
        ])
    );
    assert_eq!(sch["source"], "api");

    // Not yet due.
    clock.advance(chrono::Duration::minutes(4));
    scheduler::tick(&app.state.scheduler).await;
    assert_eq!(jobs_of(&app, "digest").len(), 0);
    // Due: one job, with the schedule's queue and payload.
    clock.advance(chrono::Duration::seconds(31));
    scheduler::tick(&app.state.scheduler).await;
    let jobs = jobs_of(&app, "digest");
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0]["queue"], "mail");
    assert_eq!(jobs[0]["payload"], json!({"list": "all"}));
    assert_eq!(jobs[0]["schedule"], "digest");
    // Ticking again at the same time fires nothing more.
    scheduler::tick(&app.state.scheduler).await;
    assert_eq!(jobs_of(&app, "digest").len(), 1);

    // Three hours pass (36 runs missed): it fires once, not 36 times.
    clock.advance(chrono::Duration::hours(3));
    scheduler::tick(&app.state.scheduler).await;
    scheduler::tick(&app.state.scheduler).await;
    assert_eq!(jobs_of(&app, "digest").len(), 2);
    let list = app.schedules().await;
    let d = &list["schedules"][0];
    assert_eq!(d["runs"], 2);
    assert_eq!(d["last_run_at"], "2026-01-05T13:05:01.000Z");
    assert_eq!(d["next_runs"][0], "2026-01-05T13:10:00.000Z");

    // Pause: does not fire; resume: fires the missed run once.
    app.schedule("digest", "pause").await;
    clock.advance(chrono::Duration::minutes(10));
    scheduler::tick(&app.state.scheduler).await;
    assert_eq!(jobs_of(&app, "digest").len(), 2);
    let (s, v) = app.schedule("digest", "resume").await;
    assert_eq!(s, 200, "{v}");
    scheduler::tick(&app.state.scheduler).await;
    assert_eq!(jobs_of(&app, "digest").len(), 3);
    // Run now.
    let (s, v) = app.schedule("digest", "run").await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["job"]["schedule"], "digest");
    assert_eq!(jobs_of(&app, "digest").len(), 4);
    // A paused scheduler fires nothing.
    app.scheduler("pause").await;
    clock.advance(chrono::Duration::minutes(10));
    scheduler::tick(&app.state.scheduler).await;
    assert_eq!(jobs_of(&app, "digest").len(), 4);
    app.scheduler("resume").await;

    // Delete.
    let (s, _) = app.delete_schedule("digest").await;
    assert_eq!(s, 200);
    let (s, _) = app.delete_schedule("digest").await;
    assert_eq!(s, 404);
    let (s, _) = app.schedule("digest", "run").await;
    assert_eq!(s, 404);
    let log = std::fs::read_to_string(app.home.join("logs/scheduler.log")).unwrap();
    assert!(log.contains("schedule digest fired"), "{log}");
    app.stop().await;
}

#[tokio::test]
async fn schedules_refuse_bad_input_naming_it() {
    let app = TestApp::spawn().await;
    let base = json!({"name": "n1", "cron": "0 3 * * *", "kind": "k"});
    let (s, v) = app.create_schedule(base.clone()).await;
    assert_eq!(s, 201, "{v}");
    let (s, v) = app.create_schedule(base.clone()).await;
    assert_eq!(s, 409, "{v}");
    for (body, needle) in [
        (
            json!({"name": "n2", "cron": "61 * * * *", "kind": "k"}),
            "61 * * * *",
        ),
        (json!({"name": "n2", "cron": "* * *", "kind": "k"}), "* * *"),
        (
            json!({"name": "n2", "cron": "0 3 * * 9", "kind": "k"}),
            "0 3 * * 9",
        ),
        (
            json!({"name": "n2", "cron": "0 3 * * *", "kind": "k", "timezone": "Mars/Olympus"}),
            "Mars/Olympus",
        ),
        (
            json!({"name": "bad name", "cron": "0 3 * * *", "kind": "k"}),
            "name",
        ),
        (json!({"cron": "0 3 * * *", "kind": "k"}), "name"),
        (json!({"name": "n2", "kind": "k"}), "cron"),
        (
            json!({"name": "n2", "cron": "0 3 * * *", "kind": "k", "every": 5}),
            "every",
        ),
    ] {
        let (s, v) = app.create_schedule(body.clone()).await;
        assert_eq!(s, 400, "{body}: {v}");
        assert!(v["error"].as_str().unwrap().contains(needle), "{body}: {v}");
    }
    // Six fields with seconds, and a fixed offset, are fine.
    let (s, v) = app
        .create_schedule(
            json!({"name": "fast", "cron": "*/30 * * * * *", "kind": "k", "timezone": "+02:00"}),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    // Two made here, and the built-in `payments.reconcile`.
    assert_eq!(app.schedules().await["count"], 3);
    app.stop().await;
}

#[tokio::test]
async fn config_schedules_load_at_start_and_a_bad_one_stops_it() {
    let dir = tempfile::tempdir().unwrap();
    write_toml(
        dir.path(),
        r#"
[[schedules]]
name = "nightly"
cron = "0 3 * * 1-5"
kind = "command"
payload = { command = "reindex" }
"#,
    );
    let app = TestApp::spawn_in(dir.path(), &[]).await;
    let list = app.schedules().await;
    assert_eq!(list["schedules"][0]["name"], "nightly");
    assert_eq!(list["schedules"][0]["source"], "config");
    assert_eq!(
        list["schedules"][0]["payload"],
        json!({"command": "reindex"})
    );
    assert_eq!(
        list["schedules"][0]["next_runs"].as_array().unwrap().len(),
        3
    );
    app.stop().await;

    write_toml(
        dir.path(),
        r#"
[[schedules]]
name = "broken"
cron = "0 25 * * *"
kind = "x"
"#,
    );
    // The stopped app's last handles may still be dropping (its home lock with them).
    let started = std::time::Instant::now();
    let err = loop {
        let cfg = helpers::config(dir.path(), &helpers::base_env());
        match echopilot::app::AppState::open(cfg) {
            Ok(_) => panic!("a bad schedule must stop start-up"),
            Err(e) => {
                let e = format!("{e:#}");
                if e.contains("already running") && started.elapsed().as_secs() < 10 {
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
                break e;
            }
        }
    };
    assert!(
        err.contains("broken") && err.contains("0 25 * * *"),
        "{err}"
    );
}

#[tokio::test]
async fn a_schedule_missed_while_down_fires_once_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Clock::manual(t("2026-01-05T10:00:30Z"));
    let app = TestApp::spawn_in_with_clock(dir.path(), clock.clone(), &[]).await;
    let (s, _) = app
        .create_schedule(json!({"name": "minutely", "cron": "* * * * *", "kind": "tickle"}))
        .await;
    assert_eq!(s, 201);
    app.stop().await;
    // Down for an hour.
    clock.advance(chrono::Duration::hours(1));
    let app = TestApp::spawn_in_with_clock(dir.path(), clock.clone(), &[]).await;
    wait_until("the missed schedule fires", || {
        jobs_of(&app, "tickle").len() == 1
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(jobs_of(&app, "tickle").len(), 1, "fired once, not 60 times");
    app.stop().await;
}

/// A local HTTP server for the http executor.
async fn target_server() -> String {
    let app = Router::new()
        .route(
            "/ok",
            get(|| async { "hello from the target" })
                .post(|body: String| async move { format!("got {body}") }),
        )
        .route(
            "/bad",
            get(|| async { (axum::http::StatusCode::INTERNAL_SERVER_ERROR, "broken") }),
        )
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(10)).await;
                "late"
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

#[tokio::test]
async fn http_executor_against_a_local_server() {
    let target = target_server().await;
    let app = TestApp::spawn_with(&[("SCHEDULER_TICK_SECS", "3600")]).await;
    let ok = app
        .enqueue_id(json!({"kind": "http", "payload": {"url": format!("{target}/ok")}}))
        .await;
    let post = app
        .enqueue_id(json!({"kind": "http", "payload": {"url": format!("{target}/ok"), "method": "post", "body": "ping"}}))
        .await;
    let bad = app
        .enqueue_id(
            json!({"kind": "http", "max_attempts": 1, "payload": {"url": format!("{target}/bad")}}),
        )
        .await;
    let slow = app
        .enqueue_id(json!({"kind": "http", "max_attempts": 1, "timeout_secs": 1, "payload": {"url": format!("{target}/slow")}}))
        .await;
    let j = app.wait_status(&ok, "succeeded").await;
    assert_eq!(
        j["result"],
        json!({"status": 200, "body": "hello from the target"})
    );
    assert!(j["worker"].as_str().unwrap().starts_with("builtin:"));
    let j = app.wait_status(&post, "succeeded").await;
    assert_eq!(j["result"]["body"], "got ping");
    let j = app.wait_status(&bad, "dead").await;
    assert!(j["last_error"].as_str().unwrap().contains("500"), "{j}");
    let j = app.wait_status(&slow, "dead").await;
    assert!(j["last_error"].as_str().unwrap().contains("http"), "{j}");
    // Failures are ERROR lines in the scheduler log.
    let path = app.home.join("logs/scheduler.log");
    wait_until("outcome lines", || {
        std::fs::read_to_string(&path).is_ok_and(|l| l.contains(&format!("ERROR job {bad}")))
    })
    .await;
    let log = std::fs::read_to_string(&path).unwrap();
    assert!(
        log.contains(&format!("INFO job {ok} (default/http) succeeded")),
        "{log}"
    );
    app.stop().await;
}

#[tokio::test]
async fn command_executor_runs_only_declared_commands() {
    let dir = tempfile::tempdir().unwrap();
    write_toml(
        dir.path(),
        r#"
[commands.greet]
program = "echo"
args = ["hello"]

[commands.nap]
program = "sleep"
args = ["30"]
timeout_secs = 1

[commands.falls]
program = "sh"
args = ["-c", "echo oops >&2; exit 3"]
"#,
    );
    let app = TestApp::spawn_in(dir.path(), &[("SCHEDULER_TICK_SECS", "3600")]).await;
    let greet = app
        .enqueue_id(json!({"kind": "command", "payload": {"command": "greet", "args": ["world"]}}))
        .await;
    let rogue = app
        .enqueue_id(json!({"kind": "command", "max_attempts": 1, "payload": {"command": "rm", "args": ["-rf", "/"]}}))
        .await;
    let nap = app
        .enqueue_id(json!({"kind": "command", "max_attempts": 1, "payload": {"command": "nap"}}))
        .await;
    let falls = app
        .enqueue_id(json!({"kind": "command", "max_attempts": 1, "payload": {"command": "falls"}}))
        .await;
    let j = app.wait_status(&greet, "succeeded").await;
    assert_eq!(j["result"]["stdout"], "hello world\n");
    assert_eq!(j["result"]["exit_code"], 0);
    let j = app.wait_status(&rogue, "dead").await;
    let e = j["last_error"].as_str().unwrap();
    assert!(e.contains("\"rm\"") && e.contains("not declared"), "{e}");
    let j = app.wait_status(&nap, "dead").await;
    assert!(
        j["last_error"].as_str().unwrap().contains("timed out"),
        "{j}"
    );
    let j = app.wait_status(&falls, "dead").await;
    let e = j["last_error"].as_str().unwrap();
    assert!(e.contains("status 3") && e.contains("oops"), "{e}");
    app.stop().await;
}

#[tokio::test]
async fn a_job_whose_run_at_arrives_starts_without_waiting_for_a_tick() {
    let dir = tempfile::tempdir().unwrap();
    write_toml(dir.path(), "[commands.ok]\nprogram = \"true\"\n");
    // A tick an hour away: only the due loop can start it.
    let app = TestApp::spawn_in(dir.path(), &[("SCHEDULER_TICK_SECS", "3600")]).await;
    let run_at = chrono::Utc::now() + chrono::Duration::seconds(2);
    let (s, v) = app
        .enqueue(json!({"kind": "command", "run_at": echopilot::clock::rfc3339(run_at), "payload": {"command": "ok"}}))
        .await;
    assert_eq!(s, 201);
    assert_eq!(v["job"]["status"], "scheduled");
    let id = v["job"]["id"].as_str().unwrap().to_string();
    let j = app.wait_status(&id, "succeeded").await;
    let started = DateTime::parse_from_rfc3339(j["started_at"].as_str().unwrap()).unwrap();
    // It did not start early.
    assert!(started >= run_at - chrono::Duration::milliseconds(5), "{j}");
    assert_eq!(app.scheduler_status().await["ticks"], 1);
    app.stop().await;
}

#[test]
fn builtin_jobs_running_at_a_crash_are_stuck_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    // The command leaves a mark as it starts: the executor starts it only once its
    // claim is durable, so the mark (not the API's "running", which a claim shows before
    // its sync) proves a crash now must find the job claimed.
    let mark = dir.path().join("started");
    write_toml(
        dir.path(),
        &format!(
            "[commands.long]\nprogram = \"sh\"\nargs = [\"-c\", \"touch '{}'; exec sleep 10\"]\n",
            mark.display()
        ),
    );
    let mut p = helpers::Process::start(dir.path(), &[]);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let client = reqwest::Client::new();
    let id = rt.block_on(async {
        let v: Value = client
            .post(format!("{}/api/jobs", p.base))
            .header("X-Dash-Key", helpers::OPERATOR_KEY)
            .json(&json!({"kind": "command", "payload": {"command": "long"}}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let id = v["job"]["id"].as_str().unwrap().to_string();
        for _ in 0..300 {
            if mark.exists() {
                return id;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("never ran");
    });
    p.signal("KILL");
    p.wait(Duration::from_secs(10));
    // Open the store directly: the job is stuck, not running, and not re-run. The dead
    // server's lock goes with its process; wait for that rather than race it.
    let cfg = helpers::config(dir.path(), &helpers::base_env());
    let mut tries = 0;
    let state = loop {
        match echopilot::app::AppState::open(cfg.clone()) {
            Ok(s) => break s,
            Err(e) if e.to_string().contains("already running") && tries < 100 => {
                tries += 1;
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => panic!("reopen: {e:#}"),
        }
    };
    let j = state.jobs.get(&id).unwrap();
    assert_eq!(j.status, Status::Stuck);
    assert_eq!(j.history[0].outcome, "stuck");
    assert_eq!(state.jobs.count(Status::Stuck), 1);
    let stuck = state.jobs.stuck(state.clock.now()).unwrap();
    assert_eq!(stuck.len(), 1);
}
