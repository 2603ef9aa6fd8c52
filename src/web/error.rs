//! `AppError`: every failure our HTTP API reports, as `{"ok": false, "error": "..."}`
//! with the right status. 5xx causes are logged; the client sees only the message.
//! Any domain error that implements [`Classify`] converts into it with `?`.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::error::{Classify, ErrorKind};

/// The result type of handlers.
pub type Result<T, E = AppError> = std::result::Result<T, E>;

#[derive(Debug)]
pub struct AppError {
    pub status: StatusCode,
    pub message: String,
    /// Seconds for a `Retry-After` header (429, 503).
    pub retry_after: Option<u64>,
    /// The limit a 429 hit: a route class or `failed_keys` (shown as `"limit"`).
    pub limit: Option<&'static str>,
    /// The cause of a 5xx, logged and never shown.
    pub source: Option<anyhow::Error>,
}

impl AppError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            retry_after: None,
            limit: None,
            source: None,
        }
    }
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, message)
    }
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, message)
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, message)
    }
    /// A 429 naming the limit hit (`crate::ratelimit::Class::as_str` or
    /// `crate::ratelimit::FAILED_KEYS`).
    pub fn rate_limited(retry_after_secs: u64, limit: &'static str) -> Self {
        Self {
            retry_after: Some(retry_after_secs.max(1)),
            limit: Some(limit),
            ..Self::new(StatusCode::TOO_MANY_REQUESTS, "Rate limit exceeded")
        }
    }
    pub fn internal(source: impl Into<anyhow::Error>) -> Self {
        Self {
            source: Some(source.into()),
            ..Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
        }
    }
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, message)
    }
}

impl std::fmt::Display for AppError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.status.as_u16(), self.message)
    }
}

impl std::error::Error for AppError {}

/// The status of each kind of domain failure.
pub fn status_of(kind: ErrorKind) -> StatusCode {
    match kind {
        ErrorKind::NotFound => StatusCode::NOT_FOUND,
        ErrorKind::Invalid => StatusCode::BAD_REQUEST,
        ErrorKind::Conflict => StatusCode::CONFLICT,
        ErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        ErrorKind::Unprocessable => StatusCode::UNPROCESSABLE_ENTITY,
        ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl<E: Classify> From<E> for AppError {
    fn from(e: E) -> Self {
        let kind = e.kind();
        let message = e.public_message();
        let source = (kind == ErrorKind::Internal).then(|| anyhow::Error::new(e));
        AppError {
            source,
            ..AppError::new(status_of(kind), message)
        }
    }
}

impl From<anyhow::Error> for AppError {
    fn from(e: anyhow::Error) -> Self {
        AppError::internal(e)
    }
}

/// The body of every API error (also its OpenAPI schema).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// Always `false`.
    pub ok: bool,
    /// What went wrong; names the field for bad input.
    pub error: String,
    /// On a 429 only: the limit hit, a route class (`general`, `worker`, `webhook`) or
    /// `failed_keys` (too many failed keys from the address).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<String>,
}

/// The body of every API error.
pub fn error_body(message: &str) -> ErrorBody {
    ErrorBody {
        ok: false,
        error: message.to_string(),
        limit: None,
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            match &self.source {
                Some(src) => tracing::error!(status = %self.status, error = ?src, "request failed"),
                None => {
                    tracing::error!(status = %self.status, message = %self.message, "request failed")
                }
            }
        }
        let body = ErrorBody {
            limit: self.limit.map(str::to_string),
            ..error_body(&self.message)
        };
        let mut resp = (self.status, axum::Json(body)).into_response();
        if let Some(secs) = self.retry_after
            && let Ok(v) = HeaderValue::from_str(&secs.to_string())
        {
            resp.headers_mut().insert(header::RETRY_AFTER, v);
        }
        resp.extensions_mut().insert(ErrorMessage(self.message));
        resp
    }
}

/// Carried on error responses so logging layers (audit, request log) can read the
/// message without parsing the body.
#[derive(Debug, Clone)]
pub struct ErrorMessage(pub String);
