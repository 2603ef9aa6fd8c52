//! Incidents, as the runbook runs them: a severity (P0–P3), a status that moves
//! `investigating → identified → monitoring → resolved`, a timeline of updates, the
//! runbook's communication templates ([`announce`]), and the postmortem rule (a resolved
//! P0 or P1 needs one within 48 hours).

pub mod announce;
pub mod store;

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::clock::{Clock, rfc3339};
use crate::store::{Commit, Record, StoreError};
pub use store::IncidentStore;

/// How long after resolution a P0 or P1 may go without a postmortem.
pub const POSTMORTEM_DUE: chrono::Duration = chrono::Duration::hours(48);

/// Longest single-line field (title, impact, ETA, root cause, ...).
pub const MAX_LINE: usize = 500;
/// Longest free text (update message, postmortem sections).
pub const MAX_TEXT: usize = 10_000;

#[derive(Debug, thiserror::Error)]
pub enum IncidentError {
    #[error("no such incident: {0}")]
    NotFound(String),
    /// Bad input; the message names the field.
    #[error("{0}")]
    Invalid(String),
    /// Not allowed in the incident's state.
    #[error("{0}")]
    Conflict(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl crate::error::Classify for IncidentError {
    fn kind(&self) -> crate::error::ErrorKind {
        use crate::error::ErrorKind;
        match self {
            IncidentError::NotFound(_) => ErrorKind::NotFound,
            IncidentError::Invalid(_) => ErrorKind::Invalid,
            IncidentError::Conflict(_) => ErrorKind::Conflict,
            IncidentError::Store(s) => s.kind(),
        }
    }
    fn public_message(&self) -> String {
        match self {
            IncidentError::Store(s) => s.public_message(),
            e => e.to_string(),
        }
    }
}

/// The runbook's severity levels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Severity {
    P0,
    P1,
    P2,
    P3,
}

impl Severity {
    pub fn parse(s: &str) -> Result<Severity, IncidentError> {
        match s {
            "P0" => Ok(Severity::P0),
            "P1" => Ok(Severity::P1),
            "P2" => Ok(Severity::P2),
            "P3" => Ok(Severity::P3),
            other => Err(IncidentError::Invalid(format!(
                "severity: {other:?} is not one of P0, P1, P2, P3"
            ))),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Severity::P0 => "P0",
            Severity::P1 => "P1",
            Severity::P2 => "P2",
            Severity::P3 => "P3",
        }
    }

    /// The runbook's word for it.
    pub fn label(self) -> &'static str {
        match self {
            Severity::P0 => "Critical",
            Severity::P1 => "High",
            Severity::P2 => "Medium",
            Severity::P3 => "Low",
        }
    }

    /// P0 and P1 need a postmortem.
    pub fn needs_postmortem(self) -> bool {
        self <= Severity::P1
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Status {
    Investigating,
    Identified,
    Monitoring,
    Resolved,
}

impl Status {
    pub fn parse(s: &str) -> Result<Status, IncidentError> {
        match s {
            "investigating" => Ok(Status::Investigating),
            "identified" => Ok(Status::Identified),
            "monitoring" => Ok(Status::Monitoring),
            "resolved" => Ok(Status::Resolved),
            other => Err(IncidentError::Invalid(format!(
                "status: {other:?} is not one of investigating, identified, monitoring, resolved"
            ))),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Investigating => "investigating",
            Status::Identified => "identified",
            Status::Monitoring => "monitoring",
            Status::Resolved => "resolved",
        }
    }

    /// As the templates write it.
    pub fn title(self) -> &'static str {
        match self {
            Status::Investigating => "Investigating",
            Status::Identified => "Identified",
            Status::Monitoring => "Monitoring",
            Status::Resolved => "Resolved",
        }
    }
}

/// One timeline entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Update {
    pub at_ms: i64,
    pub by: String,
    /// The status after this update.
    pub status: Status,
    pub message: String,
}

