//! labelmap's label indices as DVID's `LabelIndex` protobufs: one body's (`index`), several
//! (`indices`, and `indices-compressed` as DVID stores them), and indices a client stores itself
//! (`POST index`, `POST indices`).

use super::Target;
use super::labelmap::{label_arg, labels_body, missing};
use crate::http::types::voxels;
use crate::http::{ApiError, ApiResult, AppState, blocking};
use axum::body::Bytes;
use axum::extract::{Extension, Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use dvid_store::types::labelmap::proto::{LabelIndex, LabelIndices};
use prost::Message;

/// A body's label index as DVID's `LabelIndex` protobuf.
pub async fn index(
    State(s): State<AppState>,
    Extension(Target(h)): Extension<Target>,
    Path(label): Path<String>,
) -> ApiResult<Response> {
    let body = label_arg(&label)?;
    let hh = h.clone();
    let idx = blocking(move || s.store.label_index(&hh, body)).await?;
    let idx = idx.ok_or_else(|| missing(body, false, &h))?;
    Ok(voxels::octets(idx.encode_to_vec()))
}

/// Label indices of the bodies listed (JSON body) as DVID's `LabelIndices`, in the order asked;
/// a body without voxels answers an index with only its label.
pub async fn indices(
    State(s): State<AppState>,
    Extension(Target(h)): Extension<Target>,
    body: Bytes,
) -> ApiResult<Response> {
    let bodies = labels_body(&body, "indices")?;
    let out = blocking(move || {
        let indices = bodies
            .iter()
            .map(|&b| {
                Ok(s.store.label_index(&h, b)?.unwrap_or_else(|| LabelIndex {
                    label: b,
                    ..Default::default()
                }))
            })
            .collect::<dvid_store::Result<_>>()?;
        Ok(LabelIndices { indices })
    })
    .await?;
    Ok(voxels::octets(out.encode_to_vec()))
}

/// Most labels one `indices-compressed` answers, as DVID.
const MAX_COMPRESSED_INDICES: usize = 50_000;

/// Label indices as DVID stores them: for each label asked, `u64 length, u64 label` and that
/// many bytes: `0x80` (lz4), the u32 size of the `LabelIndex` protobuf, one LZ4 block of it.
/// Length 0 for a label without voxels.
pub async fn indices_compressed(
    State(s): State<AppState>,
    Extension(Target(h)): Extension<Target>,
    body: Bytes,
) -> ApiResult<Response> {
    let labels = labels_body(&body, "indices-compressed")?;
    if labels.len() > MAX_COMPRESSED_INDICES {
        return Err(ApiError::bad_request(format!(
            "{} labels asked: indices-compressed answers at most {MAX_COMPRESSED_INDICES}",
            labels.len()
        )));
    }
    let out = blocking(move || {
        let mut out = Vec::new();
        for label in labels {
            let stored = match s.store.label_index(&h, label)? {
                None => vec![],
                Some(idx) => {
                    let pb = idx.encode_to_vec();
                    let mut v = vec![0x80];
                    v.extend_from_slice(&(pb.len() as u32).to_le_bytes());
                    v.extend_from_slice(&crate::http::formats::lz4(&pb));
                    v
                }
            };
            out.extend_from_slice(&(stored.len() as u64).to_le_bytes());
            out.extend_from_slice(&label.to_le_bytes());
            out.extend_from_slice(&stored);
        }
        Ok(out)
    })
    .await?;
    Ok(voxels::octets(out))
}

/// Stores a body's index (DVID's `LabelIndex` protobuf, for this label); an index without
/// blocks deletes the label's.
pub async fn post_index(
    State(s): State<AppState>,
    Extension(Target(h)): Extension<Target>,
    Path(label): Path<String>,
    body: Bytes,
) -> ApiResult<StatusCode> {
    let label = label_arg(&label)?;
    let idx = LabelIndex::decode(body.as_ref()).map_err(|e| {
        ApiError::bad_request(format!("the body is not a LabelIndex protobuf: {e}"))
    })?;
    if idx.label != label {
        return Err(ApiError::bad_request(format!(
            "the LabelIndex is for label {} but was posted to index/{label}",
            idx.label
        )));
    }
    blocking(move || s.store.put_label_indices(&h, vec![idx])).await?;
    Ok(StatusCode::OK)
}

/// Stores the indices of a `LabelIndices` protobuf in one write; an index without blocks
/// deletes its label's.
pub async fn post_indices(
    State(s): State<AppState>,
    Extension(Target(h)): Extension<Target>,
    body: Bytes,
) -> ApiResult<StatusCode> {
    let all = LabelIndices::decode(body.as_ref()).map_err(|e| {
        ApiError::bad_request(format!("the body is not a LabelIndices protobuf: {e}"))
    })?;
    blocking(move || s.store.put_label_indices(&h, all.indices)).await?;
    Ok(StatusCode::OK)
}
