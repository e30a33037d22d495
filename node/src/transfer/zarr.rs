//! Zarr v2 and v3 arrays and OME-Zarr images (0.4 on Zarr v2, 0.5 on Zarr v3), with `zarrs`:
//! reading for import, writing Zarr v3 and OME-Zarr 0.5 for export. Axes (z, y, x), C order.

use super::{Box3, Dtype, Format, Layout, Sink, Source};
use anyhow::{Context, bail};
use serde_json::{Value, json};
use std::path::Path;
use std::sync::Arc;
use zarrs::array::{Array, ArrayBuilder, ArraySubset, DataType, data_type};
use zarrs::filesystem::FilesystemStore;
use zarrs::group::{Group, GroupBuilder};

/// zstd level of exported chunks.
const EXPORT_ZSTD_LEVEL: i32 = 3;

/// Zarr or OME-Zarr, if `dir` holds one.
pub fn detect(dir: &Path) -> Option<Format> {
    if let Ok(text) = std::fs::read_to_string(dir.join("zarr.json")) {
        let v: Value = serde_json::from_str(&text).ok()?;
        return match v["node_type"].as_str() {
            Some("array") => Some(Format::Zarr),
            Some("group") => Some(Format::OmeZarr),
            _ => None,
        };
    }
    if dir.join(".zarray").exists() {
        return Some(Format::Zarr);
    }
    dir.join(".zgroup").exists().then_some(Format::OmeZarr)
}

fn store(path: &Path) -> anyhow::Result<Arc<FilesystemStore>> {
    Ok(Arc::new(FilesystemStore::new(path).with_context(|| {
        format!("{}: cannot open as a Zarr store", path.display())
    })?))
}

pub struct ZarrSource {
    what: String,
    array: Array<FilesystemStore>,
    dtype: Dtype,
    /// Axes before (z, y, x), each of size 1 (OME-Zarr's t and c).
    leading: usize,
    voxel_size: Option<[f64; 3]>,
}

impl ZarrSource {
    pub fn open_array(path: &Path) -> anyhow::Result<Self> {
        let array = Array::open(store(path)?, "/").map_err(|e| {
            anyhow::anyhow!(
                "{}: not a Zarr array this importer can read: {e}",
                path.display()
            )
        })?;
        let what = format!("Zarr v{} array {}", zarr_version(path), path.display());
        Self::new(what, array, None)
    }

    /// Level `level` of an OME-Zarr image's first multiscale.
    pub fn open_ome(path: &Path, level: u32) -> anyhow::Result<Self> {
        let st = store(path)?;
        let datasets = ome_datasets(st.clone(), path)?;
        let Some(ds) = datasets.get(level as usize) else {
            bail!(
                "{}: the image has {} scale levels; there is no level {level}",
                path.display(),
                datasets.len()
            );
        };
        let sub = ds["path"]
            .as_str()
            .with_context(|| format!("{}: dataset {level} has no path", path.display()))?;
        let array = Array::open(st, &format!("/{sub}")).map_err(|e| {
            anyhow::anyhow!(
                "{}/{sub}: not a Zarr array this importer can read: {e}",
                path.display()
            )
        })?;
        let scale = ds["coordinateTransformations"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|t| t["type"] == "scale")
            .and_then(|t| serde_json::from_value::<Vec<f64>>(t["scale"].clone()).ok());
        let voxel_size = scale
            .filter(|s| s.len() >= 3)
            .map(|s| [s[s.len() - 1], s[s.len() - 2], s[s.len() - 3]]);
        let what = format!("OME-Zarr image {} (level {level}, {sub})", path.display());
        Self::new(what, array, voxel_size)
    }

    fn new(
        what: String,
        array: Array<FilesystemStore>,
        voxel_size: Option<[f64; 3]>,
    ) -> anyhow::Result<Self> {
        let shape = array.shape().to_vec();
        if shape.len() < 3 || shape[..shape.len() - 3].iter().any(|&s| s != 1) {
            bail!(
                "{what}: shape {shape:?}: expected 3 axes (z, y, x), or more with every axis before them of size 1"
            );
        }
        let dt = array.data_type();
        let dtype = if *dt == data_type::uint8() {
            Dtype::U8
        } else if *dt == data_type::uint32() {
            Dtype::U32
        } else if *dt == data_type::uint64() {
            Dtype::U64
        } else {
            Dtype::parse(&dtype_name(dt), &what)?
        };
        Ok(Self {
            what,
            leading: shape.len() - 3,
            array,
            dtype,
            voxel_size,
        })
    }
}

