//! Extractors whose rejections are our `AppError`, so a malformed body, query or path
//! gets `{"ok": false, "error": ...}` instead of axum's plain text.

use axum::body::Bytes;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::web::error::AppError;

/// JSON body in, JSON body out. A body that does not fit `T` is a 400 naming the field
/// (`priorty: unknown field (expected one of queue, kind, …)`, `kind: required`).
#[derive(Debug, Clone, Copy, Default)]
pub struct AppJson<T>(pub T);

impl<T, S> FromRequest<S> for AppJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = AppError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        if !is_json(req.headers()) {
            return Err(AppError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "expected a JSON body with Content-Type: application/json",
            ));
        }
        let bytes = body_bytes(req, state).await?;
        decode(&bytes).map(AppJson)
    }
}

/// An optional JSON body, for routes that workers call bare (`curl -X POST`): an empty
/// body (or `null`) means `T::default()`, with or without a Content-Type.
#[derive(Debug, Clone, Copy, Default)]
pub struct MaybeJson<T>(pub T);

impl<T, S> FromRequest<S> for MaybeJson<T>
where
    T: DeserializeOwned + Default,
    S: Send + Sync,
{
    type Rejection = AppError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = body_bytes(req, state).await?;
        if bytes.is_empty() {
            return Ok(MaybeJson(T::default()));
        }
        // `null` is no body too.
        decode::<Option<T>>(&bytes).map(|v| MaybeJson(v.unwrap_or_default()))
    }
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<mime_type::Essence>().ok())
        .is_some_and(|m| m.is_json())
}

async fn body_bytes<S: Send + Sync>(req: Request, state: &S) -> Result<Bytes, AppError> {
    Bytes::from_request(req, state).await.map_err(|r| {
        if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
            AppError::new(r.status(), "request body too large")
        } else {
            AppError::new(r.status(), r.body_text())
        }
    })
}

/// Decode `bytes`, a JSON object, as a `T`; errors name the field the way a person
/// would read it. (serde would also read a struct from a positional array: refused.)
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, AppError> {
    if let Some(first) = bytes.iter().find(|b| !b.is_ascii_whitespace())
        && *first == b'['
    {
        return Err(AppError::bad_request("body: expected a JSON object"));
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value: T = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let inner = e.inner();
        let text = without_position(&inner.to_string());
        match inner.classify() {
            serde_json::error::Category::Data => {
                AppError::bad_request(field_message(&e.path().to_string(), &text))
            }
            _ => AppError::bad_request(format!("malformed JSON: {text}")),
        }
    })?;
    de.end().map_err(|e| {
        AppError::bad_request(format!(
            "malformed JSON: {}",
            without_position(&e.to_string())
        ))
    })?;
    Ok(value)
}

/// serde_json ends its messages with " at line L column C"; a one-line body needs none.
fn without_position(msg: &str) -> String {
    match msg.rfind(" at line ") {
        Some(i) => msg[..i].to_string(),
        None => msg.to_string(),
    }
}

/// serde's wording, rewritten to lead with the field: `unknown field `x`, expected one
/// of `a`, `b`` → `x: unknown field (expected one of a, b)`; `missing field `k`` →
/// `k: required`; anything else → `<path>: <message>` (`body` for the whole body).
fn field_message(path: &str, msg: &str) -> String {
    let parent = if path == "." { "" } else { path };
    // An unknown field's path ends with the field itself (`jobs[1].x`); a missing
    // field's path is its parent's.
    let join = |name: &str| {
        if parent.is_empty() || parent == name {
            name.to_string()
        } else if parent.ends_with(&format!(".{name}")) {
            parent.to_string()
        } else {
            format!("{parent}.{name}")
        }
    };
    let quoted = |s: &str| s.split('`').nth(1).unwrap_or("").to_string();
    if let Some(rest) = msg.strip_prefix("unknown field ") {
        let name = quoted(rest);
        let expected = rest
            .split_once(", ")
            .map(|(_, e)| e.replace('`', ""))
            .unwrap_or_default();
        return format!("{}: unknown field ({expected})", join(&name));
    }
    if let Some(rest) = msg.strip_prefix("missing field ") {
        return format!("{}: required", join(&quoted(rest)));
    }
    let field = if parent.is_empty() { "body" } else { parent };
    format!("{field}: {msg}")
}

impl<T: Serialize> IntoResponse for AppJson<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

/// `field` must lie in `min..=max` (bounds serde's types do not carry).
pub fn in_range<T: PartialOrd + std::fmt::Display>(
    field: &str,
    v: T,
    min: T,
    max: T,
) -> Result<T, AppError> {
    if v < min || v > max {
        return Err(AppError::bad_request(format!(
            "{field}: must be an integer from {min} to {max}"
        )));
    }
    Ok(v)
}

/// Query string.
#[derive(Debug, Clone, Copy, Default)]
pub struct AppQuery<T>(pub T);

impl<T, S> FromRequestParts<S> for AppQuery<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| AppQuery(q.0))
            .map_err(|r: QueryRejection| AppError::new(r.status(), r.body_text()))
    }
}

/// Path parameters.
#[derive(Debug, Clone, Copy, Default)]
pub struct AppPath<T>(pub T);

impl<T, S> FromRequestParts<S> for AppPath<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|p| AppPath(p.0))
            .map_err(|r: PathRejection| AppError::new(r.status(), r.body_text()))
    }
}

/// Just enough of a media type to tell JSON (`application/json`, `…+json`) apart.
mod mime_type {
    pub(super) struct Essence(String);

    impl std::str::FromStr for Essence {
        type Err = ();
        fn from_str(s: &str) -> Result<Self, ()> {
            let essence = s
                .split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase();
            Ok(Essence(essence))
        }
    }

    impl Essence {
        pub(super) fn is_json(&self) -> bool {
            let e = self.0.as_str();
            e == "application/json" || (e.starts_with("application/") && e.ends_with("+json"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Body {
        kind: String,
        priority: Option<i32>,
        results: Option<Vec<Entry>>,
    }

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Entry {
        id: String,
    }

    fn err(body: &str) -> String {
        decode::<Body>(body.as_bytes()).unwrap_err().message
    }

    #[test]
    fn rejections_name_the_field() {
        assert_eq!(
            err(r#"{"kind": "x", "priorty": 1}"#),
            "priorty: unknown field (expected one of kind, priority, results)"
        );
        assert_eq!(err("{}"), "kind: required");
        assert!(err(r#"{"kind": "x", "priority": "high"}"#).starts_with("priority: invalid type"));
        assert_eq!(
            err(r#"{"kind": "x", "results": [{}]}"#),
            "results[0].id: required"
        );
        assert_eq!(
            err(r#"{"kind": "x", "results": [{"id": "a"}, {"id": "b", "x": 1}]}"#),
            "results[1].x: unknown field (expected id)"
        );
        assert_eq!(err("[1, 2]"), "body: expected a JSON object");
        assert!(err("5").starts_with("body: invalid type"), "{}", err("5"));
        assert!(err("{oops").starts_with("malformed JSON"));
        assert!(err(r#"{"kind": "x"} 5"#).starts_with("malformed JSON"));
        assert!(decode::<Body>(br#"{"kind": "x"}"#).is_ok());
    }
}
