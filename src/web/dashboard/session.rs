//! Dashboard sessions: a signed, HTTP-only, `SameSite=Strict` cookie naming the key id
//! and role (never the key), CSRF tokens derived from the session, and the extractors
//! that let a page or a form post run only for a signed-in caller.
//!
//! The signing key is made once, kept in `<home>/data/session.key` (0600), so sessions
//! survive a restart; a session ends after 12 h, at logout, or as soon as its key is no
//! longer in the configuration.

use std::io::Write;
use std::path::Path;

use axum::extract::{Form, FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, KeyInit, Mac};
use serde::de::DeserializeOwned;
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::app::AppState;
use crate::auth::{Caller, Need, Role};

use super::view::ErrorPage;

/// The session cookie.
pub const SESSION_COOKIE: &str = "ep_session";
/// The pre-login cookie the login form's CSRF token is bound to.
pub const LOGIN_COOKIE: &str = "ep_login";
/// How long a session lasts.
pub const SESSION_SECS: i64 = 12 * 3600;

/// The key that signs session cookies and CSRF tokens.
pub struct SessionKey([u8; 32]);

impl std::fmt::Debug for SessionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionKey(..)")
    }
}

impl SessionKey {
    /// Read the key from `<data_dir>/session.key`, creating it (0600) on the first start.
    pub fn load_or_create(data_dir: &Path) -> std::io::Result<SessionKey> {
        let path = data_dir.join("session.key");
        std::fs::create_dir_all(data_dir)?;
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                restrict(&path)?;
                let bytes = URL_SAFE_NO_PAD.decode(text.trim()).map_err(|_| {
                    std::io::Error::other(format!("{}: not a session key", path.display()))
                })?;
                let key: [u8; 32] = bytes.try_into().map_err(|_| {
                    std::io::Error::other(format!("{}: not a 32-byte key", path.display()))
                })?;
                Ok(SessionKey(key))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                use rand::RngExt;
                let mut key = [0u8; 32];
                rand::rng().fill(&mut key[..]);
                let mut opts = std::fs::OpenOptions::new();
                opts.write(true).create_new(true);
                #[cfg(unix)]
                std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
                let mut f = opts.open(&path)?;
                writeln!(f, "{}", URL_SAFE_NO_PAD.encode(key))?;
                f.sync_all()?;
                Ok(SessionKey(key))
            }
            Err(e) => Err(e),
        }
    }

    fn mac(&self, purpose: &str, data: &str) -> Hmac<Sha256> {
        let mut m = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.0)
            .expect("HMAC takes keys of any length");
        m.update(purpose.as_bytes());
        m.update(b"|");
        m.update(data.as_bytes());
        m
    }

    fn sign(&self, purpose: &str, data: &str) -> String {
        URL_SAFE_NO_PAD.encode(self.mac(purpose, data).finalize().into_bytes().as_slice())
    }

    fn verify(&self, purpose: &str, data: &str, sig: &str) -> bool {
        match URL_SAFE_NO_PAD.decode(sig) {
            Ok(raw) => self.mac(purpose, data).verify_slice(&raw).is_ok(),
            Err(_) => false,
        }
    }

    /// The cookie value of a new session for `caller`, issued at `now` (unix seconds).
    pub fn issue(&self, caller: &Caller, now: i64) -> String {
        let body = format!(
            "{}.{}.{}.{}",
            caller.key_id,
            caller.role,
            now,
            random_token()
        );
        let sig = self.sign("session", &body);
        format!("{body}.{sig}")
    }

    /// The session in a cookie value, if its signature holds and it has not expired.
    fn open(&self, value: &str, now: i64) -> Option<(String, Role, String)> {
        let (body, sig) = value.rsplit_once('.')?;
        if !self.verify("session", body, sig) {
            return None;
        }
        let mut it = body.split('.');
        let (key_id, role, issued, nonce) = (it.next()?, it.next()?, it.next()?, it.next()?);
        let issued: i64 = issued.parse().ok()?;
        if now < issued || now - issued > SESSION_SECS {
            return None;
        }
        let role: Role = role.parse().ok()?;
        Some((key_id.to_string(), role, nonce.to_string()))
    }

    /// The login form's token for the pre-login cookie `nonce`.
    pub fn login_token(&self, nonce: &str) -> String {
        self.sign("login", nonce)
    }

    pub fn check_login_token(&self, nonce: &str, token: &str) -> bool {
        !nonce.is_empty() && self.verify("login", nonce, token)
    }
}

