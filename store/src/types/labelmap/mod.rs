//! labelmap, the type DVID's users proofread with: supervoxel ids in blocks (as labelblk), and,
//! in the same versioned tree, under keys that start with a zero byte (no block key of a block
//! size that is a multiple of 8 can: see [`META`]):
//! - the **mapping**, supervoxel → body, for supervoxels that are not their own body; the value
//!   is the body id, so every supervoxel of a body names one shared object;
//! - the **label index** of each body, DVID's `LabelIndex` protobuf: its blocks and the voxels of
//!   each of its supervoxels in each;
//! - the **mutation log**: one JSON record per merge or cleave.
//!
//! So a locked version's segmentation, mapping and indices are one Merkle tree like any other
//! instance's: they never change, a commit hash covers them, and a pull of a child after a merge
//! moves the changed mapping and index entries, not the blocks. Nothing is replayed on open.

mod edits;
mod history;
mod indices;
pub mod proto;
pub mod ranges;
mod remap;
mod renumber;
mod sparse;
mod split;
mod split_body;

pub use edits::{Cleaved, Editor};
pub use ranges::{Allotment, Grant};
pub use sparse::BodyBlock;
pub use split::{SplitIds, SupervoxelSplit};
pub use split_body::BodySplit;

use super::VoxelType;
use crate::catalog::{Instance, Version};
use crate::engine::Space;
use crate::geometry::{Point, Subvolume};
use crate::store::{DataHandle, WorkingEntry};
use crate::tree::{Entry, Scope};
use crate::{ObjectId, Result, Store, StoreError, keys};
use proto::{LabelIndex, SvCount, encode_block};
use std::collections::{BTreeMap, HashMap};

pub static LABELMAP: VoxelType = VoxelType {
    name: "labelmap",
    voxel_bytes: 8,
    default_block_size: [64, 64, 64],
    downsample: super::Downsample::Mode,
    indexed: true,
};

/// First byte of every key that is not a block's. Block keys are Morton codes of block
/// coordinates biased by 2^31; with voxel coordinates in i32 and block edges of at least 8, every
/// biased block coordinate has bit 31 or bit 30 set, so a block key's first byte is never 0.
pub const META: u8 = 0;
const MAPPING: u8 = b'm';
const INDEX: u8 = b'i';
const MUTATION: u8 = b'u';

fn meta_key(kind: u8, id: u64) -> Vec<u8> {
    let mut k = vec![META, kind];
    k.extend_from_slice(&id.to_be_bytes());
    k
}

fn meta_id(key: &[u8], kind: u8) -> Option<u64> {
    match key {
        [META, k, rest @ ..] if *k == kind => Some(u64::from_be_bytes(rest.try_into().ok()?)),
        _ => None,
    }
}

/// How a metadata key reads in a conflict or a diff: "body 7's label index".
pub(crate) fn describe_meta(key: &[u8]) -> Option<String> {
    if let Some(body) = meta_id(key, INDEX) {
        return Some(format!("body {body}'s label index"));
    }
    if let Some(sv) = meta_id(key, MAPPING) {
        return Some(format!("supervoxel {sv}'s mapping"));
    }
    meta_id(key, MUTATION).map(|m| format!("mutation {m}"))
}

/// The bodies a diff's metadata key changed: a label index's body.
pub fn body_of_key(key: &[u8]) -> Option<u64> {
    meta_id(key, INDEX)
}

/// Voxels of each non-zero label in one block of little-endian u64 labels.
pub(crate) fn block_counts(raw: &[u8]) -> HashMap<u64, u32> {
    let mut counts = HashMap::new();
    let mut run = (0u64, 0u32);
    for b in raw.chunks_exact(8) {
        let l = u64::from_le_bytes(b.try_into().expect("8-byte labels"));
        if l == run.0 {
            run.1 += 1;
            continue;
        }
        if run.0 != 0 && run.1 > 0 {
            *counts.entry(run.0).or_default() += run.1;
        }
        run = (l, 1);
    }
    if run.0 != 0 && run.1 > 0 {
        *counts.entry(run.0).or_default() += run.1;
    }
    counts
}

