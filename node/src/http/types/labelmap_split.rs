//! labelmap's `split-supervoxel` (a body of DVID's RLEs names the voxels that become a new
//! supervoxel) and `supervoxel-splits` (the splits of a version and its ancestors).

use super::Target;
use crate::http::formats::rle;
use crate::http::info::levels_of;
use crate::http::{ApiError, ApiResult, AppState, blocking};
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Extension, Path, Query, State};
use dvid_store::types::labelmap::{Editor, SplitIds};
use serde::Deserialize;
use serde_json::{Value, json};

#[derive(Deserialize, Default)]
pub struct SplitQuery {
    split: Option<String>,
    remain: Option<String>,
    downres: Option<String>,
    u: Option<String>,
    app: Option<String>,
}

/// An id the client picked for a split, or none (`0` or missing, as DVID reads them).
fn chosen(text: Option<&str>, name: &str) -> ApiResult<Option<u64>> {
    match text {
        None | Some("" | "0") => Ok(None),
        Some(t) => t.parse().map(Some).map_err(|_| {
            ApiError::bad_request(format!("{name}={t:?}: expected a 64-bit label id"))
        }),
    }
}

/// Splits a supervoxel: `{"SplitSupervoxel", "RemainSupervoxel", "MutationID"}`. The levels are
/// brought up to date unless `downres=false`.
pub async fn split_supervoxel(
    State(s): State<AppState>,
    Extension(Target(h)): Extension<Target>,
    Path(label): Path<String>,
    Query(q): Query<SplitQuery>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    let sv = super::labelmap::label_arg(&label)?;
    let runs = rle::decode(&body).map_err(ApiError::bad_request)?;
    let ids = SplitIds {
        split: chosen(q.split.as_deref(), "split")?,
        remain: chosen(q.remain.as_deref(), "remain")?,
    };
    let downres = q.downres.as_deref().map(str::to_ascii_lowercase);
    let downres = !matches!(downres.as_deref(), Some("false" | "off" | "0"));
    let who = Editor {
        user: q.u.unwrap_or_default(),
        app: q.app.unwrap_or_default(),
    };
    let r = blocking(move || {
        let r = s.store.split_supervoxel(&h, sv, &runs, ids, &who)?;
        let (uuid, name) = (h.uuid.to_hex(), &h.instance.name);
        let levels = levels_of(name, |n| s.store.handle(&uuid, n).is_ok());
        if downres && levels > 0 {
            s.store.downres(&uuid, name, Some(levels))?;
        }
        Ok(r)
    })
    .await?;
    Ok(Json(json!({
        "SplitSupervoxel": r.split,
        "RemainSupervoxel": r.remain,
        "MutationID": r.mutation,
    })))
}

/// `[uuid, [[mutation, old, remain, split], ...], parent uuid, [...], ...]`, newest first.
pub async fn supervoxel_splits(
    State(s): State<AppState>,
    Extension(Target(h)): Extension<Target>,
) -> ApiResult<Json<Value>> {
    Ok(Json(blocking(move || s.store.supervoxel_splits(&h)).await?))
}
