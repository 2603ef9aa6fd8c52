//! The audit trail: every mutation, auth failure, 403, rate-limit hit and webhook is an
//! event, kept in the `audit` tree and appended to `logs/ndjson/audit.ndjson` as one
//! compact JSON object per line (the runbook greps `"ok":false` literally).
//!
//! - Order and integrity: `record` takes the next `seq` and links the event to the
//!   previous one's hash under one lock, so concurrent callers get a gap-free chain
//!   ([`chain`]).
//! - Durability: the event is stored and durable (group commit) before `record` returns.
//! - The NDJSON file is a view of the store written by a batching writer thread
//!   (`crate::logfile`): requests never wait on it, a moved file is recreated, big
//!   files are rotated into `logs/archive/YYYYMMDD/`, and at start-up any events the
//!   file missed (a crash before the writer ran) are appended from the store.

pub mod chain;
pub mod store;
mod verify;

pub use verify::{Report, verify};

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use crate::auth::Caller;
use crate::clock::{Clock, rfc3339};
use crate::logfile::{Appender, RotatingFile};
use crate::store::{CodecError, Commit, Record, StoreError};
use store::AuditStore;

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
    /// The client address (`Event::ip`), as the server wrote it.
    pub ip: Option<String>,
    /// RFC 3339 bounds, inclusive.
    pub since: Option<String>,
    pub until: Option<String>,
    /// Only events with a smaller seq (the cursor of the previous page).
    pub before: Option<u64>,
    pub limit: usize,
}

