//! Alerts: the runbook's thresholds and the multi-window burn-rate rules, evaluated from
//! the SLO figures; each alert lives `firing → resolved` in the `alerts` tree, each change
//! is an audit event (`alert.fired`, `alert.resolved`) and a message to the alert sink.
//!
//! Rules (runbook "Alert Thresholds"; Google SRE workbook ch. 5 for burn rates):
//! - critical: error budget < 10 %; uptime < 99 %; burn 1 h and 5 m > 14.4×; burn 6 h and
//!   30 m > 6×
//! - warning: error budget < 25 % (not also when < 10 %); P95 of the last hour > 500 ms;
//!   burn 1 d and 2 h > 3×; burn 3 d and 6 h > 1×; scheduler tick older than two intervals
//!   (once a scheduler runs: see [`crate::slo::Slo::expect_ticks`])
//! - uptime and budget rules wait for [`MIN_OBSERVED_MINUTES`] of observed window: right
//!   after a first start one missed minute would read as 66 % uptime (the burn-rate pairs
//!   already need their long window's traffic)
//! - info: a new deployment (version or commit differs from the last run); a feature-flag
//!   change ([`Alerts::info`]). Info alerts resolve by themselves after an hour, silently.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::store::AlertStore;
use super::{Figures, Slo};
use crate::audit::{Audit, NewEvent};
use crate::clock::{Clock, rfc3339};
use crate::store::meta::Instance;
use crate::store::{Record, StoreError};

/// How often the supervised task evaluates the rules.
pub const EVALUATE_EVERY: Duration = Duration::from_secs(5);
/// The observed window the uptime and budget rules need before they may fire: an hour,
/// the shortest burn-rate pair's long window.
pub const MIN_OBSERVED_MINUTES: u64 = 60;
/// Info alerts (deployments, flag changes) stay listed this long.
pub const INFO_TTL: chrono::Duration = chrono::Duration::hours(1);

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    Warning,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertState {
    Firing,
    Resolved,
}

impl std::str::FromStr for AlertState {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "firing" => Ok(AlertState::Firing),
            "resolved" => Ok(AlertState::Resolved),
            other => Err(format!(
                "unknown alert state {other:?} (firing or resolved)"
            )),
        }
    }
}

/// One alert, from firing to resolved. Stored at its id (big-endian).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    pub id: u64,
    pub name: String,
    pub severity: Severity,
    pub state: AlertState,
    pub message: String,
    pub fired_at: String,
    /// Empty while firing.
    pub resolved_at: String,
}

impl Record for Alert {
    const NAME: &'static str = "alert";
    const VERSION: u8 = 1;
}

/// A rule that holds now.
#[derive(Debug, Clone, PartialEq)]
pub struct Wanted {
    pub name: &'static str,
    pub severity: Severity,
    pub message: String,
}

