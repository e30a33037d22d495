//! Repo and version endpoints: create repos and instances, commit, branch, newversion, merge, logs.

use super::params::json_body;
use super::{ApiError, ApiResult, AppState, blocking};
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use dvid_store::{InstanceSpec, Settings};
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
    let (name, spec) = instance_settings(raw)?;
    let typename = spec.datatype.name();
    let reply = format!("Added {name:?} [{typename}]");
    blocking(move || s.store.create_instance(&uuid, &name, spec)).await?;
    Ok(Json(json!({ "result": reply })))
}

/// Reads DVID's instance settings: string values (or JSON numbers and arrays), keys
/// case-insensitive. `typename` and `dataname` are the request's; the rest go to the type.
fn instance_settings(raw: BTreeMap<String, Value>) -> ApiResult<(String, InstanceSpec)> {
    let mut pairs = Vec::new();
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
        pairs.push((k, text));
    }
    let mut settings = Settings::new(pairs);
    let typename = settings
        .take("typename")
        .ok_or_else(|| ApiError::bad_request("instance creation needs \"typename\""))?;
    let name = settings
        .take("dataname")
        .ok_or_else(|| ApiError::bad_request("instance creation needs \"dataname\""))?;
    Ok((name, InstanceSpec::parse(&typename, settings)?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CommitBody {
    note: Option<String>,
    #[serde(default)]
    log: Vec<String>,
    /// Bring every instance's multiscale levels up to date first.
    #[serde(default)]
    downres: bool,
}

pub async fn commit(
    State(s): State<AppState>,
    Path(uuid): Path<String>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    let req: CommitBody = json_body(&body)?;
    let (levels, committed) = blocking(move || {
        let levels = if req.downres {
            s.store.refresh_levels(&uuid)?
        } else {
            vec![]
        };
        Ok((
            levels,
            s.store.commit(&uuid, req.note.as_deref(), &req.log)?,
        ))
    })
    .await?;
    let mut answer = json!({ "committed": committed.to_hex() });
    if !levels.is_empty() {
        answer["levels"] = json!(levels);
    }
    Ok(Json(answer))
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