/// A block whose supervoxel counts a write changed: before and after.
pub(crate) struct CountChange {
    pub block: Point,
    pub before: HashMap<u64, u32>,
    pub after: HashMap<u64, u32>,
}

/// New objects and working entries of one change to the metadata, and other operations of the
/// same write (this node's allotment).
#[derive(Default)]
pub(crate) struct MetaWrite {
    pub objects: Vec<(ObjectId, Vec<u8>)>,
    pub entries: Vec<(Vec<u8>, WorkingEntry)>,
    pub extra: Vec<crate::engine::BatchOp>,
}

impl Store {
    /// Stores one change to a labelmap's metadata at a mutable version, in one write. Called under
    /// the instance's lock.
    pub(crate) fn write_meta(&self, inst: &Instance, v: &Version, write: MetaWrite) -> Result<()> {
        self.write_working(inst, v, write.objects, write.entries, write.extra)
    }
}

impl MetaWrite {
    fn put(&mut self, key: Vec<u8>, value: Vec<u8>) {
        let id = ObjectId::of(&value);
        self.objects.push((id, value));
        self.entries.push((
            key,
            WorkingEntry {
                object: Some(id),
                name: vec![],
            },
        ));
    }

    fn delete(&mut self, key: Vec<u8>) {
        self.entries.push((
            key,
            WorkingEntry {
                object: None,
                name: vec![],
            },
        ));
    }

    fn put_index(&mut self, body: u64, idx: &LabelIndex) {
        if idx.blocks.is_empty() {
            self.delete(meta_key(INDEX, body));
        } else {
            self.put(meta_key(INDEX, body), prost::Message::encode_to_vec(idx));
        }
    }

    fn put_mapping(&mut self, sv: u64, body: u64) {
        if sv == body {
            // Identity is the absence of an entry, so a body split off and merged back leaves
            // the tree as it was.
            self.delete(meta_key(MAPPING, sv));
        } else {
            self.put(meta_key(MAPPING, sv), body.to_le_bytes().to_vec());
        }
    }
}

/// Refuses instances that are not labelmaps, naming what they are.
pub(crate) fn labelmap_only(inst: &Instance, what: &str) -> Result<()> {
    if inst.spec.datatype.name() == LABELMAP.name {
        return Ok(());
    }
    Err(StoreError::BadRequest(format!(
        "{what} is a labelmap operation; data instance {:?} is {}",
        inst.name,
        inst.spec.datatype.name()
    )))
}

impl Store {
    /// The body a supervoxel belongs to at a version (itself if unmapped).
    pub(crate) fn body_at(&self, inst: &Instance, v: &Version, sv: u64) -> Result<u64> {
        match self.lookup(inst, v, &meta_key(MAPPING, sv))? {
            None => Ok(sv),
            Some(e) => self.mapped_body(sv, &e),
        }
    }

    /// The body a mapping entry of supervoxel `sv` names.
    fn mapped_body(&self, sv: u64, e: &Entry) -> Result<u64> {
        let bytes = self.object(&e.object)?;
        let id: [u8; 8] = bytes
            .as_slice()
            .try_into()
            .map_err(|_| StoreError::Corrupt(format!("mapping of supervoxel {sv}: not a u64")))?;
        Ok(u64::from_le_bytes(id))
    }

    /// The label index of `body` at a version, if it has voxels.
    pub(crate) fn index_at(
        &self,
        inst: &Instance,
        v: &Version,
        body: u64,
    ) -> Result<Option<LabelIndex>> {
        match self.lookup(inst, v, &meta_key(INDEX, body))? {
            None => Ok(None),
            Some(e) => LabelIndex::decode_bytes(&self.object(&e.object)?)
                .map(Some)
                .map_err(|e| StoreError::Corrupt(format!("label index of body {body}: {e}"))),
        }
    }

