//! labelmap's HTTP package: the voxel endpoints (reads map supervoxels to bodies unless
//! `?supervoxels=true`; `?scale=N` reads level `NAME_N`), and DVID's proofreading endpoints:
//! mapping, indices, sizes, sparse volumes, merge, cleave, labels and mutations, with DVID's
//! request and response formats.

use super::{Target, TypeApi, labelmap_blocks, labelmap_indices, labelmap_split, voxels};
use crate::http::formats::{self, rle};
use crate::http::params::{json_list, triple};
use crate::http::{ApiError, ApiResult, AppState, blocking};
use axum::body::Bytes;
use axum::extract::{Extension, Path, Query, State};
use axum::http::{Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use dvid_store::Instance;
use dvid_store::diff::VersionDiff;
use dvid_store::types::labelmap::proto::MappingOps;
use dvid_store::types::labelmap::{Editor, body_of_key};
use prost::Message;
use serde::Deserialize;
use serde_json::{Map, Value, json};

pub struct LabelMap;

pub static LABELMAP: LabelMap = LabelMap;

impl TypeApi for LabelMap {
    fn name(&self) -> &'static str {
        "labelmap"
    }

    fn type_url(&self) -> &'static str {
        "github.com/janelia-flyem/dvid/datatype/labelmap"
    }

    fn type_version(&self) -> &'static str {
        "0.1"
    }

    fn compression(&self, inst: &Instance) -> String {
        voxels::compression(inst)
    }

    fn extended(&self, inst: &Instance, levels: u32) -> Value {
        let mut e = voxels::extended(inst, "uint64", "labelmap", false);
        e["IndexedLabels"] = json!(true);
        e["MaxDownresLevel"] = json!(levels);
        e
    }

    fn routes(&self) -> Router<AppState> {
        voxels::routes()
            .route("/blocks", post(labelmap_blocks::post_blocks))
            .route("/blocks/{size}/{offset}", get(labelmap_blocks::get_blocks))
            .route("/specificblocks", get(labelmap_blocks::specific_blocks))
            .route("/ingest-supervoxels", post(labelmap_blocks::post_blocks))
            .route("/label/{point}", get(label))
            .route("/labels", get(labels))
            .route("/mapping", get(mapping))
            .route("/mappings", get(mappings).post(post_mappings))
            .route("/supervoxels/{label}", get(supervoxels))
            .route("/size/{label}", get(size))
            .route("/sizes", get(sizes))
            .route("/sparsevol/{label}", get(sparsevol).head(sparsevol))
            .route("/sparsevol-size/{label}", get(sparsevol_size))
            .route("/sparsevol-coarse/{label}", get(sparsevol_coarse))
            .route(
                "/index/{label}",
                get(labelmap_indices::index).post(labelmap_indices::post_index),
            )
            .route(
                "/indices",
                get(labelmap_indices::indices).post(labelmap_indices::post_indices),
            )
            .route(
                "/indices-compressed",
                get(labelmap_indices::indices_compressed),
            )
            .route("/listlabels", get(listlabels))
            .route("/partial-bodies", get(partial_bodies))
            .route(
                "/split-supervoxel/{label}",
                post(labelmap_split::split_supervoxel),
            )
            .route("/supervoxel-splits", get(labelmap_split::supervoxel_splits))
            .route("/lastmod/{label}", get(lastmod))
            .route("/maxlabel", get(maxlabel))
            .route("/nextlabel", get(nextlabel))
            .route("/nextlabel/{count}", post(allocate))
            .route("/set-nextlabel/{label}", post(set_nextlabel))
            .route("/merge", post(merge))
            .route("/cleave/{label}", post(cleave))
            .route("/split/{label}", post(labelmap_split::split_body))
            .route("/renumber", post(renumber))
            .route("/mutations", get(mutations))
            .route("/history/{label}/{from}/{to}", get(history))
    }

    fn help(&self) -> &'static [&'static str] {
        &[include_str!("voxels.txt"), include_str!("labelmap.txt")]
    }

    fn openapi(&self) -> &'static [&'static str] {
        &[
            include_str!("voxels.json"),
            include_str!("labelblk.json"),
            include_str!("labelmap.json"),
        ]
    }

    /// Blocks as for every voxel type, and the bodies whose label index changed.
    fn diff_fields(&self, d: &VersionDiff, out: &mut Map<String, Value>) {
        voxels::diff_fields(d, out);
        let bodies: Vec<u64> = d
            .changes
            .iter()
            .filter_map(|c| body_of_key(&c.index))
            .collect();
        out.insert("bodies".into(), json!(bodies));
    }
}

