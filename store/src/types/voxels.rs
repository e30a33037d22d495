//! The voxel types (uint8blk, labelblk): their block geometry, how a region prunes their block
//! index, and subvolume reads and writes at any offset and size. Partial blocks are
//! read-modify-written, so clients need not align to blocks (DVID demands it).

use super::labelmap::{CountChange, MetaWrite, block_counts};
use super::{DataType, InstanceSpec, Settings};
use crate::catalog::Instance;
use crate::codec::decode_block;
use crate::diff::KeyChange;
use crate::geometry::{Point, Subvolume, block_from_key, block_key, cover, intersection_runs};
use crate::store::{DataHandle, WorkingEntry};
use crate::tree::Scope;
use crate::{Codec, ObjectId, Result, Store, StoreError};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::cmp::Ordering;

/// Largest block edge accepted, and largest block in bytes, so one block stays a modest object.
pub const MAX_BLOCK_EDGE: i32 = 512;
pub const MAX_BLOCK_BYTES: usize = 16 * 1024 * 1024;

/// A voxel type: blocks of fixed-size voxels under Morton block keys.
pub struct VoxelType {
    pub name: &'static str,
    pub voxel_bytes: usize,
    /// Block size when a create request gives none (DVID's defaults, which scripts assume).
    pub default_block_size: Point,
    /// How its multiscale levels reduce 2×2×2 voxels to one.
    pub downsample: Downsample,
    /// Whether it keeps a supervoxel → body mapping and a label index per body beside its
    /// blocks, under keys starting with [`super::labelmap::META`] (labelmap). Its blocks' edges
    /// are then multiples of 8, so no block key starts with that byte.
    pub indexed: bool,
}

/// How 2×2×2 voxels become one voxel of the next coarser level.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Downsample {
    /// The rounded mean of 8-bit intensities (grayscale).
    Mean,
    /// The most frequent 64-bit label, the smallest on ties (labels must never blend).
    Mode,
}

/// How a voxel instance's volume is cut into blocks and stored.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BlockGeometry {
    pub codec: Codec,
    pub block_size: Point,
    pub voxel_size: [f32; 3],
    pub voxel_units: [String; 3],
}

impl BlockGeometry {
    /// Checks the block size against the limits, for blocks of `voxel_bytes`-byte voxels.
    pub fn check(&self, voxel_bytes: usize) -> Result<()> {
        let bs = self.block_size;
        if bs.iter().any(|&s| !(1..=MAX_BLOCK_EDGE).contains(&s)) {
            return Err(StoreError::BadRequest(format!(
                "BlockSize {bs:?}: each edge must be 1..={MAX_BLOCK_EDGE}"
            )));
        }
        let bytes = bs.iter().map(|&s| s as usize).product::<usize>() * voxel_bytes;
        if bytes > MAX_BLOCK_BYTES {
            return Err(StoreError::BadRequest(format!(
                "BlockSize {bs:?} makes {bytes}-byte blocks; the limit is {MAX_BLOCK_BYTES}"
            )));
        }
        self.codec.check(voxel_bytes, bs)?;
        if !self.voxel_size.iter().all(|v| v.is_finite() && *v > 0.0) {
            // JSON has no NaN or infinity: the instance info would show them as null.
            return Err(StoreError::BadRequest(format!(
                "VoxelSize {:?}: expected three positive, finite numbers",
                self.voxel_size
            )));
        }
        Ok(())
    }

    /// The inclusive block box holding the inclusive voxel box `(lo, hi)`.
    pub fn block_box(&self, (lo, hi): (Point, Point)) -> (Point, Point) {
        let bs = self.block_size;
        (
            std::array::from_fn(|a| lo[a].div_euclid(bs[a])),
            std::array::from_fn(|a| hi[a].div_euclid(bs[a])),
        )
    }
}

/// A voxel instance's geometry with its voxel size in bytes.
#[derive(Clone, Copy, Debug)]
pub struct Voxels<'a> {
    pub geometry: &'a BlockGeometry,
    pub voxel_bytes: usize,
}

