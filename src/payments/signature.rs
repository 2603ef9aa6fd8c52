//! `Stripe-Signature` verification, as Stripe specifies it: the header is
//! `t=<unix>,v1=<hex>[,v1=<hex>…]` (other schemes are ignored), the signature is
//! HMAC-SHA256 with the endpoint secret over `"{t}.{raw body}"`, any `v1` may match any
//! configured secret (rotation), the comparison is constant-time, and `t` must be within
//! the tolerance of now in both directions. Runs over the raw bytes, before any JSON.

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::config::Secret;

type HmacSha256 = Hmac<Sha256>;

/// Why a delivery was refused. `label()` names it in `/metrics`; the message (never a
/// secret, never a signature) goes to the caller, the webhook log and the audit trail.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("missing Stripe-Signature header")]
    MissingHeader,
    #[error("malformed Stripe-Signature header: {0}")]
    MalformedHeader(&'static str),
    #[error("timestamp outside tolerance: {age_secs} s from now (tolerance {tolerance_secs} s)")]
    OutsideTolerance { age_secs: i64, tolerance_secs: u64 },
    #[error("no matching signature (none of the v1 signatures matches a configured secret)")]
    NoMatch,
    #[error("STRIPE_WEBHOOK_SECRET is not set: cannot verify webhooks")]
    NotConfigured,
}

impl SignatureError {
    pub fn label(&self) -> &'static str {
        match self {
            SignatureError::MissingHeader => "missing_header",
            SignatureError::MalformedHeader(_) => "malformed_header",
            SignatureError::OutsideTolerance { .. } => "timestamp_outside_tolerance",
            SignatureError::NoMatch => "no_matching_signature",
            SignatureError::NotConfigured => "not_configured",
        }
    }
}

/// The parts of a `Stripe-Signature` header we use.
#[derive(Debug, PartialEq, Eq)]
pub struct Header {
    pub timestamp: i64,
    /// Decoded `v1` signatures; entries that are not 32 bytes of hex are dropped.
    pub v1: Vec<[u8; 32]>,
}

/// Parse the header; `v0` and unknown schemes are ignored, as Stripe's libraries do.
pub fn parse_header(raw: &[u8]) -> Result<Header, SignatureError> {
    let text =
        std::str::from_utf8(raw).map_err(|_| SignatureError::MalformedHeader("not UTF-8"))?;
    let mut timestamp = None;
    let mut v1 = Vec::new();
    let mut any_v1 = false;
    for item in text.split(',') {
        let Some((k, v)) = item.trim().split_once('=') else {
            return Err(SignatureError::MalformedHeader("expected key=value pairs"));
        };
        match k {
            "t" => {
                let t: i64 = v
                    .parse()
                    .map_err(|_| SignatureError::MalformedHeader("t is not a unix time"))?;
                timestamp = Some(t);
            }
            "v1" => {
                any_v1 = true;
                if let Some(sig) = decode_hex32(v) {
                    v1.push(sig);
                }
            }
            _ => {}
        }
    }
    let timestamp = timestamp.ok_or(SignatureError::MalformedHeader("no t= timestamp"))?;
    if !any_v1 {
        return Err(SignatureError::MalformedHeader("no v1= signature"));
    }
    Ok(Header { timestamp, v1 })
}

fn decode_hex32(s: &str) -> Option<[u8; 32]> {
    let b = s.as_bytes();
    if b.len() != 64 {
        return None;
    }
    let nib = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    };
    let mut out = [0u8; 32];
    for (i, pair) in b.chunks(2).enumerate() {
        out[i] = nib(pair[0])? << 4 | nib(pair[1])?;
    }
    Some(out)
}

/// HMAC-SHA256 of `"{t}.{body}"` with `secret`.
pub fn compute(secret: &str, timestamp: i64, body: &[u8]) -> [u8; 32] {
    // Any key length is valid for HMAC.
    let mut mac = HmacSha256::new_from_slice(secret.as_bytes()).expect("HMAC takes any key");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    let mut out = [0u8; 32];
    out.copy_from_slice(mac.finalize().into_bytes().as_slice());
    out
}

