//! Issue 10's operator-facing hardening: the CLI finds the server it means, the console
//! and the log files, escaping, key checks, connection limits.

mod helpers;

use std::io::Read;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use helpers::{Process, TestApp, bin};
use serde_json::{Value, json};

fn run(home: &Path, args: &[&str]) -> (bool, String, String) {
    let out = bin(home).args(args).output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn the_cli_asks_the_server_of_its_own_home() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    // Both on ports the OS chose (`--bind 127.0.0.1:0`), neither on PORT's default.
    let mut server_a = Process::start(a.path(), &[]);
    let _server_b = Process::start(b.path(), &[]);
    let addr_a = std::fs::read_to_string(a.path().join("data/echopilot.addr")).unwrap();
    assert_eq!(format!("http://{}", addr_a.trim()), server_a.base);

    // Run from home B's environment: `--home A` must reach A's server, no other.
    let a_home = a.path().to_str().unwrap();
    let (ok, out, err) = run(b.path(), &["db", "stats", "--home", a_home]);
    assert!(ok, "{out}{err}");
    let store_a = a.path().join("data/echopilot.sled");
    assert!(
        out.contains(&format!("store: {}", store_a.display())),
        "{out}"
    );
    assert!(!out.contains(&b.path().display().to_string()), "{out}");
    let (ok, out, err) = run(b.path(), &["db", "check", "--home", a_home]);
    assert!(ok, "{out}{err}");
    assert!(out.contains(addr_a.trim()), "{out}");

    // A clean stop removes the record; the CLI then opens the store itself.
    server_a.signal("TERM");
    assert_eq!(server_a.wait(Duration::from_secs(15)).0, Some(0));
    assert!(!a.path().join("data/echopilot.addr").exists());
    let (ok, out, err) = run(b.path(), &["db", "stats", "--home", a_home]);
    assert!(ok, "{out}{err}");
    assert!(out.contains("schema_version"), "{out}");
}

/// `echopilot serve`, stopped with SIGTERM once it is up: its stdout and stderr.
fn serve_and_stop(home: &Path, env: &[(&str, &str)], clear_keys: bool) -> (String, String) {
    let mut cmd = bin(home);
    if clear_keys {
        cmd.env_remove("DASHBOARD_KEY").env_remove("ROLES_JSON");
    }
    cmd.args(["serve", "--bind", "127.0.0.1:0"])
        .env("ALLOW_DIRTY", "true")
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    // The banner is the first stdout line: the server is up once it is printed.
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut out = String::new();
    std::io::BufRead::read_line(&mut stdout, &mut out).unwrap();
    assert!(!out.is_empty(), "the server printed nothing");
    let ok = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
    let mut err = String::new();
    stdout.read_to_string(&mut out).unwrap();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(child.wait().unwrap().success(), "{err}");
    (out, err)
}

#[test]
fn console_output_is_plain_off_a_terminal_and_also_in_echopilot_log() {
    let tmp = tempfile::tempdir().unwrap();
    let (out, err) = serve_and_stop(tmp.path(), &[], false);
    assert!(!err.contains('\u{1b}'), "colour codes into a pipe: {err:?}");
    assert!(!out.contains('\u{1b}'), "{out:?}");
    // The banner once, whatever the streams.
    let both = format!("{out}{err}");
    assert_eq!(both.matches("listening on http://").count(), 1, "{both}");
    assert!(
        err.contains("keys loaded") && err.contains("admin=1") && err.contains("worker=1"),
        "{err}"
    );
    assert!(err.contains("SIGTERM received"), "{err}");
    let file = std::fs::read_to_string(tmp.path().join("logs/echopilot.log")).unwrap();
    assert!(file.contains("listening on http://"), "{file}");
    assert!(file.contains("SIGTERM received"), "{file}");
    assert!(file.contains("keys loaded"), "{file}");
    assert!(!file.contains('\u{1b}'), "{file:?}");
}

#[test]
fn a_server_without_keys_says_so_at_start_up() {
    let tmp = tempfile::tempdir().unwrap();
    let (_, err) = serve_and_stop(tmp.path(), &[], true);
    assert!(err.contains("WARN"), "{err}");
    assert!(err.contains("no keys loaded"), "{err}");
    assert!(err.contains("DASHBOARD_KEY"), "{err}");
}

