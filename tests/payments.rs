//! Stripe intake, the ledger, fulfilment and reconciliation, signed by Stripe's own
//! Python library (see `helpers::stripe`).

mod helpers;

use std::process::Command;

use chrono::Utc;
use echopilot::clock::Clock;
use echopilot::jobs::NewJob;
use helpers::stripe::{SECRET, event, fixture, python, sign, sign_all};
use helpers::{OPERATOR_KEY, TestApp, VIEWER_KEY, WORKER_KEY};
use serde_json::{Value, json};

const PI: &str = "pi_3QaBcD2eZvKYlo2C1xYz0001";
const CS: &str = "cs_test_a1B2c3D4e5F6g7H8";
const CH: &str = "ch_3QaBcD2eZvKYlo2C1chg0001";

async fn app(clock: &Clock, extra: &[(&str, &str)]) -> TestApp {
    let mut env = vec![("STRIPE_WEBHOOK_SECRET", SECRET)];
    env.extend_from_slice(extra);
    TestApp::spawn_with_clock(clock.clone(), &env).await
}

fn now_clock() -> (Clock, i64) {
    let now = Utc::now();
    (Clock::manual(now), now.timestamp())
}

/// The payment JSON without what depends on arrival (time of the last change).
fn ledger_view(mut p: Value) -> Value {
    p.as_object_mut().unwrap().remove("updated_at");
    p.as_object_mut().unwrap().remove("events");
    // Each home picks its own job id; that there is one is checked elsewhere.
    p["fulfilment"].as_object_mut().unwrap().remove("job_id");
    p
}

#[tokio::test]
async fn library_signatures_are_accepted_and_every_mutation_refused() {
    let Some(py) = python() else { return };
    let (clock, now) = now_clock();
    let app = app(&clock, &[]).await;
    let body = fixture("payment_intent.succeeded").to_string();
    let bad_json = "{\"id\": \"evt_x\", ";
    let h = sign_all(
        &py,
        &[
            (&body, SECRET, now),
            (&body, "whsec_wrong", now),
            (&body, SECRET, now - 301),
            (&body, SECRET, now + 301),
            (bad_json, SECRET, now),
        ],
    );
    let flipped = {
        let (head, sig) = h[0].split_once("v1=").unwrap();
        let first = if sig.starts_with('0') { '1' } else { '0' };
        format!("{head}v1={first}{}", &sig[1..])
    };
    let other_t = h[0].replacen(&format!("t={now}"), &format!("t={}", now - 1), 1);
    let body_byte = body.replacen("4900", "4901", 1);
    let cases: Vec<(&str, &str, Option<&str>, &str)> = vec![
        (
            "timestamp changed",
            &body,
            Some(&other_t),
            "no matching signature",
        ),
        (
            "signature hex changed",
            &body,
            Some(&flipped),
            "no matching signature",
        ),
        ("other secret", &body, Some(&h[1]), "no matching signature"),
        (
            "body byte changed",
            &body_byte,
            Some(&h[0]),
            "no matching signature",
        ),
        ("too old", &body, Some(&h[2]), "timestamp outside tolerance"),
        (
            "in the future",
            &body,
            Some(&h[3]),
            "timestamp outside tolerance",
        ),
        ("no header", &body, None, "missing Stripe-Signature header"),
        (
            "garbage header",
            &body,
            Some("sha256=abc"),
            "malformed Stripe-Signature header",
        ),
        ("bad JSON", bad_json, Some(&h[4]), "bad JSON"),
    ];
    for (what, b, header, cause) in &cases {
        let (s, v) = app.webhook(b, *header).await;
        assert_eq!(s, 400, "{what}: {v}");
        assert_eq!(v["ok"], false, "{what}");
        assert!(v["error"].as_str().unwrap().contains(cause), "{what}: {v}");
    }
    // Nothing was stored by a refused delivery.
    let (_, evs) = app.get("/api/payments/events", Some(VIEWER_KEY)).await;
    assert_eq!(evs["count"], 0, "{evs}");

    let (s, v) = app.webhook(&body, Some(&h[0])).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["outcome"], "applied");
    assert_eq!(v["duplicate"], false);
    assert_eq!(app.payment(PI).await["status"], "succeeded");

    let log = app.file_lines("logs/stripe_webhooks.log").await;
    let failed: Vec<&String> = log.iter().filter(|l| l.contains("failed")).collect();
    assert_eq!(failed.len(), cases.len(), "{log:#?}");
    for (_, _, _, cause) in &cases {
        assert!(
            failed.iter().any(|l| l.contains(cause)),
            "{cause} not in {failed:#?}"
        );
    }
    assert!(
        log.iter()
            .any(|l| l.contains("evt_3QaBcD2eZvKYlo2C1piOk001")
                && l.contains("payment_intent.succeeded")
                && !l.contains("failed")),
        "{log:#?}"
    );
    let audit = app.file_lines("logs/ndjson/audit.ndjson").await;
    let hooks: Vec<Value> = audit
        .iter()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|e| e["action"] == "stripe.webhook")
        .collect();
    assert_eq!(
        hooks.iter().filter(|e| e["ok"] == false).count(),
        cases.len()
    );
    assert_eq!(hooks.iter().filter(|e| e["ok"] == true).count(), 1);
    assert!(
        audit
            .iter()
            .filter(|l| l.contains("stripe.webhook"))
            .all(|l| !l.contains(SECRET))
    );
    assert!(
        log.iter()
            .all(|l| !l.contains(SECRET) && !l.contains(&h[0][h[0].len() - 20..]))
    );

    let snap = app.state.slo.snapshot();
    assert_eq!(
        (snap.webhooks_ok, snap.webhooks_failed),
        (1, cases.len() as u64)
    );
    let metrics = app
        .client
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for line in [
        "echopilot_stripe_webhook_events_total{type=\"payment_intent.succeeded\",outcome=\"applied\"} 1",
        "echopilot_stripe_signature_failures_total{cause=\"no_matching_signature\"} 4",
        "echopilot_stripe_signature_failures_total{cause=\"timestamp_outside_tolerance\"} 2",
        "echopilot_stripe_signature_failures_total{cause=\"missing_header\"} 1",
        "echopilot_stripe_signature_failures_total{cause=\"malformed_header\"} 1",
        "echopilot_stripe_webhook_events_total{type=\"(unparsed)\",outcome=\"bad_json\"} 1",
    ] {
        assert!(metrics.contains(line), "{line} missing from\n{metrics}");
    }
    app.stop().await;
}