impl Filter {
    /// Whether `e` passes (a store may narrow by it, the answer checks it).
    pub(crate) fn matches(&self, e: &Event) -> bool {
        self.ok.is_none_or(|ok| e.ok == ok)
            && self.action.as_ref().is_none_or(|a| &e.action == a)
            && self.actor.as_ref().is_none_or(|a| &e.actor == a)
            && self.ip.as_ref().is_none_or(|ip| &e.ip == ip)
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

/// Cheap to clone.
#[derive(Clone)]
pub struct Audit {
    store: Arc<dyn AuditStore>,
    clock: Clock,
    file: Appender,
    logs_dir: PathBuf,
    /// Lines of events not yet known to be durable, by seq; taken around the store's
    /// append, so seqs and lines stay in order. A line reaches the file only once its
    /// event is on stable storage, so the file never shows an event that a crash could
    /// take back (and a restart could number again).
    order: Arc<Mutex<BTreeMap<u64, String>>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding it leaves a consistent map behind: keep going.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Default size past which `audit.ndjson` is rotated (as `LOG_MAX_BYTES`).
pub const DEFAULT_MAX_BYTES: u64 = 50 * 1024 * 1024;

impl Audit {
    pub fn open(
        store: Arc<dyn AuditStore>,
        logs_dir: &Path,
        clock: Clock,
    ) -> Result<Self, StoreError> {
        Self::open_with_limit(store, logs_dir, clock, DEFAULT_MAX_BYTES)
    }

    /// Open the trail; `audit.ndjson` is rotated past `max_bytes`, and events it
    /// missed at its end are appended from the store.
    pub fn open_with_limit(
        store: Arc<dyn AuditStore>,
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
    pub fn open_for_verify(
        store: Arc<dyn AuditStore>,
        logs_dir: &Path,
    ) -> Result<Self, StoreError> {
        Self::open_inner(store, logs_dir, Clock::system(), DEFAULT_MAX_BYTES)
    }

    fn open_inner(
        store: Arc<dyn AuditStore>,
        logs_dir: &Path,
        clock: Clock,
        max_bytes: u64,
    ) -> Result<Self, StoreError> {
        let dir = logs_dir.join("ndjson");
        std::fs::create_dir_all(&dir).map_err(|e| StoreError::io(&dir, e))?;
        let path = dir.join("audit.ndjson");
        let file = Appender::start(
            "audit",
            RotatingFile::new(
                path.clone(),
                logs_dir.join("archive"),
                max_bytes,
                clock.clone(),
            )
            .rename_when_moved(chain::range_name),
        )
        .map_err(|e| StoreError::io(&path, e))?;
        Ok(Self {
            store,
            clock,
            file,
            logs_dir: logs_dir.to_path_buf(),
            order: Arc::default(),
        })
    }

    /// Write the line of every stored event to `out`, oldest first, and say how many.
    /// Seqs are read and encoded a chunk at a time on every core, and the chunks
    /// written in order: a restore brings a million lines level at once.
    pub fn write_all_lines(&self, out: &mut (dyn std::io::Write + Send)) -> std::io::Result<u64> {
        self.write_lines_in_chunks(out, 20_000)
    }

    /// [`Audit::write_all_lines`], `chunk` seqs at a time.
    pub(crate) fn write_lines_in_chunks(
        &self,
        out: &mut (dyn std::io::Write + Send),
        chunk: u64,
    ) -> std::io::Result<u64> {
        let chunks = self.last_seq() / chunk + 1;
        let threads = std::thread::available_parallelism().map_or(2, |n| n.get().clamp(1, 4));
        let io = |e: StoreError| std::io::Error::other(e.to_string());
        std::thread::scope(|s| {
            let mut parts = Vec::new();
            for first in 0..threads as u64 {
                let (tx, rx) = std::sync::mpsc::sync_channel(2);
                parts.push(rx);
                s.spawn(move || {
                    for c in (first..chunks).step_by(threads) {
                        let (lo, hi) = (c * chunk, (c + 1) * chunk);
                        let mut buf = Vec::new();
                        let mut n = 0u64;
                        // `Err(None)`: the chunk's end.
                        let read = self.store.since_seq(lo).try_for_each(
                            |r| -> Result<(), Option<StoreError>> {
                                let e = r?;
                                if e.seq >= hi {
                                    return Err(None);
                                }
                                buf.extend_from_slice(e.to_json_line().as_bytes());
                                buf.push(b'\n');
                                n += 1;
                                Ok(())
                            },
                        );
                        let part = match read {
                            Ok(()) | Err(None) => Ok((buf, n)),
                            Err(Some(e)) => Err(e),
                        };
                        // The writer stopped (an error): nothing more is wanted.
                        if tx.send(part).is_err() {
                            return;
                        }
                    }
                });
            }
            let mut n = 0;
            for c in 0..chunks {
                let part = parts[(c % threads as u64) as usize]
                    .recv()
                    .map_err(|_| std::io::Error::other("an audit line writer stopped"))?;
                let (buf, k) = part.map_err(io)?;
                out.write_all(&buf)?;
                n += k;
            }
            Ok(n)
        })
    }

    /// Append to the file the events it is missing at its end (written to the store,
    /// then the process died before the writer ran).
    fn catch_up(&self) -> Result<(), StoreError> {
        let last_stored = self.last_seq();
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
        // No line in any file: the process died before its first line was written,
        // or every file up to a point was pruned on purpose (recorded).
        let written = match written {
            Some(w) => w,
            None => chain::pruned_through(&self.logs_dir)
                .map_err(|e| StoreError::io(&self.logs_dir, e))?,
        };
        if written >= last_stored {
            return Ok(());
        }
        let mut n = 0u64;
        for r in self.store.since_seq(written + 1) {
            let e = r?;
            self.file.append(e.to_json_line());
            n += 1;
        }
        tracing::warn!(
            events = n,
            "audit.ndjson was behind the store; appended the missing events"
        );
        Ok(())
    }

    /// Record an event; returns once it is durable (in the store, synced). The NDJSON
    /// line follows shortly, in seq order.
    pub async fn record(&self, e: NewEvent) -> Result<Event, StoreError> {
        let (event, commit) = {
            let mut pending = lock(&self.order);
            self.append(&mut pending, &e)?
        };
        commit.durable().await?;
        self.release(event.seq);
        Ok(event)
    }

    /// Record several events in seq order with one durable commit for all (a bulk
    /// load); returns the last one's seq once all are durable.
    pub async fn record_all(&self, events: &[NewEvent]) -> Result<u64, StoreError> {
        let (last, commit) = {
            let mut pending = lock(&self.order);
            let mut last = (0, Commit::done());
            for e in events {
                let (event, commit) = self.append(&mut pending, e)?;
                last = (event.seq, commit);
            }
            last
        };
        commit.durable().await?;
        self.release(last);
        Ok(last)
    }

    /// Chain and store one event; its line waits in `pending` until it is durable.
    fn append(
        &self,
        pending: &mut BTreeMap<u64, String>,
        e: &NewEvent,
    ) -> Result<(Event, Commit), StoreError> {
        let (actor, role) = match &e.actor {
            Some(c) => (c.key_id.clone(), c.role.to_string()),
            None => (
                e.actor_id
                    .clone()
                    .unwrap_or_else(|| "anonymous".to_string()),
                String::new(),
            ),
        };
        // `error` marks failures; a success never carries one.
        let error = if e.ok {
            None
        } else {
            e.error.clone().or(Some(String::new()))
        };
        let (event, commit) = self.store.append(&mut |seq, prev_hash| {
            let mut event = Event {
                ts: rfc3339(self.clock.now()),
                seq: seq + 1,
                request_id: e.request_id.clone().unwrap_or_default(),
                actor: actor.clone(),
                role: role.clone(),
                action: e.action.clone(),
                target: e.target.clone(),
                ip: e.ip.clone().unwrap_or_default(),
                ok: e.ok,
                status: e.status,
                error: error.clone(),
                prev_hash: prev_hash.to_string(),
                hash: String::new(),
            };
            event.hash = chain::hash_event(&event);
            event
        })?;
        pending.insert(event.seq, event.to_json_line());
        Ok((event, commit))
    }

    /// Queue for the file every pending line up to `durable` (all of them were written
    /// before the sync that covered `durable` started). Under the lock, so lines reach
    /// the file in seq order.
    fn release(&self, durable: u64) {
        let mut pending = lock(&self.order);
        while let Some(entry) = pending.first_entry() {
            if *entry.key() > durable {
                break;
            }
            self.file.append(entry.remove());
        }
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
        let mut out = Vec::new();
        for r in self.store.candidates(f) {
            let e = r?;
            // Newest first and seq follows time: past `since`, nothing older can match.
            if f.since.as_ref().is_some_and(|s| e.ts.as_str() < s.as_str()) {
                break;
            }
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
    pub fn all(&self) -> store::Events<'_> {
        self.store.since_seq(0)
    }

    /// The stored event with this seq.
    pub fn get(&self, seq: u64) -> Result<Option<Event>, StoreError> {
        self.store.get(seq)
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
        self.store.last().ok().flatten().map_or(0, |e| e.seq)
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