/// The datasets (scale levels) of an OME-Zarr image's first multiscale, finest first.
fn ome_datasets(st: Arc<FilesystemStore>, path: &Path) -> anyhow::Result<Vec<Value>> {
    let group = Group::open(st, "/")
        .map_err(|e| anyhow::anyhow!("{}: not a Zarr group: {e}", path.display()))?;
    let attrs = group.attributes();
    // OME-Zarr 0.5 keeps its metadata under "ome"; 0.4 at the top of .zattrs.
    let ome = attrs.get("ome").unwrap_or(&Value::Null);
    let multiscales = ome.get("multiscales").or_else(|| attrs.get("multiscales"));
    let Some(ms) = multiscales.and_then(|m| m.get(0)) else {
        bail!(
            "{}: a Zarr group without OME-Zarr multiscales metadata: import one of its arrays",
            path.display()
        );
    };
    Ok(ms["datasets"].as_array().cloned().unwrap_or_default())
}

/// How many scale levels an OME-Zarr image has.
pub fn ome_level_count(path: &Path) -> anyhow::Result<usize> {
    Ok(ome_datasets(store(path)?, path)?.len())
}

fn dtype_name(dt: &DataType) -> String {
    dt.to_string()
}

fn zarr_version(path: &Path) -> u8 {
    if path.join("zarr.json").exists() {
        3
    } else {
        2
    }
}

impl Source for ZarrSource {
    fn describe(&self) -> String {
        self.what.clone()
    }

    fn shape(&self) -> [u64; 3] {
        let s = self.array.shape();
        [s[s.len() - 1], s[s.len() - 2], s[s.len() - 3]]
    }

    fn dtype(&self) -> Dtype {
        self.dtype
    }

    fn chunk(&self) -> Option<[u64; 3]> {
        let zero = vec![0; self.leading + 3];
        let c = self.array.chunk_shape(&zero).ok()?;
        let n = c.len();
        Some([c[n - 1].get(), c[n - 2].get(), c[n - 3].get()])
    }

    fn voxel_size(&self) -> Option<[f64; 3]> {
        self.voxel_size
    }

    fn origin(&self) -> Option<[i64; 3]> {
        let zyx: [i64; 3] = serde_json::from_value(
            self.array
                .attributes()
                .get("dvid")?
                .get("origin_zyx")?
                .clone(),
        )
        .ok()?;
        Some([zyx[2], zyx[1], zyx[0]])
    }

    fn read(&self, b: Box3) -> anyhow::Result<Vec<u8>> {
        let mut ranges: Vec<std::ops::Range<u64>> = vec![0..1; self.leading];
        for a in [2, 1, 0] {
            ranges.push(b.offset[a]..b.end()[a]);
        }
        let subset = ArraySubset::new_with_ranges(&ranges);
        let fail =
            |e: zarrs::array::ArrayError| anyhow::anyhow!("{}: reading {b:?}: {e}", self.what);
        Ok(match self.dtype {
            Dtype::U8 => self
                .array
                .retrieve_array_subset::<Vec<u8>>(&subset)
                .map_err(fail)?,
            Dtype::U32 => le_bytes(
                &self
                    .array
                    .retrieve_array_subset::<Vec<u32>>(&subset)
                    .map_err(fail)?,
            ),
            Dtype::U64 => le_bytes(
                &self
                    .array
                    .retrieve_array_subset::<Vec<u64>>(&subset)
                    .map_err(fail)?,
            ),
        })
    }
}

fn le_bytes<T: bytemuck::Pod>(v: &[T]) -> Vec<u8> {
    if cfg!(target_endian = "little") {
        return bytemuck::cast_slice(v).to_vec();
    }
    unimplemented!("big-endian hosts")
}

/// A Zarr v3 array being written, at `path` inside a store.
pub struct ZarrSink {
    array: Array<FilesystemStore>,
    layout: Layout,
}

impl ZarrSink {
    pub fn create(
        store: Arc<FilesystemStore>,
        path: &str,
        layout: &Layout,
        attributes: Value,
    ) -> anyhow::Result<Self> {
        let zyx = |p: [u64; 3]| vec![p[2], p[1], p[0]];
        let dt = match layout.dtype {
            Dtype::U8 => data_type::uint8(),
            Dtype::U32 => data_type::uint32(),
            Dtype::U64 => data_type::uint64(),
        };
        let fill: zarrs::array::FillValue = match layout.dtype {
            Dtype::U8 => 0u8.into(),
            Dtype::U32 => 0u32.into(),
            Dtype::U64 => 0u64.into(),
        };
        let attrs = match attributes {
            Value::Object(m) => m,
            _ => Default::default(),
        };
        let array = ArrayBuilder::new(zyx(layout.shape), zyx(layout.chunk), dt, fill)
            .bytes_to_bytes_codecs(vec![Arc::new(zarrs::array::codec::ZstdCodec::new(
                EXPORT_ZSTD_LEVEL,
                false,
            ))])
            .dimension_names(Some(["z", "y", "x"]))
            .attributes(attrs)
            .build(store, path)?;
        array.store_metadata()?;
        Ok(Self {
            array,
            layout: layout.clone(),
        })
    }
}

