//! `dvid export`: a version's instance (or a box of it) out of a node, over HTTP, into a file
//! format others read: read in slabs one block deep with a few workers, written slab by slab.
//! The array's index 0 is the node's voxel 0, or the block-aligned minimum when the volume
//! reaches below 0, as in the node's Zarr view; `--region` exports a box, index 0 at its corner.

use super::progress::Progress;
use super::{Dtype, Format, Layout, Sink, parse_region};
use crate::client::Client;
use anyhow::{Context, bail};
use serde_json::Value;
use std::path::PathBuf;
use std::sync::Mutex;

/// Most bytes one read asks the node for.
const MAX_READ_BYTES: u64 = 32 << 20;
const WORKERS: usize = 3;

#[derive(clap::Args, Debug)]
pub struct ExportArgs {
    /// The file or folder to write; it must not exist.
    pub dest: PathBuf,
    #[arg(long)]
    pub version: String,
    #[arg(long)]
    pub instance: String,
    #[arg(long, value_enum)]
    pub format: Format,
    /// Only this box, X,Y,Z:SX,SY,SZ.
    #[arg(long, allow_hyphen_values = true)]
    pub region: Option<String>,
    /// A labelmap's supervoxels instead of its bodies.
    #[arg(long)]
    pub supervoxels: bool,
}

/// What to read for one level: the instance and the query its `raw` reads take.
struct Level {
    name: String,
    query: String,
    layout: Layout,
}

pub fn export(node: &Client, args: ExportArgs) -> anyhow::Result<()> {
    if args.dest.exists() {
        bail!(
            "{} exists: export writes a new file or folder",
            args.dest.display()
        );
    }
    let info = instance_info(node, &args.version, &args.instance)?.with_context(|| {
        format!(
            "no instance {:?} at version {}",
            args.instance, args.version
        )
    })?;
    let typename = info["Base"]["TypeName"].as_str().unwrap_or("").to_string();
    let labelmap = typename == "labelmap";
    let dtype = match typename.as_str() {
        "uint8blk" => Dtype::U8,
        "labelblk" | "labelmap" => Dtype::U64,
        other => bail!(
            "{:?} is a {other} instance: only voxel instances export",
            args.instance
        ),
    };
    if args.supervoxels && !labelmap {
        bail!(
            "--supervoxels is for labelmap instances; {:?} is {typename}",
            args.instance
        );
    }
    let region = match &args.region {
        Some(text) => Some(parse_region(text)?),
        None => None,
    };
    let base = level_layout(&info, dtype, region, 0)?;
    let mut levels = vec![Level {
        name: args.instance.clone(),
        query: if args.supervoxels {
            "?supervoxels=true".into()
        } else {
            String::new()
        },
        layout: base,
    }];
    if args.format == Format::OmeZarr {
        for k in 1.. {
            let name = format!("{}_{k}", args.instance);
            let Some(level_info) = instance_info(node, &args.version, &name)? else {
                break;
            };
            // A labelmap's levels are read through it (`scale`), so they show bodies too.
            let (read, query) = if labelmap {
                let sv = if args.supervoxels {
                    "&supervoxels=true"
                } else {
                    ""
                };
                (args.instance.clone(), format!("?scale={k}{sv}"))
            } else {
                (name, String::new())
            };
            levels.push(Level {
                name: read,
                query,
                layout: level_layout(&level_info, dtype, region, k)?,
            });
        }
    }
    let total: u64 = levels
        .iter()
        .map(|l| l.layout.shape.iter().product::<u64>() * dtype.bytes() as u64)
        .sum();
    let progress = Progress::new(format!("exporting {}", args.instance), total, 0);
    let result = write_levels(node, &args, &levels, &progress);
    if result.is_err() {
        progress.abandon();
        return result;
    }
    let secs = progress.finish();
    let l0 = &levels[0].layout;
    crate::client::out(&format!(
        "exported {} of version {} ({:?} voxels, x,y,z, from {:?}{}) to {} as {:?} in {secs:.1} s ({:.1} MB/s)",
        args.instance,
        args.version,
        l0.shape,
        l0.origin,
        if levels.len() > 1 {
            format!(", {} levels", levels.len())
        } else {
            String::new()
        },
        args.dest.display(),
        args.format,
        total as f64 / 1e6 / secs.max(1e-9)
    ));
    Ok(())
}

fn write_levels(
    node: &Client,
    args: &ExportArgs,
    levels: &[Level],
    progress: &Progress,
) -> anyhow::Result<()> {
    let first = &levels[0].layout;
    if args.format != Format::OmeZarr {
        let attrs = super::zarr::dvid_attributes(first, &args.version, &args.instance);
        let sink = super::create_sink(&args.dest, args.format, first, attrs)?;
        return copy(node, args, &levels[0], sink, progress);
    }
    let store = super::zarr::create_store(&args.dest)?;
    for (k, level) in levels.iter().enumerate() {
        let attrs = super::zarr::dvid_attributes(&level.layout, &args.version, &level.name);
        let sink =
            super::zarr::ZarrSink::create(store.clone(), &format!("/s{k}"), &level.layout, attrs)?;
        copy(node, args, level, Box::new(sink), progress)?;
    }
    let layouts: Vec<Layout> = levels.iter().map(|l| l.layout.clone()).collect();
    super::zarr::write_ome_group(store, &args.instance, &layouts)
}

