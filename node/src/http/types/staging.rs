//! Staged imports of the voxel types (see `dvid_store::types::staging`): `dvid import` sends a
//! volume as block-aligned subvolumes under a session, then shows them all at once.
//! - `POST import/{session}/raw/0_1_2/{size}/{offset}[?compression=lz4]`: stage a subvolume;
//! - `GET import/{session}`: the blocks staged so far (to resume);
//! - `POST import/{session}/finish`: show every staged block at the version, in one write;
//! - `DELETE import/{session}`: drop what was staged; the version stays as it was.

use super::Target;
use super::voxels::subvolume;
use crate::http::{ApiError, ApiResult, AppState, blocking, formats};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Extension, Path, Query, State};
use axum::response::Json;
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/import/{session}", get(staged).delete(discard))
        .route("/import/{session}/finish", post(finish))
        .route("/import/{session}/raw/{dims}/{size}/{offset}", post(stage))
}

#[derive(Deserialize)]
struct StageQuery {
    compression: Option<String>,
}

async fn stage(
    State(s): State<AppState>,
    Extension(Target(h)): Extension<Target>,
    Path((session, dims, size, offset)): Path<(String, String, String, String)>,
    Query(q): Query<StageQuery>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    if dims != "0_1_2" {
        return Err(ApiError::bad_request(format!(
            "imports stage 3-D subvolumes (raw/0_1_2/…), not {dims:?}"
        )));
    }
    let sub = subvolume(&s, &h.instance, &size, &offset)?;
    let expected = sub.voxels() as usize * h.instance.voxels()?.voxel_bytes;
    let body = match q.compression.as_deref() {
        None | Some("") => body.to_vec(),
        Some("lz4") => formats::unlz4(&body, expected)?,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "compression {other:?} for staged subvolumes: send them as bytes or lz4"
            )));
        }
    };
    let n = blocking(move || s.store.stage_subvolume(&h, &session, sub, &body)).await?;
    Ok(Json(json!({ "staged": n })))
}

async fn staged(
    State(s): State<AppState>,
    Extension(Target(h)): Extension<Target>,
    Path(session): Path<String>,
) -> ApiResult<Json<Value>> {
    let blocks = blocking(move || s.store.staged_blocks(&h, &session)).await?;
    Ok(Json(json!({ "count": blocks.len(), "blocks": blocks })))
}

async fn finish(
    State(s): State<AppState>,
    Extension(Target(h)): Extension<Target>,
    Path(session): Path<String>,
) -> ApiResult<Json<Value>> {
    let n = blocking(move || s.store.finish_import(&h, &session)).await?;
    Ok(Json(json!({ "blocks": n })))
}

async fn discard(
    State(s): State<AppState>,
    Extension(Target(h)): Extension<Target>,
    Path(session): Path<String>,
) -> ApiResult<Json<Value>> {
    let n = blocking(move || s.store.discard_import(&h, &session)).await?;
    Ok(Json(json!({ "discarded": n })))
}
