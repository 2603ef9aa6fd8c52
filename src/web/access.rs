//! The access middlewares: `guard` (rate limits, the brute-force block, and an audit
//! event for every 401, 403 and first refusal per window) and `request_log` (one line
//! per request in `logs/app.log`, plus `Slow request` lines).

use std::net::SocketAddr;
use std::time::Instant;

use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tower_http::request_id::RequestId;

use crate::access::{Class, Verdict, client_ip};
use crate::app::AppState;
use crate::audit::NewEvent;
use crate::auth::{Caller, KEY_HEADER, key_id};
use crate::clock::rfc3339;
use crate::web::error::{AppError, ErrorMessage};

/// Who sent a request, as far as the access layer could tell. Put in the response's
/// extensions for the request log.
#[derive(Debug, Clone)]
pub struct Client {
    pub ip: String,
    /// The presented key's id: a live key's, or a wrong key's (never the key).
    pub key_id: Option<String>,
    /// Set when the key is live.
    pub caller: Option<Caller>,
}

/// Put in a response's extensions by a handler whose failure should count against the
/// client's address like a wrong key does (a failed dashboard login, for instance).
#[derive(Debug, Clone, Copy)]
pub struct FailedLogin;

fn request_id(req: &Request) -> Option<String> {
    req.extensions()
        .get::<RequestId>()
        .and_then(|id| id.header_value().to_str().ok())
        .map(str::to_string)
}

fn identify(req: &Request, state: &AppState) -> Client {
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0);
    let xff = req
        .headers()
        .get("x-forwarded-for")
        .and_then(|v| v.to_str().ok());
    let ip = client_ip(peer, xff, state.config.trust_proxy);
    let key = req.headers().get(KEY_HEADER).map(|v| match v.to_str() {
        Ok(k) => (key_id(k.trim()), state.keys.identify(k.trim())),
        Err(_) => (key_id(&String::from_utf8_lossy(v.as_bytes())), None),
    });
    match key {
        Some((id, caller)) => Client {
            ip,
            key_id: Some(id),
            caller,
        },
        None => Client {
            ip,
            key_id: None,
            caller: None,
        },
    }
}

/// `METHOD /route` for audit targets: the matched route when there is one.
fn target(req: &Request) -> String {
    let path = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_string())
        .unwrap_or_else(|| req.uri().path().chars().take(200).collect());
    format!("{} {}", req.method(), path)
}

async fn refuse(
    state: &AppState,
    client: &Client,
    rid: Option<String>,
    target: String,
    retry_after_secs: u64,
    report: bool,
    why: &str,
) -> Response {
    let err = AppError::rate_limited(retry_after_secs);
    state.slo.record_rate_limited();
    if report {
        let ev = NewEvent {
            request_id: rid,
            actor: client.caller.clone(),
            actor_id: client.key_id.clone(),
            action: "rate_limit_exceeded".into(),
            target,
            ip: Some(client.ip.clone()),
            ok: false,
            status: 429,
            error: Some(format!("{} ({why})", err.message)),
        };
        if let Err(e) = state.audit.record(ev).await {
            tracing::error!(error = %e, "cannot record rate_limit_exceeded");
        }
    }
    let mut resp = err.into_response();
    resp.extensions_mut().insert(client.clone());
    resp
}

