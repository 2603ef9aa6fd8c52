//! Disaster recovery: snapshots beside a writer, restore, verify, retention, the
//! schedule, compaction, log retention and the runbook's own commands.

mod helpers;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use echopilot::audit::Event;
use echopilot::backup::store::SnapshotSource;
use echopilot::jobs::{Job, Status};
use echopilot::store::{Store, codec};
use helpers::{ADMIN_KEY, Process, TestApp, VIEWER_KEY, bin};
use serde_json::{Value, json};

type Raw = BTreeMap<String, BTreeMap<Vec<u8>, Vec<u8>>>;

/// Every record of every tree, as stored.
fn raw(store: &Store) -> Raw {
    let mut out = Raw::new();
    store
        .read_snapshot(&mut |view| {
            for tree in view.trees() {
                let mut m = BTreeMap::new();
                view.records(&tree, &mut |k, v| {
                    m.insert(k.to_vec(), v.to_vec());
                    Ok(())
                })?;
                out.insert(tree, m);
            }
            Ok(())
        })
        .unwrap();
    out
}

fn raw_of(home: &Path) -> Raw {
    raw(&Store::open(home).unwrap())
}

fn run(cmd: &mut Command) -> (bool, String) {
    let Output {
        status,
        stdout,
        stderr,
    } = cmd.output().expect("run echopilot");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&stdout),
        String::from_utf8_lossy(&stderr)
    );
    (status.success(), text)
}

fn snapshots(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "snap"))
        .collect();
    v.sort();
    v
}

fn job_create_targets(r: &Raw) -> BTreeSet<String> {
    r["audit"]
        .values()
        .map(|v| codec::decode::<Event>(v).unwrap())
        .filter(|e| e.action == "job.create" && e.ok)
        .map(|e| e.target.trim_start_matches("job:").to_string())
        .collect()
}

fn job_ids(r: &Raw) -> BTreeSet<String> {
    r["jobs"]
        .keys()
        .map(|k| uuid::Uuid::from_slice(k).unwrap().to_string())
        .collect()
}

