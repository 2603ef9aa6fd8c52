//! Fulfilment: the job a paid payment asks for, enqueued once per payment, ever.

use uuid::Uuid;

use super::ledger::{Fulfilment, FulfilmentState, JOB_KIND, JOB_PAYLOAD, JOB_QUEUE, Payment};
use super::{FulfilError, FulfilmentJob, Payments};
use crate::store::{Commit, StoreError};
use serde_json::Value;

impl Payments {
    /// Enqueue a payment's pending fulfilment job (idempotent by its id), then mark it
    /// enqueued. The payment's record, holding the id, is made durable first.
    pub(super) async fn finish_fulfilment(
        &self,
        p: &Payment,
        commit: Commit,
    ) -> Result<(), StoreError> {
        let Some(f) = p
            .fulfilment
            .as_ref()
            .filter(|f| f.state == FulfilmentState::Pending)
        else {
            return Ok(());
        };
        let st = &self.0.store;
        st.link_job(&f.job_id, &p.id)?;
        commit.durable().await?;
        let job = FulfilmentJob {
            job_id: f.job_id.clone(),
            kind: f.kind.clone(),
            queue: f.queue.clone(),
            payload: f.payload.clone(),
        };
        let (state, error, enqueued) = match self.0.fulfiller.enqueue(&job) {
            Ok(c) => (FulfilmentState::Enqueued, None, c),
            Err(FulfilError::Invalid(m)) => (FulfilmentState::Invalid, Some(m), Commit::done()),
            // Left pending: the next event, the scheduled reconcile or a restart retries.
            Err(FulfilError::Unavailable(m)) => {
                tracing::warn!(payment = %p.id, error = %m, "fulfilment job not enqueued yet");
                return Ok(());
            }
        };
        let (_, marked) = st.update_payment(&p.id, &[], &mut |cur| {
            let mut p = cur?;
            let f = p.fulfilment.as_mut()?;
            if f.job_id != job.job_id || f.state != FulfilmentState::Pending {
                return None;
            }
            f.state = state;
            f.error = error.clone();
            Some(p)
        })?;
        // The job and the mark on its payment share one group commit.
        marked.and(enqueued).durable().await
    }

    /// Finish half-done fulfilments (a crash between storing the job id and the
    /// enqueue) and start the ones that waited while fulfilment was switched off.
    /// Returns how many payments it touched.
    pub async fn resume_fulfilment(&self) -> Result<usize, StoreError> {
        let enabled = self.0.fulfiller.fulfilment_enabled();
        let mut todo = Vec::new();
        self.0.store.for_each_payment(&mut |p| {
            let waiting = match &p.fulfilment {
                Some(f) => f.state == FulfilmentState::Pending,
                None => enabled && p.paid() && p.metadata().contains_key(JOB_KIND),
            };
            if waiting {
                todo.push(p.id);
            }
            Ok(())
        })?;
        let now = self.now_ms();
        for id in &todo {
            let job_id = Uuid::now_v7().to_string();
            let (written, commit) = self.0.store.update_payment(id, &[], &mut |cur| {
                let mut p = cur?;
                if p.fulfilment.is_none() {
                    p.fulfilment = Some(plan_fulfilment(&p, &job_id, now)?);
                    return Some(p);
                }
                None
            })?;
            if let Some(p) = written {
                self.finish_fulfilment(&p, commit).await?;
            }
        }
        Ok(todo.len())
    }

    /// A job finished (`succeeded`, `dead`, `cancelled`): copy the outcome onto its
    /// payment, if it fulfils one. Called from the queue's outcome hook.
    pub fn job_finished(
        &self,
        job_id: &str,
        outcome: &str,
        error: Option<&str>,
    ) -> Result<(), StoreError> {
        let Some(pid) = self.0.store.payment_for_job(job_id)? else {
            return Ok(());
        };
        let now = self.now_ms();
        // Not awaited (the hook runs inside the job's change): durable with the next
        // group commit; until the job is pruned its outcome is on the job as well.
        let _ = self.0.store.update_payment(&pid, &[], &mut |cur| {
            let mut p = cur?;
            let f = p.fulfilment.as_mut().filter(|f| f.job_id == job_id)?;
            f.outcome = Some(outcome.to_string());
            f.outcome_at = Some(now);
            f.error = error.map(str::to_string);
            if f.state == FulfilmentState::Pending {
                f.state = FulfilmentState::Enqueued;
            }
            Some(p)
        })?;
        Ok(())
    }
}

/// The fulfilment a paid payment asks for through its metadata, if any.
pub(super) fn plan_fulfilment(p: &Payment, job_id: &str, now: i64) -> Option<Fulfilment> {
    if !p.paid() {
        return None;
    }
    let meta = p.metadata();
    let kind = meta.get(JOB_KIND)?.trim().to_string();
    let (payload, state, error) = match meta.get(JOB_PAYLOAD) {
        None => ("{}".to_string(), FulfilmentState::Pending, None),
        Some(text) => match serde_json::from_str::<Value>(text) {
            Ok(v) => (v.to_string(), FulfilmentState::Pending, None),
            Err(e) => (
                text.clone(),
                FulfilmentState::Invalid,
                Some(format!("job_payload is not JSON: {e}")),
            ),
        },
    };
    Some(Fulfilment {
        job_id: job_id.to_string(),
        kind,
        queue: meta.get(JOB_QUEUE).map(|q| q.trim().to_string()),
        payload,
        state,
        at: now,
        outcome: None,
        outcome_at: None,
        error,
    })
}
