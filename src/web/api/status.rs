//! `GET /api/status/summary`: is EchoPilot healthy, and if not, which part is not.

use axum::extract::State;
use serde_json::{Map, json};

use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::app::AppState;
use crate::build_info;
use crate::health::{self, Component};
use crate::slo::Figures;
use crate::web::api::schemas::StatusSummary;
use crate::web::cache::{Figure, Rendered};
use crate::web::error::Result;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(summary))
}

/// The summary, pretty-printed: one field a line, keys in a fixed order, fast-moving
/// figures coarse, so `diff pre_maint.json <(curl …)` shows only what changed.
#[utoipa::path(get, path = "/api/status/summary", tag = "status",
    responses((status = 200, body = StatusSummary)),
    extensions(("x-required-role" = json!("public"))))]
pub async fn summary(State(state): State<AppState>) -> Result<Rendered> {
    state
        .status_cache
        .get(Figure::Summary, || render(&state))
        .await
}

fn render(state: &AppState) -> Result<Rendered> {
    let components = components(state);
    let overall = health::overall(&components);
    let mut comps = Map::new();
    for (name, c) in &components {
        comps.insert((*name).to_string(), c.to_json());
    }
    let mut v = json!({
        "ok": true,
        "status": overall,
        "version": build_info::VERSION,
        "commit": build_info::commit_label(),
        "built_at": build_info::built_at(),
        "started_at": crate::clock::rfc3339(state.started_at),
        "uptime_secs": state.uptime().as_secs(),
        "flags_off": state.flags.builtins_off(),
        "components": comps,
    });
    // Only during a window, so a diff taken before and after maintenance stays quiet.
    if let Some(a) = state.maintenance.active()? {
        v["maintenance"] = super::maintenance::active_json(&a);
    }
    let mut body = serde_json::to_string_pretty(&v).unwrap_or_default();
    body.push('\n');
    Ok(Rendered {
        content_type: "application/json",
        body: body.into(),
    })
}

/// Every component, in display order, the store probed (a write). Domains add theirs
/// in [`components_with`]; the rules are in [`crate::health`].
pub fn components(state: &AppState) -> Vec<(&'static str, Component)> {
    let store = state.status_cache.probe_store(&state.store);
    components_with(state, store, None)
}

/// The components for a dashboard page, which must not write: the store as the status
/// routes last probed it, and the SLO from the figures the page already read.
pub fn page_components(state: &AppState, figures: &Figures) -> Vec<(&'static str, Component)> {
    let store = state.status_cache.last_store(&state.store);
    components_with(state, store, Some(figures))
}

fn components_with(
    state: &AppState,
    store: Component,
    figures: Option<&Figures>,
) -> Vec<(&'static str, Component)> {
    let slo = match figures {
        Some(f) => health::slo_of(Ok(f.clone()), &state.alerts),
        None => health::slo(&state.slo, &state.alerts),
    };
    vec![
        ("store", store),
        ("disk", health::disk(&state.config.home, &state.config.disk)),
        ("supervisor", health::supervisor(&state.supervisor)),
        (
            "audit",
            health::audit(&state.audit, !state.access.request_log.is_failing()),
        ),
        ("slo", slo),
        ("alerts", health::alerts(&state.alerts)),
        (
            "scheduler",
            health::scheduler(&state.scheduler, state.clock.now(), state.started_at),
        ),
        ("jobs", health::jobs(&state.jobs)),
        (
            "backups",
            crate::app::backup::component(
                &state.backups,
                state.clock.now(),
                &state.instance.first_started_at,
            ),
        ),
    ]
}
