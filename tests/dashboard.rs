//! The dashboards over HTTP: login and its cookie, CSRF, security headers, every page's
//! status, escaping, what a viewer sees and may do, the static assets.

mod helpers;

use helpers::dashboard::Browser;
use helpers::{ADMIN_KEY, OPERATOR_KEY, TestApp, VIEWER_KEY, WORKER_KEY};
use serde_json::json;

const PAGES: &[&str] = &[
    "/dashboard",
    "/dashboard/v2",
    "/dashboard/jobs",
    "/dashboard/jobs?status=stuck",
    "/dashboard/jobs?status=dead",
    "/dashboard/jobs?status=failed",
    "/dashboard/schedules",
    "/dashboard/audit",
    "/dashboard/audit?ok=false",
    "/dashboard/alerts",
    "/dashboard/alerts?state=firing",
    "/dashboard/payments",
    "/dashboard/payments?status=refunded",
    "/dashboard/flags",
    "/dashboard/incidents",
    "/dashboard/incidents?state=open",
    "/dashboard/backups",
    "/dashboard/v1",
];

/// Whether the trail holds an event of `action` with outcome `ok`.
fn audited(lines: &[serde_json::Value], action: &str, ok: bool) -> bool {
    lines.iter().any(|l| l["action"] == action && l["ok"] == ok)
}

/// A dead job (one attempt, failed) and its id.
async fn dead_job(app: &TestApp) -> String {
    let id = app
        .enqueue_id(json!({"kind": "stripe.refund_sync", "max_attempts": 1}))
        .await;
    let (s, v) = app
        .claim(json!({"kinds": ["stripe.refund_sync"], "worker": "w1"}))
        .await;
    assert_eq!(s, 200, "{v}");
    let (s, v) = app
        .fail(&id, json!({"worker": "w1", "error": "no such charge"}))
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(app.job_full(&id).await["status"], "dead");
    id
}

#[tokio::test]
async fn login_sets_a_signed_http_only_strict_cookie_without_the_key() {
    let app = TestApp::spawn().await;
    let mut b = Browser::new(&app);
    let r = b.login(OPERATOR_KEY).await;
    assert_eq!(r.status, 303, "{}", r.body);
    assert_eq!(r.location(), "/dashboard");
    let cookie = r
        .set_cookies()
        .into_iter()
        .find(|c| c.starts_with("ep_session="))
        .expect("a session cookie");
    for flag in ["HttpOnly", "SameSite=Strict", "Path=/", "Max-Age=43200"] {
        assert!(cookie.contains(flag), "{flag} missing in {cookie}");
    }
    assert!(
        !cookie.contains("Secure"),
        "no Secure without COOKIE_SECURE"
    );
    assert!(
        !cookie.contains(OPERATOR_KEY),
        "the cookie never carries the key"
    );
    assert!(cookie.contains(".operator."), "it names the role: {cookie}");
    // The session opens the pages; logging out ends it.
    let home = b.get("/dashboard").await;
    assert_eq!(home.status, 200, "{}", home.body);
    let csrf = home.csrf();
    let out = b.post("/logout", &[("csrf", &csrf)]).await;
    assert_eq!(out.status, 303);
    assert_eq!(b.get("/dashboard").await.status, 303);
    // The login and logout are audited.
    let lines = app.audit_lines().await;
    assert!(audited(&lines, "dashboard.login", true));
    assert!(lines.iter().any(|l| l["action"] == "dashboard.logout"));

    let secure = TestApp::spawn_with(&[("COOKIE_SECURE", "true")]).await;
    let r = Browser::new(&secure).login(VIEWER_KEY).await;
    assert!(
        r.set_cookies()
            .iter()
            .any(|c| c.starts_with("ep_session=") && c.contains("; Secure")),
        "{:?}",
        r.set_cookies()
    );
}

