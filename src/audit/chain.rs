//! The hash chain: each event's `hash` is SHA-256 over the previous event's hash and
//! this event's canonical JSON (the NDJSON line without `hash`), so editing, removing or
//! reordering a line breaks the chain at that line's `seq`.

use std::fmt;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::Event;

/// The `prev_hash` of the first event.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// `hex(SHA-256(prev_hash || canonical JSON))`.
pub fn hash_event(e: &Event) -> String {
    let mut h = Sha256::new();
    h.update(e.prev_hash.as_bytes());
    h.update(e.canonical_json().as_bytes());
    hex::encode(h.finalize())
}

/// Where the chain first breaks.
#[derive(Debug, Clone, PartialEq)]
pub struct Break {
    /// The first bad `seq`.
    pub seq: u64,
    pub reason: String,
    /// `file:line` when the break was found in a file.
    pub location: Option<String>,
}

impl fmt::Display for Break {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "audit chain broken at seq {}: {}", self.seq, self.reason)?;
        if let Some(l) = &self.location {
            write!(f, " ({l})")?;
        }
        Ok(())
    }
}

/// Walks events in order and checks seq continuity, links and hashes.
#[derive(Debug, Default)]
pub struct Verifier {
    last: Option<(u64, String)>,
    pub first_seq: Option<u64>,
    pub count: u64,
}

impl Verifier {
    /// A verifier whose first event must follow `seq` with hash `hash`: the last event
    /// log retention removed, so the remaining files still link to what came before.
    pub fn after(seq: u64, hash: &str) -> Verifier {
        Verifier {
            last: Some((seq, hash.to_string())),
            ..Verifier::default()
        }
    }

    /// The seq the next event must carry (after the first).
    pub fn expected(&self) -> Option<u64> {
        self.last.as_ref().map(|(s, _)| s + 1)
    }

    pub fn last_seq(&self) -> Option<u64> {
        self.last.as_ref().map(|(s, _)| *s)
    }

    pub fn push(&mut self, e: &Event) -> Result<(), Break> {
        let brk = |seq: u64, reason: String| Break {
            seq,
            reason,
            location: None,
        };
        match &self.last {
            Some((prev_seq, prev_hash)) => {
                let want = prev_seq + 1;
                if e.seq != want {
                    return Err(brk(
                        want,
                        format!(
                            "expected seq {want} after seq {prev_seq}, found seq {} \
                             (a line was removed or reordered)",
                            e.seq
                        ),
                    ));
                }
                if &e.prev_hash != prev_hash {
                    return Err(brk(
                        e.seq,
                        format!("prev_hash does not match the hash of seq {prev_seq}"),
                    ));
                }
            }
            None => {
                if e.seq == 1 && e.prev_hash != GENESIS {
                    return Err(brk(1, "the first event does not start the chain".into()));
                }
            }
        }
        if self.first_seq.is_none() {
            self.first_seq = Some(e.seq);
        }
        if hash_event(e) != e.hash {
            return Err(brk(
                e.seq,
                "hash does not match the event (the line was edited)".into(),
            ));
        }
        self.last = Some((e.seq, e.hash.clone()));
        self.count += 1;
        Ok(())
    }
}

/// The audit files of a home in chain order: archives (any `archive/*/audit*.ndjson`,
/// whatever their names) and the current file, sorted by the first seq they hold.
pub fn audit_files(logs_dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    let current = logs_dir.join("ndjson").join("audit.ndjson");
    if current.is_file() {
        files.push(current);
    }
    let archive = logs_dir.join("archive");
    if archive.is_dir() {
        for day in std::fs::read_dir(&archive)? {
            let day = day?.path();
            if !day.is_dir() {
                continue;
            }
            for f in std::fs::read_dir(&day)? {
                let p = f?.path();
                let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
                if p.is_file() && name.starts_with("audit") && name.ends_with(".ndjson") {
                    files.push(p);
                }
            }
        }
    }
    let mut keyed: Vec<(u64, PathBuf)> = files
        .into_iter()
        .filter_map(|p| match first_seq(&p) {
            Ok(Some(s)) => Some((s, p)),
            Ok(None) => None,
            // Unreadable first lines sort last and fail verification there.
            Err(_) => Some((u64::MAX, p)),
        })
        .collect();
    keyed.sort();
    Ok(keyed.into_iter().map(|(_, p)| p).collect())
}