    /// Every metadata entry of one kind at a version (tree and working set), by id.
    fn meta_entries(&self, inst: &Instance, v: &Version, kind: u8) -> Result<BTreeMap<u64, Entry>> {
        let mut out = BTreeMap::new();
        let scope = Scope::Prefix(vec![META, kind]);
        self.trees
            .visit(v.roots.get(&inst.id).copied(), &scope, &mut |e| {
                if let Some(id) = meta_id(&e.key, kind) {
                    out.insert(id, e.clone());
                }
                true
            })?;
        if !v.locked {
            self.scan_working(inst.id, v.id, &mut |_, key, w| {
                if let Some(id) = meta_id(key, kind) {
                    match w.object {
                        Some(object) => {
                            out.insert(
                                id,
                                Entry {
                                    key: key.to_vec(),
                                    name: vec![],
                                    object,
                                },
                            );
                        }
                        None => {
                            out.remove(&id);
                        }
                    }
                }
            })?;
        }
        Ok(out)
    }

    /// Index entries for the counts a write changed, to store with its blocks (under the
    /// instance's lock). Each touched body's index is read once and written once.
    pub(crate) fn index_writes(
        &self,
        inst: &Instance,
        v: &Version,
        changes: Vec<CountChange>,
    ) -> Result<MetaWrite> {
        let mut bodies: HashMap<u64, u64> = HashMap::new();
        let mut per_body: BTreeMap<u64, Vec<(u64, u64, u32)>> = BTreeMap::new();
        for c in changes {
            if c.block
                .iter()
                .any(|v| v.unsigned_abs() > proto::MAX_BLOCK_COORD as u32)
            {
                return Err(StoreError::BadRequest(format!(
                    "block {:?} of {:?} is beyond the ±{} blocks a label index can name (DVID's \
                     block index): write labelmap voxels nearer the origin",
                    c.block,
                    inst.name,
                    proto::MAX_BLOCK_COORD
                )));
            }
            let code = encode_block(c.block);
            let svs = c.before.keys().chain(c.after.keys());
            let mut seen = std::collections::HashSet::new();
            for &sv in svs {
                if !seen.insert(sv) {
                    continue;
                }
                let after = c.after.get(&sv).copied().unwrap_or(0);
                if c.before.get(&sv).copied().unwrap_or(0) == after {
                    continue;
                }
                let body = match bodies.get(&sv) {
                    Some(&b) => b,
                    None => {
                        // A split supervoxel maps to 0: written again, it is its own body.
                        let b = Some(self.body_at(inst, v, sv)?)
                            .filter(|&b| b != 0)
                            .unwrap_or(sv);
                        bodies.insert(sv, b);
                        b
                    }
                };
                per_body.entry(body).or_default().push((code, sv, after));
            }
        }
        let mut out = MetaWrite::default();
        for (body, counts) in per_body {
            let mut idx = self.index_at(inst, v, body)?.unwrap_or_else(|| LabelIndex {
                label: body,
                ..Default::default()
            });
            for (code, sv, after) in counts {
                let block = idx.blocks.entry(code).or_insert_with(SvCount::default);
                if after == 0 {
                    block.counts.remove(&sv);
                } else {
                    block.counts.insert(sv, after);
                }
                if block.counts.is_empty() {
                    idx.blocks.remove(&code);
                }
            }
            out.put_index(body, &idx);
        }
        Ok(out)
    }

    /// Bodies of supervoxels at a version (`nolookup`: unmapped ids are their own body without
    /// checking; otherwise an id that is no supervoxel of any body maps to 0, as DVID answers).
    pub fn mapping(&self, h: &DataHandle, svs: &[u64], nolookup: bool) -> Result<Vec<u64>> {
        let _gate = self.gate.read();
        let (v, inst) = self.readable(h)?;
        labelmap_only(&inst, "mapping")?;
        svs.iter()
            .map(|&sv| {
                if sv == 0 {
                    return Ok(0);
                }
                let body = self.body_at(&inst, &v, sv)?;
                if body != sv || nolookup {
                    return Ok(body);
                }
                Ok(match self.index_at(&inst, &v, sv)? {
                    Some(idx) if idx.blocks.values().any(|c| c.counts.contains_key(&sv)) => sv,
                    _ => 0,
                })
            })
            .collect()
    }