impl Voxels<'_> {
    pub fn block_size(&self) -> Point {
        self.geometry.block_size
    }

    /// Bytes of one uncompressed block.
    pub fn block_bytes(&self) -> usize {
        self.geometry
            .block_size
            .iter()
            .map(|&s| s as usize)
            .product::<usize>()
            * self.voxel_bytes
    }
}

impl Instance {
    /// The instance's voxel geometry; a client's error if it is not of a voxel type.
    pub fn voxels(&self) -> Result<Voxels<'_>> {
        match (self.spec.datatype.voxel_bytes(), &self.spec.geometry) {
            (Some(voxel_bytes), Some(geometry)) => Ok(Voxels {
                geometry,
                voxel_bytes,
            }),
            _ => Err(StoreError::BadRequest(format!(
                "data instance {:?} is {}, not a voxel type",
                self.name,
                self.spec.datatype.name()
            ))),
        }
    }
}

impl DataType for VoxelType {
    fn name(&self) -> &'static str {
        self.name
    }

    fn setting_names(&self) -> &'static [&'static str] {
        if self.indexed {
            &[
                "BlockSize",
                "VoxelSize",
                "VoxelUnits",
                "Compression",
                "IndexedLabels",
            ]
        } else {
            &["BlockSize", "VoxelSize", "VoxelUnits", "Compression"]
        }
    }

    fn parse_settings(&self, settings: &mut Settings) -> Result<Option<BlockGeometry>> {
        if self.indexed
            && let Some(v) = settings.take("indexedlabels")
            && !v.eq_ignore_ascii_case("true")
        {
            return Err(StoreError::BadRequest(format!(
                "IndexedLabels {v:?}: a {} instance always indexes its labels",
                self.name
            )));
        }
        let block_size = match settings.take("blocksize") {
            Some(text) => numbers::<i32>(&text, "BlockSize")?,
            None => self.default_block_size,
        };
        let voxel_size = match settings.take("voxelsize") {
            Some(text) => numbers::<f32>(&text, "VoxelSize")?,
            None => [8.0; 3],
        };
        let voxel_units = match settings.take("voxelunits") {
            None => std::array::from_fn(|_| "nanometers".to_string()),
            Some(text) => {
                let parts: Vec<String> = text.split(',').map(|p| p.trim().to_string()).collect();
                match parts.as_slice() {
                    [one] => std::array::from_fn(|_| one.clone()),
                    [a, b, c] => [a.clone(), b.clone(), c.clone()],
                    _ => {
                        return Err(StoreError::BadRequest(
                            "VoxelUnits takes one unit or three, comma-separated".into(),
                        ));
                    }
                }
            }
        };
        let codec = match settings.take("compression") {
            Some(text) => Codec::parse(&text)?,
            None => Codec::Lz4,
        };
        Ok(Some(BlockGeometry {
            codec,
            block_size,
            voxel_size,
            voxel_units,
        }))
    }

    fn voxel_bytes(&self) -> Option<usize> {
        Some(self.voxel_bytes)
    }

    fn downsample(&self) -> Option<Downsample> {
        Some(self.downsample)
    }

    fn level_type(&self) -> &'static str {
        if self.indexed { "labelblk" } else { self.name }
    }

    fn indexes_labels(&self) -> bool {
        self.indexed
    }

    fn block_multiple(&self) -> i32 {
        if self.indexed { 8 } else { 1 }
    }

    /// A region keeps the blocks it meets; a labelmap keeps all of its mapping and indices too
    /// (they are small beside the blocks, and the bodies touching the region need them).
    fn scope(&self, spec: &InstanceSpec, regions: Option<&[(Point, Point)]>) -> Scope {
        match (regions, &spec.geometry) {
            (Some(regions), Some(g)) => {
                let boxes = regions.iter().map(|&r| g.block_box(r)).collect();
                if self.indexed {
                    Scope::BlocksAndMeta(boxes)
                } else {
                    Scope::Blocks(boxes)
                }
            }
            _ => Scope::All,
        }
    }

    fn describe_key(&self, key: &[u8], _name: &[u8]) -> String {
        if let Some(meta) = super::labelmap::describe_meta(key) {
            return meta;
        }
        match block_from_key(key) {
            Some([x, y, z]) => format!("block ({x},{y},{z})"),
            None => format!("index {key:02x?}"),
        }
    }

    /// Blocks in index (Morton) order.
    fn diff_order(&self, a: &KeyChange, b: &KeyChange) -> Ordering {
        a.index.cmp(&b.index)
    }
}

