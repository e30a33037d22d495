//! `raw` and `isotropic` of the voxel types, as DVID serves them: 3-D subvolumes (`0_1_2`) as
//! bytes (lz4, gzip, or Neuroglancer's compressed segmentation on request) or, for grayscale, as
//! one JPEG of stacked slices; 2-D slices (`xy`, `xz`, `yz`) as PNG or JPEG.

use super::Target;
use super::voxels::{octets, subvolume};
use crate::http::formats::{self, compressed_segmentation};
use crate::http::params::{pair, triple};
use crate::http::{ApiError, ApiResult, AppState, blocking};
use axum::body::Bytes;
use axum::extract::{Extension, Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use dvid_store::{DataHandle, Instance, Subvolume, jpeg};
use serde::Deserialize;

/// `{dims}/{size}/{offset}[/{format}]`.
#[derive(Deserialize)]
pub struct RawPath {
    dims: String,
    size: String,
    offset: String,
    format: Option<String>,
}

#[derive(Deserialize)]
pub struct RawQuery {
    compression: Option<String>,
    quality: Option<String>,
    roi: Option<String>,
    supervoxels: Option<String>,
    scale: Option<String>,
}

/// Where a read's labels come from, and the labelmap whose mapping turns them into bodies.
pub(super) struct Source {
    pub read: DataHandle,
    pub map: Option<DataHandle>,
}

fn source(s: &AppState, h: &DataHandle, q: &RawQuery) -> ApiResult<Source> {
    source_of(s, h, q.scale.as_deref(), q.supervoxels.as_deref())
}

/// A labelmap reads level `NAME_k` for `?scale=k`, and maps supervoxels to bodies unless
/// `?supervoxels=true`; other types read themselves and take no scale.
pub(super) fn source_of(
    s: &AppState,
    h: &DataHandle,
    scale: Option<&str>,
    supervoxels: Option<&str>,
) -> ApiResult<Source> {
    let labelmap = h.instance.spec.datatype.indexes_labels();
    let scale: u32 = match scale {
        None => 0,
        Some(text) => text.parse().map_err(|_| {
            ApiError::bad_request(format!(
                "scale {text:?}: expected a level number, 0 for full resolution"
            ))
        })?,
    };
    let supervoxels = super::labelmap::flag(supervoxels, "supervoxels")?;
    if scale > 0 && !labelmap {
        return Err(ApiError::bad_request(format!(
            "scale is for labelmap instances; level {scale} of {:?} is the instance {:?}",
            h.instance.name,
            format!("{}_{scale}", h.instance.name)
        )));
    }
    let read = if scale == 0 {
        h.clone()
    } else {
        let level = format!("{}_{scale}", h.instance.name);
        s.store.handle(&h.uuid.to_string(), &level).map_err(|_| {
            ApiError::bad_request(format!(
                "scale {scale} of {:?} does not exist at this version: build levels with downres",
                h.instance.name
            ))
        })?
    };
    Ok(Source {
        read,
        map: (labelmap && !supervoxels).then(|| h.clone()),
    })
}

impl Source {
    pub fn labels(&self, s: &AppState, sub: Subvolume) -> dvid_store::Result<Vec<u64>> {
        self.to_bodies(s, s.store.read_labels(&self.read, sub)?)
    }

    /// Labels read from `read` as the caller asked for them: bodies through the labelmap's
    /// mapping, or as they are.
    pub fn to_bodies(&self, s: &AppState, labels: Vec<u64>) -> dvid_store::Result<Vec<u64>> {
        match &self.map {
            Some(m) => s.store.map_labels(m, labels),
            None => Ok(labels),
        }
    }

    /// The subvolume as Neuroglancer's compressed segmentation in 8³ blocks, encoded from the
    /// store's blocks as they are decompressed when they align with 8³ blocks (skipping the
    /// assembled subvolume), else from the assembled labels.
    fn compressed_segmentation(&self, s: &AppState, sub: Subvolume) -> dvid_store::Result<Vec<u8>> {
        const BLOCK: [usize; 3] = [8, 8, 8];
        let size = sub.size.map(|n| n as usize);
        let bs = self.read.instance.voxels()?.block_size();
        let offset = sub.offset.map(i64::from);
        let block_size = bs.map(|n| n as usize);
        let encoded = if compressed_segmentation::encodes_from_blocks(offset, block_size, BLOCK) {
            let read = s.store.subvolume_blocks(&self.read, sub)?;
            let (lo, hi) = sub.block_range(bs);
            let blocks = read
                .iter()
                .map(|(_, bytes)| {
                    bytes
                        .as_deref()
                        .map(|b| self.block_labels(s, b))
                        .transpose()
                })
                .collect::<dvid_store::Result<_>>()?;
            let stored = compressed_segmentation::StoredBlocks {
                offset,
                block_size,
                grid: std::array::from_fn(|a| (hi[a] - lo[a] + 1) as usize),
                blocks,
            };
            compressed_segmentation::try_encode_blocks(&stored, size, BLOCK)
        } else {
            compressed_segmentation::try_encode_u64(&self.labels(s, sub)?, size, BLOCK)
        };
        encoded.map_err(dvid_store::StoreError::BadRequest)
    }

    /// One stored block's little-endian labels as asked for: borrowed when no mapping applies.
    fn block_labels<'a>(
        &self,
        s: &AppState,
        bytes: &'a [u8],
    ) -> dvid_store::Result<std::borrow::Cow<'a, [u64]>> {
        if self.map.is_none()
            && cfg!(target_endian = "little")
            && let Ok(labels) = bytemuck::try_cast_slice(bytes)
        {
            return Ok(std::borrow::Cow::Borrowed(labels));
        }
        let labels = bytes
            .chunks_exact(8)
            .map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes")))
            .collect();
        Ok(std::borrow::Cow::Owned(self.to_bodies(s, labels)?))
    }

    fn bytes(&self, s: &AppState, sub: Subvolume) -> dvid_store::Result<Vec<u8>> {
        if self.map.is_none() {
            return s.store.read_subvolume(&self.read, sub);
        }
        Ok(self
            .labels(s, sub)?
            .iter()
            .flat_map(|l| l.to_le_bytes())
            .collect())
    }
}

