//! The audit trail: every mutation, auth failure, 403, rate-limit hit and webhook is an
//! event, kept in the `audit` tree and appended to `logs/ndjson/audit.ndjson` as one
//! compact JSON object per line (the runbook greps `"ok":false` literally).
//!
//! - Order and integrity: `record` takes the next `seq` and links the event to the
//!   previous one's hash under one lock, so concurrent callers get a gap-free chain
//!   ([`chain`]).
//! - Durability: the event is in sled and synced (group commit) before `record` returns.
//! - The NDJSON file is a view of the store written by a batching writer thread
//!   ([`crate::logfile`]): requests never wait on it, a moved file is recreated, big
//!   files are rotated into `logs/archive/YYYYMMDD/`, and at start-up any events the
//!   file missed (a crash before the writer ran) are appended from the store.

pub mod chain;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use crate::auth::Caller;
use crate::clock::{Clock, rfc3339};
use crate::logfile::{Appender, RotatingFile};
use crate::store::{CodecError, Record, Store, StoreError, Table};

/// What a caller of [`Audit::record`] says happened.
#[derive(Debug, Clone, Default)]
pub struct NewEvent {
    pub request_id: Option<String>,
    pub actor: Option<Caller>,
    /// `job.retry`, `auth.failed`, `rate_limit_exceeded`, `flag.set`, ...
    pub action: String,
    pub target: String,
    pub ip: Option<String>,
    pub ok: bool,
    pub status: u16,
    pub error: Option<String>,
    /// The key id of a caller without a role (a wrong key): used when `actor` is `None`.
    pub actor_id: Option<String>,
}

/// A stored event. Field order is the NDJSON line's order.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Event {
    /// RFC 3339 UTC.
    pub ts: String,
    pub seq: u64,
    pub request_id: String,
    /// Key id, or `anonymous`.
    pub actor: String,
    /// The key's role; empty for anonymous callers and unknown keys.
    pub role: String,
    pub action: String,
    pub target: String,
    pub ip: String,
    pub ok: bool,
    pub status: u16,
    /// Only when not ok (absent from the line otherwise, so `grep error` finds failures).
    pub error: Option<String>,
    pub prev_hash: String,
    pub hash: String,
}

/// The layout before the hash chain (foundation stores).
#[derive(Deserialize)]
struct EventV1 {
    ts: String,
    seq: u64,
    request_id: String,
    actor: String,
    role: String,
    action: String,
    target: String,
    ip: String,
    ok: bool,
    status: u16,
    error: Option<String>,
}

impl Record for Event {
    const NAME: &'static str = "audit event";
    const VERSION: u8 = 2;

    fn migrate(version: u8, body: &[u8]) -> Result<Self, CodecError> {
        match version {
            // Events from before the chain carry no hashes; `audit verify` reports them.
            1 => {
                let v: EventV1 = crate::store::codec::decode_body(Self::NAME, 1, body)?;
                Ok(Event {
                    ts: v.ts,
                    seq: v.seq,
                    request_id: v.request_id,
                    actor: v.actor,
                    role: v.role,
                    action: v.action,
                    target: v.target,
                    ip: v.ip,
                    ok: v.ok,
                    status: v.status,
                    error: v.error,
                    prev_hash: String::new(),
                    hash: String::new(),
                })
            }
            found => Err(CodecError::UnknownVersion {
                record: Self::NAME,
                found,
                expected: Self::VERSION,
            }),
        }
    }
}

/// The JSON form: `error` only when present, `hash` left out of the canonical form.
#[derive(Serialize)]
struct Line<'a> {
    ts: &'a str,
    seq: u64,
    request_id: &'a str,
    actor: &'a str,
    role: &'a str,
    action: &'a str,
    target: &'a str,
    ip: &'a str,
    ok: bool,
    status: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a str>,
    prev_hash: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    hash: Option<&'a str>,
}

