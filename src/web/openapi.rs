//! The OpenAPI 3.1 document of the API, `GET /api/openapi.json`. utoipa-axum collects it
//! from each handler's `#[utoipa::path]` while the router is built, so a route cannot
//! exist without its entry. [`finish`] then adds what every operation shares: the
//! `X-Dash-Key` security scheme, the 401/403 of its `x-required-role`, the 429 of its
//! `x-rate-limit` class, and the 400/404/415 of bad input, all with the error shape.

use std::sync::Arc;

use axum::Extension;
use axum::http::header;
use axum::response::IntoResponse;
use serde_json::{Map, Value, json};
use utoipa::OpenApi;

use crate::web::access::RATE_LIMIT_EXT;
use crate::web::error::ErrorBody;

/// The extension naming who may call an operation: `public`, `viewer`, `operator`,
/// `admin`, `worker` or `signature` (a verified signature instead of a key).
pub const ROLE_EXT: &str = "x-required-role";
/// Set (to `true`) on public operations that show more to a key holder: a wrong key is
/// refused there (401), never taken as anonymous.
pub const KEY_OPTIONAL_EXT: &str = "x-key-optional";
/// The name of the `X-Dash-Key` security scheme.
pub const KEY_SCHEME: &str = "dash_key";

/// The roles a key holds; the other values of `x-required-role` need no key.
const KEY_ROLES: [&str; 4] = ["viewer", "operator", "admin", "worker"];

#[derive(OpenApi)]
#[openapi(
    info(
        title = "EchoPilot API",
        description = "Jobs, schedules, SLOs, audit and the rest of EchoPilot's operations API. \
            Authenticate with the `X-Dash-Key` header; each operation's `x-required-role` \
            names who may call it (viewer ⊂ operator ⊂ admin; worker stands apart). \
            Errors are `{\"ok\": false, \"error\": \"...\"}`; successes carry `\"ok\": true`."
    ),
    components(schemas(ErrorBody))
)]
pub struct ApiDoc;

/// The finished document, serialized once at start-up.
#[derive(Clone)]
pub struct OpenApiJson(pub Arc<String>);

/// `GET /api/openapi.json` (public): this document.
#[utoipa::path(get, path = "/api/openapi.json", tag = "meta",
    responses((status = 200, description = "the OpenAPI 3.1 document", body = Object)),
    extensions(("x-required-role" = json!("public"))))]
pub async fn show(Extension(doc): Extension<OpenApiJson>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/json")],
        doc.0.as_str().to_owned(),
    )
}

fn error_response(description: &str) -> Value {
    json!({
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}},
    })
}

fn add_response(op: &mut Map<String, Value>, status: &str, description: &str) {
    if let Some(Value::Object(responses)) = op.get_mut("responses") {
        responses
            .entry(status)
            .or_insert_with(|| error_response(description));
    }
}

/// Add what every operation shares (see the module doc) and return the JSON document.
pub fn finish(doc: utoipa::openapi::OpenApi) -> Value {
    let mut v = serde_json::to_value(&doc).unwrap_or_else(|_| json!({}));
    v["components"]["securitySchemes"][KEY_SCHEME] = json!({
        "type": "apiKey",
        "in": "header",
        "name": "X-Dash-Key",
        "description": "An API key; its role decides what it may do.",
    });
    let Some(Value::Object(paths)) = v.get_mut("paths") else {
        return v;
    };
    for (path, item) in paths.iter_mut() {
        let Value::Object(item) = item else { continue };
        for (method, op) in item.iter_mut() {
            let Value::Object(op) = op else { continue };
            if !matches!(method.as_str(), "get" | "put" | "post" | "delete" | "patch") {
                continue;
            }
            shared_answers(path, op);
        }
    }
    v
}

fn shared_answers(path: &str, op: &mut Map<String, Value>) {
    let role = op.get(ROLE_EXT).and_then(Value::as_str).unwrap_or("");
    let needs_key = KEY_ROLES.contains(&role);
    let key_optional = op.get(KEY_OPTIONAL_EXT) == Some(&Value::Bool(true));
    let role_note = format!("Required role: {role}.");
    let description = match op.get("description").and_then(Value::as_str) {
        Some(d) if !d.is_empty() => format!("{d}\n\n{role_note}"),
        _ => role_note,
    };
    op.insert("description".into(), description.into());
    if needs_key {
        op.insert("security".into(), json!([{KEY_SCHEME: []}]));
        add_response(op, "401", "no X-Dash-Key, or a key that is not live");
        add_response(op, "403", "the key's role may not do this");
    } else if key_optional {
        op.insert("security".into(), json!([{}, {KEY_SCHEME: []}]));
        add_response(op, "401", "a key that is not live (no key is fine)");
    }
    if op.contains_key(RATE_LIMIT_EXT) {
        let mut limited = error_response("Rate limit exceeded; retry after `Retry-After` seconds");
        limited["headers"] = json!({"Retry-After": {"schema": {"type": "integer"}}});
        if let Some(Value::Object(responses)) = op.get_mut("responses") {
            responses.entry("429").or_insert(limited);
        }
    }
    let has_params = op
        .get("parameters")
        .and_then(Value::as_array)
        .is_some_and(|p| !p.is_empty());
    if let Some(body) = op.get("requestBody") {
        let required = body.get("required") == Some(&Value::Bool(true));
        add_response(op, "400", "bad input; the message names the field");
        if required {
            add_response(op, "415", "the body is not Content-Type: application/json");
        }
    } else if has_params {
        add_response(op, "400", "bad input; the message names the field");
    }
    if path.contains('{') {
        add_response(op, "404", "no such thing");
    }
}
