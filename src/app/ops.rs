//! Where flags, incidents and maintenance meet the rest, so none of those domains
//! depends on another: the flags gate the executors and cron, maintenance windows leave
//! their minutes out of the SLO and hold alert messages, an overdue postmortem is an
//! alert, and with `AUTO_INCIDENTS` a critical alert opens an incident.

use std::sync::Arc;
use std::time::Duration;

use super::AppState;
use crate::audit::{Audit, NewEvent};
use crate::flags::{Flags, SCHEDULER_CRON};
use crate::incidents::Incidents;
use crate::jobs::executors::Gate;
use crate::maintenance::Maintenance;
use crate::maintenance::hold::HoldingSink;
use crate::slo::MinuteExclusions;
use crate::slo::alerts::{Alert, AlertSink, AlertSource, Severity, Wanted};

/// How often held alert messages are checked for release.
pub(super) const RELEASE_EVERY: Duration = Duration::from_secs(2);

/// The built-in executors ask the `executor.*` flags before each claim.
pub(super) fn executor_gate(flags: &Flags) -> Gate {
    let flags = flags.clone();
    Arc::new(move |kind: &str| flags.executor_enabled(kind))
}

/// Schedules fire only while `scheduler.cron` is on.
pub(super) fn cron_gate(flags: &Flags) -> Arc<dyn Fn() -> bool + Send + Sync> {
    let flags = flags.clone();
    Arc::new(move || flags.is_enabled(SCHEDULER_CRON))
}

/// Hooks that hold without a running server too (tests drive the figures and the alert
/// evaluation directly).
pub(super) fn install(state: &AppState) {
    state
        .slo
        .set_exclusions(Arc::new(MaintenanceMinutes(state.maintenance.clone())));
    state
        .alerts
        .add_source(Arc::new(Postmortems(state.incidents.clone())));
    if state.config.auto_incidents {
        let incidents = state.incidents.clone();
        let maintenance = state.maintenance.clone();
        let audit = state.audit.clone();
        state.alerts.on_fired(Arc::new(move |a: &Alert| {
            open_for_alert(&incidents, &maintenance, &audit, a);
        }));
    }
}

/// Put `sink` behind a [`HoldingSink`] and start the task that releases held messages
/// once a window is over.
pub(super) fn hold_during_maintenance(
    state: &AppState,
    sink: Arc<dyn AlertSink>,
) -> Arc<dyn AlertSink> {
    let holding = HoldingSink::new(state.maintenance.clone(), sink);
    let h = holding.clone();
    state.supervisor.spawn("alerts-held", move |token| {
        let h = h.clone();
        async move {
            loop {
                match h.release().await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!("released {n} alert messages held for maintenance"),
                    Err(e) => tracing::error!(error = %e, "could not release held alert messages"),
                }
                tokio::select! {
                    _ = token.cancelled() => return Ok(()),
                    _ = tokio::time::sleep(RELEASE_EVERY) => {}
                }
            }
        }
    });
    Arc::new(holding)
}

struct MaintenanceMinutes(Maintenance);

impl MinuteExclusions for MaintenanceMinutes {
    fn excluded(&self, from: u64, to: u64) -> Vec<(u64, u64)> {
        self.0.excluded_minutes(from, to).unwrap_or_else(|e| {
            tracing::error!(error = %e, "cannot read maintenance windows; counting every minute");
            Vec::new()
        })
    }
}

/// A resolved P0/P1 without a postmortem 48 hours on: one `warning` naming them all.
struct Postmortems(Incidents);

impl AlertSource for Postmortems {
    fn wanted(&self) -> Vec<Wanted> {
        let overdue = match self.0.postmortems_overdue() {
            Ok(v) => v,
            Err(e) => {
                tracing::error!(error = %e, "cannot read incidents for overdue postmortems");
                return Vec::new();
            }
        };
        if overdue.is_empty() {
            return Vec::new();
        }
        let list: Vec<String> = overdue
            .iter()
            .map(|i| format!("{} {} ({})", i.severity.as_str(), i.title, i.id))
            .collect();
        vec![Wanted {
            name: "postmortem_overdue",
            severity: Severity::Warning,
            message: format!("no postmortem 48 h after resolution: {}", list.join("; ")),
        }]
    }
}

/// `AUTO_INCIDENTS`: a critical alert outside maintenance opens a P1 incident (one per
/// alert while it is unresolved), audited as the system's own `incident.open`.
fn open_for_alert(incidents: &Incidents, maintenance: &Maintenance, audit: &Audit, a: &Alert) {
    if a.severity != Severity::Critical {
        return;
    }
    if matches!(maintenance.active(), Ok(Some(_))) {
        return;
    }
    let (incident, commit) = match incidents.open_for_alert(&a.name, &a.message) {
        Ok(Some(x)) => x,
        Ok(None) => return,
        Err(e) => {
            tracing::error!(error = %e, alert = %a.name, "could not open an incident");
            return;
        }
    };
    tracing::warn!(incident = %incident.id, alert = %a.name, "critical alert opened a P1 incident");
    let audit = audit.clone();
    tokio::spawn(async move {
        let event = NewEvent {
            action: "incident.open".into(),
            target: format!("incident:{}", incident.id),
            ok: true,
            status: 201,
            ..NewEvent::default()
        };
        if let Err(e) = audit.record(event).await {
            tracing::error!(error = %e, "could not audit incident.open");
        }
        if let Err(e) = commit.durable().await {
            tracing::error!(error = %e, "incident not durable");
        }
    });
}