/// A header Stripe would send for `body` (the benchmark signs with it; tests use
/// Stripe's own library instead).
pub fn sign_header(secret: &str, timestamp: i64, body: &[u8]) -> String {
    let sig = hex::encode(compute(secret, timestamp, body));
    format!("t={timestamp},v1={sig}")
}

/// Verify a delivery. `now` is unix seconds.
pub fn verify(
    header: Option<&[u8]>,
    body: &[u8],
    secrets: &[Secret],
    tolerance_secs: u64,
    now: i64,
) -> Result<(), SignatureError> {
    if secrets.is_empty() {
        return Err(SignatureError::NotConfigured);
    }
    let header = parse_header(header.ok_or(SignatureError::MissingHeader)?)?;
    let age = now.saturating_sub(header.timestamp);
    if age.unsigned_abs() > tolerance_secs {
        return Err(SignatureError::OutsideTolerance {
            age_secs: age,
            tolerance_secs,
        });
    }
    // Every pair is compared, so the time taken does not say which secret matched.
    let mut matched = subtle::Choice::from(0);
    for secret in secrets {
        let expected = compute(secret.expose(), header.timestamp, body);
        for sig in &header.v1 {
            matched |= expected.ct_eq(sig);
        }
    }
    if bool::from(matched) {
        Ok(())
    } else {
        Err(SignatureError::NoMatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_764_000_000;

    fn secrets(s: &[&str]) -> Vec<Secret> {
        s.iter().map(|s| Secret::new(*s)).collect()
    }

    #[test]
    fn own_signature_verifies_and_any_v1_may_match() {
        let body = br#"{"id":"evt_1"}"#;
        let h = sign_header("whsec_a", NOW, body);
        assert_eq!(
            verify(Some(h.as_bytes()), body, &secrets(&["whsec_a"]), 300, NOW),
            Ok(())
        );
        let two = format!(
            "t={NOW},v1={},v0=abc,{}",
            "0".repeat(64),
            &h[h.find("v1=").unwrap()..]
        );
        assert_eq!(
            verify(Some(two.as_bytes()), body, &secrets(&["whsec_a"]), 300, NOW),
            Ok(())
        );
        // Rotation: the old secret is second in the list.
        assert_eq!(
            verify(
                Some(h.as_bytes()),
                body,
                &secrets(&["whsec_new", "whsec_a"]),
                300,
                NOW
            ),
            Ok(())
        );
    }

    #[test]
    fn each_cause_is_named() {
        let body = b"{}";
        let s = secrets(&["whsec_a"]);
        assert_eq!(
            verify(None, body, &s, 300, NOW),
            Err(SignatureError::MissingHeader)
        );
        assert!(matches!(
            verify(Some(b"garbage"), body, &s, 300, NOW),
            Err(SignatureError::MalformedHeader(_))
        ));
        assert!(matches!(
            verify(Some(b"v1=00"), body, &s, 300, NOW),
            Err(SignatureError::MalformedHeader(_))
        ));
        assert!(matches!(
            verify(Some(format!("t={NOW}").as_bytes()), body, &s, 300, NOW),
            Err(SignatureError::MalformedHeader(_))
        ));
        for t in [NOW - 301, NOW + 301] {
            let h = sign_header("whsec_a", t, body);
            assert_eq!(
                verify(Some(h.as_bytes()), body, &s, 300, NOW)
                    .unwrap_err()
                    .label(),
                "timestamp_outside_tolerance"
            );
        }
        let h = sign_header("whsec_b", NOW, body);
        assert_eq!(
            verify(Some(h.as_bytes()), body, &s, 300, NOW),
            Err(SignatureError::NoMatch)
        );
        let h = sign_header("whsec_a", NOW, body);
        assert_eq!(
            verify(Some(h.as_bytes()), b"{} ", &s, 300, NOW),
            Err(SignatureError::NoMatch)
        );
        assert_eq!(
            verify(Some(h.as_bytes()), body, &[], 300, NOW),
            Err(SignatureError::NotConfigured)
        );
    }
}