/// The seq of the first event in a file; `None` for an empty file.
pub fn first_seq(path: &Path) -> std::io::Result<Option<u64>> {
    let f = std::fs::File::open(path)?;
    for line in BufReader::new(f).lines() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        return match serde_json::from_str::<Event>(&line) {
            Ok(e) => Ok(Some(e.seq)),
            Err(e) => Err(std::io::Error::other(e)),
        };
    }
    Ok(None)
}

/// Where log retention records the audit prefix it removed on purpose.
fn pruned_path(logs_dir: &Path) -> PathBuf {
    logs_dir.join("archive").join("audit-pruned.json")
}

/// The audit prefix log retention removed on purpose.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Pruned {
    /// Every event up to this seq was removed with its archive files.
    pub through_seq: u64,
    /// The hash of event `through_seq`: the first remaining event must link to it.
    /// (`None` in a record written before the hash was kept: the boundary cannot be
    /// checked, and verify says so.)
    #[serde(default)]
    pub last_hash: Option<String>,
    pub pruned_at: String,
}

/// What log retention removed on purpose (`None`: nothing). `audit verify` accepts
/// exactly that missing prefix, linked to the first remaining event, and no other gap.
pub fn pruned(logs_dir: &Path) -> std::io::Result<Option<Pruned>> {
    match std::fs::read(pruned_path(logs_dir)) {
        Ok(b) => serde_json::from_slice::<Pruned>(&b)
            .map(Some)
            .map_err(std::io::Error::other),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// The last seq removed on purpose by log retention (0: none).
pub fn pruned_through(logs_dir: &Path) -> std::io::Result<u64> {
    Ok(pruned(logs_dir)?.map_or(0, |p| p.through_seq))
}

/// Record that every event up to `last` was removed on purpose, with `last`'s hash
/// (written to a temp file, synced and renamed, so a crash leaves the old record or
/// the new one). A record reaching further is kept.
pub fn record_pruned(logs_dir: &Path, last: &Event, now: &str) -> std::io::Result<()> {
    use std::io::Write;
    if let Some(p) = pruned(logs_dir)?
        && (p.through_seq > last.seq || (p.through_seq == last.seq && p.last_hash.is_some()))
    {
        return Ok(());
    }
    let path = pruned_path(logs_dir);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("json.tmp");
    let mut f = std::fs::File::create(&tmp)?;
    let body = Pruned {
        through_seq: last.seq,
        last_hash: Some(last.hash.clone()),
        pruned_at: now.to_string(),
    };
    f.write_all(&serde_json::to_vec(&body).map_err(std::io::Error::other)?)?;
    f.sync_all()?;
    std::fs::rename(&tmp, &path)
}

/// `audit.<first-seq>-<last-seq>.ndjson`: the unique name of a file holding that range.
pub fn range_name(path: &Path) -> Option<String> {
    let first = first_seq(path).ok().flatten()?;
    let last = last_event(path).ok().flatten()?.seq;
    Some(format!("audit.{first}-{last}.ndjson"))
}

/// The last event of a file, reading only its tail.
pub fn last_event(path: &Path) -> std::io::Result<Option<Event>> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let len = f.metadata()?.len();
    let start = len.saturating_sub(256 * 1024);
    f.seek(SeekFrom::Start(start))?;
    let mut tail = String::new();
    f.read_to_string(&mut tail)?;
    Ok(tail
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str::<Event>(l).ok()))
}

/// Read `path` line by line into `v`, calling `check` on each event too (the store
/// comparison). Empty lines are skipped.
pub fn verify_file(
    path: &Path,
    v: &mut Verifier,
    mut check: impl FnMut(&Event) -> Result<(), Break>,
) -> Result<(), Break> {
    let at = |n: usize| Some(format!("{}:{}", path.display(), n));
    let text = std::fs::read_to_string(path).map_err(|e| Break {
        seq: v.expected().unwrap_or(0),
        reason: format!("cannot read the file: {e}"),
        location: at(0),
    })?;
    for (i, segment) in text.split_inclusive('\n').enumerate() {
        let n = i + 1;
        // A last line without its newline is being written by the server right now.
        let Some(line) = segment.strip_suffix('\n') else {
            break;
        };
        if line.trim().is_empty() {
            continue;
        }
        let e: Event = serde_json::from_str(line).map_err(|err| Break {
            seq: v.expected().unwrap_or(0),
            reason: format!("not an audit event: {err}"),
            location: at(n),
        })?;
        v.push(&e).and_then(|()| check(&e)).map_err(|b| Break {
            location: at(n),
            ..b
        })?;
    }
    Ok(())
}
