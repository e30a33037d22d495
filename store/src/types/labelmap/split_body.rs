//! Splitting a body (DVID's `split/{label}`): the voxels a client names become a new body. Each
//! supervoxel they touch splits in two as in a supervoxel split: its voxels inside become a new
//! supervoxel of the new body, the rest a new supervoxel of the old body, and it maps to 0. Only
//! the blocks holding a touched supervoxel are rewritten, with both bodies' indices, the mapping
//! and a mutation record in the same write.

use super::edits::stamp;
use super::proto::{decode_block, encode_block};
use super::split::runs_by_block;
use super::{Editor, LabelIndex, MAPPING, MetaWrite, meta_key};
use crate::geometry::Point;
use crate::store::DataHandle;
use crate::{Result, Store, StoreError};
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

/// A body split's answer: the new body and the mutation (DVID's `label` and `MutationID`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BodySplit {
    pub label: u64,
    pub mutation: u64,
}

/// The new supervoxels of one split supervoxel: its voxels in the split and the rest.
#[derive(Clone, Copy)]
struct Halves {
    split: u64,
    remain: u64,
}

impl Store {
    /// Splits the voxels of `runs` (x, y, z, length at scale 0) off `body` into a new body.
    /// Background voxels in the runs are passed over; any other voxel must be the body's, and
    /// the split must leave the body some voxels.
    pub fn split_body(
        &self,
        h: &DataHandle,
        body: u64,
        runs: &[[i32; 4]],
        who: &Editor,
    ) -> Result<BodySplit> {
        if body == 0 {
            return Err(StoreError::BadRequest(
                "label 0 is background and cannot be split".into(),
            ));
        }
        if runs.is_empty() {
            return Err(StoreError::BadRequest(
                "the split's RLEs hold no voxels: name the voxels that become the new body".into(),
            ));
        }
        self.editing(h, "split", |inst, v| {
            let bs = inst.voxels()?.block_size();
            let mut idx = self.index_at(inst, v, body)?.ok_or_else(|| {
                StoreError::NotFound(format!("body {body} has no voxels at version {}", v.uuid))
            })?;
            let held: HashSet<Point> = idx.blocks.keys().map(|&c| decode_block(c)).collect();
            let pieces = runs_by_block(runs, bs, &held, &format!("body {body}"))?;

            // Pass 1: which voxels of which blocks the split takes, checked to be the body's.
            let [sx, sy, _] = bs.map(|n| n as usize);
            let mut raws: BTreeMap<Point, Vec<u8>> = BTreeMap::new();
            let mut taken: Vec<(Point, Vec<usize>)> = Vec::with_capacity(pieces.len());
            let mut touched: BTreeSet<u64> = BTreeSet::new();
            let mut pieces: Vec<_> = pieces.into_iter().collect();
            pieces.sort_unstable_by_key(|(b, _)| [b[2], b[1], b[0]]);
            for (b, rows) in pieces {
                let own = &idx.blocks[&encode_block(b)].counts;
                let raw = self.read_listed_block(inst, v, body, b)?;
                let origin: Point = std::array::from_fn(|a| b[a] * bs[a]);
                let mut at = Vec::new();
                for [y, z, x0, x1] in rows {
                    let row = ((z - origin[2]) as usize * sy + (y - origin[1]) as usize) * sx;
                    for x in x0..=x1 {
                        let i = row + (x - origin[0]) as usize;
                        let label = label_at(&raw, i);
                        if label == 0 {
                            continue;
                        }
                        if !own.contains_key(&label) {
                            return Err(StoreError::BadRequest(format!(
                                "voxel ({x}, {y}, {z}) of the split is supervoxel {label}, \
                                 which is not in body {body}: a split names only voxels of the \
                                 body (or background)"
                            )));
                        }
                        touched.insert(label);
                        at.push(i);
                    }
                }
                // A voxel named twice is split once.
                at.sort_unstable();
                at.dedup();
                raws.insert(b, raw);
                taken.push((b, at));
            }
            let split_n: u64 = taken.iter().map(|(_, at)| at.len() as u64).sum();
            let body_n = idx.voxels(None);
            if split_n == 0 {
                return Err(StoreError::BadRequest(format!(
                    "the split names only background voxels: none of body {body}'s"
                )));
            }
            if split_n >= body_n {
                return Err(StoreError::BadRequest(format!(
                    "the split names all {body_n} voxels of body {body}: nothing would remain"
                )));
            }

            // New ids, consecutive: the new body, then a split and a remain per supervoxel.
            let mut a = self.allotment_for_edits(inst)?;
            let count = 1 + 2 * touched.len() as u64;
            let label = self.take_labels(inst, v, &mut a, count)?;
            let halves: HashMap<u64, Halves> = touched
                .iter()
                .enumerate()
                .map(|(i, &sv)| {
                    let split = label + 1 + 2 * i as u64;
                    let remain = split + 1;
                    (sv, Halves { split, remain })
                })
                .collect();

            // Pass 2: the split voxels, then what remains of each touched supervoxel in every
            // block that holds one.
            let mut new_body = LabelIndex {
                label,
                ..Default::default()
            };
            for (b, at) in taken {
                let raw = raws.get_mut(&b).expect("read in pass 1");
                let counts = &mut new_body.blocks.entry(encode_block(b)).or_default().counts;
                for i in at {
                    let s = halves[&label_at(raw, i)].split;
                    raw[i * 8..i * 8 + 8].copy_from_slice(&s.to_le_bytes());
                    *counts.entry(s).or_default() += 1;
                }
            }
            let affected: Vec<u64> = idx
                .blocks
                .iter()
                .filter(|(_, c)| c.counts.keys().any(|sv| halves.contains_key(sv)))
                .map(|(&code, _)| code)
                .collect();
            for code in affected {
                let b = decode_block(code);
                let raw = match raws.entry(b) {
                    std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
                    std::collections::btree_map::Entry::Vacant(e) => {
                        e.insert(self.read_listed_block(inst, v, body, b)?)
                    }
                };
                let mut remained: HashMap<u64, u32> = HashMap::new();
                let mut last: Option<(u64, Option<u64>)> = None;
                for voxel in raw.chunks_exact_mut(8) {
                    let old = u64::from_le_bytes(voxel.try_into().expect("8 bytes"));
                    let remain = match last {
                        Some((l, r)) if l == old => r,
                        _ => {
                            let r = halves.get(&old).map(|h| h.remain);
                            last = Some((old, r));
                            r
                        }
                    };
                    if let Some(r) = remain {
                        voxel.copy_from_slice(&r.to_le_bytes());
                        *remained.entry(r).or_default() += 1;
                    }
                }
                let counts = &mut idx.blocks.get_mut(&code).expect("listed").counts;
                counts.retain(|sv, _| !halves.contains_key(sv));
                counts.extend(remained);
                if counts.is_empty() {
                    idx.blocks.remove(&code);
                }
            }

            let mutation = Self::take_mutation(inst, &mut a)?;
            stamp(&mut idx, mutation, who);
            stamp(&mut new_body, mutation, who);
            let mut write = MetaWrite::default();
            write.put_index(body, &idx);
            write.put_index(label, &new_body);
            let mut sv_splits = serde_json::Map::new();
            // In supervoxel order: JSON maps keep insertion order (serde_json's preserve_order,
            // which zarrs turns on), and the record is stored and listed.
            let mut in_order: Vec<_> = halves.iter().collect();
            in_order.sort_unstable_by_key(|(sv, _)| **sv);
            for (&sv, h) in in_order {
                write.put_mapping(h.split, label);
                write.put_mapping(h.remain, body);
                write.put(meta_key(MAPPING, sv), 0u64.to_le_bytes().to_vec());
                sv_splits.insert(
                    sv.to_string(),
                    json!({"Split": h.split, "Remain": h.remain}),
                );
            }
            let record = json!({
                "Action": "split-complete",
                "Target": body,
                "NewLabel": label,
                "SVSplits": sv_splits,
                "SplitSize": split_n,
                "RemainSize": body_n - split_n,
            });
            write.put_mutation(mutation, record, v, who);
            write.extra.push(Self::allotment_op(inst, &a));
            self.rewrite_label_blocks(inst, v, raws.into_iter().collect(), write)?;
            Ok(BodySplit { label, mutation })
        })
    }

    /// A block a body's index lists, which must be stored.
    pub(super) fn read_listed_block(
        &self,
        inst: &crate::Instance,
        v: &crate::Version,
        body: u64,
        b: Point,
    ) -> Result<Vec<u8>> {
        self.block_at(inst, v, b)?.ok_or_else(|| {
            StoreError::Corrupt(format!(
                "body {body}'s index lists block {b:?}, which is missing"
            ))
        })
    }
}

/// The label of voxel `i` of a block's little-endian labels.
fn label_at(raw: &[u8], i: usize) -> u64 {
    u64::from_le_bytes(raw[i * 8..i * 8 + 8].try_into().expect("8 bytes"))
}
