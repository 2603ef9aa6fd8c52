//! `static/`, embedded in the binary (rust-embed): served with its content type, an
//! `ETag`, and a year of caching when the URL carries the file's hash (pages link
//! `/static/app.css?v=<hash>`, so a new build changes the URL). Only embedded names
//! resolve, and a path with `..` or a backslash is refused before the lookup.

use axum::Router;
use axum::extract::{Path, RawQuery};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::app::AppState;

#[derive(rust_embed::Embed)]
#[folder = "static/"]
struct Static;

pub(super) fn router() -> Router<AppState> {
    Router::new().route("/static/{*path}", get(serve))
}

fn hash_of(name: &str) -> Option<String> {
    let f = Static::get(name)?;
    let h = f.metadata.sha256_hash();
    Some(hex::encode(&h[..8]))
}

/// The URL of an asset, with its hash for caching.
pub(super) fn url(name: &str) -> String {
    match hash_of(name) {
        Some(h) => format!("/static/{name}?v={h}"),
        None => format!("/static/{name}"),
    }
}

/// A path we may look up: relative, no `..`, no backslash, no empty segment.
fn acceptable(path: &str) -> bool {
    !path.is_empty()
        && !path.contains('\\')
        && !path.contains('\0')
        && path
            .split('/')
            .all(|seg| !seg.is_empty() && seg != "." && seg != "..")
}

async fn serve(Path(path): Path<String>, RawQuery(q): RawQuery, headers: HeaderMap) -> Response {
    if !acceptable(&path) {
        return (StatusCode::BAD_REQUEST, "bad asset path\n").into_response();
    }
    let Some(file) = Static::get(&path) else {
        return (StatusCode::NOT_FOUND, "not found\n").into_response();
    };
    let hash = hash_of(&path).unwrap_or_default();
    let etag = format!("\"{hash}\"");
    let cache = if q.as_deref() == Some(&format!("v={hash}")) {
        "public, max-age=31536000, immutable"
    } else {
        "no-cache"
    };
    let mut out = if headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag))
    {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        let mut r = file.data.into_owned().into_response();
        if let Ok(v) = HeaderValue::from_str(file.metadata.mimetype()) {
            r.headers_mut().insert(header::CONTENT_TYPE, v);
        }
        r
    };
    let h = out.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&etag) {
        h.insert(header::ETAG, v);
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traversal_is_refused_before_lookup() {
        assert!(acceptable("app.css"));
        assert!(!acceptable("../Cargo.toml"));
        assert!(!acceptable("a/../../x"));
        assert!(!acceptable("..\\x"));
        assert!(!acceptable("/etc/passwd"));
        assert!(!acceptable(""));
    }

    #[test]
    fn asset_urls_carry_their_hash() {
        let u = url("app.css");
        assert!(u.starts_with("/static/app.css?v="), "{u}");
        assert_eq!(u.len(), "/static/app.css?v=".len() + 16);
    }
}
