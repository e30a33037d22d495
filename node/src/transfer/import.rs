//! `dvid import`: a volume into a version's instance, over HTTP, as a staged import (see the
//! node's `import/{session}` routes). The source is read in rows of blocks by a few workers and
//! staged block-aligned; nothing shows at the version until every block is staged, so a bad
//! source leaves the instance as it was, and an interrupted import resumes where it stopped.

use super::progress::Progress;
use super::{Box3, Dtype, Format, Source, detect, parse_region, parse_triple, widen_u32};
use crate::client::Client;
use anyhow::{Context, bail};
use serde_json::{Value, json};
use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

/// Most bytes one staging request carries: bounds each worker's memory.
const MAX_BRICK_BYTES: u64 = 32 << 20;

#[derive(clap::Args, Clone, Debug)]
pub struct ImportArgs {
    /// The file or folder to read (the format is told from it, or given with --format).
    pub source: PathBuf,
    /// Version UUID (or a unique prefix); it must be mutable.
    #[arg(long)]
    pub version: String,
    /// The instance to write (created if missing).
    #[arg(long)]
    pub instance: String,
    #[arg(long, value_enum)]
    pub format: Option<Format>,
    /// Where the source's first voxel lands, X,Y,Z (default: 0,0,0, or the origin a node wrote
    /// into an export).
    #[arg(long, allow_hyphen_values = true)]
    pub offset: Option<String>,
    /// Only this box of the source, X,Y,Z:SX,SY,SZ (in the source's voxels).
    #[arg(long)]
    pub region: Option<String>,
    /// Type of a created instance: uint8blk for uint8; labelmap (default) or labelblk for labels.
    #[arg(long = "type")]
    pub typename: Option<String>,
    /// Block size of a created instance, X,Y,Z (default: the source's chunks if they fit, else
    /// 64,64,64).
    #[arg(long)]
    pub block_size: Option<String>,
    /// The scale level of an OME-Zarr image to import.
    #[arg(long, default_value_t = 0)]
    pub level: u32,
    /// Every scale level of an OME-Zarr image: level k into NAME_k, as `dvid downres` names them.
    #[arg(long)]
    pub all_levels: bool,
    /// Shape X,Y,Z of a raw source.
    #[arg(long)]
    pub shape: Option<String>,
    /// Voxel type of a raw source: uint8, uint32 or uint64.
    #[arg(long)]
    pub dtype: Option<String>,
    /// Workers reading the source and sending blocks at once.
    #[arg(long, default_value_t = 3)]
    pub workers: usize,
}

/// Why an import stopped: the source, or the node refusing a block (the import is dropped: it
/// can never finish), or the node out of reach or failing (the staged blocks stay, to resume).
enum Failure {
    Source(anyhow::Error),
    Refused(anyhow::Error),
    Node(anyhow::Error),
}

pub fn import(node: &Client, args: ImportArgs) -> anyhow::Result<()> {
    let format = match args.format {
        Some(f) => f,
        None => detect(&args.source)?,
    };
    if args.all_levels {
        return import_levels(node, args, format);
    }
    import_one(node, &args, format)
}

/// Every scale level of an OME-Zarr image: level 0 into the instance, level k into its level
/// `NAME_k` (the type and block size of the levels `dvid downres` builds, placed at the offset
/// divided by 2^k). Each level lands whole or not at all, in order.
fn import_levels(node: &Client, args: ImportArgs, format: Format) -> anyhow::Result<()> {
    if format != Format::OmeZarr {
        bail!(
            "--all-levels is for OME-Zarr images; {} is {format:?}",
            args.source.display()
        );
    }
    if args.level != 0 || args.region.is_some() {
        bail!("--all-levels imports whole levels from level 0: leave out --level and --region");
    }
    let count = super::zarr::ome_level_count(&args.source)?;
    import_one(
        node,
        &ImportArgs {
            all_levels: false,
            ..args.clone()
        },
        format,
    )?;
    let info = node.get(&format!(
        "/api/node/{}/{}/info",
        args.version, args.instance
    ))?;
    let typename = info["Base"]["TypeName"].as_str().unwrap_or("");
    let level_type = if typename == "labelmap" {
        "labelblk"
    } else {
        typename
    };
    let bs = block_size(&info)?;
    let offset = match &args.offset {
        Some(text) => Some(parse_triple(text)?),
        None => None,
    };
    for k in 1..count {
        let name = format!("{}_{k}", args.instance);
        let exists = node
            .get_if_found(&format!("/api/node/{}/{name}/info", args.version))?
            .is_some();
        let level = ImportArgs {
            instance: name,
            level: k as u32,
            all_levels: false,
            typename: (!exists).then(|| level_type.to_string()),
            block_size: (!exists).then(|| format!("{},{},{}", bs[0], bs[1], bs[2])),
            offset: offset.map(|o| {
                let f = 1i64 << k;
                format!(
                    "{},{},{}",
                    o[0].div_euclid(f),
                    o[1].div_euclid(f),
                    o[2].div_euclid(f)
                )
            }),
            ..args.clone()
        };
        import_one(node, &level, format)?;
    }
    Ok(())
}

