//! The disaster-recovery and maintenance subcommands: `backup`, `backup verify FILE`,
//! `backup list`, `restore FILE`, `db compact`, `db check --deep` and the extra lines
//! of `db stats`. Long work shows an indicatif bar on a terminal, plain lines otherwise.

use std::io::{BufWriter, IsTerminal};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::Value;

use crate::backup::{self, Backups, archive, format};
use crate::cli::home_dir;
use crate::clock::{Clock, rfc3339};
use crate::config::{BackupAction, Config, HomeArg, ServeArgs};
use crate::store::{SCHEMA_VERSION, SledTarget, Store, StoreError};

/// Progress for long work: a bar on a terminal, a plain line at most every 2 s
/// otherwise (logs and cron mails stay short).
struct Progress {
    label: &'static str,
    bar: Option<ProgressBar>,
    last: Mutex<Option<Instant>>,
}

impl Progress {
    fn new(label: &'static str) -> Progress {
        let bar = std::io::stderr().is_terminal().then(|| {
            let b = ProgressBar::new(0);
            if let Ok(style) =
                ProgressStyle::with_template("{msg:>10} [{bar:40}] {pos}/{len} records ({elapsed})")
            {
                b.set_style(style.progress_chars("=> "));
            }
            b.set_message(label);
            b
        });
        Progress {
            label,
            bar,
            last: Mutex::new(None),
        }
    }

    fn report(&self, done: u64, total: u64) {
        if let Some(b) = &self.bar {
            b.set_length(total.max(done));
            b.set_position(done);
            return;
        }
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        let due = last.is_none_or(|t| t.elapsed() >= Duration::from_secs(2));
        if due || (total > 0 && done == total) {
            *last = Some(Instant::now());
            match total {
                0 => eprintln!("{}: {done} records", self.label),
                t => eprintln!("{}: {done}/{t} records", self.label),
            }
        }
    }

