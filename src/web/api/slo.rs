//! `GET /api/slo/status` (public): the SLO figures, error budget, burn rates and alerts.

use axum::extract::State;
use serde_json::{Map, Value, json};

use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::app::AppState;
use crate::slo::{Figures, round4};
use crate::web::api::schemas::OkBody;
use crate::web::cache::{Figure, Rendered};
use crate::web::error::Result;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(status))
}

/// The figures as the runbook's daily check reads them.
#[utoipa::path(get, path = "/api/slo/status", tag = "slo",
    responses((status = 200, body = OkBody)),
    extensions(("x-required-role" = json!("public"))))]
pub async fn status(State(state): State<AppState>) -> Result<Rendered> {
    state
        .status_cache
        .get(Figure::Slo, || {
            let f = state.slo.figures()?;
            Ok(Rendered::json(&to_json(&state, &f)))
        })
        .await
}

fn to_json(state: &AppState, f: &Figures) -> Value {
    let t = state.slo.targets();
    let mut burn = Map::new();
    for (label, r) in &f.burn_rates {
        burn.insert((*label).to_string(), json!(round4(*r)));
    }
    let alerts: Vec<Value> = state
        .alerts
        .firing()
        .into_iter()
        .map(|a| {
            json!({
                "severity": a.severity,
                "name": a.name,
                "message": a.message,
                "since": a.fired_at,
            })
        })
        .collect();
    let slowest: Vec<Value> = f
        .slowest_routes
        .iter()
        .map(|(route, n, p95)| json!({"route": route, "requests": n, "latency_p95_ms": round4(*p95)}))
        .collect();
    json!({
        "ok": true,
        "window_days": f.window_days,
        "requests": f.requests,
        "errors": f.errors,
        "targets": {
            "availability_pct": t.availability_pct,
            "uptime_pct": t.uptime_pct,
            "latency_p95_ms": t.latency_p95_ms,
            "error_rate_pct": t.error_rate_pct,
            "webhook_success_pct": t.webhook_success_pct,
            "scheduler_tick_secs": state.slo.tick_secs(),
        },
        "availability_pct": round4(f.availability_pct),
        "uptime_pct": round4(f.uptime_pct),
        "latency_p95_ms": round4(f.latency_p95_ms),
        "error_rate_pct": round4(f.error_rate_pct),
        "webhook_success_pct": round4(f.webhook_success_pct),
        "scheduler_tick_age_secs": round4(f.scheduler_tick_age_secs),
        "error_budget": {
            "remaining_pct": round4(f.budget.remaining_pct),
            "consumed_pct": round4(f.budget.consumed_pct),
            "allowed_bad_minutes": round4(f.budget.allowed_bad_minutes),
            "bad_minutes": f.budget.bad_minutes,
            "allowed_errors": round4(f.budget.allowed_errors),
        },
        "burn_rates": burn,
        "alerts": alerts,
        "latency_p95_1h_ms": round4(f.latency_p95_1h_ms),
        "up_minutes": f.up_minutes,
        "observed_minutes": f.observed_minutes,
        "rate_limited": f.rate_limited,
        "slowest_routes": slowest,
    })
}
