//! Log retention: `logs/archive/YYYYMMDD/` folders older than `LOG_ARCHIVE_KEEP_DAYS`
//! are removed, oldest first. The audit events they held are recorded as a pruned
//! prefix (`chain::record_pruned`) before anything is deleted, so `audit verify`
//! accepts exactly that missing range and nothing else.

use std::path::{Path, PathBuf};

use chrono::{DateTime, NaiveDate, Utc};

use crate::audit::{Event, chain};
use crate::clock::rfc3339;

/// What one pruning removed.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Removed {
    pub folders: Vec<PathBuf>,
    /// The pruned audit range after this run (`None`: no audit lines were removed ever).
    pub audit_range: Option<(u64, u64)>,
}

/// Archive folders (`YYYYMMDD`) with their dates, oldest first.
pub fn folders(logs_dir: &Path) -> std::io::Result<Vec<(NaiveDate, PathBuf)>> {
    let archive = logs_dir.join("archive");
    let mut out = Vec::new();
    let rd = match std::fs::read_dir(&archive) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e),
    };
    for d in rd {
        let d = d?;
        let name = d.file_name().to_string_lossy().to_string();
        if name.len() == 8
            && d.path().is_dir()
            && let Ok(date) = NaiveDate::parse_from_str(&name, "%Y%m%d")
        {
            out.push((date, d.path()));
        }
    }
    out.sort();
    Ok(out)
}

/// Bytes under `dir`, recursively.
pub fn size_of(dir: &Path) -> u64 {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return 0;
    };
    rd.flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => size_of(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

/// Remove archive folders older than `keep_days` days before `now`.
pub fn prune(logs_dir: &Path, keep_days: u64, now: DateTime<Utc>) -> std::io::Result<Removed> {
    let cutoff = now.date_naive() - chrono::Duration::days(keep_days as i64);
    let old: Vec<PathBuf> = folders(logs_dir)?
        .into_iter()
        .filter(|(d, _)| *d < cutoff)
        .map(|(_, p)| p)
        .collect();
    let range = |through: u64| (through > 0).then_some((1, through));
    if old.is_empty() {
        return Ok(Removed {
            folders: old,
            audit_range: range(chain::pruned_through(logs_dir)?),
        });
    }
    // The newest audit event among the folders to remove ends the pruned prefix.
    let mut last: Option<Event> = None;
    for dir in &old {
        for f in std::fs::read_dir(dir)?.flatten() {
            let p = f.path();
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if !(name.starts_with("audit") && name.ends_with(".ndjson")) {
                continue;
            }
            if let Some(e) = chain::last_event(&p)?
                && last.as_ref().is_none_or(|l| e.seq > l.seq)
            {
                last = Some(e);
            }
        }
    }
    if let Some(e) = &last {
        // Recorded (with the event's hash, the link to what remains) before the files
        // go: a crash in between leaves files that start at seq 1, which verify accepts.
        chain::record_pruned(logs_dir, e, &rfc3339(now))?;
    }
    for dir in &old {
        std::fs::remove_dir_all(dir)?;
    }
    Ok(Removed {
        folders: old,
        audit_range: range(chain::pruned_through(logs_dir)?),
    })
}
