//! Where domains meet, so none of them depends on another: the background tasks, the
//! SLO counting job outcomes and scheduler ticks, `/metrics` reading the queue's gauges,
//! and alerts delivered through the job queue.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use serde_json::json;
use tokio::sync::broadcast::error::RecvError;

use super::AppState;
use crate::jobs::executors::ALERT_KIND;
use crate::jobs::{Jobs, NewJob, Outcome, Status};
use crate::scheduler;
use crate::slo::alerts::{self, AlertSink};
use crate::slo::{self, GaugeSource};

/// Attempts for an alert message: with the queue's backoff, about a day of retries.
const ALERT_ATTEMPTS: u32 = 10;

/// Start the background tasks (scheduler, executors, flushers) under the supervisor.
pub(super) fn start_background(state: &AppState) {
    // Domains register their tasks here as they arrive.
    let limits = state.access.limits.clone();
    state.supervisor.spawn("rate-limits", move |token| {
        let limits = limits.clone();
        async move {
            let mut every = tokio::time::interval(limits.window());
            loop {
                tokio::select! {
                    _ = token.cancelled() => return Ok(()),
                    _ = every.tick() => limits.retain_recent(),
                }
            }
        }
    });
    start_slo(state);
    start_jobs(state);
    super::payments::start(state);
    start(state);
    super::backup::start(state);
}

/// Start the SLO's background tasks: the flusher (every [`slo::FLUSH_EVERY`], and once more
/// when cancelled so a graceful stop loses nothing), the alert evaluator and, with
/// `ALERT_WEBHOOK_URL`, the webhook sender.
fn start_slo(state: &AppState) {
    let slo = state.slo.clone();
    state.supervisor.spawn("slo_flush", move |token| {
        let slo = slo.clone();
        async move {
            loop {
                slo.flush_durable().await?;
                tokio::select! {
                    _ = token.cancelled() => {
                        slo.flush_durable().await?;
                        return Ok(());
                    }
                    _ = tokio::time::sleep(slo::FLUSH_EVERY) => {}
                }
            }
        }
    });
    let st = state.clone();
    state.supervisor.spawn("alerts", move |token| {
        let st = st.clone();
        async move {
            loop {
                if let Err(e) = alerts::evaluate(&st.alerts, &st.slo).await {
                    tracing::error!(error = %e, "alert evaluation failed");
                }
                tokio::select! {
                    _ = token.cancelled() => return Ok(()),
                    _ = tokio::time::sleep(alerts::EVALUATE_EVERY) => {}
                }
            }
        }
    });
}

fn start_jobs(state: &AppState) {
    let sched = state.scheduler.clone();
    state.scheduler.mark_starting();
    state.supervisor.spawn("scheduler", move |token| {
        scheduler::run(sched.clone(), token)
    });
    let st = state.clone();
    state.supervisor.spawn("scheduler-log", move |token| {
        scheduler::log::follow_outcomes(st.scheduler.log.clone(), st.jobs.subscribe(), token)
    });
}

/// Install the cross-domain hooks and start the task that feeds the SLO counters.
fn start(state: &AppState) {
    state.slo.set_gauges(Arc::new(QueueGauges(
        state.jobs.clone(),
        state.backups.clone(),
        state.clock.clone(),
    )));
    if state.config.alert_webhook_url.is_some() {
        let sink = Arc::new(QueueSink {
            jobs: state.jobs.clone(),
        });
        state
            .alerts
            .set_sink(super::ops::hold_during_maintenance(state, sink));
    }
    // Outcomes arrive at drain speed (thousands a second): counted in the writer's
    // thread, so none is lost to a lagging receiver.
    // Weak: the SLO holds the jobs (its gauges), the jobs must not hold the SLO.
    let slo = state.slo.downgrade();
    let payments = state.payments.downgrade();
    state.jobs.on_outcome(move |ev| {
        if let Some(slo) = slo.upgrade() {
            slo.record_job_outcome(&ev.kind, ev.outcome.as_str());
        }
        if matches!(
            ev.outcome,
            Outcome::Succeeded | Outcome::Dead | Outcome::Cancelled
        ) && let Some(p) = payments.upgrade()
            && let Err(e) = p.job_finished(&ev.id, ev.outcome.as_str(), ev.error.as_deref())
        {
            tracing::error!(job = %ev.id, error = %e, "cannot copy a job outcome onto its payment");
        }
    });
    state.slo.expect_ticks();
    let st = state.clone();
    state.supervisor.spawn("slo-ticks", move |token| {
        let st = st.clone();
        async move {
            let mut ticks = st.scheduler.subscribe_ticks();
            loop {
                tokio::select! {
                    _ = token.cancelled() => return Ok(()),
                    tick = ticks.recv() => match tick {
                        Ok(_) | Err(RecvError::Lagged(_)) => {
                            st.slo.record_tick(st.clock.now());
                        }
                        Err(RecvError::Closed) => return Ok(()),
                    },
                }
            }
        }
    });
}

/// Jobs by queue and status, queue depth and stuck jobs for `/metrics`, from the
/// queue's in-memory counters (no store scan per scrape); backup ages from the folder.
struct QueueGauges(Jobs, crate::backup::Backups, crate::clock::Clock);

impl GaugeSource for QueueGauges {
    fn jobs_by_queue_status(&self) -> Vec<(String, String, u64)> {
        let mut out = Vec::new();
        for (queue, by_status) in self.0.counts() {
            for status in Status::ALL {
                let n = by_status.get(&status).copied().unwrap_or(0);
                out.push((queue.clone(), status.as_str().to_string(), n));
            }
        }
        out
    }

    fn queue_depth(&self) -> Vec<(String, u64)> {
        self.0
            .counts()
            .into_iter()
            .map(|(q, by)| (q, by.get(&Status::Queued).copied().unwrap_or(0)))
            .collect()
    }

    fn stuck_jobs(&self) -> Option<u64> {
        Some(self.0.count(Status::Stuck))
    }

    fn last_backup_age_secs(&self) -> Option<f64> {
        self.1.ages(self.2.now()).0
    }

    fn last_verified_backup_age_secs(&self) -> Option<f64> {
        self.1.ages(self.2.now()).1
    }
}

/// Alert messages become `alert.webhook` jobs: durable, retried with the queue's
/// backoff, visible at `/api/jobs?kind=alert.webhook`, retryable by hand.
struct QueueSink {
    jobs: Jobs,
}

impl AlertSink for QueueSink {
    fn deliver(
        &self,
        text: String,
    ) -> Pin<Box<dyn Future<Output = anyhow::Result<()>> + Send + '_>> {
        Box::pin(async move {
            let (_, commit) = self.jobs.enqueue(alert_job(text))?;
            commit.durable().await?;
            Ok(())
        })
    }
}

/// The job that posts `text` to `ALERT_WEBHOOK_URL` (alerts, incident announcements).
pub fn alert_job(text: String) -> NewJob {
    NewJob {
        queue: Some("alerts".into()),
        kind: ALERT_KIND.into(),
        payload: Some(json!({ "text": text }).to_string()),
        max_attempts: Some(ALERT_ATTEMPTS),
        ..NewJob::default()
    }
}
