//! Homes keep working: a home written by an earlier release (`tests/fixtures/home-v1`,
//! see `tests/fixtures/README.md`) opens in this binary with its jobs, schedule and
//! audit chain; a home from a newer schema is refused before anything is read or written.

mod helpers;

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use helpers::{ADMIN_KEY, Process, bin};
use serde_json::Value;

/// Copy the fixture home into a fresh temp dir (tests never write to the fixture).
fn fixture_home() -> tempfile::TempDir {
    fn copy(from: &Path, to: &Path) {
        std::fs::create_dir_all(to).unwrap();
        for entry in std::fs::read_dir(from).unwrap() {
            let entry = entry.unwrap();
            let target = to.join(entry.file_name());
            if entry.file_type().unwrap().is_dir() {
                copy(&entry.path(), &target);
            } else {
                std::fs::copy(entry.path(), &target).unwrap();
            }
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/home-v1");
    assert!(
        src.join("data/echopilot.sled/db").exists(),
        "the fixture home has no store: {}",
        src.display()
    );
    copy(&src, dir.path());
    dir
}

async fn get(client: &reqwest::Client, p: &Process, path: &str) -> Value {
    let resp = client
        .get(format!("{}{path}", p.base))
        .header("X-Dash-Key", ADMIN_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "{path}");
    resp.json().await.unwrap()
}

#[test]
fn a_home_written_by_the_previous_release_opens_with_everything_in_it() {
    let home = fixture_home();
    let mut p = Process::start(home.path(), &[("STUCK_REQUEUE_AFTER_SECS", "0")]);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let client = reqwest::Client::new();
    rt.block_on(async {
        let v = get(&client, &p, "/api/jobs?limit=100").await;
        let statuses: HashMap<String, String> = v["jobs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|j| {
                (
                    j["id"].as_str().unwrap().to_string(),
                    j["status"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        // Time moved on since the fixture was made: a backoff or a delay may have run
        // out (scheduled → queued), a lease certainly did (running → stuck; re-queueing
        // stuck jobs is off here).
        let expected: [(&str, &[&str]); 6] = [
            ("01a230bb-e1da-7329-85c2-eb18b810b281", &["succeeded"]),
            (
                "01a230bb-e1ed-77f0-bb2d-5a08243cead0",
                &["scheduled", "queued"],
            ),
            (
                "01a230bb-e1fd-76de-ae3a-e59e9b2d85a6",
                &["running", "stuck"],
            ),
            ("01a230bb-e20c-750e-b92e-09795cb9b82a", &["cancelled"]),
            ("01a230bb-e217-730f-b32d-ed590d3be64c", &["queued"]),
            (
                "01a230bb-e22c-77ed-89e6-d5c84bae21ce",
                &["scheduled", "queued"],
            ),
        ];
        assert_eq!(statuses.len(), expected.len(), "{statuses:?}");
        for (id, allowed) in expected {
            let got = statuses.get(id).map(String::as_str).unwrap_or("missing");
            assert!(allowed.contains(&got), "{id}: {got}");
        }
        let done = get(&client, &p, "/api/job/01a230bb-e1da-7329-85c2-eb18b810b281").await;
        assert_eq!(done["job"]["result"]["sent"], true);
        assert_eq!(done["job"]["payload"]["n"], 1);
        let failed = get(&client, &p, "/api/job/01a230bb-e1ed-77f0-bb2d-5a08243cead0").await;
        assert_eq!(failed["job"]["last_error"], "smtp timeout");
        let running = get(&client, &p, "/api/job/01a230bb-e1fd-76de-ae3a-e59e9b2d85a6").await;
        assert_eq!(running["job"]["worker"], "w1");

        // The counts were rebuilt from the records.
        let stats = get(&client, &p, "/api/jobs/stats").await;
        let t = &stats["totals"];
        let waiting = t["queued"].as_u64().unwrap() + t["scheduled"].as_u64().unwrap();
        assert_eq!(waiting, 3, "{stats}");
        let held = t["running"].as_u64().unwrap() + t["stuck"].as_u64().unwrap();
        assert_eq!(held, 1, "{stats}");
        assert_eq!(t["succeeded"], 1, "{stats}");
        assert_eq!(t["cancelled"], 1, "{stats}");

        let v = get(&client, &p, "/api/schedules").await;
        let nightly = v["schedules"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == "nightly-report")
            .expect("the schedule survived");
        assert_eq!(nightly["cron"], "0 3 * * *");
        assert_eq!(nightly["queue"], "reports");

        let v = get(&client, &p, "/api/audit?limit=1000").await;
        let events = v["events"].as_array().unwrap();
        assert!(events.iter().any(|e| e["action"] == "job.cancel"), "{v}");
        assert!(events.iter().any(|e| e["ok"] == false), "{v}");
    });
    p.signal("TERM");
    p.wait(Duration::from_secs(10));

    // The chain over the old events and the ones this start added is intact.
    let out = bin(home.path()).args(["audit", "verify"]).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("audit chain intact"), "{stdout}");
}

#[test]
fn a_home_from_a_newer_schema_is_refused_untouched() {
    let home = fixture_home();
    let store = home.path().join("data/echopilot.sled");
    // Say the home was written by a later release: schema version 3 (the codec's
    // version byte 1, then bincode's varint 3).
    let instance_before = {
        let db = sled::open(&store).unwrap();
        let meta = db.open_tree("meta").unwrap();
        meta.insert("schema_version", vec![1u8, 3]).unwrap();
        db.flush().unwrap();
        meta.get("instance").unwrap()
    };
    assert!(instance_before.is_some());
    let audit = home.path().join("logs/ndjson/audit.ndjson");
    let audit_before = std::fs::read(&audit).unwrap();

    let out = bin(home.path())
        .args(["serve", "--bind", "127.0.0.1:0"])
        .env("ALLOW_DIRTY", "true")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("schema version 3, newer than this binary's 2"),
        "{stderr}"
    );

    // Nothing was read into a server nor written: no boot recorded, no audit line.
    let db = sled::open(&store).unwrap();
    let meta = db.open_tree("meta").unwrap();
    assert_eq!(meta.get("instance").unwrap(), instance_before);
    assert_eq!(
        meta.get("schema_version").unwrap().unwrap().as_ref(),
        [1, 3]
    );
    assert_eq!(std::fs::read(&audit).unwrap(), audit_before);
}