#[test]
fn weak_or_ambiguous_keys_stop_start_up_without_showing_the_key() {
    let tmp = tempfile::tempdir().unwrap();
    let cases = [
        (
            vec![("DASHBOARD_KEY", "abc")],
            "DASHBOARD_KEY: shorter than 16",
        ),
        (
            vec![(
                "ROLES_JSON",
                r#"{"dup-key-0123456789abc": "viewer", "dup-key-0123456789abc": "admin"}"#,
            )],
            "have the same key",
        ),
        (
            vec![(
                "ROLES_JSON",
                r#"{"test-admin-key-0123456789abcdef": "viewer"}"#,
            )],
            "same key as DASHBOARD_KEY",
        ),
    ];
    for (env, want) in cases {
        let mut cmd = bin(tmp.path());
        cmd.args(["serve", "--bind", "127.0.0.1:0"])
            .env("ALLOW_DIRTY", "true");
        for (k, v) in &env {
            cmd.env(k, v);
        }
        // A server that accepts the keys would run on: stop it and fail, not hang.
        let mut child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let start = std::time::Instant::now();
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if start.elapsed() > Duration::from_secs(20) {
                let _ = child.kill();
                let _ = child.wait();
                panic!("started with {env:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let mut err = String::new();
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut err)
            .unwrap();
        assert!(!status.success(), "started with {env:?}");
        assert!(err.contains(want), "{err}");
        for (_, v) in &env {
            assert!(
                !err.contains("dup-key") && !err.contains("test-admin-key") && !err.contains(v),
                "key shown: {err}"
            );
        }
    }
}

#[test]
fn help_names_the_environment_and_keygen_has_no_home() {
    let tmp = tempfile::tempdir().unwrap();
    let (ok, out, _) = run(tmp.path(), &["--help"]);
    assert!(ok);
    for name in ["DASHBOARD_KEY", "ROLES_JSON", "PORT"] {
        assert!(out.contains(name), "--help does not name {name}: {out}");
    }
    let (ok, out, _) = run(tmp.path(), &["keygen", "--help"]);
    assert!(ok);
    assert!(!out.contains("--home"), "{out}");
    // Still accepted, so scripts that pass it keep working.
    let (ok, out, _) = run(tmp.path(), &["keygen", "--home", "."]);
    assert!(ok && out.trim().len() == 43, "{out}");
}

fn archived_names(home: &Path) -> Vec<String> {
    let mut names = Vec::new();
    for day in std::fs::read_dir(home.join("logs/archive")).unwrap() {
        for f in std::fs::read_dir(day.unwrap().path()).unwrap() {
            names.push(f.unwrap().file_name().to_string_lossy().into_owned());
        }
    }
    names.sort();
    names
}

fn rotate_events(home: &Path) -> Vec<Value> {
    std::fs::read_to_string(home.join("logs/ndjson/audit.ndjson"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|e| e["action"] == "logs.rotate")
        .collect()
}

#[test]
fn logs_rotate_moves_every_log_and_is_audited() {
    // No server: the command rotates and audits by itself.
    let tmp = tempfile::tempdir().unwrap();
    let logs = tmp.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    for f in [
        "app.log",
        "scheduler.log",
        "echopilot.log",
        "stripe_webhooks.log",
    ] {
        std::fs::write(logs.join(f), "a line\n").unwrap();
    }
    let (ok, out, err) = run(tmp.path(), &["logs", "rotate"]);
    assert!(ok, "{out}{err}");
    assert!(out.contains("ok: 4 files rotated"), "{out}");
    let names = archived_names(tmp.path());
    for stem in ["app-", "scheduler-", "echopilot-", "stripe_webhooks-"] {
        assert!(
            names.iter().any(|n| n.starts_with(stem)),
            "{stem}: {names:?}"
        );
    }
    let events = rotate_events(tmp.path());
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["actor"], "cli");
    assert_eq!(events[0]["ok"], true);
    assert!(
        events[0]["target"].as_str().unwrap().contains("scheduler-"),
        "{events:?}"
    );

    // A running server is asked to do it (its writers and audit chain stay in order).
    let server = Process::start(tmp.path(), &[]);
    std::fs::write(logs.join("scheduler.log"), "another line\n").unwrap();
    helpers::blocking_get(&format!("{}/api/status/summary", server.base));
    let (ok, out, err) = run(tmp.path(), &["logs", "rotate"]);
    assert!(ok, "{out}{err}");
    assert!(out.contains("scheduler-"), "{out}");
    // A clean stop: the rotate's own audit line may still be in the writer's batch, and
    // only `kill -9` leaves it to the next start to re-append.
    let mut server = server;
    server.signal("TERM");
    server.wait(Duration::from_secs(10));
    let (ok, out, err) = run(tmp.path(), &["audit", "verify"]);
    assert!(ok, "{out}{err}");
    let text: String = std::fs::read_dir(logs.join("archive"))
        .unwrap()
        .flat_map(|d| std::fs::read_dir(d.unwrap().path()).unwrap())
        .map(|f| std::fs::read_to_string(f.unwrap().path()).unwrap())
        .chain(std::fs::read_to_string(logs.join("ndjson/audit.ndjson")))
        .collect();
    assert_eq!(
        text.matches("\"action\":\"logs.rotate\"").count(),
        2,
        "{text}"
    );
}

#[tokio::test]
async fn control_characters_never_reach_the_scheduler_log() {
    let app = TestApp::spawn().await;
    let id = app.enqueue_id(json!({"kind": "forge"})).await;
    let (s, _) = app.claim(json!({"worker": "w1", "kinds": ["forge"]})).await;
    assert_eq!(s, 200);
    let error = "boom\r\n2026-01-01T00:00:00Z INFO job forged succeeded\u{1b}[2K\u{2028}x\u{85}";
    let (s, v) = app.fail(&id, json!({"error": error})).await;
    assert_eq!(s, 200, "{v}");
    let path = app.home.join("logs/scheduler.log");
    let start = std::time::Instant::now();
    let log = loop {
        let log = std::fs::read_to_string(&path).unwrap_or_default();
        if log.contains(&id) {
            break log;
        }
        assert!(start.elapsed() < Duration::from_secs(10), "{log}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let mine: Vec<&str> = log.lines().filter(|l| l.contains(&id)).collect();
    assert_eq!(mine.len(), 1, "{log:?}");
    assert!(
        !log.lines().any(|l| l.starts_with("2026-01-01T00:00:00Z")),
        "a forged line: {log:?}"
    );
    for line in log.lines() {
        assert!(
            !line
                .chars()
                .any(|c| c.is_control() || c == '\u{2028}' || c == '\u{2029}'),
            "{line:?}"
        );
    }
    assert!(mine[0].contains(r"boom\r\n2026"), "{log}");
    app.stop().await;
}

/// Read until the server closes the connection (or `limit` passes: then `None`).
async fn read_to_close(stream: &mut tokio::net::TcpStream, limit: Duration) -> Option<String> {
    use tokio::io::AsyncReadExt;
    let mut buf = Vec::new();
    match tokio::time::timeout(limit, stream.read_to_end(&mut buf)).await {
        Ok(_) => Some(String::from_utf8_lossy(&buf).into_owned()),
        Err(_) => None,
    }
}

#[tokio::test]
async fn connections_are_capped_refused_quickly_and_timed_out() {
    use tokio::io::AsyncWriteExt;
    use tokio::net::TcpStream;
    let app =
        TestApp::spawn_with(&[("MAX_CONNECTIONS", "4"), ("HEADER_READ_TIMEOUT_SECS", "1")]).await;
    let addr = app.base.trim_start_matches("http://").to_string();
    // Four clients that never finish their headers hold every slot.
    let mut slow = Vec::new();
    for _ in 0..4 {
        let mut s = TcpStream::connect(&addr).await.unwrap();
        s.write_all(b"GET /api/status/summary HTTP/1.1\r\nHost: x\r\n")
            .await
            .unwrap();
        slow.push(s);
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    // The fifth is answered at once, with the reason, and closed (a bound, not a speed).
    let mut extra = TcpStream::connect(&addr).await.unwrap();
    extra
        .write_all(b"GET /api/status/summary HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let answer = read_to_close(&mut extra, Duration::from_secs(5))
        .await
        .expect("a connection past the cap hung");
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(
        answer.contains("MAX_CONNECTIONS") && answer.contains("\"ok\":false"),
        "{answer}"
    );
    assert!(
        answer.to_ascii_lowercase().contains("retry-after: 1"),
        "{answer}"
    );
    // The header-read timeout closes the slow ones, which frees their slots.
    for s in &mut slow {
        assert!(
            read_to_close(s, Duration::from_secs(10)).await.is_some(),
            "a client that never sent its headers was kept open"
        );
    }
    let (status, v) = app.get("/api/status/summary", None).await;
    assert_eq!(status, 200, "{v}");
    // An idle keep-alive connection is closed by the same timer.
    let mut idle = TcpStream::connect(&addr).await.unwrap();
    idle.write_all(b"GET /api/status/summary HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let text = read_to_close(&mut idle, Duration::from_secs(10))
        .await
        .expect("an idle keep-alive connection was kept open");
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    app.stop().await;
}

/// A bad query value names its parameter; a request hyper cannot parse is refused before
/// our layers (empty body, connection closed: what the README says of it).
#[tokio::test]
async fn bad_query_values_name_the_parameter_and_unparseable_requests_are_refused() {
    use tokio::io::AsyncWriteExt;
    let app = TestApp::spawn().await;
    let (s, v) = app
        .get("/api/audit?ok=maybe", Some(helpers::VIEWER_KEY))
        .await;
    assert_eq!(s, 400, "{v}");
    let msg = v["error"].as_str().unwrap();
    assert!(msg.contains("ok:"), "{msg}");
    assert_eq!(v["ok"], false);

    let addr = app.url("").trim_start_matches("http://").to_string();
    let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
    stream
        .write_all(b"GET /api/st\x01atus HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let text = read_to_close(&mut stream, Duration::from_secs(5))
        .await
        .expect("an answer");
    assert!(text.starts_with("HTTP/1.1 400"), "{text}");
    assert!(
        text.to_ascii_lowercase().contains("connection: close"),
        "{text}"
    );
    app.stop().await;
}
