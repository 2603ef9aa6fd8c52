//! `GET /api/db/stats` (viewer): the store's size, schema version and records per tree —
//! what `echopilot db stats` prints, for a store the running server holds.

use axum::extract::State;
use serde_json::{Value, json};

use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::app::AppState;
use crate::store::meta;
use crate::web::api::schemas::OkBody;
use crate::web::auth::Viewer;
use crate::web::error::Result;
use crate::web::extract::AppJson;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(stats))
}

#[utoipa::path(get, path = "/api/db/stats", tag = "db",
    responses((status = 200, body = OkBody)),
    extensions(("x-required-role" = json!("viewer"))))]
pub async fn stats(State(state): State<AppState>, _v: Viewer) -> Result<AppJson<Value>> {
    let store = state.store.clone();
    let archive = state.config.logs_dir().join("archive");
    // Counting walks every tree: keep it off the async workers.
    let out = tokio::task::spawn_blocking(move || -> Result<Value> {
        store.probe()?;
        let trees: serde_json::Map<String, Value> = store
            .tree_counts()
            .into_iter()
            .map(|(name, n)| (name, json!(n)))
            .collect();
        let times: serde_json::Map<String, Value> =
            crate::store::sled_impl::db_maintenance::tree_times(&store)?
                .into_iter()
                .map(|(tree, (first, last))| {
                    let t = json!({
                        "oldest": first.map(crate::clock::rfc3339),
                        "newest": last.map(crate::clock::rfc3339),
                    });
                    (tree.to_string(), t)
                })
                .collect();
        Ok(json!({
            "ok": true,
            "path": store.path().display().to_string(),
            "size_on_disk_bytes": store.size_on_disk(),
            "schema_version": meta::schema_version(&store)?,
            "trees": trees,
            "times": times,
            "archive_bytes": crate::backup::archive::size_of(&archive),
        }))
    })
    .await
    .map_err(crate::web::error::AppError::internal)??;
    Ok(AppJson(out))
}
