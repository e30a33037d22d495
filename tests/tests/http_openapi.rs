//! `/api/openapi.json` parses as OpenAPI and describes exactly the routes of the router. The router in
//! node/src/http/mod.rs is the one list of routes: this test reads it, and checks with a live node that
//! every described operation is served (not the 404 fallback, not 405).

use dvid_tests::{Node, Value};
use std::collections::BTreeSet;
use std::path::Path;

/// Methods of an axum `MethodRouter`, as written in the router: `get(`, `.post(`, ...
const METHODS: [&str; 5] = ["get", "post", "put", "delete", "head"];

#[test]
fn http_openapi_lists_every_route() {
    let routes = router_routes();
    assert!(
        routes.len() > 30,
        "found only {} routes in the router",
        routes.len()
    );

    let dir = tempfile::tempdir().unwrap();
    let n = Node::start(dir.path(), &[]);
    let r = n.get("/api/openapi.json");
    assert_eq!(r.status(), 200);
    let ct = r.headers()["content-type"].to_str().unwrap().to_string();
    assert!(ct.starts_with("application/json"), "content type {ct}");
    let spec: Value = r.json().expect("the OpenAPI document is JSON");
    assert!(
        spec["openapi"].as_str().unwrap_or("").starts_with("3."),
        "not OpenAPI 3: {}",
        spec["openapi"]
    );

    let mut described = BTreeSet::new();
    let paths = spec["paths"].as_object().expect("paths");
    for (path, item) in paths {
        for (method, op) in item.as_object().expect("path item") {
            if METHODS.contains(&method.as_str()) {
                assert!(
                    op["responses"].is_object(),
                    "{method} {path} has no responses"
                );
                described.insert((method.clone(), path.clone()));
            }
        }
    }
    let missing: Vec<_> = routes.difference(&described).collect();
    let extra: Vec<_> = described.difference(&routes).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "the spec and the router differ:\n  routes not in the spec: {missing:?}\n  spec operations not routed: {extra:?}"
    );

    // Every operation reaches its handler: any answer but the fallback's 404 or a 405.
    for (method, path) in &routes {
        let url = concrete(path);
        let r = match method.as_str() {
            "get" => n.get(&url),
            "head" => n.head(&url),
            "delete" => n.delete(&url),
            _ => n.post(&url, Vec::new()),
        };
        let status = r.status().as_u16();
        let text = r.text().unwrap_or_default();
        assert!(
            status != 405 && !text.contains("no endpoint"),
            "{method} {url}: {status} {text}"
        );
    }
    println!(
        "{} operations on {} paths described and served",
        routes.len(),
        paths.len()
    );
}

/// The (method, path template) pairs of every `.route(...)` in the router, read from its source.
fn router_routes() -> BTreeSet<(String, String)> {
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("../node/src/http/mod.rs");
    let src = std::fs::read_to_string(&file).expect("reading the router");
    let start = src
        .find("Router::new()")
        .expect("Router::new() in the router");
    let end = src[start..].find(".fallback(").expect(".fallback(") + start;
    let mut out = BTreeSet::new();
    for chunk in src[start..end].split(".route(").skip(1) {
        let path = chunk.split('"').nth(1).expect("a route's path literal");
        let handlers = &chunk[chunk.find(',').expect("a route's handlers")..];
        let mut found = false;
        for m in METHODS {
            // `get(` or `.get(`, not the end of a handler's name like `p2p::get_x(` or `x_get(`.
            let called = handlers.match_indices(&format!("{m}(")).any(|(i, _)| {
                let before = handlers[..i].chars().last();
                !before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':')
            });
            if called {
                out.insert((m.to_string(), path.to_string()));
                found = true;
            }
        }
        assert!(found, "no method for route {path}");
    }
    out
}

/// A request path for a template: every `{param}` replaced by a value its pattern accepts.
fn concrete(template: &str) -> String {
    template
        .split('/')
        .map(|seg| match seg {
            "{uuid}" => "0123456789abcdef0123456789abcdef",
            "{dims}" => "0_1_2",
            "{size}" => "1_1_1",
            "{offset}" | "{point}" => "0_0_0",
            "{job}" => "1",
            s if s.starts_with('{') => "x",
            s => s,
        })
        .collect::<Vec<_>>()
        .join("/")
}