fn numbers<T: std::str::FromStr>(text: &str, what: &str) -> Result<[T; 3]> {
    let parsed: Option<Vec<T>> = text.split(',').map(|p| p.trim().parse().ok()).collect();
    parsed
        .and_then(|v| <[T; 3]>::try_from(v).ok())
        .ok_or_else(|| {
            StoreError::BadRequest(format!(
                "{what} {text:?}: expected three comma-separated numbers, like 64,64,64"
            ))
        })
}

impl Store {
    /// Reads a subvolume; voxels never written read as 0. Bytes are x fastest, then y, then z.
    pub fn read_subvolume(&self, h: &DataHandle, sub: Subvolume) -> Result<Vec<u8>> {
        let vb = h.instance.voxels()?.voxel_bytes;
        self.read_into(h, sub, vb, |out: &mut [u8], bytes| {
            out.copy_from_slice(bytes)
        })
    }

    /// Reads a subvolume of 64-bit labels straight into labels (no byte buffer between), for
    /// encoders that work on labels (compressed segmentation).
    pub fn read_labels(&self, h: &DataHandle, sub: Subvolume) -> Result<Vec<u64>> {
        if h.instance.voxels()?.voxel_bytes != 8 {
            return Err(StoreError::BadRequest(format!(
                "data instance {:?} is {}, not 64-bit labels",
                h.instance.name,
                h.instance.spec.datatype.name()
            )));
        }
        self.read_into(h, sub, 1, |out: &mut [u64], bytes| {
            // A plain copy (a per-label conversion loop cost six times as much), then the
            // little-endian labels put in the machine's order: nothing to do on little-endian.
            bytemuck::cast_slice_mut::<u64, u8>(out).copy_from_slice(bytes);
            for o in out.iter_mut() {
                *o = u64::from_le(*o);
            }
        })
    }

    /// The decompressed blocks (little-endian voxels, x fastest) a subvolume touches, in the
    /// order z, y, x; `None` for a block never written. For encoders that work block by block
    /// instead of on the assembled subvolume.
    pub fn subvolume_blocks(
        &self,
        h: &DataHandle,
        sub: Subvolume,
    ) -> Result<Vec<(Point, Option<Vec<u8>>)>> {
        let _gate = self.gate.read();
        let (v, inst) = self.readable(h)?;
        let bs = inst.voxels()?.block_size();
        sub.check_block_count(bs)?;
        let blocks = sub.blocks(bs);
        self.check_blocks_held(&v, &inst, &blocks)?;
        map_blocks(&blocks, |b| Ok((b, self.block_at(&inst, &v, b)?)))
    }

    /// Reads a subvolume into `per_voxel` elements per voxel, `copy` turning each run of voxel
    /// bytes into elements.
    fn read_into<T: Clone + Default + Send>(
        &self,
        h: &DataHandle,
        sub: Subvolume,
        per_voxel: usize,
        copy: impl Fn(&mut [T], &[u8]),
    ) -> Result<Vec<T>> {
        let vox = h.instance.voxels()?;
        let (bs, vb) = (vox.block_size(), vox.voxel_bytes);
        let len = usize::try_from(sub.voxels().saturating_mul(per_voxel as u64))
            .map_err(|_| StoreError::BadRequest("subvolume too large for this machine".into()))?;
        let decoded = self.subvolume_blocks(h, sub)?;
        let mut out = vec![T::default(); len];
        let scale = |bytes: usize| bytes / vb * per_voxel;
        for (b, data) in decoded {
            if let Some(data) = data {
                intersection_runs(b, bs, &sub, vb, |bi, si, n| {
                    copy(&mut out[scale(si)..scale(si + n)], &data[bi..bi + n]);
                });
            }
        }
        Ok(out)
    }