/// DVID's query flags of the labelmap endpoints, and who is asking (`u`, `app`).
#[derive(Deserialize, Default)]
pub struct LabelQuery {
    supervoxels: Option<String>,
    nolookup: Option<String>,
    format: Option<String>,
    u: Option<String>,
    app: Option<String>,
    minx: Option<i32>,
    maxx: Option<i32>,
    miny: Option<i32>,
    maxy: Option<i32>,
    minz: Option<i32>,
    maxz: Option<i32>,
    scale: Option<String>,
    start: Option<String>,
    number: Option<String>,
    sizes: Option<String>,
}

impl LabelQuery {
    fn supervoxels(&self) -> ApiResult<bool> {
        flag(self.supervoxels.as_deref(), "supervoxels")
    }

    fn editor(&self) -> Editor {
        Editor {
            user: self.u.clone().unwrap_or_default(),
            app: self.app.clone().unwrap_or_default(),
        }
    }

    /// The inclusive voxel bounds given by `minx`…`maxz`; unbounded axes are open.
    fn bounds(&self) -> Option<([i32; 3], [i32; 3])> {
        let lo = [self.minx, self.miny, self.minz];
        let hi = [self.maxx, self.maxy, self.maxz];
        if lo.iter().chain(hi.iter()).all(Option::is_none) {
            return None;
        }
        Some((
            lo.map(|v| v.unwrap_or(i32::MIN)),
            hi.map(|v| v.unwrap_or(i32::MAX)),
        ))
    }
}

/// A DVID boolean query flag: `true`/`on`/`1` or `false`/`off`/`0`.
pub fn flag(v: Option<&str>, name: &str) -> ApiResult<bool> {
    match v.map(str::to_ascii_lowercase).as_deref() {
        None | Some("false" | "off" | "0" | "") => Ok(false),
        Some("true" | "on" | "1") => Ok(true),
        Some(other) => Err(ApiError::bad_request(format!(
            "{name}={other:?}: expected true or false"
        ))),
    }
}

/// A label in a path: a positive 64-bit integer.
pub(super) fn label_arg(text: &str) -> ApiResult<u64> {
    match text.parse::<u64>() {
        Ok(0) => Err(ApiError::bad_request(
            "label 0 is background: give a body or supervoxel id",
        )),
        Ok(l) => Ok(l),
        Err(_) => Err(ApiError::bad_request(format!(
            "label {text:?}: expected a positive 64-bit integer"
        ))),
    }
}

pub(super) fn labels_body(body: &[u8], what: &str) -> ApiResult<Vec<u64>> {
    json_list(body).map_err(|e| {
        ApiError::bad_request(format!("{what} needs a JSON list of labels: {}", e.message))
    })
}

pub(super) fn missing(label: u64, supervoxels: bool, h: &dvid_store::DataHandle) -> ApiError {
    let what = if supervoxels { "supervoxel" } else { "body" };
    ApiError::not_found(format!(
        "{what} {label} has no voxels in {:?} at version {}",
        h.instance.name, h.uuid
    ))
}

async fn label(
    State(s): State<AppState>,
    Extension(Target(h)): Extension<Target>,
    Path(point): Path<String>,
    Query(q): Query<LabelQuery>,
) -> ApiResult<Json<Value>> {
    let p: [i32; 3] = triple(&point, "point")?;
    let labels = labels_at(s, &h, &q, vec![p]).await?;
    Ok(Json(json!({ "Label": labels[0] })))
}

