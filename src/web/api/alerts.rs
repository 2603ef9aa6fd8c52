//! `GET /api/alerts` (viewer): alerts newest first, `?state=firing|resolved`, `?limit=N`.

use axum::extract::State;
use serde::Deserialize;
use serde_json::{Value, json};

use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::app::AppState;
use crate::slo::alerts::AlertState;
use crate::web::api::schemas::OkBody;
use crate::web::auth::Viewer;
use crate::web::error::{AppError, Result};
use crate::web::extract::{AppJson, AppQuery};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// `firing` or `resolved`.
    #[param(pattern = "^(firing|resolved)$")]
    state: Option<String>,
    /// 1 to 1000, default 100.
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<usize>,
}

const MAX_LIMIT: usize = 1000;

#[utoipa::path(get, path = "/api/alerts", tag = "alerts", params(ListQuery),
    responses((status = 200, body = OkBody)),
    extensions(("x-required-role" = json!("viewer"))))]
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
