//! The data types' HTTP packages: each type's file owns its routes under
//! `/api/node/{uuid}/{data}/…`, the `Extended` part of its instance info, its help and its OpenAPI
//! paths. [`REGISTRY`] is the only list; a request for an instance goes to its type's router.

mod keyvalue;
mod labelblk;
mod labelmap;
mod labelmap_blocks;
mod labelmap_indices;
mod labelmap_split;
mod raw;
mod staging;
mod uint8blk;
mod voxels;
mod zarr;

use super::{ApiError, AppState};
use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::response::{IntoResponse, Response};
use dvid_store::diff::VersionDiff;
use dvid_store::{DataHandle, Instance};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::sync::Arc;
use tower::ServiceExt;

/// Every type's HTTP package, one per type of the store's registry.
pub static REGISTRY: &[&dyn TypeApi] = &[
    &uint8blk::UINT8BLK,
    &labelblk::LABELBLK,
    &labelmap::LABELMAP,
    &keyvalue::KEYVALUE,
];

/// What the HTTP core asks of a data type.
pub trait TypeApi: Send + Sync {
    /// The store type it serves ([`dvid_store::DataType::name`]).
    fn name(&self) -> &'static str;

    /// DVID's `TypeURL` and `TypeVersion`.
    fn type_url(&self) -> &'static str;
    fn type_version(&self) -> &'static str;

    /// `Base.Compression` of an instance's info.
    fn compression(&self, inst: &Instance) -> String;

    /// `Extended` of an instance's info; `levels` is how many multiscale levels (`NAME_1`…)
    /// the version has.
    fn extended(&self, inst: &Instance, levels: u32) -> Value;

    /// Its routes, with paths relative to `/api/node/{uuid}/{data}` (`/raw/{dims}/…`). Handlers
    /// find the resolved instance in the request's [`Target`] extension.
    fn routes(&self) -> Router<AppState>;

    /// Its sections of `/api/help` (types that share endpoints share a section).
    fn help(&self) -> &'static [&'static str];

    /// Its OpenAPI `paths` objects, keyed by full paths (JSON texts, shared like help sections).
    fn openapi(&self) -> &'static [&'static str];

    /// The fields of a diff's answer that say what changed, in its terms ("blocks", "keys").
    fn diff_fields(&self, d: &VersionDiff, out: &mut Map<String, Value>);
}

/// The HTTP package of a store type.
pub fn api_for(name: &str) -> Result<&'static dyn TypeApi, ApiError> {
    REGISTRY
        .iter()
        .find(|t| t.name() == name)
        .copied()
        .ok_or_else(|| ApiError {
            status: axum::http::StatusCode::INTERNAL_SERVER_ERROR,
            message: format!("data type {name:?} has no HTTP package in this build"),
        })
}

/// The instance a request names, resolved once by [`dispatch`] for its type's handlers.
#[derive(Clone)]
pub struct Target(pub DataHandle);

