//! labelblk's HTTP package: the voxel endpoints with 64-bit labels, and labels at points.

use super::{Target, TypeApi, voxels};
use crate::http::params::{json_list, triple};
use crate::http::{ApiError, ApiResult, AppState, blocking};
use axum::body::Bytes;
use axum::extract::{Extension, Path, State};
use axum::routing::get;
use axum::{Json, Router};
use dvid_store::Instance;
use dvid_store::diff::VersionDiff;
use serde_json::{Map, Value, json};

pub struct LabelBlk;

pub static LABELBLK: LabelBlk = LabelBlk;

impl TypeApi for LabelBlk {
    fn name(&self) -> &'static str {
        "labelblk"
    }

    fn type_url(&self) -> &'static str {
        "github.com/janelia-flyem/dvid/datatype/labelblk"
    }

    fn type_version(&self) -> &'static str {
        "0.2"
    }

    fn compression(&self, inst: &Instance) -> String {
        voxels::compression(inst)
    }

    fn extended(&self, inst: &Instance, _levels: u32) -> Value {
        voxels::extended(inst, "uint64", "labelblk", false)
    }

    fn routes(&self) -> Router<AppState> {
        voxels::routes()
            .merge(voxels::specific_blocks_route())
            .route("/label/{point}", get(label))
            .route("/labels", get(labels))
    }

    fn help(&self) -> &'static [&'static str] {
        &[include_str!("voxels.txt"), include_str!("labelblk.txt")]
    }

    fn openapi(&self) -> &'static [&'static str] {
        &[include_str!("voxels.json"), include_str!("labelblk.json")]
    }

    fn diff_fields(&self, d: &VersionDiff, out: &mut Map<String, Value>) {
        voxels::diff_fields(d, out)
    }
}

async fn label(
    State(s): State<AppState>,
    Extension(Target(h)): Extension<Target>,
    Path(point): Path<String>,
) -> ApiResult<Json<Value>> {
    let p: [i32; 3] = triple(&point, "point")?;
    let labels = blocking(move || s.store.labels_at(&h, &[p])).await?;
    Ok(Json(json!({ "Label": labels[0] })))
}

async fn labels(
    State(s): State<AppState>,
    Extension(Target(h)): Extension<Target>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    let points: Vec<[i32; 3]> = json_list(&body).map_err(|e| {
        ApiError::bad_request(format!(
            "labels needs a JSON list of [x,y,z] points: {}",
            e.message
        ))
    })?;
    let labels = blocking(move || s.store.labels_at(&h, &points)).await?;
    Ok(Json(json!(labels)))
}
