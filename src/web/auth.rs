//! Role checks as extractors, so a handler only ever runs for an allowed caller:
//! no key → 401, an unknown key → 401, a known key without the role → 403.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;

use crate::app::AppState;
use crate::auth::{Caller, KEY_HEADER, Need};
use crate::web::error::AppError;

/// The caller if a valid key came with the request; `None` when no key was sent.
/// An invalid key is still a 401: a wrong key must never be treated as anonymous.
pub fn caller(parts: &Parts, state: &AppState) -> Result<Option<Caller>, AppError> {
    let Some(raw) = parts.headers.get(KEY_HEADER) else {
        return Ok(None);
    };
    let key = raw
        .to_str()
        .map_err(|_| AppError::unauthorized("invalid key"))?;
    state
        .keys
        .identify(key.trim())
        .map(Some)
        .ok_or_else(|| AppError::unauthorized("invalid key"))
}

/// Check that the request's caller satisfies `need`.
pub fn require(parts: &Parts, state: &AppState, need: Need) -> Result<Caller, AppError> {
    let caller =
        caller(parts, state)?.ok_or_else(|| AppError::unauthorized("missing X-Dash-Key header"))?;
    if !need.allows(caller.role) {
        return Err(AppError::forbidden(format!(
            "role {} may not do this (needs {})",
            caller.role,
            need.as_str()
        )));
    }
    Ok(caller)
}

macro_rules! role_extractor {
    ($(#[$doc:meta])* $name:ident, $need:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone)]
        pub struct $name(pub Caller);

        impl FromRequestParts<AppState> for $name {
            type Rejection = AppError;
            async fn from_request_parts(
                parts: &mut Parts,
                state: &AppState,
            ) -> Result<Self, Self::Rejection> {
                let c = require(parts, state, $need)?;
                parts.extensions.insert(c.clone());
                Ok($name(c))
            }
        }
    };
}

role_extractor!(
    /// Reads: viewer, operator or admin.
    Viewer,
    Need::Viewer
);
role_extractor!(
    /// Operational actions: operator or admin.
    Operator,
    Need::Operator
);
role_extractor!(
    /// Backups, log rotation: admin only.
    Admin,
    Need::Admin
);
role_extractor!(
    /// Worker routes of the jobs API: worker, operator or admin.
    Worker,
    Need::Worker
);

/// An optional caller: public routes that show more to a key holder. A wrong key is
/// still refused with 401.
#[derive(Debug, Clone)]
pub struct MaybeCaller(pub Option<Caller>);

impl FromRequestParts<AppState> for MaybeCaller {
    type Rejection = AppError;
    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let c = caller(parts, state)?;
        if let Some(c) = &c {
            parts.extensions.insert(c.clone());
        }
        Ok(MaybeCaller(c))
    }
}