async fn labels(
    State(s): State<AppState>,
    Extension(Target(h)): Extension<Target>,
    Query(q): Query<LabelQuery>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    let points: Vec<[i32; 3]> = json_list(&body).map_err(|e| {
        ApiError::bad_request(format!(
            "labels needs a JSON list of [x,y,z] points: {}",
            e.message
        ))
    })?;
    Ok(Json(json!(labels_at(s, &h, &q, points).await?)))
}

/// Labels at points of `?scale=k` (level `NAME_k`, in its voxels), bodies unless
/// `?supervoxels=true`.
async fn labels_at(
    s: AppState,
    h: &dvid_store::DataHandle,
    q: &LabelQuery,
    points: Vec<[i32; 3]>,
) -> ApiResult<Vec<u64>> {
    let src = super::raw::source_of(&s, h, q.scale.as_deref(), q.supervoxels.as_deref())?;
    blocking(move || src.to_bodies(&s, s.store.labels_at(&src.read, &points)?)).await
}

async fn mapping(
    State(s): State<AppState>,
    Extension(Target(h)): Extension<Target>,
    Query(q): Query<LabelQuery>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    let svs = labels_body(&body, "mapping")?;
    let nolookup = flag(q.nolookup.as_deref(), "nolookup")?;
    let bodies = blocking(move || s.store.mapping(&h, &svs, nolookup)).await?;
    Ok(Json(json!(bodies)))
}

/// Every supervoxel that is not its own body: `sv body` lines, or u64 pairs (`format=binary`).
async fn mappings(
    State(s): State<AppState>,
    Extension(Target(h)): Extension<Target>,
    Query(q): Query<LabelQuery>,
) -> ApiResult<Response> {
    let binary = match q.format.as_deref() {
        None | Some("text") => false,
        Some("binary") => true,
        Some(f) => {
            return Err(ApiError::bad_request(format!(
                "format {f:?}: mappings come as text (the default) or binary"
            )));
        }
    };
    let pairs = blocking(move || s.store.mappings(&h)).await?;
    if binary {
        let bytes: Vec<u8> = pairs
            .iter()
            .flat_map(|(sv, b)| [sv.to_le_bytes(), b.to_le_bytes()].concat())
            .collect();
        return Ok(voxels::octets(bytes));
    }
    let text: String = pairs.iter().map(|(sv, b)| format!("{sv} {b}\n")).collect();
    Ok(([(header::CONTENT_TYPE, "text/plain")], text).into_response())
}

/// DVID's `MappingOps` protobuf: each op's supervoxels now belong to its body.
async fn post_mappings(
    State(s): State<AppState>,
    Extension(Target(h)): Extension<Target>,
    body: Bytes,
) -> ApiResult<StatusCode> {
    let ops = MappingOps::decode(&body[..])
        .map_err(|e| ApiError::bad_request(format!("body is no MappingOps protobuf: {e}")))?;
    blocking(move || s.store.apply_mappings(&h, &ops.mappings)).await?;
    Ok(StatusCode::OK)
}

async fn supervoxels(
    State(s): State<AppState>,
    Extension(Target(h)): Extension<Target>,
    Path(label): Path<String>,
) -> ApiResult<Json<Value>> {
    let body = label_arg(&label)?;
    let hh = h.clone();
    let idx = blocking(move || s.store.label_index(&hh, body)).await?;
    let idx = idx.ok_or_else(|| missing(body, false, &h))?;
    Ok(Json(json!(idx.supervoxels())))
}

async fn size(
    State(s): State<AppState>,
    Extension(Target(h)): Extension<Target>,
    Path(label): Path<String>,
    Query(q): Query<LabelQuery>,
) -> ApiResult<Json<Value>> {
    let label = label_arg(&label)?;
    let svs = q.supervoxels()?;
    let hh = h.clone();
    let n = blocking(move || s.store.sizes(&hh, &[label], svs)).await?[0];
    if n == 0 {
        return Err(missing(label, svs, &h));
    }
    Ok(Json(json!({ "voxels": n })))
}

