//! The access story's HTTP side: `guard` (who the client is, and an audit event for
//! every 401 and 403), the route classes as a layer ([`limited`]: the rate limit and the
//! brute-force block, an audit event for the first refusal per window), and
//! `request_log` (one line per request in `logs/app.log`, plus `Slow request` lines).
//! Keys and roles are `crate::auth`'s; the limiter's core is `crate::ratelimit`.

use std::borrow::Cow;
use std::convert::Infallible;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::{Method, StatusCode, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tower::{Layer, Service};
use tower_http::request_id::RequestId;
use utoipa_axum::router::OpenApiRouter;

use crate::app::AppState;
use crate::audit::NewEvent;
use crate::auth::{Caller, KEY_HEADER, key_id};
use crate::clock::rfc3339;
use crate::logfile::Appender;
use crate::ratelimit::{Class, FAILED_KEYS, Limits, Verdict};
use crate::web::error::{AppError, ErrorMessage};
use crate::web::measure::RoutePattern;

/// The access handle in `AppState`: the limits and the request log. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Access {
    pub limits: Arc<Limits>,
    /// `logs/app.log`.
    pub request_log: Appender,
}

/// One request, as the request log writes it.
#[derive(Debug, Clone)]
pub struct RequestLine<'a> {
    pub ts: &'a str,
    pub request_id: &'a str,
    pub method: &'a str,
    /// The matched route (`/api/job/{id}`), or `-` when none matched.
    pub route: &'a str,
    pub status: u16,
    pub duration_ms: u64,
    pub client: &'a str,
    /// The caller's key id, or `-`.
    pub key_id: &'a str,
}

impl RequestLine<'_> {
    /// The line for every request.
    pub fn line(&self) -> String {
        self.render("INFO request")
    }

    /// The extra line for a request at least `SLOW_REQUEST_MS` long.
    pub fn slow_line(&self) -> String {
        self.render("WARN Slow request")
    }

    /// Written once into one buffer (every request writes a line); the text logs' one
    /// escape still looks at it, and only copies it if a value slipped through.
    fn render(&self, what: &str) -> String {
        use std::fmt::Write;
        let mut out = String::with_capacity(200);
        let _ = write!(
            out,
            "{} {what} request_id={} method={} route={} status={} duration_ms={} client={} key={}",
            self.ts,
            field(self.request_id),
            field(self.method),
            field(self.route),
            self.status,
            self.duration_ms,
            field(self.client),
            field(self.key_id)
        );
        match crate::logfile::escape(&out) {
            Cow::Borrowed(_) => out,
            Cow::Owned(escaped) => escaped,
        }
    }
}

/// A request-log value as it is, when it is one plain word; otherwise quoted, with `"`,
/// `\\` and every control or line-breaking character escaped, so no value can end its
/// field or its line and fake another.
fn field(v: &str) -> Cow<'_, str> {
    let plain = |c: char| c.is_ascii_alphanumeric() || "._:-/{}*@+,".contains(c);
    if !v.is_empty() && v.chars().all(plain) {
        return Cow::Borrowed(v);
    }
    let mut out = String::with_capacity(v.len() + 2);
    out.push('"');
    for c in v.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() || matches!(c, '\u{2028}' | '\u{2029}') => {
                out.push_str(&format!("\\u{{{:04x}}}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    Cow::Owned(out)
}

/// The client's address: the peer, or with `TRUST_PROXY` the last address in
/// `X-Forwarded-For` (the one our proxy appended; earlier ones are the client's word).
pub fn client_ip(
    peer: Option<SocketAddr>,
    forwarded_for: Option<&str>,
    trust_proxy: bool,
) -> String {
    if trust_proxy
        && let Some(ip) = forwarded_for
            .and_then(|v| v.rsplit(',').next())
            .and_then(|s| s.trim().parse::<IpAddr>().ok())
    {
        return ip.to_string();
    }
    peer.map(|p| p.ip().to_string())
        .unwrap_or_else(|| "unknown".to_string())
}

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
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(MatchedPath::as_str);
    target_of(req.method(), req.uri(), route)
}

/// [`target`] from outside the router, where the route comes with the response.
fn target_of(method: &Method, uri: &Uri, route: Option<&str>) -> String {
    match route {
        Some(r) => format!("{method} {r}"),
        None => format!(
            "{method} {}",
            uri.path().chars().take(200).collect::<String>()
        ),
    }
}

/// The 429 for `limit` (a route class or `failed_keys`), and its audit event when
/// `report` (the first refusal of this client in the window).
async fn refuse(
    state: &AppState,
    client: &Client,
    rid: Option<String>,
    target: String,
    verdict: (u64, bool),
    limit: &'static str,
    why: &str,
) -> Response {
    let (retry_after_secs, report) = verdict;
    let err = AppError::rate_limited(retry_after_secs, limit);
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
            error: Some(format!("{} ({limit}: {why})", err.message)),
        };
        if let Err(e) = state.audit.record(ev).await {
            tracing::error!(error = %e, "cannot record rate_limit_exceeded");
        }
    }
    let mut resp = err.into_response();
    resp.extensions_mut().insert(client.clone());
    resp
}

