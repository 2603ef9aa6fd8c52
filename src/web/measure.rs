//! The SLO's measuring layer: times every response and counts it under its matched route
//! pattern (`/api/job/{id}`, not the raw path, so labels stay few), or [`UNMATCHED`] for
//! requests no route took.
//!
//! A hand-written tower layer rather than `middleware::from_fn`: `from_fn` clones the
//! inner service and boxes a future per request, which cost ~1.3 µs here; this one adds
//! only the two clock reads and the atomics (`cargo bench --bench slo_middleware`).
//!
//! The server's layers wrap the router as one service, not each route (a layer given to
//! `Router::layer` is boxed per route and cloned, with everything under it, for every
//! request), so outside the router the route is known from [`RouteStamp`]: each route
//! stamps its pattern on its response.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Instant;

use axum::Router;
use axum::extract::{MatchedPath, Request};
use axum::response::Response;
use tower::{Layer, Service};

use crate::slo::{Slo, UNMATCHED};

/// Wrap `app` so every response is counted. As the outermost layer it sees the final
/// status, including 408s and 413s from the layers. Each route is stamped under it, so
/// the route is known whether or not `app` carries [`crate::app::layers`].
pub fn layer(app: Router, slo: &Slo) -> Router {
    app.layer(
        tower::ServiceBuilder::new()
            .layer(MeasureLayer::new(slo))
            .layer(RouteStampLayer),
    )
}

/// The layer: gives its inner service a [`Measure`].
#[derive(Clone)]
pub struct MeasureLayer {
    slo: Slo,
}

impl MeasureLayer {
    pub fn new(slo: &Slo) -> Self {
        Self { slo: slo.clone() }
    }
}

/// The matched route pattern of a response (`/api/job/{id}`), for the layers outside the
/// router: the SLO, the request log and the audit targets of refusals.
#[derive(Debug, Clone)]
pub struct RoutePattern(pub MatchedPath);

impl RoutePattern {
    pub fn of(resp: &Response) -> Option<&str> {
        resp.extensions()
            .get::<RoutePattern>()
            .map(|r| r.0.as_str())
    }
}

/// Given to `Router::layer`, outermost of the per-route layers (so the route's 408s and
/// 413s carry it too): stamps each response with its route's pattern.
#[derive(Clone, Copy, Default)]
pub struct RouteStampLayer;

impl<S> Layer<S> for RouteStampLayer {
    type Service = RouteStamp<S>;
    fn layer(&self, inner: S) -> RouteStamp<S> {
        RouteStamp { inner }
    }
}

/// See [`RouteStampLayer`].
#[derive(Clone)]
pub struct RouteStamp<S> {
    inner: S,
}

impl<S, B, RB> Service<Request<B>> for RouteStamp<S>
where
    S: Service<Request<B>, Response = axum::http::Response<RB>>,
{
    type Response = axum::http::Response<RB>;
    type Error = S::Error;
    type Future = StampFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let route = req.extensions().get::<MatchedPath>().cloned();
        StampFuture {
            inner: self.inner.call(req),
            route,
        }
    }
}

pin_project_lite::pin_project! {
    /// The route's response future, stamped when it completes.
    pub struct StampFuture<F> {
        #[pin]
        inner: F,
        route: Option<MatchedPath>,
    }
}

impl<F, E, RB> Future for StampFuture<F>
where
    F: Future<Output = Result<axum::http::Response<RB>, E>>,
{
    type Output = Result<axum::http::Response<RB>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut out = ready!(this.inner.poll(cx));
        if let (Ok(resp), Some(route)) = (&mut out, this.route.take()) {
            resp.extensions_mut().insert(RoutePattern(route));
        }
        Poll::Ready(out)
    }
}

impl<S> Layer<S> for MeasureLayer {
    type Service = Measure<S>;
    fn layer(&self, inner: S) -> Measure<S> {
        Measure {
            inner,
            slo: self.slo.clone(),
        }
    }
}

/// Times the inner service's response.
#[derive(Clone)]
pub struct Measure<S> {
    inner: S,
    slo: Slo,
}

impl<S, B> Service<Request<B>> for Measure<S>
where
    S: Service<Request<B>, Response = Response>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = MeasureFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        MeasureFuture {
            start: Instant::now(),
            inner: self.inner.call(req),
            slo: self.slo.clone(),
        }
    }
}

pin_project_lite::pin_project! {
    /// The inner response future, counted when it completes.
    pub struct MeasureFuture<F> {
        #[pin]
        inner: F,
        slo: Slo,
        start: Instant,
    }
}

impl<F, E> Future for MeasureFuture<F>
where
    F: Future<Output = Result<Response, E>>,
{
    type Output = Result<Response, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let out = ready!(this.inner.poll(cx));
        if let Ok(resp) = &out {
            let route = RoutePattern::of(resp).unwrap_or(UNMATCHED);
            this.slo
                .record_request(route, resp.status().as_u16(), this.start.elapsed());
        }
        Poll::Ready(out)
    }
}