async fn sizes(
    State(s): State<AppState>,
    Extension(Target(h)): Extension<Target>,
    Query(q): Query<LabelQuery>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    let labels = labels_body(&body, "sizes")?;
    let svs = q.supervoxels()?;
    Ok(Json(json!(
        blocking(move || s.store.sizes(&h, &labels, svs)).await?
    )))
}

/// A label's voxels as DVID's RLEs; HEAD answers 200 if it has voxels, 204 if not.
async fn sparsevol(
    method: Method,
    State(s): State<AppState>,
    Extension(Target(h)): Extension<Target>,
    Path(label): Path<String>,
    Query(q): Query<LabelQuery>,
) -> ApiResult<Response> {
    let label = label_arg(&label)?;
    let svs = q.supervoxels()?;
    if method == Method::HEAD {
        let hh = h.clone();
        let idx = blocking(move || s.store.index_of_label(&hh, label, svs)).await?;
        return Ok(if idx.is_some() {
            StatusCode::OK
        } else {
            StatusCode::NO_CONTENT
        }
        .into_response());
    }
    let (srles, blocks) = match q.format.as_deref() {
        None | Some("rles") => (false, false),
        Some("srles") => (true, false),
        Some("blocks") => (false, true),
        Some(f) => {
            return Err(ApiError::bad_request(format!(
                "format {f:?}: sparsevol comes as rles (the default), srles or blocks"
            )));
        }
    };
    let bounds = q.bounds();
    // ?scale=k reads level NAME_k (its voxels are supervoxels); the index is the labelmap's.
    let level = super::raw::source_of(&s, &h, q.scale.as_deref(), Some("true"))?.read;
    let scale = q.scale.as_deref().map_or(Ok(0), |t| {
        t.parse::<u32>()
            .map_err(|_| ApiError::bad_request(format!("scale {t:?}: expected a level number")))
    })?;
    let hh = h.clone();
    if blocks {
        // DVID's blocks form: bounds choose whole blocks.
        use formats::sparse_blocks::{block_record, check_block_size, encode};
        let bs = level.instance.voxels()?.block_size();
        check_block_size(bs).map_err(ApiError::bad_request)?;
        let records = blocking(move || {
            s.store
                .map_body_blocks(&hh, &level, scale, label, svs, bounds, block_record)
        })
        .await?;
        let records = records.ok_or_else(|| missing(label, svs, &h))?;
        return Ok(voxels::octets(encode(
            label,
            bs,
            records.into_iter().flatten(),
        )));
    }
    let runs = blocking(move || {
        s.store
            .sparsevol_scaled(&hh, &level, scale, label, svs, bounds)
    })
    .await?;
    let runs = runs.ok_or_else(|| missing(label, svs, &h))?;
    Ok(voxels::octets(if srles {
        rle::runs(&runs)
    } else {
        rle::encode(&runs)
    }))
}

async fn sparsevol_size(
    State(s): State<AppState>,
    Extension(Target(h)): Extension<Target>,
    Path(label): Path<String>,
    Query(q): Query<LabelQuery>,
) -> ApiResult<Json<Value>> {
    let label = label_arg(&label)?;
    let svs = q.supervoxels()?;
    let hh = h.clone();
    let idx = blocking(move || s.store.index_of_label(&hh, label, svs)).await?;
    let idx = idx.ok_or_else(|| missing(label, svs, &h))?;
    let bs = h.instance.voxels()?.block_size();
    let blocks = idx.block_coords(None);
    let lo: [i32; 3] =
        std::array::from_fn(|a| blocks.iter().map(|b| b[a]).min().unwrap_or(0) * bs[a]);
    let hi: [i32; 3] =
        std::array::from_fn(|a| (blocks.iter().map(|b| b[a]).max().unwrap_or(0) + 1) * bs[a] - 1);
    Ok(Json(json!({
        "voxels": idx.voxels(None),
        "numblocks": blocks.len(),
        "minvoxel": lo,
        "maxvoxel": hi,
    })))
}

