//! `GET /api/db/stats` (viewer): the store's size, schema version and records per tree —
//! what `echopilot db stats` prints, for a store the running server holds.

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use serde_json::{Value, json};

use crate::app::AppState;
use crate::error::Result;
use crate::store::meta;
use crate::web::auth::Viewer;
use crate::web::extract::AppJson;

pub fn router() -> Router<AppState> {
    Router::new().route("/api/db/stats", get(stats))
}

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
        let times: serde_json::Map<String, Value> = crate::maintenance::tree_times(&store)?
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
    .map_err(crate::error::AppError::internal)??;
    Ok(AppJson(out))
}
