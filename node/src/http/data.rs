//! Data-instance endpoints: voxels (uint8blk, labelblk) and key-value data.

use super::params::{block_list, json_list, triple};
use super::{ApiError, ApiResult, AppState, blocking};
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use dvid_store::{DataKind, Instance, Point, Subvolume};
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::HashMap;

type RawPath = Path<(String, String, String, String, String)>;

/// Resolves the instance (memory only, no I/O) and checks it is one of `kinds`.
fn instance(s: &AppState, uuid: &str, data: &str, kinds: &[DataKind]) -> ApiResult<Instance> {
    let inst = s.store.instance(uuid, data)?;
    if !kinds.contains(&inst.kind) {
        let names: Vec<&str> = kinds.iter().map(DataKind::name).collect();
        return Err(ApiError::bad_request(format!(
            "data instance {data:?} is {}; this endpoint serves {}",
            inst.kind.name(),
            names.join(" and ")
        )));
    }
    Ok(inst)
}

/// Parses `{size}/{offset}` and bounds the voxel bytes by the request limit.
fn subvolume(s: &AppState, inst: &Instance, size: &str, offset: &str) -> ApiResult<Subvolume> {
    let size: [u32; 3] = triple(size, "size")?;
    let offset: [i32; 3] = triple(offset, "offset")?;
    let sub = Subvolume::new(offset, size)?;
    // Saturating, not `sub.voxels()`: three u32 sizes can overflow u64, and a product that wrapped
    // around to a small number would slip past this bound.
    let bytes = size
        .iter()
        .fold(inst.kind.voxel_bytes().unwrap_or(1) as u64, |n, &s| {
            n.saturating_mul(u64::from(s))
        });
    if bytes > s.config.max_request_bytes as u64 {
        return Err(ApiError::too_large(format!(
            "a {}x{}x{} subvolume is {bytes} bytes, over this node's {}-byte limit (--max-request-bytes)",
            size[0], size[1], size[2], s.config.max_request_bytes
        )));
    }
    sub.check_block_count(inst.block_size)?;
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

const VOXELS: &[DataKind] = &[DataKind::Uint8Blk, DataKind::LabelBlk];

pub async fn get_raw(
    State(s): State<AppState>,
    Path((uuid, data, dims, size, offset)): RawPath,
) -> ApiResult<Response> {
    check_dims(&dims)?;
    let inst = instance(&s, &uuid, &data, VOXELS)?;
    let sub = subvolume(&s, &inst, &size, &offset)?;
    let bytes = blocking(move || s.store.read_subvolume(&uuid, &data, sub)).await?;
    Ok(octets(bytes))
}

pub async fn post_raw(
    State(s): State<AppState>,
    Path((uuid, data, dims, size, offset)): RawPath,
    body: Bytes,
) -> ApiResult<StatusCode> {
    check_dims(&dims)?;
    let inst = instance(&s, &uuid, &data, VOXELS)?;
    let sub = subvolume(&s, &inst, &size, &offset)?;
    blocking(move || s.store.write_subvolume(&uuid, &data, sub, &body)).await?;
    Ok(StatusCode::OK)
}

#[derive(Deserialize)]
pub struct BlockQuery {
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

pub async fn subvol_blocks(
    State(s): State<AppState>,
    Path((uuid, data, size, offset)): Path<(String, String, String, String)>,
    Query(q): Query<BlockQuery>,
) -> ApiResult<Response> {
    check_block_compression(&q)?;
    let inst = instance(&s, &uuid, &data, VOXELS)?;
    let sub = subvolume(&s, &inst, &size, &offset)?;
    let blocks = sub.blocks(inst.block_size);
    let found = blocking(move || s.store.read_blocks(&uuid, &data, &blocks)).await?;
    Ok(octets(block_records(found)))
}

pub async fn specific_blocks(
    State(s): State<AppState>,
    Path((uuid, data)): Path<(String, String)>,
    Query(q): Query<BlockQuery>,
) -> ApiResult<Response> {
    check_block_compression(&q)?;
    let inst = instance(&s, &uuid, &data, VOXELS)?;
    let list = q
        .blocks
        .as_deref()
        .ok_or_else(|| ApiError::bad_request("specificblocks needs ?blocks=x,y,z,..."))?;
    let blocks = block_list(list)?;
    let bytes = (blocks.len() as u64).saturating_mul(inst.block_bytes() as u64 + 16);
    if bytes > s.config.max_request_bytes as u64 {
        return Err(ApiError::too_large(format!(
            "{} blocks may be {bytes} bytes, over this node's {}-byte limit",
            blocks.len(),
            s.config.max_request_bytes
        )));
    }
    let found = blocking(move || s.store.read_blocks(&uuid, &data, &blocks)).await?;
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

pub async fn label(
    State(s): State<AppState>,
    Path((uuid, data, point)): Path<(String, String, String)>,
) -> ApiResult<Json<Value>> {
    instance(&s, &uuid, &data, &[DataKind::LabelBlk])?;
    let p: [i32; 3] = triple(&point, "point")?;
    let labels = blocking(move || read_labels(&s, &uuid, &data, &[p])).await?;
    Ok(Json(json!({ "Label": labels[0] })))
}

pub async fn labels(
    State(s): State<AppState>,
    Path((uuid, data)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    instance(&s, &uuid, &data, &[DataKind::LabelBlk])?;
    let points: Vec<[i32; 3]> = json_list(&body).map_err(|e| {
        ApiError::bad_request(format!(
            "labels needs a JSON list of [x,y,z] points: {}",
            e.message
        ))
    })?;
    let labels = blocking(move || read_labels(&s, &uuid, &data, &points)).await?;
    Ok(Json(json!(labels)))
}

/// Labels at points, reading each touched block once.
fn read_labels(
    s: &AppState,
    uuid: &str,
    data: &str,
    points: &[[i32; 3]],
) -> dvid_store::Result<Vec<u64>> {
    let inst = s.store.instance(uuid, data)?;
    let bs = inst.block_size;
    let block_of = |p: &[i32; 3]| -> Point { std::array::from_fn(|a| p[a].div_euclid(bs[a])) };
    let mut wanted: Vec<Point> = points.iter().map(block_of).collect();
    wanted.sort_unstable();
    wanted.dedup();
    let blocks: HashMap<Point, Vec<u8>> = s
        .store
        .read_blocks(uuid, data, &wanted)?
        .into_iter()
        .collect();
    Ok(points
        .iter()
        .map(|p| {
            let b = block_of(p);
            blocks.get(&b).map_or(0, |d| {
                let l: [usize; 3] = std::array::from_fn(|a| p[a].rem_euclid(bs[a]) as usize);
                let i = ((l[2] * bs[1] as usize + l[1]) * bs[0] as usize + l[0]) * 8;
                u64::from_le_bytes(d[i..i + 8].try_into().expect("8 bytes"))
            })
        })
        .collect())
}

const KV: &[DataKind] = &[DataKind::KeyValue];

pub async fn get_key(
    State(s): State<AppState>,
    Path((uuid, data, key)): Path<(String, String, String)>,
) -> ApiResult<Response> {
    instance(&s, &uuid, &data, KV)?;
    let k = key.clone();
    match blocking(move || s.store.kv_get(&uuid, &data, &k)).await? {
        Some(v) => Ok(octets(v)),
        None => Err(ApiError::not_found(format!("key {key:?} not found"))),
    }
}

pub async fn head_key(
    State(s): State<AppState>,
    Path((uuid, data, key)): Path<(String, String, String)>,
) -> ApiResult<StatusCode> {
    instance(&s, &uuid, &data, KV)?;
    match blocking(move || s.store.kv_get(&uuid, &data, &key)).await? {
        Some(_) => Ok(StatusCode::OK),
        None => Ok(StatusCode::NOT_FOUND),
    }
}

pub async fn post_key(
    State(s): State<AppState>,
    Path((uuid, data, key)): Path<(String, String, String)>,
    body: Bytes,
) -> ApiResult<StatusCode> {
    instance(&s, &uuid, &data, KV)?;
    blocking(move || s.store.kv_put(&uuid, &data, &key, body.to_vec())).await?;
    Ok(StatusCode::OK)
}

pub async fn delete_key(
    State(s): State<AppState>,
    Path((uuid, data, key)): Path<(String, String, String)>,
) -> ApiResult<StatusCode> {
    instance(&s, &uuid, &data, KV)?;
    blocking(move || s.store.kv_delete(&uuid, &data, &key)).await?;
    Ok(StatusCode::OK)
}

pub async fn keys(
    State(s): State<AppState>,
    Path((uuid, data)): Path<(String, String)>,
) -> ApiResult<Json<Vec<String>>> {
    instance(&s, &uuid, &data, KV)?;
    Ok(Json(
        blocking(move || s.store.kv_keys(&uuid, &data, None, None)).await?,
    ))
}

pub async fn key_range(
    State(s): State<AppState>,
    Path((uuid, data, from, to)): Path<(String, String, String, String)>,
) -> ApiResult<Json<Vec<String>>> {
    instance(&s, &uuid, &data, KV)?;
    if from > to {
        return Err(ApiError::bad_request(format!(
            "keyrange start {from:?} sorts after its end {to:?}"
        )));
    }
    Ok(Json(
        blocking(move || s.store.kv_keys(&uuid, &data, Some(&from), Some(&to))).await?,
    ))
}

fn octets(bytes: Vec<u8>) -> Response {
    ([(header::CONTENT_TYPE, "application/octet-stream")], bytes).into_response()
}