/// Every job has the audit event of its creation, and every such event its job.
fn assert_point_in_time(r: &Raw) {
    let jobs = job_ids(r);
    let events = job_create_targets(r);
    let without_event: Vec<_> = jobs.difference(&events).collect();
    let without_job: Vec<_> = events.difference(&jobs).collect();
    assert!(
        without_event.is_empty() && without_job.is_empty(),
        "jobs without their audit event: {without_event:?}; events without their job: {without_job:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn snapshot_beside_a_writer_is_point_in_time_and_restores_every_record() {
    // Eight writers outrun one client's fair share: limits off.
    let app = TestApp::spawn_with(&[("RATE_LIMIT_PER_MIN", "0")]).await;
    // A job a worker holds when the snapshot is taken: it must come back stuck.
    let held = app.enqueue_id(json!({"kind": "email"})).await;
    let (s, v) = app
        .claim(json!({"worker": "w1", "kinds": ["email"], "lease_secs": 600}))
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["job"]["id"], held.as_str());

    let stop = Arc::new(AtomicBool::new(false));
    let mut writers = Vec::new();
    for w in 0..8 {
        let (base, client, stop) = (app.base.clone(), app.client.clone(), stop.clone());
        writers.push(tokio::spawn(async move {
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) && n < 400 {
                let r = client
                    .post(format!("{base}/api/jobs"))
                    .header("X-Dash-Key", helpers::OPERATOR_KEY)
                    .json(&json!({"kind": "report", "payload": {"writer": w, "n": n}}))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status().as_u16(), 201);
                n += 1;
            }
            n
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Point-in-time reads of the live store while the writers run.
    for _ in 0..5 {
        let store = app.state.store.clone();
        let view = tokio::task::spawn_blocking(move || raw(&store))
            .await
            .unwrap();
        assert_point_in_time(&view);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let b = app.state.backups.clone();
    let taken = tokio::task::spawn_blocking(move || b.take(None))
        .await
        .unwrap()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.store(true, Ordering::Relaxed);
    let mut written = 0;
    for w in writers {
        written += w.await.unwrap();
    }
    let source = raw(&app.state.store);
    let home = app.home.clone();

    // Restore into a new home with the real binary.
    let new_home = tempfile::tempdir().unwrap();
    let (ok, out) = run(bin(new_home.path()).arg("restore").arg(&taken.path));
    assert!(ok, "{out}");
    assert!(out.contains("running jobs marked stuck: 1"), "{out}");
    let restored = raw_of(new_home.path());

    // Point in time: every job has the audit event of its creation, and no event names
    // a job that is missing.
    assert_point_in_time(&restored);
    let in_snapshot = job_ids(&restored).len();
    assert!(
        in_snapshot > 1,
        "the snapshot holds only {in_snapshot} jobs"
    );
    assert!(
        job_ids(&source).len() > in_snapshot,
        "the writer added nothing after the snapshot ({written} written)"
    );
    assert_eq!(
        taken
            .header
            .trees
            .iter()
            .find(|t| t.name == "jobs")
            .unwrap()
            .records as usize,
        in_snapshot
    );

    // Every restored record is the source's: audit is a prefix of the source's chain,
    // jobs are byte for byte the same (the held one came back stuck).
    let audit = &restored["audit"];
    for (i, (k, v)) in audit.iter().enumerate() {
        assert_eq!(
            u64::from_be_bytes(k.as_slice().try_into().unwrap()),
            i as u64 + 1
        );
        assert_eq!(source["audit"].get(k), Some(v), "audit seq {}", i + 1);
    }
    let held_key = uuid::Uuid::parse_str(&held).unwrap().as_bytes().to_vec();
    for (k, v) in &restored["jobs"] {
        if *k == held_key {
            let j: Job = codec::decode(v).unwrap();
            assert_eq!(j.status, Status::Stuck, "{j:?}");
        } else {
            assert_eq!(source["jobs"].get(k), Some(v));
        }
    }

    // The restored home's audit files and store agree.
    let (ok, out) = run(bin(new_home.path()).args(["audit", "verify"]));
    assert!(ok, "{out}");
    assert!(out.contains("store chain intact"), "{out}");

    // A quiet snapshot (server stopped, taken by the CLI) restores every tree exactly.
    let _keep = app.stop().await;
    let (ok, out) = run(bin(&home).arg("backup"));
    assert!(ok, "{out}");
    let before = raw_of(&home);
    let newest = snapshots(&home.join("backups/disaster_recovery"))
        .pop()
        .unwrap();
    let other = tempfile::tempdir().unwrap();
    let (ok, out) = run(bin(other.path()).arg("restore").arg(&newest));
    assert!(ok, "{out}");
    let mut after = raw_of(other.path());
    let mut before = before;
    // The held job is running in the source and stuck after the restore.
    before.get_mut("jobs").unwrap().remove(&held_key);
    after.get_mut("jobs").unwrap().remove(&held_key);
    for r in [&mut before, &mut after] {
        r.get_mut("jobs_running").unwrap().clear();
        // The status index names it by (status, id): running before, stuck after.
        if let Some(by_status) = r.get_mut("jobs_status") {
            by_status.retain(|k, _| !k.ends_with(&held_key));
        }
        // Its (queue, kind) counts one running before and one stuck after.
        r.remove("jobs_counts");
    }
    assert_eq!(before, after);
}

#[tokio::test]
async fn a_flipped_byte_and_a_truncated_file_fail_verify_with_a_clear_message() {
    let app = TestApp::spawn().await;
    for _ in 0..5 {
        app.enqueue_id(json!({"kind": "email"})).await;
    }
    let (s, v) = app.post("/api/backups", Some(ADMIN_KEY), json!({})).await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["backup"]["verified"], true);
    let name = v["backup"]["name"].as_str().unwrap().to_string();
    let path = PathBuf::from(v["backup"]["path"].as_str().unwrap());
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&path).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);

    let bytes = std::fs::read(&path).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let flipped = dir.path().join("flipped.snap");
    let mut f = bytes.clone();
    let mid = f.len() / 2;
    f[mid] ^= 0x01;
    std::fs::write(&flipped, &f).unwrap();
    let (ok, out) = run(bin(dir.path()).args(["backup", "verify"]).arg(&flipped));
    assert!(!ok, "{out}");
    assert!(out.contains("checksum mismatch"), "{out}");

    let truncated = dir.path().join("truncated.snap");
    std::fs::write(&truncated, &bytes[..bytes.len() - 100]).unwrap();
    let (ok, out) = run(bin(dir.path()).args(["backup", "verify"]).arg(&truncated));
    assert!(!ok, "{out}");
    assert!(out.contains("truncated"), "{out}");

    let (ok, out) = run(bin(dir.path()).args(["backup", "verify"]).arg(&path));
    assert!(ok, "{out}");

    // Damaged in place: the API's verify fails, raises a critical alert and audits it.
    std::fs::write(&path, &f).unwrap();
    let (s, v) = app
        .post(
            &format!("/api/backups/{name}/verify"),
            Some(ADMIN_KEY),
            json!({}),
        )
        .await;
    assert_eq!(s, 422, "{v}");
    assert!(
        v["error"].as_str().unwrap().contains("checksum mismatch"),
        "{v}"
    );
    let (_, alerts) = app.get("/api/alerts?state=firing", Some(VIEWER_KEY)).await;
    let alert = alerts["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == "backup_verify_failed")
        .cloned()
        .unwrap_or_else(|| panic!("no alert in {alerts}"));
    assert_eq!(alert["severity"], "critical");
    let (_, audit) = app
        .get("/api/audit?action=backup.verify&ok=false", Some(VIEWER_KEY))
        .await;
    assert_eq!(audit["events"].as_array().unwrap().len(), 1, "{audit}");
    let (_, list) = app.get("/api/backups", Some(VIEWER_KEY)).await;
    assert_eq!(list["backups"][0]["verified"], false, "{list}");
    // A name that is not a snapshot's is refused before touching the disk.
    let (s, _) = app
        .post("/api/backups/..%2Fetc/verify", Some(ADMIN_KEY), json!({}))
        .await;
    assert_eq!(s, 400);
    // A viewer may list, not take.
    let (s, _) = app.post("/api/backups", Some(VIEWER_KEY), json!({})).await;
    assert_eq!(s, 403);
}

#[tokio::test]
async fn backup_calls_are_audited_with_the_status_they_answered() {
    let app = TestApp::spawn().await;
    let (s, v) = app.post("/api/backups", Some(ADMIN_KEY), json!({})).await;
    assert_eq!(s, 201, "{v}");
    let name = v["backup"]["name"].as_str().unwrap().to_string();
    let (s, v) = app
        .post(
            &format!("/api/backups/{name}/verify"),
            Some(ADMIN_KEY),
            json!({}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let missing = "echopilot-20200101T000000Z.snap";
    let (s, v) = app
        .post(
            &format!("/api/backups/{missing}/verify"),
            Some(ADMIN_KEY),
            json!({}),
        )
        .await;
    assert_eq!(s, 404, "{v}");
    assert_eq!(v["ok"], false, "{v}");
    let (s, v) = app
        .post(
            "/api/backups/not-a-snapshot/verify",
            Some(ADMIN_KEY),
            json!({}),
        )
        .await;
    assert_eq!(s, 400, "{v}");

    let (_, created) = app
        .get("/api/audit?action=backup.create", Some(VIEWER_KEY))
        .await;
    let created = created["events"].as_array().unwrap().clone();
    assert_eq!(created.len(), 1, "{created:?}");
    assert_eq!(created[0]["status"], 201);
    assert_eq!(created[0]["ok"], true);
    assert_eq!(created[0]["target"], name.as_str());
    let (_, verified) = app
        .get("/api/audit?action=backup.verify", Some(VIEWER_KEY))
        .await;
    let verified = verified["events"].as_array().unwrap().clone();
    let mut got: Vec<(String, u64, bool)> = verified
        .iter()
        .map(|e| {
            (
                e["target"].as_str().unwrap().to_string(),
                e["status"].as_u64().unwrap(),
                e["ok"].as_bool().unwrap(),
            )
        })
        .collect();
    got.sort();
    let mut want = vec![
        (name.clone(), 200, true),
        (name.clone(), 200, true),
        (missing.to_string(), 404, false),
        ("not-a-snapshot".to_string(), 400, false),
    ];
    want.sort();
    assert_eq!(got, want);
    // The create's own verification step shares its request id.
    assert!(
        verified
            .iter()
            .any(|e| e["request_id"] == created[0]["request_id"] && e["target"] == name.as_str()),
        "{verified:?}"
    );
}

#[test]
fn restore_refuses_while_a_server_runs() {
    let home = tempfile::tempdir().unwrap();
    let _server = Process::start(home.path(), &[]);
    let (ok, out) = run(bin(home.path()).args(["restore", "some.snap"]));
    assert!(!ok, "{out}");
    assert!(out.contains("refusing to restore"), "{out}");
    assert!(home.path().join("data/echopilot.sled").is_dir());
}

#[tokio::test]
async fn retention_keeps_exactly_backup_keep() {
    let app = TestApp::spawn_with(&[("BACKUP_KEEP", "3")]).await;
    for _ in 0..5 {
        let (s, v) = app.post("/api/backups", Some(ADMIN_KEY), json!({})).await;
        assert_eq!(s, 201, "{v}");
    }
    let dir = app.home.join("backups/disaster_recovery");
    assert_eq!(snapshots(&dir).len(), 3);
    let (_, list) = app.get("/api/backups", Some(VIEWER_KEY)).await;
    let names: Vec<&str> = list["backups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["name"].as_str().unwrap())
        .collect();
    assert_eq!(names.len(), 3);
    // Newest first, and the names sort by time.
    let mut sorted = names.clone();
    sorted.sort();
    sorted.reverse();
    assert_eq!(names, sorted);
    let (_, audit) = app
        .get("/api/audit?action=backup.create", Some(VIEWER_KEY))
        .await;
    assert_eq!(audit["events"].as_array().unwrap().len(), 5);
    let summary = app.summary().await;
    assert_eq!(
        summary["components"]["backups"]["status"], "healthy",
        "{summary}"
    );
}

#[tokio::test]
async fn the_scheduled_backup_fires_and_is_verified() {
    let app = TestApp::spawn_with(&[("BACKUP_CRON", "* * * * * *")]).await;
    let (_, schedules) = app.get("/api/schedules", Some(VIEWER_KEY)).await;
    let s = schedules["schedules"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "backup")
        .cloned()
        .unwrap_or_else(|| panic!("no backup schedule in {schedules}"));
    assert_eq!(s["kind"], "backup.snapshot");
    assert_eq!(s["source"], "builtin");
    let start = Instant::now();
    loop {
        let (_, list) = app.get("/api/backups", Some(VIEWER_KEY)).await;
        if list["backups"]
            .as_array()
            .unwrap()
            .iter()
            .any(|b| b["verified"] == true)
        {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "no verified scheduled backup: {list}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let metrics = app.client.get(app.url("/metrics")).send().await.unwrap();
    let text = metrics.text().await.unwrap();
    assert!(
        text.contains("echopilot_backup_last_verified_age_seconds "),
        "{text}"
    );
    // The run's audit event is written as the run ends, a moment after the list shows
    // the verified snapshot.
    let start = Instant::now();
    loop {
        let (_, audit) = app
            .get("/api/audit?action=backup.create", Some(VIEWER_KEY))
            .await;
        if !audit["events"][0].is_null() {
            assert_eq!(audit["events"][0]["actor"], "scheduler", "{audit}");
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(10), "{audit}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn compaction_and_deep_check_keep_every_record() {
    let app = TestApp::spawn().await;
    for i in 0..40 {
        app.enqueue_id(json!({"kind": "email", "payload": {"i": i}}))
            .await;
    }
    let (s, _) = app
        .claim(json!({"worker": "w1", "kinds": ["email"], "count": 3}))
        .await;
    assert_eq!(s, 200);
    let home = app.home.clone();
    let _keep = app.stop().await;
    let before = raw_of(&home);
    let (ok, out) = run(bin(&home).args(["db", "compact"]));
    assert!(ok, "{out}");
    assert!(
        out.contains("size before") && out.contains("size after"),
        "{out}"
    );
    assert_eq!(raw_of(&home), before);
    let (ok, out) = run(bin(&home).args(["db", "check", "--deep"]));
    assert!(ok, "{out}");
    assert!(out.contains("tree jobs: 40 records (decoded)"), "{out}");
    let (ok, out) = run(bin(&home).args(["db", "stats"]));
    assert!(ok, "{out}");
    assert!(out.contains("tree jobs: oldest 20"), "{out}");
    assert!(out.contains("archive_bytes:"), "{out}");
}

#[test]
fn the_runbook_backup_commands_work_as_written() {
    let home = tempfile::tempdir().unwrap();
    let exe = PathBuf::from(env!("CARGO_BIN_EXE_echopilot"));
    let path = format!(
        "{}:{}",
        exe.parent().unwrap().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/disaster_recovery.py");
    let (ok, out) = run(Command::new("python3")
        .arg(&script)
        .env_clear()
        .env("PATH", &path)
        .env("ECHOPILOT_HOME", home.path())
        .current_dir(home.path()));
    assert!(ok, "{out}");
    assert!(out.contains("verified: ok"), "{out}");
    let (ok, out) = run(Command::new("sh")
        .args(["-c", "ls -lh backups/disaster_recovery/ | tail -1"])
        .current_dir(home.path()));
    assert!(ok, "{out}");
    assert!(
        out.contains("echopilot-") && out.trim_end().ends_with("Z.snap"),
        "{out}"
    );
    assert!(out.starts_with("-rw-------"), "{out}");
}

#[tokio::test]
async fn log_retention_prunes_old_archives_and_verify_accepts_exactly_that_prefix() {
    let app = TestApp::spawn().await;
    for _ in 0..3 {
        app.enqueue_id(json!({"kind": "email"})).await;
    }
    let (s, v) = app
        .post("/api/logs/rotate", Some(ADMIN_KEY), json!({}))
        .await;
    assert_eq!(s, 200, "{v}");
    let logs = app.home.join("logs");
    let today = echopilot::backup::archive::folders(&logs).unwrap();
    assert_eq!(today.len(), 1);
    std::fs::rename(&today[0].1, logs.join("archive/20200101")).unwrap();
    for _ in 0..2 {
        app.enqueue_id(json!({"kind": "email"})).await;
    }
    let home = app.home.clone();
    let _keep = app.stop().await;
    let removed = echopilot::backup::archive::prune(&logs, 90, chrono::Utc::now()).unwrap();
    assert_eq!(removed.folders.len(), 1);
    // The folder held the first three job.create events (and maybe the rotation's).
    let (first, last) = removed.audit_range.unwrap();
    assert_eq!(first, 1);
    assert!(last >= 3, "{last}");
    let (ok, out) = run(bin(&home).args(["audit", "verify"]));
    assert!(ok, "{out}");
    assert!(out.contains(&format!("seq {}..", last + 1)), "{out}");
    // Without the record, the missing prefix is a break.
    let record = logs.join("archive/audit-pruned.json");
    let saved = std::fs::read_to_string(&record).unwrap();
    std::fs::remove_file(&record).unwrap();
    let (ok, out) = run(bin(&home).args(["audit", "verify"]));
    assert!(!ok, "{out}");
    assert!(out.contains("are missing"), "{out}");
    // A record claiming a shorter range does not cover the gap either.
    let mut p: Value = serde_json::from_str(&saved).unwrap();
    p["through_seq"] = json!(last - 1);
    std::fs::write(&record, p.to_string()).unwrap();
    let (ok, out) = run(bin(&home).args(["audit", "verify"]));
    assert!(!ok, "{out}");
}

/// Rewrite `path` so its first event is forged (another target, any `prev_hash`) and
/// every later line re-chained to it: only the link to the pruned prefix can tell.
fn forge_first_line(path: &Path) {
    let text = std::fs::read_to_string(path).unwrap();
    let mut prev: Option<String> = None;
    let mut out = String::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let mut e: Event = serde_json::from_str(line).unwrap();
        match &prev {
            None => {
                e.target = "job:forged".into();
                e.prev_hash = "f".repeat(64);
            }
            Some(h) => e.prev_hash = h.clone(),
        }
        e.hash = echopilot::audit::chain::hash_event(&e);
        prev = Some(e.hash.clone());
        out.push_str(&e.to_json_line());
        out.push('\n');
    }
    std::fs::write(path, out).unwrap();
}

#[tokio::test]
async fn verify_checks_the_link_across_the_pruned_prefix() {
    let app = TestApp::spawn().await;
    for _ in 0..3 {
        app.enqueue_id(json!({"kind": "email"})).await;
    }
    let (s, v) = app
        .post("/api/logs/rotate", Some(ADMIN_KEY), json!({}))
        .await;
    assert_eq!(s, 200, "{v}");
    let logs = app.home.join("logs");
    let today = echopilot::backup::archive::folders(&logs).unwrap();
    std::fs::rename(&today[0].1, logs.join("archive/20200101")).unwrap();
    for _ in 0..2 {
        app.enqueue_id(json!({"kind": "email"})).await;
    }
    let home = app.home.clone();
    let _keep = app.stop().await;
    echopilot::backup::archive::prune(&logs, 90, chrono::Utc::now()).unwrap();
    let pruned = echopilot::audit::chain::pruned(&logs).unwrap().unwrap();
    assert_eq!(pruned.last_hash.as_ref().map(String::len), Some(64));
    // The files alone (as while a server holds the store) link to the pruned prefix.
    let r = echopilot::audit::verify(&logs, None).unwrap();
    assert_eq!(r.first_seq, Some(pruned.through_seq + 1));

    let current = logs.join("ndjson/audit.ndjson");
    let saved = std::fs::read_to_string(&current).unwrap();
    forge_first_line(&current);
    let b = echopilot::audit::verify(&logs, None).unwrap_err();
    assert_eq!(b.seq, pruned.through_seq + 1, "{b}");
    assert!(b.reason.contains("prev_hash does not match"), "{b}");
    let (ok, out) = run(bin(&home).args(["audit", "verify"]));
    assert!(!ok, "{out}");
    assert!(
        out.contains(&format!("seq {}", pruned.through_seq + 1)),
        "{out}"
    );

    // A record as older releases wrote it, without the hash: accepted (the boundary
    // is not linked) rather than failing every such home until its next prune.
    std::fs::write(&current, saved).unwrap();
    let record = logs.join("archive/audit-pruned.json");
    let mut p: Value = serde_json::from_str(&std::fs::read_to_string(&record).unwrap()).unwrap();
    p.as_object_mut().unwrap().remove("last_hash");
    std::fs::write(&record, p.to_string()).unwrap();
    let r = echopilot::audit::verify(&logs, None).unwrap();
    assert_eq!(r.first_seq, Some(pruned.through_seq + 1));
}

#[tokio::test]
async fn backup_dir_and_copy_command_take_snapshots_off_the_host() {
    let elsewhere = tempfile::tempdir().unwrap();
    let off = tempfile::tempdir().unwrap();
    let cmd = format!("cp -t {}", off.path().display());
    let dir = elsewhere.path().display().to_string();
    let app = TestApp::spawn_with(&[("BACKUP_DIR", &dir), ("BACKUP_COPY_COMMAND", &cmd)]).await;
    let (s, v) = app.post("/api/backups", Some(ADMIN_KEY), json!({})).await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["backup"]["copied"], true, "{v}");
    let name = v["backup"]["name"].as_str().unwrap();
    assert!(elsewhere.path().join(name).is_file());
    assert!(off.path().join(name).is_file());
    let (_, audit) = app
        .get("/api/audit?action=backup.copy", Some(VIEWER_KEY))
        .await;
    assert_eq!(audit["events"][0]["ok"], true, "{audit}");

    // A failing copy keeps the snapshot, answers why and raises a warning.
    let app = TestApp::spawn_with(&[("BACKUP_COPY_COMMAND", "false")]).await;
    let (s, v) = app.post("/api/backups", Some(ADMIN_KEY), json!({})).await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["backup"]["copied"], false, "{v}");
    assert!(
        v["backup"]["copy_error"]
            .as_str()
            .unwrap()
            .contains("exited"),
        "{v}"
    );
    let (_, alerts) = app.get("/api/alerts?state=firing", Some(VIEWER_KEY)).await;
    assert!(
        alerts["alerts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["name"] == "backup_copy_failed" && a["severity"] == "warning"),
        "{alerts}"
    );
}
