//! Repo and version endpoints: create repos and instances, commit, branch, newversion, merge, logs.

use super::params::json_body;
use super::{ApiError, ApiResult, AppState, blocking};
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use dvid_store::{Codec, DataKind, InstanceSettings};
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::BTreeMap;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewRepo {
    #[serde(default)]
    alias: String,
    #[serde(default)]
    description: String,
}

pub async fn create_repo(State(s): State<AppState>, body: Bytes) -> ApiResult<Json<Value>> {
    let req: NewRepo = json_body(&body)?;
    let root = blocking(move || s.store.create_repo(&req.alias, &req.description)).await?;
    Ok(Json(json!({ "root": root.to_hex() })))
}

pub async fn create_instance(
    State(s): State<AppState>,
    Path(uuid): Path<String>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    let raw: BTreeMap<String, Value> = json_body(&body)?;
    let settings = instance_settings(raw)?;
    let name = settings.name.clone();
    let kind = settings.kind;
    blocking(move || s.store.create_instance(&uuid, settings)).await?;
    Ok(Json(
        json!({ "result": format!("Added {name:?} [{}]", kind.name()) }),
    ))
}

/// Reads DVID's instance settings: string values (or JSON numbers and arrays), keys case-insensitive.
fn instance_settings(raw: BTreeMap<String, Value>) -> ApiResult<InstanceSettings> {
    let mut typename = None;
    let mut name = None;
    let mut block_size = None;
    let mut voxel_size = [8.0f32; 3];
    let mut voxel_units = [
        "nanometers".to_string(),
        "nanometers".to_string(),
        "nanometers".to_string(),
    ];
    let mut codec = Codec::Lz4;
    let mut tags = BTreeMap::new();
    for (k, v) in raw {
        let text = match &v {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            Value::Bool(b) => b.to_string(),
            Value::Array(a) => a
                .iter()
                .map(|x| x.as_str().map_or_else(|| x.to_string(), str::to_string))
                .collect::<Vec<_>>()
                .join(","),
            _ => {
                return Err(ApiError::bad_request(format!(
                    "setting {k:?} has an unusable value {v}"
                )));
            }
        };
        match k.to_ascii_lowercase().as_str() {
            "typename" => typename = Some(text),
            "dataname" => name = Some(text),
            "blocksize" => block_size = Some(numbers::<i32>(&text, "BlockSize")?),
            "voxelsize" => {
                voxel_size = numbers::<f32>(&text, "VoxelSize")?;
                // JSON has no NaN or infinity: the instance info would show them as null.
                if !voxel_size.iter().all(|v| v.is_finite() && *v > 0.0) {
                    return Err(ApiError::bad_request(format!(
                        "VoxelSize {text:?}: expected three positive, finite numbers"
                    )));
                }
            }
            "voxelunits" => {
                let parts: Vec<&str> = text.split(',').map(str::trim).collect();
                voxel_units = match parts.as_slice() {
                    [one] => [one.to_string(), one.to_string(), one.to_string()],
                    [a, b, c] => [a.to_string(), b.to_string(), c.to_string()],
                    _ => {
                        return Err(ApiError::bad_request(
                            "VoxelUnits takes one unit or three, comma-separated",
                        ));
                    }
                };
            }
            "compression" => codec = Codec::parse(&text)?,
            "versioned" => {
                if text.eq_ignore_ascii_case("false") {
                    return Err(ApiError::bad_request(
                        "unversioned instances are not supported: every instance is versioned",
                    ));
                }
            }
            "tags" => {
                for pair in text.split(',').filter(|p| !p.is_empty()) {
                    let (tk, tv) = pair.split_once('=').unwrap_or((pair, ""));
                    tags.insert(tk.trim().to_string(), tv.trim().to_string());
                }
            }
            other => {
                return Err(ApiError::bad_request(format!(
                    "unknown instance setting {other:?}: known are typename, dataname, BlockSize, VoxelSize, VoxelUnits, Compression, Versioned, Tags"
                )));
            }
        }
    }
    let typename =
        typename.ok_or_else(|| ApiError::bad_request("instance creation needs \"typename\""))?;
    let name = name.ok_or_else(|| ApiError::bad_request("instance creation needs \"dataname\""))?;
    let kind = DataKind::parse(&typename)?;
    if kind == DataKind::KeyValue && block_size.is_some() {
        return Err(ApiError::bad_request(
            "keyvalue instances have no BlockSize",
        ));
    }
    Ok(InstanceSettings {
        name,
        kind,
        codec,
        block_size: block_size.unwrap_or([64, 64, 64]),
        voxel_size,
        voxel_units,
        tags,
    })
}

