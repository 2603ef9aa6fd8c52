//! Disaster recovery: point-in-time snapshots of every tree into
//! `BACKUP_DIR/echopilot-YYYYMMDDTHHMMSSZ.snap` (owner-only files, names that sort by
//! time), verification by restoring into a scratch store, listings, retention
//! (`BACKUP_KEEP`) and the off-host copy (`BACKUP_COPY_COMMAND`).
//!
//! Storage is reached only through [`store::SnapshotSource`] / [`store::SnapshotSink`];
//! the file layout is in [`format`]. Verification results are kept beside the
//! snapshots in `.verified/` (hidden, so `ls -lh … | tail -1` is the newest snapshot).

pub mod archive;
mod error;
pub mod format;
pub mod load;
pub mod store;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::clock::{Clock, rfc3339};
pub use error::BackupError;
use format::{Header, Origin, Progress};
use store::{SnapshotSource, SnapshotTarget};

#[cfg(test)]
mod tests;

/// The backup settings (`BACKUP_DIR`, `BACKUP_KEEP`, `BACKUP_COPY_COMMAND`).
#[derive(Debug, Clone)]
pub struct Settings {
    pub dir: PathBuf,
    pub keep: usize,
    /// A shell command; the snapshot's path is appended as its last argument.
    pub copy_command: Option<String>,
}

/// A snapshot on disk, as listed.
#[derive(Debug, Clone, Serialize)]
pub struct Entry {
    pub name: String,
    pub path: PathBuf,
    pub size_bytes: u64,
    pub created_at: String,
    pub records: u64,
    /// `None`: never verified.
    pub verified: Option<Verification>,
}

/// The outcome of one verification, kept in `.verified/<name>.json`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Verification {
    pub ok: bool,
    pub at: String,
    pub sha256: String,
    pub error: Option<String>,
}

/// A new snapshot.
#[derive(Debug, Clone)]
pub struct Taken {
    pub name: String,
    pub path: PathBuf,
    pub size_bytes: u64,
    pub header: Header,
    pub sha256: String,
    pub secs: f64,
}

impl Taken {
    pub fn to_json(&self) -> Value {
        json!({
            "name": self.name,
            "path": self.path.display().to_string(),
            "size_bytes": self.size_bytes,
            "created_at": self.header.created_at,
            "records": self.header.records,
            "trees": self.header.trees.iter().map(|t| (t.name.clone(), json!(t.records))).collect::<serde_json::Map<_, _>>(),
            "sha256": self.sha256,
            "secs": (self.secs * 1000.0).round() / 1000.0,
        })
    }
}

/// A verified snapshot.
#[derive(Debug, Clone)]
pub struct Verified {
    pub name: String,
    pub header: Header,
    pub sha256: String,
    pub counts: Vec<(String, u64)>,
    pub secs: f64,
}

impl Entry {
    pub fn to_json(&self) -> Value {
        json!({
            "name": self.name,
            "size_bytes": self.size_bytes,
            "created_at": self.created_at,
            "records": self.records,
            "verified": self.verified.as_ref().map(|v| v.ok),
            "verified_at": self.verified.as_ref().map(|v| v.at.clone()),
            "verify_error": self.verified.as_ref().and_then(|v| v.error.clone()),
        })
    }
}

/// A snapshot name: `echopilot-YYYYMMDDTHHMMSSZ.snap`.
pub fn name_for(t: DateTime<Utc>) -> String {
    format!("echopilot-{}.snap", t.format("%Y%m%dT%H%M%SZ"))
}

/// Is `name` one of ours (and nothing that could leave the folder)?
pub fn check_name(name: &str) -> Result<(), BackupError> {
    let ok = name.len() == "echopilot-YYYYMMDDTHHMMSSZ.snap".len()
        && name.starts_with("echopilot-")
        && name.ends_with("Z.snap")
        && name["echopilot-".len()..name.len() - "Z.snap".len()]
            .chars()
            .all(|c| c.is_ascii_digit() || c == 'T');
    if ok {
        Ok(())
    } else {
        Err(BackupError::Invalid(format!(
            "{name:?} is not a snapshot name (echopilot-YYYYMMDDTHHMMSSZ.snap)"
        )))
    }
}

