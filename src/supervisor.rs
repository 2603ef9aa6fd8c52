//! The supervisor: every background task starts here. A task that panics or returns an
//! error is restarted with exponential backoff; each task's name, state, restarts, last
//! error and start time are kept for `/api/supervisor-status` and the status summary.
//!
//! Tasks receive a `CancellationToken` and must return when it fires; shutdown cancels
//! it, then waits (bounded) for every task through one `TaskTracker`.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::clock::now_rfc3339;

/// What a supervised task is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TaskState {
    Running,
    /// Failed and waiting for its backoff before the next start.
    Restarting,
    /// Returned normally (or was cancelled at shutdown).
    Stopped,
}

/// What the supervisor knows about one task.
#[derive(Debug, Clone, Serialize)]
pub struct TaskInfo {
    pub name: String,
    pub state: TaskState,
    pub restarts: u32,
    pub last_error: Option<String>,
    pub started_at: String,
}

/// Backoff after the n-th consecutive failure: 1 s, 2 s, 4 s … capped at 60 s.
pub(crate) fn backoff(consecutive_failures: u32) -> Duration {
    Duration::from_secs(1u64 << consecutive_failures.saturating_sub(1).min(6))
        .min(Duration::from_secs(60))
}

/// A run that lasted this long counts as healthy: the backoff starts over.
const HEALTHY_RUN: Duration = Duration::from_secs(60);

/// Cheap to clone: shares the task table, the tracker and the token.
#[derive(Clone)]
pub struct Supervisor {
    tasks: Arc<Mutex<BTreeMap<String, TaskInfo>>>,
    tracker: TaskTracker,
    token: CancellationToken,
}

impl Default for Supervisor {
    fn default() -> Self {
        Self::new()
    }
}

impl Supervisor {
    pub fn new() -> Self {
        Self {
            tasks: Arc::default(),
            tracker: TaskTracker::new(),
            token: CancellationToken::new(),
        }
    }

    /// The token every task watches; cancelled at shutdown.
    pub fn token(&self) -> CancellationToken {
        self.token.clone()
    }

    /// Start `make(token)` as task `name`, restarting it when it panics or errs.
    pub fn spawn<F, Fut>(&self, name: &str, make: F)
    where
        F: Fn(CancellationToken) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        let name = name.to_string();
        self.set(&name, |t| {
            t.state = TaskState::Running;
            t.started_at = now_rfc3339();
        });
        let this = self.clone();
        self.tracker.spawn(async move {
            let mut failures = 0u32;
            loop {
                let started = tokio::time::Instant::now();
                let token = this.token.child_token();
                // A separate task, so a panic is caught as a JoinError instead of
                // unwinding the supervisor.
                let outcome = tokio::spawn(make(token)).await;
                let error = match outcome {
                    Ok(Ok(())) => None,
                    Ok(Err(e)) => Some(format!("{e:#}")),
                    Err(join) if join.is_panic() => {
                        Some(format!("panic: {}", panic_message(join.into_panic())))
                    }
                    Err(join) => Some(format!("task aborted: {join}")),
                };
                if this.token.is_cancelled() || error.is_none() {
                    this.set(&name, |t| {
                        t.state = TaskState::Stopped;
                        if let Some(e) = &error {
                            t.last_error = Some(e.clone());
                        }
                    });
                    return;
                }
                let error = error.unwrap_or_default();
                tracing::error!(task = %name, error = %error, "background task failed; restarting");
                if started.elapsed() >= HEALTHY_RUN {
                    failures = 0;
                }
                failures += 1;
                this.set(&name, |t| {
                    t.state = TaskState::Restarting;
                    t.restarts += 1;
                    t.last_error = Some(error.clone());
                });
                tokio::select! {
                    _ = this.token.cancelled() => {
                        this.set(&name, |t| t.state = TaskState::Stopped);
                        return;
                    }
                    _ = tokio::time::sleep(backoff(failures)) => {}
                }
                this.set(&name, |t| {
                    t.state = TaskState::Running;
                    t.started_at = now_rfc3339();
                });
            }
        });
    }

    /// A snapshot of every task, sorted by name.
    pub fn tasks(&self) -> Vec<TaskInfo> {
        self.lock().values().cloned().collect()
    }

    /// Cancel every task and wait for them, at most `limit`. Returns false when some
    /// task did not stop in time.
    pub async fn shutdown(&self, limit: Duration) -> bool {
        self.token.cancel();
        self.tracker.close();
        tokio::time::timeout(limit, self.tracker.wait())
            .await
            .is_ok()
    }

    fn set(&self, name: &str, f: impl FnOnce(&mut TaskInfo)) {
        let mut tasks = self.lock();
        let t = tasks.entry(name.to_string()).or_insert_with(|| TaskInfo {
            name: name.to_string(),
            state: TaskState::Running,
            restarts: 0,
            last_error: None,
            started_at: now_rfc3339(),
        });
        f(t);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, TaskInfo>> {
        self.tasks.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn panic_message(p: Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[test]
    fn backoff_grows_and_caps() {
        assert_eq!(backoff(1), Duration::from_secs(1));
        assert_eq!(backoff(2), Duration::from_secs(2));
        assert_eq!(backoff(4), Duration::from_secs(8));
        assert_eq!(backoff(30), Duration::from_secs(60));
    }

    #[tokio::test(start_paused = true)]
    async fn panicking_task_is_restarted_with_backoff() {
        let sup = Supervisor::new();
        let runs = Arc::new(AtomicU32::new(0));
        let r = runs.clone();
        sup.spawn("flaky", move |token| {
            let r = r.clone();
            async move {
                let n = r.fetch_add(1, Ordering::SeqCst);
                if n < 2 {
                    panic!("boom {n}");
                }
                token.cancelled().await;
                Ok(())
            }
        });
        // Two failures: backoff 1 s then 2 s.
        tokio::time::sleep(Duration::from_millis(3500)).await;
        assert_eq!(runs.load(Ordering::SeqCst), 3);
        let t = &sup.tasks()[0];
        assert_eq!(t.name, "flaky");
        assert_eq!(t.state, TaskState::Running);
        assert_eq!(t.restarts, 2);
        assert_eq!(t.last_error.as_deref(), Some("panic: boom 1"));
        assert!(sup.shutdown(Duration::from_secs(1)).await);
        assert_eq!(sup.tasks()[0].state, TaskState::Stopped);
    }

    #[tokio::test(start_paused = true)]
    async fn erroring_task_is_restarted() {
        let sup = Supervisor::new();
        let runs = Arc::new(AtomicU32::new(0));
        let r = runs.clone();
        sup.spawn("err", move |token| {
            let r = r.clone();
            async move {
                if r.fetch_add(1, Ordering::SeqCst) == 0 {
                    anyhow::bail!("first run fails");
                }
                token.cancelled().await;
                Ok(())
            }
        });
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert_eq!(runs.load(Ordering::SeqCst), 2);
        assert_eq!(
            sup.tasks()[0].last_error.as_deref(),
            Some("first run fails")
        );
        assert!(sup.shutdown(Duration::from_secs(1)).await);
    }
}
