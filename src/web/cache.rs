//! The public status figures (`/api/status/summary`, `/api/slo/status`,
//! `/api/scheduler/status`, `/metrics`) rendered at most once per window and shared by
//! every caller: monitoring polls them hard, and each render reads every domain (and
//! the summary writes a store probe). The window is `STATUS_CACHE_MS` (at most one
//! second, so a body is never staler than that); `POST /api/cache/clear` drops them.
//! The store component of the last probe is kept too: dashboard pages show it instead
//! of writing a probe of their own on every view.

use std::sync::RwLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::header;
use axum::response::{IntoResponse, Response};

use crate::health::{self, Component};
use crate::store::Store;
use crate::web::error::AppError;

/// The longest window a configuration may ask for.
pub const MAX_WINDOW: Duration = Duration::from_secs(1);

/// A cached figure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Figure {
    Summary,
    Slo,
    Scheduler,
    Metrics,
}

impl Figure {
    pub const ALL: [Figure; 4] = [
        Figure::Summary,
        Figure::Slo,
        Figure::Scheduler,
        Figure::Metrics,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Figure::Summary => "status_summary",
            Figure::Slo => "slo_status",
            Figure::Scheduler => "scheduler_status",
            Figure::Metrics => "metrics",
        }
    }
}

/// A rendered body and its content type.
#[derive(Debug, Clone)]
pub struct Rendered {
    pub content_type: &'static str,
    pub body: Bytes,
}

impl Rendered {
    pub fn json(v: &serde_json::Value) -> Rendered {
        Rendered {
            content_type: "application/json",
            body: Bytes::from(serde_json::to_vec(v).unwrap_or_default()),
        }
    }
}

impl IntoResponse for Rendered {
    fn into_response(self) -> Response {
        ([(header::CONTENT_TYPE, self.content_type)], self.body).into_response()
    }
}

#[derive(Default)]
struct Slot {
    /// The body and when its render began (the figures are as of then).
    current: RwLock<Option<(Instant, Rendered)>>,
    /// Held while one caller renders; the others wait and take its body.
    refresh: tokio::sync::Mutex<()>,
}

/// One slot per [`Figure`]; shared by every request (an `Arc` in the state).
pub struct StatusCache {
    window: Duration,
    slots: [Slot; 4],
    /// Bumped by [`StatusCache::clear`]: a render that began before a clear is not kept.
    generation: AtomicU64,
    /// The store component of the last probe, and how many probes ran.
    store: RwLock<Option<Component>>,
    probes: AtomicU64,
}

impl StatusCache {
    /// A cache whose bodies live `window` (capped at [`MAX_WINDOW`]; zero: no caching).
    pub fn new(window: Duration) -> StatusCache {
        StatusCache {
            window: window.min(MAX_WINDOW),
            slots: Default::default(),
            generation: AtomicU64::new(0),
            store: RwLock::new(None),
            probes: AtomicU64::new(0),
        }
    }

    /// Probe the store (a write and a read back) and keep the result for page views.
    pub fn probe_store(&self, store: &Store) -> Component {
        let c = health::store(store);
        self.probes.fetch_add(1, Ordering::Relaxed);
        *self.store.write().unwrap_or_else(|p| p.into_inner()) = Some(c.clone());
        c
    }

    /// The store as the last probe found it, without writing: a full store is said at
    /// once; before any probe, a read of the store answers.
    pub fn last_store(&self, store: &Store) -> Component {
        let last = self.store.read().unwrap_or_else(|p| p.into_inner()).clone();
        health::store_seen(store, last)
    }

    /// Store probes run since start.
    pub fn probes(&self) -> u64 {
        self.probes.load(Ordering::Relaxed)
    }

    fn slot(&self, f: Figure) -> &Slot {
        &self.slots[f as usize]
    }

    /// The body of `figure`: the shared one while it is younger than the window, else
    /// one rendered now by `render` (errors are answered, never kept).
    pub async fn get(
        &self,
        figure: Figure,
        render: impl FnOnce() -> Result<Rendered, AppError>,
    ) -> Result<Rendered, AppError> {
        if self.window.is_zero() {
            return render();
        }
        if let Some(r) = self.fresh(figure, Instant::now()) {
            return Ok(r);
        }
        let _one = self.slot(figure).refresh.lock().await;
        let started = Instant::now();
        if let Some(r) = self.fresh(figure, started) {
            return Ok(r);
        }
        let generation = self.generation.load(Ordering::Acquire);
        let r = render()?;
        self.put(figure, started, generation, r.clone());
        Ok(r)
    }