impl Event {
    fn line(&self, with_hash: bool) -> Line<'_> {
        Line {
            ts: &self.ts,
            seq: self.seq,
            request_id: &self.request_id,
            actor: &self.actor,
            role: &self.role,
            action: &self.action,
            target: &self.target,
            ip: &self.ip,
            ok: self.ok,
            status: self.status,
            error: self.error.as_deref(),
            prev_hash: &self.prev_hash,
            hash: with_hash.then_some(self.hash.as_str()),
        }
    }

    /// The compact JSON line written to `audit.ndjson`.
    pub fn to_json_line(&self) -> String {
        serde_json::to_string(&self.line(true)).unwrap_or_default()
    }

    /// The event as a JSON value (the API's form: the same fields as the line).
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self.line(true)).unwrap_or_default()
    }

    /// What the hash covers: the line without `hash`.
    pub fn canonical_json(&self) -> String {
        serde_json::to_string(&self.line(false)).unwrap_or_default()
    }
}

/// Filters for [`Audit::query`]; newest first.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub ok: Option<bool>,
    pub action: Option<String>,
    pub actor: Option<String>,
    /// RFC 3339 bounds, inclusive.
    pub since: Option<String>,
    pub until: Option<String>,
    /// Only events with a smaller seq (the cursor of the previous page).
    pub before: Option<u64>,
    pub limit: usize,
}

impl Filter {
    fn matches(&self, e: &Event) -> bool {
        self.ok.is_none_or(|ok| e.ok == ok)
            && self.action.as_ref().is_none_or(|a| &e.action == a)
            && self.actor.as_ref().is_none_or(|a| &e.actor == a)
            && self
                .since
                .as_ref()
                .is_none_or(|s| e.ts.as_str() >= s.as_str())
            && self
                .until
                .as_ref()
                .is_none_or(|u| e.ts.as_str() <= u.as_str())
    }
}

/// The end of the chain: the next event links to it.
struct Tail {
    seq: u64,
    hash: String,
}

/// Cheap to clone.
#[derive(Clone)]
pub struct Audit {
    table: Table<Event>,
    store: Store,
    clock: Clock,
    file: Appender,
    logs_dir: PathBuf,
    tail: Arc<Mutex<Tail>>,
}

/// Default size past which `audit.ndjson` is rotated (as `LOG_MAX_BYTES`).
pub const DEFAULT_MAX_BYTES: u64 = 50 * 1024 * 1024;

impl Audit {
    pub fn open(store: &Store, logs_dir: &Path, clock: Clock) -> Result<Self, StoreError> {
        Self::open_with_limit(store, logs_dir, clock, DEFAULT_MAX_BYTES)
    }

    /// Open the trail; `audit.ndjson` is rotated past `max_bytes`, and events it
    /// missed at its end are appended from the store.
    pub fn open_with_limit(
        store: &Store,
        logs_dir: &Path,
        clock: Clock,
        max_bytes: u64,
    ) -> Result<Self, StoreError> {
        let audit = Self::open_inner(store, logs_dir, clock, max_bytes)?;
        audit.catch_up()?;
        Ok(audit)
    }

    /// Open without touching the files (for `audit verify`, which must report a
    /// missing tail rather than repair it).
    pub fn open_for_verify(store: &Store, logs_dir: &Path) -> Result<Self, StoreError> {
        Self::open_inner(store, logs_dir, Clock::system(), DEFAULT_MAX_BYTES)
    }

    fn open_inner(
        store: &Store,
        logs_dir: &Path,
        clock: Clock,
        max_bytes: u64,
    ) -> Result<Self, StoreError> {
        let dir = logs_dir.join("ndjson");
        std::fs::create_dir_all(&dir).map_err(|e| StoreError::io(&dir, e))?;
        let path = dir.join("audit.ndjson");
        let table: Table<Event> = store.table("audit")?;
        let tail = match table.last()? {
            Some((_, e)) => Tail {
                seq: e.seq,
                hash: e.hash,
            },
            None => Tail {
                seq: 0,
                hash: chain::GENESIS.to_string(),
            },
        };
        let file = Appender::start(
            "audit",
            RotatingFile::new(
                path.clone(),
                logs_dir.join("archive"),
                max_bytes,
                clock.clone(),
            ),
        )
        .map_err(|e| StoreError::io(&path, e))?;
        Ok(Self {
            table,
            store: store.clone(),
            clock,
            file,
            logs_dir: logs_dir.to_path_buf(),
            tail: Arc::new(Mutex::new(tail)),
        })
    }