#[tokio::test]
async fn duplicates_answer_200_and_change_nothing() {
    let Some(py) = python() else { return };
    let (clock, now) = now_clock();
    let app = app(&clock, &[]).await;
    let body = fixture("charge.succeeded").to_string();
    let h = sign(&py, &body, SECRET, now);
    let (s, first) = app.webhook(&body, Some(&h)).await;
    assert_eq!(
        (s, first["duplicate"].clone()),
        (200, json!(false)),
        "{first}"
    );
    let before = app.payment(PI).await;
    clock.advance(chrono::Duration::seconds(5));
    let h2 = sign(&py, &body, SECRET, now + 5);
    let (s, second) = app.webhook(&body, Some(&h2)).await;
    assert_eq!(s, 200, "{second}");
    assert_eq!(second["ok"], true);
    assert_eq!(second["duplicate"], true);
    assert_eq!(
        app.payment(PI).await,
        before,
        "a duplicate changed the ledger"
    );
    let (_, evs) = app.get("/api/payments/events", Some(VIEWER_KEY)).await;
    let outcomes: Vec<&str> = evs["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes, ["duplicate", "applied"], "{evs}");
    let (_, dup) = app
        .get("/api/payments/events?outcome=duplicate", Some(VIEWER_KEY))
        .await;
    assert_eq!(dup["count"], 1);
    // A duplicate is no failure for the SLO.
    let snap = app.state.slo.snapshot();
    assert_eq!((snap.webhooks_ok, snap.webhooks_failed), (2, 0));
    app.stop().await;
}

#[tokio::test]
async fn order_does_not_change_the_ledger() {
    let Some(py) = python() else { return };
    let (clock, now) = now_clock();
    let session = fixture("checkout.session.completed").to_string();
    let intent = fixture("payment_intent.succeeded").to_string();
    let charge = fixture("charge.succeeded").to_string();
    let refund = fixture("charge.refunded").to_string();
    let dispute = fixture("charge.dispute.created").to_string();
    let forward = [
        session.clone(),
        intent.clone(),
        charge.clone(),
        refund.clone(),
        dispute.clone(),
    ];
    let backward = [dispute, refund, charge, intent, session];
    let mut views = Vec::new();
    for order in [&forward[..], &backward[..]] {
        let app = app(&clock, &[("RECONCILE_GRACE_SECS", "0")]).await;
        app.deliver(&py, order, now).await;
        let p = app.payment(PI).await;
        assert_eq!(p["status"], "partially_refunded", "{p}");
        assert_eq!(
            (
                p["amount"].clone(),
                p["amount_refunded"].clone(),
                p["net"].clone()
            ),
            (json!(4900), json!(1900), json!(3000))
        );
        assert_eq!(
            app.payment(CS).await["id"],
            PI,
            "the session finds its payment"
        );
        assert_eq!(
            app.payment(CH).await["id"],
            PI,
            "the charge finds its payment"
        );
        views.push((ledger_view(p), app.reconcile().await["totals"].clone()));
        app.stop().await;
    }
    assert_eq!(views[0], views[1]);
    assert_eq!(
        views[0].1["usd"],
        json!({"count": 1, "gross": 4900, "refunded": 1900, "net": 3000})
    );
}

#[tokio::test]
async fn rotation_accepts_old_and_new_secrets() {
    let Some(py) = python() else { return };
    let (clock, now) = now_clock();
    let app = TestApp::spawn_with_clock(
        clock.clone(),
        &[(
            "STRIPE_WEBHOOK_SECRET",
            "whsec_new_0000000000000000, whsec_old_1111111111111111",
        )],
    )
    .await;
    let a = event("payment_intent.succeeded", "evt_rot_new", now, &[]);
    let b = event("charge.succeeded", "evt_rot_old", now, &[]);
    let c = event("invoice.paid", "evt_rot_other", now, &[]);
    let h = sign_all(
        &py,
        &[
            (&a, "whsec_new_0000000000000000", now),
            (&b, "whsec_old_1111111111111111", now),
            (&c, "whsec_gone_2222222222222222", now),
        ],
    );
    assert_eq!(app.webhook(&a, Some(&h[0])).await.0, 200);
    assert_eq!(app.webhook(&b, Some(&h[1])).await.0, 200);
    let (s, v) = app.webhook(&c, Some(&h[2])).await;
    assert_eq!(s, 400, "{v}");
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("no matching signature")
    );
    app.stop().await;
}