fn numbers<T: std::str::FromStr>(text: &str, what: &str) -> ApiResult<[T; 3]> {
    let parsed: Option<Vec<T>> = text.split(',').map(|p| p.trim().parse().ok()).collect();
    parsed
        .and_then(|v| <[T; 3]>::try_from(v).ok())
        .ok_or_else(|| {
            ApiError::bad_request(format!(
                "{what} {text:?}: expected three comma-separated numbers, like 64,64,64"
            ))
        })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CommitBody {
    note: Option<String>,
    #[serde(default)]
    log: Vec<String>,
}

pub async fn commit(
    State(s): State<AppState>,
    Path(uuid): Path<String>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    let req: CommitBody = json_body(&body)?;
    let committed = blocking(move || s.store.commit(&uuid, req.note.as_deref(), &req.log)).await?;
    Ok(Json(json!({ "committed": committed.to_hex() })))
}

pub async fn get_commit(
    State(s): State<AppState>,
    Path(uuid): Path<String>,
) -> ApiResult<Json<Value>> {
    let v = blocking(move || s.store.resolve(&uuid)).await?;
    Ok(Json(json!({ "Locked": v.locked })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ChildBody {
    branch: Option<String>,
    #[serde(default)]
    note: String,
}

pub async fn branch(
    State(s): State<AppState>,
    Path(uuid): Path<String>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    let req: ChildBody = json_body(&body)?;
    let name = req
        .branch
        .ok_or_else(|| ApiError::bad_request("branch needs {\"branch\": name}"))?;
    let child = blocking(move || s.store.branch(&uuid, &name, &req.note)).await?;
    Ok(Json(json!({ "child": child.to_hex() })))
}

pub async fn new_version(
    State(s): State<AppState>,
    Path(uuid): Path<String>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    let req: ChildBody = json_body(&body)?;
    if req.branch.is_some() {
        return Err(ApiError::bad_request(
            "newversion stays on the parent's branch: use branch to name a new one",
        ));
    }
    let child = blocking(move || s.store.new_version(&uuid, &req.note)).await?;
    Ok(Json(json!({ "child": child.to_hex() })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MergeBody {
    #[serde(rename = "mergeType", default = "conflict_free")]
    merge_type: String,
    parents: Vec<String>,
    #[serde(default)]
    note: String,
}

fn conflict_free() -> String {
    "conflict-free".into()
}

pub async fn merge(
    State(s): State<AppState>,
    Path(uuid): Path<String>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    let req: MergeBody = json_body(&body)?;
    if req.merge_type != "conflict-free" {
        return Err(ApiError::bad_request(format!(
            "mergeType {:?} is not supported: use \"conflict-free\"",
            req.merge_type
        )));
    }
    let child = blocking(move || {
        // The repo in the URL must hold every parent.
        let repo = s.store.resolve(&uuid)?.repo;
        for p in &req.parents {
            if s.store.resolve(p)?.repo != repo {
                return Err(dvid_store::StoreError::BadRequest(format!(
                    "parent {p} is not in repo {uuid}"
                )));
            }
        }
        s.store.merge(&req.parents, &req.note)
    })
    .await?;
    Ok(Json(json!({ "child": child.to_hex() })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LogBody {
    log: Vec<String>,
}

pub async fn get_node_log(
    State(s): State<AppState>,
    Path(uuid): Path<String>,
) -> ApiResult<Json<Value>> {
    let v = blocking(move || s.store.resolve(&uuid)).await?;
    Ok(Json(json!({ "log": v.log })))
}

pub async fn post_node_log(
    State(s): State<AppState>,
    Path(uuid): Path<String>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    let req: LogBody = json_body(&body)?;
    blocking(move || s.store.append_log(&uuid, &req.log)).await?;
    Ok(Json(json!({})))
}

pub async fn get_repo_log(
    State(s): State<AppState>,
    Path(uuid): Path<String>,
) -> ApiResult<Json<Value>> {
    let log = blocking(move || Ok(s.store.repo(&uuid)?.0.log)).await?;
    Ok(Json(json!({ "log": log })))
}

pub async fn post_repo_log(
    State(s): State<AppState>,
    Path(uuid): Path<String>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    let req: LogBody = json_body(&body)?;
    blocking(move || s.store.append_repo_log(&uuid, &req.log)).await?;
    Ok(Json(json!({})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NoteBody {
    note: String,
}

pub async fn get_note(
    State(s): State<AppState>,
    Path(uuid): Path<String>,
) -> ApiResult<Json<Value>> {
    let v = blocking(move || s.store.resolve(&uuid)).await?;
    Ok(Json(json!({ "note": v.note })))
}

pub async fn post_note(
    State(s): State<AppState>,
    Path(uuid): Path<String>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    let req: NoteBody = json_body(&body)?;
    blocking(move || s.store.set_note(&uuid, &req.note)).await?;
    Ok(Json(json!({})))
}