/// Why the failed-key limit refused, in the audit event.
const FAILED_KEYS_WHY: &str = "too many failed keys from this address";

/// What the class layer needs to refuse a request: put in the request's extensions by
/// [`guard`], so a route class is a plain layer with no state of its own.
#[derive(Clone)]
struct Gate {
    state: AppState,
    client: Client,
    request_id: Option<String>,
}

impl Gate {
    /// `Some(429)` when `class`'s limit (or the failed-key block) refuses the request.
    /// The block stops only further failed attempts: a wrong key here, a keyless call
    /// once its route has answered 401 ([`guard`]). A live key from a blocked address
    /// keeps working, so one stale client behind a NAT cannot lock out the rest.
    async fn refusal(&self, class: Class, target: String) -> Option<Response> {
        let limits = &self.state.access.limits;
        let client = &self.client;
        let wrong_key = client.caller.is_none() && client.key_id.is_some();
        let blocked = if wrong_key {
            limits.blocked(&client.ip)
        } else {
            Verdict::Allowed
        };
        let (verdict, limit, why) = match blocked {
            Verdict::Allowed => {
                let who = match &client.caller {
                    Some(c) => format!("key:{}", c.key_id),
                    None => format!("ip:{}", client.ip),
                };
                (limits.check(class, &who), class.as_str(), "route limit")
            }
            blocked => (blocked, FAILED_KEYS, FAILED_KEYS_WHY),
        };
        let Verdict::Limited {
            retry_after_secs,
            report,
        } = verdict
        else {
            return None;
        };
        let resp = refuse(
            &self.state,
            client,
            self.request_id.clone(),
            target,
            (retry_after_secs, report),
            limit,
            why,
        )
        .await;
        Some(resp)
    }
}

/// Give every route of `router` the rate limit of `class`, and say so in the OpenAPI
/// document (`x-rate-limit`, and a 429 answer). The limit applies behind [`guard`].
pub fn limited(class: Class, mut router: OpenApiRouter<AppState>) -> OpenApiRouter<AppState> {
    for item in router.get_openapi_mut().paths.paths.values_mut() {
        for op in [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.patch,
        ]
        .into_iter()
        .flatten()
        {
            op.extensions
                .get_or_insert_with(Default::default)
                .insert(RATE_LIMIT_EXT.into(), class.as_str().into());
        }
    }
    router.route_layer(ClassLayer(class))
}

/// The OpenAPI extension that names an operation's rate-limit class.
pub const RATE_LIMIT_EXT: &str = "x-rate-limit";

/// The route class as a tower layer (for routers built without [`limited`]: the
/// fallback, a test's router).
#[derive(Debug, Clone, Copy)]
pub struct ClassLayer(pub Class);

impl<S> Layer<S> for ClassLayer {
    type Service = ClassLimit<S>;
    fn layer(&self, inner: S) -> ClassLimit<S> {
        ClassLimit {
            inner,
            class: self.0,
        }
    }
}

/// Refuses past its class's limit; otherwise calls the route.
#[derive(Debug, Clone)]
pub struct ClassLimit<S> {
    inner: S,
    class: Class,
}

impl<S> Service<Request> for ClassLimit<S>
where
    S: Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request) -> Self::Future {
        let Some(gate) = req.extensions().get::<Gate>().cloned() else {
            return Box::pin(self.inner.call(req));
        };
        // The ready service goes into the future; a fresh clone stays for the next call.
        let fresh = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, fresh);
        let class = self.class;
        let tgt = target(&req);
        Box::pin(async move {
            match gate.refusal(class, tgt).await {
                Some(resp) => Ok(resp),
                None => inner.call(req).await,
            }
        })
    }
}

