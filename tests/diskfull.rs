//! A full disk, for real: the home on a small tmpfs, filled through the API until
//! writes are refused, then freed. Needs root (to mount); under `CI` it fails rather
//! than skips without it.

mod helpers;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use helpers::{OPERATOR_KEY, Process, VIEWER_KEY};
use serde_json::{Value, json};

/// A tmpfs mounted for the test, unmounted when dropped.
struct Mount(PathBuf);

impl Mount {
    fn tmpfs(dir: &Path, size: &str) -> Option<Mount> {
        std::fs::create_dir_all(dir).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        ok.then(|| Mount(dir.to_path_buf()))
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

const ENV: &[(&str, &str)] = &[
    ("RATE_LIMIT_PER_MIN", "0"),
    ("STORE_MIN_FREE_BYTES", "8388608"),
    ("LOG_MAX_BYTES", "1048576"),
];

async fn send(
    client: &reqwest::Client,
    url: String,
    key: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = match &body {
        Some(b) => client
            .post(url)
            .header("content-type", "application/json")
            .body(b.to_string()),
        None => client.get(url),
    };
    req = req.header("X-Dash-Key", key);
    let resp = req.send().await.expect("the server answers");
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_is_refused_cleanly_and_survived() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    let Some(_mount) = Mount::tmpfs(&home, "48m") else {
        assert!(
            std::env::var_os("CI").is_none(),
            "the disk-full test needs root to mount a tmpfs"
        );
        eprintln!("skipped: cannot mount a tmpfs (not root)");
        return;
    };
    // Ballast to free later: the space the server gets back.
    let ballast = home.join("ballast");
    std::fs::write(&ballast, vec![7u8; 12 << 20]).unwrap();

    let mut server = Process::start(&home, ENV);
    let client = reqwest::Client::new();
    let payload = "x".repeat(32 * 1024);
    let mut acked = Vec::new();
    let mut refused = None;
    for i in 0..5000 {
        let body = json!({"kind": "fill", "payload": {"i": i, "pad": payload}});
        let (s, v) = send(
            &client,
            format!("{}/api/jobs", server.base),
            OPERATOR_KEY,
            Some(body),
        )
        .await;
        match s {
            201 => acked.push(v["job"]["id"].as_str().unwrap().to_string()),
            _ => {
                refused = Some((s, v));
                break;
            }
        }
    }
    let (s, v) = refused.expect("the disk never filled");
    assert_eq!(s, 503, "{v}");
    let msg = v["error"].as_str().unwrap();
    assert!(msg.starts_with("storage full:"), "{v}");
    assert!(
        !msg.contains("os error") && !msg.contains("No space"),
        "{v}"
    );
    assert!(
        acked.len() >= 10,
        "only {} jobs before the disk filled",
        acked.len()
    );

    // Reads keep working; the summary says why writes fail, in plain words.
    let (s, v) = send(
        &client,
        format!("{}/api/job/{}", server.base, acked[0]),
        VIEWER_KEY,
        None,
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let (s, v) = send(
        &client,
        format!("{}/api/jobs?limit=5", server.base),
        VIEWER_KEY,
        None,
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let (_, summary) = send(
        &client,
        format!("{}/api/status/summary", server.base),
        VIEWER_KEY,
        None,
    )
    .await;
    assert_eq!(
        summary["components"]["store"]["status"], "unhealthy",
        "{summary}"
    );
    assert!(
        summary["components"]["store"]["error"]
            .as_str()
            .unwrap_or_default()
            .starts_with("storage full"),
        "{summary}"
    );
    assert_eq!(summary["status"], "unhealthy", "{summary}");
    let text = summary.to_string();
    assert!(
        !text.contains("os error") && !text.contains("No space"),
        "{summary}"
    );
    // Still refused a moment later: nothing recovers by accident.
    let (s, _) = send(
        &client,
        format!("{}/api/jobs", server.base),
        OPERATOR_KEY,
        Some(json!({"kind": "k"})),
    )
    .await;
    assert_eq!(s, 503);

    // Space comes back: writes resume without a restart.
    std::fs::remove_file(&ballast).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (s, v) = send(
            &client,
            format!("{}/api/jobs", server.base),
            OPERATOR_KEY,
            Some(json!({"kind": "after"})),
        )
        .await;
        if s == 201 {
            acked.push(v["job"]["id"].as_str().unwrap().to_string());
            break;
        }
        assert!(Instant::now() < deadline, "writes did not resume: {s} {v}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (_, summary) = send(
        &client,
        format!("{}/api/status/summary", server.base),
        VIEWER_KEY,
        None,
    )
    .await;
    assert_eq!(
        summary["components"]["store"]["status"], "healthy",
        "{summary}"
    );

    // A clean stop, then every acknowledged job is there.
    server.signal("TERM");
    let (code, _) = server.wait(Duration::from_secs(15));
    assert_eq!(code, Some(0));
    let server = Process::start(&home, ENV);
    for id in &acked {
        let (s, v) = send(
            &client,
            format!("{}/api/job/{id}", server.base),
            VIEWER_KEY,
            None,
        )
        .await;
        assert_eq!(s, 200, "acknowledged job {id} lost: {v}");
    }
    drop(server);
}
