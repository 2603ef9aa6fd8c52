//! `GET /api/alerts` (viewer): alerts newest first, `?state=firing|resolved`, `?limit=N`.

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::app::AppState;
use crate::slo::alerts::AlertState;
use crate::web::auth::Viewer;
use crate::web::error::{AppError, Result};
use crate::web::extract::{AppJson, AppQuery};

pub fn router() -> Router<AppState> {
    Router::new().route("/api/alerts", get(list))
}

#[derive(Debug, Deserialize)]
pub struct ListQuery {
    state: Option<String>,
    limit: Option<usize>,
}

const MAX_LIMIT: usize = 1000;

pub async fn list(
    _viewer: Viewer,
    State(state): State<AppState>,
    AppQuery(q): AppQuery<ListQuery>,
) -> Result<AppJson<Value>> {
    let filter = q
        .state
        .as_deref()
        .map(str::parse::<AlertState>)
        .transpose()
        .map_err(AppError::bad_request)?;
    let limit = q.limit.unwrap_or(100);
    if limit == 0 || limit > MAX_LIMIT {
        return Err(AppError::bad_request(format!(
            "limit must be between 1 and {MAX_LIMIT}"
        )));
    }
    let alerts = state.alerts.list(filter, limit)?;
    Ok(AppJson(json!({ "ok": true, "alerts": alerts })))
}
