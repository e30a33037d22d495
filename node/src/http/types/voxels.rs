//! The voxel types' shared HTTP package: subvolumes at any offset and size (`raw`), block records
//! (`subvolblocks`, `specificblocks`), their `Extended` info and their diffs by block.

use super::{Target, raw};
use crate::http::params::{block_list, triple};
use crate::http::{ApiError, ApiResult, AppState, blocking};
use axum::extract::{Extension, Path, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use dvid_store::diff::VersionDiff;
use dvid_store::{Codec, Instance, Point, Subvolume};
use serde::Deserialize;
use serde_json::{Map, Value, json};

/// The routes every voxel type serves.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/raw/{dims}/{size}/{offset}",
            get(raw::get_raw).post(raw::post_raw),
        )
        .route(
            "/raw/{dims}/{size}/{offset}/{format}",
            get(raw::get_raw).post(raw::post_raw),
        )
        .route("/isotropic/{dims}/{size}/{offset}", get(raw::get_isotropic))
        .route(
            "/isotropic/{dims}/{size}/{offset}/{format}",
            get(raw::get_isotropic),
        )
        .route("/subvolblocks/{size}/{offset}", get(subvol_blocks))
        .route("/downres", post(downres))
        .merge(super::zarr::routes())
        .merge(super::staging::routes())
}

/// `specificblocks` as block records (labelmap sends label Blocks instead).
pub fn specific_blocks_route() -> Router<AppState> {
    Router::new().route("/specificblocks", get(specific_blocks))
}

/// DVID's `Extended` info of a voxel instance: `Values` names its voxel type.
pub fn extended(inst: &Instance, data_type: &str, label: &str, interpolable: bool) -> Value {
    let Ok(vox) = inst.voxels() else {
        return json!({});
    };
    let g = vox.geometry;
    let bs = g.block_size;
    let (min_point, max_point, min_index, max_index) = match inst.extents {
        Some((lo, hi)) => (
            json!(lo),
            json!(hi),
            json!([0, 1, 2].map(|a| lo[a].div_euclid(bs[a]))),
            json!([0, 1, 2].map(|a| hi[a].div_euclid(bs[a]))),
        ),
        // Never null: clients parse three integers. An empty box has its max below its min.
        None => (
            json!([0, 0, 0]),
            json!([-1, -1, -1]),
            json!([0, 0, 0]),
            json!([-1, -1, -1]),
        ),
    };
    json!({
        "Values": [{ "DataType": data_type, "Label": label }],
        "Interpolable": interpolable,
        "BlockSize": bs,
        "VoxelSize": g.voxel_size,
        "VoxelUnits": g.voxel_units,
        "MinPoint": min_point,
        "MaxPoint": max_point,
        "MinIndex": min_index,
        "MaxIndex": max_index,
        "Background": 0,
    })
}

pub fn compression(inst: &Instance) -> String {
    inst.voxels()
        .map_or_else(|e| e.to_string(), |v| v.geometry.codec.describe())
}

/// The changed blocks, with their bounding boxes in blocks and in voxels.
pub fn diff_fields(d: &VersionDiff, out: &mut Map<String, Value>) {
    // Block keys only: a labelmap's diff also holds mapping, index and mutation keys.
    let changed: Vec<(Point, &str)> = d
        .changes
        .iter()
        .filter_map(|c| {
            dvid_store::geometry::block_from_key(&c.index).map(|b| (b, c.change.name()))
        })
        .collect();
    out.insert(
        "blocks".into(),
        changed
            .iter()
            .map(|(b, change)| json!({"block": b, "change": change}))
            .collect(),
    );
    let blocks: Vec<Point> = changed.iter().map(|(b, _)| *b).collect();
    let (Some(first), Ok(vox)) = (blocks.first(), d.instance.voxels()) else {
        return;
    };
    let (mut lo, mut hi) = (*first, *first);
    for b in &blocks {
        for a in 0..3 {
            lo[a] = lo[a].min(b[a]);
            hi[a] = hi[a].max(b[a]);
        }
    }
    let bs = vox.block_size();
    out.insert("block_box".into(), json!({"min": lo, "max": hi}));
    // Voxels covered by the changed blocks, inclusive.
    out.insert(
        "voxel_box".into(),
        json!({
            "min": ([0, 1, 2].map(|a| lo[a] * bs[a])),
            "max": ([0, 1, 2].map(|a| (hi[a] + 1) * bs[a] - 1)),
        }),
    );
}

/// Parses `{size}/{offset}` and bounds the voxel bytes by the request limit.
pub(super) fn subvolume(
    s: &AppState,
    inst: &Instance,
    size: &str,
    offset: &str,
) -> ApiResult<Subvolume> {
    let vox = inst.voxels()?;
    let size: [u32; 3] = triple(size, "size")?;
    let offset: [i32; 3] = triple(offset, "offset")?;
    let sub = Subvolume::new(offset, size)?;
    // Saturating, not `sub.voxels()`: three u32 sizes can overflow u64, and a product that wrapped
    // around to a small number would slip past this bound.
    let bytes = size.iter().fold(vox.voxel_bytes as u64, |n, &s| {
        n.saturating_mul(u64::from(s))
    });
    if bytes > s.config.max_request_bytes as u64 {
        return Err(ApiError::too_large(format!(
            "a {}x{}x{} subvolume is {bytes} bytes, over this node's {}-byte limit (--max-request-bytes)",
            size[0], size[1], size[2], s.config.max_request_bytes
        )));
    }
    sub.check_block_count(vox.block_size())?;
    Ok(sub)
}