/// The rules: which alerts should be firing for these figures. Pure, so each threshold
/// is tested on its own.
pub fn conditions(f: &Figures, tick_secs: u64, ticks_expected: bool) -> Vec<Wanted> {
    let mut out = Vec::new();
    let mut want = |name, severity, message: String| {
        out.push(Wanted {
            name,
            severity,
            message,
        })
    };
    let judged = f.observed_minutes >= MIN_OBSERVED_MINUTES;
    let left = f.budget.remaining_pct;
    if judged && left < 10.0 {
        want(
            "error_budget_critical",
            Severity::Critical,
            format!("error budget {left:.1}% left (below 10%)"),
        );
    } else if judged && left < 25.0 {
        want(
            "error_budget_low",
            Severity::Warning,
            format!("error budget {left:.1}% left (below 25%)"),
        );
    }
    if judged && f.uptime_pct < 99.0 {
        want(
            "uptime_low",
            Severity::Critical,
            format!(
                "uptime {:.2}% over the last {} minutes (below 99%)",
                f.uptime_pct, f.observed_minutes
            ),
        );
    }
    if f.latency_p95_1h_ms > 500.0 {
        want(
            "latency_p95_high",
            Severity::Warning,
            format!(
                "P95 latency {:.0} ms over the last hour (above 500 ms)",
                f.latency_p95_1h_ms
            ),
        );
    }
    let burn = |long: &str, short: &str, over: f64| {
        let (l, s) = (f.burn(long), f.burn(short));
        (l > over && s > over).then(|| {
            format!(
                "error budget burning {l:.1}× over {long} and {s:.1}× over {short} (above {over}×)"
            )
        })
    };
    if let Some(m) = burn("1h", "5m", 14.4) {
        want("burn_rate_1h", Severity::Critical, m);
    }
    if let Some(m) = burn("6h", "30m", 6.0) {
        want("burn_rate_6h", Severity::Critical, m);
    }
    if let Some(m) = burn("1d", "2h", 3.0) {
        want("burn_rate_1d", Severity::Warning, m);
    }
    if let Some(m) = burn("3d", "6h", 1.0) {
        want("burn_rate_3d", Severity::Warning, m);
    }
    if ticks_expected && f.scheduler_tick_age_secs > 2.0 * tick_secs as f64 {
        want(
            "scheduler_tick_stale",
            Severity::Warning,
            format!(
                "last scheduler tick {:.0} s ago (expected every {tick_secs} s)",
                f.scheduler_tick_age_secs
            ),
        );
    }
    out
}

/// Where alert messages go. `deliver` must return quickly (queue the message); retries
/// are the sink's business. The server's sink enqueues an `alert.webhook` job, so the
/// queue's durability and backoff apply.
pub trait AlertSink: Send + Sync {
    fn deliver(
        &self,
        text: String,
    ) -> Pin<Box<dyn Future<Output = anyhow::Result<()>> + Send + '_>>;
}

/// Rules owned by other domains (an overdue postmortem), checked with the SLO rules at
/// every evaluation: an alert fires while its rule holds and resolves when it stops.
pub trait AlertSource: Send + Sync {
    fn wanted(&self) -> Vec<Wanted>;
}

/// Called with every alert that fires (`AUTO_INCIDENTS` opens an incident for a critical
/// one). Must return quickly.
pub type FiredHook = Arc<dyn Fn(&Alert) + Send + Sync>;

/// No webhook configured: messages are dropped (the alerts are still stored and audited).
pub struct NoSink;

impl AlertSink for NoSink {
    fn deliver(
        &self,
        _text: String,
    ) -> Pin<Box<dyn Future<Output = anyhow::Result<()>> + Send + '_>> {
        Box::pin(async { Ok(()) })
    }
}

/// The alerts handle; cheap to clone.
#[derive(Clone)]
pub struct Alerts(Arc<Inner>);

struct Inner {
    store: Arc<dyn AlertStore>,
    audit: Audit,
    clock: Clock,
    /// Firing alerts by name (at most one per name).
    firing: Mutex<BTreeMap<String, Alert>>,
    /// One evaluation or transition at a time, so a rule never fires twice.
    turn: tokio::sync::Mutex<()>,
    sink: RwLock<Arc<dyn AlertSink>>,
    /// This start and the one before (a changed version or commit is a deployment).
    instance: Instance,
    deployment_checked: AtomicBool,
    sources: RwLock<Vec<Arc<dyn AlertSource>>>,
    fired_hooks: RwLock<Vec<FiredHook>>,
    /// Conditions other domains hold (a failed backup verification), kept firing by
    /// every evaluation until cleared.
    held: Mutex<BTreeMap<&'static str, (Severity, String)>>,
}

