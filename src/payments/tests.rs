//! The fulfilment hand-off against a queue that fails or is switched off, and a crash
//! between storing the job id and the enqueue (a reopened store finishes it).

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::json;

use super::ledger::FulfilmentState;
use super::*;
use crate::logfile::RotatingFile;
use crate::store::Store;
use crate::store::sled_impl::payments::SledPayments;

const SECRET: &str = "whsec_unit";

#[derive(Default)]
struct FakeQueue {
    off: AtomicBool,
    down: AtomicBool,
    calls: Mutex<Vec<String>>,
    jobs: Mutex<BTreeSet<String>>,
}

impl Fulfiller for FakeQueue {
    fn enqueue(&self, job: &FulfilmentJob) -> Result<Commit, FulfilError> {
        if self.down.load(Ordering::SeqCst) {
            return Err(FulfilError::Unavailable("queue down".into()));
        }
        self.calls.lock().unwrap().push(job.job_id.clone());
        self.jobs.lock().unwrap().insert(job.job_id.clone());
        Ok(Commit::done())
    }
    fn job_status(&self, job_id: &str) -> Option<String> {
        self.jobs
            .lock()
            .unwrap()
            .contains(job_id)
            .then(|| "queued".to_string())
    }
    fn fulfilment_enabled(&self) -> bool {
        !self.off.load(Ordering::SeqCst)
    }
}

fn open(home: &Path, queue: Arc<FakeQueue>) -> Payments {
    let store = Store::open(home).unwrap();
    let clock = Clock::system();
    let log = Appender::start(
        "stripe-test",
        RotatingFile::new(
            home.join("stripe_webhooks.log"),
            home.join("archive"),
            1 << 20,
            clock.clone(),
        ),
    )
    .unwrap();
    Payments::new(
        Arc::new(SledPayments::open(&store).unwrap()),
        Settings {
            secrets: vec![Secret::new(SECRET)],
            tolerance_secs: 300,
            grace_secs: 3600,
        },
        clock,
        log,
        queue,
    )
}

fn paid_event(evt: &str, kind: &str, id: &str) -> String {
    json!({
        "id": evt, "object": "event", "type": kind, "created": 1_764_576_000, "livemode": false,
        "data": {"object": {
            "id": id, "object": "payment_intent", "amount": 2500, "currency": "eur",
            "payment_intent": "pi_unit", "created": 1_764_575_000,
            "metadata": {"job_kind": "deliver", "job_payload": "{\"n\":1}"}
        }}
    })
    .to_string()
}

async fn send(p: &Payments, body: &str) -> Received {
    let t = chrono::Utc::now().timestamp();
    let h = signature::sign_header(SECRET, t, body.as_bytes());
    let r = p
        .receive(Some(h.as_bytes()), body.as_bytes())
        .await
        .unwrap();
    r.commit.clone().durable().await.unwrap();
    r
}

