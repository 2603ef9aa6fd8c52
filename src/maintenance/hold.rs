//! Alert messages during maintenance: held in the store instead of sent, and sent in
//! their order once no window is active. The alerts themselves still fire, are stored
//! and audited; only the message waits.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use super::{Held, Maintenance};
use crate::slo::alerts::AlertSink;

/// How many held messages one release step sends.
const RELEASE_BATCH: usize = 100;

/// An [`AlertSink`] in front of the real one.
#[derive(Clone)]
pub struct HoldingSink {
    maintenance: Maintenance,
    inner: Arc<dyn AlertSink>,
    /// One release at a time (the release task and a new message may both start one),
    /// so no held message goes out twice.
    releasing: Arc<tokio::sync::Mutex<()>>,
}

impl HoldingSink {
    pub fn new(maintenance: Maintenance, inner: Arc<dyn AlertSink>) -> HoldingSink {
        HoldingSink {
            maintenance,
            inner,
            releasing: Arc::default(),
        }
    }

    /// Outside a window, send what was held (oldest first) and forget each message
    /// once the real sink took it. Returns how many went out.
    pub async fn release(&self) -> anyhow::Result<usize> {
        let _one = self.releasing.lock().await;
        if self.maintenance.active()?.is_some() {
            return Ok(0);
        }
        let store = &self.maintenance.store;
        let mut sent = 0;
        for h in store.held_messages(RELEASE_BATCH)? {
            self.inner.deliver(h.text.clone()).await?;
            store.release_message(&h.id)?.durable().await?;
            sent += 1;
        }
        Ok(sent)
    }
}

impl AlertSink for HoldingSink {
    fn deliver(
        &self,
        text: String,
    ) -> Pin<Box<dyn Future<Output = anyhow::Result<()>> + Send + '_>> {
        Box::pin(async move {
            if self.maintenance.active()?.is_none() {
                // What was held goes first, so messages keep their order.
                self.release().await?;
                return self.inner.deliver(text).await;
            }
            let held = Held {
                id: uuid::Uuid::now_v7().to_string(),
                at_ms: self.maintenance.now().timestamp_millis(),
                text,
            };
            self.maintenance
                .store
                .hold_message(&held)?
                .durable()
                .await?;
            tracing::info!("alert message held until the maintenance window is over");
            Ok(())
        })
    }
}