fn import_one(node: &Client, args: &ImportArgs, format: Format) -> anyhow::Result<()> {
    let source = open(args, format)?;
    let shape = source.shape();
    if shape.contains(&0) {
        bail!(
            "{} is empty (shape {shape:?}): nothing to import",
            source.describe()
        );
    }
    let (region, dest_offset) = placement(args, source.as_ref())?;
    let dtype = source.dtype();
    let stored = if dtype == Dtype::U8 {
        Dtype::U8
    } else {
        Dtype::U64
    };
    let info = instance(node, args, source.as_ref(), dtype)?;
    let bs = block_size(&info)?;
    let session = session_name(args, format, region, dest_offset)?;
    let base = format!(
        "/api/node/{}/{}/import/{session}",
        args.version, args.instance
    );
    let staged: HashSet<[i64; 3]> = match node.get_if_found(&base)? {
        None => HashSet::new(),
        Some(v) => serde_json::from_value::<Vec<[i64; 3]>>(v["blocks"].clone())
            .context("the node's list of staged blocks")?
            .into_iter()
            .collect(),
    };
    let bricks = bricks(region, dest_offset, bs, stored.bytes() as u64);
    let (todo, done): (Vec<Brick>, Vec<Brick>) = bricks
        .into_iter()
        .partition(|b| !b.blocks.iter().all(|k| staged.contains(k)));
    let vb = stored.bytes() as u64;
    let done_bytes: u64 = done.iter().map(|b| b.source.voxels() * vb).sum();
    let total_blocks: usize = todo.iter().chain(&done).map(|b| b.blocks.len()).sum();
    if !staged.is_empty() {
        eprintln!(
            "dvid: resuming: {} of {total_blocks} blocks were staged before",
            staged.len()
        );
    }
    let progress = Progress::new(
        format!("importing {}", args.instance),
        region.voxels() * vb,
        done_bytes,
    );
    eprintln!(
        "dvid: import session {session}: {} blocks to stage",
        todo.iter().map(|b| b.blocks.len()).sum::<usize>()
    );
    let failure = stage_all(
        node,
        &base,
        source.as_ref(),
        &todo,
        &progress,
        args.workers.max(1),
    );
    match failure {
        Some(Failure::Source(e) | Failure::Refused(e)) => {
            progress.abandon();
            let dropped = node.delete(&base).err();
            let note = match dropped {
                None => "the instance is unchanged".to_string(),
                Some(d) => {
                    format!("the instance is unchanged, but dropping the staged blocks failed: {d}")
                }
            };
            Err(e.context(format!("import of {} stopped ({note})", source.describe())))
        }
        Some(Failure::Node(e)) => {
            progress.abandon();
            Err(e.context(
                "import interrupted: the instance is unchanged; run the same command again to resume",
            ))
        }
        None => {
            let r = node.post(&format!("{base}/finish"), json!({}))?;
            let secs = progress.finish();
            let bytes = region.voxels() * vb;
            crate::client::out(&format!(
                "imported {} voxels ({} MB, {} blocks) of {} into {} at {:?} in {secs:.1} s ({:.1} MB/s)",
                region.voxels(),
                bytes / 1_000_000,
                r["blocks"],
                source.describe(),
                args.instance,
                dest_offset,
                (bytes - done_bytes) as f64 / 1e6 / secs.max(1e-9)
            ));
            Ok(())
        }
    }
}

fn open(args: &ImportArgs, format: Format) -> anyhow::Result<Box<dyn Source>> {
    if format != Format::Raw && (args.shape.is_some() || args.dtype.is_some()) {
        bail!("--shape and --dtype are for raw sources; a {format:?} source says its own");
    }
    if args.level > 0 && format != Format::OmeZarr {
        bail!(
            "--level is for OME-Zarr images; {} is {format:?}",
            args.source.display()
        );
    }
    if format != Format::Raw {
        return super::open_source(&args.source, format, args.level);
    }
    let (Some(shape), Some(dtype)) = (&args.shape, &args.dtype) else {
        bail!("a raw source needs --shape X,Y,Z and --dtype uint8|uint32|uint64");
    };
    let shape = parse_triple(shape)?;
    if shape.iter().any(|&s| s <= 0) {
        bail!("--shape {shape:?}: each size must be positive");
    }
    Ok(Box::new(super::raw::RawSource::open(
        &args.source,
        shape.map(|s| s as u64),
        Dtype::parse(dtype, "--dtype")?,
    )?))
}

