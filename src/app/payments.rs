//! Payments meets the job queue and the scheduler: the domain is opened over its sled
//! store, fulfilment jobs go into the queue under the id the payment chose, and the
//! built-in `payments.reconcile` schedule's jobs run in-process.

use std::sync::Arc;

use anyhow::Context;

use super::AppState;
use crate::clock::Clock;
use crate::config::{Config, ScheduleSpec};
use crate::flags::{self, Flags};
use crate::jobs::{ClaimRequest, JobError, Jobs, NewJob};
use crate::logfile::{Appender, RotatingFile};
use crate::payments::{self, FulfilError, Fulfiller, FulfilmentJob, Payments};
use crate::scheduler::cron::CronExpr;
use crate::scheduler::schedules::Schedules;
use crate::store::sled_impl::payments::SledPayments;
use crate::store::{Commit, Store};

/// The built-in reconciliation: its schedule's name, its job kind, its queue.
const RECONCILE_KIND: &str = "payments.reconcile";
const RECONCILE_QUEUE: &str = "payments";
/// The worker name the in-process reconciliation claims with (stuck at a restart, like
/// the built-in executors' jobs).
const RECONCILE_WORKER: &str = "builtin:payments";

/// Open the payments domain over its sled store and the job queue, and install the
/// built-in reconciliation schedule (`RECONCILE_CRON`). The schedule's write is made
/// durable by the checkpoint before serving.
pub(super) fn open(
    config: &Config,
    store: &Store,
    jobs: &Jobs,
    schedules: &Schedules,
    clock: &Clock,
    flags: &Flags,
) -> anyhow::Result<Payments> {
    jobs.run_here(RECONCILE_KIND);
    let cron = &config.payments.reconcile_cron;
    CronExpr::parse(cron, None).map_err(|e| anyhow::anyhow!("RECONCILE_CRON: {e}"))?;
    let _installed = schedules
        .load_config(
            &[ScheduleSpec {
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
    let log = Appender::start(
        "stripe",
        RotatingFile::new(
            path.clone(),
            config.logs_dir().join("archive"),
            config.log_max_bytes,
            clock.clone(),
        ),
    )
    .with_context(|| format!("while opening {}", path.display()))?;
    let settings = payments::Settings {
        secrets: config.stripe_webhook_secrets.clone(),
        tolerance_secs: config.payments.tolerance_secs,
        grace_secs: config.payments.reconcile_grace_secs,
    };
    Ok(Payments::new(
        Arc::new(SledPayments::open(store)?),
        settings,
        clock.clone(),
        log,
        Arc::new(QueueFulfiller(jobs.clone(), flags.clone())),
    ))
}

/// Fulfilment jobs go into the queue under the id the payment chose.
struct QueueFulfiller(Jobs, Flags);

impl Fulfiller for QueueFulfiller {
    /// Read on every use: the `payments.fulfilment` flag.
    fn fulfilment_enabled(&self) -> bool {
        self.1.is_enabled(flags::PAYMENTS_FULFILMENT)
    }

    fn enqueue(&self, job: &FulfilmentJob) -> Result<Commit, FulfilError> {
        let new = NewJob {
            id: Some(job.job_id.clone()),
            queue: job.queue.clone(),
            kind: job.kind.clone(),
            payload: Some(job.payload.clone()),
            ..NewJob::default()
        };
        match self.0.enqueue(new) {
            Ok((_, commit)) => Ok(commit),
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
pub(super) fn start(state: &AppState) {
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
            let mut flag_changes = st.flags.subscribe();
            loop {
                tokio::select! {
                    _ = token.cancelled() => return Ok(()),
                    _ = every.tick() => {
                        run_reconcile_jobs(&st).await?;
                    }
                    change = flag_changes.recv() => {
                        // `payments.fulfilment` back on: fulfil what waited (a lagged
                        // receiver looks too, to be safe).
                        let back_on = match &change {
                            Ok(c) => c.name == flags::PAYMENTS_FULFILMENT && c.enabled,
                            Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => true,
                            Err(tokio::sync::broadcast::error::RecvError::Closed) => return Ok(()),
                        };
                        if back_on {
                            match st.payments.resume_fulfilment().await {
                                Ok(n) => tracing::info!(payments = n, "fulfilment back on: fulfilled what waited"),
                                Err(e) => tracing::error!(error = %e, "cannot resume fulfilments"),
                            }
                        }
                    }
                }
            }
        }
    });
}

/// Claim and run the queued `payments.reconcile` jobs; each job's outcome is durable
/// before the next is taken. Returns how many ran.
async fn run_reconcile_jobs(st: &AppState) -> anyhow::Result<usize> {
    let (claimed, claim) = st.jobs.claim(&ClaimRequest {
        queues: vec![RECONCILE_QUEUE.into()],
        kinds: vec![RECONCILE_KIND.into()],
        worker: RECONCILE_WORKER.into(),
        lease_secs: 600,
        count: 1,
    })?;
    // The claim is durable before the work starts: a crash leaves it stuck, not lost.
    claim.durable().await?;
    let n = claimed.len();
    for job in claimed {
        let (_, done) = match st.payments.scheduled_reconcile().await {
            Ok(result) => {
                st.jobs
                    .complete(&job.id, Some(RECONCILE_WORKER), Some(result.to_string()))?
            }
            Err(e) => st
                .jobs
                .fail(&job.id, Some(RECONCILE_WORKER), &e.to_string())?,
        };
        done.durable().await?;
    }
    Ok(n)
}
