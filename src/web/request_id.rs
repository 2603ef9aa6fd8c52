//! Client request ids: a client's `X-Request-Id` is echoed, logged and stored in audit
//! events, so it is kept only when short and of plain characters; any other is dropped
//! before `SetRequestIdLayer`, which then generates one.

use axum::extract::Request;

/// The longest client id we keep.
pub const MAX_LEN: usize = 64;

const X_REQUEST_ID: &str = "x-request-id";

/// `[A-Za-z0-9._:-]{1,64}`.
pub fn is_safe(id: &[u8]) -> bool {
    !id.is_empty()
        && id.len() <= MAX_LEN
        && id
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
}

/// Removes every client `X-Request-Id` unless there is exactly one and it is safe.
pub async fn keep_safe(mut req: Request) -> Request {
    let headers = req.headers_mut();
    let mut values = headers.get_all(X_REQUEST_ID).iter();
    let keep = match (values.next(), values.next()) {
        (None, _) => return req,
        (Some(v), None) => is_safe(v.as_bytes()),
        (Some(_), Some(_)) => false,
    };
    if !keep {
        headers.remove(X_REQUEST_ID);
    }
    req
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_short_plain_ids_are_safe() {
        assert!(is_safe(b"abc-123"));
        assert!(is_safe(b"A.b_c:d-0"));
        assert!(is_safe("x".repeat(64).as_bytes()));
        assert!(!is_safe("x".repeat(65).as_bytes()));
        assert!(!is_safe(b""));
        assert!(!is_safe(b"a b"));
        assert!(!is_safe(b"a=b"));
        assert!(!is_safe(b"a\"b"));
        assert!(!is_safe("é".as_bytes()));
    }
}
