//! Accepting connections: a cap on how many are open at once, a header-read timeout,
//! and a quick answer past the cap. Takes the place of `axum::serve`, which exposes
//! none of these.
//!
//! - **Cap** (`MAX_CONNECTIONS`): each connection holds a permit until it closes. By
//!   default the cap is the process's open-file limit less [`FD_RESERVE`], so the store,
//!   the log files and outgoing calls always find a descriptor.
//! - **Past the cap** a connection is accepted, answered `503` with `Retry-After` and
//!   closed at once (a few at a time; beyond that it is simply closed), so a client sees
//!   a clear refusal instead of a hang, and the listen queue keeps moving.
//! - **Header-read timeout** (`HEADER_READ_TIMEOUT_SECS`): hyper's timer closes a
//!   connection that has not sent a whole request head in time. hyper restarts the same
//!   timer while a keep-alive connection waits for its next request, so it is also the
//!   idle keep-alive timeout: an idle connection is closed after it too.
//! - **Accept errors** (out of descriptors): logged at most once a second, and the loop
//!   backs off briefly instead of spinning.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

/// Descriptors kept free for everything but client connections: the store's files, the
/// log files, outgoing HTTP (alerts, the `http` executor), child processes.
pub const FD_RESERVE: u64 = 256;

/// Refusals written at once; past this a connection over the cap is just closed.
const REFUSING_AT_ONCE: usize = 64;

/// How long a refusal may take to write before the connection is dropped anyway.
const REFUSAL_WRITE_LIMIT: Duration = Duration::from_secs(1);

/// The connection settings (from `Config`).
#[derive(Debug, Clone, Copy)]
pub struct ConnLimits {
    /// Most connections open at once.
    pub max_connections: usize,
    /// Time to send a request head, and to stay idle between requests.
    pub header_read_timeout: Duration,
}

impl ConnLimits {
    pub fn from_config(config: &crate::config::Config) -> Self {
        Self {
            max_connections: config
                .max_connections
                .unwrap_or_else(default_max_connections),
            header_read_timeout: Duration::from_secs(config.header_read_timeout_secs),
        }
    }
}

/// The default cap: the soft open-file limit less [`FD_RESERVE`] (at least 16).
pub fn default_max_connections() -> usize {
    let limit = open_file_limit().unwrap_or(1024);
    limit.saturating_sub(FD_RESERVE).max(16) as usize
}

/// The soft `RLIMIT_NOFILE`, read from `/proc/self/limits` (Linux); `None` elsewhere.
fn open_file_limit() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = text.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

/// Serve `app` on `listener` until `shutdown` fires, then stop accepting, let every
/// open connection finish its request (graceful), and return once they have closed.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ConnLimits,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let refusing = Arc::new(Semaphore::new(REFUSING_AT_ONCE));
    let body = refusal_body(limits.max_connections);
    let tracker = TaskTracker::new();
    let mut last_accept_error: Option<Instant> = None;
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => break,
            a = listener.accept() => a,
        };
        let (stream, remote) = match accepted {
            Ok(a) => a,
            Err(e) => {
                if last_accept_error.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
                    tracing::warn!(error = %e, "cannot accept a connection");
                    last_accept_error = Some(Instant::now());
                }
                // Out of descriptors: give closing connections a moment to free some.
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            if let Ok(slot) = refusing.clone().try_acquire_owned() {
                let body = body.clone();
                tracker.spawn(async move {
                    refuse(stream, &body).await;
                    drop(slot);
                });
            }
            continue;
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let token = shutdown.clone();
        tracker.spawn(async move {
            serve_one(stream, remote, app, limits, token).await;
            drop(permit);
        });
    }
    drop(listener);
    tracker.close();
    tracker.wait().await;
    Ok(())
}

async fn serve_one(
    stream: TcpStream,
    remote: SocketAddr,
    app: Router,
    limits: ConnLimits,
    shutdown: CancellationToken,
) {
    let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
        // What `into_make_service_with_connect_info` gave handlers before.
        req.extensions_mut().insert(ConnectInfo(remote));
        app.clone().oneshot(req.map(Body::new))
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .keep_alive(true);
    let conn = builder
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades();
    tokio::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => {
            if let Err(e) = r {
                tracing::debug!(%remote, error = %e, "connection ended with an error");
            }
            return;
        }
        _ = shutdown.cancelled() => conn.as_mut().graceful_shutdown(),
    }
    if let Err(e) = conn.await {
        tracing::debug!(%remote, error = %e, "connection ended with an error");
    }
}

fn refusal_body(max: usize) -> Arc<[u8]> {
    let json = serde_json::json!({
        "ok": false,
        "error": format!("too many open connections (the limit is {max}, MAX_CONNECTIONS); retry shortly"),
    })
    .to_string();
    format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n\
         retry-after: 1\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{json}",
        json.len()
    )
    .into_bytes()
    .into()
}

/// Answer a connection over the cap and close it. What the client sent is read and
/// dropped after the answer: closing a socket with unread bytes resets it, and a reset
/// can discard the answer before the client reads it.
async fn refuse(mut stream: TcpStream, response: &[u8]) {
    let _ = tokio::time::timeout(REFUSAL_WRITE_LIMIT, async {
        stream.write_all(response).await?;
        stream.shutdown().await?;
        let mut sink = [0u8; 4096];
        while stream.read(&mut sink).await? > 0 {}
        std::io::Result::Ok(())
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_cap_leaves_the_reserve() {
        let limit = open_file_limit().expect("Linux has /proc/self/limits");
        assert_eq!(
            default_max_connections() as u64,
            limit.saturating_sub(FD_RESERVE).max(16)
        );
        let r = refusal_body(7);
        let text = std::str::from_utf8(&r).unwrap();
        assert!(text.starts_with("HTTP/1.1 503 "), "{text}");
        let (_, body) = text.split_once("\r\n\r\n").unwrap();
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        assert!(v["error"].as_str().unwrap().contains("limit is 7"), "{v}");
        assert!(text.contains(&format!("content-length: {}\r\n", body.len())));
    }
}
