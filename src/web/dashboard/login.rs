//! `/login` and `/logout`. A login takes a key and answers with a session cookie that
//! names the key's id and role; a failed one is a 401 that the access layer audits
//! (`auth.failed`) and counts against the address like a wrong key (`FailedLogin`).

use askama::Template;
use axum::Router;
use axum::extract::{Form, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;

use crate::app::AppState;
use crate::audit::NewEvent;
use crate::auth::{Caller, Need};
use crate::web::access::{FailedLogin, Origin};
use crate::web::error::ErrorMessage;

use super::assets;
use super::session::{
    Button, LOGIN_COOKIE, SESSION_COOKIE, SESSION_SECS, Session, cookie, random_token, safe_next,
    see_other, set_cookie,
};
use super::view::{ErrorPage, Page};

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/login", get(form).post(login))
        .route("/logout", post(logout))
}

#[derive(Template)]
#[template(path = "v2/login.html")]
struct LoginPage {
    css: String,
    csrf: String,
    next: String,
    error: Option<&'static str>,
}

#[derive(Debug, Deserialize)]
pub(super) struct NextQuery {
    next: Option<String>,
}

/// A fresh login form, bound to a fresh pre-login cookie.
fn login_page(
    state: &AppState,
    status: StatusCode,
    next: &str,
    error: Option<&'static str>,
) -> Response {
    let nonce = random_token();
    let page = LoginPage {
        css: assets::url("app.css"),
        csrf: state.session_key.login_token(&nonce),
        next: next.to_string(),
        error,
    };
    let mut resp = (status, Page(page)).into_response();
    if let Ok(v) = set_cookie(state, LOGIN_COOKIE, &nonce, 3600).parse() {
        resp.headers_mut().append(header::SET_COOKIE, v);
    }
    resp
}

/// `GET /login`: the form (or straight on when already signed in).
async fn form(
    State(state): State<AppState>,
    session: Option<Session>,
    Query(q): Query<NextQuery>,
) -> Response {
    let next = safe_next(q.next.as_deref());
    if session.is_some() {
        return see_other(&next);
    }
    login_page(&state, StatusCode::OK, &next, None)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct LoginForm {
    key: String,
    csrf: String,
    #[serde(default)]
    next: Option<String>,
}

/// `POST /login`.
async fn login(
    State(state): State<AppState>,
    origin: Origin,
    headers: HeaderMap,
    Form(f): Form<LoginForm>,
) -> Response {
    let next = safe_next(f.next.as_deref());
    let nonce = cookie(&headers, LOGIN_COOKIE).unwrap_or("");
    if !state.session_key.check_login_token(nonce, &f.csrf) {
        return ErrorPage::new(
            StatusCode::FORBIDDEN,
            "The sign-in form expired (CSRF check failed). Reload it and try again.",
        )
        .into_response();
    }
    let caller = match state.keys.identify(f.key.trim()) {
        Some(c) if Need::Viewer.allows(c.role) => c,
        Some(c) => {
            let mut resp = login_page(
                &state,
                StatusCode::FORBIDDEN,
                &next,
                Some("This key's role may not use the dashboard."),
            );
            resp.extensions_mut().insert(ErrorMessage(format!(
                "role {} may not use the dashboard",
                c.role
            )));
            return resp;
        }
        None => {
            let mut resp = login_page(
                &state,
                StatusCode::UNAUTHORIZED,
                &next,
                Some("That key is not valid."),
            );
            resp.extensions_mut()
                .insert(ErrorMessage("dashboard login: invalid key".into()));
            resp.extensions_mut().insert(FailedLogin);
            return resp;
        }
    };
    record(&state, origin, &caller, "dashboard.login").await;
    let value = state
        .session_key
        .issue(&caller, state.clock.now().timestamp());
    let mut resp = see_other(&next);
    for c in [
        set_cookie(&state, SESSION_COOKIE, &value, SESSION_SECS),
        set_cookie(&state, LOGIN_COOKIE, "", 0),
    ] {
        if let Ok(v) = c.parse() {
            resp.headers_mut().append(header::SET_COOKIE, v);
        }
    }
    resp
}

/// `POST /logout` (any signed-in role, with its CSRF token).
async fn logout(
    State(state): State<AppState>,
    origin: Origin,
    session: Session,
    Form(f): Form<Button>,
) -> Response {
    if !session.check_csrf(&f.csrf) {
        return ErrorPage::new(StatusCode::FORBIDDEN, "CSRF check failed.").into_response();
    }
    record(&state, origin, &session.caller, "dashboard.logout").await;
    let mut resp = see_other("/login");
    if let Ok(v) = set_cookie(&state, SESSION_COOKIE, "", 0).parse() {
        resp.headers_mut().append(header::SET_COOKIE, v);
    }
    resp
}

async fn record(state: &AppState, origin: Origin, caller: &Caller, action: &str) {
    let ev = NewEvent {
        request_id: origin.request_id,
        actor: Some(caller.clone()),
        action: action.into(),
        target: "dashboard session".into(),
        ip: Some(origin.ip),
        ok: true,
        status: 303,
        ..NewEvent::default()
    };
    if let Err(e) = state.audit.record(ev).await {
        tracing::error!(error = %e, "cannot record {action}");
    }
}