impl Alerts {
    pub fn open(
        store: Arc<dyn AlertStore>,
        audit: Audit,
        clock: Clock,
        instance: Instance,
    ) -> Result<Alerts, StoreError> {
        let firing = store
            .firing()?
            .into_iter()
            .map(|a| (a.name.clone(), a))
            .collect();
        Ok(Alerts(Arc::new(Inner {
            store,
            audit,
            clock,
            firing: Mutex::new(firing),
            turn: tokio::sync::Mutex::new(()),
            sink: RwLock::new(Arc::new(NoSink)),
            instance,
            deployment_checked: AtomicBool::new(false),
            sources: RwLock::default(),
            fired_hooks: RwLock::default(),
            held: Mutex::default(),
        })))
    }

    /// Replace where messages go (the server installs the job-queue sink when
    /// `ALERT_WEBHOOK_URL` is set).
    pub fn set_sink(&self, sink: Arc<dyn AlertSink>) {
        *self.0.sink.write().unwrap_or_else(|p| p.into_inner()) = sink;
    }

    /// Add a rule source (see [`AlertSource`]).
    pub fn add_source(&self, source: Arc<dyn AlertSource>) {
        self.0
            .sources
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .push(source);
    }

    /// Call `hook` with every alert that fires from now on.
    pub fn on_fired(&self, hook: FiredHook) {
        self.0
            .fired_hooks
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .push(hook);
    }

    fn sourced(&self) -> Vec<Wanted> {
        let sources = self
            .0
            .sources
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        sources.iter().flat_map(|s| s.wanted()).collect()
    }

    /// Alerts firing now, worst first.
    pub fn firing(&self) -> Vec<Alert> {
        let mut v: Vec<Alert> = self
            .0
            .firing
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect();
        v.sort_by(|a, b| b.severity.cmp(&a.severity).then(a.id.cmp(&b.id)));
        v
    }

    /// Newest first, optionally only those in `state`, at most `limit`.
    pub fn list(&self, state: Option<AlertState>, limit: usize) -> Result<Vec<Alert>, StoreError> {
        let mut out = Vec::new();
        for r in self.0.store.newest_first() {
            let a = r?;
            if state.is_none_or(|s| s == a.state) {
                out.push(a);
                if out.len() >= limit {
                    break;
                }
            }
        }
        Ok(out)
    }

    /// Hold a condition another domain sees (a backup that failed verification): it
    /// fires now unless already firing, and stays until [`Alerts::clear`].
    pub async fn raise(
        &self,
        name: &'static str,
        severity: Severity,
        message: &str,
    ) -> anyhow::Result<()> {
        self.0
            .held
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name, (severity, message.to_string()));
        let _turn = self.0.turn.lock().await;
        if self.firing().iter().any(|a| a.name == name) {
            return Ok(());
        }
        self.fire(name, severity, message).await
    }

    /// Drop a held condition; the next evaluation resolves its alert.
    pub fn clear(&self, name: &str) {
        self.0
            .held
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(name);
    }

    /// Raise an info alert now (a feature flag changed, ...). A firing info alert of the
    /// same name is resolved first.
    pub async fn info(&self, name: &str, message: &str) -> anyhow::Result<()> {
        let _turn = self.0.turn.lock().await;
        let old = self
            .0
            .firing
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .cloned();
        if let Some(old) = old {
            self.resolve(old, false).await?;
        }
        self.fire(name, Severity::Info, message).await
    }

    async fn fire(&self, name: &str, severity: Severity, message: &str) -> anyhow::Result<()> {
        let now = rfc3339(self.0.clock.now());
        let alert = Alert {
            id: self.0.store.next_id()?,
            name: name.to_string(),
            severity,
            state: AlertState::Firing,
            message: message.to_string(),
            fired_at: now.clone(),
            resolved_at: String::new(),
        };
        self.0.store.put(&alert)?.durable().await?;
        self.0
            .firing
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name.to_string(), alert.clone());
        tracing::warn!(alert = name, severity = severity.as_str(), "{message}");
        self.audit("alert.fired", &alert).await;
        let hooks = self
            .0
            .fired_hooks
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        for hook in hooks {
            hook(&alert);
        }
        let text = format!(
            "[{}] EchoPilot {name}: {message} (since {now})",
            severity.as_str().to_uppercase()
        );
        self.send(text).await;
        Ok(())
    }

    async fn resolve(&self, mut alert: Alert, notify: bool) -> anyhow::Result<()> {
        alert.state = AlertState::Resolved;
        alert.resolved_at = rfc3339(self.0.clock.now());
        self.0.store.put(&alert)?.durable().await?;
        self.0
            .firing
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&alert.name);
        tracing::info!(alert = %alert.name, "alert resolved");
        self.audit("alert.resolved", &alert).await;
        if notify {
            let text = format!(
                "[RESOLVED] EchoPilot {}: {} (fired {}, resolved {})",
                alert.name, alert.message, alert.fired_at, alert.resolved_at
            );
            self.send(text).await;
        }
        Ok(())
    }

    async fn audit(&self, action: &str, alert: &Alert) {
        let r = self
            .0
            .audit
            .record(NewEvent {
                action: action.to_string(),
                target: format!("alert/{}", alert.name),
                ok: true,
                error: None,
                ..NewEvent::default()
            })
            .await;
        if let Err(e) = r {
            tracing::error!(error = %e, "could not audit {action}");
        }
    }

    async fn send(&self, text: String) {
        let sink = self
            .0
            .sink
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        if let Err(e) = sink.deliver(text).await {
            tracing::error!(error = %e, "could not queue the alert message");
        }
    }
}

