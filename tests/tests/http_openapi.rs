//! `/api/openapi.json` parses as OpenAPI and describes exactly the routes of the router. The routers
//! are the one list of routes: the core's in node/src/http/mod.rs and each data type's in
//! node/src/http/types/ (under `/api/node/{uuid}/{data}`). This test reads them, and checks with a
//! live node that every described operation is served (not a 404 fallback, not 405), type routes on
//! an instance of every type that serves them.

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
    // One instance of every type the node serves, named after its type.
    let root = n.new_repo("openapi");
    let types: Value = n.get("/api/server/types").json().unwrap();
    let types: Vec<String> = types.as_object().unwrap().keys().cloned().collect();
    assert!(types.len() >= 3, "{types:?}");
    for t in &types {
        n.post_json(
            &format!("/api/repo/{root}/instance"),
            dvid_tests::json!({"typename": t, "dataname": t}),
        );
    }
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

    // Every operation reaches its handler: any answer but a fallback's 404 or a 405. A type's route
    // is served if an instance of some type takes it.
    for (method, path) in &routes {
        let candidates: Vec<String> = match path.strip_prefix(INSTANCE) {
            Some(_) => types
                .iter()
                .map(|t| {
                    concrete(path)
                        .replacen("/x/", &format!("/{t}/"), 1)
                        .replacen(ANY_UUID, &root, 1)
                })
                .collect(),
            None => vec![concrete(path)],
        };
        let answers: Vec<String> = candidates
            .iter()
            .map(|url| {
                let r = match method.as_str() {
                    "get" => n.get(url),
                    "head" => n.head(url),
                    "delete" => n.delete(url),
                    _ => n.post(url, Vec::new()),
                };
                let status = r.status().as_u16();
                format!("{url}: {status} {}", r.text().unwrap_or_default())
            })
            .collect();
        assert!(
            answers
                .iter()
                .any(|a| !a.contains(": 405 ") && !a.contains("no endpoint")),
            "{method} {path} is served by no type: {answers:?}"
        );
    }
    println!(
        "{} operations on {} paths described and served",
        routes.len(),
        paths.len()
    );
}

/// Where the types' routes are mounted.
const INSTANCE: &str = "/api/node/{uuid}/{data}";
const ANY_UUID: &str = "0123456789abcdef0123456789abcdef";

/// The (method, path template) pairs of every `.route(...)` in the routers, read from their
/// source: the core's (less the route that dispatches to the types) and each type's, mounted.
fn router_routes() -> BTreeSet<(String, String)> {
    let http = Path::new(env!("CARGO_MANIFEST_DIR")).join("../node/src/http");
    let core = std::fs::read_to_string(http.join("mod.rs")).expect("reading the router");
    let start = core
        .find("Router::new()")
        .expect("Router::new() in the router");
    let end = core[start..].find(".fallback(").expect(".fallback(") + start;
    let mut out = routes_in(&core[start..end], "");
    for file in std::fs::read_dir(http.join("types")).unwrap() {
        let file = file.unwrap().path();
        if file.extension().is_some_and(|e| e == "rs") {
            out.extend(routes_in(
                &std::fs::read_to_string(&file).unwrap(),
                INSTANCE,
            ));
        }
    }
    out
}

/// The routes of `.route(...)` calls in `src`, their paths prefixed.
fn routes_in(src: &str, prefix: &str) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    for chunk in src.split(".route(").skip(1) {
        let path = chunk.split('"').nth(1).expect("a route's path literal");
        if path.contains("{*rest}") {
            continue; // the dispatch to the types' routers
        }
        let handlers = &chunk[chunk.find(',').expect("a route's handlers")..];
        let mut found = false;
        for m in METHODS {
            // `get(` or `.get(`, not the end of a handler's name like `p2p::get_x(` or `x_get(`.
            let called = handlers.match_indices(&format!("{m}(")).any(|(i, _)| {
                let before = handlers[..i].chars().last();
                !before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':')
            });
            if called {
                out.insert((m.to_string(), format!("{prefix}{path}")));
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
            "{uuid}" => ANY_UUID,
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
