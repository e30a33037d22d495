//! DVID's `renumber`: a body takes a new id that nothing at the version uses, keeping its
//! supervoxels and voxels. Like a merge into an empty body, it writes only the mapping of the
//! body's supervoxels, the moved index and a mutation record.

use super::edits::stamp;
use super::{Editor, INDEX, MetaWrite, meta_key};
use crate::store::DataHandle;
use crate::{Result, Store, StoreError};
use serde_json::json;

impl Store {
    /// Renumbers body `old` to `new`, which must be unused at the version (no body and no
    /// supervoxel). Returns the mutation id.
    pub fn renumber_body(&self, h: &DataHandle, new: u64, old: u64, who: &Editor) -> Result<u64> {
        if new == 0 || old == 0 {
            return Err(StoreError::BadRequest(
                "label 0 is background and cannot be renumbered".into(),
            ));
        }
        if new == old {
            return Err(StoreError::BadRequest(format!(
                "cannot renumber body {old} to itself"
            )));
        }
        self.editing(h, "renumber", |inst, v| {
            if self.label_in_use(inst, v, new)? {
                return Err(StoreError::BadRequest(format!(
                    "label {new} is in use at version {} (a body or a supervoxel): renumber to \
                     an unused label",
                    v.uuid
                )));
            }
            let mut idx = self.index_at(inst, v, old)?.ok_or_else(|| {
                StoreError::BadRequest(format!(
                    "body {old} has no voxels at version {}: renumber takes an existing body",
                    v.uuid
                ))
            })?;
            let mut a = self.allotment_for_edits(inst)?;
            let mutation = Self::take_mutation(inst, &mut a)?;
            let mut write = MetaWrite::default();
            for sv in idx.supervoxels() {
                write.put_mapping(sv, new);
            }
            idx.label = new;
            stamp(&mut idx, mutation, who);
            write.delete(meta_key(INDEX, old));
            write.put_index(new, &idx);
            let record = json!({
                "Action": "renumber-complete",
                "NewLabel": new,
                "OrigLabel": old,
            });
            write.put_mutation(mutation, record, v, who);
            write.extra.push(Self::allotment_op(inst, &a));
            self.write_meta(inst, v, write)?;
            Ok(mutation)
        })
    }
}