/// What one evaluation changed: (alert name, new state).
pub type Changes = Vec<(String, AlertState)>;

/// Evaluate every rule once and fire or resolve alerts accordingly.
pub async fn evaluate(alerts: &Alerts, slo: &Slo) -> anyhow::Result<Changes> {
    let _turn = alerts.0.turn.lock().await;
    let figures = slo.figures()?;
    let mut wanted = conditions(&figures, slo.tick_secs(), slo.ticks_expected());
    wanted.extend(alerts.sourced());
    for (name, (severity, message)) in alerts
        .0
        .held
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
    {
        wanted.push(Wanted {
            name,
            severity: *severity,
            message: message.clone(),
        });
    }
    let mut changes = Changes::new();

    if !alerts.0.deployment_checked.swap(true, Ordering::Relaxed) {
        let i = &alerts.0.instance;
        if !i.previous_version.is_empty()
            && (i.previous_version != i.version || i.previous_commit != i.commit)
        {
            let msg = format!(
                "deployed {} ({}), previously {} ({})",
                i.version, i.commit, i.previous_version, i.previous_commit
            );
            if let Some(old) = alerts
                .firing()
                .into_iter()
                .find(|a| a.name == "new_deployment")
            {
                alerts.resolve(old, false).await?;
            }
            alerts.fire("new_deployment", Severity::Info, &msg).await?;
            changes.push(("new_deployment".into(), AlertState::Firing));
        }
    }

    let firing = alerts.firing();
    let now = alerts.0.clock.now();
    for a in &firing {
        let stale = if a.severity == Severity::Info {
            chrono::DateTime::parse_from_rfc3339(&a.fired_at)
                .map(|t| now - t.to_utc() >= INFO_TTL)
                .unwrap_or(true)
        } else {
            !wanted.iter().any(|w| w.name == a.name)
        };
        if stale {
            alerts
                .resolve(a.clone(), a.severity != Severity::Info)
                .await?;
            changes.push((a.name.clone(), AlertState::Resolved));
        }
    }
    for w in wanted {
        if !firing.iter().any(|a| a.name == w.name) {
            alerts.fire(w.name, w.severity, &w.message).await?;
            changes.push((w.name.to_string(), AlertState::Firing));
        }
    }
    Ok(changes)
}

#[cfg(test)]
#[path = "alerts_tests.rs"]
mod tests;
