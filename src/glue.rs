//! Where domains meet, so none of them depends on another: the SLO counts job outcomes
//! and scheduler ticks, `/metrics` reads the queue's gauges, and alerts are delivered
//! through the job queue.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use serde_json::json;
use tokio::sync::broadcast::error::RecvError;

use crate::app::AppState;
use crate::jobs::executors::ALERT_KIND;
use crate::jobs::{ClaimRequest, JobError, Jobs, NewJob, Outcome, Status};
use crate::payments::{FulfilError, Fulfiller, FulfilmentJob, Payments};
use crate::slo::GaugeSource;
use crate::slo::alerts::AlertSink;
use crate::store::Store;

/// Attempts for an alert message: with the queue's backoff, about a day of retries.
const ALERT_ATTEMPTS: u32 = 10;

/// Install the cross-domain hooks and start the task that feeds the SLO counters.
pub fn start(state: &AppState) {
    state
        .slo
        .set_gauges(Arc::new(QueueGauges(state.jobs.clone())));
    if state.config.alert_webhook_url.is_some() {
        state.alerts.set_sink(Arc::new(QueueSink {
            jobs: state.jobs.clone(),
            store: state.store.clone(),
        }));
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
    start_payments(state);
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
/// queue's in-memory counters (no store scan per scrape).
struct QueueGauges(Jobs);

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
}

/// Alert messages become `alert.webhook` jobs: durable, retried with the queue's
/// backoff, visible at `/api/jobs?kind=alert.webhook`, retryable by hand.
struct QueueSink {
    jobs: Jobs,
    store: Store,
}

impl AlertSink for QueueSink {
    fn deliver(
        &self,
        text: String,
    ) -> Pin<Box<dyn Future<Output = anyhow::Result<()>> + Send + '_>> {
        Box::pin(async move {
            self.jobs.enqueue(NewJob {
                queue: Some("alerts".into()),
                kind: ALERT_KIND.into(),
                payload: Some(json!({ "text": text }).to_string()),
                max_attempts: Some(ALERT_ATTEMPTS),
                ..NewJob::default()
            })?;
            self.store.sync().await?;
            Ok(())
        })
    }
}

// ----- payments -----

/// The built-in reconciliation: its schedule's name, its job kind, its queue.
pub const RECONCILE_KIND: &str = "payments.reconcile";
const RECONCILE_QUEUE: &str = "payments";
/// The worker name the in-process reconciliation claims with (stuck at a restart, like
/// the built-in executors' jobs).
const RECONCILE_WORKER: &str = "builtin:payments";

/// Open the payments domain over its sled store and the job queue, and install the
/// built-in weekly reconciliation schedule (`RECONCILE_CRON`).
pub fn open_payments(
    config: &crate::config::Config,
    store: &Store,
    jobs: &Jobs,
    schedules: &crate::scheduler::schedules::Schedules,
    clock: &crate::clock::Clock,
) -> anyhow::Result<Payments> {
    use anyhow::Context;
    let cron = &config.payments.reconcile_cron;
    crate::scheduler::cron::CronExpr::parse(cron, None)
        .map_err(|e| anyhow::anyhow!("RECONCILE_CRON: {e}"))?;
    schedules
        .load_config(
            &[crate::config::ScheduleSpec {
                name: RECONCILE_KIND.into(),
                cron: cron.clone(),
                timezone: None,
                queue: Some(RECONCILE_QUEUE.into()),
                kind: RECONCILE_KIND.into(),
                payload: None,
                enabled: true,
            }],
            clock.now(),
        )
        .context("while installing the reconciliation schedule")?;
    let path = config.logs_dir().join("stripe_webhooks.log");
    let log = crate::logfile::Appender::start(
        "stripe",
        crate::logfile::RotatingFile::new(
            path.clone(),
            config.logs_dir().join("archive"),
            config.log_max_bytes,
            clock.clone(),
        ),
    )
    .with_context(|| format!("while opening {}", path.display()))?;
    let settings = crate::payments::Settings {
        secrets: config.stripe_webhook_secrets.clone(),
        tolerance_secs: config.payments.tolerance_secs,
        grace_secs: config.payments.reconcile_grace_secs,
    };
    Ok(Payments::new(
        Arc::new(crate::store::sled_impl::payments::SledPayments::open(
            store,
        )?),
        settings,
        clock.clone(),
        log,
        Arc::new(QueueFulfiller(jobs.clone())),
    ))
}

/// Fulfilment jobs go into the queue under the id the payment chose.
struct QueueFulfiller(Jobs);

impl Fulfiller for QueueFulfiller {
    fn enqueue(&self, job: &FulfilmentJob) -> Result<(), FulfilError> {
        let new = NewJob {
            id: Some(job.job_id.clone()),
            queue: job.queue.clone(),
            kind: job.kind.clone(),
            payload: Some(job.payload.clone()),
            ..NewJob::default()
        };
        match self.0.enqueue(new) {
            Ok(_) => Ok(()),
            Err(e @ (JobError::Invalid(_) | JobError::Conflict(_) | JobError::NotFound(_))) => {
                Err(FulfilError::Invalid(e.to_string()))
            }
            Err(e @ JobError::Store(_)) => Err(FulfilError::Unavailable(e.to_string())),
        }
    }

    fn job_status(&self, job_id: &str) -> Option<String> {
        self.0
            .get(job_id)
            .ok()
            .map(|j| j.status.as_str().to_string())
    }
}

/// Finish fulfilments a crash left half-done, and run `payments.reconcile` jobs (the
/// schedule's) in-process.
fn start_payments(state: &AppState) {
    let st = state.clone();
    state.supervisor.spawn("payments", move |token| {
        let st = st.clone();
        async move {
            match st.payments.resume_fulfilment().await {
                Ok(0) => {}
                Ok(n) => tracing::info!(payments = n, "finished waiting fulfilments"),
                Err(e) => tracing::error!(error = %e, "cannot resume fulfilments"),
            }
            let mut every = tokio::time::interval(std::time::Duration::from_secs(1));
            loop {
                tokio::select! {
                    _ = token.cancelled() => return Ok(()),
                    _ = every.tick() => {
                        run_reconcile_jobs(&st).await?;
                    }
                }
            }
        }
    });
}

/// Claim and run the queued `payments.reconcile` jobs.
pub async fn run_reconcile_jobs(st: &AppState) -> anyhow::Result<usize> {
    let claimed = st.jobs.claim(&ClaimRequest {
        queues: vec![RECONCILE_QUEUE.into()],
        kinds: vec![RECONCILE_KIND.into()],
        worker: RECONCILE_WORKER.into(),
        lease_secs: 600,
        count: 1,
    })?;
    let n = claimed.len();
    for job in claimed {
        match st.payments.scheduled_reconcile().await {
            Ok(result) => {
                st.jobs
                    .complete(&job.id, Some(RECONCILE_WORKER), Some(result.to_string()))?;
            }
            Err(e) => {
                st.jobs
                    .fail(&job.id, Some(RECONCILE_WORKER), &e.to_string())?;
            }
        }
        st.store.sync().await?;
    }
    Ok(n)
}
