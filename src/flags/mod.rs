//! Feature flags: named switches operators flip without a restart. Built-in flags switch
//! EchoPilot's own behaviour (see [`BUILTINS`]); any other valid name can be created for
//! users' own workers, which read it over the API.
//!
//! [`Flags`] keeps an in-memory copy of every flag, refreshed on each change, so
//! [`Flags::is_enabled`] is a map lookup: cheap enough to call on every use (every
//! dispatch, every tick, every paid event). A backend shared by several processes would
//! refresh this copy from its change feed; the trait in [`store`] already hands out
//! every change with its time.

pub mod store;

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

use crate::clock::{Clock, rfc3339};
use crate::store::{Commit, Record, StoreError};
pub use store::FlagStore;

/// `executor.http`: the built-in `http` executor runs jobs; off, they wait queued.
pub const EXECUTOR_HTTP: &str = "executor.http";
/// `executor.command`: the built-in `command` executor runs jobs; off, they wait queued.
pub const EXECUTOR_COMMAND: &str = "executor.command";
/// `scheduler.cron`: cron schedules fire; off, none fires.
pub const SCHEDULER_CRON: &str = "scheduler.cron";
/// `payments.fulfilment`: paid events enqueue their fulfilment job; off, they are
/// stored and applied only, and fulfilled when the flag is back on.
pub const PAYMENTS_FULFILMENT: &str = "payments.fulfilment";
/// `dashboard.v2`: `/dashboard` is the v2 dashboard; off, it redirects to `/dashboard/v1`.
pub const DASHBOARD_V2: &str = "dashboard.v2";

/// A flag EchoPilot itself reads: name, default, what it switches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Builtin {
    pub name: &'static str,
    pub default: bool,
    pub switches: &'static str,
}

/// Every built-in flag, all on by default.
pub const BUILTINS: [Builtin; 5] = [
    Builtin {
        name: EXECUTOR_HTTP,
        default: true,
        switches: "the built-in http executor (off: http jobs wait queued)",
    },
    Builtin {
        name: EXECUTOR_COMMAND,
        default: true,
        switches: "the built-in command executor (off: command jobs wait queued)",
    },
    Builtin {
        name: SCHEDULER_CRON,
        default: true,
        switches: "cron schedules (off: no schedule fires)",
    },
    Builtin {
        name: PAYMENTS_FULFILMENT,
        default: true,
        switches: "fulfilment jobs for paid events (off: events are stored and applied, \
                   fulfilled once back on)",
    },
    Builtin {
        name: DASHBOARD_V2,
        default: true,
        switches: "the v2 dashboard (off: /dashboard redirects to /dashboard/v1)",
    },
];

pub fn builtin(name: &str) -> Option<&'static Builtin> {
    BUILTINS.iter().find(|b| b.name == name)
}

/// Longest flag name.
pub const MAX_NAME: usize = 64;
/// Longest note.
pub const MAX_NOTE: usize = 500;