impl Sink for ZarrSink {
    fn write_slab(&mut self, z: u64, depth: u64, data: &[u8]) -> anyhow::Result<()> {
        let [sx, sy, _] = self.layout.shape;
        let subset = ArraySubset::new_with_ranges(&[z..z + depth, 0..sy, 0..sx]);
        match self.layout.dtype {
            Dtype::U8 => self.array.store_array_subset(&subset, data)?,
            Dtype::U32 => self
                .array
                .store_array_subset(&subset, bytemuck::pod_collect_to_vec::<u8, u32>(data))?,
            Dtype::U64 => self
                .array
                .store_array_subset(&subset, bytemuck::pod_collect_to_vec::<u8, u64>(data))?,
        }
        Ok(())
    }

    fn finish(self: Box<Self>) -> anyhow::Result<()> {
        Ok(())
    }
}

/// The `dvid` attributes of an exported array: where it came from and its origin.
pub fn dvid_attributes(layout: &Layout, version: &str, instance: &str) -> Value {
    let o = layout.origin;
    json!({"dvid": {
        "version": version,
        "instance": instance,
        "origin_zyx": [o[2], o[1], o[0]],
    }})
}

/// Opens (creating) a folder as a Zarr store for export.
pub fn create_store(path: &Path) -> anyhow::Result<Arc<FilesystemStore>> {
    std::fs::create_dir_all(path).with_context(|| format!("{}", path.display()))?;
    store(path)
}

/// OME-Zarr's name of a DVID voxel unit, if it has one.
fn ome_unit(unit: &str) -> Option<&'static str> {
    match unit.trim().to_ascii_lowercase().as_str() {
        "nanometer" | "nanometers" | "nm" => Some("nanometer"),
        "micrometer" | "micrometers" | "micron" | "microns" | "um" => Some("micrometer"),
        "millimeter" | "millimeters" | "mm" => Some("millimeter"),
        "angstrom" | "angstroms" => Some("angstrom"),
        _ => None,
    }
}

/// The attributes of an OME-Zarr 0.5 multiscale group whose levels `s0`, `s1`, … have these
/// layouts (level 0 first). OME-Zarr places voxel centres (Neuroglancer and napari read it so),
/// while a node's voxel i spans [i, i + 1): so each level's translation is the centre of its
/// voxel 0, half a voxel in from its corner, which keeps every level on the node's grid.
pub fn ome_attributes(name: &str, levels: &[Layout]) -> Value {
    let base = &levels[0];
    let axes: Vec<Value> = ["z", "y", "x"]
        .iter()
        .map(|a| match ome_unit(&base.voxel_unit) {
            Some(u) => json!({"name": a, "type": "space", "unit": u}),
            None => json!({"name": a, "type": "space"}),
        })
        .collect();
    let datasets: Vec<Value> = levels
        .iter()
        .enumerate()
        .map(|(k, l)| {
            let t: [f64; 3] = std::array::from_fn(|a| (l.origin[a] as f64 + 0.5) * l.voxel_size[a]);
            json!({
                "path": format!("s{k}"),
                "coordinateTransformations": [
                    {"type": "scale", "scale": [l.voxel_size[2], l.voxel_size[1], l.voxel_size[0]]},
                    {"type": "translation", "translation": [t[2], t[1], t[0]]}
                ]
            })
        })
        .collect();
    json!({"ome": {"version": "0.5", "multiscales": [{
        "name": name,
        "axes": axes,
        "datasets": datasets,
        "type": if base.dtype == Dtype::U8 { "mean" } else { "mode" },
    }]}})
}

/// Writes an OME-Zarr 0.5 group's metadata for levels `s0`… (their layouts, level 0 first).
pub fn write_ome_group(
    store: Arc<FilesystemStore>,
    name: &str,
    levels: &[Layout],
) -> anyhow::Result<()> {
    let Value::Object(attrs) = ome_attributes(name, levels) else {
        unreachable!("ome_attributes is an object")
    };
    GroupBuilder::new()
        .attributes(attrs)
        .build(store, "/")?
        .store_metadata()?;
    Ok(())
}