fn instance_info(node: &Client, version: &str, name: &str) -> anyhow::Result<Option<Value>> {
    node.get_if_found(&format!("/api/node/{version}/{name}/info"))
}

/// The layout of level `k`: `region` (at level 0) scaled down, or the level's whole extent from
/// its block-aligned origin (0 unless the volume reaches below 0).
fn level_layout(
    info: &Value,
    dtype: Dtype,
    region: Option<([i64; 3], [i64; 3])>,
    k: u32,
) -> anyhow::Result<Layout> {
    let ext = &info["Extended"];
    let triple = |name: &str| -> anyhow::Result<[i64; 3]> {
        serde_json::from_value(ext[name].clone())
            .with_context(|| format!("the instance's info lacks {name}"))
    };
    let bs = triple("BlockSize")?;
    let (min, max) = (triple("MinPoint")?, triple("MaxPoint")?);
    let (origin, end): ([i64; 3], [i64; 3]) = match region {
        Some((offset, size)) => {
            let f = 1i64 << k;
            (
                std::array::from_fn(|a| offset[a].div_euclid(f)),
                std::array::from_fn(|a| (offset[a] + size[a] + f - 1).div_euclid(f)),
            )
        }
        None => {
            if (0..3).any(|a| max[a] < min[a]) {
                bail!(
                    "{:?} holds no voxels at this version: nothing to export",
                    info["Base"]["Name"]
                );
            }
            (
                std::array::from_fn(|a| (min[a].div_euclid(bs[a]) * bs[a]).min(0)),
                std::array::from_fn(|a| max[a] + 1),
            )
        }
    };
    let voxel_size: [f64; 3] = serde_json::from_value(ext["VoxelSize"].clone()).unwrap_or([1.0; 3]);
    let units: Vec<String> = serde_json::from_value(ext["VoxelUnits"].clone()).unwrap_or_default();
    Ok(Layout {
        shape: std::array::from_fn(|a| (end[a] - origin[a]) as u64),
        dtype,
        chunk: bs.map(|b| b as u64),
        voxel_size,
        voxel_unit: units.first().cloned().unwrap_or_default(),
        origin,
    })
}

/// Reads a level slab by slab (one block deep), rows of each slab in parallel, into `sink`.
fn copy(
    node: &Client,
    args: &ExportArgs,
    level: &Level,
    mut sink: Box<dyn Sink>,
    progress: &Progress,
) -> anyhow::Result<()> {
    let l = &level.layout;
    let vb = l.dtype.bytes() as u64;
    let [sx, sy, sz] = l.shape;
    let depth = l.chunk[2];
    let rows_per_read = (MAX_READ_BYTES / (sx * depth * vb).max(1)).clamp(1, sy);
    let base = format!("/api/node/{}/{}/raw/0_1_2", args.version, level.name);
    for z in (0..sz).step_by(depth as usize) {
        let d = depth.min(sz - z);
        let reads: Vec<(u64, u64)> = (0..sy)
            .step_by(rows_per_read as usize)
            .map(|y| (y, rows_per_read.min(sy - y)))
            .collect();
        let parts: Mutex<Vec<Option<Vec<u8>>>> = Mutex::new(vec![None; reads.len()]);
        let next = Mutex::new(0usize);
        let failure: Mutex<Option<anyhow::Error>> = Mutex::new(None);
        std::thread::scope(|s| {
            for _ in 0..WORKERS.min(reads.len()) {
                s.spawn(|| {
                    loop {
                        let i = {
                            let mut n = next.lock().expect("read queue");
                            *n += 1;
                            *n - 1
                        };
                        if i >= reads.len() || failure.lock().expect("failure").is_some() {
                            return;
                        }
                        let (y, rows) = reads[i];
                        let [ox, oy, oz] = l.origin;
                        let path = format!(
                            "{base}/{sx}_{rows}_{d}/{}_{}_{}{}",
                            ox,
                            oy + y as i64,
                            oz + z as i64,
                            level.query
                        );
                        match node.get_bytes(&path) {
                            Ok(bytes) if bytes.len() as u64 == sx * rows * d * vb => {
                                progress.add(bytes.len() as u64, 0);
                                parts.lock().expect("parts")[i] = Some(bytes);
                            }
                            Ok(bytes) => {
                                failure
                                    .lock()
                                    .expect("failure")
                                    .get_or_insert(anyhow::anyhow!(
                                        "the node answered {} bytes for {path}",
                                        bytes.len()
                                    ));
                            }
                            Err(e) => {
                                failure
                                    .lock()
                                    .expect("failure")
                                    .get_or_insert(e.context(format!("reading {path}")));
                            }
                        }
                    }
                });
            }
        });
        if let Some(e) = failure.into_inner().expect("failure") {
            return Err(e);
        }
        // The reads are rows of y: interleave them into z-major slices.
        let parts: Vec<Vec<u8>> = parts
            .into_inner()
            .expect("parts")
            .into_iter()
            .flatten()
            .collect();
        let row = (sx * vb) as usize;
        let mut slab = Vec::with_capacity((sx * sy * d * vb) as usize);
        for k in 0..d as usize {
            for ((_, rows), part) in reads.iter().zip(&parts) {
                let n = *rows as usize * row;
                slab.extend_from_slice(&part[k * n..(k + 1) * n]);
            }
        }
        sink.write_slab(z, d, &slab)?;
    }
    sink.finish()
}
