//! Info endpoints, in DVID's JSON shapes field for field (Neuroglancer and Python clients parse them).

use super::{ApiError, ApiResult, AppState, blocking};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::{Uri, header};
use axum::response::IntoResponse;
use dvid_store::{DataKind, Instance, Replica, Repo, Version};
use serde_json::{Value, json};
use std::collections::BTreeMap;

pub async fn help() -> &'static str {
    include_str!("help.txt")
}

/// The OpenAPI 3 description of every route in [`super::router`].
pub async fn openapi() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/json")],
        include_str!("openapi.json"),
    )
}

pub async fn not_found(uri: Uri) -> ApiError {
    ApiError::not_found(format!(
        "no endpoint {}: see /api/help for the API",
        uri.path()
    ))
}

pub async fn server_info(State(s): State<AppState>) -> Json<Value> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    Json(json!({
        "Cores": cores.to_string(),
        "Maximum Cores": cores.to_string(),
        "DVID Version": env!("CARGO_PKG_VERSION"),
        "Datastore Version": "dvid-rs 1",
        "Storage backend": s.store.backend(),
        "Server started": s.started_at,
        "Server uptime": format!("{:.1}s", s.started.elapsed().as_secs_f64()),
        "Max request bytes": s.config.max_request_bytes,
    }))
}

pub async fn server_types() -> Json<Value> {
    Json(json!({
        "uint8blk": "github.com/janelia-flyem/dvid/datatype/imageblk/uint8.go",
        "labelblk": "github.com/janelia-flyem/dvid/datatype/labelblk",
        "keyvalue": "github.com/janelia-flyem/dvid/datatype/keyvalue",
    }))
}

pub async fn repos_info(State(s): State<AppState>) -> Json<Value> {
    let c = s.store.catalog();
    let map: serde_json::Map<String, Value> = c
        .repos
        .values()
        .map(|r| (r.root.to_hex(), repo_json(r, &c.versions)))
        .collect();
    Json(Value::Object(map))
}

pub async fn repo_info(
    State(s): State<AppState>,
    Path(uuid): Path<String>,
) -> ApiResult<Json<Value>> {
    let store = s.store.clone();
    let (repo, versions) = blocking(move || store.repo(&uuid)).await?;
    Ok(Json(repo_json(&repo, &versions)))
}

pub async fn instance_info(
    State(s): State<AppState>,
    Path((uuid, data)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let store = s.store.clone();
    let (root, inst) =
        blocking(move || Ok((store.repo_root(&uuid)?, store.instance(&uuid, &data)?))).await?;
    Ok(Json(instance_json(root, &inst)))
}

fn repo_json(r: &Repo, versions: &BTreeMap<u32, Version>) -> Value {
    let nodes: serde_json::Map<String, Value> = r
        .versions
        .iter()
        .filter_map(|id| versions.get(id))
        .map(|v| {
            (
                v.uuid.to_hex(),
                json!({
                    "UUID": v.uuid.to_hex(),
                    "VersionID": v.id,
                    "Branch": v.branch,
                    "Note": v.note,
                    "Log": v.log,
                    "Locked": v.locked,
                    "Parents": v.parents,
                    "Children": v.children,
                    "Created": v.created,
                    "Updated": v.updated,
                    "CommitHash": v.commit_hash.map(|h| h.to_hex()),
                    "Replica": replica_json(&v.replica),
                }),
            )
        })
        .collect();
    let instances: serde_json::Map<String, Value> = r
        .instances
        .values()
        .map(|i| (i.name.clone(), instance_json(r.root, i)))
        .collect();
    json!({
        "Root": r.root.to_hex(),
        "Alias": r.alias,
        "Description": r.description,
        "Log": r.log,
        "Properties": {},
        "DataInstances": instances,
        "DAG": { "Root": r.root.to_hex(), "Nodes": nodes },
        "Created": r.created,
        "Updated": r.updated,
    })
}

/// What this node holds of a version: `{"Holds": "all"}`, `{"Holds": "metadata"}` (an ancestor
/// of a pulled version), or `{"Holds": "part", "Parts": [{"Instances", "Region"}]}` for a partial
/// replica, each part as it was pulled (`null`: all instances, or every block).
fn replica_json(r: &Replica) -> Value {
    match r {
        Replica::Full => json!({"Holds": "all"}),
        Replica::MetadataOnly => json!({"Holds": "metadata"}),
        Replica::Partial(parts) => {
            let parts: Vec<Value> = parts
                .iter()
                .map(|p| {
                    json!({
                        "Instances": p.instances,
                        "Region": p.region.map(|(lo, hi)| {
                            let size = [0, 1, 2].map(|a| i64::from(hi[a]) - i64::from(lo[a]) + 1);
                            json!({"offset": lo, "size": size})
                        }),
                    })
                })
                .collect();
            json!({"Holds": "part", "Parts": parts})
        }
    }
}

fn instance_json(repo: dvid_store::Uuid, i: &Instance) -> Value {
    let (type_url, type_version) = match i.kind {
        DataKind::Uint8Blk => (
            "github.com/janelia-flyem/dvid/datatype/imageblk/uint8.go",
            "0.2",
        ),
        DataKind::LabelBlk => ("github.com/janelia-flyem/dvid/datatype/labelblk", "0.2"),
        DataKind::KeyValue => ("github.com/janelia-flyem/dvid/datatype/keyvalue", "0.1"),
    };
    let base = json!({
        "TypeName": i.kind.name(),
        "TypeURL": type_url,
        "TypeVersion": type_version,
        "DataUUID": i.data_uuid.to_hex(),
        "Name": i.name,
        "RepoUUID": repo.to_hex(),
        "Compression": i.codec.describe(),
        "Checksum": "No checksum",
        "Syncs": [],
        "Versioned": true,
        "Tags": i.tags,
    });
    let extended = match i.kind {
        DataKind::KeyValue => json!({}),
        DataKind::Uint8Blk | DataKind::LabelBlk => {
            let (data_type, label) = if i.kind == DataKind::Uint8Blk {
                ("uint8", "uint8")
            } else {
                ("uint64", "labelblk")
            };
            let bs = i.block_size;
            let (min_point, max_point, min_index, max_index) = match i.extents {
                Some((lo, hi)) => (
                    json!(lo),
                    json!(hi),
                    json!([0, 1, 2].map(|a| lo[a].div_euclid(bs[a]))),
                    json!([0, 1, 2].map(|a| hi[a].div_euclid(bs[a]))),
                ),
                None => (Value::Null, Value::Null, Value::Null, Value::Null),
            };
            json!({
                "Values": [{ "DataType": data_type, "Label": label }],
                "Interpolable": i.kind == DataKind::Uint8Blk,
                "BlockSize": bs,
                "VoxelSize": i.voxel_size,
                "VoxelUnits": i.voxel_units,
                "MinPoint": min_point,
                "MaxPoint": max_point,
                "MinIndex": min_index,
                "MaxIndex": max_index,
                "Background": 0,
            })
        }
    };
    json!({ "Base": base, "Extended": extended })
}