    fn done(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}

fn config(home: &HomeArg) -> anyhow::Result<Config> {
    Ok(Config::load(&ServeArgs {
        home: home.clone(),
        bind: None,
    })?)
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

fn stamp() -> String {
    chrono::Utc::now().format("%Y%m%dT%H%M%SZ").to_string()
}

/// `echopilot backup [verify FILE | list]`.
pub fn backup(home: HomeArg, action: Option<BackupAction>) -> anyhow::Result<()> {
    let config = config(&home)?;
    match action {
        None => match Store::open(&config.home) {
            Ok(store) => backup_here(&config, &store),
            Err(StoreError::AlreadyRunning { .. }) => backup_via_server(home),
            Err(e) => Err(e.into()),
        },
        Some(BackupAction::Verify { file }) => {
            let backups = crate::app::backup::open(&config, None, Clock::system());
            let p = Progress::new("verify");
            let r = backups.verify(&file, Some(&|d, t| p.report(d, t)));
            p.done();
            let v = r.map_err(|e| anyhow::anyhow!("verification failed: {e}"))?;
            println!("ok: {} verified", file.display());
            println!("created_at: {}", v.header.created_at);
            println!(
                "app: {} ({}), schema {}",
                v.header.app_version, v.header.commit, v.header.schema_version
            );
            println!("sha256: {}", v.sha256);
            for (tree, n) in &v.counts {
                println!("tree {tree}: {n} records");
            }
            println!("restored into a scratch store in {:.2}s", v.secs);
            Ok(())
        }
        Some(BackupAction::List) => {
            let backups = crate::app::backup::open(&config, None, Clock::system());
            let list = backups.list().map_err(|e| anyhow::anyhow!("{e}"))?;
            if list.is_empty() {
                println!("no snapshots in {}", backups.dir().display());
            }
            for e in list {
                let verified = match &e.verified {
                    None => "not verified".to_string(),
                    Some(v) if v.ok => format!("verified {}", v.at),
                    Some(v) => format!("FAILED verification {}", v.at),
                };
                println!(
                    "{}  {:>10}  {}  {} records  {verified}",
                    e.name,
                    mib(e.size_bytes),
                    e.created_at,
                    e.records
                );
            }
            Ok(())
        }
    }
}

fn print_taken(t: &backup::Taken) {
    println!("file: {}", t.path.display());
    println!("size: {} ({} bytes)", mib(t.size_bytes), t.size_bytes);
    println!("records: {}", t.header.records);
    for tree in &t.header.trees {
        println!("tree {}: {} records", tree.name, tree.records);
    }
    println!("sha256: {}", t.sha256);
}

fn backup_here(config: &Config, store: &Store) -> anyhow::Result<()> {
    let backups = crate::app::backup::open(config, Some(store), Clock::system());
    let p = Progress::new("snapshot");
    let taken = backups.take(Some(&|d, t| p.report(d, t)));
    p.done();
    let taken = taken.map_err(|e| anyhow::anyhow!("snapshot failed: {e}"))?;
    print_taken(&taken);
    println!("took {:.2}s", taken.secs);
    let p = Progress::new("verify");
    let v = backups.verify(&taken.path, Some(&|d, t| p.report(d, t)));
    p.done();
    let v = v.map_err(|e| anyhow::anyhow!("the new snapshot failed verification: {e}"))?;
    println!("verified: ok ({:.2}s)", v.secs);
    for name in backups.prune().map_err(|e| anyhow::anyhow!("{e}"))? {
        println!("removed {name} (BACKUP_KEEP={})", backups.settings().keep);
    }
    copy_off(&backups, &taken.path)
}

fn copy_off(backups: &Backups, path: &Path) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    match rt.block_on(backups.copy_off(path)) {
        Ok(None) => {}
        Ok(Some(_)) => println!("copied: BACKUP_COPY_COMMAND succeeded"),
        Err(e) => bail!("{e}"),
    }
    Ok(())
}

fn backup_via_server(home: HomeArg) -> anyhow::Result<()> {
    let (base, key) = crate::cli::server(home)?;
    let url = format!("{base}/api/backups");
    eprintln!("a server holds the store: asking it ({url})");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let mut req = reqwest::Client::new().post(&url);
        if let Some(k) = &key {
            req = req.header(crate::auth::KEY_HEADER, k);
        }
        let resp = req
            .send()
            .await
            .with_context(|| format!("the server holds the store, but {url} does not answer"))?;
        let status = resp.status();
        let v: Value = resp.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            bail!(
                "{url} answered {status}: {} (an admin key goes in DASHBOARD_KEY or ECHOPILOT_KEY)",
                v["error"]
            );
        }
        let b = &v["backup"];
        println!("file: {}", b["path"].as_str().unwrap_or_default());
        let size = b["size_bytes"].as_u64().unwrap_or(0);
        println!("size: {} ({size} bytes)", mib(size));
        println!("records: {}", b["records"]);
        if let Some(trees) = b["trees"].as_object() {
            for (tree, n) in trees {
                println!("tree {tree}: {n} records");
            }
        }
        println!("sha256: {}", b["sha256"].as_str().unwrap_or_default());
        println!("verified: {}", b["verified"]);
        Ok(())
    })
}

/// Move `from` to `to`, creating `to`'s parent.
fn move_to(from: &Path, to: &Path) -> anyhow::Result<()> {
    if let Some(p) = to.parent() {
        std::fs::create_dir_all(p).with_context(|| format!("while creating {}", p.display()))?;
    }
    std::fs::rename(from, to)
        .with_context(|| format!("while moving {} to {}", from.display(), to.display()))
}