/// Who the client is, before the route runs (the route's class layer reads it); audit
/// events for auth failures after it, and wrong keys counted against the address.
/// `inner` runs the rest of the request.
pub async fn guard<F, Fut>(state: &AppState, mut req: Request, inner: F) -> Response
where
    F: FnOnce(Request) -> Fut,
    Fut: Future<Output = Response>,
{
    let client = identify(&req, state);
    let rid = request_id(&req);
    let limits = state.access.limits.clone();
    req.extensions_mut().insert(Gate {
        state: state.clone(),
        client: client.clone(),
        request_id: rid.clone(),
    });
    let (method, uri) = (req.method().clone(), req.uri().clone());
    let mut resp = inner(req).await;
    let status = resp.status();
    let route = resp.extensions().get::<RoutePattern>().cloned();
    // Only the failures below need it.
    let tgt = || target_of(&method, &uri, route.as_ref().map(|r| r.0.as_str()));
    // A keyless call that failed (a protected route's 401, a failed login) from a
    // blocked address is a further failed attempt: refused like a wrong key is. It has
    // changed nothing, so answering after the route ran is safe.
    let failed =
        status == StatusCode::UNAUTHORIZED || resp.extensions().get::<FailedLogin>().is_some();
    if failed
        && client.key_id.is_none()
        && let Verdict::Limited {
            retry_after_secs,
            report,
        } = limits.blocked(&client.ip)
    {
        let verdict = (retry_after_secs, report);
        let mut refused = refuse(
            state,
            &client,
            rid,
            tgt(),
            verdict,
            FAILED_KEYS,
            FAILED_KEYS_WHY,
        )
        .await;
        if let Some(r) = route {
            refused.extensions_mut().insert(r);
        }
        return refused;
    }
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
            target: tgt(),
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
            target: tgt(),
            ip: Some(client.ip.clone()),
            ok: false,
            status: 429,
            error: Some(format!(
                "Rate limit exceeded ({FAILED_KEYS}: {FAILED_KEYS_WHY})"
            )),
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
    let method = req.method().clone();
    let rid = request_id(&req).unwrap_or_else(|| "-".into());
    let resp = next.run(req).await;
    let route = RoutePattern::of(&resp);
    let elapsed = started.elapsed();
    let duration_ms = elapsed.as_millis() as u64;
    let (client, key) = match resp.extensions().get::<Client>() {
        Some(c) => (c.ip.clone(), c.key_id.clone()),
        None => ("-".to_string(), None),
    };
    let ts = rfc3339(state.clock.now());
    let line = RequestLine {
        ts: &ts,
        request_id: &rid,
        method: method.as_str(),
        route: route.unwrap_or("-"),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_log_values_cannot_fake_a_field_or_a_line() {
        assert_eq!(field("/api/job/{id}"), "/api/job/{id}");
        assert_eq!(field(""), "\"\"");
        assert_eq!(field("a status=200"), "\"a status=200\"");
        assert_eq!(field("a\"b\\c"), "\"a\\\"b\\\\c\"");
        assert_eq!(
            field("x\ny\r\u{1b}\u{2028}"),
            "\"x\\u{000a}y\\u{000d}\\u{001b}\\u{2028}\""
        );
    }

    #[test]
    fn a_request_line_is_one_line_of_plain_fields() {
        let line = RequestLine {
            ts: "2026-12-01T00:00:00.000Z",
            request_id: "r-1",
            method: "GET",
            route: "/api/job/{id}",
            status: 200,
            duration_ms: 3,
            client: "127.0.0.1",
            key_id: "-",
        };
        assert_eq!(
            line.line(),
            "2026-12-01T00:00:00.000Z INFO request request_id=r-1 method=GET \
             route=/api/job/{id} status=200 duration_ms=3 client=127.0.0.1 key=-"
        );
        let forged = RequestLine {
            request_id: "x\n2026-12-01T00:00:00.000Z ERROR forged",
            ..line
        };
        let slow = forged.slow_line();
        assert!(
            slow.starts_with(
                "2026-12-01T00:00:00.000Z WARN Slow request request_id=\"x\\u{000a}2026"
            ),
            "{slow}"
        );
        assert!(!slow.chars().any(char::is_control), "{slow}");
    }

    #[test]
    fn client_ip_trusts_forwarded_for_only_when_told() {
        let peer: SocketAddr = "10.0.0.1:5000".parse().unwrap();
        let xff = Some("1.2.3.4, 5.6.7.8");
        assert_eq!(client_ip(Some(peer), xff, false), "10.0.0.1");
        assert_eq!(client_ip(Some(peer), xff, true), "5.6.7.8");
        assert_eq!(client_ip(Some(peer), Some("garbage"), true), "10.0.0.1");
        assert_eq!(client_ip(None, None, false), "unknown");
    }
}