/// The box of the source to import, and the node's voxel its first voxel lands on.
fn placement(args: &ImportArgs, source: &dyn Source) -> anyhow::Result<(Box3, [i64; 3])> {
    let shape = source.shape();
    let region = match &args.region {
        None => Box3 {
            offset: [0; 3],
            size: shape,
        },
        Some(text) => {
            let (offset, size) = parse_region(text)?;
            let b = Box3 {
                offset: offset.map(|o| o.max(0) as u64),
                size: size.map(|s| s as u64),
            };
            if offset.iter().any(|&o| o < 0) || (0..3).any(|a| b.end()[a] > shape[a]) {
                bail!(
                    "--region {text}: reaches outside {} (shape {shape:?}, x,y,z)",
                    source.describe()
                );
            }
            b
        }
    };
    let base = match &args.offset {
        Some(text) => parse_triple(text)?,
        None => source.origin().unwrap_or([0; 3]),
    };
    let dest: [i64; 3] = std::array::from_fn(|a| base[a] + region.offset[a] as i64);
    let limit = i64::from(i32::MAX);
    if (0..3).any(|a| dest[a] < -limit || dest[a] + region.size[a] as i64 > limit) {
        bail!(
            "the import would reach beyond a node's ±2^31 voxel coordinates: {dest:?} + {:?}",
            region.size
        );
    }
    Ok((region, dest))
}

/// The instance's info, after creating it if it does not exist; refuses one of another voxel
/// type.
fn instance(
    node: &Client,
    args: &ImportArgs,
    source: &dyn Source,
    dtype: Dtype,
) -> anyhow::Result<Value> {
    let path = format!("/api/node/{}/{}/info", args.version, args.instance);
    if let Some(info) = node.get_if_found(&path)? {
        let typename = info["Base"]["TypeName"].as_str().unwrap_or("").to_string();
        let fits = match dtype {
            Dtype::U8 => typename == "uint8blk",
            _ => matches!(typename.as_str(), "labelblk" | "labelmap"),
        };
        if !fits {
            bail!(
                "{} holds {} voxels, but {:?} is a {typename} instance ({})",
                source.describe(),
                dtype.name(),
                args.instance,
                if dtype == Dtype::U8 {
                    "import grayscale into uint8blk"
                } else {
                    "import labels into labelmap or labelblk"
                }
            );
        }
        if args.block_size.is_some() || args.typename.is_some() {
            bail!(
                "{:?} exists: --type and --block-size are for the instance an import creates",
                args.instance
            );
        }
        return Ok(info);
    }
    let typename = match (&args.typename, dtype) {
        (Some(t), _) => t.clone(),
        (None, Dtype::U8) => "uint8blk".into(),
        (None, _) => "labelmap".into(),
    };
    let block = match &args.block_size {
        Some(b) => b.clone(),
        None => chunk_block_size(source, &typename),
    };
    let mut body = json!({"typename": typename, "dataname": args.instance, "BlockSize": block});
    if let Some(vs) = source.voxel_size() {
        body["VoxelSize"] = json!(format!("{},{},{}", vs[0], vs[1], vs[2]));
    }
    let repo = format!("/api/repo/{}/instance", args.version);
    node.post(&repo, body)
        .with_context(|| format!("creating {typename} instance {:?}", args.instance))?;
    eprintln!(
        "dvid: created {typename} instance {:?} with blocks of {block}",
        args.instance
    );
    node.get(&path)
}

/// The block size for a new instance: the source's chunks when they make blocks a node takes
/// (edges 16..=512, multiples of 8 for labelmap, at most 16 MiB), else DVID's 64³.
fn chunk_block_size(source: &dyn Source, typename: &str) -> String {
    let vb = if source.dtype() == Dtype::U8 { 1 } else { 8 };
    let fits = |c: &[u64; 3]| {
        c.iter()
            .all(|&e| (16..=512).contains(&e) && (typename != "labelmap" || e % 8 == 0))
            && c.iter().product::<u64>() * vb <= dvid_store::types::MAX_BLOCK_BYTES as u64
    };
    match source.chunk() {
        Some(c) if fits(&c) => format!("{},{},{}", c[0], c[1], c[2]),
        _ => "64,64,64".into(),
    }
}

fn block_size(info: &Value) -> anyhow::Result<[i64; 3]> {
    serde_json::from_value(info["Extended"]["BlockSize"].clone())
        .context("the instance's info has no BlockSize")
}