/// The backups handle; cheap to clone.
#[derive(Clone)]
pub struct Backups {
    settings: Arc<Settings>,
    /// `None` where the store is not open here (a CLI verifying or listing files).
    source: Option<Arc<dyn SnapshotSource>>,
    target: Arc<dyn SnapshotTarget>,
    clock: Clock,
    origin: (String, String),
    /// Held while a snapshot is taken: a second one asked for meanwhile is refused.
    taking: Arc<std::sync::Mutex<()>>,
}

fn no_progress(_: u64, _: u64) {}

impl Backups {
    pub fn new(
        settings: Settings,
        source: Option<Arc<dyn SnapshotSource>>,
        target: Arc<dyn SnapshotTarget>,
        clock: Clock,
        app_version: &str,
        commit: &str,
    ) -> Backups {
        Backups {
            settings: Arc::new(settings),
            source,
            target,
            clock,
            origin: (app_version.to_string(), commit.to_string()),
            taking: Arc::default(),
        }
    }

    pub fn target(&self) -> &dyn SnapshotTarget {
        self.target.as_ref()
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    pub fn dir(&self) -> &Path {
        &self.settings.dir
    }

    /// Take a snapshot now (blocking: run it on a blocking thread). Writers keep going.
    pub fn take(&self, progress: Option<Progress<'_>>) -> Result<Taken, BackupError> {
        let Some(source) = &self.source else {
            return Err(BackupError::Invalid(
                "no store is open to take a snapshot of".into(),
            ));
        };
        let _taking = match self.taking.try_lock() {
            Ok(g) => g,
            Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => {
                return Err(BackupError::Busy(
                    "a snapshot is being taken right now; try again once it is done".into(),
                ));
            }
        };
        let dir = &self.settings.dir;
        std::fs::create_dir_all(dir).map_err(|e| BackupError::io(dir, e))?;
        let started = std::time::Instant::now();
        let now = self.clock.now();
        // Names sort by time; a second snapshot within the same second takes the next
        // free second, so the order still holds.
        let mut at = now;
        let path = loop {
            let p = dir.join(name_for(at));
            if !p.exists() {
                break p;
            }
            at += chrono::Duration::seconds(1);
        };
        let origin = Origin {
            app_version: self.origin.0.clone(),
            commit: self.origin.1.clone(),
            created_at: rfc3339(now),
        };
        let (header, sha256) = in_background(|| {
            format::write(
                source.as_ref(),
                &origin,
                &path,
                progress.unwrap_or(&no_progress),
            )
        })?;
        let size_bytes = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        Ok(Taken {
            name: path
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default()
                .to_string(),
            path,
            size_bytes,
            header,
            sha256,
            secs: started.elapsed().as_secs_f64(),
        })
    }

    /// The snapshot called `name` in the backup folder.
    pub fn path_of(&self, name: &str) -> Result<PathBuf, BackupError> {
        check_name(name)?;
        let p = self.settings.dir.join(name);
        if p.is_file() {
            Ok(p)
        } else {
            Err(BackupError::NotFound(name.to_string()))
        }
    }

    /// Verify the snapshot at `path`: checksum, restore into a scratch store, compare
    /// counts. When it lies in the backup folder the outcome is recorded for listings.
    pub fn verify(
        &self,
        path: &Path,
        progress: Option<Progress<'_>>,
    ) -> Result<Verified, BackupError> {
        let started = std::time::Instant::now();
        let scratch = self.scratch_dir();
        let result = in_background(|| verify_file(self.target.as_ref(), path, &scratch, progress));
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_string();
        let canon = |p: &Path| std::fs::canonicalize(p).ok();
        let ours = path
            .parent()
            .is_some_and(|p| canon(p).is_some() && canon(p) == canon(&self.settings.dir));
        if ours && check_name(&name).is_ok() {
            let v = match &result {
                Ok((_, sha, _)) => Verification {
                    ok: true,
                    at: rfc3339(self.clock.now()),
                    sha256: sha.clone(),
                    error: None,
                },
                Err(e) => Verification {
                    ok: false,
                    at: rfc3339(self.clock.now()),
                    sha256: String::new(),
                    error: Some(e.to_string()),
                },
            };
            self.record_verification(&name, &v)?;
        }
        let (header, sha256, counts) = result?;
        Ok(Verified {
            name,
            header,
            sha256,
            counts,
            secs: started.elapsed().as_secs_f64(),
        })
    }

    fn scratch_dir(&self) -> PathBuf {
        self.settings.dir.join(".verify")
    }

    fn verified_dir(&self) -> PathBuf {
        self.settings.dir.join(".verified")
    }

    fn record_verification(&self, name: &str, v: &Verification) -> Result<(), BackupError> {
        let dir = self.verified_dir();
        std::fs::create_dir_all(&dir).map_err(|e| BackupError::io(&dir, e))?;
        let path = dir.join(format!("{name}.json"));
        let text = serde_json::to_string(v).unwrap_or_default();
        std::fs::write(&path, text).map_err(|e| BackupError::io(&path, e))
    }

    fn verification(&self, name: &str) -> Option<Verification> {
        let path = self.verified_dir().join(format!("{name}.json"));
        let text = std::fs::read_to_string(path).ok()?;
        serde_json::from_str(&text).ok()
    }

    /// The snapshots in the backup folder, oldest first.
    pub fn list(&self) -> Result<Vec<Entry>, BackupError> {
        let dir = &self.settings.dir;
        let rd = match std::fs::read_dir(dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(BackupError::io(dir, e)),
        };
        let mut out = Vec::new();
        for f in rd {
            let Ok(f) = f else { continue };
            let name = f.file_name().to_string_lossy().to_string();
            if check_name(&name).is_err() {
                continue;
            }
            let path = f.path();
            let size_bytes = f.metadata().map(|m| m.len()).unwrap_or(0);
            let (created_at, records) = match format::read_header(&path) {
                Ok((h, _)) => (h.created_at, h.records),
                Err(_) => (String::new(), 0),
            };
            out.push(Entry {
                verified: self.verification(&name),
                name,
                path,
                size_bytes,
                created_at,
                records,
            });
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// Keep the `BACKUP_KEEP` newest snapshots; remove older ones. Returns the removed.
    pub fn prune(&self) -> Result<Vec<String>, BackupError> {
        let all = self.list()?;
        let keep = self.settings.keep.max(1);
        let mut removed = Vec::new();
        if all.len() > keep {
            for e in &all[..all.len() - keep] {
                std::fs::remove_file(&e.path).map_err(|err| BackupError::io(&e.path, err))?;
                let _ = std::fs::remove_file(self.verified_dir().join(format!("{}.json", e.name)));
                removed.push(e.name.clone());
            }
        }
        Ok(removed)
    }

    /// Run `BACKUP_COPY_COMMAND` with the snapshot's path; `Ok(None)` when none is set.
    pub async fn copy_off(&self, path: &Path) -> Result<Option<String>, BackupError> {
        let Some(cmd) = &self.settings.copy_command else {
            return Ok(None);
        };
        // The path is passed as `$1`, never spliced into the command's text.
        let child = tokio::process::Command::new("sh")
            .arg("-c")
            .arg(format!("{cmd} \"$1\""))
            .arg("echopilot-backup-copy")
            .arg(path)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| BackupError::Io(format!("BACKUP_COPY_COMMAND: cannot start sh: {e}")))?;
        let out = tokio::time::timeout(Duration::from_secs(3600), child.wait_with_output())
            .await
            .map_err(|_| BackupError::Io("BACKUP_COPY_COMMAND: timed out after 1 h".into()))?
            .map_err(|e| BackupError::Io(format!("BACKUP_COPY_COMMAND: {e}")))?;
        if out.status.success() {
            Ok(Some(
                String::from_utf8_lossy(&out.stdout).trim().to_string(),
            ))
        } else {
            let err = String::from_utf8_lossy(&out.stderr);
            Err(BackupError::Io(format!(
                "BACKUP_COPY_COMMAND exited with {}: {}",
                out.status,
                crate::jobs::tail(err.trim(), 512)
            )))
        }
    }

    /// Age in seconds of the newest snapshot, and of the newest verified one.
    pub fn ages(&self, now: DateTime<Utc>) -> (Option<f64>, Option<f64>) {
        let all = self.list().unwrap_or_default();
        let age = |e: &Entry| {
            DateTime::parse_from_rfc3339(&e.created_at)
                .ok()
                .map(|t| (now - t.to_utc()).num_milliseconds().max(0) as f64 / 1000.0)
        };
        let newest = all.last().and_then(age);
        let verified = all
            .iter()
            .rev()
            .find(|e| e.verified.as_ref().is_some_and(|v| v.ok))
            .and_then(age);
        (newest, verified)
    }
}

/// Records per tree.
pub type Counts = Vec<(String, u64)>;
/// A verified file: its header, checksum and the restored counts.
pub type Checked = (Header, String, Counts);

/// Checksum, restore into a scratch store under `scratch`, compare counts; the scratch
/// store is removed afterwards.
/// The nice value of snapshot work: below requests, so a snapshot taken while the
/// server is busy takes longer instead of slowing their answers.
const BACKGROUND_NICE: i32 = 10;

/// Run `f` on a thread of its own at [`BACKGROUND_NICE`] (threads it starts inherit
/// it). A thread of its own: a nice value cannot be lowered again without privilege,
/// so a pooled thread would keep it.
fn in_background<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    let job = std::sync::Mutex::new(Some(f));
    let take = || job.lock().unwrap_or_else(|p| p.into_inner()).take();
    std::thread::scope(|s| {
        let worker = std::thread::Builder::new()
            .name("backup".into())
            .spawn_scoped(s, || {
                // Linux keeps a nice value per thread; failing to set it only costs speed.
                let _ = rustix::process::setpriority_process(None, BACKGROUND_NICE);
                take().map(|f| f())
            });
        let done = match worker {
            Ok(w) => w.join().unwrap_or_else(|p| std::panic::resume_unwind(p)),
            Err(_) => None,
        };
        // No thread to be had: the work runs here, at the caller's priority.
        done.unwrap_or_else(|| take().map(|f| f()).expect("the work runs once"))
    })
}

pub fn verify_file(
    target: &dyn SnapshotTarget,
    path: &Path,
    scratch: &Path,
    progress: Option<Progress<'_>>,
) -> Result<Checked, BackupError> {
    let (header, body_at, sha) = format::check(path)?;
    let home = scratch.join(format!(
        "{}-{}",
        std::process::id(),
        uuid::Uuid::now_v7().simple()
    ));
    let result = (|| {
        let sink = target.open(&home)?;
        format::restore(
            path,
            &header,
            body_at,
            sink.as_ref(),
            progress.unwrap_or(&no_progress),
        )
    })();
    let _ = std::fs::remove_dir_all(&home);
    let counts = result?;
    Ok((header, sha, counts))
}

/// Copy every record of `source` into `sink` through one snapshot view (compaction:
/// the store rewritten into a fresh one). Returns the sink's counts, checked against
/// what was read.
pub fn copy_store(
    source: &dyn SnapshotSource,
    sink: &dyn store::SnapshotSink,
    progress: Progress<'_>,
) -> Result<Vec<(String, u64)>, BackupError> {
    let mut read: Vec<(String, u64)> = Vec::new();
    load::fill(sink, 0, progress, |feed| {
        source.read_snapshot(&mut |view| {
            for tree in view.trees() {
                feed.tree(&tree)?;
                let mut batch: load::Batch = Vec::with_capacity(load::BATCH);
                let n = view.records(&tree, &mut |k, v| {
                    batch.push((k.to_vec(), v.to_vec()));
                    if batch.len() >= load::BATCH {
                        feed.records(std::mem::replace(
                            &mut batch,
                            Vec::with_capacity(load::BATCH),
                        ))?;
                    }
                    Ok(())
                })?;
                feed.records(batch)?;
                read.push((tree, n));
            }
            Ok(())
        })
    })?;
    let counts = sink.finish()?;
    for (tree, n) in &read {
        let got = counts
            .iter()
            .find(|(t, _)| t == tree)
            .map_or(0, |(_, c)| *c);
        if got != *n {
            return Err(BackupError::Store(format!(
                "tree {tree}: read {n} records, the new store holds {got}"
            )));
        }
    }
    Ok(counts)
}