#[cfg(unix)]
fn restrict(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path)?.permissions().mode();
    if mode & 0o077 != 0 {
        tracing::warn!(path = %path.display(), "session key was readable by others; now 0600");
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    }
    Ok(())
}

#[cfg(not(unix))]
fn restrict(_: &Path) -> std::io::Result<()> {
    Ok(())
}

/// 16 random bytes, URL-safe base64.
pub fn random_token() -> String {
    use rand::RngExt;
    let mut b = [0u8; 16];
    rand::rng().fill(&mut b[..]);
    URL_SAFE_NO_PAD.encode(b)
}

/// The value of cookie `name` in the request's `Cookie` headers.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// A `Set-Cookie` value with our flags; `max_age` 0 deletes the cookie.
pub fn set_cookie(state: &AppState, name: &str, value: &str, max_age: i64) -> String {
    let secure = if state.config.cookie_secure {
        "; Secure"
    } else {
        ""
    };
    format!("{name}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}")
}

/// A signed-in dashboard user.
#[derive(Debug, Clone)]
pub struct Session {
    pub caller: Caller,
    /// The token every form of this session carries.
    pub csrf: String,
}

impl Session {
    pub fn can(&self, need: Need) -> bool {
        need.allows(self.caller.role)
    }

    pub fn check_csrf(&self, token: &str) -> bool {
        bool::from(self.csrf.as_bytes().ct_eq(token.as_bytes()))
    }
}

/// Where a page may send the browser back to: our own dashboard paths only.
pub fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n)
            if (n == "/dashboard"
                || n.starts_with("/dashboard/")
                || n.starts_with("/dashboard?"))
                && !n.contains("//")
                && !n.contains('\\')
                && n.chars().all(|c| c.is_ascii_graphic()) =>
        {
            n.to_string()
        }
        _ => "/dashboard".to_string(),
    }
}

fn session_from(parts: &Parts, state: &AppState) -> Option<Session> {
    let value = cookie(&parts.headers, SESSION_COOKIE)?;
    let key = &state.session_key;
    let (key_id, role, nonce) = key.open(value, state.clock.now().timestamp())?;
    // The key must still be configured, with the same role.
    if state.keys.role_of(&key_id) != Some(role) {
        return None;
    }
    Some(Session {
        csrf: key.sign("csrf", &nonce),
        caller: Caller { key_id, role },
    })
}

impl FromRequestParts<AppState> for Session {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        match session_from(parts, state) {
            Some(s) => {
                if !s.can(Need::Viewer) {
                    return Err(ErrorPage::new(
                        StatusCode::FORBIDDEN,
                        "This key's role may not use the dashboard.",
                    )
                    .into_response());
                }
                parts.extensions.insert(s.caller.clone());
                Ok(s)
            }
            None if parts.method == Method::GET || parts.method == Method::HEAD => {
                let here = parts
                    .uri
                    .path_and_query()
                    .map(|p| p.as_str())
                    .unwrap_or("/dashboard");
                let next = safe_next(Some(here));
                let to = format!("/login?next={}", urlencode(&next));
                Err(see_other(&to))
            }
            None => Err(ErrorPage::new(
                StatusCode::UNAUTHORIZED,
                "Your session has ended. Sign in again.",
            )
            .into_response()),
        }
    }
}

impl axum::extract::OptionalFromRequestParts<AppState> for Session {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Option<Self>, Self::Rejection> {
        Ok(session_from(parts, state).filter(|s| s.can(Need::Viewer)))
    }
}

/// A form post of an operator: a live session, the operator role, and the session's
/// CSRF token in the form's `csrf` field. Anything less is refused (401 / 403) before
/// the handler runs, so it changes nothing.
pub struct Action<T> {
    pub session: Session,
    pub form: T,
}