/// The session's name: the same for the same import, so a second run resumes the first.
fn session_name(
    args: &ImportArgs,
    format: Format,
    region: Box3,
    dest: [i64; 3],
) -> anyhow::Result<String> {
    let path = std::fs::canonicalize(&args.source)
        .with_context(|| format!("{}", args.source.display()))?;
    let meta = std::fs::metadata(&path)?;
    let modified = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos());
    let key = format!(
        "{}|{}|{modified}|{format:?}|{}|{}|{:?}|{dest:?}|{}",
        path.display(),
        meta.len(),
        args.version,
        args.instance,
        region,
        args.level
    );
    Ok(format!(
        "import-{}",
        &blake3::hash(key.as_bytes()).to_hex()[..24]
    ))
}

/// A block-aligned box of the destination, its blocks, and where it is in the source.
struct Brick {
    dest: [i64; 3],
    source: Box3,
    blocks: Vec<[i64; 3]>,
}

/// The destination cut into bricks: rows of blocks along x, in z then y order (a TIFF source
/// decodes each slab of pages once), at most [`MAX_BRICK_BYTES`] each.
fn bricks(region: Box3, dest: [i64; 3], bs: [i64; 3], vb: u64) -> Vec<Brick> {
    let lo = dest;
    let hi: [i64; 3] = std::array::from_fn(|a| dest[a] + region.size[a] as i64 - 1);
    let first: [i64; 3] = std::array::from_fn(|a| lo[a].div_euclid(bs[a]));
    let last: [i64; 3] = std::array::from_fn(|a| hi[a].div_euclid(bs[a]));
    let block_bytes = (bs[0] * bs[1] * bs[2]) as u64 * vb;
    let per_brick = (MAX_BRICK_BYTES / block_bytes.max(1)).max(1) as i64;
    let mut out = Vec::new();
    for bz in first[2]..=last[2] {
        for by in first[1]..=last[1] {
            let mut bx = first[0];
            while bx <= last[0] {
                let bx_end = (bx + per_brick - 1).min(last[0]);
                let b_lo = [bx * bs[0], by * bs[1], bz * bs[2]];
                let b_hi = [
                    (bx_end + 1) * bs[0] - 1,
                    (by + 1) * bs[1] - 1,
                    (bz + 1) * bs[2] - 1,
                ];
                let d_lo: [i64; 3] = std::array::from_fn(|a| b_lo[a].max(lo[a]));
                let d_hi: [i64; 3] = std::array::from_fn(|a| b_hi[a].min(hi[a]));
                out.push(Brick {
                    dest: d_lo,
                    source: Box3 {
                        offset: std::array::from_fn(|a| {
                            (d_lo[a] - dest[a]) as u64 + region.offset[a]
                        }),
                        size: std::array::from_fn(|a| (d_hi[a] - d_lo[a] + 1) as u64),
                    },
                    blocks: (bx..=bx_end).map(|x| [x, by, bz]).collect(),
                });
                bx = bx_end + 1;
            }
        }
    }
    out
}

/// Stages every brick with a few workers; the first failure stops them all.
fn stage_all(
    node: &Client,
    base: &str,
    source: &dyn Source,
    todo: &[Brick],
    progress: &Progress,
    workers: usize,
) -> Option<Failure> {
    let next = Mutex::new(todo.iter());
    let stop = AtomicBool::new(false);
    let failure: Mutex<Option<Failure>> = Mutex::new(None);
    std::thread::scope(|s| {
        for _ in 0..workers.min(todo.len()) {
            s.spawn(|| {
                while !stop.load(Ordering::Relaxed) {
                    let Some(brick) = next.lock().expect("brick queue").next() else {
                        return;
                    };
                    if let Err(f) = stage(node, base, source, brick, progress) {
                        stop.store(true, Ordering::Relaxed);
                        failure.lock().expect("failure").get_or_insert(f);
                        return;
                    }
                }
            });
        }
    });
    failure.into_inner().expect("failure")
}

fn stage(
    node: &Client,
    base: &str,
    source: &dyn Source,
    brick: &Brick,
    progress: &Progress,
) -> Result<(), Failure> {
    let mut data = source.read(brick.source).map_err(Failure::Source)?;
    if source.dtype() == Dtype::U32 {
        data = widen_u32(&data);
    }
    let bytes = data.len() as u64;
    let [sx, sy, sz] = brick.source.size;
    let [x, y, z] = brick.dest;
    node.post_bytes(
        &format!("{base}/raw/0_1_2/{sx}_{sy}_{sz}/{x}_{y}_{z}"),
        data,
    )
    .map_err(|e| {
        if crate::client::Refusal::is_client_error(&e) {
            Failure::Refused(e.context("the node refused a block"))
        } else {
            Failure::Node(e)
        }
    })?;
    progress.add(bytes, brick.blocks.len() as u64);
    Ok(())
}