/// Rate limits before the handler; audit events for auth failures after it.
pub async fn guard(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let client = identify(&req, &state);
    let rid = request_id(&req);
    let class = Class::of(req.uri().path());
    let limits = state.access.limits.clone();
    if class != Class::Exempt {
        if let Verdict::Limited {
            retry_after_secs,
            report,
        } = limits.blocked(&client.ip)
        {
            return refuse(
                &state,
                &client,
                rid,
                target(&req),
                retry_after_secs,
                report,
                "too many failed keys from this address",
            )
            .await;
        }
        let who = match &client.caller {
            Some(c) => format!("key:{}", c.key_id),
            None => format!("ip:{}", client.ip),
        };
        if let Verdict::Limited {
            retry_after_secs,
            report,
        } = limits.check(class, &who)
        {
            let why = format!("{} limit", class.as_str());
            return refuse(
                &state,
                &client,
                rid,
                target(&req),
                retry_after_secs,
                report,
                &why,
            )
            .await;
        }
    }
    let tgt = target(&req);
    let mut resp = next.run(req).await;
    let status = resp.status();
    if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
        let action = if status == StatusCode::UNAUTHORIZED {
            "auth.failed"
        } else {
            "auth.forbidden"
        };
        let message = resp
            .extensions()
            .get::<ErrorMessage>()
            .map(|m| m.0.clone())
            .unwrap_or_else(|| status.canonical_reason().unwrap_or("").to_string());
        let ev = NewEvent {
            request_id: rid.clone(),
            actor: client.caller.clone(),
            actor_id: client.key_id.clone(),
            action: action.into(),
            target: tgt.clone(),
            ip: Some(client.ip.clone()),
            ok: false,
            status: status.as_u16(),
            error: Some(message),
        };
        if let Err(e) = state.audit.record(ev).await {
            tracing::error!(error = %e, "cannot record {action}");
        }
    }
    // A wrong key, or a failed login, counts against its address (brute force).
    let wrong_key =
        status == StatusCode::UNAUTHORIZED && client.key_id.is_some() && client.caller.is_none();
    let counted = wrong_key || resp.extensions().get::<FailedLogin>().is_some();
    if counted && let Verdict::Limited { report: true, .. } = limits.auth_failed(&client.ip) {
        let ev = NewEvent {
            request_id: rid,
            actor: None,
            actor_id: client.key_id.clone(),
            action: "rate_limit_exceeded".into(),
            target: tgt,
            ip: Some(client.ip.clone()),
            ok: false,
            status: 429,
            error: Some("Rate limit exceeded (too many failed keys from this address)".into()),
        };
        if let Err(e) = state.audit.record(ev).await {
            tracing::error!(error = %e, "cannot record rate_limit_exceeded");
        }
    }
    resp.extensions_mut().insert(client);
    resp
}

/// One line per request in `logs/app.log`; a second `Slow request` line when the
/// request took at least `SLOW_REQUEST_MS`. Written by the log's own thread. Without
/// a state (routes wrapped by `app::layers` alone) nothing is logged.
pub async fn request_log(
    State(state): State<Option<AppState>>,
    req: Request,
    next: Next,
) -> Response {
    let Some(state) = state else {
        return next.run(req).await;
    };
    let started = Instant::now();
    let method = req.method().to_string();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_string());
    let rid = request_id(&req).unwrap_or_else(|| "-".into());
    let resp = next.run(req).await;
    let elapsed = started.elapsed();
    let duration_ms = elapsed.as_millis() as u64;
    let (client, key) = match resp.extensions().get::<Client>() {
        Some(c) => (c.ip.clone(), c.key_id.clone()),
        None => ("-".to_string(), None),
    };
    let ts = rfc3339(state.clock.now());
    let line = crate::access::RequestLine {
        ts: &ts,
        request_id: &rid,
        method: &method,
        route: route.as_deref().unwrap_or("-"),
        status: resp.status().as_u16(),
        duration_ms,
        client: &client,
        key_id: key.as_deref().unwrap_or("-"),
    };
    let log = &state.access.request_log;
    log.append(line.line());
    if duration_ms >= state.config.slow_request_ms {
        log.append(line.slow_line());
    }
    resp
}

/// The request id and client address of a request, for handlers that record audit
/// events: `NewEvent { request_id: o.request_id, ip: Some(o.ip), .. }`.
#[derive(Debug, Clone)]
pub struct Origin {
    pub request_id: Option<String>,
    pub ip: String,
}

impl axum::extract::FromRequestParts<AppState> for Origin {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0);
        let xff = parts
            .headers
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok());
        Ok(Origin {
            request_id: parts
                .extensions
                .get::<RequestId>()
                .and_then(|id| id.header_value().to_str().ok())
                .map(str::to_string),
            ip: client_ip(peer, xff, state.config.trust_proxy),
        })
    }
}
