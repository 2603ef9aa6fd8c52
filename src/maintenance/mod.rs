//! Planned maintenance windows (runbook "Planned Maintenance"). During a window the
//! status summary says so, alert messages are held and sent once it is over
//! ([`hold::HoldingSink`]), and its minutes count neither against uptime nor against
//! the error budget ([`Maintenance::excluded_minutes`]).

pub mod hold;
pub mod store;

use std::sync::Arc;

use chrono::{DateTime, Duration, NaiveTime, Utc};
use serde::{Deserialize, Serialize};

use crate::clock::{Clock, rfc3339};
use crate::store::{Commit, Record, StoreError};
pub use store::MaintenanceStore;

/// The longest window one call may plan.
pub const MAX_WINDOW: Duration = Duration::days(7);
/// How far in the past a window may start: enough for a clock skew or a slow operator,
/// not enough to erase downtime that already happened from the uptime figures.
pub const START_GRACE: Duration = Duration::minutes(1);
/// The runbook's low-traffic period, 02:00–06:00 UTC: what the UI suggests.
pub const LOW_TRAFFIC_UTC: (u32, u32) = (2, 6);
/// Longest reason.
pub const MAX_REASON: usize = 500;

#[derive(Debug, thiserror::Error)]
pub enum MaintenanceError {
    #[error("no such maintenance window: {0}")]
    NotFound(String),
    /// Bad input; the message names the field.
    #[error("{0}")]
    Invalid(String),
    /// Not possible in the window's state.
    #[error("{0}")]
    Conflict(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl crate::error::Classify for MaintenanceError {
    fn kind(&self) -> crate::error::ErrorKind {
        use crate::error::ErrorKind;
        match self {
            MaintenanceError::NotFound(_) => ErrorKind::NotFound,
            MaintenanceError::Invalid(_) => ErrorKind::Invalid,
            MaintenanceError::Conflict(_) => ErrorKind::Conflict,
            MaintenanceError::Store(s) => s.kind(),
        }
    }
    fn public_message(&self) -> String {
        match self {
            MaintenanceError::Store(s) => s.public_message(),
            e => e.to_string(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Window {
    /// A UUIDv7.
    pub id: String,
    pub start_ms: i64,
    pub end_ms: i64,
    pub reason: String,
    pub created_by: String,
    pub created_at_ms: i64,
}

impl Record for Window {
    const NAME: &'static str = "maintenance window";
    const VERSION: u8 = 1;
}

fn at(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

impl Window {
    pub fn start(&self) -> DateTime<Utc> {
        at(self.start_ms)
    }

    pub fn end(&self) -> DateTime<Utc> {
        at(self.end_ms)
    }

    pub fn is_active(&self, now: DateTime<Utc>) -> bool {
        self.start() <= now && now < self.end()
    }

    /// Ended before it began.
    pub fn is_cancelled(&self) -> bool {
        self.end_ms <= self.start_ms
    }

    pub fn to_json(&self, now: DateTime<Utc>) -> serde_json::Value {
        let state = if self.is_cancelled() {
            "cancelled"
        } else if self.is_active(now) {
            "active"
        } else if now < self.start() {
            "planned"
        } else {
            "over"
        };
        serde_json::json!({
            "id": self.id,
            "start": rfc3339(self.start()),
            "end": rfc3339(self.end()),
            "reason": self.reason,
            "state": state,
            "created_by": self.created_by,
            "created_at": rfc3339(at(self.created_at_ms)),
        })
    }
}

/// An alert message kept back during a window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Held {
    /// A UUIDv7: held messages go out in the order they came.
    pub id: String,
    pub at_ms: i64,
    pub text: String,
}

impl Record for Held {
    const NAME: &'static str = "held alert message";
    const VERSION: u8 = 1;
}

/// What planning a window takes (unchecked strings from the edge).
#[derive(Debug, Clone, Default)]
pub struct NewWindow {
    /// RFC 3339; now when absent.
    pub start: Option<String>,
    pub end: String,
    pub reason: String,
}

/// What the status summary shows during a window.
#[derive(Debug, Clone, PartialEq)]
pub struct Active {
    /// The end of the active windows, overlapping or back to back ones joined.
    pub until: DateTime<Utc>,
    pub reason: String,
}

/// The maintenance handle: cheap to clone. Windows are read from the store on each
/// question (there are few), so several processes sharing a store agree.
#[derive(Clone)]
pub struct Maintenance {
    store: Arc<dyn MaintenanceStore>,
    clock: Clock,
}

fn parse_time(field: &str, v: &str) -> Result<DateTime<Utc>, MaintenanceError> {
    DateTime::parse_from_rfc3339(v.trim())
        .map(|t| t.to_utc())
        .map_err(|e| {
            MaintenanceError::Invalid(format!(
                "{field}: expected an RFC 3339 time such as 2026-03-02T02:00:00Z ({e})"
            ))
        })
}

impl Maintenance {
    pub fn new(store: Arc<dyn MaintenanceStore>, clock: Clock) -> Maintenance {
        Maintenance { store, clock }
    }

    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    /// Plan a window. It may start now (no `start`) or later, lasts at most
    /// [`MAX_WINDOW`], and needs a reason.
    pub fn create(&self, new: NewWindow, by: &str) -> Result<(Window, Commit), MaintenanceError> {
        let now = self.clock.now();
        let start = match new.start.as_deref() {
            None => now,
            Some(s) => parse_time("start", s)?,
        };
        let end = parse_time("end", &new.end)?;
        if start < now - START_GRACE {
            return Err(MaintenanceError::Invalid(
                "start: must not be in the past (past minutes keep counting against uptime)".into(),
            ));
        }
        if end <= start {
            return Err(MaintenanceError::Invalid("end: must be after start".into()));
        }
        if end - start > MAX_WINDOW {
            return Err(MaintenanceError::Invalid(format!(
                "end: a window lasts at most {} days",
                MAX_WINDOW.num_days()
            )));
        }
        let reason = new.reason.trim();
        if reason.is_empty() {
            return Err(MaintenanceError::Invalid("reason: required".into()));
        }
        if reason.chars().count() > MAX_REASON {
            return Err(MaintenanceError::Invalid(format!(
                "reason: at most {MAX_REASON} characters"
            )));
        }
        if reason.chars().any(char::is_control) {
            return Err(MaintenanceError::Invalid(
                "reason: must be one line without control characters".into(),
            ));
        }
        let w = Window {
            id: uuid::Uuid::now_v7().to_string(),
            start_ms: start.timestamp_millis(),
            end_ms: end.timestamp_millis(),
            reason: reason.to_string(),
            created_by: by.to_string(),
            created_at_ms: now.timestamp_millis(),
        };
        let commit = self.store.add_window(&w)?;
        Ok((w, commit))
    }

    /// End a window now: an active one stops counting from this minute on (held alert
    /// messages go out), a planned one is cancelled.
    pub fn end(&self, id: &str) -> Result<(Window, Commit), MaintenanceError> {
        let now = self.clock.now();
        let w = self
            .store
            .get_window(id)?
            .ok_or_else(|| MaintenanceError::NotFound(id.to_string()))?;
        if w.is_cancelled() || w.end() <= now {
            return Err(MaintenanceError::Conflict(format!(
                "maintenance window {id} is already over"
            )));
        }
        let end_ms = now.timestamp_millis().max(w.start_ms);
        self.store
            .set_window_end(id, end_ms)?
            .ok_or_else(|| MaintenanceError::NotFound(id.to_string()))
    }

    /// Every window, by start.
    pub fn list(&self) -> Result<Vec<Window>, StoreError> {
        self.store.windows_ending_after(i64::MIN)
    }

    /// The maintenance going on at `now`, if any.
    pub fn active_at(&self, now: DateTime<Utc>) -> Result<Option<Active>, StoreError> {
        let ms = now.timestamp_millis();
        let windows = self.store.windows_ending_after(ms)?;
        let Some(first) = windows.iter().find(|w| w.is_active(now)) else {
            return Ok(None);
        };
        // Follow windows that overlap or touch: the summary's `until` is when it is over.
        let mut until = first.end_ms;
        for w in &windows {
            if w.start_ms <= until {
                until = until.max(w.end_ms);
            }
        }
        Ok(Some(Active {
            until: at(until),
            reason: first.reason.clone(),
        }))
    }

    pub fn active(&self) -> Result<Option<Active>, StoreError> {
        self.active_at(self.clock.now())
    }

    /// Minutes (since the epoch) in `from..=to` that overlap a window, as sorted,
    /// disjoint inclusive ranges: the SLO leaves them out of uptime and the budget.
    pub fn excluded_minutes(&self, from: u64, to: u64) -> Result<Vec<(u64, u64)>, StoreError> {
        let after_ms = i64::try_from(from.saturating_mul(60_000)).unwrap_or(i64::MAX);
        let mut ranges: Vec<(u64, u64)> = Vec::new();
        for w in self.store.windows_ending_after(after_ms)? {
            if w.is_cancelled() {
                continue;
            }
            let first = (w.start_ms.max(0) / 60_000) as u64;
            // The minute holding the end's last millisecond.
            let last = ((w.end_ms - 1).max(0) / 60_000) as u64;
            let (a, b) = (first.max(from), last.min(to));
            if a > b {
                continue;
            }
            match ranges.last_mut() {
                Some(r) if a <= r.1 + 1 => r.1 = r.1.max(b),
                _ => ranges.push((a, b)),
            }
        }
        Ok(ranges)
    }

    /// The runbook's low-traffic window after `now`: the next 02:00–06:00 UTC.
    pub fn suggested(&self) -> (DateTime<Utc>, DateTime<Utc>) {
        suggested_after(self.clock.now())
    }

    pub fn held_count(&self) -> Result<usize, StoreError> {
        self.store.held_count()
    }
}

/// The next 02:00–06:00 UTC that starts after `now`.
pub fn suggested_after(now: DateTime<Utc>) -> (DateTime<Utc>, DateTime<Utc>) {
    let (from, to) = LOW_TRAFFIC_UTC;
    let start_time = NaiveTime::from_hms_opt(from, 0, 0).unwrap_or_default();
    let mut start = now.date_naive().and_time(start_time).and_utc();
    if start <= now {
        start += Duration::days(1);
    }
    (start, start + Duration::hours(i64::from(to - from)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().to_utc()
    }

    #[test]
    fn suggestion_is_the_next_low_traffic_window() {
        let (s, e) = suggested_after(t("2026-03-02T01:00:00Z"));
        assert_eq!(
            (s, e),
            (t("2026-03-02T02:00:00Z"), t("2026-03-02T06:00:00Z"))
        );
        let (s, _) = suggested_after(t("2026-03-02T02:00:00Z"));
        assert_eq!(s, t("2026-03-03T02:00:00Z"));
    }
}