    /// The cached body if it began rendering less than the window before `now`.
    fn fresh(&self, figure: Figure, now: Instant) -> Option<Rendered> {
        let current = self
            .slot(figure)
            .current
            .read()
            .unwrap_or_else(|p| p.into_inner());
        match &*current {
            Some((at, r)) if now.saturating_duration_since(*at) < self.window => Some(r.clone()),
            _ => None,
        }
    }

    /// Keep `r` (rendered from `at`) unless a clear came after `generation` was read.
    fn put(&self, figure: Figure, at: Instant, generation: u64, r: Rendered) {
        let mut current = self
            .slot(figure)
            .current
            .write()
            .unwrap_or_else(|p| p.into_inner());
        if self.generation.load(Ordering::Acquire) == generation {
            *current = Some((at, r));
        }
    }

    /// Drop every body: the next call renders anew. Returns the figures that were held.
    pub fn clear(&self) -> Vec<Figure> {
        self.generation.fetch_add(1, Ordering::AcqRel);
        Figure::ALL
            .into_iter()
            .filter(|f| {
                self.slot(*f)
                    .current
                    .write()
                    .unwrap_or_else(|p| p.into_inner())
                    .take()
                    .is_some()
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(s: &str) -> Rendered {
        Rendered {
            content_type: "text/plain",
            body: Bytes::from(s.to_string()),
        }
    }

    #[test]
    fn a_body_is_fresh_for_less_than_the_window_and_never_past_a_second() {
        let c = StatusCache::new(Duration::from_millis(250));
        let t0 = Instant::now();
        c.put(Figure::Slo, t0, 0, body("a"));
        let at = |ms| c.fresh(Figure::Slo, t0 + Duration::from_millis(ms));
        assert_eq!(at(0).unwrap().body, "a");
        assert_eq!(at(249).unwrap().body, "a");
        assert!(at(250).is_none());
        assert!(c.fresh(Figure::Summary, t0).is_none(), "slots are separate");

        let capped = StatusCache::new(Duration::from_secs(60));
        assert_eq!(capped.window, MAX_WINDOW);
        capped.put(Figure::Metrics, t0, 0, body("m"));
        assert!(capped.fresh(Figure::Metrics, t0 + MAX_WINDOW).is_none());
    }

    #[test]
    fn a_render_that_began_before_a_clear_is_not_kept() {
        let c = StatusCache::new(Duration::from_millis(500));
        let t0 = Instant::now();
        c.put(Figure::Summary, t0, 0, body("old"));
        assert_eq!(c.clear(), [Figure::Summary]);
        assert!(c.fresh(Figure::Summary, t0).is_none());
        // Its generation was read before the clear.
        c.put(Figure::Summary, t0, 0, body("raced"));
        assert!(c.fresh(Figure::Summary, t0).is_none());
        assert!(c.clear().is_empty());
    }

    #[tokio::test]
    async fn callers_share_one_render_and_errors_are_not_kept() {
        let c = StatusCache::new(Duration::from_millis(1000));
        let mut renders = 0;
        for _ in 0..3 {
            let r = c
                .get(Figure::Scheduler, || {
                    renders += 1;
                    Ok(body("s"))
                })
                .await
                .unwrap();
            assert_eq!(r.body, "s");
        }
        assert_eq!(renders, 1);
        let e = c
            .get(Figure::Metrics, || Err(AppError::bad_request("no")))
            .await;
        assert!(e.is_err());
        assert!(c.fresh(Figure::Metrics, Instant::now()).is_none());

        let off = StatusCache::new(Duration::ZERO);
        let mut renders = 0;
        for _ in 0..2 {
            let _ = off
                .get(Figure::Slo, || {
                    renders += 1;
                    Ok(body("x"))
                })
                .await;
        }
        assert_eq!(renders, 2);
    }
}
