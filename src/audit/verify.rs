//! `audit verify`: the hash chain over the NDJSON files (archives in order, then the
//! current file) and, when the store can be opened, over the store, each line checked
//! against its stored event.

use std::path::{Path, PathBuf};

use super::{Audit, chain};

/// What `audit verify` found.
#[derive(Debug, Default)]
pub struct Report {
    pub files: Vec<PathBuf>,
    pub file_events: u64,
    pub first_seq: Option<u64>,
    pub last_seq: Option<u64>,
    /// Events in the store, when it could be opened.
    pub store_events: Option<u64>,
    /// Store events after the files' last line (removed, or written just before a crash
    /// and not yet re-appended by a start of the server).
    pub missing_from_files: u64,
    /// Events up to this seq were removed on purpose by log retention.
    pub pruned_through: u64,
}

/// Check the chain over the files (archives in order, then the current file) and, when
/// `store` is given, over the store and each file line against its stored event.
pub fn verify(logs_dir: &Path, store: Option<&Audit>) -> Result<Report, chain::Break> {
    let io_break = |e: std::io::Error| chain::Break {
        seq: 0,
        reason: format!("cannot list the audit files: {e}"),
        location: Some(logs_dir.display().to_string()),
    };
    let files = chain::audit_files(logs_dir).map_err(io_break)?;
    let mut report = Report {
        files: files.clone(),
        ..Report::default()
    };
    if let Some(audit) = store {
        let mut v = chain::Verifier::default();
        for r in audit.all() {
            let e = r.map_err(|err| chain::Break {
                seq: v.expected().unwrap_or(1),
                reason: format!("cannot read the store: {err}"),
                location: Some("store".into()),
            })?;
            v.push(&e).map_err(|b| chain::Break {
                location: Some("store".into()),
                ..b
            })?;
        }
        if v.count > 0 && v.first_seq != Some(1) {
            return Err(chain::Break {
                seq: 1,
                reason: "the store's chain does not start at seq 1".into(),
                location: Some("store".into()),
            });
        }
        report.store_events = Some(v.count);
    }
    let pruned = chain::pruned(logs_dir).map_err(|e| chain::Break {
        seq: 1,
        reason: format!("cannot read the log retention record: {e}"),
        location: Some(logs_dir.join("archive").display().to_string()),
    })?;
    report.pruned_through = pruned.as_ref().map_or(0, |p| p.through_seq);
    let first = files
        .first()
        .and_then(|f| chain::first_seq(f).ok().flatten());
    let mut v = anchored(logs_dir, pruned.as_ref(), first)?;
    for f in &files {
        chain::verify_file(f, &mut v, |e| {
            let Some(audit) = store else { return Ok(()) };
            match audit.get(e.seq) {
                Ok(Some(stored)) if stored == *e => Ok(()),
                Ok(Some(_)) => Err(chain::Break {
                    seq: e.seq,
                    reason: "the line differs from the stored event".into(),
                    location: None,
                }),
                Ok(None) => Err(chain::Break {
                    seq: e.seq,
                    reason: "the store has no event with this seq".into(),
                    location: None,
                }),
                Err(err) => Err(chain::Break {
                    seq: e.seq,
                    reason: format!("cannot read the store: {err}"),
                    location: None,
                }),
            }
        })?;
    }
    report.file_events = v.count;
    report.first_seq = v.first_seq;
    report.last_seq = v.last_seq();
    // Only a prefix that log retention removed (and recorded) may be missing.
    if let Some(first) = report.first_seq
        && first > report.pruned_through + 1
    {
        let from = report.pruned_through + 1;
        return Err(chain::Break {
            seq: from,
            reason: format!(
                "events {from}..{} are missing from the files: an archive file was removed \
                 (only a prefix pruned by log retention may be missing)",
                first - 1
            ),
            location: files.first().map(|f| f.display().to_string()),
        });
    }
    if let Some(n) = report.store_events {
        report.missing_from_files = n.saturating_sub(report.last_seq.unwrap_or(0));
        if report.missing_from_files > 0 {
            let seq = report.last_seq.unwrap_or(0) + 1;
            return Err(chain::Break {
                seq,
                reason: format!(
                    "{} stored events (from seq {seq}) are missing from the files: lines \
                     were removed, or the server died before writing them (starting it \
                     once re-appends them from the store)",
                    report.missing_from_files
                ),
                location: files.last().map(|f| f.display().to_string()),
            });
        }
    }
    Ok(report)
}

/// The verifier for the files: after a pruned prefix, the first remaining event must
/// link to the hash of the last pruned one (kept in the retention record), so a
/// rewritten start of the files is found even without the store to compare with.
fn anchored(
    logs_dir: &Path,
    pruned: Option<&chain::Pruned>,
    first: Option<u64>,
) -> Result<chain::Verifier, chain::Break> {
    let (Some(p), Some(first)) = (pruned, first) else {
        return Ok(chain::Verifier::default());
    };
    let record = Some(
        logs_dir
            .join("archive")
            .join("audit-pruned.json")
            .display()
            .to_string(),
    );
    // Files from seq 1: the record was written and the folders not yet removed.
    if first == 1 || first > p.through_seq + 1 {
        return Ok(chain::Verifier::default());
    }
    if first <= p.through_seq {
        return Err(chain::Break {
            seq: first,
            reason: format!(
                "the files start at seq {first}, inside the pruned range 1..{}: log \
                 retention was interrupted (its next run removes the rest) or a file was \
                 removed by hand",
                p.through_seq
            ),
            location: record,
        });
    }
    match &p.last_hash {
        Some(hash) => Ok(chain::Verifier::after(p.through_seq, hash)),
        // A record written before retention kept the hash (homes from older releases):
        // the first remaining event cannot be linked, and refusing would fail every
        // such home until its next prune, which writes the hash.
        None => {
            tracing::warn!(
                through = p.through_seq,
                "the log retention record keeps no hash; the first remaining event is not linked"
            );
            Ok(chain::Verifier::default())
        }
    }
}
