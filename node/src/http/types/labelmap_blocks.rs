//! labelmap's block streams, as DVID serves them: `GET blocks/{size}/{offset}` (a block-aligned
//! subvolume) and `GET specificblocks?blocks=x,y,z,...` send each stored block framed (see
//! [`label_block`]) as DVID's gzipped label Block or as plain labels; `POST blocks` and
//! `POST ingest-supervoxels` take such a stream of gzipped Blocks of supervoxels.

use super::{Target, raw};
use crate::http::formats::{self, label_block};
use crate::http::info::levels_of;
use crate::http::params::{block_list, triple};
use crate::http::{ApiError, ApiResult, AppState, blocking};
use axum::body::Bytes;
use axum::extract::{Extension, Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use dvid_store::StoreError;
use dvid_store::geometry::cover;
use dvid_store::{DataHandle, Point, Subvolume};
use serde::Deserialize;

/// DVID's query of the block endpoints.
#[derive(Deserialize, Default)]
pub struct BlocksQuery {
    supervoxels: Option<String>,
    scale: Option<String>,
    compression: Option<String>,
    blocks: Option<String>,
    downres: Option<String>,
    /// DVID's request to queue behind other heavy reads; every read here is served at once.
    #[allow(dead_code)]
    throttle: Option<String>,
    /// DVID skips the label index with it; this node always keeps its index whole.
    #[allow(dead_code)]
    noindexing: Option<String>,
}

/// What a GET sends for each block.
#[derive(Clone, Copy)]
enum Payload {
    /// The gzipped label Block.
    Blocks,
    /// The block's little-endian u64 labels, as one LZ4 block.
    Lz4,
    Gzip,
    Uncompressed,
}

fn payload(compression: Option<&str>, default: Payload) -> ApiResult<Payload> {
    match compression {
        None | Some("") => Ok(default),
        Some("blocks") => Ok(Payload::Blocks),
        Some("lz4") => Ok(Payload::Lz4),
        Some("gzip") => Ok(Payload::Gzip),
        Some("uncompressed") => Ok(Payload::Uncompressed),
        Some(other) => Err(ApiError::bad_request(format!(
            "compression {other:?}: labelmap blocks come as blocks, lz4, gzip or uncompressed"
        ))),
    }
}

/// The stored blocks of a block-aligned subvolume (`lz4` unless asked otherwise, as DVID).
pub async fn get_blocks(
    State(s): State<AppState>,
    Extension(Target(h)): Extension<Target>,
    Path((size, offset)): Path<(String, String)>,
    Query(q): Query<BlocksQuery>,
) -> ApiResult<Response> {
    let form = payload(q.compression.as_deref(), Payload::Lz4)?;
    let bs = h.instance.voxels()?.block_size();
    let size: [u32; 3] = triple(&size, "size")?;
    let offset: [i32; 3] = triple(&offset, "offset")?;
    let aligned = (0..3).all(|a| offset[a] % bs[a] == 0 && size[a] as i32 % bs[a] == 0);
    if !aligned {
        return Err(ApiError::bad_request(format!(
            "blocks takes a block-aligned subvolume: offset {offset:?} and size {size:?} must be \
             multiples of the block size {bs:?}"
        )));
    }
    let sub = Subvolume::new(offset, size)?;
    sub.check_block_count(bs)?;
    stream(s, h, &q, sub.blocks(bs), form).await
}

/// The stored blocks among `?blocks=x,y,z,...` (gzipped label Blocks unless asked otherwise).
pub async fn specific_blocks(
    State(s): State<AppState>,
    Extension(Target(h)): Extension<Target>,
    Query(q): Query<BlocksQuery>,
) -> ApiResult<Response> {
    let form = payload(q.compression.as_deref(), Payload::Blocks)?;
    let list = q
        .blocks
        .as_deref()
        .ok_or_else(|| ApiError::bad_request("specificblocks needs ?blocks=x,y,z,..."))?;
    let blocks = block_list(list)?;
    let most = s.config.max_request_bytes / h.instance.voxels()?.block_bytes().max(1);
    if blocks.len() > most {
        return Err(ApiError::too_large(format!(
            "{} blocks asked; this node sends at most {most} in one answer",
            blocks.len()
        )));
    }
    stream(s, h, &q, blocks, form).await
}

async fn stream(
    s: AppState,
    h: DataHandle,
    q: &BlocksQuery,
    blocks: Vec<Point>,
    form: Payload,
) -> ApiResult<Response> {
    let src = raw::source_of(&s, &h, q.scale.as_deref(), q.supervoxels.as_deref())?;
    let bs = h.instance.voxels()?.block_size().map(|n| n as usize);
    let out = blocking(move || {
        let mut out = Vec::new();
        for (b, raw) in s.store.read_blocks(&src.read, &blocks)? {
            let svs: Vec<u64> = raw
                .chunks_exact(8)
                .map(|c| u64::from_le_bytes(c.try_into().expect("8-byte labels")))
                .collect();
            let labels = src.to_bodies(&s, svs)?;
            let bytes = || {
                labels
                    .iter()
                    .flat_map(|l| l.to_le_bytes())
                    .collect::<Vec<u8>>()
            };
            let payload = match form {
                Payload::Blocks => label_block::encode_gzip(&labels, bs),
                Payload::Lz4 => formats::lz4(&bytes()),
                Payload::Gzip => formats::gzip(&bytes()),
                Payload::Uncompressed => bytes(),
            };
            label_block::frame(&mut out, b, &payload);
        }
        Ok(out)
    })
    .await?;
    Ok(super::voxels::octets(out))
}

/// Writes a stream of gzipped label Blocks of supervoxels (`?scale=k` to a level; `?downres=true`
/// brings the levels up to date after a write at scale 0). Every block is checked before any is
/// written: one bad block writes nothing.
pub async fn post_blocks(
    State(s): State<AppState>,
    Extension(Target(h)): Extension<Target>,
    Query(q): Query<BlocksQuery>,
    body: Bytes,
) -> ApiResult<StatusCode> {
    if !matches!(q.compression.as_deref(), None | Some("") | Some("blocks")) {
        return Err(ApiError::bad_request(
            "POST blocks takes gzipped label Blocks only (compression=blocks)",
        ));
    }
    let downres = super::labelmap::flag(q.downres.as_deref(), "downres")?;
    let scaled = !matches!(q.scale.as_deref(), None | Some("0"));
    if downres && scaled {
        return Err(ApiError::bad_request(
            "downres builds the levels from scale 0: write at scale 0 to use it",
        ));
    }
    let target = raw::source_of(&s, &h, q.scale.as_deref(), Some("true"))?.read;
    let bs = h.instance.voxels()?.block_size();
    let size = bs.map(|n| n as usize);
    blocking(move || {
        let bad = StoreError::BadRequest;
        let frames = label_block::unframe(&body).map_err(bad)?;
        let mut blocks = Vec::with_capacity(frames.len());
        let mut seen = std::collections::HashSet::new();
        let mut extents: Option<(Point, Point)> = None;
        for (b, payload) in frames {
            if !seen.insert(b) {
                return Err(bad(format!("block {b:?} appears twice in the stream")));
            }
            let labels = label_block::decode_gzip(payload, size)
                .map_err(|e| bad(format!("block {b:?}: {e}")))?;
            let lo: Point = std::array::from_fn(|a| b[a].saturating_mul(bs[a]));
            let hi: Point = std::array::from_fn(|a| lo[a].saturating_add(bs[a] - 1));
            extents = Some(extents.map_or((lo, hi), |e| cover(e, (lo, hi))));
            blocks.push((b, labels.iter().flat_map(|l| l.to_le_bytes()).collect()));
        }
        let Some(extents) = extents else {
            return Ok(());
        };
        s.store.write_blocks(&target, blocks, extents)?;
        if downres {
            let (uuid, name) = (h.uuid.to_hex(), &h.instance.name);
            let levels = levels_of(name, |n| s.store.handle(&uuid, n).is_ok());
            s.store
                .downres(&uuid, name, (levels > 0).then_some(levels))?;
        }
        Ok(())
    })
    .await?;
    Ok(StatusCode::OK)
}