/// Each type's router, with the state applied.
pub struct Routers(BTreeMap<&'static str, Router>);

impl Routers {
    pub fn new(state: &AppState) -> Arc<Self> {
        Arc::new(Self(
            REGISTRY
                .iter()
                .map(|t| {
                    let r = t
                        .routes()
                        .fallback(no_endpoint)
                        .layer(DefaultBodyLimit::max(state.config.max_request_bytes))
                        .with_state(state.clone());
                    (t.name(), r)
                })
                .collect(),
        ))
    }
}

/// Answers `/api/node/{uuid}/{data}/{rest}`: resolves the version and instance (memory only), then
/// hands the request to its type's router with the path cut to `/{rest}`.
pub async fn dispatch(
    routers: Arc<Routers>,
    State(s): State<AppState>,
    mut req: Request,
) -> Response {
    // The raw path, still percent-encoded: the type's router decodes its own parameters once.
    let path = req.uri().path().to_string();
    let mut parts = path.splitn(6, '/');
    let (uuid, data, rest) = match (parts.nth(3), parts.next(), parts.next()) {
        (Some(u), Some(d), Some(r)) => (u, d, r),
        _ => {
            return ApiError::not_found(format!("no endpoint {path}: see /api/help for the API"))
                .into_response();
        }
    };
    let decode = |s: &str| {
        percent_encoding::percent_decode_str(s)
            .decode_utf8_lossy()
            .into_owned()
    };
    let handle = match s.store.handle(&decode(uuid), &decode(data)) {
        Ok(h) => h,
        Err(e) => return ApiError::from(e).into_response(),
    };
    let name = handle.instance.spec.datatype.name();
    let Some(router) = routers.0.get(name) else {
        return ApiError {
            status: axum::http::StatusCode::INTERNAL_SERVER_ERROR,
            message: format!("data type {name:?} has no HTTP package in this build"),
        }
        .into_response();
    };
    let inner = match req.uri().query() {
        Some(q) => format!("/{rest}?{q}"),
        None => format!("/{rest}"),
    };
    match inner.parse() {
        Ok(uri) => *req.uri_mut() = uri,
        Err(e) => return ApiError::bad_request(format!("bad path {path:?}: {e}")).into_response(),
    }
    // A fresh start for the type's router: the outer route's path parameters would otherwise come
    // first in its `Path` extractors (the body limit is set again by its own layer).
    req.extensions_mut().clear();
    req.extensions_mut().insert(Target(handle));
    match router.clone().oneshot(req).await {
        Ok(r) => r,
        Err(never) => match never {},
    }
}

/// A path the instance's type does not serve: 400, as DVID answers an unknown action.
async fn no_endpoint(
    axum::Extension(t): axum::Extension<Target>,
    uri: axum::http::Uri,
) -> ApiError {
    if let Some(e) = zarr::missing_key(uri.path()) {
        return e;
    }
    let inst = &t.0.instance;
    let action = uri
        .path()
        .trim_start_matches('/')
        .split('/')
        .next()
        .unwrap_or("");
    let others = match served_by(action).as_slice() {
        [] => String::new(),
        types => format!(
            " ({action:?} is served by {} instances)",
            types.join(" and ")
        ),
    };
    ApiError::bad_request(format!(
        "no endpoint {} for data instance {:?}, a {}{others}: see /api/help for what it serves",
        uri.path(),
        inst.name,
        inst.spec.datatype.name()
    ))
}

/// The types with an endpoint whose first segment under the instance is `action`, from their
/// OpenAPI paths (which a test holds equal to their routes).
fn served_by(action: &str) -> Vec<&'static str> {
    let prefix = format!("/api/node/{{uuid}}/{{data}}/{action}");
    REGISTRY
        .iter()
        .filter(|t| {
            t.openapi().iter().any(|fragment| {
                serde_json::from_str::<Map<String, Value>>(fragment).is_ok_and(|paths| {
                    paths
                        .keys()
                        .any(|p| p == &prefix || p.starts_with(&format!("{prefix}/")))
                })
            })
        })
        .map(|t| t.name())
        .collect()
}

/// The whole `/api/help`: the core's text, then each type's section.
pub fn help(core: &str) -> String {
    let mut out = core.trim_end().to_string();
    let mut seen = Vec::new();
    for section in REGISTRY.iter().flat_map(|t| t.help()) {
        if !seen.contains(section) {
            seen.push(section);
            out.push_str("\n\n");
            out.push_str(section.trim_end());
        }
    }
    out.push('\n');
    out
}

/// The whole OpenAPI document: the core's, with each type's paths added. Types sharing an
/// endpoint (the voxel types' `raw`) share its description.
pub fn openapi(core: &str) -> Value {
    let mut doc: Value = serde_json::from_str(core).expect("the core OpenAPI document is JSON");
    for fragment in REGISTRY.iter().flat_map(|t| t.openapi()) {
        let paths: Map<String, Value> =
            serde_json::from_str(fragment).expect("a type's OpenAPI paths are a JSON object");
        let all = doc["paths"]
            .as_object_mut()
            .expect("the core document has paths");
        for (path, item) in paths {
            let entry = all.entry(path).or_insert_with(|| Value::Object(Map::new()));
            for (method, op) in item.as_object().expect("a path item is an object") {
                entry
                    .as_object_mut()
                    .expect("a path item is an object")
                    .entry(method.clone())
                    .or_insert_with(|| op.clone());
            }
        }
    }
    doc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_every_store_type_has_an_http_package() {
        for t in dvid_store::types::REGISTRY {
            assert!(
                api_for(t.name()).is_ok(),
                "{} has no HTTP package",
                t.name()
            );
        }
        assert_eq!(REGISTRY.len(), dvid_store::types::REGISTRY.len());
        let doc = openapi(include_str!("../openapi.json"));
        assert!(doc["paths"]["/api/node/{uuid}/{data}/key/{key}"]["get"].is_object());
    }
}