    /// Every supervoxel that is not its own body, with its body, sorted by supervoxel.
    pub fn mappings(&self, h: &DataHandle) -> Result<Vec<(u64, u64)>> {
        let _gate = self.gate.read();
        let (v, inst) = self.readable(h)?;
        labelmap_only(&inst, "mappings")?;
        self.meta_entries(&inst, &v, MAPPING)?
            .into_iter()
            .map(|(sv, e)| Ok((sv, self.mapped_body(sv, &e)?)))
            .collect()
    }

    /// Bodies (labels with voxels in their own index) from `start` on, at most `number`, in
    /// order, with their voxels if `sizes` (DVID's `listlabels`).
    pub fn list_labels(
        &self,
        h: &DataHandle,
        start: u64,
        number: usize,
        sizes: bool,
    ) -> Result<Vec<(u64, u64)>> {
        let _gate = self.gate.read();
        let (v, inst) = self.readable(h)?;
        labelmap_only(&inst, "listlabels")?;
        let mut out = Vec::new();
        for (body, e) in self.meta_entries(&inst, &v, INDEX)?.range(start..) {
            if out.len() == number {
                break;
            }
            let voxels = match sizes {
                false => 0,
                true => LabelIndex::decode_bytes(&self.object(&e.object)?)
                    .map_err(|e| StoreError::Corrupt(format!("label index of {body}: {e}")))?
                    .voxels(None),
            };
            out.push((*body, voxels));
        }
        Ok(out)
    }

    /// On a partial replica (a region pull), the bodies with voxels both inside and outside the
    /// region this node holds: their indices, sizes and mappings are whole here, their voxels
    /// are not. Empty when the version is held whole.
    pub fn partial_bodies(&self, h: &DataHandle) -> Result<Vec<u64>> {
        let _gate = self.gate.read();
        let (v, inst) = self.readable(h)?;
        labelmap_only(&inst, "partial-bodies")?;
        if v.replica.regions(&inst.name).is_none() {
            return Ok(vec![]);
        }
        let scope = crate::store::held_scope(&v, &inst);
        let held =
            |code: &u64| scope.keeps(&crate::geometry::block_key(proto::decode_block(*code)));
        let mut out = Vec::new();
        for (body, e) in self.meta_entries(&inst, &v, INDEX)? {
            let idx = LabelIndex::decode_bytes(&self.object(&e.object)?)
                .map_err(|e| StoreError::Corrupt(format!("label index of {body}: {e}")))?;
            let inside = idx.blocks.keys().filter(|c| held(c)).count();
            if inside > 0 && inside < idx.blocks.len() {
                out.push(body);
            }
        }
        Ok(out)
    }

    /// The label index of a body, or `None` if it has no voxels at this version.
    pub fn label_index(&self, h: &DataHandle, body: u64) -> Result<Option<LabelIndex>> {
        let _gate = self.gate.read();
        let (v, inst) = self.readable(h)?;
        labelmap_only(&inst, "index")?;
        self.index_at(&inst, &v, body)
    }

    /// The index of the body a label names: the body's own (`supervoxels` false), or, for a
    /// supervoxel, its body's index narrowed to it. `None` if the label has no voxels.
    pub fn index_of_label(
        &self,
        h: &DataHandle,
        label: u64,
        supervoxels: bool,
    ) -> Result<Option<LabelIndex>> {
        let _gate = self.gate.read();
        let (v, inst) = self.readable(h)?;
        labelmap_only(&inst, "a label's voxels")?;
        self.narrowed_index(&inst, &v, label, supervoxels)
    }

    fn narrowed_index(
        &self,
        inst: &Instance,
        v: &Version,
        label: u64,
        supervoxels: bool,
    ) -> Result<Option<LabelIndex>> {
        if !supervoxels {
            return self.index_at(inst, v, label);
        }
        let body = self.body_at(inst, v, label)?;
        let Some(mut idx) = self.index_at(inst, v, body)? else {
            return Ok(None);
        };
        idx.blocks.retain(|_, c| {
            c.counts.retain(|&sv, _| sv == label);
            !c.counts.is_empty()
        });
        Ok((!idx.blocks.is_empty()).then_some(idx))
    }

