//! Importers and exporters: volumes into and out of a node, as `dvid import` and `dvid export`.
//! Each format has one module that reads and writes it with a maintained crate: Zarr v2/v3 and
//! OME-Zarr (`zarrs`), N5 (`n5`), TIFF stacks (`tiff`), NumPy `.npy` (`npyz`), and raw bytes.
//! Volumes are (x, y, z) with x fastest, as in `raw`: a Zarr or NumPy array's axes are (z, y, x).

mod export;
mod import;
mod n5;
mod npy;
mod progress;
mod raw;
mod tiff;
mod zarr;

pub use export::{ExportArgs, export};
pub use import::{ImportArgs, import};
pub use zarr::ome_attributes;

use anyhow::bail;
use std::path::Path;

/// Voxel types a node holds: 8-bit grayscale and 64-bit labels (32-bit labels are widened).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dtype {
    U8,
    U32,
    U64,
}

impl Dtype {
    pub fn bytes(self) -> usize {
        match self {
            Self::U8 => 1,
            Self::U32 => 4,
            Self::U64 => 8,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::U8 => "uint8",
            Self::U32 => "uint32",
            Self::U64 => "uint64",
        }
    }

    /// Parses `uint8`, `uint32` or `uint64`; other types say what a node holds.
    pub fn parse(name: &str, what: &str) -> anyhow::Result<Self> {
        match name {
            "uint8" => Ok(Self::U8),
            "uint32" => Ok(Self::U32),
            "uint64" => Ok(Self::U64),
            other => bail!(
                "{what} holds {other} voxels: a node holds uint8 (grayscale, uint8blk) and uint64 \
                 or uint32 labels (labelmap, labelblk)"
            ),
        }
    }
}

/// A box of voxels, (x, y, z): its first voxel and its size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Box3 {
    pub offset: [u64; 3],
    pub size: [u64; 3],
}

impl Box3 {
    pub fn voxels(&self) -> u64 {
        self.size.iter().product()
    }

    /// One past the last voxel on each axis.
    pub fn end(&self) -> [u64; 3] {
        std::array::from_fn(|a| self.offset[a] + self.size[a])
    }
}

/// A volume to import: its shape, voxel type and what it says of itself.
pub trait Source: Send + Sync {
    /// What it is, for messages: "Zarr v3 array /data/em.zarr".
    fn describe(&self) -> String;
    /// Voxels on each axis, (x, y, z).
    fn shape(&self) -> [u64; 3];
    fn dtype(&self) -> Dtype;
    /// Its chunk shape, (x, y, z), if it is chunked.
    fn chunk(&self) -> Option<[u64; 3]> {
        None
    }
    /// Its voxel size, (x, y, z), if it says.
    fn voxel_size(&self) -> Option<[f64; 3]> {
        None
    }
    /// The voxel of a node that its index 0 came from, if a node exported it.
    fn origin(&self) -> Option<[i64; 3]> {
        None
    }
    /// The voxels of `b` as little-endian bytes of its type, x fastest.
    fn read(&self, b: Box3) -> anyhow::Result<Vec<u8>>;
}

/// What an export writes: one volume, (x, y, z), with its chunking and voxel size.
#[derive(Clone, Debug)]
pub struct Layout {
    pub shape: [u64; 3],
    pub dtype: Dtype,
    pub chunk: [u64; 3],
    pub voxel_size: [f64; 3],
    pub voxel_unit: String,
    /// The node's voxel at index 0.
    pub origin: [i64; 3],
}

/// A volume being exported. Slabs arrive in z order, each the whole x-y extent.
pub trait Sink: Send {
    fn write_slab(&mut self, z: u64, depth: u64, data: &[u8]) -> anyhow::Result<()>;
    fn finish(self: Box<Self>) -> anyhow::Result<()>;
}

/// The formats, as `--format` names them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// A Zarr v3 array (import also reads Zarr v2).
    Zarr,
    /// An OME-Zarr 0.5 image: a multiscale group (import reads 0.4 too).
    OmeZarr,
    /// An N5 dataset.
    N5,
    /// A TIFF stack: one multi-page file, or (import) a folder of 2-D slices.
    Tiff,
    /// A NumPy .npy array.
    Npy,
    /// Raw little-endian voxels, x fastest (import needs --shape and --dtype).
    Raw,
}

