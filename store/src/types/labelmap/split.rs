//! Splitting a supervoxel in two (DVID's `split-supervoxel`): the voxels a client names become a
//! new supervoxel, the rest of the old one another, both of the old one's body. Unlike merge and
//! cleave this rewrites voxels, but only the blocks the supervoxel is in, with its body's index,
//! the mapping and a mutation record in the same write.

use super::{INDEX, MetaWrite, labelmap_only, meta_key};
use crate::geometry::Point;
use crate::store::DataHandle;
use crate::types::labelmap::Editor;
use crate::types::labelmap::proto::{decode_block, encode_block};
use crate::{Result, Store, StoreError};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap, HashSet};

/// A split's answer: DVID's `SplitSupervoxel`, `RemainSupervoxel` and `MutationID`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SupervoxelSplit {
    pub split: u64,
    pub remain: u64,
    pub mutation: u64,
}

/// The new ids a client may ask a split to use (DVID's `split` and `remain`); `None`: new labels.
#[derive(Clone, Copy, Debug, Default)]
pub struct SplitIds {
    pub split: Option<u64>,
    pub remain: Option<u64>,
}

/// Runs along x (`x, y, z, length`) cut at block edges: per block, `(y, z, x0, x1)` inclusive.
/// Refuses a run into a block outside `held` (where the supervoxel has no voxels) as soon as it
/// meets one, so a run of 2^31 voxels costs no more than the blocks it really crosses.
pub(super) fn runs_by_block(
    runs: &[[i32; 4]],
    bs: Point,
    held: &HashSet<Point>,
    owner: &str,
) -> Result<HashMap<Point, Vec<[i32; 4]>>> {
    let mut out: HashMap<Point, Vec<[i32; 4]>> = HashMap::new();
    for &[x, y, z, len] in runs {
        if len <= 0 {
            return Err(StoreError::BadRequest(format!(
                "the run at ({x}, {y}, {z}) has length {len}: runs hold at least one voxel"
            )));
        }
        let end = x.checked_add(len - 1).ok_or_else(|| {
            StoreError::BadRequest(format!("the run at ({x}, {y}, {z}) runs past the volume"))
        })?;
        let (by, bz) = (y.div_euclid(bs[1]), z.div_euclid(bs[2]));
        for bx in x.div_euclid(bs[0])..=end.div_euclid(bs[0]) {
            let b = [bx, by, bz];
            let lo = bx.saturating_mul(bs[0]);
            let hi = lo.saturating_add(bs[0] - 1);
            if !held.contains(&b) {
                return Err(StoreError::BadRequest(format!(
                    "the split names voxel ({}, {y}, {z}) in block {b:?}, where {owner} has no \
                     voxels: a split names only voxels of {owner}",
                    x.max(lo)
                )));
            }
            out.entry(b)
                .or_default()
                .push([y, z, x.max(lo), end.min(hi)]);
        }
    }
    Ok(out)
}