/// `echopilot restore FILE`: verify and restore into a staging store, then swap it in;
/// the old store and logs are moved aside. Refuses while a server runs on the home.
pub fn restore(home: HomeArg, file: &Path) -> anyhow::Result<()> {
    let dir = home_dir(&home);
    let lock = match Store::lock_home(&dir) {
        Ok(l) => l,
        Err(StoreError::AlreadyRunning { path }) => bail!(
            "refusing to restore: a server is running on {} (lock {} is held); stop it first",
            dir.display(),
            path.display()
        ),
        Err(e) => return Err(e.into()),
    };
    let (header, body_at, sha) =
        format::check(file).map_err(|e| anyhow::anyhow!("not restoring: {e}"))?;
    if header.schema_version > SCHEMA_VERSION {
        bail!(
            "not restoring: the snapshot has schema version {}, newer than this binary's {SCHEMA_VERSION}",
            header.schema_version
        );
    }
    let at = stamp();
    let data = dir.join("data");
    let staging = data.join(format!(".restore-{at}"));
    let p = Progress::new("restore");
    let restored = (|| {
        let sink = backup::store::SnapshotTarget::open(&SledTarget, &staging)?;
        format::restore(file, &header, body_at, sink.as_ref(), &|d, t| {
            p.report(d, t)
        })
    })();
    p.done();
    if let Err(e) = restored {
        let _ = std::fs::remove_dir_all(&staging);
        bail!("not restoring: {e}");
    }
    let live = data.join("echopilot.sled");
    let aside = data.join(format!("echopilot.sled.before-restore-{at}"));
    if live.exists() {
        move_to(&live, &aside)?;
        println!("moved the old store to {}", aside.display());
    }
    move_to(&staging.join("data").join("echopilot.sled"), &live)?;
    let _ = std::fs::remove_dir_all(&staging);

    // The old logs belong to the old chain: moved where `audit verify` does not look.
    let logs = dir.join("logs");
    let old_logs = logs.join(format!("before-restore-{at}"));
    if let Ok(rd) = std::fs::read_dir(&logs) {
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            if name.starts_with("before-restore-") {
                continue;
            }
            move_to(&e.path(), &old_logs.join(&name))?;
        }
        println!("moved the old logs to {}", old_logs.display());
    }
    drop(lock);
    let store = Store::open(&dir)?;
    let job_store = crate::store::sled_impl::jobs::SledJobs::open(&store)?;
    // The checkpoint below makes these changes durable: their commits need no awaiting.
    let (jobs, _recovered) = crate::jobs::Jobs::open(Arc::new(job_store), Clock::system())?;
    let (stuck, _marked) =
        jobs.mark_all_stuck("restored from a snapshot: the worker that ran it is gone")?;
    let events = write_audit_file(&store, &logs)?;
    store.checkpoint()?;
    println!("ok: restored {} (sha256 {sha})", file.display());
    println!("snapshot taken at {}", header.created_at);
    for t in &header.trees {
        println!("tree {}: {} records", t.name, t.records);
    }
    println!("running jobs marked stuck: {stuck}");
    println!(
        "audit: {events} events written to {}",
        logs.join("ndjson").join("audit.ndjson").display()
    );
    Ok(())
}

/// Bring `logs/ndjson/audit.ndjson` level with the restored trail.
fn write_audit_file(store: &Store, logs: &Path) -> anyhow::Result<u64> {
    let path = logs.join("ndjson").join("audit.ndjson");
    std::fs::create_dir_all(logs.join("ndjson"))?;
    let audit = crate::audit::Audit::open_for_verify(
        Arc::new(crate::store::sled_impl::audit::SledAudit::open(store)?),
        logs,
    )?;
    let mut out = BufWriter::new(
        std::fs::File::create(&path)
            .with_context(|| format!("while creating {}", path.display()))?,
    );
    let n = audit.write_all_lines(&mut out)?;
    out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    Ok(n)
}

/// `echopilot db check --deep`.
pub fn deep_check(store: &Store) -> anyhow::Result<()> {
    let r = crate::store::sled_impl::db_maintenance::deep_check(store)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    for (tree, n, decoded) in &r.trees {
        let how = if *decoded { "decoded" } else { "framed" };
        println!("tree {tree}: {n} records ({how})");
    }
    if !r.problems.is_empty() {
        for p in &r.problems {
            println!("problem: {p}");
        }
        bail!("deep check found {} problems", r.problems.len());
    }
    println!(
        "ok: every record reads back (schema version {})",
        crate::store::meta::schema_version(store)?
    );
    Ok(())
}