/// Opens an import source of a format that says its own shape and type (all but raw); `level`
/// picks an OME-Zarr image's scale level.
pub fn open_source(path: &Path, format: Format, level: u32) -> anyhow::Result<Box<dyn Source>> {
    Ok(match format {
        Format::Zarr => Box::new(zarr::ZarrSource::open_array(path)?),
        Format::OmeZarr => Box::new(zarr::ZarrSource::open_ome(path, level)?),
        Format::N5 => Box::new(n5::N5Source::open(path)?),
        Format::Tiff => Box::new(tiff::TiffSource::open(path)?),
        Format::Npy => Box::new(npy::NpySource::open(path)?),
        Format::Raw => bail!("a raw source needs its shape and voxel type (--shape, --dtype)"),
    })
}

/// Creates an export of one volume in `format` at `dest` (OME-Zarr's group is the exporter's:
/// this writes a plain Zarr array for it).
pub fn create_sink(
    dest: &Path,
    format: Format,
    layout: &Layout,
    attributes: serde_json::Value,
) -> anyhow::Result<Box<dyn Sink>> {
    Ok(match format {
        Format::Zarr | Format::OmeZarr => {
            let store = zarr::create_store(dest)?;
            Box::new(zarr::ZarrSink::create(store, "/", layout, attributes)?)
        }
        Format::N5 => n5::create(dest, layout)?,
        Format::Tiff => tiff::create(dest, layout)?,
        Format::Npy => npy::create(dest, layout)?,
        Format::Raw => {
            let file = std::fs::File::create(dest)
                .map_err(|e| anyhow::anyhow!("{}: {e}", dest.display()))?;
            Box::new(raw::RawSink::new(file))
        }
    })
}

/// The format of an import source, from what the path holds.
pub fn detect(path: &Path) -> anyhow::Result<Format> {
    if !path.exists() {
        bail!("{}: no such file or folder", path.display());
    }
    if path.is_dir() {
        if path.join("attributes.json").exists() {
            return Ok(Format::N5);
        }
        if let Some(f) = zarr::detect(path) {
            return Ok(f);
        }
        if tiff::is_slice_folder(path) {
            return Ok(Format::Tiff);
        }
        bail!(
            "{}: a folder that is no Zarr array or OME-Zarr image (no zarr.json or .zarray), no \
             N5 dataset (no attributes.json) and holds no .tif slices",
            path.display()
        );
    }
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    match ext.as_str() {
        "npy" => Ok(Format::Npy),
        "tif" | "tiff" => Ok(Format::Tiff),
        _ => bail!(
            "{}: cannot tell the format from the name: give --format (raw needs --shape and --dtype)",
            path.display()
        ),
    }
}

/// Parses `X,Y,Z:SX,SY,SZ` (offset and size).
pub fn parse_region(text: &str) -> anyhow::Result<([i64; 3], [i64; 3])> {
    let (offset, size) = text.split_once(':').ok_or_else(|| {
        anyhow::anyhow!("a region is X,Y,Z:SX,SY,SZ (offset and size), not {text:?}")
    })?;
    let offset = parse_triple(offset)?;
    let size = parse_triple(size)?;
    if size.iter().any(|&s| s <= 0) {
        bail!("region {text:?}: each size must be positive");
    }
    Ok((offset, size))
}

/// Parses `X,Y,Z`.
pub fn parse_triple(text: &str) -> anyhow::Result<[i64; 3]> {
    let v: Vec<i64> = text
        .split(',')
        .map(|n| n.trim().parse())
        .collect::<Result<_, _>>()
        .map_err(|_| anyhow::anyhow!("expected three integers X,Y,Z in {text:?}"))?;
    v.try_into()
        .map_err(|_| anyhow::anyhow!("expected three integers X,Y,Z in {text:?}"))
}

/// Widens little-endian 32-bit labels to 64 bits.
fn widen_u32(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len() * 2);
    for c in bytes.chunks_exact(4) {
        out.extend_from_slice(
            &u64::from(u32::from_le_bytes(c.try_into().expect("4 bytes"))).to_le_bytes(),
        );
    }
    out
}