/// The blocks holding a label, as RLEs in block coordinates (DVID's coarse sparse volume).
async fn sparsevol_coarse(
    State(s): State<AppState>,
    Extension(Target(h)): Extension<Target>,
    Path(label): Path<String>,
    Query(q): Query<LabelQuery>,
) -> ApiResult<Response> {
    let label = label_arg(&label)?;
    let svs = q.supervoxels()?;
    let hh = h.clone();
    let idx = blocking(move || s.store.index_of_label(&hh, label, svs)).await?;
    let idx = idx.ok_or_else(|| missing(label, svs, &h))?;
    let mut runs: Vec<[i32; 4]> = Vec::new();
    for b in idx.block_coords(None) {
        match runs.last_mut() {
            Some(r) if r[1] == b[1] && r[2] == b[2] && r[0] + r[3] == b[0] => r[3] += 1,
            _ => runs.push([b[0], b[1], b[2], 1]),
        }
    }
    Ok(voxels::octets(rle::encode(&runs)))
}

/// On a region pull, the bodies only partly inside the held region (not a DVID endpoint).
async fn partial_bodies(
    State(s): State<AppState>,
    Extension(Target(h)): Extension<Target>,
) -> ApiResult<Json<Value>> {
    Ok(Json(json!(
        blocking(move || s.store.partial_bodies(&h)).await?
    )))
}

/// Most labels one `listlabels` answers, as DVID.
const MAX_LISTED: usize = 10_000_000;

/// Bodies from `start` on, as u64 LE (with `sizes=true`, each followed by its voxels).
async fn listlabels(
    State(s): State<AppState>,
    Extension(Target(h)): Extension<Target>,
    Query(q): Query<LabelQuery>,
) -> ApiResult<Response> {
    let number = |text: Option<&str>, name: &str, default: u64| -> ApiResult<u64> {
        text.map_or(Ok(default), |t| {
            t.parse().map_err(|_| {
                ApiError::bad_request(format!("{name}={t:?}: expected a non-negative integer"))
            })
        })
    };
    let start = number(q.start.as_deref(), "start", 0)?;
    let count = number(q.number.as_deref(), "number", MAX_LISTED as u64)?.min(MAX_LISTED as u64);
    let sizes = flag(q.sizes.as_deref(), "sizes")?;
    let listed = blocking(move || s.store.list_labels(&h, start, count as usize, sizes)).await?;
    let mut out = Vec::with_capacity(listed.len() * if sizes { 16 } else { 8 });
    for (label, voxels) in listed {
        out.extend_from_slice(&label.to_le_bytes());
        if sizes {
            out.extend_from_slice(&voxels.to_le_bytes());
        }
    }
    Ok(voxels::octets(out))
}

async fn lastmod(
    State(s): State<AppState>,
    Extension(Target(h)): Extension<Target>,
    Path(label): Path<String>,
) -> ApiResult<Json<Value>> {
    let body = label_arg(&label)?;
    let hh = h.clone();
    let idx = blocking(move || s.store.label_index(&hh, body)).await?;
    let idx = idx.ok_or_else(|| missing(body, false, &h))?;
    Ok(Json(json!({
        "mutation id": idx.last_mutid,
        "last mod user": idx.last_mod_user,
        "last mod app": idx.last_mod_app,
        "last mod time": idx.last_mod_time,
    })))
}

async fn maxlabel(
    State(s): State<AppState>,
    Extension(Target(h)): Extension<Target>,
) -> ApiResult<Json<Value>> {
    let max = blocking(move || s.store.max_label(&h)).await?;
    Ok(Json(json!({ "maxlabel": max })))
}

async fn nextlabel(
    State(s): State<AppState>,
    Extension(Target(h)): Extension<Target>,
) -> ApiResult<Json<Value>> {
    let next = blocking(move || s.store.next_label(&h)).await?;
    Ok(Json(json!({ "nextlabel": next })))
}

/// Reserves new labels: `{"start": S, "end": E}`, inclusive.
async fn allocate(
    State(s): State<AppState>,
    Extension(Target(h)): Extension<Target>,
    Path(count): Path<String>,
) -> ApiResult<Json<Value>> {
    let count: u64 = count.parse().map_err(|_| {
        ApiError::bad_request(format!("count {count:?}: expected a positive integer"))
    })?;
    let (start, end) = blocking(move || s.store.allocate_labels(&h, count)).await?;
    Ok(Json(json!({ "start": start, "end": end })))
}