/// What `dims` names: a subvolume or a slice through one plane.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Shape {
    Volume,
    Plane(Plane),
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Plane {
    Xy,
    Xz,
    Yz,
}

impl Plane {
    /// The two axes of the image: columns, then rows.
    fn axes(self) -> [usize; 2] {
        match self {
            Self::Xy => [0, 1],
            Self::Xz => [0, 2],
            Self::Yz => [1, 2],
        }
    }
}

fn shape(dims: &str) -> ApiResult<Shape> {
    Ok(match dims {
        "0_1_2" => Shape::Volume,
        "xy" | "XY" | "0_1" => Shape::Plane(Plane::Xy),
        "xz" | "XZ" | "0_2" => Shape::Plane(Plane::Xz),
        "yz" | "YZ" | "1_2" => Shape::Plane(Plane::Yz),
        _ => {
            return Err(ApiError::bad_request(format!(
                "dims {dims:?}: use 0_1_2 for a subvolume, or xy, xz, yz (0_1, 0_2, 1_2) for a slice"
            )));
        }
    })
}

/// A response format: `nD` bytes, an image, with an optional `:QUALITY`.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Format {
    Bytes,
    Png,
    Jpeg(u8),
}

fn format(text: Option<&str>, shape: Shape, q: &RawQuery) -> ApiResult<Format> {
    let (name, suffix) = match text {
        None => ("", None),
        Some(t) => t.split_once(':').map_or((t, None), |(n, s)| (n, Some(s))),
    };
    let quality = |suffix: Option<&str>| -> ApiResult<u8> {
        match suffix.or(q.quality.as_deref()) {
            None => Ok(jpeg::DEFAULT_QUALITY),
            Some(t) => {
                let n = t.parse::<i64>().map_err(|_| {
                    ApiError::bad_request(format!("JPEG quality {t:?}: expected 1..=100"))
                })?;
                Ok(jpeg::check_quality(n)?)
            }
        }
    };
    if suffix.is_some() && !matches!(name, "jpg" | "jpeg") {
        return Err(ApiError::bad_request(format!(
            "format {:?}: only jpg takes a quality (jpg:80)",
            text.unwrap_or("")
        )));
    }
    match (shape, name) {
        (Shape::Volume, "" | "nD" | "nd" | "octet-stream") => Ok(Format::Bytes),
        (Shape::Volume, "jpg" | "jpeg") => Ok(Format::Jpeg(quality(suffix)?)),
        (Shape::Plane(_), "" | "png") => Ok(Format::Png),
        (Shape::Plane(_), "jpg" | "jpeg") => Ok(Format::Jpeg(quality(suffix)?)),
        (Shape::Volume, other) => Err(ApiError::bad_request(format!(
            "format {other:?} for a subvolume: use nD (bytes, the default) or jpeg (grayscale)"
        ))),
        (Shape::Plane(_), other) => Err(ApiError::bad_request(format!(
            "format {other:?} for a slice: use png (the default) or jpg[:QUALITY]"
        ))),
    }
}

