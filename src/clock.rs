//! Wall-clock time behind a handle, so tests can freeze and advance it (job backoff,
//! cron, SLO windows) while production reads the system clock.

use std::sync::{Arc, Mutex};

use chrono::{DateTime, SecondsFormat, Utc};

/// The system clock, or a manual one in tests. Cheap to clone.
#[derive(Clone, Default)]
pub struct Clock(Option<Arc<Mutex<DateTime<Utc>>>>);

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            None => f.write_str("Clock(system)"),
            Some(_) => write!(f, "Clock(manual {})", self.now()),
        }
    }
}

impl Clock {
    pub fn system() -> Self {
        Self(None)
    }

    /// A clock that stands still at `start` until advanced.
    pub fn manual(start: DateTime<Utc>) -> Self {
        Self(Some(Arc::new(Mutex::new(start))))
    }

    pub fn now(&self) -> DateTime<Utc> {
        match &self.0 {
            None => Utc::now(),
            Some(t) => *t.lock().unwrap_or_else(|p| p.into_inner()),
        }
    }

    /// Move a manual clock forward; no effect on the system clock.
    pub fn advance(&self, by: chrono::Duration) {
        if let Some(t) = &self.0 {
            let mut t = t.lock().unwrap_or_else(|p| p.into_inner());
            *t += by;
        }
    }
}

/// RFC 3339 in UTC with milliseconds, the format of every time we show.
pub fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Now, as RFC 3339.
pub fn now_rfc3339() -> String {
    rfc3339(Utc::now())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_advances() {
        let start = DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
            .unwrap()
            .to_utc();
        let c = Clock::manual(start);
        assert_eq!(c.now(), start);
        c.advance(chrono::Duration::seconds(90));
        assert_eq!(rfc3339(c.now()), "2026-01-01T00:01:30.000Z");
    }
}