    /// Voxels of each label: bodies, or supervoxels (`supervoxels`); 0 for labels without any.
    pub fn sizes(&self, h: &DataHandle, labels: &[u64], supervoxels: bool) -> Result<Vec<u64>> {
        let _gate = self.gate.read();
        let (v, inst) = self.readable(h)?;
        labelmap_only(&inst, "sizes")?;
        labels
            .iter()
            .map(|&l| {
                Ok(self
                    .narrowed_index(&inst, &v, l, supervoxels)?
                    .map_or(0, |idx| idx.voxels(None)))
            })
            .collect()
    }

    /// The highest label at a version: of its supervoxels and bodies (bodies merged away
    /// included, as their supervoxels keep mapping entries).
    pub fn max_label(&self, h: &DataHandle) -> Result<u64> {
        let _gate = self.gate.read();
        let (v, inst) = self.readable(h)?;
        labelmap_only(&inst, "maxlabel")?;
        self.max_label_at(&inst, &v)
    }

    fn max_label_at(&self, inst: &Instance, v: &Version) -> Result<u64> {
        Ok(self.max_label_in(inst, v, 1, u64::MAX)?.unwrap_or(0))
    }

    /// The highest label in `[lo, hi)` at a version, of supervoxels and bodies.
    pub(crate) fn max_label_in(
        &self,
        inst: &Instance,
        v: &Version,
        lo: u64,
        hi: u64,
    ) -> Result<Option<u64>> {
        let root = v.roots.get(&inst.id).copied();
        let mut max = None;
        for kind in [INDEX, MAPPING] {
            let (lo, hi) = (meta_key(kind, lo), meta_key(kind, hi));
            if let Some(k) = self.trees.last_key(
                root,
                &Scope::Range {
                    lo: lo.clone(),
                    hi: hi.clone(),
                },
            )? {
                max = max.max(meta_id(&k, kind));
            }
            if !v.locked {
                // Working keys count even when deleted: a label once used stays used.
                let (start, end) = (
                    keys::working(inst.id, v.id, &lo),
                    keys::working(inst.id, v.id, &hi),
                );
                let at = keys::working_prefix(inst.id, v.id).len();
                self.meta
                    .scan(Space::Working, &start, Some(&end), &mut |k, _| {
                        max = max.max(meta_id(&k[at..], kind));
                        true
                    })?;
            }
        }
        Ok(max)
    }

    /// Supervoxels to bodies, each distinct id looked up once.
    pub fn map_labels(&self, h: &DataHandle, mut labels: Vec<u64>) -> Result<Vec<u64>> {
        let _gate = self.gate.read();
        let (v, inst) = self.readable(h)?;
        labelmap_only(&inst, "mapping")?;
        let mut bodies: HashMap<u64, u64> = HashMap::new();
        let mut last = (0u64, 0u64);
        for l in labels.iter_mut() {
            if *l == 0 {
                continue;
            }
            if *l == last.0 {
                *l = last.1;
                continue;
            }
            let sv = *l;
            let body = match bodies.get(&sv) {
                Some(&b) => b,
                None => {
                    let b = self.body_at(&inst, &v, sv)?;
                    bodies.insert(sv, b);
                    b
                }
            };
            last = (sv, body);
            *l = body;
        }
        Ok(labels)
    }

    /// A subvolume of bodies (or supervoxels), as labels.
    pub fn read_bodies(
        &self,
        h: &DataHandle,
        sub: Subvolume,
        supervoxels: bool,
    ) -> Result<Vec<u64>> {
        let labels = self.read_labels(h, sub)?;
        if supervoxels || h.instance.spec.datatype.name() != LABELMAP.name {
            return Ok(labels);
        }
        self.map_labels(h, labels)
    }
}

#[cfg(test)]
mod tests;