fn kinds(report: &Value) -> Vec<String> {
    report["issues"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["kind"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn paused_fulfilment_is_reported_then_resumed_once() {
    let dir = tempfile::tempdir().unwrap();
    let q = Arc::new(FakeQueue::default());
    q.off.store(true, Ordering::SeqCst);
    let p = open(dir.path(), q.clone());
    send(
        &p,
        &paid_event("evt_u1", "payment_intent.succeeded", "pi_unit"),
    )
    .await;
    assert!(q.calls.lock().unwrap().is_empty());
    assert_eq!(kinds(&p.reconcile().unwrap()), ["fulfilment_paused"]);
    q.off.store(false, Ordering::SeqCst);
    assert_eq!(kinds(&p.reconcile().unwrap()), ["unfulfilled"]);
    assert_eq!(p.resume_fulfilment().await.unwrap(), 1);
    assert_eq!(p.resume_fulfilment().await.unwrap(), 0);
    assert_eq!(q.calls.lock().unwrap().len(), 1);
    assert!(kinds(&p.reconcile().unwrap()).is_empty());
}

#[tokio::test]
async fn a_crash_before_the_enqueue_is_finished_with_the_same_job_id() {
    let dir = tempfile::tempdir().unwrap();
    let q = Arc::new(FakeQueue::default());
    q.down.store(true, Ordering::SeqCst);
    let p = open(dir.path(), q.clone());
    send(
        &p,
        &paid_event("evt_u2", "payment_intent.succeeded", "pi_unit"),
    )
    .await;
    let pay = p.store().payment("pi_unit").unwrap().unwrap();
    let f = pay.fulfilment.clone().unwrap();
    assert_eq!(f.state, FulfilmentState::Pending);
    drop(p);

    // The process is gone; a new one opens the same store.
    q.down.store(false, Ordering::SeqCst);
    let p = open(dir.path(), q.clone());
    assert_eq!(p.resume_fulfilment().await.unwrap(), 1);
    assert_eq!(*q.calls.lock().unwrap(), std::slice::from_ref(&f.job_id));
    let pay = p.store().payment("pi_unit").unwrap().unwrap();
    assert_eq!(pay.fulfilment.unwrap().state, FulfilmentState::Enqueued);
    // Later events and redeliveries enqueue nothing more.
    send(
        &p,
        &paid_event("evt_u2", "payment_intent.succeeded", "pi_unit"),
    )
    .await;
    send(&p, &paid_event("evt_u3", "charge.succeeded", "ch_unit")).await;
    assert_eq!(q.calls.lock().unwrap().len(), 1);
    // The outcome finds its payment through the job id.
    p.job_finished(&f.job_id, "dead", Some("boom")).unwrap();
    let pay = p.store().payment("ch_unit").unwrap().unwrap();
    assert_eq!(pay.fulfilment.unwrap().outcome.as_deref(), Some("dead"));
}

#[tokio::test]
async fn a_later_event_finishes_a_half_done_fulfilment() {
    let dir = tempfile::tempdir().unwrap();
    let q = Arc::new(FakeQueue::default());
    q.down.store(true, Ordering::SeqCst);
    let p = open(dir.path(), q.clone());
    send(
        &p,
        &paid_event("evt_u4", "payment_intent.succeeded", "pi_unit"),
    )
    .await;
    q.down.store(false, Ordering::SeqCst);
    send(&p, &paid_event("evt_u5", "charge.succeeded", "ch_unit")).await;
    let calls = q.calls.lock().unwrap().clone();
    assert_eq!(calls.len(), 1);
    let pay = p.store().payment("pi_unit").unwrap().unwrap();
    assert_eq!(pay.fulfilment.unwrap().job_id, calls[0]);
}

/// Ids and types come from the sender's body: a newline or a line separator in them
/// must not start a forged line in `stripe_webhooks.log`.
#[tokio::test]
async fn webhook_log_lines_are_escaped() {
    let dir = tempfile::tempdir().unwrap();
    let p = open(dir.path(), Arc::new(FakeQueue::default()));
    let body = json!({
        "id": "evt_forge\u{2028}x", "object": "event", "created": 1_764_576_000,
        "type": "custom.kind\n2026-01-01T00:00:00.000Z webhook ok evt_fake forged",
        "data": {"object": {"id": "obj_1", "object": "custom"}}
    })
    .to_string();
    let r = send(&p, &body).await;
    assert_eq!(r.outcome, EventOutcome::Ignored);
    p.log().flush().await.unwrap();
    let text = std::fs::read_to_string(dir.path().join("stripe_webhooks.log")).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 1, "{text:?}");
    assert!(!text.contains('\u{2028}'), "{text:?}");
    assert!(lines[0].contains(r"custom.kind\n2026-01-01"), "{text:?}");
    assert!(lines[0].contains(r"evt_forge\u{2028}x"), "{text:?}");
}

#[tokio::test]
async fn an_event_applied_but_not_stored_before_a_crash_is_applied_once_on_the_retry() {
    let dir = tempfile::tempdir().unwrap();
    let q = Arc::new(FakeQueue::default());
    let body = paid_event("evt_u3", "payment_intent.succeeded", "pi_unit");
    {
        // The crash came after the payment joined the event, before the event was stored.
        let p = open(dir.path(), q.clone());
        let ev = event::parse(body.as_bytes()).unwrap();
        assert_eq!(
            p.apply_outcome(&ev).await,
            (EventOutcome::Applied, None, Some("pi_unit".into()))
        );
        assert!(p.store().event("evt_u3").unwrap().is_none());
        p.store().payment("pi_unit").unwrap().unwrap();
    }
    let p = open(dir.path(), q.clone());
    let r = send(&p, &body).await;
    assert!(!r.duplicate);
    assert_eq!(r.outcome, EventOutcome::Applied);
    let stored = p.store().event("evt_u3").unwrap().unwrap();
    assert_eq!(stored.outcome, EventOutcome::Applied);
    assert_eq!(stored.applied, 1);
    let pay = p.store().payment("pi_unit").unwrap().unwrap();
    assert_eq!(pay.events.len(), 1);
    // One fulfilment job, whichever delivery planned it.
    assert_eq!(q.jobs.lock().unwrap().len(), 1);
    // And the next delivery is a duplicate that changes nothing.
    let again = send(&p, &body).await;
    assert!(again.duplicate);
    assert_eq!(again.outcome, EventOutcome::Applied);
    assert_eq!(p.store().event("evt_u3").unwrap().unwrap().applied, 1);
}

#[tokio::test]
async fn an_event_stored_as_received_by_a_delivery_that_stopped_is_applied_by_the_next() {
    let dir = tempfile::tempdir().unwrap();
    let q = Arc::new(FakeQueue::default());
    let p = open(dir.path(), q.clone());
    let body = paid_event("evt_u4", "payment_intent.succeeded", "pi_unit");
    let ev = event::parse(body.as_bytes()).unwrap();
    let stored = StoredEvent {
        id: ev.id.clone(),
        kind: ev.kind.clone(),
        created: ev.created,
        livemode: ev.livemode,
        received_at: 1,
        payload: body.clone(),
        outcome: EventOutcome::Received,
        error: None,
        payment: None,
        applied: 0,
        updated_at: 1,
    };
    let (new, _) = p.store().record_event(&stored).unwrap();
    assert!(new);
    let r = send(&p, &body).await;
    assert!(r.duplicate, "the id was stored before");
    assert_eq!(r.outcome, EventOutcome::Applied);
    let e = p.store().event("evt_u4").unwrap().unwrap();
    assert_eq!(e.outcome, EventOutcome::Applied);
    assert_eq!(e.payment.as_deref(), Some("pi_unit"));
    assert_eq!(e.payload, body);
}
