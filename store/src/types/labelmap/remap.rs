//! DVID's `POST mappings`: supervoxels assigned to bodies wholesale (ingesting an agglomeration).
//! DVID changes only its mapping log and leaves the label indices to the client; here each moved
//! supervoxel's counts move from its old body's index to its new body's in the same write, so the
//! indices always describe the mapping.

use super::proto::MappingOp;
use super::{LabelIndex, MetaWrite};
use crate::store::DataHandle;
use crate::{Result, Store, StoreError};
use std::collections::BTreeMap;

impl Store {
    /// Maps each op's `original` supervoxels to its `mapped` body, moving their index counts.
    /// Returns how many supervoxels changed body.
    pub fn apply_mappings(&self, h: &DataHandle, ops: &[MappingOp]) -> Result<usize> {
        for op in ops {
            if op.mapped == 0 {
                return Err(StoreError::BadRequest(format!(
                    "a mapping to 0 (of supervoxels {:?}) would leave their voxels in no body: \
                     map supervoxels to bodies",
                    &op.original[..op.original.len().min(5)]
                )));
            }
        }
        self.editing(h, "mappings", |inst, v| {
            // Indices read once and written once, whatever the number of moves.
            let mut indices: BTreeMap<u64, LabelIndex> = BTreeMap::new();
            let load = |body: u64, indices: &mut BTreeMap<u64, LabelIndex>| -> Result<()> {
                if let std::collections::btree_map::Entry::Vacant(e) = indices.entry(body) {
                    e.insert(self.index_at(inst, v, body)?.unwrap_or_else(|| LabelIndex {
                        label: body,
                        ..Default::default()
                    }));
                }
                Ok(())
            };
            let mut write = MetaWrite::default();
            let mut moved = 0;
            let mut final_body: BTreeMap<u64, u64> = BTreeMap::new();
            for op in ops {
                for &sv in &op.original {
                    if sv == 0 {
                        return Err(StoreError::BadRequest(
                            "label 0 is background and has no mapping".into(),
                        ));
                    }
                    let from = match final_body.get(&sv) {
                        Some(&b) => b,
                        None => self.body_at(inst, v, sv)?,
                    };
                    if from == 0 {
                        return Err(StoreError::BadRequest(format!(
                            "supervoxel {sv} was split and has no voxels: it cannot be mapped"
                        )));
                    }
                    final_body.insert(sv, op.mapped);
                    if from == op.mapped {
                        continue;
                    }
                    moved += 1;
                    load(from, &mut indices)?;
                    load(op.mapped, &mut indices)?;
                    let old = indices.get_mut(&from).expect("loaded");
                    let mut counts = Vec::new();
                    old.blocks.retain(|&code, c| {
                        if let Some(n) = c.counts.remove(&sv) {
                            counts.push((code, n));
                        }
                        !c.counts.is_empty()
                    });
                    let new = indices.get_mut(&op.mapped).expect("loaded");
                    for (code, n) in counts {
                        new.blocks.entry(code).or_default().counts.insert(sv, n);
                    }
                    if op.mutid != 0 {
                        for b in [from, op.mapped] {
                            indices.get_mut(&b).expect("loaded").last_mutid = op.mutid;
                        }
                    }
                }
            }
            for (sv, body) in final_body {
                write.put_mapping(sv, body);
            }
            for (body, idx) in &indices {
                write.put_index(*body, idx);
            }
            self.write_meta(inst, v, write)?;
            Ok(moved)
        })
    }
}