/// The postmortem (runbook: timeline, root cause, preventive measures, runbook updates).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Postmortem {
    pub at_ms: i64,
    pub by: String,
    pub timeline: String,
    pub root_cause: String,
    pub preventive_measures: String,
    pub runbook_updates: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Incident {
    /// A UUIDv7: sorts by creation.
    pub id: String,
    pub title: String,
    pub severity: Severity,
    pub impact: String,
    pub eta: String,
    pub status: Status,
    pub opened_at_ms: i64,
    pub opened_by: String,
    /// The alert that opened it (`AUTO_INCIDENTS`); empty when opened by hand.
    pub alert: String,
    pub updates: Vec<Update>,
    pub resolved_at_ms: Option<i64>,
    pub root_cause: String,
    pub resolution: String,
    pub prevention: String,
    pub postmortem: Option<Postmortem>,
}

impl Record for Incident {
    const NAME: &'static str = "incident";
    const VERSION: u8 = 1;
}

fn at(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

impl Incident {
    pub fn opened_at(&self) -> DateTime<Utc> {
        at(self.opened_at_ms)
    }

    pub fn resolved_at(&self) -> Option<DateTime<Utc>> {
        self.resolved_at_ms.map(at)
    }

    /// Time to resolution, for a resolved incident.
    pub fn duration(&self) -> Option<chrono::Duration> {
        self.resolved_at().map(|r| r - self.opened_at())
    }

    /// Resolved, P0/P1, no postmortem, and the 48 hours are over at `now`.
    pub fn postmortem_overdue(&self, now: DateTime<Utc>) -> bool {
        self.severity.needs_postmortem()
            && self.postmortem.is_none()
            && self
                .resolved_at()
                .is_some_and(|r| now - r >= POSTMORTEM_DUE)
    }

    pub fn to_json(&self) -> serde_json::Value {
        let updates: Vec<_> = self
            .updates
            .iter()
            .map(|u| {
                serde_json::json!({
                    "at": rfc3339(at(u.at_ms)),
                    "by": u.by,
                    "status": u.status.as_str(),
                    "message": u.message,
                })
            })
            .collect();
        let postmortem = self.postmortem.as_ref().map(|p| {
            serde_json::json!({
                "at": rfc3339(at(p.at_ms)),
                "by": p.by,
                "timeline": p.timeline,
                "root_cause": p.root_cause,
                "preventive_measures": p.preventive_measures,
                "runbook_updates": p.runbook_updates,
            })
        });
        serde_json::json!({
            "id": self.id,
            "title": self.title,
            "severity": self.severity.as_str(),
            "severity_label": self.severity.label(),
            "impact": self.impact,
            "eta": self.eta,
            "status": self.status.as_str(),
            "opened_at": rfc3339(self.opened_at()),
            "opened_by": self.opened_by,
            "alert": self.alert,
            "resolved_at": self.resolved_at().map(rfc3339),
            "duration_secs": self.duration().map(|d| d.num_seconds()),
            "duration": self.duration().map(announce::duration),
            "root_cause": self.root_cause,
            "resolution": self.resolution,
            "prevention": self.prevention,
            "postmortem": postmortem,
            "postmortem_required": self.severity.needs_postmortem(),
            "updates": updates,
        })
    }
}

/// A field checked to be one line of 1..=`MAX_LINE` characters.
fn line(field: &str, v: &str) -> Result<String, IncidentError> {
    let v = v.trim();
    if v.is_empty() {
        return Err(IncidentError::Invalid(format!("{field}: required")));
    }
    if v.chars().count() > MAX_LINE {
        return Err(IncidentError::Invalid(format!(
            "{field}: at most {MAX_LINE} characters"
        )));
    }
    if v.chars().any(char::is_control) {
        return Err(IncidentError::Invalid(format!(
            "{field}: must be one line without control characters"
        )));
    }
    Ok(v.to_string())
}

/// Free text of 1..=`MAX_TEXT` characters (newlines allowed).
fn text(field: &str, v: &str) -> Result<String, IncidentError> {
    let v = v.trim();
    if v.is_empty() {
        return Err(IncidentError::Invalid(format!("{field}: required")));
    }
    if v.chars().count() > MAX_TEXT {
        return Err(IncidentError::Invalid(format!(
            "{field}: at most {MAX_TEXT} characters"
        )));
    }
    if v.chars().any(|c| c.is_control() && c != '\n' && c != '\t') {
        return Err(IncidentError::Invalid(format!(
            "{field}: control characters are not allowed"
        )));
    }
    Ok(v.to_string())
}

/// What opening an incident takes (unchecked strings from the edge).
#[derive(Debug, Clone, Default)]
pub struct NewIncident {
    pub title: String,
    pub severity: String,
    pub impact: String,
    pub eta: Option<String>,
}

/// A timeline update; resolving takes the root cause, resolution and prevention.
#[derive(Debug, Clone, Default)]
pub struct NewUpdate {
    pub message: String,
    pub status: Option<String>,
    pub eta: Option<String>,
    pub root_cause: Option<String>,
    pub resolution: Option<String>,
    pub prevention: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub struct NewPostmortem {
    pub timeline: String,
    pub root_cause: String,
    pub preventive_measures: String,
    pub runbook_updates: String,
}

/// The incidents handle: cheap to clone.
#[derive(Clone)]
pub struct Incidents {
    store: Arc<dyn IncidentStore>,
    clock: Clock,
}

impl Incidents {
    pub fn new(store: Arc<dyn IncidentStore>, clock: Clock) -> Incidents {
        Incidents { store, clock }
    }

    /// Open an incident: status `investigating`, ETA `Unknown` unless given.
    pub fn open(&self, new: NewIncident, by: &str) -> Result<(Incident, Commit), IncidentError> {
        self.open_with_alert(new, by, "")
    }

    fn open_with_alert(
        &self,
        new: NewIncident,
        by: &str,
        alert: &str,
    ) -> Result<(Incident, Commit), IncidentError> {
        let severity = Severity::parse(new.severity.trim())?;
        let title = line("title", &new.title)?;
        let impact = line("impact", &new.impact)?;
        let eta = match new.eta.as_deref().map(str::trim) {
            None | Some("") => "Unknown".to_string(),
            Some(e) => line("eta", e)?,
        };
        let now = self.clock.now().timestamp_millis();
        let incident = Incident {
            id: uuid::Uuid::now_v7().to_string(),
            title,
            severity,
            impact,
            eta,
            status: Status::Investigating,
            opened_at_ms: now,
            opened_by: by.to_string(),
            alert: alert.to_string(),
            updates: vec![Update {
                at_ms: now,
                by: by.to_string(),
                status: Status::Investigating,
                message: "incident opened".into(),
            }],
            resolved_at_ms: None,
            root_cause: String::new(),
            resolution: String::new(),
            prevention: String::new(),
            postmortem: None,
        };
        let commit = self.store.insert_incident(&incident)?;
        Ok((incident, commit))
    }

    /// A critical alert opens a P1 incident (`AUTO_INCIDENTS=true`), unless one it opened
    /// is still unresolved. `None` when there was one already.
    pub fn open_for_alert(
        &self,
        alert: &str,
        message: &str,
    ) -> Result<Option<(Incident, Commit)>, IncidentError> {
        let open = self.store.list_incidents(1000)?;
        if open
            .iter()
            .any(|i| i.alert == alert && i.status != Status::Resolved)
        {
            return Ok(None);
        }
        let new = NewIncident {
            title: format!("critical alert {alert}"),
            severity: "P1".into(),
            impact: message.chars().take(MAX_LINE).collect(),
            eta: None,
        };
        self.open_with_alert(new, "auto", alert).map(Some)
    }

    pub fn get(&self, id: &str) -> Result<Incident, IncidentError> {
        self.store
            .get_incident(id)?
            .ok_or_else(|| IncidentError::NotFound(id.to_string()))
    }

    /// Newest first.
    pub fn list(&self, limit: usize) -> Result<Vec<Incident>, IncidentError> {
        Ok(self.store.list_incidents(limit)?)
    }

    /// Add a timeline entry, maybe moving the status. A resolved incident takes no more
    /// updates (open a new one); resolving needs root cause, resolution and prevention.
    pub fn update(
        &self,
        id: &str,
        u: NewUpdate,
        by: &str,
    ) -> Result<(Incident, Commit), IncidentError> {
        let message = text("message", &u.message)?;
        let status = u.status.as_deref().map(Status::parse).transpose()?;
        let eta = u.eta.as_deref().map(|e| line("eta", e)).transpose()?;
        let resolving = status == Some(Status::Resolved);
        let mut fields = [
            ("root_cause", &u.root_cause, String::new()),
            ("resolution", &u.resolution, String::new()),
            ("prevention", &u.prevention, String::new()),
        ];
        for (name, given, out) in fields.iter_mut() {
            match (given.as_deref(), resolving) {
                (Some(v), true) => *out = line(name, v)?,
                (None, true) => {
                    return Err(IncidentError::Invalid(format!(
                        "{name}: required to resolve"
                    )));
                }
                (Some(_), false) => {
                    return Err(IncidentError::Invalid(format!(
                        "{name}: only when resolving (status \"resolved\")"
                    )));
                }
                (None, false) => {}
            }
        }
        let now = self.clock.now().timestamp_millis();
        let [(_, _, root_cause), (_, _, resolution), (_, _, prevention)] = fields;
        self.store.change_incident(id, &mut |mut i: Incident| {
            if i.status == Status::Resolved {
                return Err(IncidentError::Conflict(format!(
                    "incident {} is resolved; open a new one",
                    i.id
                )));
            }
            let next = status.unwrap_or(i.status);
            if let Some(e) = &eta {
                i.eta = e.clone();
            }
            if next == Status::Resolved {
                i.resolved_at_ms = Some(now);
                i.root_cause = root_cause.clone();
                i.resolution = resolution.clone();
                i.prevention = prevention.clone();
            }
            i.status = next;
            i.updates.push(Update {
                at_ms: now,
                by: by.to_string(),
                status: next,
                message: message.clone(),
            });
            Ok(i)
        })
    }

    /// Store the postmortem of a resolved incident (again: it is replaced).
    pub fn postmortem(
        &self,
        id: &str,
        p: NewPostmortem,
        by: &str,
    ) -> Result<(Incident, Commit), IncidentError> {
        let pm = Postmortem {
            at_ms: self.clock.now().timestamp_millis(),
            by: by.to_string(),
            timeline: text("timeline", &p.timeline)?,
            root_cause: text("root_cause", &p.root_cause)?,
            preventive_measures: text("preventive_measures", &p.preventive_measures)?,
            runbook_updates: text("runbook_updates", &p.runbook_updates)?,
        };
        self.store.change_incident(id, &mut |mut i: Incident| {
            if i.status != Status::Resolved {
                return Err(IncidentError::Conflict(format!(
                    "incident {} is {}: a postmortem follows its resolution",
                    i.id,
                    i.status.as_str()
                )));
            }
            i.postmortem = Some(pm.clone());
            Ok(i)
        })
    }

    /// Resolved P0/P1 incidents whose postmortem is overdue at `now`.
    pub fn postmortems_overdue(&self) -> Result<Vec<Incident>, IncidentError> {
        let now = self.clock.now();
        Ok(self
            .store
            .awaiting_postmortem()?
            .into_iter()
            .filter(|i| i.postmortem_overdue(now))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn severities_and_statuses_parse_strictly() {
        assert_eq!(Severity::parse("P0").unwrap(), Severity::P0);
        assert_eq!(Severity::parse("P3").unwrap(), Severity::P3);
        for bad in ["P4", "p1", "1", "", "P01"] {
            assert!(Severity::parse(bad).is_err(), "{bad}");
        }
        assert!(Severity::P1.needs_postmortem() && !Severity::P2.needs_postmortem());
        assert!(Status::parse("closed").is_err());
        assert_eq!(Status::parse("monitoring").unwrap(), Status::Monitoring);
    }

    #[test]
    fn single_line_fields_refuse_newlines() {
        assert!(line("title", "a\nb").is_err());
        assert!(line("title", "  ").is_err());
        assert_eq!(line("title", " db down ").unwrap(), "db down");
        assert!(text("timeline", "10:00 alert\n10:05 ack").is_ok());
    }
}