    /// Writes a subvolume (`data.len()` must equal voxels × voxel bytes) to a mutable version.
    pub fn write_subvolume(&self, h: &DataHandle, sub: Subvolume, data: &[u8]) -> Result<()> {
        let _gate = self.gate.read();
        let (v, inst) = self.writable(h)?;
        self.check_subvolume_write(&v, &inst, sub, data)?;
        let lock = self.instance_lock(inst.id);
        let _held = lock.lock();
        // Re-read under the lock: extents may have moved since `writable`.
        let (_, inst) = self.readable(h)?;
        let indexed = inst.spec.datatype.indexes_labels();
        let encoded = self.encode_subvolume(&inst, &v, sub, data, indexed)?;
        self.store_blocks(
            &inst,
            &v,
            encoded,
            (sub.offset, sub.last()),
            Default::default(),
        )
    }

    /// Refuses a subvolume write whose body does not fit the subvolume, or that reaches blocks
    /// this node does not hold of the version.
    pub(crate) fn check_subvolume_write(
        &self,
        v: &crate::Version,
        inst: &Instance,
        sub: Subvolume,
        data: &[u8],
    ) -> Result<()> {
        let vox = inst.voxels()?;
        let (bs, vb) = (vox.block_size(), vox.voxel_bytes);
        sub.check_block_count(bs)?;
        let expected = sub.voxels().saturating_mul(vb as u64);
        if data.len() as u64 != expected {
            return Err(StoreError::BadRequest(format!(
                "body has {} bytes; a {}x{}x{} subvolume of {} needs {expected}",
                data.len(),
                sub.size[0],
                sub.size[1],
                sub.size[2],
                inst.spec.datatype.name()
            )));
        }
        self.check_blocks_held(v, inst, &sub.blocks(bs))
    }

    /// The blocks a subvolume write makes, encoded: blocks it covers only in part keep the rest
    /// of their voxels as the version holds them. `counts` asks for each block's change of
    /// supervoxel counts (a label index's).
    pub(crate) fn encode_subvolume(
        &self,
        inst: &Instance,
        v: &crate::Version,
        sub: Subvolume,
        data: &[u8],
        counts: bool,
    ) -> Result<Vec<Encoded>> {
        let vox = inst.voxels()?;
        let (bs, vb, block_bytes, codec) = (
            vox.block_size(),
            vox.voxel_bytes,
            vox.block_bytes(),
            vox.geometry.codec,
        );
        sub.blocks(bs)
            .par_iter()
            .map(|&b| {
                let covers = sub.covers_block(b, bs);
                let old = if counts || !covers {
                    self.block_at(inst, v, b)?
                } else {
                    None
                };
                let before = counts.then(|| old.as_deref().map(block_counts).unwrap_or_default());
                let mut block = match old {
                    Some(old) if !covers => old,
                    _ => vec![0u8; block_bytes],
                };
                intersection_runs(b, bs, &sub, vb, |bi, si, n| {
                    block[bi..bi + n].copy_from_slice(&data[si..si + n]);
                });
                Ok(Encoded::new(b, &block, bs, codec, before))
            })
            .collect()
    }