/// The lines `db stats` adds: oldest and newest record times, archive and backup sizes.
pub fn print_stats_extra(store: &Store, home: &Path) -> anyhow::Result<()> {
    for (tree, (first, last)) in crate::store::sled_impl::db_maintenance::tree_times(store)? {
        let show = |t: Option<chrono::DateTime<chrono::Utc>>| t.map(rfc3339).unwrap_or("-".into());
        println!("tree {tree}: oldest {} newest {}", show(first), show(last));
    }
    println!(
        "archive_bytes: {}",
        archive::size_of(&home.join("logs").join("archive"))
    );
    Ok(())
}

/// The same lines, from the server's `/api/db/stats`.
pub fn print_remote_stats_extra(v: &Value) {
    if let Some(times) = v["times"].as_object() {
        for (tree, t) in times {
            let show = |k: &str| t[k].as_str().unwrap_or("-").to_string();
            println!(
                "tree {tree}: oldest {} newest {}",
                show("oldest"),
                show("newest")
            );
        }
    }
    println!("archive_bytes: {}", v["archive_bytes"]);
}

/// `echopilot db compact`: the store rewritten through the snapshot path into a fresh
/// one, swapped in once its counts match.
pub fn compact(home: &Path) -> anyhow::Result<()> {
    let store = match Store::open(home) {
        Ok(s) => s,
        Err(StoreError::AlreadyRunning { .. }) => {
            bail!("a server holds the store on this home: stop it before db compact")
        }
        Err(e) => return Err(e.into()),
    };
    let live: PathBuf = store.path().to_path_buf();
    let before = archive::size_of(&live);
    let at = stamp();
    let data = home.join("data");
    let staging = data.join(format!(".compact-{at}"));
    let p = Progress::new("compact");
    let copied = (|| {
        let sink = backup::store::SnapshotTarget::open(&SledTarget, &staging)?;
        backup::copy_store(&store, sink.as_ref(), &|d, t| p.report(d, t))
    })();
    p.done();
    let counts = match copied {
        Ok(c) => c,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&staging);
            bail!("compaction failed, the store is unchanged: {e}");
        }
    };
    drop(store);
    let old = data.join(format!(".echopilot.sled.compacted-{at}"));
    move_to(&live, &old)?;
    move_to(&staging.join("data").join("echopilot.sled"), &live)?;
    let _ = std::fs::remove_dir_all(&staging);
    let store = Store::open(home)?;
    let now: Vec<(String, u64)> = store
        .tree_counts()
        .into_iter()
        .map(|(n, c)| (n, c as u64))
        .collect();
    if now != counts {
        drop(store);
        // Put the old store back: nothing is lost.
        let _ = std::fs::rename(
            &live,
            data.join(format!(".echopilot.sled.failed-compact-{at}")),
        );
        move_to(&old, &live)?;
        bail!("the compacted store does not hold the same records; the old one is back");
    }
    std::fs::remove_dir_all(&old).with_context(|| format!("while removing {}", old.display()))?;
    let after = archive::size_of(&live);
    println!("ok: compacted {}", live.display());
    println!("size before: {} ({before} bytes)", mib(before));
    println!("size after: {} ({after} bytes)", mib(after));
    for (tree, n) in &counts {
        println!("tree {tree}: {n} records");
    }
    Ok(())
}

/// `echopilot logs prune`: log retention now.
pub fn prune_logs(home: &HomeArg) -> anyhow::Result<()> {
    let config = config(home)?;
    let days = config.backup.log_archive_keep_days;
    let r = archive::prune(&config.logs_dir(), days, chrono::Utc::now())
        .context("while pruning logs/archive")?;
    for f in &r.folders {
        println!("removed {}", f.display());
    }
    if let Some((first, last)) = r.audit_range {
        println!("audit events pruned so far: seq {first}..{last} (recorded for audit verify)");
    }
    println!(
        "ok: {} archive folders older than {days} days removed",
        r.folders.len()
    );
    Ok(())
}
