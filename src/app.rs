//! `AppState`, the router and the server's life: start, serve, drain, stop.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use axum::Router;
use axum::body::Body;
use axum::extract::DefaultBodyLimit;
use axum::http::{Request, StatusCode};
use chrono::{DateTime, Utc};
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

use crate::access::{Access, Limits};
use crate::audit::Audit;
use crate::auth::Keys;
use crate::build_info;
use crate::clock::{Clock, rfc3339};
use crate::config::Config;
use crate::jobs::Jobs;
use crate::jobs::executors::Executors;
use crate::logfile::{Appender, RotatingFile};
use crate::scheduler::{self, Scheduler, log::SchedLog, schedules::Schedules};
use crate::slo::Slo;
use crate::slo::alerts::Alerts;
use crate::store::{Store, meta};
use crate::supervisor::Supervisor;
use crate::web;

/// Everything a handler or a background task needs, behind one `Arc`: axum clones the
/// state (and every layer holding it) several times per request, so a clone must cost
/// one reference-count increment, not one per field (some domain handles hold paths and
/// maps). Fields are reached through `Deref`: `state.jobs`, `state.config`.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

impl std::ops::Deref for AppState {
    type Target = Shared;
    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// The handles inside [`AppState`].
pub struct Shared {
    pub config: Arc<Config>,
    pub store: Store,
    pub supervisor: Supervisor,
    pub clock: Clock,
    /// When this process started serving.
    pub started_at: DateTime<Utc>,
    started: Instant,
    /// Facts about this installation (first start, previous deployment).
    pub instance: Arc<meta::Instance>,
    /// Live keys, as digests.
    pub keys: Arc<Keys>,
    /// The audit trail.
    pub audit: Audit,
    /// Rate limits and the request log.
    pub access: Access,
    /// SLO counters and figures.
    pub slo: Slo,
    /// Alerts (fired from the SLO figures, flag changes, deployments).
    pub alerts: Alerts,
    /// The job queue.
    pub jobs: Jobs,
    /// Scheduler state, cron schedules, built-in executors, `logs/scheduler.log`.
    pub scheduler: Scheduler,
    /// Disaster-recovery snapshots.
    pub backups: crate::backup::Backups,
}

impl AppState {
    /// Open the store and build the state. Fails with "already running" when another
    /// server holds this home.
    pub fn open(config: Config) -> anyhow::Result<AppState> {
        Self::open_with_clock(config, Clock::system())
    }

    /// As [`AppState::open`], with a given clock (tests pass a manual one).
    pub fn open_with_clock(config: Config, clock: Clock) -> anyhow::Result<AppState> {
        let logs = config.logs_dir();
        for dir in [
            logs.join("ndjson"),
            logs.join("archive"),
            config.backups_dir(),
        ] {
            std::fs::create_dir_all(&dir)
                .with_context(|| format!("while creating {}", dir.display()))?;
        }
        let store = Store::open(&config.home)?;
        // The runbook's `tail`/`grep` lines work on a fresh home too: the files exist
        // (empty) from the first start.
        for file in [
            logs.join("ndjson").join("audit.ndjson"),
            logs.join("app.log"),
            logs.join("scheduler.log"),
        ] {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&file)
                .with_context(|| format!("while creating {}", file.display()))?;
        }
        let now = clock.now();
        let instance = meta::record_boot(
            &store,
            &rfc3339(now),
            build_info::VERSION,
            &build_info::commit_label(),
        )
        .context("while recording this start in the store")?;
        let audit = Audit::open_with_limit(
            &store,
            &config.logs_dir(),
            clock.clone(),
            config.log_max_bytes,
        )?;
        let app_log = config.logs_dir().join("app.log");
        let request_log = Appender::start(
            "app",
            RotatingFile::new(
                app_log.clone(),
                config.logs_dir().join("archive"),
                config.log_max_bytes,
                clock.clone(),
            ),
        )
        .with_context(|| format!("while opening {}", app_log.display()))?;
        let access = Access {
            limits: Arc::new(Limits::new(&config)),
            request_log,
        };
        let slo = Slo::open(&store, &config, clock.clone(), &instance.first_started_at)?;
        let alerts = Alerts::open(&store, audit.clone(), clock.clone())?;
        let jobs = Jobs::open(&store, clock.clone()).context("while opening the job queue")?;
        let schedules = Schedules::open(&store)?;
        schedules
            .load_config(&config.schedules, now)
            .context("while loading the schedules of echopilot.toml")?;
        schedules
            .load_builtin(&[crate::glue_backup::schedule(&config)], now)
            .context("while loading the backup schedule (BACKUP_CRON)")?;
        let backups = crate::glue_backup::open(&config, Some(&store), clock.clone());
        let scheduler = Scheduler::new(
            config.scheduler_tick_secs,
            config.executor_concurrency,
            schedules,
            Executors::new(
                config.commands.clone(),
                &config.home,
                config.alert_webhook_url.clone(),
            ),
            SchedLog::new(&config.logs_dir(), clock.clone()),
        );
        store
            .sync_blocking()
            .context("while syncing the recovered job queue")?;
        Ok(AppState(Arc::new(Shared {
            slo,
            alerts,
            audit,
            access,
            jobs,
            scheduler,
            backups,
            keys: Arc::new(Keys::from_config(&config)),
            config: Arc::new(config),
            store,
            supervisor: Supervisor::new(),
            clock,
            started_at: now,
            started: Instant::now(),
            instance: Arc::new(instance),
        })))
    }

    /// How long this process has been up.
    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }

    /// Start the background tasks (scheduler, executors, flushers) under the supervisor.
    pub fn start_background(&self) {
        // Domains register their tasks here as they arrive.
        let limits = self.access.limits.clone();
        self.supervisor.spawn("rate-limits", move |token| {
            let limits = limits.clone();
            async move {
                let mut every = tokio::time::interval(limits.window());
                loop {
                    tokio::select! {
                        _ = token.cancelled() => return Ok(()),
                        _ = every.tick() => limits.retain_recent(),
                    }
                }
            }
        });
        crate::slo::start(self);
        self.start_jobs();
        crate::glue::start(self);
        crate::glue_backup::start(self);
    }

    /// Write out the queued audit and request-log lines (shutdown, tests).
    pub async fn flush_logs(&self) -> std::io::Result<()> {
        self.audit.flush().await?;
        self.access.request_log.flush().await
    }

    /// Move `audit.ndjson` and `app.log` into `logs/archive/YYYYMMDD/`; returns the
    /// archived files.
    pub async fn rotate_logs(&self) -> std::io::Result<Vec<std::path::PathBuf>> {
        let mut out = Vec::new();
        out.extend(self.audit.rotate().await?);
        out.extend(self.access.request_log.rotate().await?);
        Ok(out)
    }

    fn start_jobs(&self) {
        let st = self.clone();
        self.scheduler.mark_starting();
        self.supervisor
            .spawn("scheduler", move |token| scheduler::run(st.clone(), token));
        let st = self.clone();
        self.supervisor.spawn("scheduler-log", move |token| {
            scheduler::log::follow_outcomes(st.scheduler.log.clone(), st.jobs.subscribe(), token)
        });
    }
}

/// The whole HTTP application.
pub fn router(state: AppState) -> Router {
    let config = state.config.clone();
    let app = Router::new()
        .merge(web::api::router())
        .fallback(web::fallback)
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
    state.start_background();
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
        .sync_blocking()
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
