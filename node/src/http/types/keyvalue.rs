//! keyvalue's HTTP package: values under string keys, and key listings.

use super::voxels::octets;
use super::{Target, TypeApi};
use crate::http::{ApiError, ApiResult, AppState, blocking};
use axum::body::Bytes;
use axum::extract::{Extension, Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use axum::{Json, Router};
use dvid_store::Instance;
use dvid_store::diff::VersionDiff;
use serde_json::{Map, Value, json};

pub struct KeyValue;

pub static KEYVALUE: KeyValue = KeyValue;

impl TypeApi for KeyValue {
    fn name(&self) -> &'static str {
        "keyvalue"
    }

    fn type_url(&self) -> &'static str {
        "github.com/janelia-flyem/dvid/datatype/keyvalue"
    }

    fn type_version(&self) -> &'static str {
        "0.1"
    }

    /// Values are stored as they come.
    fn compression(&self, _: &Instance) -> String {
        "No compression".into()
    }

    fn extended(&self, _: &Instance, _levels: u32) -> Value {
        json!({})
    }

    fn routes(&self) -> Router<AppState> {
        Router::new()
            .route(
                "/key/{key}",
                get(get_key)
                    .post(post_key)
                    .put(post_key)
                    .delete(delete_key)
                    .head(head_key),
            )
            .route("/keys", get(keys))
            .route("/keyrange/{from}/{to}", get(key_range))
    }

    fn help(&self) -> &'static [&'static str] {
        &[include_str!("keyvalue.txt")]
    }

    fn openapi(&self) -> &'static [&'static str] {
        &[include_str!("keyvalue.json")]
    }

    fn diff_fields(&self, d: &VersionDiff, out: &mut Map<String, Value>) {
        let keys = d
            .changes
            .iter()
            .map(|c| json!({"key": String::from_utf8_lossy(&c.name), "change": c.change.name()}))
            .collect();
        out.insert("keys".into(), keys);
    }
}

async fn get_key(
    State(s): State<AppState>,
    Extension(Target(h)): Extension<Target>,
    Path(key): Path<String>,
) -> ApiResult<Response> {
    let k = key.clone();
    match blocking(move || s.store.kv_get(&h, &k)).await? {
        Some(v) => Ok(octets(v)),
        None => Err(ApiError::not_found(format!("key {key:?} not found"))),
    }
}

async fn head_key(
    State(s): State<AppState>,
    Extension(Target(h)): Extension<Target>,
    Path(key): Path<String>,
) -> ApiResult<StatusCode> {
    match blocking(move || s.store.kv_get(&h, &key)).await? {
        Some(_) => Ok(StatusCode::OK),
        None => Ok(StatusCode::NOT_FOUND),
    }
}

async fn post_key(
    State(s): State<AppState>,
    Extension(Target(h)): Extension<Target>,
    Path(key): Path<String>,
    body: Bytes,
) -> ApiResult<StatusCode> {
    blocking(move || s.store.kv_put(&h, &key, body.to_vec())).await?;
    Ok(StatusCode::OK)
}

async fn delete_key(
    State(s): State<AppState>,
    Extension(Target(h)): Extension<Target>,
    Path(key): Path<String>,
) -> ApiResult<StatusCode> {
    blocking(move || s.store.kv_delete(&h, &key)).await?;
    Ok(StatusCode::OK)
}

async fn keys(
    State(s): State<AppState>,
    Extension(Target(h)): Extension<Target>,
) -> ApiResult<Json<Vec<String>>> {
    Ok(Json(
        blocking(move || s.store.kv_keys(&h, None, None)).await?,
    ))
}

async fn key_range(
    State(s): State<AppState>,
    Extension(Target(h)): Extension<Target>,
    Path((from, to)): Path<(String, String)>,
) -> ApiResult<Json<Vec<String>>> {
    // An empty range when the start sorts after the end, as DVID answers (dvidtools asks such
    // ranges of position keys, which sort as text, not as numbers).
    if from > to {
        return Ok(Json(vec![]));
    }
    Ok(Json(
        blocking(move || s.store.kv_keys(&h, Some(&from), Some(&to))).await?,
    ))
}