#[derive(Debug, thiserror::Error)]
pub enum FlagError {
    #[error("no such flag: {0}")]
    NotFound(String),
    /// Bad input; the message names the field.
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl crate::error::Classify for FlagError {
    fn kind(&self) -> crate::error::ErrorKind {
        use crate::error::ErrorKind;
        match self {
            FlagError::NotFound(_) => ErrorKind::NotFound,
            FlagError::Invalid(_) => ErrorKind::Invalid,
            FlagError::Store(s) => s.kind(),
        }
    }
    fn public_message(&self) -> String {
        match self {
            FlagError::Store(s) => s.public_message(),
            e => e.to_string(),
        }
    }
}

/// A checked flag name: 1–64 characters of `[a-z0-9._-]`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FlagName(String);

impl FlagName {
    pub fn parse(s: &str) -> Result<FlagName, FlagError> {
        if s.is_empty() || s.len() > MAX_NAME {
            return Err(FlagError::Invalid(format!(
                "name: must be 1 to {MAX_NAME} characters"
            )));
        }
        if let Some(c) = s
            .chars()
            .find(|c| !matches!(c, 'a'..='z' | '0'..='9' | '.' | '_' | '-'))
        {
            return Err(FlagError::Invalid(format!(
                "name: {c:?} is not allowed (use a-z, 0-9, '.', '_', '-')"
            )));
        }
        Ok(FlagName(s.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A flag as stored: its state and who set it last.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Flag {
    pub name: String,
    pub enabled: bool,
    pub note: String,
    /// RFC 3339; empty for a built-in never set.
    pub updated_at: String,
    /// Key id of the caller; empty for a built-in never set.
    pub updated_by: String,
}

impl Record for Flag {
    const NAME: &'static str = "feature flag";
    const VERSION: u8 = 1;
}

impl Flag {
    /// The JSON the API shows: the stored fields plus whether it is built in and its
    /// default.
    pub fn to_json(&self) -> serde_json::Value {
        let b = builtin(&self.name);
        serde_json::json!({
            "name": self.name,
            "enabled": self.enabled,
            "builtin": b.is_some(),
            "default": b.map(|b| b.default),
            "switches": b.map(|b| b.switches),
            "note": self.note,
            "updated_at": self.updated_at,
            "updated_by": self.updated_by,
        })
    }
}

/// One change of a flag (a chart marker, the flag's history).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FlagChange {
    pub name: String,
    /// Milliseconds since the epoch.
    pub at_ms: i64,
    pub enabled: bool,
    /// The state before (the default for a built-in never set, `false` for a new flag).
    pub was: bool,
    pub note: String,
    pub by: String,
}

impl Record for FlagChange {
    const NAME: &'static str = "feature flag change";
    const VERSION: u8 = 1;
}

impl FlagChange {
    pub fn at(&self) -> DateTime<Utc> {
        DateTime::from_timestamp_millis(self.at_ms).unwrap_or_default()
    }
}

/// The flags handle: cheap to clone (an `Arc`). Hand a clone to any domain that reads a
/// flag: `flags.is_enabled(flags::PAYMENTS_FULFILMENT)`.
#[derive(Clone)]
pub struct Flags(Arc<Inner>);

struct Inner {
    store: Arc<dyn FlagStore>,
    clock: Clock,
    /// Every stored flag by name.
    cache: RwLock<BTreeMap<String, Flag>>,
    changes: broadcast::Sender<FlagChange>,
}

impl Flags {
    pub fn open(store: Arc<dyn FlagStore>, clock: Clock) -> Result<Flags, StoreError> {
        let cache = store
            .load_flags()?
            .into_iter()
            .map(|f| (f.name.clone(), f))
            .collect();
        let (changes, _) = broadcast::channel(64);
        Ok(Flags(Arc::new(Inner {
            store,
            clock,
            cache: RwLock::new(cache),
            changes,
        })))
    }

    /// Is `name` on? A built-in never set reads its default; an unknown flag is off.
    pub fn is_enabled(&self, name: &str) -> bool {
        match self.read().get(name) {
            Some(f) => f.enabled,
            None => builtin(name).is_some_and(|b| b.default),
        }
    }

    /// May the built-in executor for job `kind` run? Kinds without a flag always may.
    pub fn executor_enabled(&self, kind: &str) -> bool {
        match kind {
            "http" => self.is_enabled(EXECUTOR_HTTP),
            "command" => self.is_enabled(EXECUTOR_COMMAND),
            _ => true,
        }
    }

    /// One flag (a built-in never set shows its default), or `None` for an unknown name.
    pub fn get(&self, name: &str) -> Option<Flag> {
        if let Some(f) = self.read().get(name) {
            return Some(f.clone());
        }
        builtin(name).map(|b| Flag {
            name: b.name.to_string(),
            enabled: b.default,
            note: String::new(),
            updated_at: String::new(),
            updated_by: String::new(),
        })
    }

    /// Every flag: the built-ins first (in [`BUILTINS`] order), then the others by name.
    pub fn list(&self) -> Vec<Flag> {
        let mut out: Vec<Flag> = BUILTINS.iter().filter_map(|b| self.get(b.name)).collect();
        out.extend(
            self.read()
                .values()
                .filter(|f| builtin(&f.name).is_none())
                .cloned(),
        );
        out
    }

    /// The built-ins that are off now (for the status summary).
    pub fn builtins_off(&self) -> Vec<&'static str> {
        BUILTINS
            .iter()
            .filter(|b| !self.is_enabled(b.name))
            .map(|b| b.name)
            .collect()
    }

    /// Set a flag (creating it when new). The in-memory copy changes at once: the next
    /// read sees it. Returns the flag, the change (`None` when it already had that
    /// state) and the commit to await.
    pub fn set(
        &self,
        name: &FlagName,
        enabled: bool,
        note: &str,
        by: &str,
    ) -> Result<(Flag, Option<FlagChange>, Commit), FlagError> {
        if note.chars().count() > MAX_NOTE {
            return Err(FlagError::Invalid(format!(
                "note: at most {MAX_NOTE} characters"
            )));
        }
        if note.chars().any(char::is_control) {
            return Err(FlagError::Invalid(
                "note: control characters are not allowed".into(),
            ));
        }
        let now = self.0.clock.now();
        let was = self.get(name.as_str()).map(|f| f.enabled);
        let flag = Flag {
            name: name.as_str().to_string(),
            enabled,
            note: note.to_string(),
            updated_at: rfc3339(now),
            updated_by: by.to_string(),
        };
        let change = (was != Some(enabled)).then(|| FlagChange {
            name: flag.name.clone(),
            at_ms: now.timestamp_millis(),
            enabled,
            was: was.unwrap_or(false),
            note: note.to_string(),
            by: by.to_string(),
        });
        let commit = self.0.store.save_flag(&flag, change.as_ref())?;
        self.0
            .cache
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(flag.name.clone(), flag.clone());
        if let Some(c) = &change {
            let _ = self.0.changes.send(c.clone());
        }
        Ok((flag, change, commit))
    }

    /// Changes at or after `since`, oldest first, at most `limit`.
    pub fn changes_since(
        &self,
        since: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<FlagChange>, StoreError> {
        self.0.store.changes_since(since.timestamp_millis(), limit)
    }

    /// Every change as it happens: payments listens for `payments.fulfilment` coming
    /// back on to fulfil what it held back.
    pub fn subscribe(&self) -> broadcast::Receiver<FlagChange> {
        self.0.changes.subscribe()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, Flag>> {
        self.0.cache.read().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_rules() {
        for ok in ["executor.http", "a", "my-flag_2.beta", &"x".repeat(64)] {
            assert!(FlagName::parse(ok).is_ok(), "{ok}");
        }
        for bad in ["", "Upper", "sp ace", "ü", "a/b", &"x".repeat(65)] {
            assert!(FlagName::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn builtins_are_all_on_by_default_and_named_validly() {
        for b in BUILTINS {
            assert!(b.default);
            assert!(FlagName::parse(b.name).is_ok());
        }
    }
}
