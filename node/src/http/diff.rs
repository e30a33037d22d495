//! `GET /api/node/{a}/{data}/diff/{b}`: the block coordinates or keys of an instance that changed
//! from version a to version b, with a bounding-box summary for voxel types.

use super::{ApiResult, AppState, blocking};
use axum::Json;
use axum::extract::{Path, State};
use dvid_store::DataKind;
use dvid_store::diff::VersionDiff;
use serde_json::{Value, json};

pub async fn diff(
    State(s): State<AppState>,
    Path((from, data, to)): Path<(String, String, String)>,
) -> ApiResult<Json<Value>> {
    let store = s.store.clone();
    let d = blocking(move || store.diff(&from, &to, &data)).await?;
    Ok(Json(diff_json(&d)))
}

fn diff_json(d: &VersionDiff) -> Value {
    let count = |k| d.changes.iter().filter(|c| c.change == k).count();
    use dvid_store::diff::ChangeKind::{Added, Modified, Removed};
    let mut v = json!({
        "from": d.from.to_hex(),
        "to": d.to.to_hex(),
        "instance": d.instance,
        "type": d.kind.name(),
        "changed": d.changes.len(),
        "added": count(Added),
        "removed": count(Removed),
        "modified": count(Modified),
    });
    if d.kind == DataKind::KeyValue {
        v["keys"] = d
            .changes
            .iter()
            .map(|c| json!({"key": String::from_utf8_lossy(&c.name), "change": c.change.name()}))
            .collect();
        return v;
    }
    let blocks: Vec<[i32; 3]> = d
        .changes
        .iter()
        .filter_map(|c| dvid_store::geometry::block_from_key(&c.index))
        .collect();
    v["blocks"] = blocks
        .iter()
        .zip(&d.changes)
        .map(|(b, c)| json!({"block": b, "change": c.change.name()}))
        .collect();
    if let (Some(lo), Some(hi)) = (
        (0..3)
            .map(|a| blocks.iter().map(|b| b[a]).min())
            .collect::<Option<Vec<i32>>>(),
        (0..3)
            .map(|a| blocks.iter().map(|b| b[a]).max())
            .collect::<Option<Vec<i32>>>(),
    ) {
        let bs = d.block_size;
        v["block_box"] = json!({"min": lo, "max": hi});
        // Voxels covered by the changed blocks, inclusive.
        v["voxel_box"] = json!({
            "min": (0..3).map(|a| lo[a] * bs[a]).collect::<Vec<_>>(),
            "max": (0..3).map(|a| (hi[a] + 1) * bs[a] - 1).collect::<Vec<_>>(),
        });
    }
    v
}
