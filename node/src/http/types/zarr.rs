//! Every version of a voxel instance as a read-only Zarr v3 store, without copying: `zarr/` is the
//! full-resolution array and `omezarr/` an OME-Zarr 0.5 multiscale group with one array per level
//! (`s0`, and `s1`, `s2`, … for the levels `NAME_1`, `NAME_2`, …). One chunk per dvid block, axes
//! (z, y, x) in C order (x fastest, as in `raw`), zstd-compressed; array index 0 is voxel 0, or the
//! block-aligned minimum when the volume reaches below 0 (said in the `dvid` attribute and in
//! OME-Zarr's translation). Chunks never written are 404 (Zarr's fill value); so are chunks a
//! partial replica does not hold, with a message that says so, never zeros passed off as data.

use super::Target;
use crate::http::{ApiError, ApiResult, AppState, blocking};
use crate::transfer::{Dtype, Layout, ome_attributes};
use axum::Json;
use axum::Router;
use axum::extract::{Extension, Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use dvid_store::{DataHandle, Instance, Point};
use serde_json::{Value, json};

/// zstd level of served chunks: the fastest, since chunks are compressed on every request.
const CHUNK_ZSTD_LEVEL: i32 = 1;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/zarr/zarr.json", get(array_metadata))
        .route("/zarr/c/{z}/{y}/{x}", get(array_chunk))
        .route("/omezarr/zarr.json", get(group_metadata))
        .route("/omezarr/{level}/zarr.json", get(level_metadata))
        .route("/omezarr/{level}/c/{z}/{y}/{x}", get(level_chunk))
}

/// The answer for a key the store lacks, if `path` is in a Zarr view: readers probe for keys a
/// Zarr v3 store has not (`.zgroup`, `.zarray`, `.zattrs` of v2), which are 404 as in any
/// store, not a malformed request.
pub fn missing_key(path: &str) -> Option<ApiError> {
    let key = path
        .strip_prefix("/zarr/")
        .or_else(|| path.strip_prefix("/omezarr/"))?;
    Some(ApiError::not_found(format!(
        "no key {key:?} in this Zarr v3 store: it holds zarr.json and chunks c/Z/Y/X (omezarr/: \
         zarr.json, then sK/zarr.json and sK/c/Z/Y/X for each level K)"
    )))
}

/// The index space of one level's array: where index 0 lies, and how far it reaches.
struct Grid {
    /// Voxel (x, y, z) at array index 0: 0, or the block-aligned minimum below 0.
    origin: Point,
    /// Voxels from the origin through `MaxPoint`, (x, y, z); 0 for an empty instance.
    extent: [u64; 3],
}

fn grid(inst: &Instance) -> ApiResult<Grid> {
    let bs = inst.voxels()?.block_size();
    Ok(match inst.extents {
        None => Grid {
            origin: [0; 3],
            extent: [0; 3],
        },
        Some((lo, hi)) => {
            let origin: Point = std::array::from_fn(|a| (lo[a].div_euclid(bs[a]) * bs[a]).min(0));
            Grid {
                origin,
                extent: std::array::from_fn(|a| {
                    (i64::from(hi[a]) - i64::from(origin[a]) + 1) as u64
                }),
            }
        }
    })
}

/// `[z, y, x]` of an `(x, y, z)` triple.
fn zyx<T>(mut p: [T; 3]) -> [T; 3] {
    p.reverse();
    p
}

/// The Zarr v3 array metadata of one level.
fn array_json(h: &DataHandle) -> ApiResult<Value> {
    let inst = &h.instance;
    let vox = inst.voxels()?;
    let g = grid(inst)?;
    let labels = vox.voxel_bytes == 8;
    Ok(json!({
        "zarr_format": 3,
        "node_type": "array",
        "shape": zyx(g.extent),
        "data_type": if labels { "uint64" } else { "uint8" },
        "chunk_grid": {
            "name": "regular",
            "configuration": { "chunk_shape": zyx(vox.block_size()) }
        },
        "chunk_key_encoding": { "name": "default", "configuration": { "separator": "/" } },
        "fill_value": 0,
        "codecs": [
            { "name": "bytes", "configuration": { "endian": "little" } },
            { "name": "zstd", "configuration": { "level": CHUNK_ZSTD_LEVEL, "checksum": false } }
        ],
        "dimension_names": ["z", "y", "x"],
        "attributes": {
            "dvid": {
                "version": h.uuid.to_string(),
                "instance": inst.name,
                "type": inst.spec.datatype.name(),
                "origin_zyx": zyx(g.origin),
                "voxel_size_zyx": zyx(vox.geometry.voxel_size),
                "voxel_units_zyx": zyx(vox.geometry.voxel_units.clone()),
            }
        }
    }))
}

fn json_answer(v: Value) -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        Json(v).into_response(),
    )
        .into_response()
}

async fn array_metadata(Extension(Target(h)): Extension<Target>) -> ApiResult<Response> {
    Ok(json_answer(array_json(&h)?))
}

async fn array_chunk(
    State(s): State<AppState>,
    Extension(Target(h)): Extension<Target>,
    Path(key): Path<(String, String, String)>,
) -> ApiResult<Response> {
    chunk(s, h.clone(), h, key).await
}

