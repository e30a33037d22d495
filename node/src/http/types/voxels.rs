//! The voxel types' shared HTTP package: subvolumes at any offset and size (`raw`), block records
//! (`subvolblocks`, `specificblocks`), their `Extended` info and their diffs by block.

use super::Target;
use crate::http::params::{block_list, triple};
use crate::http::{ApiError, ApiResult, AppState, blocking};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Extension, Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use dvid_store::diff::VersionDiff;
use dvid_store::{Instance, Point, Subvolume};
use serde::Deserialize;
use serde_json::{Map, Value, json};

/// The routes every voxel type serves.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/raw/{dims}/{size}/{offset}", get(get_raw).post(post_raw))
        .route("/subvolblocks/{size}/{offset}", get(subvol_blocks))
        .route("/specificblocks", get(specific_blocks))
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
        None => (Value::Null, Value::Null, Value::Null, Value::Null),
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
    let blocks: Vec<Point> = d
        .changes
        .iter()
        .filter_map(|c| dvid_store::geometry::block_from_key(&c.index))
        .collect();
    out.insert(
        "blocks".into(),
        blocks
            .iter()
            .zip(&d.changes)
            .map(|(b, c)| json!({"block": b, "change": c.change.name()}))
            .collect(),
    );
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
fn subvolume(s: &AppState, inst: &Instance, size: &str, offset: &str) -> ApiResult<Subvolume> {
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

fn check_dims(dims: &str) -> ApiResult<()> {
    if dims == "0_1_2" {
        Ok(())
    } else {
        Err(ApiError::bad_request(format!(
            "dims {dims:?} not supported: raw voxels are served as 3-D subvolumes, 0_1_2"
        )))
    }
}

type RawPath = Path<(String, String, String)>;

async fn get_raw(
    State(s): State<AppState>,
    Extension(Target(h)): Extension<Target>,
    Path((dims, size, offset)): RawPath,
) -> ApiResult<Response> {
    check_dims(&dims)?;
    let sub = subvolume(&s, &h.instance, &size, &offset)?;
    let bytes = blocking(move || s.store.read_subvolume(&h, sub)).await?;
    Ok(octets(bytes))
}

async fn post_raw(
    State(s): State<AppState>,
    Extension(Target(h)): Extension<Target>,
    Path((dims, size, offset)): RawPath,
    body: Bytes,
) -> ApiResult<StatusCode> {
    check_dims(&dims)?;
    let sub = subvolume(&s, &h.instance, &size, &offset)?;
    blocking(move || s.store.write_subvolume(&h, sub, &body)).await?;
    Ok(StatusCode::OK)
}

#[derive(Deserialize)]
struct BlockQuery {
    blocks: Option<String>,
    compression: Option<String>,
}

fn check_block_compression(q: &BlockQuery) -> ApiResult<()> {
    match q.compression.as_deref() {
        None | Some("") | Some("raw") | Some("uncompressed") => Ok(()),
        Some(other) => Err(ApiError::bad_request(format!(
            "compression {other:?} not supported for block records: blocks are sent uncompressed"
        ))),
    }
}

async fn subvol_blocks(
    State(s): State<AppState>,
    Extension(Target(h)): Extension<Target>,
    Path((size, offset)): Path<(String, String)>,
    Query(q): Query<BlockQuery>,
) -> ApiResult<Response> {
    check_block_compression(&q)?;
    let sub = subvolume(&s, &h.instance, &size, &offset)?;
    let blocks = sub.blocks(h.instance.voxels()?.block_size());
    let found = blocking(move || s.store.read_blocks(&h, &blocks)).await?;
    Ok(octets(block_records(found)))
}

async fn specific_blocks(
    State(s): State<AppState>,
    Extension(Target(h)): Extension<Target>,
    Query(q): Query<BlockQuery>,
) -> ApiResult<Response> {
    check_block_compression(&q)?;
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
    let found = blocking(move || s.store.read_blocks(&h, &blocks)).await?;
    Ok(octets(block_records(found)))
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