async fn fulfil_jobs(app: &TestApp) -> Vec<Value> {
    let (s, v) = app
        .get("/api/jobs?kind=fulfil.order", Some(VIEWER_KEY))
        .await;
    assert_eq!(s, 200, "{v}");
    v["jobs"].as_array().unwrap().clone()
}

#[tokio::test]
async fn fulfilment_runs_once_per_payment_ever() {
    let Some(py) = python() else { return };
    let (clock, now) = now_clock();
    let app = app(&clock, &[]).await;
    let session = fixture("checkout.session.completed").to_string();
    let intent = fixture("payment_intent.succeeded").to_string();
    let charge = fixture("charge.succeeded").to_string();
    app.deliver(&py, &[session.clone(), intent, charge], now)
        .await;
    let jobs = fulfil_jobs(&app).await;
    assert_eq!(jobs.len(), 1, "{jobs:#?}");
    let job_id = jobs[0]["id"].as_str().unwrap().to_string();
    assert_eq!(jobs[0]["queue"], "fulfilment");
    let p = app.payment(PI).await;
    assert_eq!(p["fulfilment"]["job_id"], job_id.as_str());
    assert_eq!(p["fulfilment"]["state"], "enqueued");
    let full = app.job_full(&job_id).await;
    assert_eq!(
        full["payload"],
        json!({"order_id": "ord_1001", "sku": "AUTOMATION-PRO"}),
        "{full}"
    );

    // Redelivery days later, and a replay: still one job.
    clock.advance(chrono::Duration::days(3));
    let later = now + 3 * 86_400;
    app.deliver(&py, &[session], later).await;
    let (s, r) = app.replay("evt_1QaBcD2eZvKYlo2CsessDone").await;
    assert_eq!((s, r["outcome"].clone()), (200, json!("applied")), "{r}");
    assert_eq!(fulfil_jobs(&app).await.len(), 1);

    // The worker finishes it; the outcome lands on the payment.
    let (s, c) = app
        .claim(json!({"kinds": ["fulfil.order"], "queues": ["fulfilment"], "worker": "w1"}))
        .await;
    assert_eq!(s, 200, "{c}");
    let (s, v) = app
        .complete(
            &job_id,
            json!({"worker": "w1", "result": {"shipped": true}}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let p = app.payment(PI).await;
    assert_eq!(p["fulfilment"]["outcome"], "succeeded", "{p}");
    // Even when the job is gone (pruned), a new event enqueues nothing.
    let e = event("charge.succeeded", "evt_late_charge", later, &[]);
    app.deliver(&py, &[e], later).await;
    assert_eq!(fulfil_jobs(&app).await.len(), 1);
    let issues = app.reconcile().await["issues"].clone();
    assert!(
        !issues
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["kind"] == "unfulfilled"),
        "{issues}"
    );
    app.stop().await;
}

#[tokio::test]
async fn an_enqueue_under_a_known_id_is_a_duplicate_even_after_the_job_finished() {
    let app = TestApp::spawn().await;
    let id = uuid::Uuid::now_v7().to_string();
    let new = || NewJob {
        id: Some(id.clone()),
        kind: "fulfil.order".into(),
        ..NewJob::default()
    };
    assert!(!app.state.jobs.enqueue(new()).unwrap().0.duplicate);
    let _ = app.state.jobs.cancel(&id).unwrap();
    let (again, _) = app.state.jobs.enqueue(new()).unwrap();
    assert!(again.duplicate);
    assert_eq!(again.job.status.as_str(), "cancelled");
    let bad = NewJob {
        id: Some("not-a-uuid".into()),
        kind: "x".into(),
        ..NewJob::default()
    };
    assert!(app.state.jobs.enqueue(bad).is_err());
    app.stop().await;
}

#[tokio::test]
async fn reconcile_reports_every_issue_kind() {
    let Some(py) = python() else { return };
    let (clock, now) = now_clock();
    let app = app(&clock, &[]).await;
    let created = json!(now - 60);
    let bodies = vec![
        // missing_confirmation: a checkout completed, its intent never confirmed.
        event(
            "checkout.session.completed",
            "evt_mc",
            now,
            &[
                ("id", json!("cs_mc")),
                ("payment_intent", json!("pi_mc")),
                ("metadata", json!({})),
                ("created", created.clone()),
            ],
        ),
        // amount_mismatch: the session says 4900, the intent 5900.
        event(
            "checkout.session.completed",
            "evt_am_s",
            now,
            &[
                ("id", json!("cs_am")),
                ("payment_intent", json!("pi_am")),
                ("metadata", json!({})),
            ],
        ),
        event(
            "payment_intent.succeeded",
            "evt_am_i",
            now,
            &[("id", json!("pi_am")), ("amount", json!(5900))],
        ),
        // over_refund: 6000 refunded of 4900.
        event(
            "charge.refunded",
            "evt_or",
            now,
            &[
                ("id", json!("ch_or")),
                ("payment_intent", json!("pi_or")),
                ("amount_refunded", json!(6000)),
            ],
        ),
        event(
            "payment_intent.succeeded",
            "evt_or_i",
            now,
            &[("id", json!("pi_or"))],
        ),
        // failed_event: a refund without its amount cannot be applied.
        event(
            "charge.refunded",
            "evt_fail",
            now,
            &[("id", json!("ch_fail")), ("amount_refunded", Value::Null)],
        ),
        // stale_pending: an unpaid checkout from two days ago.
        event(
            "checkout.session.completed",
            "evt_sp",
            now,
            &[
                ("id", json!("cs_sp")),
                ("payment_intent", Value::Null),
                ("payment_status", json!("unpaid")),
                ("metadata", json!({})),
                ("created", json!(now - 2 * 86_400)),
            ],
        ),
        // disputed.
        event(
            "payment_intent.succeeded",
            "evt_dp_i",
            now,
            &[("id", json!("pi_dp"))],
        ),
        event(
            "charge.dispute.created",
            "evt_dp",
            now,
            &[
                ("id", json!("dp_1")),
                ("charge", json!("ch_dp")),
                ("payment_intent", json!("pi_dp")),
            ],
        ),
        // unfulfilled: paid with a job_kind whose job was cancelled.
        event(
            "payment_intent.succeeded",
            "evt_uf",
            now,
            &[
                ("id", json!("pi_uf")),
                ("metadata", json!({"job_kind": "fulfil.order"})),
            ],
        ),
        // unfulfilled too: a job_payload that is no JSON.
        event(
            "payment_intent.succeeded",
            "evt_uf2",
            now,
            &[
                ("id", json!("pi_uf2")),
                (
                    "metadata",
                    json!({"job_kind": "fulfil.order", "job_payload": "{nope"}),
                ),
            ],
        ),
        // Fine: ignored type, and a clean payment.
        fixture("customer.created").to_string(),
        event(
            "payment_intent.succeeded",
            "evt_ok",
            now,
            &[("id", json!("pi_ok"))],
        ),
    ];
    let answers = app.deliver(&py, &bodies, now).await;
    assert_eq!(answers[5]["outcome"], "failed", "{}", answers[5]);
    assert_eq!(answers[11]["outcome"], "ignored");
    let uf_job = app.payment("pi_uf").await["fulfilment"]["job_id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(app.cancel(&uf_job).await.0, 200);
    // The failed event can be replayed (it fails again: the payload is still wrong).
    let (s, r) = app.replay("evt_fail").await;
    assert_eq!((s, r["outcome"].clone()), (200, json!("failed")), "{r}");

    clock.advance(chrono::Duration::seconds(3601));
    let report = app.reconcile().await;
    let issues = report["issues"].as_array().unwrap();
    let of = |kind: &str| -> Vec<Value> {
        issues
            .iter()
            .filter(|i| i["kind"] == kind)
            .map(|i| i["payment"].clone())
            .collect()
    };
    // The unpaid checkout never got its confirmation either.
    assert_eq!(
        of("missing_confirmation"),
        [json!("cs_sp"), json!("pi_mc")],
        "{report:#}"
    );
    assert_eq!(of("amount_mismatch"), [json!("pi_am")]);
    assert_eq!(of("over_refund"), [json!("pi_or")]);
    assert_eq!(of("failed_event").len(), 1);
    assert!(
        issues
            .iter()
            .any(|i| i["kind"] == "failed_event"
                && i["detail"].as_str().unwrap().contains("evt_fail"))
    );
    assert_eq!(of("stale_pending"), [json!("cs_sp")]);
    assert_eq!(of("disputed"), [json!("pi_dp")]);
    let mut uf = of("unfulfilled");
    uf.sort_by_key(|v| v.to_string());
    assert_eq!(uf, [json!("pi_uf"), json!("pi_uf2")]);
    assert!(of("fulfilment_paused").is_empty());
    assert!(!issues.iter().any(|i| i["payment"] == "pi_ok"));
    assert_eq!(report["checked"], 8, "{report:#}");
    assert_eq!(report["totals"]["usd"]["refunded"], 6000);

    // The runbook's weekly command, as written (with the local URL).
    // Off the runtime's thread: the server answers on it.
    let url = app.url("/api/payments/reconcile");
    let out = tokio::task::spawn_blocking(move || {
        Command::new("curl")
            .args(["-s", "-m", "20", "-H", &format!("X-Dash-Key: {VIEWER_KEY}")])
            .arg(url)
            .output()
            .expect("curl")
    })
    .await
    .unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).expect("curl got JSON");
    assert_eq!(v["ok"], true);
    assert_eq!(v["checked"], 8);

    // POST records it; the next GET says when.
    let (s, rec) = app
        .post("/api/payments/reconcile", Some(OPERATOR_KEY), json!({}))
        .await;
    assert_eq!(s, 200, "{rec}");
    assert!(rec["recorded_at"].is_string());
    assert_eq!(
        app.reconcile().await["last_recorded"]["recorded_at"],
        rec["recorded_at"]
    );
    let (s, _) = app
        .post("/api/payments/reconcile", Some(VIEWER_KEY), json!({}))
        .await;
    assert_eq!(s, 403);
    app.stop().await;
}

#[tokio::test]
async fn the_runbooks_webhook_failure_greps_work() {
    let Some(py) = python() else { return };
    let (clock, now) = now_clock();
    let app = app(&clock, &[]).await;
    let ok = fixture("invoice.paid").to_string();
    app.deliver(&py, std::slice::from_ref(&ok), now).await;
    let wrong = sign(&py, &ok, "whsec_wrong", now);
    assert_eq!(app.webhook(&ok, Some(&wrong)).await.0, 400);
    app.state.flush_logs().await.unwrap();
    let sh = |cmd: &str| {
        let out = Command::new("sh")
            .args(["-c", cmd])
            .current_dir(&app.home)
            .output()
            .unwrap();
        assert!(out.status.success(), "{cmd}");
        String::from_utf8(out.stdout).unwrap()
    };
    let tail = sh("tail -50 logs/stripe_webhooks.log");
    assert!(
        tail.contains("evt_1QaBcD2eZvKYlo2Cinvpaid1 invoice.paid"),
        "{tail}"
    );
    let failed = sh("grep \"failed\" logs/stripe_webhooks.log | tail -10");
    assert_eq!(failed.lines().count(), 1, "{failed}");
    assert!(failed.contains("no matching signature"), "{failed}");
    let fails = sh("tail -100 logs/ndjson/audit.ndjson | grep '\"ok\":false'");
    assert!(
        fails.contains("stripe.webhook") && fails.contains("no matching signature"),
        "{fails}"
    );
    app.stop().await;
}

#[tokio::test]
async fn lists_filter_and_page() {
    let Some(py) = python() else { return };
    let (clock, now) = now_clock();
    let app = app(&clock, &[]).await;
    let mut bodies = Vec::new();
    for i in 0..5 {
        bodies.push(event(
            "payment_intent.succeeded",
            &format!("evt_l{i}"),
            now,
            &[
                ("id", json!(format!("pi_l{i}"))),
                (
                    "customer",
                    json!(if i % 2 == 0 { "cus_even" } else { "cus_odd" }),
                ),
            ],
        ));
    }
    bodies.push(fixture("payment_intent.payment_failed").to_string());
    app.deliver(&py, &bodies, now).await;
    let (s, page) = app.get("/api/payments?limit=2", Some(VIEWER_KEY)).await;
    assert_eq!(s, 200, "{page}");
    assert_eq!(page["count"], 2);
    assert_eq!(
        page["payments"][0]["id"], "pi_3QaBcD2eZvKYlo2C1xYz0009",
        "newest first"
    );
    let cursor = page["next_cursor"].as_str().unwrap();
    let (_, next) = app
        .get(
            &format!("/api/payments?limit=10&cursor={cursor}"),
            Some(VIEWER_KEY),
        )
        .await;
    assert_eq!(next["count"], 4);
    let (_, even) = app
        .get("/api/payments?customer=cus_even", Some(VIEWER_KEY))
        .await;
    assert_eq!(even["count"], 3);
    let (_, failed) = app
        .get("/api/payments?status=failed", Some(VIEWER_KEY))
        .await;
    assert_eq!(failed["count"], 1);
    assert_eq!(
        failed["payments"][0]["failure"],
        "Your card has insufficient funds."
    );
    let (s, _) = app
        .get("/api/payments?status=bogus", Some(VIEWER_KEY))
        .await;
    assert_eq!(s, 400);
    let (s, _) = app.get("/api/payments?color=red", Some(VIEWER_KEY)).await;
    assert_eq!(s, 400);
    let (s, _) = app.get("/api/payments", None).await;
    assert_eq!(s, 401);
    let (s, _) = app.get("/api/payments/pi_nope", Some(VIEWER_KEY)).await;
    assert_eq!(s, 404);
    let shown = app.payment("pi_l1").await;
    assert_eq!(shown["events"][0]["id"], "evt_l1");
    assert_eq!(shown["events"][0]["type"], "payment_intent.succeeded");
    let (s, _) = app.replay("evt_unknown").await;
    assert_eq!(s, 404);
    let (s, _) = app
        .post(
            "/api/payments/events/evt_l1/replay",
            Some(WORKER_KEY),
            json!({}),
        )
        .await;
    assert_eq!(s, 403);
    app.stop().await;
}

#[tokio::test]
async fn the_weekly_reconcile_is_a_builtin_schedule_that_runs_in_process() {
    let app = TestApp::spawn_with(&[("STRIPE_WEBHOOK_SECRET", SECRET)]).await;
    let schedules = app.schedules().await;
    let s = schedules["schedules"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "payments.reconcile")
        .unwrap_or_else(|| panic!("no reconcile schedule in {schedules}"))
        .clone();
    assert_eq!(s["cron"], "0 3 * * 1");
    assert_eq!(s["kind"], "payments.reconcile");
    let (st, run) = app.schedule("payments.reconcile", "run").await;
    assert_eq!(st, 200, "{run}");
    let job = run["job"]["id"].as_str().unwrap().to_string();
    let done = app.wait_status(&job, "succeeded").await;
    assert_eq!(done["result"]["checked"], 0, "{done}");
    assert!(app.reconcile().await["last_recorded"]["recorded_at"].is_string());
    app.stop().await;
}

#[tokio::test]
async fn every_handled_type_lands_in_the_ledger() {
    let Some(py) = python() else { return };
    let (clock, now) = now_clock();
    let app = app(&clock, &[]).await;
    let kinds = [
        "checkout.session.expired",
        "payment_intent.canceled",
        "payment_intent.payment_failed",
        "invoice.paid",
        "invoice.payment_failed",
    ];
    let bodies: Vec<String> = kinds.iter().map(|k| fixture(k).to_string()).collect();
    let answers = app.deliver(&py, &bodies, now).await;
    for (k, a) in kinds.iter().zip(&answers) {
        assert_eq!(a["outcome"], "applied", "{k}: {a}");
    }
    let status = |v: &Value| v["status"].as_str().unwrap().to_string();
    assert_eq!(
        status(&app.payment("cs_test_x9Y8w7V6u5T4s3R2").await),
        "expired"
    );
    assert_eq!(
        status(&app.payment("pi_3QaBcD2eZvKYlo2C1xYz0008").await),
        "canceled"
    );
    assert_eq!(
        status(&app.payment("pi_3QaBcD2eZvKYlo2C1xYz0009").await),
        "failed"
    );
    let paid = app.payment("in_1QaBcD2eZvKYlo2Cinv00001").await;
    assert_eq!(
        (status(&paid), paid["amount"].clone()),
        ("succeeded".into(), json!(2900))
    );
    assert_eq!(
        status(&app.payment("in_1QaBcD2eZvKYlo2Cinv00002").await),
        "failed"
    );
    app.stop().await;
}

/// The webhook has its own rate-limit class (`WEBHOOK_RATE_LIMIT_PER_MIN`), apart from
/// the general one: Stripe's bursts neither use up nor are cut by the API's limit.
#[tokio::test]
async fn the_webhook_is_limited_by_its_own_class() {
    let app = TestApp::spawn_with(&[
        ("STRIPE_WEBHOOK_SECRET", SECRET),
        ("RATE_LIMIT_PER_MIN", "2"),
        ("WEBHOOK_RATE_LIMIT_PER_MIN", "0"),
    ])
    .await;
    for _ in 0..5 {
        let (s, v) = app.webhook("{}", None).await;
        assert_eq!(s, 400, "{v}");
    }
    app.stop().await;
    let app = TestApp::spawn_with(&[
        ("STRIPE_WEBHOOK_SECRET", SECRET),
        ("RATE_LIMIT_PER_MIN", "0"),
        ("WEBHOOK_RATE_LIMIT_PER_MIN", "3"),
    ])
    .await;
    let mut statuses = Vec::new();
    for _ in 0..4 {
        statuses.push(app.webhook("{}", None).await.0);
    }
    assert_eq!(statuses, [400, 400, 400, 429]);
    let (s, _) = app.get("/api/payments", Some(VIEWER_KEY)).await;
    assert_eq!(s, 200, "the general class is not the webhook's");
    app.stop().await;
}

/// `payments.fulfilment` off: a paid order is stored and applied but enqueues nothing
/// (reconciliation says it is paused); back on, the waiting one is fulfilled once, with
/// no restart.
#[tokio::test]
async fn the_fulfilment_flag_holds_jobs_and_releases_them() {
    let Some(py) = python() else { return };
    let (clock, now) = now_clock();
    let app = app(&clock, &[]).await;
    let set = |enabled: bool| {
        app.send(
            reqwest::Method::PUT,
            "/api/flags/payments.fulfilment",
            Some(OPERATOR_KEY),
            Some(json!({"enabled": enabled, "note": "test"})),
        )
    };
    let (s, v) = set(false).await;
    assert_eq!(s, 200, "{v}");
    let session = fixture("checkout.session.completed").to_string();
    let intent = fixture("payment_intent.succeeded").to_string();
    app.deliver(&py, &[session, intent], now).await;
    assert!(fulfil_jobs(&app).await.is_empty());
    let issues = app.reconcile().await["issues"].clone();
    assert!(
        issues
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["kind"] == "fulfilment_paused"),
        "{issues}"
    );

    let (s, v) = set(true).await;
    assert_eq!(s, 200, "{v}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while fulfil_jobs(&app).await.is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "the held fulfilment was not released"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(fulfil_jobs(&app).await.len(), 1);
    app.stop().await;
}