    /// Writes whole blocks (each `block_bytes` long) to a mutable version, and grows the
    /// instance's extents to cover `extents`. For derived data (multiscale levels, imports).
    pub fn write_blocks(
        &self,
        h: &DataHandle,
        blocks: Vec<(Point, Vec<u8>)>,
        extents: (Point, Point),
    ) -> Result<()> {
        let _gate = self.gate.read();
        let (v, inst) = self.writable(h)?;
        let vox = inst.voxels()?;
        let (bs, codec, block_bytes) = (vox.block_size(), vox.geometry.codec, vox.block_bytes());
        if let Some((b, d)) = blocks.iter().find(|(_, d)| d.len() != block_bytes) {
            return Err(StoreError::BadRequest(format!(
                "block {b:?} has {} bytes; blocks of {:?} hold {block_bytes}",
                d.len(),
                inst.name
            )));
        }
        let keys: Vec<Point> = blocks.iter().map(|(b, _)| *b).collect();
        // One write per block: a label index counts each block's voxels once.
        let mut seen = std::collections::HashSet::new();
        if let Some(b) = keys.iter().find(|b| !seen.insert(**b)) {
            return Err(StoreError::BadRequest(format!(
                "block {b:?} is written twice"
            )));
        }
        self.check_blocks_held(&v, &inst, &keys)?;
        let lock = self.instance_lock(inst.id);
        let _held = lock.lock();
        let (_, inst) = self.readable(h)?;
        let indexed = inst.spec.datatype.indexes_labels();
        let encoded: Vec<Encoded> = blocks
            .into_par_iter()
            .map(|(b, d)| {
                let before = if indexed {
                    Some(
                        self.block_at(&inst, &v, b)?
                            .as_deref()
                            .map(block_counts)
                            .unwrap_or_default(),
                    )
                } else {
                    None
                };
                Ok(Encoded::new(b, &d, bs, codec, before))
            })
            .collect::<Result<_>>()?;
        self.store_blocks(&inst, &v, encoded, extents, Default::default())
    }

    /// Rewrites blocks of a labelmap with the metadata changes the caller made of them (its label
    /// index, mapping and mutation record: the index is the caller's to keep right), in one write.
    /// Called under the instance's lock, with `inst` and `v` read under it.
    pub(crate) fn rewrite_label_blocks(
        &self,
        inst: &Instance,
        v: &crate::Version,
        blocks: Vec<(Point, Vec<u8>)>,
        meta: MetaWrite,
    ) -> Result<()> {
        let vox = inst.voxels()?;
        let (bs, codec) = (vox.block_size(), vox.geometry.codec);
        let voxel_box = |b: Point| -> (Point, Point) {
            let lo: Point = std::array::from_fn(|a| b[a] * bs[a]);
            (lo, std::array::from_fn(|a| lo[a] + bs[a] - 1))
        };
        let Some(covered) = blocks.iter().map(|(b, _)| voxel_box(*b)).reduce(cover) else {
            return self.write_meta(inst, v, meta);
        };
        let encoded = blocks
            .into_par_iter()
            .map(|(b, d)| Encoded::new(b, &d, bs, codec, None))
            .collect();
        self.store_blocks(inst, v, encoded, covered, meta)
    }

    /// Stores encoded blocks as working entries of a version, with `meta`, and grows the
    /// instance's extents to cover `covered`, in one write. Called under the instance's lock, with
    /// `inst` read under it.
    fn store_blocks(
        &self,
        inst: &Instance,
        v: &crate::Version,
        encoded: Vec<Encoded>,
        covered: (Point, Point),
        mut meta: MetaWrite,
    ) -> Result<()> {
        let mut counts = Vec::new();
        let mut blocks = Vec::with_capacity(encoded.len());
        for e in encoded {
            blocks.push((e.block, e.id));
            meta.objects.push((e.id, e.payload));
            counts.extend(e.counts);
        }
        self.apply_blocks(inst, v, blocks, counts, covered, meta)
    }

    /// Points a version's blocks at stored (or with `meta`, storing) objects, keeps a label
    /// index right by `counts`, and grows the instance's extents to cover `covered`, in one
    /// write. Called under the instance's lock, with `inst` read under it.
    pub(crate) fn apply_blocks(
        &self,
        inst: &Instance,
        v: &crate::Version,
        blocks: Vec<(Point, ObjectId)>,
        counts: Vec<CountChange>,
        covered: (Point, Point),
        meta: MetaWrite,
    ) -> Result<()> {
        let mut objects = meta.objects;
        let mut entries = meta.entries;
        for (b, id) in blocks {
            let entry = WorkingEntry {
                object: Some(id),
                name: vec![],
            };
            entries.push((block_key(b).to_vec(), entry));
        }
        if !counts.is_empty() {
            let index = self.index_writes(inst, v, counts)?;
            objects.extend(index.objects);
            entries.extend(index.entries);
        }
        let mut extra = meta.extra;
        let grown = inst.extents.map_or(covered, |e| cover(e, covered));
        if Some(grown) != inst.extents {
            let mut updated = inst.clone();
            updated.extents = Some(grown);
            extra.push(self.update_instance(&updated)?);
        }
        self.write_working(inst, v, objects, entries, extra)
    }

