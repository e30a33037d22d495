//! labelmap's splits, each a body of DVID's RLEs naming voxels: `split-supervoxel` (they become
//! a new supervoxel) and `split` (they become a new body), and `supervoxel-splits` (the splits of
//! a version and its ancestors).

use super::Target;
use crate::http::formats::rle;
use crate::http::info::levels_of;
use crate::http::{ApiError, ApiResult, AppState, blocking};
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Extension, Path, Query, State};
use dvid_store::DataHandle;
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

impl SplitQuery {
    /// Whether to bring the levels up to date after the split (unless `downres=false`).
    fn downres(&self) -> bool {
        let downres = self.downres.as_deref().map(str::to_ascii_lowercase);
        !matches!(downres.as_deref(), Some("false" | "off" | "0"))
    }

    fn editor(&self) -> Editor {
        Editor {
            user: self.u.clone().unwrap_or_default(),
            app: self.app.clone().unwrap_or_default(),
        }
    }
}

/// Runs an edit off the executor, then (if `downres`) rebuilds the levels `NAME_1`, `NAME_2`,
/// … the labelmap has from its edited blocks.
async fn edit_then_refresh<T: Send + 'static>(
    s: AppState,
    h: DataHandle,
    downres: bool,
    edit: impl FnOnce(&AppState, &DataHandle) -> dvid_store::Result<T> + Send + 'static,
) -> ApiResult<T> {
    blocking(move || {
        let r = edit(&s, &h)?;
        let (uuid, name) = (h.uuid.to_hex(), &h.instance.name);
        let levels = levels_of(name, |n| s.store.handle(&uuid, n).is_ok());
        if downres && levels > 0 {
            s.store.downres(&uuid, name, Some(levels))?;
        }
        Ok(r)
    })
    .await
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
    let who = q.editor();
    let r = edit_then_refresh(s, h, q.downres(), move |s, h| {
        s.store.split_supervoxel(h, sv, &runs, ids, &who)
    })
    .await?;
    Ok(Json(json!({
        "SplitSupervoxel": r.split,
        "RemainSupervoxel": r.remain,
        "MutationID": r.mutation,
    })))
}

/// Splits the voxels a body of RLEs names off a body into a new one: `{"label", "MutationID"}`.
/// Every supervoxel they touch is split in two (see `supervoxel-splits`). DVID's `splitlabel`
/// is ignored, as DVID ignores it: the new body takes a new label.
pub async fn split_body(
    State(s): State<AppState>,
    Extension(Target(h)): Extension<Target>,
    Path(label): Path<String>,
    Query(q): Query<SplitQuery>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    let target = super::labelmap::label_arg(&label)?;
    let runs = rle::decode(&body).map_err(ApiError::bad_request)?;
    let who = q.editor();
    let r = edit_then_refresh(s, h, q.downres(), move |s, h| {
        s.store.split_body(h, target, &runs, &who)
    })
    .await?;
    Ok(Json(json!({ "label": r.label, "MutationID": r.mutation })))
}

/// `[uuid, [[mutation, old, remain, split], ...], parent uuid, [...], ...]`, newest first.
pub async fn supervoxel_splits(
    State(s): State<AppState>,
    Extension(Target(h)): Extension<Target>,
) -> ApiResult<Json<Value>> {
    Ok(Json(blocking(move || s.store.supervoxel_splits(&h)).await?))
}
