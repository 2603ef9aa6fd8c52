//! The audit trail: every mutation, auth failure, 403, rate-limit hit and webhook is an
//! event, kept in the `audit` tree and appended to `logs/ndjson/audit.ndjson` as one
//! compact JSON object per line (the runbook greps `"ok":false` literally).
//!
//! This first version writes synchronously and keeps no hash chain; the access issue
//! adds the chain, batching and rotation behind the same `record` call.

use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use crate::auth::Caller;
use crate::clock::{Clock, rfc3339};
use crate::store::{Record, Store, StoreError, Table};

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
}

/// A stored event.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Event {
    pub ts: String,
    pub seq: u64,
    pub request_id: String,
    pub actor: String,
    pub role: String,
    pub action: String,
    pub target: String,
    pub ip: String,
    pub ok: bool,
    pub status: u16,
    pub error: Option<String>,
}

impl Record for Event {
    const NAME: &'static str = "audit event";
    const VERSION: u8 = 1;
}

/// Cheap to clone.
#[derive(Clone)]
pub struct Audit {
    table: Table<Event>,
    store: Store,
    clock: Clock,
    file: PathBuf,
    lock: Arc<Mutex<()>>,
}

impl Audit {
    pub fn open(
        store: &Store,
        logs_dir: &std::path::Path,
        clock: Clock,
    ) -> Result<Self, StoreError> {
        let dir = logs_dir.join("ndjson");
        std::fs::create_dir_all(&dir).map_err(|e| StoreError::io(&dir, e))?;
        Ok(Self {
            table: store.table("audit")?,
            store: store.clone(),
            clock,
            file: dir.join("audit.ndjson"),
            lock: Arc::default(),
        })
    }

    /// Record an event; returns once it is durable.
    pub async fn record(&self, e: NewEvent) -> Result<Event, StoreError> {
        let event = {
            let _g = self.lock.lock().unwrap_or_else(|p| p.into_inner());
            let seq = self.table.last()?.map(|(_, e)| e.seq + 1).unwrap_or(1);
            let (actor, role) = match &e.actor {
                Some(c) => (c.key_id.clone(), c.role.to_string()),
                None => ("anonymous".to_string(), String::new()),
            };
            let event = Event {
                ts: rfc3339(self.clock.now()),
                seq,
                request_id: e.request_id.unwrap_or_default(),
                actor,
                role,
                action: e.action,
                target: e.target,
                ip: e.ip.unwrap_or_default(),
                ok: e.ok,
                status: e.status,
                error: e.error,
            };
            self.table.insert(seq.to_be_bytes(), &event)?;
            let line = serde_json::to_string(&event).unwrap_or_default();
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.file)
                .map_err(|err| StoreError::io(&self.file, err))?;
            writeln!(f, "{line}").map_err(|err| StoreError::io(&self.file, err))?;
            event
        };
        self.store.sync().await?;
        Ok(event)
    }

    /// Newest first, at most `limit`.
    pub fn recent(&self, limit: usize) -> Result<Vec<Event>, StoreError> {
        self.table
            .iter()
            .rev()
            .take(limit)
            .map(|r| r.map(|(_, e)| e))
            .collect()
    }
}