/// Makes `label` the next label handed out (from this node's ranges).
async fn set_nextlabel(
    State(s): State<AppState>,
    Extension(Target(h)): Extension<Target>,
    Path(label): Path<String>,
) -> ApiResult<StatusCode> {
    let label = label_arg(&label)?;
    blocking(move || s.store.set_next_label(&h, label)).await?;
    Ok(StatusCode::OK)
}

/// `[to, from, ...]`: merges bodies `from` into `to`.
async fn merge(
    State(s): State<AppState>,
    Extension(Target(h)): Extension<Target>,
    Query(q): Query<LabelQuery>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    let labels = labels_body(&body, "merge")?;
    let Some((&to, from)) = labels.split_first() else {
        return Err(ApiError::bad_request(
            "merge needs a JSON list [to, from, ...]: got an empty list",
        ));
    };
    let from = from.to_vec();
    let who = q.editor();
    let m = blocking(move || s.store.merge_bodies(&h, to, &from, &who)).await?;
    Ok(Json(json!({ "MutationID": m })))
}

/// `[sv, ...]`: cleaves these supervoxels off the body into a new one.
async fn cleave(
    State(s): State<AppState>,
    Extension(Target(h)): Extension<Target>,
    Path(label): Path<String>,
    Query(q): Query<LabelQuery>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    let target = label_arg(&label)?;
    let svs = labels_body(&body, "cleave")?;
    let who = q.editor();
    let c = blocking(move || s.store.cleave_body(&h, target, &svs, &who)).await?;
    Ok(Json(
        json!({ "CleavedLabel": c.label, "MutationID": c.mutation }),
    ))
}

/// `[new, old, new, old, ...]`: each body `old` takes label `new`, one mutation per pair, in
/// order. A pair that fails stops the rest; the pairs before it stay renumbered, as in DVID, and
/// the message says how many.
async fn renumber(
    State(s): State<AppState>,
    Extension(Target(h)): Extension<Target>,
    Query(q): Query<LabelQuery>,
    body: Bytes,
) -> ApiResult<StatusCode> {
    let labels = labels_body(&body, "renumber")?;
    if labels.is_empty() || labels.len() % 2 != 0 {
        return Err(ApiError::bad_request(format!(
            "renumber needs a JSON list of pairs [new, old, new, old, ...]: got {} labels",
            labels.len()
        )));
    }
    let who = q.editor();
    blocking(move || {
        for (done, pair) in labels.chunks_exact(2).enumerate() {
            if let Err(e) = s.store.renumber_body(&h, pair[0], pair[1], &who) {
                let mut e = ApiError::from(e);
                e.message = format!(
                    "renumbering body {} to {}: {} ({done} pairs before it were renumbered)",
                    pair[1], pair[0], e.message
                );
                return Ok(Err(e));
            }
        }
        Ok(Ok(StatusCode::OK))
    })
    .await?
}

/// The mutation records naming a label, from version `from` to version `to` (its own path's
/// version must be one of them; DVID's order of the two UUIDs).
async fn history(
    State(s): State<AppState>,
    Extension(Target(h)): Extension<Target>,
    Path((label, from, to)): Path<(String, String, String)>,
) -> ApiResult<Json<Value>> {
    let label = label_arg(&label)?;
    let uuid = |text: &str| {
        s.store
            .resolve(text)
            .map(|v| v.uuid)
            .map_err(|e| ApiError::bad_request(format!("version {text:?} in history: {e}")))
    };
    let (from, to) = (uuid(&from)?, uuid(&to)?);
    let target = s.store.handle(&to.to_hex(), &h.instance.name)?;
    Ok(Json(json!(
        blocking(move || s.store.history(&target, label, from)).await?
    )))
}

async fn mutations(
    State(s): State<AppState>,
    Extension(Target(h)): Extension<Target>,
) -> ApiResult<Json<Value>> {
    Ok(Json(json!(blocking(move || s.store.mutations(&h)).await?)))
}