/// A form with its CSRF field.
pub trait CsrfForm: DeserializeOwned {
    fn csrf(&self) -> &str;
}

/// An admin's form post (backups): as [`Action`], with the admin role.
pub struct AdminAction<T> {
    pub session: Session,
    pub form: T,
}

/// The checks of a form post: a live session, the CSRF token, then the role `need`.
async fn checked<T: CsrfForm + Send>(
    req: Request,
    state: &AppState,
    need: Need,
) -> Result<(Session, T), Response> {
    let (mut parts, body) = req.into_parts();
    let session = Session::from_request_parts(&mut parts, state).await?;
    let req = Request::from_parts(parts, body);
    let Form(form) = Form::<T>::from_request(req, state)
        .await
        .map_err(|e| ErrorPage::new(StatusCode::BAD_REQUEST, &e.body_text()).into_response())?;
    if !session.check_csrf(form.csrf()) {
        return Err(ErrorPage::new(
            StatusCode::FORBIDDEN,
            "This form has expired (CSRF check failed). Go back, reload and try again.",
        )
        .into_response());
    }
    if !session.can(need) {
        let word = if need == Need::Admin {
            "admin"
        } else {
            "operator"
        };
        return Err(ErrorPage::new(
            StatusCode::FORBIDDEN,
            &format!(
                "Role {} may not do this (needs {word}).",
                session.caller.role
            ),
        )
        .into_response());
    }
    Ok((session, form))
}

impl<T: CsrfForm + Send> FromRequest<AppState> for Action<T> {
    type Rejection = Response;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Response> {
        let (session, form) = checked(req, state, Need::Operator).await?;
        Ok(Action { session, form })
    }
}

impl<T: CsrfForm + Send> FromRequest<AppState> for AdminAction<T> {
    type Rejection = Response;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Response> {
        let (session, form) = checked(req, state, Need::Admin).await?;
        Ok(AdminAction { session, form })
    }
}

/// A form carrying only its CSRF token (most buttons).
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Button {
    pub csrf: String,
    /// Where to go back to (a dashboard path).
    #[serde(default)]
    pub next: Option<String>,
}

impl CsrfForm for Button {
    fn csrf(&self) -> &str {
        &self.csrf
    }
}

/// `303 See Other` to `to`.
pub fn see_other(to: &str) -> Response {
    (StatusCode::SEE_OTHER, [(header::LOCATION, to.to_string())]).into_response()
}

/// Percent-encode a query value.
pub fn urlencode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> SessionKey {
        SessionKey([7; 32])
    }

    #[test]
    fn sessions_verify_expire_and_refuse_tampering() {
        let k = key();
        let c = Caller {
            key_id: "abcd1234".into(),
            role: Role::Viewer,
        };
        let v = k.issue(&c, 1000);
        assert!(!v.contains("test-"), "the cookie names the key id only");
        let (id, role, _) = k.open(&v, 1000 + 60).unwrap();
        assert_eq!((id.as_str(), role), ("abcd1234", Role::Viewer));
        assert!(k.open(&v, 1000 + SESSION_SECS + 1).is_none(), "expired");
        let forged = v.replacen("viewer", "admin", 1);
        assert!(k.open(&forged, 1001).is_none(), "role changed");
        assert!(SessionKey([8; 32]).open(&v, 1001).is_none(), "other key");
    }

    #[test]
    fn next_stays_on_the_dashboard() {
        assert_eq!(
            safe_next(Some("/dashboard/jobs?status=dead")),
            "/dashboard/jobs?status=dead"
        );
        assert_eq!(safe_next(Some("https://evil.example/")), "/dashboard");
        assert_eq!(safe_next(Some("/dashboard//evil.example")), "/dashboard");
        assert_eq!(safe_next(Some("/dashboardx")), "/dashboard");
        assert_eq!(safe_next(None), "/dashboard");
    }

    #[test]
    fn login_tokens_bind_to_their_nonce() {
        let k = key();
        let t = k.login_token("n1");
        assert!(k.check_login_token("n1", &t));
        assert!(!k.check_login_token("n2", &t));
        assert!(!k.check_login_token("", &k.login_token("")));
    }
}