/// Compression of a subvolume's bytes, on request.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Compression {
    None,
    Lz4,
    Gzip,
    /// Neuroglancer's compressed segmentation (8³ blocks), gzipped, sent with
    /// `Content-Encoding: gzip`: labels only.
    GoogleGzip,
}

fn compression(q: &RawQuery, inst: &Instance, reading: bool) -> ApiResult<Compression> {
    let c = match q.compression.as_deref() {
        None | Some("") | Some("uncompressed") | Some("raw") => Compression::None,
        Some("lz4") => Compression::Lz4,
        Some("gzip") => Compression::Gzip,
        Some("googlegzip" | "google") if reading => Compression::GoogleGzip,
        Some(other) => {
            let offered = if reading {
                "lz4, gzip, or googlegzip (labels)"
            } else {
                "lz4 or gzip"
            };
            return Err(ApiError::bad_request(format!(
                "compression {other:?} not supported here: use {offered}"
            )));
        }
    };
    if c == Compression::GoogleGzip && inst.voxels()?.voxel_bytes != 8 {
        return Err(ApiError::bad_request(format!(
            "compression=googlegzip is Neuroglancer's format for labels; {:?} is {}",
            inst.name,
            inst.spec.datatype.name()
        )));
    }
    Ok(c)
}

fn refuse_roi(q: &RawQuery) -> ApiResult<()> {
    match &q.roi {
        None => Ok(()),
        Some(r) => Err(ApiError::bad_request(format!(
            "roi={r:?}: ROI masks are not supported by this node; read the subvolume unmasked"
        ))),
    }
}

pub async fn get_raw(
    s: State<AppState>,
    t: Extension<Target>,
    Path(p): Path<RawPath>,
    Query(q): Query<RawQuery>,
) -> ApiResult<Response> {
    read(s, t, p, q, false).await
}

pub async fn get_isotropic(
    s: State<AppState>,
    t: Extension<Target>,
    Path(p): Path<RawPath>,
    Query(q): Query<RawQuery>,
) -> ApiResult<Response> {
    read(s, t, p, q, true).await
}