    /// The stored payloads (see [`crate::codec`]) of the blocks that exist among `blocks`, in the
    /// order asked: for serving blocks as stored (JPEG blocks), without decoding.
    pub fn read_block_payloads(
        &self,
        h: &DataHandle,
        blocks: &[Point],
    ) -> Result<Vec<(Point, Vec<u8>)>> {
        let _gate = self.gate.read();
        let (v, inst) = self.readable(h)?;
        inst.voxels()?;
        self.check_blocks_held(&v, &inst, blocks)?;
        let found: Vec<Option<(Point, Vec<u8>)>> = map_blocks(blocks, |b| {
            Ok(match self.lookup(&inst, &v, &block_key(b))? {
                None => None,
                Some(e) => Some((b, self.object(&e.object)?)),
            })
        })?;
        Ok(found.into_iter().flatten().collect())
    }

    /// Whether this node holds block `b` of the instance at the version: a partial replica holds
    /// only its region, and must not pass off a block it lacks as never written.
    pub fn holds_block(&self, h: &DataHandle, b: Point) -> Result<bool> {
        let (v, inst) = self.readable(h)?;
        inst.voxels()?;
        Ok(crate::store::held_scope(&v, &inst).keeps(&block_key(b)))
    }

    /// Uncompressed voxels of the blocks that exist among `blocks`, in the order asked.
    pub fn read_blocks(&self, h: &DataHandle, blocks: &[Point]) -> Result<Vec<(Point, Vec<u8>)>> {
        let _gate = self.gate.read();
        let (v, inst) = self.readable(h)?;
        inst.voxels()?;
        self.check_blocks_held(&v, &inst, blocks)?;
        let found: Vec<Option<(Point, Vec<u8>)>> =
            map_blocks(blocks, |b| Ok(self.block_at(&inst, &v, b)?.map(|d| (b, d))))?;
        Ok(found.into_iter().flatten().collect())
    }

    /// Decoded voxels of one block at a version, or `None` if never written.
    pub(crate) fn block_at(
        &self,
        inst: &Instance,
        v: &crate::Version,
        b: Point,
    ) -> Result<Option<Vec<u8>>> {
        match self.lookup(inst, v, &block_key(b))? {
            None => Ok(None),
            Some(e) => Ok(Some(decode_block(
                &self.object(&e.object)?,
                inst.voxels()?.block_bytes(),
            )?)),
        }
    }
}

/// A block encoded for storing, with what its write changed in a label index's counts.
pub(crate) struct Encoded {
    pub block: Point,
    pub id: ObjectId,
    pub payload: Vec<u8>,
    pub counts: Option<CountChange>,
}

impl Encoded {
    /// Encodes `raw`; `before` (the block's supervoxel counts before the write) asks for the
    /// count change too.
    fn new(
        block: Point,
        raw: &[u8],
        bs: Point,
        codec: Codec,
        before: Option<std::collections::HashMap<u64, u32>>,
    ) -> Self {
        let payload = codec.encode(raw, bs);
        Self {
            block,
            id: ObjectId::of(&payload),
            payload,
            counts: before.map(|before| CountChange {
                block,
                before,
                after: block_counts(raw),
            }),
        }
    }
}

/// Reads below this many blocks run on the caller's thread: handing a viewer's chunk (8 blocks)
/// to the rayon pool costs two thread switches per request and, with many requests at once,
/// queues every request behind the pool.
const PARALLEL_READ_BLOCKS: usize = 32;

/// `f` over `blocks`, in order: on the rayon pool for large reads, on this thread for small ones.
pub(crate) fn map_blocks<R: Send>(
    blocks: &[Point],
    f: impl Fn(Point) -> Result<R> + Sync + Send,
) -> Result<Vec<R>> {
    if blocks.len() < PARALLEL_READ_BLOCKS {
        blocks.iter().map(|&b| f(b)).collect()
    } else {
        blocks.par_iter().map(|&b| f(b)).collect()
    }
}
