//! The runbook's communication templates, rendered exactly (its "Incident Detected" and
//! "Incident Resolved" blocks). The runbook file's bytes for the two emoji are
//! mis-encoded (UTF-8 read as Latin-1 and encoded again); these are the real ones:
//! U+1F6A8 POLICE CARS REVOLVING LIGHT and U+2705 WHITE HEAVY CHECK MARK.

use super::{Incident, IncidentError};

pub const DETECTED_EMOJI: char = '\u{1F6A8}';
pub const RESOLVED_EMOJI: char = '\u{2705}';

/// Which template.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Detected,
    Resolved,
}

impl Kind {
    pub fn parse(s: &str) -> Result<Kind, IncidentError> {
        match s {
            "detected" => Ok(Kind::Detected),
            "resolved" => Ok(Kind::Resolved),
            other => Err(IncidentError::Invalid(format!(
                "kind: {other:?} is not one of detected, resolved"
            ))),
        }
    }

    /// `resolved` for a resolved incident, `detected` otherwise.
    pub fn for_incident(i: &Incident) -> Kind {
        if i.resolved_at_ms.is_some() {
            Kind::Resolved
        } else {
            Kind::Detected
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Detected => "detected",
            Kind::Resolved => "resolved",
        }
    }
}

/// The announcement text: the template's lines joined by `\n`, no trailing newline.
/// `Resolved` needs a resolved incident.
pub fn render(i: &Incident, kind: Kind) -> Result<String, IncidentError> {
    match kind {
        Kind::Detected => Ok(format!(
            "{DETECTED_EMOJI} INCIDENT: {}\nSeverity: {}\nImpact: {}\nStatus: {}\nETA: {}",
            i.title,
            i.severity.as_str(),
            i.impact,
            i.status.title(),
            i.eta
        )),
        Kind::Resolved => {
            let Some(d) = i.duration() else {
                return Err(IncidentError::Conflict(format!(
                    "incident {} is {}: no resolution to announce yet",
                    i.id,
                    i.status.as_str()
                )));
            };
            Ok(format!(
                "{RESOLVED_EMOJI} RESOLVED: {}\nRoot Cause: {}\nResolution: {}\nPrevention: {}\nDuration: {}",
                i.title,
                i.root_cause,
                i.resolution,
                i.prevention,
                duration(d)
            ))
        }
    }
}

/// `45s`, `12m`, `2h 5m`, `1d 3h`: the largest units, zeros left out.
pub fn duration(d: chrono::Duration) -> String {
    let s = d.num_seconds().max(0);
    if s < 60 {
        return format!("{s}s");
    }
    let (days, hours, mins) = (s / 86_400, s % 86_400 / 3600, s % 3600 / 60);
    let parts: Vec<String> = [(days, "d"), (hours, "h"), (mins, "m")]
        .iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, u)| format!("{n}{u}"))
        .collect();
    parts.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_a_person_wrote_them() {
        let m = chrono::Duration::minutes;
        assert_eq!(duration(chrono::Duration::seconds(42)), "42s");
        assert_eq!(duration(m(12)), "12m");
        assert_eq!(duration(m(125)), "2h 5m");
        assert_eq!(duration(m(60)), "1h");
        assert_eq!(duration(m(27 * 60)), "1d 3h");
    }

    #[test]
    fn emoji_are_the_real_code_points() {
        assert_eq!("\u{1F6A8}".as_bytes(), [0xF0, 0x9F, 0x9A, 0xA8]);
        assert_eq!(RESOLVED_EMOJI.to_string().as_bytes(), [0xE2, 0x9C, 0x85]);
    }
}