#[derive(Deserialize)]
struct BlockQuery {
    blocks: Option<String>,
    compression: Option<String>,
}

/// How block records carry their voxels: as stored (JPEG blocks, DVID's default for JPEG
/// instances) or uncompressed.
#[derive(Clone, Copy, PartialEq)]
enum BlockForm {
    Uncompressed,
    Jpeg,
}

fn block_form(q: &BlockQuery, inst: &Instance) -> ApiResult<BlockForm> {
    let jpeg_blocks = matches!(inst.voxels()?.geometry.codec, Codec::Jpeg(_));
    match q.compression.as_deref() {
        None | Some("") if jpeg_blocks => Ok(BlockForm::Jpeg),
        None | Some("") | Some("raw") | Some("uncompressed") => Ok(BlockForm::Uncompressed),
        Some("jpeg") if jpeg_blocks => Ok(BlockForm::Jpeg),
        Some("jpeg") => Err(ApiError::bad_request(format!(
            "{:?} stores {} blocks, not jpeg: ask for compression=uncompressed",
            inst.name,
            inst.voxels()?.geometry.codec.describe()
        ))),
        Some(other) => Err(ApiError::bad_request(format!(
            "compression {other:?} not supported for block records: use uncompressed{}",
            if jpeg_blocks { " or jpeg" } else { "" }
        ))),
    }
}

/// The block records of the blocks that exist among `blocks`, in `form`.
async fn records(
    s: AppState,
    h: dvid_store::DataHandle,
    blocks: Vec<Point>,
    form: BlockForm,
) -> ApiResult<Response> {
    let found = blocking(move || match form {
        BlockForm::Uncompressed => s.store.read_blocks(&h, &blocks),
        BlockForm::Jpeg => s
            .store
            .read_block_payloads(&h, &blocks)?
            .into_iter()
            .map(|(b, payload)| match dvid_store::codec::jpeg_of(&payload) {
                Some(j) => Ok((b, j.to_vec())),
                None => Err(dvid_store::StoreError::Corrupt(format!(
                    "block {b:?} of a jpeg instance is not stored as jpeg"
                ))),
            })
            .collect(),
    })
    .await?;
    Ok(octets(block_records(found)))
}

async fn subvol_blocks(
    State(s): State<AppState>,
    Extension(Target(h)): Extension<Target>,
    Path((size, offset)): Path<(String, String)>,
    Query(q): Query<BlockQuery>,
) -> ApiResult<Response> {
    let form = block_form(&q, &h.instance)?;
    let sub = subvolume(&s, &h.instance, &size, &offset)?;
    let blocks = sub.blocks(h.instance.voxels()?.block_size());
    records(s, h, blocks, form).await
}

async fn specific_blocks(
    State(s): State<AppState>,
    Extension(Target(h)): Extension<Target>,
    Query(q): Query<BlockQuery>,
) -> ApiResult<Response> {
    let form = block_form(&q, &h.instance)?;
    let list = q
        .blocks
        .as_deref()
        .ok_or_else(|| ApiError::bad_request("specificblocks needs ?blocks=x,y,z,..."))?;
    let blocks = block_list(list)?;
    let block_bytes = h.instance.voxels()?.block_bytes() as u64;
    let bytes = (blocks.len() as u64).saturating_mul(block_bytes + 16);
    if bytes > s.config.max_request_bytes as u64 {
        return Err(ApiError::too_large(format!(
            "{} blocks may be {bytes} bytes, over this node's {}-byte limit",
            blocks.len(),
            s.config.max_request_bytes
        )));
    }
    records(s, h, blocks, form).await
}

#[derive(Deserialize)]
struct DownresQuery {
    levels: Option<String>,
}

/// Builds the instance's multiscale levels `NAME_1…` at a mutable version.
async fn downres(
    State(s): State<AppState>,
    Extension(Target(h)): Extension<Target>,
    Query(q): Query<DownresQuery>,
) -> ApiResult<Json<Value>> {
    let levels = match q.levels.as_deref() {
        None => None,
        Some(t) => Some(t.parse::<u32>().map_err(|_| {
            ApiError::bad_request(format!("levels {t:?}: expected a number of levels, 1..=10"))
        })?),
    };
    let (uuid, name) = (h.uuid.to_hex(), h.instance.name.clone());
    let (full, built) = blocking(move || s.store.downres(&uuid, &name, levels)).await?;
    Ok(Json(json!({ "full": full, "levels": built })))
}

/// DVID's block-record stream: `i32 bx, by, bz, n` little-endian, then n bytes, for each block.
fn block_records(blocks: Vec<(Point, Vec<u8>)>) -> Vec<u8> {
    let total: usize = blocks.iter().map(|(_, d)| d.len() + 16).sum();
    let mut out = Vec::with_capacity(total);
    for (b, d) in blocks {
        for c in b {
            out.extend_from_slice(&c.to_le_bytes());
        }
        out.extend_from_slice(&(d.len() as i32).to_le_bytes());
        out.extend_from_slice(&d);
    }
    out
}

pub fn octets(bytes: Vec<u8>) -> Response {
    ([(header::CONTENT_TYPE, "application/octet-stream")], bytes).into_response()
}