async fn read(
    State(s): State<AppState>,
    Extension(Target(h)): Extension<Target>,
    p: RawPath,
    q: RawQuery,
    isotropic: bool,
) -> ApiResult<Response> {
    refuse_roi(&q)?;
    let shape = shape(&p.dims)?;
    let format = format(p.format.as_deref(), shape, &q)?;
    let vox = h.instance.voxels()?;
    let vb = vox.voxel_bytes;
    if matches!(format, Format::Jpeg(_)) && vb != 1 {
        return Err(ApiError::bad_request(format!(
            "JPEG is for grayscale; {:?} is {}: read labels as bytes or png",
            h.instance.name,
            h.instance.spec.datatype.name()
        )));
    }
    let plane = match shape {
        Shape::Volume if isotropic => {
            return Err(ApiError::bad_request(
                "isotropic serves 2-D slices (xy, xz, yz); read subvolumes with raw/0_1_2",
            ));
        }
        Shape::Volume => return read_volume(s, h, p, q, format).await,
        Shape::Plane(plane) => plane,
    };
    if q.compression.is_some() {
        return Err(ApiError::bad_request(
            "compression applies to 3-D subvolumes; slices are images (png, or jpg[:QUALITY])",
        ));
    }
    // A slice: the subvolume one voxel thick across its plane.
    let [w, hgt] = pair(&p.size, "size")?;
    let offset: [i32; 3] = triple(&p.offset, "offset")?;
    let [ca, ra] = plane.axes();
    // Isotropic slices read fewer voxels along the coarser axis, then stretch (DVID's way).
    let voxel = vox.geometry.voxel_size;
    let (src_w, src_h) = if isotropic && voxel[ca] != voxel[ra] {
        let (rc, rr) = (voxel[ca], voxel[ra]);
        if rc < rr {
            (w, ((hgt as f32 * rc / rr) + 0.5).max(1.0) as u32)
        } else {
            (((w as f32 * rr / rc) + 0.5).max(1.0) as u32, hgt)
        }
    } else {
        (w, hgt)
    };
    let mut size = [1u32; 3];
    size[ca] = src_w;
    size[ra] = src_h;
    let size_text = format!("{}_{}_{}", size[0], size[1], size[2]);
    let offset_text = format!("{}_{}_{}", offset[0], offset[1], offset[2]);
    let sub = subvolume(&s, &h.instance, &size_text, &offset_text)?;
    let bytes = blocking(move || s.store.read_subvolume(&h, sub)).await?;
    let (pixels, w, hgt) = if (src_w, src_h) == (w, hgt) {
        (bytes, w, hgt)
    } else {
        (stretch(&bytes, [src_w, src_h], [w, hgt], vb), w, hgt)
    };
    let (w, hgt) = (w as usize, hgt as usize);
    match format {
        Format::Png => image("image/png", formats::png(&pixels, w, hgt, vb)?),
        Format::Jpeg(quality) => image("image/jpeg", jpeg::encode_gray(&pixels, w, hgt, quality)?),
        Format::Bytes => unreachable!("slices take image formats"),
    }
}

async fn read_volume(
    s: AppState,
    h: dvid_store::DataHandle,
    p: RawPath,
    q: RawQuery,
    format: Format,
) -> ApiResult<Response> {
    let compression = compression(&q, &h.instance, true)?;
    let src = source(&s, &h, &q)?;
    let sub = subvolume(&s, &src.read.instance, &p.size, &p.offset)?;
    let size = sub.size.map(|n| n as usize);
    if let Format::Jpeg(quality) = format {
        if compression != Compression::None {
            return Err(ApiError::bad_request(
                "a JPEG subvolume is already compressed: drop ?compression",
            ));
        }
        // One image of the z slices stacked: width x, height y·z (DVID's and Neuroglancer's).
        let (w, hgt) = (size[0], size[1] * size[2]);
        if w > jpeg::MAX_EDGE || hgt > jpeg::MAX_EDGE {
            return Err(ApiError::bad_request(format!(
                "a {}x{}x{} subvolume makes a {w}x{hgt} JPEG; width and height y·z must be at most {}",
                size[0],
                size[1],
                size[2],
                jpeg::MAX_EDGE
            )));
        }
        let bytes = blocking(move || {
            let raw = s.store.read_subvolume(&h, sub)?;
            jpeg::encode_gray(&raw, w, hgt, quality)
        })
        .await?;
        return image("image/jpeg", bytes);
    }
    // Reading and encoding both run on a blocking thread: encoding a chunk takes milliseconds.
    let (bytes, gzipped) = blocking(move || {
        if compression == Compression::GoogleGzip {
            let encoded = src.compressed_segmentation(&s, sub)?;
            return Ok((formats::gzip(&encoded), true));
        }
        let bytes = src.bytes(&s, sub)?;
        Ok(match compression {
            Compression::Lz4 => (formats::lz4(&bytes), false),
            Compression::Gzip => (formats::gzip(&bytes), false),
            _ => (bytes, false),
        })
    })
    .await?;
    if !gzipped {
        return Ok(octets(bytes));
    }
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream"),
            (header::CONTENT_ENCODING, "gzip"),
        ],
        bytes,
    )
        .into_response())
}

