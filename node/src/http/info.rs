//! Info endpoints, in DVID's JSON shapes field for field (Neuroglancer and Python clients parse them).

use super::types::{self, REGISTRY, Target};
use super::{ApiError, ApiResult, AppState, blocking};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::{Uri, header};
use axum::response::IntoResponse;
use dvid_store::geometry::cover;
use dvid_store::{Instance, Point, Replica, Repo, Version};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::LazyLock;

/// The core's help with each type's section.
static HELP: LazyLock<String> = LazyLock::new(|| types::help(include_str!("help.txt")));

/// The core's OpenAPI document with each type's paths.
static OPENAPI: LazyLock<String> =
    LazyLock::new(|| types::openapi(include_str!("openapi.json")).to_string());

pub async fn help() -> &'static str {
    &HELP
}

/// The OpenAPI 3 description of every route in [`super::router`] and the types' routers.
pub async fn openapi() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/json")],
        OPENAPI.as_str(),
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
    Json(Value::Object(
        REGISTRY
            .iter()
            .map(|t| (t.name().to_string(), json!(t.type_url())))
            .collect(),
    ))
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

/// DVID's `branch-versions`: the branch's UUIDs from its leaf back to the root.
pub async fn branch_versions(
    State(s): State<AppState>,
    Path((uuid, branch)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let c = s.store.catalog();
    let repo = c.version(c.resolve(&uuid)?)?.repo;
    let uuids = c.branch_versions(repo, &branch)?;
    Ok(Json(json!(
        uuids.iter().map(|u| u.to_hex()).collect::<Vec<_>>()
    )))
}

pub async fn instance_info(
    State(s): State<AppState>,
    Path((uuid, data)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let store = s.store.clone();
    let (root, version, Target(h), levels) = blocking(move || {
        let levels = levels_of(&data, |n| store.handle(&uuid, n).is_ok());
        Ok((
            store.repo_root(&uuid)?,
            store.resolve(&uuid)?,
            Target(store.handle(&uuid, &data)?),
            levels,
        ))
    })
    .await?;
    let held = version.replica.regions(&h.instance.name);
    Ok(Json(instance_json(
        root,
        &h.instance,
        held.as_deref(),
        levels,
    )?))
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
        .filter_map(|i| {
            let held = held_in_repo(i, r.versions.iter().filter_map(|id| versions.get(id)));
            Some((
                i.name.clone(),
                instance_json(
                    r.root,
                    i,
                    held.as_deref(),
                    levels_of(&i.name, |n| r.instances.contains_key(n)),
                )
                .ok()?,
            ))
        })
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

/// The voxel boxes this node holds of an instance over a repo's versions: `None` if some version
/// holds all of it.
fn held_in_repo<'a>(
    i: &Instance,
    versions: impl Iterator<Item = &'a Version>,
) -> Option<Vec<(Point, Point)>> {
    let mut held = Vec::new();
    for v in versions {
        held.extend(v.replica.regions(&i.name)?);
    }
    Some(held)
}

/// DVID's instance info: `Base` from the core, `Extended` from the type's package. Of a partial
/// replica (`held`: the voxel boxes held), the extents shown are those of the part held, so a
/// viewer asks only for what this node can serve.
fn instance_json(
    repo: dvid_store::Uuid,
    i: &Instance,
    held: Option<&[(Point, Point)]>,
    levels: u32,
) -> ApiResult<Value> {
    let api = types::api_for(i.spec.datatype.name())?;
    let clipped;
    let i = match (held, i.extents) {
        (Some(boxes), Some(extents)) => {
            clipped = Instance {
                extents: clip(extents, boxes),
                ..i.clone()
            };
            &clipped
        }
        _ => i,
    };
    let base = json!({
        "TypeName": api.name(),
        "TypeURL": api.type_url(),
        "TypeVersion": api.type_version(),
        "DataUUID": i.data_uuid.to_hex(),
        "Name": i.name,
        "RepoUUID": repo.to_hex(),
        "Compression": api.compression(i),
        "Checksum": "No checksum",
        "Syncs": [],
        "Versioned": true,
        "Tags": i.spec.tags,
    });
    Ok(json!({ "Base": base, "Extended": api.extended(i, levels) }))
}

/// How many multiscale levels `NAME_1`, `NAME_2`, … follow one another among the instances.
pub(crate) fn levels_of(name: &str, exists: impl Fn(&str) -> bool) -> u32 {
    (1..=dvid_store::types::MAX_LEVELS)
        .take_while(|k| exists(&format!("{name}_{k}")))
        .count() as u32
}

/// `extents` within the bounding box of `boxes` (`None`: nothing of it is held).
fn clip(extents: (Point, Point), boxes: &[(Point, Point)]) -> Option<(Point, Point)> {
    let (first, rest) = boxes.split_first()?;
    let bound = rest.iter().fold(*first, |acc, &b| cover(acc, b));
    let lo: Point = std::array::from_fn(|a| extents.0[a].max(bound.0[a]));
    let hi: Point = std::array::from_fn(|a| extents.1[a].min(bound.1[a]));
    (0..3).all(|a| lo[a] <= hi[a]).then_some((lo, hi))
}
