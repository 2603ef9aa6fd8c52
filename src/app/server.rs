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

/// The whole HTTP application.
pub fn router(state: AppState) -> Router {
    let config = state.config.clone();
    let app = Router::new()
        .merge(web::api::router())
        .merge(web::dashboard::router())
        .fallback(axum::handler::Handler::layer(
            web::fallback,
            ClassLayer(Class::General),
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            web::api::flags::dashboard_v2,
        ))
        // A mutating request is one change group: a snapshot holds all of it or none.
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            web::change_group::layer,
        ))
        // Innermost: sees the caller's key and the handler's 401/403.
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            web::access::guard,
        ))
        .with_state(state.clone());
    // Outermost: the SLO counts every response, including 408/413 from the layers.
    web::measure::layer(stack(app, &config, Some(state.clone())), &state.slo)
}

/// The layers every request passes through (request id, tracing, compression, our JSON
/// errors, timeout, body limit). Public so tests can wrap extra routes the same way.
pub fn layers(app: Router, config: &Config) -> Router {
    stack(app, config, None)
}

/// The layers, with the request log when there is a state to write it.
fn stack(app: Router, config: &Config, state: Option<AppState>) -> Router {
    let request_id_span = |req: &Request<Body>| {
        let id = req
            .extensions()
            .get::<RequestId>()
            .and_then(|id| id.header_value().to_str().ok())
            .unwrap_or("-");
        tracing::info_span!("request", method = %req.method(), uri = %req.uri().path(), request_id = %id)
    };
    // ServiceBuilder: the first layer is the outermost.
    app.layer(
        ServiceBuilder::new()
            .layer(axum::middleware::map_request(web::request_id::keep_safe))
            .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
            .layer(PropagateRequestIdLayer::x_request_id())
            .layer(TraceLayer::new_for_http().make_span_with(request_id_span))
            // Outside the timeout and body limit, so 408 and 413 are logged too.
            .layer(axum::middleware::from_fn_with_state(
                state,
                web::access::request_log,
            ))
            .layer(CompressionLayer::new())
            .layer(axum::middleware::from_fn_with_state(
                config.max_body_bytes,
                web::json_errors,
            ))
            .layer(TimeoutLayer::with_status_code(
                StatusCode::REQUEST_TIMEOUT,
                Duration::from_secs(config.request_timeout_secs),
            ))
            .layer(RequestBodyLimitLayer::new(config.max_body_bytes))
            .layer(DefaultBodyLimit::disable()),
    )
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
