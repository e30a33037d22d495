//! `GET /api/node/{a}/{data}/diff/{b}`: the block coordinates or keys of an instance that changed
//! from version a to version b, with a bounding-box summary for voxel types.

use super::{ApiResult, AppState, blocking, types};
use axum::Json;
use axum::extract::{Path, State};
use dvid_store::diff::VersionDiff;
use serde_json::{Value, json};

pub async fn diff(
    State(s): State<AppState>,
    Path((from, data, to)): Path<(String, String, String)>,
) -> ApiResult<Json<Value>> {
    let store = s.store.clone();
    let d = blocking(move || store.diff(&store.handle(&from, &data)?, &store.handle(&to, &data)?))
        .await?;
    diff_json(&d).map(Json)
}

/// Counts from the core, what changed from the type's package.
fn diff_json(d: &VersionDiff) -> ApiResult<Value> {
    let count = |k| d.changes.iter().filter(|c| c.change == k).count();
    use dvid_store::diff::ChangeKind::{Added, Modified, Removed};
    let mut v = json!({
        "from": d.from.to_hex(),
        "to": d.to.to_hex(),
        "instance": d.instance.name,
        "type": d.instance.spec.datatype.name(),
        "changed": d.changes.len(),
        "added": count(Added),
        "removed": count(Removed),
        "modified": count(Modified),
    });
    if d.partial {
        v["partial"] = json!(true);
    }
    let api = types::api_for(d.instance.spec.datatype.name())?;
    api.diff_fields(d, v.as_object_mut().expect("a JSON object"));
    Ok(v)
}