impl Store {
    /// Splits supervoxel `sv`: the voxels of `runs` (every one of them `sv`'s) become supervoxel
    /// `split`, the rest of `sv` becomes `remain`, both mapped to `sv`'s body; `sv` then maps to
    /// 0, as DVID marks a split supervoxel.
    pub fn split_supervoxel(
        &self,
        h: &DataHandle,
        sv: u64,
        runs: &[[i32; 4]],
        ids: SplitIds,
        who: &Editor,
    ) -> Result<SupervoxelSplit> {
        if sv == 0 {
            return Err(StoreError::BadRequest(
                "label 0 is background and cannot be split".into(),
            ));
        }
        if runs.is_empty() {
            return Err(StoreError::BadRequest(
                "the split's RLEs hold no voxels: name the voxels that become the new supervoxel"
                    .into(),
            ));
        }
        self.editing(h, "split-supervoxel", |inst, v| {
            let bs = inst.voxels()?.block_size();
            let body = self.body_at(inst, v, sv)?;
            if body == 0 {
                return Err(StoreError::BadRequest(format!(
                    "supervoxel {sv} was split before: it maps to 0 and has no voxels"
                )));
            }
            let mut idx = self
                .index_at(inst, v, body)?
                .filter(|idx| idx.blocks.values().any(|c| c.counts.contains_key(&sv)))
                .ok_or_else(|| {
                    StoreError::NotFound(format!(
                        "supervoxel {sv} has no voxels at version {}",
                        v.uuid
                    ))
                })?;
            let held: Vec<Point> = idx
                .blocks
                .iter()
                .filter(|(_, c)| c.counts.contains_key(&sv))
                .map(|(&code, _)| decode_block(code))
                .collect();
            let held_set = held.iter().copied().collect();
            let pieces = runs_by_block(runs, bs, &held_set, &format!("supervoxel {sv}"))?;

            // New ids: given ones must be unused at this version; the rest are new labels.
            let mut a = self.allotment_for_edits(inst)?;
            let mut take = |given: Option<u64>, what: &str| -> Result<u64> {
                match given {
                    Some(id) => {
                        if id == 0 || id == sv || self.label_in_use(inst, v, id)? {
                            return Err(StoreError::BadRequest(format!(
                                "{what} id {id} is in use (or background) at version {}: give an \
                             unused id, or none for a new label",
                                v.uuid
                            )));
                        }
                        Ok(id)
                    }
                    None => self.take_labels(inst, v, &mut a, 1),
                }
            };
            let split = take(ids.split, "split")?;
            let remain = take(ids.remain, "remain")?;
            if split == remain {
                return Err(StoreError::BadRequest(format!(
                    "split and remain are both {split}: they must differ"
                )));
            }

            let (mut split_n, mut remain_n) = (0u64, 0u64);
            let mut per_block: BTreeMap<u64, (u32, u32)> = BTreeMap::new();
            let mut blocks = Vec::with_capacity(held.len());
            let [sx, sy, _] = bs.map(|n| n as usize);
            for b in held {
                let mut raw = self.read_listed_block(inst, v, body, b)?;
                let origin: Point = std::array::from_fn(|a| b[a] * bs[a]);
                let mut n_split = 0u32;
                for &[y, z, x0, x1] in pieces.get(&b).into_iter().flatten() {
                    let row = ((z - origin[2]) as usize * sy + (y - origin[1]) as usize) * sx;
                    for x in x0..=x1 {
                        let at = (row + (x - origin[0]) as usize) * 8;
                        let label =
                            u64::from_le_bytes(raw[at..at + 8].try_into().expect("8 bytes"));
                        if label == split {
                            continue; // named twice
                        }
                        if label != sv {
                            return Err(StoreError::BadRequest(format!(
                                "voxel ({x}, {y}, {z}) of the split is supervoxel {label}, not \
                             {sv}: every voxel of a split must be the supervoxel's"
                            )));
                        }
                        raw[at..at + 8].copy_from_slice(&split.to_le_bytes());
                        n_split += 1;
                    }
                }
                let mut n_remain = 0u32;
                for voxel in raw.chunks_exact_mut(8) {
                    if voxel == sv.to_le_bytes() {
                        voxel.copy_from_slice(&remain.to_le_bytes());
                        n_remain += 1;
                    }
                }
                split_n += u64::from(n_split);
                remain_n += u64::from(n_remain);
                per_block.insert(encode_block(b), (n_split, n_remain));
                blocks.push((b, raw));
            }
            if remain_n == 0 {
                return Err(StoreError::BadRequest(format!(
                    "the split names all {split_n} voxels of supervoxel {sv}: nothing would remain"
                )));
            }

            let mutation = Self::take_mutation(inst, &mut a)?;
            for (code, (n_split, n_remain)) in per_block {
                let counts = &mut idx.blocks.entry(code).or_default().counts;
                counts.remove(&sv);
                for (id, n) in [(split, n_split), (remain, n_remain)] {
                    if n > 0 {
                        counts.insert(id, n);
                    }
                }
            }
            super::edits::stamp(&mut idx, mutation, who);
            let mut write = MetaWrite::default();
            write.put_index(body, &idx);
            write.put_mapping(split, body);
            write.put_mapping(remain, body);
            write.put(meta_key(super::MAPPING, sv), 0u64.to_le_bytes().to_vec());
            let record = json!({
                "Action": "split-supervoxel-complete",
                "Supervoxel": sv,
                "Body": body,
                "SplitSupervoxel": split,
                "RemainSupervoxel": remain,
                "SplitSize": split_n,
                "RemainSize": remain_n,
            });
            write.put_mutation(mutation, record, v, who);
            write.extra.push(Self::allotment_op(inst, &a));
            self.rewrite_label_blocks(inst, v, blocks, write)?;
            Ok(SupervoxelSplit {
                split,
                remain,
                mutation,
            })
        })
    }

    /// True if `id` is a body or a supervoxel at the version (it has an index or a mapping).
    pub(super) fn label_in_use(
        &self,
        inst: &crate::Instance,
        v: &crate::Version,
        id: u64,
    ) -> Result<bool> {
        Ok(self.lookup(inst, v, &meta_key(INDEX, id))?.is_some()
            || self
                .lookup(inst, v, &meta_key(super::MAPPING, id))?
                .is_some())
    }

    /// The supervoxel splits of a version and its ancestors, newest version first, as DVID's
    /// `supervoxel-splits`: `[uuid, [[mutation, old, remain, split], ...], uuid, [...], ...]`,
    /// leaving out versions without splits.
    pub fn supervoxel_splits(&self, h: &DataHandle) -> Result<Value> {
        let _gate = self.gate.read();
        let (v, inst) = self.readable(h)?;
        labelmap_only(&inst, "supervoxel-splits")?;
        let mut by_version: BTreeMap<String, Vec<Value>> = BTreeMap::new();
        for r in self.mutation_records(&inst, &v)? {
            let uuid = r["UUID"].as_str().unwrap_or_default().to_string();
            let splits = by_version.entry(uuid).or_default();
            if r["Action"] == "split-supervoxel-complete" {
                splits.push(json!([
                    r["MutationID"],
                    r["Supervoxel"],
                    r["RemainSupervoxel"],
                    r["SplitSupervoxel"]
                ]));
            } else if r["Action"] == "split-complete" {
                // A body split splits every supervoxel it touches.
                for (sv, halves) in r["SVSplits"].as_object().into_iter().flatten() {
                    let sv: u64 = sv.parse().unwrap_or_default();
                    splits.push(json!([
                        r["MutationID"],
                        sv,
                        halves["Remain"],
                        halves["Split"]
                    ]));
                }
            }
        }
        by_version.retain(|_, splits| !splits.is_empty());
        let c = self.catalog.read();
        let mut out = Vec::new();
        for id in c.ancestors(v.id)?.into_iter().rev() {
            let uuid = c.version(id)?.uuid.to_string();
            if let Some(splits) = by_version.remove(&uuid) {
                out.push(json!(uuid));
                out.push(json!(splits));
            }
        }
        Ok(Value::Array(out))
    }
}