#[tokio::test]
async fn the_signing_key_is_kept_0600_and_a_session_ends_when_its_key_leaves() {
    let tmp = tempfile::tempdir().unwrap();
    let app = TestApp::spawn_in(tmp.path(), &[]).await;
    let mut b = Browser::signed_in(&app, OPERATOR_KEY).await;
    let cookies = b.cookies.clone();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(tmp.path().join("data/session.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    assert_eq!(b.get("/dashboard/jobs").await.status, 200);
    app.stop().await;

    // Same home, same signing key: the session survives a restart...
    let again = TestApp::spawn_in(tmp.path(), &[]).await;
    let mut b = Browser::new(&again);
    b.cookies = cookies.clone();
    assert_eq!(b.get("/dashboard/jobs").await.status, 200);
    again.stop().await;

    // ...but not the removal of its key from the configuration.
    let roles = json!({VIEWER_KEY: "viewer"}).to_string();
    let without = TestApp::spawn_in(tmp.path(), &[("ROLES_JSON", &roles)]).await;
    let mut b = Browser::new(&without);
    b.cookies = cookies;
    let r = b.get("/dashboard/jobs").await;
    assert_eq!(r.status, 303);
    assert!(
        r.location().starts_with("/login?next=/dashboard/jobs"),
        "{}",
        r.location()
    );
    without.stop().await;
}

#[tokio::test]
async fn failed_logins_are_audited_and_rate_limited() {
    let app = TestApp::spawn_with(&[("AUTH_FAIL_LIMIT_PER_MIN", "3")]).await;
    let mut b = Browser::new(&app);
    let mut statuses = Vec::new();
    let mut form = b.get("/login").await;
    for _ in 0..5 {
        let r = b
            .post(
                "/login",
                &[
                    ("key", "not-a-key-at-all-0123456789"),
                    ("csrf", &form.csrf()),
                ],
            )
            .await;
        assert!(
            r.set_cookies()
                .iter()
                .all(|c| !c.starts_with("ep_session="))
        );
        statuses.push(r.status);
        if r.status != 401 {
            break;
        }
        // The answer is the form again, with a fresh token.
        form = r;
    }
    assert_eq!(&statuses[..3], &[401, 401, 401], "{statuses:?}");
    assert_eq!(statuses.last(), Some(&429), "{statuses:?}");
    // Past the limit only further failed attempts are refused: the form is still
    // served, and a valid key from the same address still signs in.
    let mut good = Browser::new(&app);
    let form = good.get("/login").await;
    assert_eq!(form.status, 200);
    let r = good
        .post("/login", &[("key", ADMIN_KEY), ("csrf", &form.csrf())])
        .await;
    assert!(
        r.set_cookies().iter().any(|c| c.starts_with("ep_session=")),
        "status {}",
        r.status
    );
    let lines = app.audit_lines().await;
    let failed = lines
        .iter()
        .filter(|l| l["action"] == "auth.failed" && l["target"] == "POST /login")
        .count();
    assert!(failed >= 3, "{lines:?}");
    assert!(lines.iter().any(|l| l["action"] == "rate_limit_exceeded"));
    assert!(
        !app.audit_text().await.contains("not-a-key-at-all"),
        "a wrong key is never logged"
    );
    // A worker key may not sign in.
    let app = TestApp::spawn().await;
    assert_eq!(Browser::new(&app).login(WORKER_KEY).await.status, 403);
}

#[tokio::test]
async fn csrf_is_checked_on_every_form() {
    let app = TestApp::spawn().await;
    // Login without the form's token: refused, no session.
    let mut b = Browser::new(&app);
    let r = b
        .post("/login", &[("key", OPERATOR_KEY), ("csrf", "forged")])
        .await;
    assert_eq!(r.status, 403);
    assert!(
        r.set_cookies()
            .iter()
            .all(|c| !c.starts_with("ep_session="))
    );

    let id = dead_job(&app).await;
    let mut op = Browser::signed_in(&app, OPERATOR_KEY).await;
    let path = format!("/dashboard/jobs/{id}/retry");
    for bad in [vec![], vec![("csrf", "forged")]] {
        let r = op.post(&path, &bad).await;
        assert!(
            r.status == 403 || r.status == 400,
            "{} {}",
            r.status,
            r.body
        );
        assert_eq!(app.job_full(&id).await["status"], "dead", "nothing changed");
    }
    // Another session's token does not fit this one.
    let other = Browser::signed_in(&app, ADMIN_KEY)
        .await
        .get("/dashboard")
        .await
        .csrf();
    assert_eq!(op.post(&path, &[("csrf", &other)]).await.status, 403);
    assert_eq!(app.job_full(&id).await["status"], "dead");
}

#[tokio::test]
async fn every_page_renders_with_strict_headers_and_needs_a_session() {
    let app = TestApp::spawn().await;
    let id = dead_job(&app).await;
    let mut b = Browser::signed_in(&app, OPERATOR_KEY).await;
    let job_page = format!("/dashboard/jobs/{id}");
    let mut pages: Vec<&str> = PAGES.to_vec();
    pages.push(&job_page);
    for p in &pages {
        let r = b.get(p).await;
        assert_eq!(r.status, 200, "{p}: {}", r.body);
        assert!(r.header("content-type").starts_with("text/html"), "{p}");
        let csp = r.header("content-security-policy");
        assert!(
            csp.contains("default-src 'none'") && csp.contains("script-src 'self'"),
            "{p}: {csp}"
        );
        assert!(!csp.contains("unsafe-inline"), "{p}");
        assert_eq!(r.header("x-frame-options"), "DENY", "{p}");
        assert_eq!(r.header("referrer-policy"), "same-origin", "{p}");
        assert_eq!(r.header("cache-control"), "no-store", "{p}");
        assert!(!r.body.contains("<script>"), "{p}: no inline script");
        assert!(
            !r.body.contains("style=\""),
            "{p}: no inline style (the CSP forbids it)"
        );
        assert!(
            !r.body.contains("http://") && !r.body.contains("https://"),
            "{p}: no external URL"
        );
    }
    // The overview draws its charts.
    let home = b.get("/dashboard").await;
    assert!(home.body.matches("<svg class=\"chart\"").count() >= 4);
    assert!(home.body.contains("Target 400"));
    // v1 has no JavaScript at all.
    assert!(!b.get("/dashboard/v1").await.body.contains("<script"));
    // Without a session: pages send you to the login, keeping where you were going.
    let mut anon = Browser::new(&app);
    for p in PAGES {
        let r = anon.get(p).await;
        assert_eq!(r.status, 303, "{p}");
        assert!(r.location().starts_with("/login?next="), "{p}");
    }
    // Bad input is a clear 400 page.
    assert_eq!(b.get("/dashboard/jobs?status=nope").await.status, 400);
    assert_eq!(b.get("/dashboard/audit?ok=maybe").await.status, 400);
    assert_eq!(b.get("/dashboard/jobs/not-a-job").await.status, 404);
}

#[tokio::test]
async fn a_script_in_a_payload_shows_as_text() {
    let app = TestApp::spawn().await;
    let id = app
        .enqueue_id(
            json!({"kind": "webhook.deliver", "payload": {"html": "<script>alert(1)</script>"}}),
        )
        .await
        .to_string();
    let mut b = Browser::signed_in(&app, VIEWER_KEY).await;
    for p in [
        format!("/dashboard/jobs/{id}"),
        "/dashboard/jobs".into(),
        "/dashboard/v1".into(),
    ] {
        let r = b.get(&p).await;
        assert_eq!(r.status, 200, "{p}");
        assert!(!r.body.contains("<script>alert"), "{p}: {}", r.body);
    }
    let r = b.get(&format!("/dashboard/jobs/{id}")).await;
    assert!(
        r.body.contains("&#60;script&#62;alert(1)&#60;/script&#62;")
            || r.body.contains("&lt;script&gt;"),
        "{}",
        r.body
    );
}

#[tokio::test]
async fn a_viewer_sees_no_action_and_a_forged_post_gets_403() {
    let app = TestApp::spawn().await;
    let id = dead_job(&app).await;
    let mut v = Browser::signed_in(&app, VIEWER_KEY).await;
    let job_page = format!("/dashboard/jobs/{id}");
    let mut pages: Vec<&str> = PAGES.to_vec();
    pages.push(&job_page);
    for p in &pages {
        let r = v.get(p).await;
        assert_eq!(r.status, 200, "{p}");
        let posts = r.body.matches("method=\"post\"").count();
        let logout = r.body.matches("action=\"/logout\"").count();
        assert_eq!(posts, logout, "{p}: a viewer page has no action form");
        assert!(!r.body.contains(">Retry<"), "{p}");
    }
    let csrf = v.get("/dashboard").await.csrf();
    for path in [
        format!("/dashboard/jobs/{id}/retry"),
        format!("/dashboard/jobs/{id}/cancel"),
        "/dashboard/scheduler/pause".to_string(),
    ] {
        let r = v.post(&path, &[("csrf", &csrf)]).await;
        assert_eq!(r.status, 403, "{path}: {}", r.body);
    }
    let r = v
        .post(
            "/dashboard/jobs/retry-dead",
            &[("csrf", &csrf), ("confirm", "yes")],
        )
        .await;
    assert_eq!(r.status, 403);
    assert_eq!(app.job_full(&id).await["status"], "dead", "nothing changed");
    assert!(!app.state.scheduler.is_paused());
    let lines = app.audit_lines().await;
    assert!(audited(&lines, "auth.forbidden", false));
}

#[tokio::test]
async fn an_operator_retries_cancels_and_bulk_retries_through_the_api_handlers() {
    let app = TestApp::spawn().await;
    let id = dead_job(&app).await;
    let mut op = Browser::signed_in(&app, OPERATOR_KEY).await;
    let page = op.get(&format!("/dashboard/jobs/{id}")).await;
    assert!(
        page.body.contains(">Retry</button>"),
        "an operator sees the button"
    );
    let csrf = page.csrf();
    let r = op
        .post(&format!("/dashboard/jobs/{id}/retry"), &[("csrf", &csrf)])
        .await;
    assert_eq!(r.status, 303);
    assert_eq!(r.location(), format!("/dashboard/jobs/{id}?notice=retried"));
    assert_eq!(app.job_full(&id).await["status"], "queued");
    let shown = op.get(&r.location()).await;
    assert!(shown.body.contains("Job re-queued"), "{}", shown.body);
    // Retrying a queued job is the API's 409: the notice says so, nothing changes.
    let r = op
        .post(
            &format!("/dashboard/jobs/{id}/retry"),
            &[("csrf", &csrf), ("next", "/dashboard/jobs")],
        )
        .await;
    assert_eq!(r.location(), "/dashboard/jobs?notice=conflict");
    // Cancel.
    let r = op
        .post(&format!("/dashboard/jobs/{id}/cancel"), &[("csrf", &csrf)])
        .await;
    assert_eq!(r.status, 303);
    assert_eq!(app.job_full(&id).await["status"], "cancelled");
    // The same audit events as the API, by this key.
    let lines = app.audit_lines().await;
    let by_key = |action: &str, ok: bool| {
        lines
            .iter()
            .any(|l| l["action"] == action && l["ok"] == ok && l["target"] == format!("job:{id}"))
    };
    assert!(by_key("job.retry", true) && by_key("job.retry", false) && by_key("job.cancel", true));

    // Bulk retry of dead jobs needs the confirmation box.
    let d1 = dead_job(&app).await;
    let r = op
        .post("/dashboard/jobs/retry-dead", &[("csrf", &csrf)])
        .await;
    assert_eq!(r.location(), "/dashboard/jobs?status=dead&notice=confirm");
    assert_eq!(app.job_full(&d1).await["status"], "dead");
    let r = op
        .post(
            "/dashboard/jobs/retry-dead",
            &[("csrf", &csrf), ("confirm", "yes")],
        )
        .await;
    assert_eq!(
        r.location(),
        "/dashboard/jobs?status=dead&notice=bulk_retried"
    );
    assert_eq!(app.job_full(&d1).await["status"], "queued");
    assert!(audited(&app.audit_lines().await, "job.retry_bulk", true));
    // A `next` off the dashboard is ignored.
    let r = op
        .post(
            &format!("/dashboard/jobs/{d1}/cancel"),
            &[("csrf", &csrf), ("next", "https://evil.example/")],
        )
        .await;
    assert!(
        r.location().starts_with("/dashboard?notice="),
        "{}",
        r.location()
    );
}

#[tokio::test]
async fn static_assets_are_cached_by_hash_and_traversal_is_refused() {
    let app = TestApp::spawn().await;
    let mut b = Browser::signed_in(&app, VIEWER_KEY).await;
    let home = b.get("/dashboard").await;
    let at = home.body.find("/static/app.css?v=").unwrap();
    let url = &home.body[at..at + "/static/app.css?v=".len() + 16];
    let css = b.get(url).await;
    assert_eq!(css.status, 200);
    assert!(css.header("content-type").starts_with("text/css"));
    assert_eq!(
        css.header("cache-control"),
        "public, max-age=31536000, immutable"
    );
    let etag = css.header("etag");
    assert!(etag.starts_with('"'), "{etag}");
    let js = b.get("/static/app.js").await;
    assert!(js.header("content-type").contains("javascript"));
    assert_eq!(
        js.header("cache-control"),
        "no-cache",
        "no hash, no long cache"
    );
    // A conditional request gets a 304.
    let client = reqwest::Client::new();
    let r = client
        .get(app.url(url))
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 304);
    // Traversal, raw or encoded, never leaves the embedded files.
    for p in [
        "/static/..%2fCargo.toml",
        "/static/%2e%2e/%2e%2e/Cargo.toml",
        "/static/..%5c..%5cCargo.toml",
        "/static/%2e%2e%2f%2e%2e%2fsrc%2fmain.rs",
        "/static/nope.css",
    ] {
        let r = b.get(p).await;
        assert!(r.status == 400 || r.status == 404, "{p}: {}", r.status);
        assert!(
            !r.body.contains("[package]") && !r.body.contains("fn main"),
            "{p}"
        );
    }
}

#[tokio::test]
async fn schedules_run_now_pause_and_resume_from_their_page() {
    let app = TestApp::spawn().await;
    let (s, v) = app
        .create_schedule(
            json!({"name": "nightly-digest", "cron": "0 3 * * *", "kind": "report.daily_digest"}),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    let mut op = Browser::signed_in(&app, OPERATOR_KEY).await;
    let page = op.get("/dashboard/schedules").await;
    assert!(page.body.contains("nightly-digest") && page.body.contains("Run now"));
    let csrf = page.csrf();
    let r = op
        .post(
            "/dashboard/schedules/nightly-digest/run",
            &[("csrf", &csrf)],
        )
        .await;
    assert_eq!(r.location(), "/dashboard/schedules?notice=ran");
    let list = app.schedules().await;
    assert_eq!(list["schedules"][0]["runs"], 1, "{list}");
    let r = op
        .post(
            "/dashboard/schedules/nightly-digest/pause",
            &[("csrf", &csrf)],
        )
        .await;
    assert_eq!(r.location(), "/dashboard/schedules?notice=paused");
    assert_eq!(app.schedules().await["schedules"][0]["state"], "paused");
    let page = op.get("/dashboard/schedules").await;
    assert!(
        page.body.contains(">Resume<"),
        "a paused schedule offers Resume"
    );
    op.post(
        "/dashboard/schedules/nightly-digest/resume",
        &[("csrf", &csrf)],
    )
    .await;
    assert_eq!(app.schedules().await["schedules"][0]["state"], "active");
    // An unknown schedule: the API's 404, as a notice.
    let r = op
        .post("/dashboard/schedules/nope/run", &[("csrf", &csrf)])
        .await;
    assert_eq!(r.location(), "/dashboard/schedules?notice=not_found");
    // The scheduler itself.
    let r = op
        .post("/dashboard/scheduler/pause", &[("csrf", &csrf)])
        .await;
    assert_eq!(r.status, 303);
    assert!(app.state.scheduler.is_paused());
    op.post("/dashboard/scheduler/resume", &[("csrf", &csrf)])
        .await;
    assert!(!app.state.scheduler.is_paused());
    let lines = app.audit_lines().await;
    for action in [
        "schedule.run",
        "schedule.pause",
        "schedule.resume",
        "scheduler.pause",
    ] {
        assert!(lines.iter().any(|l| l["action"] == action), "{action}");
    }
}

/// Deliver Stripe events to the app, signed with its secret.
async fn deliver(app: &TestApp, bodies: &[String]) {
    let now = chrono::Utc::now().timestamp();
    for b in bodies {
        let sig =
            echopilot::payments::signature::sign_header(helpers::stripe::SECRET, now, b.as_bytes());
        let (s, v) = app.webhook(b, Some(&sig)).await;
        assert_eq!(s, 200, "{v}");
    }
}

#[tokio::test]
async fn payments_show_the_ledger_escaped_and_reconcile_now_records_a_report() {
    use helpers::stripe::{SECRET, event};
    let app = TestApp::spawn_with(&[("STRIPE_WEBHOOK_SECRET", SECRET)]).await;
    let now = chrono::Utc::now().timestamp();
    deliver(
        &app,
        &[
            event("payment_intent.succeeded", "evt_dash_1", now, &[]),
            event(
                "payment_intent.payment_failed",
                "evt_dash_2",
                now,
                &[(
                    "receipt_email",
                    json!("<script>alert(1)</script>@example.com"),
                )],
            ),
        ],
    )
    .await;
    let mut v = Browser::signed_in(&app, VIEWER_KEY).await;
    let page = v.get("/dashboard/payments").await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(
        page.body.contains("pi_3QaBcD2eZvKYlo2C1xYz0009"),
        "{}",
        page.body
    );
    assert!(page.body.contains("49.00 USD"), "amounts in major units");
    assert!(!page.body.contains("<script>alert"), "escaped");
    assert!(page.body.contains("&#60;script&#62;alert(1)"));
    assert!(page.body.contains("No reconciliation recorded yet"));
    // A viewer: no button, and a forged post is refused and changes nothing.
    assert!(!page.body.contains("Reconcile now"));
    assert_eq!(
        page.body.matches("method=\"post\"").count(),
        page.body.matches("action=\"/logout\"").count()
    );
    let r = v
        .post("/dashboard/payments/reconcile", &[("csrf", &page.csrf())])
        .await;
    assert_eq!(r.status, 403);
    // Filters: by status, and bad input is a 400 page.
    let failed = v.get("/dashboard/payments?status=failed").await;
    assert!(failed.body.contains("1 payments shown"), "{}", failed.body);
    assert!(failed.body.contains("Failed"));
    let none = v
        .get("/dashboard/payments?status=succeeded&since=2001-01-01&until=2001-01-02")
        .await;
    assert!(none.body.contains("No payments match"), "{}", none.body);
    assert_eq!(v.get("/dashboard/payments?status=nope").await.status, 400);
    assert_eq!(
        v.get("/dashboard/payments?since=yesterday").await.status,
        400
    );

    // An operator reconciles: CSRF first, then the report shows with its issues.
    let mut op = Browser::signed_in(&app, OPERATOR_KEY).await;
    let page = op.get("/dashboard/payments").await;
    assert!(page.body.contains("Reconcile now"));
    let r = op
        .post("/dashboard/payments/reconcile", &[("csrf", "forged")])
        .await;
    assert_eq!(r.status, 403);
    assert!(
        app.audit_lines()
            .await
            .iter()
            .all(|l| l["action"] != "payments.reconcile")
    );
    let r = op
        .post("/dashboard/payments/reconcile", &[("csrf", &page.csrf())])
        .await;
    assert_eq!(r.location(), "/dashboard/payments?notice=reconciled");
    let page = op.get(&r.location()).await;
    assert!(page.body.contains("Reconciliation recorded"));
    assert!(page.body.contains("2 payments checked"), "{}", page.body);
    assert!(page.body.contains("49.00 USD"));
    assert!(audited(
        &app.audit_lines().await,
        "payments.reconcile",
        true
    ));
}

/// Post forms only a viewer's page shows: the page has no action form and the post
/// is refused.
async fn no_forms_for(b: &mut Browser<'_>, page: &str) -> String {
    let r = b.get(page).await;
    assert_eq!(r.status, 200, "{page}: {}", r.body);
    assert_eq!(
        r.body.matches("method=\"post\"").count(),
        r.body.matches("action=\"/logout\"").count(),
        "{page}: no action form"
    );
    r.csrf()
}

#[tokio::test]
async fn flags_toggle_with_a_note_and_show_who_and_when() {
    let app = TestApp::spawn().await;
    let mut op = Browser::signed_in(&app, OPERATOR_KEY).await;
    let page = op.get("/dashboard/flags").await;
    assert!(page.body.contains("executor.http") && page.body.contains("Turn off"));
    assert!(page.body.contains("No flag changed in 30 days"));
    let csrf = page.csrf();
    // A forged token changes nothing.
    let r = op
        .post(
            "/dashboard/flags/executor.http",
            &[("csrf", "forged"), ("enabled", "false")],
        )
        .await;
    assert_eq!(r.status, 403);
    assert!(app.state.flags.is_enabled("executor.http"));
    // A bad value is the API's 400, audited, and nothing changes.
    let r = op
        .post(
            "/dashboard/flags/executor.http",
            &[("csrf", &csrf), ("enabled", "maybe")],
        )
        .await;
    assert_eq!(r.location(), "/dashboard/flags?notice=invalid");
    assert!(app.state.flags.is_enabled("executor.http"));
    let r = op
        .post(
            "/dashboard/flags/executor.http",
            &[
                ("csrf", &csrf),
                ("enabled", "false"),
                ("note", "<b>provider down</b>"),
            ],
        )
        .await;
    assert_eq!(r.location(), "/dashboard/flags?notice=flag_off");
    assert!(!app.state.flags.is_enabled("executor.http"));
    let page = op.get(&r.location()).await;
    assert!(page.body.contains("Flag turned off"));
    assert!(
        page.body
            .contains("Turn on<span class=\"sr\"> executor.http")
    );
    assert!(!page.body.contains("<b>provider"), "the note is escaped");
    assert!(page.body.contains("&#60;b&#62;provider down"));
    let key_id = echopilot::auth::key_id(OPERATOR_KEY);
    assert!(page.body.contains(&format!("by key {key_id}")), "who");
    assert!(
        !page.body.contains("No flag changed"),
        "the change is listed"
    );
    let lines = app.audit_lines().await;
    assert!(audited(&lines, "flag.set", true));
    assert!(
        audited(&lines, "flag.set", false),
        "the refused value is audited too"
    );
    // A viewer sees the flags and no form; a forged post is refused.
    let mut v = Browser::signed_in(&app, VIEWER_KEY).await;
    let csrf = no_forms_for(&mut v, "/dashboard/flags").await;
    let r = v
        .post(
            "/dashboard/flags/executor.http",
            &[("csrf", &csrf), ("enabled", "true")],
        )
        .await;
    assert_eq!(r.status, 403);
    assert!(!app.state.flags.is_enabled("executor.http"));
}

#[tokio::test]
async fn incidents_open_update_resolve_with_the_runbook_templates() {
    let app = TestApp::spawn().await;
    let mut op = Browser::signed_in(&app, OPERATOR_KEY).await;
    let page = op.get("/dashboard/incidents").await;
    assert!(page.body.contains("Open incident") && page.body.contains("No incidents."));
    let csrf = page.csrf();
    // Missing fields: the API's 400, nothing opened.
    let r = op
        .post(
            "/dashboard/incidents",
            &[
                ("csrf", &csrf),
                ("title", ""),
                ("severity", "P1"),
                ("impact", "x"),
            ],
        )
        .await;
    assert_eq!(r.location(), "/dashboard/incidents?notice=invalid");
    assert!(app.state.incidents.list(10).unwrap().is_empty());
    let r = op
        .post(
            "/dashboard/incidents",
            &[
                ("csrf", &csrf),
                ("title", "Webhooks <failing>"),
                ("severity", "P1"),
                ("impact", "Payments are not confirmed"),
                ("eta", ""),
            ],
        )
        .await;
    assert_eq!(r.status, 303);
    let id = app.state.incidents.list(10).unwrap()[0].id.clone();
    assert_eq!(
        r.location(),
        format!("/dashboard/incidents/{id}?notice=incident_opened")
    );
    let page = op.get(&r.location()).await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(!page.body.contains("<failing>"), "escaped");
    // The runbook's "Incident Detected" template, filled in.
    assert!(
        page.body.contains(
            "\u{1F6A8} INCIDENT: Webhooks &#60;failing&#62;\nSeverity: P1\nImpact: Payments are not confirmed\nStatus: Investigating\nETA: Unknown"
        ),
        "{}",
        page.body
    );
    assert!(
        page.body
            .contains("Available once the incident is resolved")
    );
    // A move, then a resolve that lacks its fields, then the resolve.
    let upd = format!("/dashboard/incidents/{id}/update");
    let r = op
        .post(
            &upd,
            &[
                ("csrf", &csrf),
                ("message", "Found it"),
                ("status", "identified"),
            ],
        )
        .await;
    assert_eq!(
        r.location(),
        format!("/dashboard/incidents/{id}?notice=incident_updated")
    );
    let r = op
        .post(
            &upd,
            &[
                ("csrf", &csrf),
                ("message", "Fixed"),
                ("status", "resolved"),
                ("root_cause", ""),
            ],
        )
        .await;
    assert!(r.location().ends_with("notice=invalid"), "{}", r.location());
    let r = op
        .post(
            &upd,
            &[
                ("csrf", &csrf),
                ("message", "Fixed"),
                ("status", "resolved"),
                ("root_cause", "Rotated secret"),
                ("resolution", "Both secrets listed"),
                ("prevention", "Rotation checklist"),
            ],
        )
        .await;
    assert!(r.location().ends_with("notice=incident_updated"));
    let page = op.get(&format!("/dashboard/incidents/{id}")).await;
    assert!(
        page.body.contains(
            "\u{2705} RESOLVED: Webhooks &#60;failing&#62;\nRoot Cause: Rotated secret\nResolution: Both secrets listed\nPrevention: Rotation checklist\nDuration: "
        ),
        "{}",
        page.body
    );
    assert!(page.body.contains("Save postmortem") && !page.body.contains("Add update"));
    let r = op
        .post(
            &format!("/dashboard/incidents/{id}/postmortem"),
            &[
                ("csrf", &csrf),
                ("timeline", "10:00 opened, 10:20 fixed"),
                ("root_cause", "Rotated secret"),
                ("preventive_measures", "Checklist"),
                ("runbook_updates", "Rotation step"),
            ],
        )
        .await;
    assert!(
        r.location().ends_with("notice=postmortem"),
        "{}",
        r.location()
    );
    assert!(app.state.incidents.get(&id).unwrap().postmortem.is_some());
    let list = op.get("/dashboard/incidents?state=resolved").await;
    assert!(list.body.contains("Postmortem written"), "{}", list.body);
    assert!(
        op.get("/dashboard/incidents?state=open")
            .await
            .body
            .contains("No incidents.")
    );
    assert_eq!(op.get("/dashboard/incidents?state=nope").await.status, 400);
    assert_eq!(op.get("/dashboard/incidents/nope").await.status, 404);
    let lines = app.audit_lines().await;
    for action in [
        "incident.open",
        "incident.update",
        "incident.resolve",
        "incident.postmortem",
    ] {
        assert!(
            lines
                .iter()
                .any(|l| l["action"] == action && l["ok"] == true),
            "{action}"
        );
    }
    // A viewer reads the page, templates included, and may not post.
    let other = app
        .open_incident_id(json!({"title": "Slow pages", "severity": "P3", "impact": "UI"}))
        .await;
    let mut v = Browser::signed_in(&app, VIEWER_KEY).await;
    no_forms_for(&mut v, "/dashboard/incidents").await;
    let csrf = no_forms_for(&mut v, &format!("/dashboard/incidents/{other}")).await;
    let r = v
        .post(
            &format!("/dashboard/incidents/{other}/update"),
            &[("csrf", &csrf), ("message", "x")],
        )
        .await;
    assert_eq!(r.status, 403);
    let r = v
        .post(
            "/dashboard/incidents",
            &[
                ("csrf", &csrf),
                ("title", "t"),
                ("severity", "P3"),
                ("impact", "i"),
            ],
        )
        .await;
    assert_eq!(r.status, 403);
    assert_eq!(app.state.incidents.list(10).unwrap().len(), 2);
}

#[tokio::test]
async fn backups_are_taken_and_verified_by_an_admin_only() {
    let app = TestApp::spawn().await;
    // Operators and viewers see the list and no button; their posts are refused.
    for key in [VIEWER_KEY, OPERATOR_KEY] {
        let mut b = Browser::signed_in(&app, key).await;
        let csrf = no_forms_for(&mut b, "/dashboard/backups").await;
        let r = b.post("/dashboard/backups", &[("csrf", &csrf)]).await;
        assert_eq!(r.status, 403, "{key}");
    }
    assert!(
        app.state.backups.list().unwrap().is_empty(),
        "nothing taken"
    );
    let mut admin = Browser::signed_in(&app, ADMIN_KEY).await;
    let page = admin.get("/dashboard/backups").await;
    assert!(page.body.contains("No snapshots yet") && page.body.contains("Take backup now"));
    assert_eq!(
        admin
            .post("/dashboard/backups", &[("csrf", "forged")])
            .await
            .status,
        403
    );
    let r = admin
        .post("/dashboard/backups", &[("csrf", &page.csrf())])
        .await;
    assert_eq!(
        r.location(),
        "/dashboard/backups?notice=backup_taken",
        "{} {}",
        r.status,
        r.body
    );
    let list = app.state.backups.list().unwrap();
    assert_eq!(list.len(), 1);
    let name = list[0].name.clone();
    let page = admin.get(&r.location()).await;
    assert!(
        page.body.contains(&name) && page.body.contains("● Verified"),
        "{}",
        page.body
    );
    let r = admin
        .post(
            &format!("/dashboard/backups/{name}/verify"),
            &[("csrf", &page.csrf())],
        )
        .await;
    assert_eq!(r.location(), "/dashboard/backups?notice=backup_verified");
    let r = admin
        .post(
            "/dashboard/backups/nope.snap/verify",
            &[("csrf", &page.csrf())],
        )
        .await;
    assert!(r.location().contains("notice="), "{}", r.location());
    assert!(!r.location().ends_with("backup_verified"));
    let lines = app.audit_lines().await;
    assert!(audited(&lines, "backup.create", true));
    assert!(audited(&lines, "backup.verify", true));
    // The viewer now sees the snapshot, still without a Verify button.
    let mut v = Browser::signed_in(&app, VIEWER_KEY).await;
    let page = v.get("/dashboard/backups").await;
    assert!(page.body.contains(&name) && !page.body.contains(">Verify<"));
}

#[tokio::test]
async fn the_overview_charts_carry_markers_of_flags_incidents_and_429_bursts() {
    let app = TestApp::spawn().await;
    app.set_flag("executor.command", false).await;
    app.open_incident_id(
        json!({"title": "Stripe <webhook> outage", "severity": "P1", "impact": "payments"}),
    )
    .await;
    // A burst of refusals in the last minute.
    let refused = echopilot::slo::Snapshot {
        rate_limited: 14,
        ..Default::default()
    };
    let minute = echopilot::slo::minute_of(chrono::Utc::now()) - 1;
    let _ = app.state.slo.merge_minute(minute, &refused, true).unwrap();
    let api = app.markers("").await;
    let kinds: Vec<&str> = api["markers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["kind"].as_str().unwrap())
        .collect();
    assert!(
        kinds.contains(&"flag") && kinds.contains(&"incident") && kinds.contains(&"rate_limit"),
        "{api}"
    );
    let mut b = Browser::signed_in(&app, VIEWER_KEY).await;
    let home = b.get("/dashboard").await;
    assert_eq!(home.status, 200, "{}", home.body);
    // The same events as the API, drawn with a short label and the whole story as tooltip.
    assert!(
        home.body
            .contains("<g class=\"mk mk-flag\"><title>flag executor.command off: test</title>"),
        "{}",
        home.body
    );
    assert!(home.body.contains(">flag executor.command off</text>"));
    assert!(home.body.contains("<g class=\"mk mk-incident\"><title>P1 incident opened: Stripe &lt;webhook&gt; outage</title>"));
    assert!(
        home.body
            .contains(">P1 Stripe &lt;webhook&gt; outage</text>"),
        "escaped"
    );
    assert!(
        home.body.contains("<g class=\"mk mk-rate_limit\">"),
        "the burst of 429s"
    );
}

#[tokio::test]
async fn the_overview_has_a_range_selector_a_p50_line_and_the_last_backup() {
    let app = TestApp::spawn().await;
    let mut b = Browser::signed_in(&app, VIEWER_KEY).await;
    let home = b.get("/dashboard").await;
    assert!(
        home.body
            .contains("<a href=\"/dashboard?range=24h\" aria-current=\"true\">24 h</a>"),
        "{}",
        home.body
    );
    assert!(home.body.contains("class=\"p50\""), "a P50 line beside P95");
    assert!(home.body.contains("class=\"p95\""));
    assert!(home.body.contains("5 min buckets over 24 h"));
    // No snapshot yet: the card says so.
    assert!(home.body.contains("No backup"), "{}", home.body);
    for (range, words) in [
        ("1h", "1 min buckets over 1 h"),
        ("6h", "5 min buckets over 6 h"),
        ("7d", "1 h buckets over 7 d"),
        ("30d", "4 h buckets over 30 d"),
    ] {
        let r = b.get(&format!("/dashboard?range={range}")).await;
        assert_eq!(r.status, 200, "{range}");
        assert!(r.body.contains(words), "{range}");
        assert!(
            r.body
                .contains(&format!("range={range}\" aria-current=\"true\"")),
            "{range}"
        );
        assert_eq!(r.body.matches("aria-current=\"true\"").count(), 1);
    }
    assert_eq!(b.get("/dashboard?range=2y").await.status, 400);
    // After a snapshot the card shows its age, that it verified, and its size.
    let (s, v) = app.post("/api/backups", Some(ADMIN_KEY), json!({})).await;
    assert_eq!(s, 201, "{v}");
    let home = b.get("/dashboard").await;
    assert!(!home.body.contains("No backup"));
    assert!(home.body.contains("● Verified · "), "{}", home.body);
    assert!(home.body.contains("href=\"/dashboard/backups\""));
}

#[tokio::test]
async fn page_views_show_the_status_routes_last_store_probe_and_probe_nothing() {
    let app = TestApp::spawn().await;
    let cache = &app.state.status_cache;
    let mut b = Browser::signed_in(&app, VIEWER_KEY).await;
    let store_row =
        |body: &str, word: &str| body.contains(&format!("<td>store</td><td>{word}</td>"));
    // Before any probe a page reads the store and finds it answering.
    let v1 = b.get("/dashboard/v1").await;
    assert_eq!(v1.status, 200, "{}", v1.body);
    assert!(store_row(&v1.body, "healthy"), "{}", v1.body);
    assert_eq!(cache.probes(), 0, "a page view wrote a probe");
    app.summary().await;
    assert_eq!(cache.probes(), 1);
    for page in PAGES {
        assert_eq!(b.get(page).await.status, 200, "{page}");
    }
    assert_eq!(cache.probes(), 1, "page views write no probe");
    // A store below its free-space reserve shows at once, still without a probe.
    app.state.store.set_min_free_bytes(u64::MAX);
    let v1 = b.get("/dashboard/v1").await;
    assert!(store_row(&v1.body, "unhealthy"), "{}", v1.body);
    let home = b.get("/dashboard").await;
    assert!(home.body.contains("Needs a look: store"), "{}", home.body);
    assert_eq!(cache.probes(), 1);
}
