//! `/api/openapi.json` against the real router: every route is in the document (and
//! nothing else), and every operation says who may call it and how it fails.

mod helpers;

use std::collections::BTreeSet;

use helpers::TestApp;
use serde_json::Value;

/// Pages, their assets and the dashboard's sign-in: HTML forms, not the JSON API, so
/// not in the document.
const HTML_PREFIXES: &[&str] = &["/dashboard", "/static", "/login", "/logout"];

/// `(METHOD, path)` of every API route the real router serves, read from its `Debug` form
/// (axum has no route listing): `RouteId(n): MethodRouter(MethodRouter { get: Route, … })`
/// and `RouteId(n): "/api/…"` in its path router.
fn router_routes(router: &axum::Router) -> BTreeSet<(String, String)> {
    let text = format!("{router:?}");
    let paths_part = text.split("fallback_router").next().unwrap();
    let mut methods = std::collections::HashMap::new();
    let mut paths = std::collections::HashMap::new();
    for chunk in paths_part.split("RouteId(").skip(1) {
        let (id, rest) = chunk.split_once(')').unwrap();
        let rest = rest.trim_start_matches(": ");
        if let Some(path) = rest.strip_prefix('"') {
            paths.insert(id.to_string(), path.split('"').next().unwrap().to_string());
        } else if let Some(body) = rest.strip_prefix("MethodRouter(MethodRouter {") {
            let fields = body.split("allow_header").next().unwrap();
            let served: Vec<String> = fields
                .split(',')
                .filter_map(|f| f.split_once(':'))
                .filter(|(_, v)| v.trim() != "None")
                .map(|(m, _)| m.trim().to_ascii_uppercase())
                .filter(|m| m != "FALLBACK" && m != "HEAD")
                .collect();
            methods.insert(id.to_string(), served);
        }
    }
    let mut out = BTreeSet::new();
    for (id, path) in &paths {
        if HTML_PREFIXES.iter().any(|p| path.starts_with(p)) {
            continue;
        }
        for m in methods.get(id).into_iter().flatten() {
            out.insert((m.clone(), path.clone()));
        }
    }
    out
}

fn document_routes(doc: &Value) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            if matches!(method.as_str(), "get" | "post" | "put" | "delete" | "patch") {
                out.insert((method.to_ascii_uppercase(), path.clone()));
            }
        }
    }
    out
}

#[tokio::test]
async fn the_document_covers_every_route_of_the_real_router() {
    let app = TestApp::spawn().await;
    let (status, doc) = app.get("/api/openapi.json", None).await;
    assert_eq!(status, 200);
    assert_eq!(doc["openapi"], "3.1.0");
    assert_eq!(doc, echopilot::web::api::document(), "served = built");
    let router = router_routes(&echopilot::app::routes(app.state.clone()));
    assert!(
        router.len() >= 30,
        "the Debug walk found too few: {router:?}"
    );
    assert!(router.contains(&("POST".into(), "/api/job/{id}/retry".into())));
    let documented = document_routes(&doc);
    let missing: Vec<_> = router.difference(&documented).collect();
    assert!(
        missing.is_empty(),
        "routes without an OpenAPI entry: {missing:?}"
    );
    let extra: Vec<_> = documented.difference(&router).collect();
    assert!(extra.is_empty(), "documented but not served: {extra:?}");
    // The walk does see a route added without an entry.
    let sneaky = echopilot::app::router(app.state.clone())
        .route("/api/undocumented", axum::routing::delete(|| async { "x" }));
    let found = router_routes(&sneaky);
    assert!(
        found
            .difference(&documented)
            .any(|r| *r == ("DELETE".to_string(), "/api/undocumented".to_string())),
        "{found:?}"
    );
    app.stop().await;
}

#[tokio::test]
async fn every_operation_names_its_role_and_its_failures() {
    let doc = echopilot::web::api::document();
    let scheme = &doc["components"]["securitySchemes"]["dash_key"];
    assert_eq!(scheme["type"], "apiKey");
    assert_eq!(scheme["name"], "X-Dash-Key");
    assert!(doc["components"]["schemas"]["ErrorBody"].is_object());
    for (method, path) in document_routes(&doc) {
        let op = &doc["paths"][&path][method.to_ascii_lowercase()];
        let role = op["x-required-role"].as_str().unwrap_or_else(|| {
            panic!("{method} {path} has no x-required-role");
        });
        assert!(
            [
                "public",
                "viewer",
                "operator",
                "admin",
                "worker",
                "key",
                "signature"
            ]
            .contains(&role),
            "{method} {path}: {role}"
        );
        let responses = op["responses"].as_object().unwrap();
        if role != "public" && role != "signature" {
            assert_eq!(
                op["security"][0]["dash_key"],
                serde_json::json!([]),
                "{path}"
            );
            // `key`: any live key will do, so no 403.
            let refusals: &[&str] = if role == "key" {
                &["401"]
            } else {
                &["401", "403"]
            };
            for s in refusals {
                let r = &responses[*s];
                assert_eq!(
                    r["content"]["application/json"]["schema"]["$ref"],
                    "#/components/schemas/ErrorBody",
                    "{method} {path} {s}"
                );
            }
        }
        let exempt = ["/api/status/summary", "/metrics"].contains(&path.as_str());
        assert_eq!(
            responses.contains_key("429"),
            !exempt,
            "{method} {path}: a limited route declares 429, a monitoring one does not"
        );
        assert!(
            responses.keys().any(|s| s.starts_with('2')),
            "{method} {path} declares no success"
        );
    }
}

/// The README's API table lists exactly the documented routes, each with its role (the
/// first word of the "who" column).
#[test]
fn the_readme_api_table_agrees_with_the_document() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let section = readme.split("\n## API\n").nth(1).unwrap();
    let section = section.split("\n## ").next().unwrap();
    let mut table = BTreeSet::new();
    for line in section.lines().filter(|l| l.starts_with("| `")) {
        let cells: Vec<&str> = line.split(" | ").collect();
        let route = cells[0].trim_start_matches("| `").trim_end_matches('`');
        let (method, path) = route.split_once(' ').unwrap();
        let role = cells[1].split_whitespace().next().unwrap();
        table.insert((method.to_string(), path.to_string(), role.to_string()));
    }
    let doc = echopilot::web::api::document();
    let documented: BTreeSet<(String, String, String)> = document_routes(&doc)
        .into_iter()
        .map(|(m, p)| {
            let role = doc["paths"][&p][m.to_ascii_lowercase()]["x-required-role"]
                .as_str()
                .unwrap()
                .to_string();
            (m, p, role)
        })
        .collect();
    let missing: Vec<_> = documented.difference(&table).collect();
    let extra: Vec<_> = table.difference(&documented).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "README lacks {missing:?}; README has, the document not: {extra:?}"
    );
}