    /// Append to the file the events it is missing at its end (written to the store,
    /// then the process died before the writer ran).
    fn catch_up(&self) -> Result<(), StoreError> {
        let last_stored = self.lock().seq;
        if last_stored == 0 {
            return Ok(());
        }
        let mut written = chain::last_event(self.file.path())
            .map_err(|e| StoreError::io(self.file.path(), e))?
            .map(|e| e.seq);
        if written.is_none() {
            // A fresh current file: the newest archive tells how far the files reach.
            let files = chain::audit_files(&self.logs_dir).unwrap_or_default();
            if let Some(newest) = files.last() {
                written = chain::last_event(newest).ok().flatten().map(|e| e.seq);
            }
        }
        let Some(written) = written else {
            return Ok(());
        };
        if written >= last_stored {
            return Ok(());
        }
        let from = (written + 1).to_be_bytes();
        let mut n = 0u64;
        for r in self.table.range(from..) {
            let (_, e) = r?;
            self.file.append(e.to_json_line());
            n += 1;
        }
        tracing::warn!(
            events = n,
            "audit.ndjson was behind the store; appended the missing events"
        );
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Tail> {
        self.tail.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Record an event; returns once it is durable (in the store, synced). The NDJSON
    /// line follows shortly, in seq order.
    pub async fn record(&self, e: NewEvent) -> Result<Event, StoreError> {
        let event = {
            let mut tail = self.lock();
            let (actor, role) = match &e.actor {
                Some(c) => (c.key_id.clone(), c.role.to_string()),
                None => (
                    e.actor_id.unwrap_or_else(|| "anonymous".to_string()),
                    String::new(),
                ),
            };
            let mut event = Event {
                ts: rfc3339(self.clock.now()),
                seq: tail.seq + 1,
                request_id: e.request_id.unwrap_or_default(),
                actor,
                role,
                action: e.action,
                target: e.target,
                ip: e.ip.unwrap_or_default(),
                ok: e.ok,
                status: e.status,
                // `error` marks failures; a success never carries one.
                error: if e.ok {
                    None
                } else {
                    e.error.or(Some(String::new()))
                },
                prev_hash: tail.hash.clone(),
                hash: String::new(),
            };
            event.hash = chain::hash_event(&event);
            self.table.insert(event.seq.to_be_bytes(), &event)?;
            // Queued under the lock, so lines reach the file in seq order.
            self.file.append(event.to_json_line());
            tail.seq = event.seq;
            tail.hash = event.hash.clone();
            event
        };
        self.store.sync().await?;
        Ok(event)
    }

    /// Newest first, at most `limit`.
    pub fn recent(&self, limit: usize) -> Result<Vec<Event>, StoreError> {
        Ok(self
            .query(&Filter {
                limit,
                ..Filter::default()
            })?
            .0)
    }

    /// Events matching `f`, newest first, and the cursor of the next page (pass it as
    /// `before`) when there may be more.
    pub fn query(&self, f: &Filter) -> Result<(Vec<Event>, Option<u64>), StoreError> {
        let limit = f.limit.max(1);
        let iter: Box<dyn Iterator<Item = _>> = match f.before {
            Some(b) => Box::new(self.table.range(..b.to_be_bytes()).rev()),
            None => Box::new(self.table.iter().rev()),
        };
        let mut out = Vec::new();
        for r in iter {
            let (_, e) = r?;
            if !f.matches(&e) {
                continue;
            }
            if out.len() == limit {
                let next = out.last().map(|e: &Event| e.seq);
                return Ok((out, next));
            }
            out.push(e);
        }
        Ok((out, None))
    }

    /// Every stored event in seq order (for `audit verify`).
    pub fn all(&self) -> impl Iterator<Item = Result<Event, StoreError>> + use<> {
        self.table.iter().map(|r| r.map(|(_, e)| e))
    }

    /// The stored event with this seq.
    pub fn get(&self, seq: u64) -> Result<Option<Event>, StoreError> {
        self.table.get(seq.to_be_bytes())
    }

    /// Wait until every event recorded so far is in `audit.ndjson`.
    pub async fn flush(&self) -> std::io::Result<()> {
        self.file.flush().await
    }

    /// As [`Audit::flush`], outside a runtime (the CLI).
    pub fn flush_blocking(&self) -> std::io::Result<()> {
        self.file.flush_blocking()
    }

    /// Move `audit.ndjson` into `logs/archive/YYYYMMDD/` after every event recorded so
    /// far; the next event starts a fresh file.
    pub async fn rotate(&self) -> std::io::Result<Option<PathBuf>> {
        self.file.rotate().await
    }

    /// The seq of the newest event (0 when there is none).
    pub fn last_seq(&self) -> u64 {
        self.lock().seq
    }

    /// Is the NDJSON writer failing (the store still has every event)?
    pub fn file_failing(&self) -> bool {
        self.file.is_failing()
    }

    /// Path of the current NDJSON file.
    pub fn file_path(&self) -> &Path {
        self.file.path()
    }
}

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
    let mut v = chain::Verifier::default();
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
    if let Some(first) = v.first_seq.filter(|s| *s > 1) {
        chain::check_pruned_prefix(logs_dir, first, v.first_prev_hash.as_deref().unwrap_or(""))?;
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

#[cfg(test)]
mod tests {
    use super::*;

    fn event(seq: u64, prev: &str) -> Event {
        let mut e = Event {
            ts: "2026-01-01T00:00:00.000Z".into(),
            seq,
            request_id: "r".into(),
            actor: "anonymous".into(),
            role: String::new(),
            action: "auth.failed".into(),
            target: "GET /api/audit".into(),
            ip: "127.0.0.1".into(),
            ok: false,
            status: 401,
            error: Some("missing X-Dash-Key header".into()),
            prev_hash: prev.into(),
            hash: String::new(),
        };
        e.hash = chain::hash_event(&e);
        e
    }

    #[test]
    fn line_is_compact_and_greppable() {
        let e = event(1, chain::GENESIS);
        let line = e.to_json_line();
        assert!(line.starts_with(r#"{"ts":"2026-01-01T00:00:00.000Z","seq":1,"#));
        assert!(line.contains(r#""ok":false"#));
        assert!(line.ends_with(&format!(r#""hash":"{}"}}"#, e.hash)));
        assert!(!e.canonical_json().contains("\"hash\""));
        let back: Event = serde_json::from_str(&line).unwrap();
        assert_eq!(back, e);
        let mut ok = e.clone();
        ok.ok = true;
        ok.error = None;
        assert!(!ok.to_json_line().contains("error"));
    }

    #[test]
    fn verifier_names_the_first_bad_seq() {
        let a = event(1, chain::GENESIS);
        let b = event(2, &a.hash);
        let c = event(3, &b.hash);
        let mut v = chain::Verifier::default();
        for e in [&a, &b, &c] {
            v.push(e).unwrap();
        }
        // Edited.
        let mut v = chain::Verifier::default();
        v.push(&a).unwrap();
        let mut edited = b.clone();
        edited.ok = true;
        assert_eq!(v.push(&edited).unwrap_err().seq, 2);
        // Removed.
        let mut v = chain::Verifier::default();
        v.push(&a).unwrap();
        assert_eq!(v.push(&c).unwrap_err().seq, 2);
        // Re-hashed after an edit: the next link breaks.
        let mut v = chain::Verifier::default();
        v.push(&a).unwrap();
        let mut forged = b.clone();
        forged.target = "x".into();
        forged.hash = chain::hash_event(&forged);
        v.push(&forged).unwrap();
        assert_eq!(v.push(&c).unwrap_err().seq, 3);
    }
}