pub async fn post_raw(
    State(s): State<AppState>,
    Extension(Target(h)): Extension<Target>,
    Path(p): Path<RawPath>,
    Query(q): Query<RawQuery>,
    body: Bytes,
) -> ApiResult<StatusCode> {
    refuse_roi(&q)?;
    if shape(&p.dims)? != Shape::Volume {
        return Err(ApiError::bad_request(
            "slices are read-only: write 3-D subvolumes with raw/0_1_2",
        ));
    }
    if let Some(f) = p
        .format
        .as_deref()
        .filter(|f| !matches!(*f, "nD" | "nd" | "octet-stream"))
    {
        return Err(ApiError::bad_request(format!(
            "format {f:?} for a write: subvolumes are written as bytes (nD)"
        )));
    }
    let compression = compression(&q, &h.instance, false)?;
    if q.scale.as_deref().is_some_and(|k| k != "0") {
        return Err(ApiError::bad_request(
            "writes go to scale 0; levels are built from it with downres",
        ));
    }
    let sub: Subvolume = subvolume(&s, &h.instance, &p.size, &p.offset)?;
    let expected = sub.voxels() as usize * h.instance.voxels()?.voxel_bytes;
    let body = match compression {
        Compression::None => body.to_vec(),
        Compression::Lz4 => formats::unlz4(&body, expected)?,
        Compression::Gzip => formats::gunzip(&body, expected)?,
        Compression::GoogleGzip => unreachable!("refused for writes"),
    };
    blocking(move || s.store.write_subvolume(&h, sub, &body)).await?;
    Ok(StatusCode::OK)
}

/// Nearest-neighbour resize of a `from` image to `to` (isotropic slices).
fn stretch(pixels: &[u8], from: [u32; 2], to: [u32; 2], vb: usize) -> Vec<u8> {
    let [fw, fh] = from.map(|n| n as usize);
    let [tw, th] = to.map(|n| n as usize);
    let mut out = Vec::with_capacity(tw * th * vb);
    for r in 0..th {
        let sr = (r * fh / th).min(fh - 1);
        for c in 0..tw {
            let sc = (c * fw / tw).min(fw - 1);
            let i = (sr * fw + sc) * vb;
            out.extend_from_slice(&pixels[i..i + vb]);
        }
    }
    out
}

fn image(content_type: &'static str, bytes: Vec<u8>) -> ApiResult<Response> {
    Ok(([(header::CONTENT_TYPE, content_type)], bytes).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(compression: Option<&str>, quality: Option<&str>) -> RawQuery {
        RawQuery {
            compression: compression.map(Into::into),
            quality: quality.map(Into::into),
            roi: None,
            supervoxels: None,
            scale: None,
        }
    }

    #[test]
    fn raw_formats_parse_as_dvid_names_them() {
        let v = Shape::Volume;
        let s = Shape::Plane(Plane::Xz);
        assert_eq!(format(None, v, &q(None, None)).unwrap(), Format::Bytes);
        assert_eq!(
            format(Some("nD"), v, &q(None, None)).unwrap(),
            Format::Bytes
        );
        assert_eq!(
            format(Some("jpeg"), v, &q(None, Some("60"))).unwrap(),
            Format::Jpeg(60)
        );
        assert_eq!(format(None, s, &q(None, None)).unwrap(), Format::Png);
        assert_eq!(
            format(Some("jpg:90"), s, &q(None, None)).unwrap(),
            Format::Jpeg(90)
        );
        assert!(format(Some("jpg:0"), s, &q(None, None)).is_err());
        assert!(format(Some("jpeg"), v, &q(None, Some("high"))).is_err());
        assert!(format(Some("png"), v, &q(None, None)).is_err());
        assert!(format(Some("nD"), s, &q(None, None)).is_err());
        assert!(format(Some("png:3"), s, &q(None, None)).is_err());
        assert_eq!(shape("yz").unwrap(), Shape::Plane(Plane::Yz));
        assert!(shape("0_1_3").is_err());
    }

    #[test]
    fn raw_stretch_repeats_nearest_rows() {
        let px = [1u8, 2, 3, 4];
        assert_eq!(
            stretch(&px, [2, 2], [2, 4], 1),
            vec![1, 2, 1, 2, 3, 4, 3, 4]
        );
    }
}
