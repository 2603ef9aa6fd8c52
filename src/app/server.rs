//! The HTTP server: the router with its layers, and the server's life (serve, drain,
//! stop).

use std::time::Duration;

use anyhow::Context;
use axum::Router;
use axum::body::Body;
use axum::extract::DefaultBodyLimit;
use axum::http::{Request, StatusCode};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower::ServiceBuilder;
use tower_http::compression::CompressionLayer;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::request_id::{
    MakeRequestUuid, PropagateRequestIdLayer, RequestId, SetRequestIdLayer,
};
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

use super::AppState;
use crate::config::Config;
use crate::ratelimit::Class;
use crate::web;
use crate::web::access::ClassLayer;
use crate::web::measure::{MeasureLayer, RouteStampLayer};

/// The whole HTTP application: [`routes`] inside the layers.
pub fn router(state: AppState) -> Router {
    let config = state.config.clone();
    stack(routes(state.clone()), &config, Some(state))
}

/// Every route, without the layers (which wrap it as one service, so a walk of the
/// routes starts here).
pub fn routes(state: AppState) -> Router {
    Router::new()
        .merge(web::api::router())
        .merge(web::dashboard::router())
        .fallback(axum::handler::Handler::layer(
            web::fallback,
            ClassLayer(Class::General),
        ))
        .with_state(state)
}

/// The layers every request passes through (request id, tracing, compression, our JSON
/// errors, timeout, body limit). Public so tests can wrap extra routes the same way.
pub fn layers(app: Router, config: &Config) -> Router {
    stack(app, config, None)
}

/// The layers; with a state, also the SLO's measure, the request log and [`web::front`]
/// (the access guard, the legacy-dashboard redirect and the change group).
fn stack(app: Router, config: &Config, state: Option<AppState>) -> Router {
    // The request id alone: the request log's line for it has the method and route, and
    // the text log formats a span's fields for every request (~3.5 % of a status route's
    // CPU with three).
    let request_id_span = |req: &Request<Body>| {
        let id = req
            .extensions()
            .get::<RequestId>()
            .and_then(|id| id.header_value().to_str().ok())
            .unwrap_or("-");
        tracing::info_span!("request", request_id = %id)
    };
    // Per route (`Router::layer`). The stamp is outermost, so the 408s and 413s of the
    // two limits carry the route to the layers outside the router.
    let routes = app.layer(
        ServiceBuilder::new()
            .layer(RouteStampLayer)
            .layer(TimeoutLayer::with_status_code(
                StatusCode::REQUEST_TIMEOUT,
                Duration::from_secs(config.request_timeout_secs),
            ))
            .layer(RequestBodyLimitLayer::new(config.max_body_bytes))
            .layer(DefaultBodyLimit::disable()),
    );
    // Around the whole router, once: a layer given to `Router::layer` is boxed per route
    // and cloned, with every layer under it, for each request. The first is outermost:
    // the SLO counts every response, the request log sees the compressed one.
    let service = ServiceBuilder::new()
        .option_layer(state.as_ref().map(|s| MeasureLayer::new(&s.slo)))
        .layer(axum::middleware::map_request(web::request_id::keep_safe))
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(TraceLayer::new_for_http().make_span_with(request_id_span))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            web::access::request_log,
        ))
        .layer(CompressionLayer::new())
        .layer(axum::middleware::from_fn_with_state(
            config.max_body_bytes,
            web::json_errors,
        ))
        .option_layer(state.map(|s| axum::middleware::from_fn_with_state(s, web::front)))
        .service(routes);
    Router::new().fallback_service(service)
}

/// How long in-flight requests get to finish after a shutdown signal.
const DRAIN_LIMIT: Duration = Duration::from_secs(6);
/// How long background tasks get to stop after the server stopped.
const TASKS_LIMIT: Duration = Duration::from_secs(3);

/// Serve until `shutdown` fires, then drain requests, stop background tasks and flush
/// the store (miniflux's order). Bounded so the process exits within 10 s.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    super::wiring::start_background(&state);
    let app = router(state.clone());
    let token = shutdown.clone();
    let limits = web::listener::ConnLimits::from_config(&state.config);
    let mut server = tokio::spawn(web::listener::serve(listener, app, limits, token));

    let served = tokio::select! {
        r = &mut server => Some(r),
        _ = shutdown.cancelled() => None,
    };
    let result = match served {
        Some(r) => r.context("server task").and_then(|r| r.context("server")),
        None => {
            tracing::info!("shutting down: draining requests");
            // Long-polling claims answer now instead of holding the drain up.
            state.jobs.stop_waiting();
            match tokio::time::timeout(DRAIN_LIMIT, &mut server).await {
                Ok(r) => r.context("server task").and_then(|r| r.context("server")),
                Err(_) => {
                    tracing::warn!("requests still running after {DRAIN_LIMIT:?}; closing them");
                    server.abort();
                    Ok(())
                }
            }
        }
    };
    if !state.supervisor.shutdown(TASKS_LIMIT).await {
        tracing::warn!("some background tasks did not stop within {TASKS_LIMIT:?}");
    }
    if let Err(e) = state.flush_logs().await {
        tracing::error!(error = %e, "cannot flush the log files at shutdown");
    }
    state
        .store
        .checkpoint()
        .context("while flushing the store at shutdown")?;
    tracing::info!("stopped");
    result
}

/// Listen for SIGINT and SIGTERM from this call on (not from the first poll, so a
/// signal sent right after the banner is not lost to the default action); the future
/// resolves with the signal's name.
pub fn shutdown_signal() -> impl std::future::Future<Output = &'static str> + Send {
    #[cfg(unix)]
    let listening = {
        use tokio::signal::unix::{SignalKind, signal};
        (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        )
    };
    async move {
        #[cfg(unix)]
        if let (Ok(mut term), Ok(mut int)) = listening {
            return tokio::select! {
                _ = term.recv() => "SIGTERM",
                _ = int.recv() => "SIGINT",
            };
        }
        let _ = tokio::signal::ctrl_c().await;
        "SIGINT"
    }
}
