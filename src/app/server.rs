//! The HTTP server: the router with its layers, and the server's life (serve, drain,
//! stop).

use std::net::SocketAddr;
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
        .fallback(axum::handler::Handler::layer(
            web::fallback,
            ClassLayer(Class::General),
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
            .layer(axum::middleware::from_fn(web::json_errors))
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
    let server = axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async move { token.cancelled().await });
    let mut server = tokio::spawn(server.into_future());

    let served = tokio::select! {
        r = &mut server => Some(r),
        _ = shutdown.cancelled() => None,
    };
    let result = match served {
        Some(r) => r.context("server task").and_then(|r| r.context("server")),
        None => {
            tracing::info!("shutting down: draining requests");
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

/// Resolve when SIGINT or SIGTERM arrives.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