/// The handle of level `k` (`s0` is the instance itself, `sK` its level `NAME_K`).
fn level(s: &AppState, h: &DataHandle, name: &str) -> ApiResult<DataHandle> {
    let k: u32 = name
        .strip_prefix('s')
        .and_then(|k| k.parse().ok())
        .ok_or_else(|| ApiError::not_found(format!("no level {name:?}: levels are s0, s1, …")))?;
    if k == 0 {
        return Ok(h.clone());
    }
    let level = format!("{}_{k}", h.instance.name);
    s.store.handle(&h.uuid.to_string(), &level).map_err(|_| {
        ApiError::not_found(format!(
            "{:?} has no level {k} ({level:?}) at this version: build levels with downres",
            h.instance.name
        ))
    })
}

async fn level_metadata(
    State(s): State<AppState>,
    Extension(Target(h)): Extension<Target>,
    Path(name): Path<String>,
) -> ApiResult<Response> {
    Ok(json_answer(array_json(&level(&s, &h, &name)?)?))
}

async fn level_chunk(
    State(s): State<AppState>,
    Extension(Target(h)): Extension<Target>,
    Path((name, z, y, x)): Path<(String, String, String, String)>,
) -> ApiResult<Response> {
    let read = level(&s, &h, &name)?;
    chunk(s, h, read, (z, y, x)).await
}

/// The layout the Zarr view gives a level: what an export of it would write.
fn layout(inst: &Instance) -> ApiResult<Layout> {
    let vox = inst.voxels()?;
    let g = grid(inst)?;
    Ok(Layout {
        shape: g.extent,
        dtype: if vox.voxel_bytes == 8 {
            Dtype::U64
        } else {
            Dtype::U8
        },
        chunk: vox.block_size().map(|b| b as u64),
        voxel_size: vox.geometry.voxel_size.map(f64::from),
        voxel_unit: vox.geometry.voxel_units[0].clone(),
        origin: g.origin.map(i64::from),
    })
}

async fn group_metadata(
    State(s): State<AppState>,
    Extension(Target(h)): Extension<Target>,
) -> ApiResult<Response> {
    let store = s.store.clone();
    let (uuid, name) = (h.uuid.to_string(), h.instance.name.clone());
    let count = blocking(move || {
        Ok(crate::http::info::levels_of(&name, |n| {
            store.handle(&uuid, n).is_ok()
        }))
    })
    .await?;
    let levels = (0..=count)
        .map(|k| layout(&level(&s, &h, &format!("s{k}"))?.instance))
        .collect::<ApiResult<Vec<Layout>>>()?;
    Ok(json_answer(json!({
        "zarr_format": 3,
        "node_type": "group",
        "attributes": ome_attributes(&h.instance.name, &levels),
    })))
}

/// One chunk of `read` (a level of `base`): its block, as the version holds it (bodies for a
/// labelmap), zstd-compressed.
async fn chunk(
    s: AppState,
    base: DataHandle,
    read: DataHandle,
    (z, y, x): (String, String, String),
) -> ApiResult<Response> {
    let index: [i64; 3] = [&x, &y, &z].map(|t| t.parse::<i64>().unwrap_or(-1));
    let g = grid(&read.instance)?;
    let bs = read.instance.voxels()?.block_size();
    let chunks: [i64; 3] =
        std::array::from_fn(|a| (g.extent[a] as i64 + i64::from(bs[a]) - 1) / i64::from(bs[a]));
    if (0..3).any(|a| !(0..chunks[a]).contains(&index[a])) {
        return Err(ApiError::not_found(format!(
            "no chunk c/{z}/{y}/{x}: the array has {:?} chunks (z, y, x)",
            zyx(chunks)
        )));
    }
    let block: Point = std::array::from_fn(|a| g.origin[a].div_euclid(bs[a]) + index[a] as i32);
    let map = base.instance.spec.datatype.indexes_labels().then_some(base);
    let found = blocking(move || {
        if !s.store.holds_block(&read, block)? {
            return Ok(Err(format!(
                "block {block:?} lies outside the region this node holds of the version (a partial replica)"
            )));
        }
        let Some((_, bytes)) = s.store.read_blocks(&read, &[block])?.pop() else {
            return Ok(Err(format!(
                "block {block:?} was never written: Zarr's fill value (0) applies"
            )));
        };
        let bytes = match map {
            None => bytes,
            Some(m) => {
                let labels = bytes
                    .chunks_exact(8)
                    .map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes")))
                    .collect();
                s.store
                    .map_labels(&m, labels)?
                    .iter()
                    .flat_map(|l| l.to_le_bytes())
                    .collect()
            }
        };
        zstd::bulk::compress(&bytes, CHUNK_ZSTD_LEVEL)
            .map(Ok)
            .map_err(|e| dvid_store::StoreError::Engine(format!("zstd: {e}")))
    })
    .await?;
    match found {
        Ok(body) => Ok(super::voxels::octets(body)),
        Err(why) => Err(ApiError::not_found(why)),
    }
}
