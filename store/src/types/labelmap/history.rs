//! A label's history between two versions (DVID's `history`): the mutation records that touched it,
//! in the versions from one to the other along the DAG.

use super::labelmap_only;
use crate::catalog::Uuid;
use crate::store::DataHandle;
use crate::{Result, Store, StoreError};
use serde_json::Value;

/// The fields of a mutation record that name labels.
const LABEL_FIELDS: [&str; 9] = [
    "Target",
    "Body",
    "Labels",
    "OrigLabel",
    "CleavedLabel",
    "CleavedSupervoxels",
    "Supervoxel",
    "SplitSupervoxel",
    "RemainSupervoxel",
];

fn names(record: &Value, label: u64) -> bool {
    LABEL_FIELDS.iter().any(|f| match &record[f] {
        Value::Array(list) => list.iter().any(|v| v.as_u64() == Some(label)),
        v => v.as_u64() == Some(label),
    })
}

impl Store {
    /// The mutation records naming `label` made at the versions between `from` and the handle's
    /// version (both included), oldest version first, each version's in the order made.
    pub fn history(&self, h: &DataHandle, label: u64, from: Uuid) -> Result<Vec<Value>> {
        let _gate = self.gate.read();
        let (v, inst) = self.readable(h)?;
        labelmap_only(&inst, "history")?;
        let c = self.catalog.read();
        let from_id = c
            .exact(from)
            .ok_or_else(|| StoreError::NotFound(format!("no version {from} here")))?;
        let ancestors = c.ancestors(v.id)?;
        if !ancestors.contains(&from_id) {
            return Err(StoreError::BadRequest(format!(
                "version {from} is not an ancestor of {}: history runs from an ancestor to a \
                 descendant",
                v.uuid
            )));
        }
        // The versions on the way: ancestors of the target that descend from `from`.
        let mut between = Vec::new();
        for id in ancestors {
            if c.ancestors(id)?.contains(&from_id) {
                between.push((id, c.version(id)?.uuid.to_string()));
            }
        }
        drop(c);
        let records = self.mutation_records(&inst, &v)?;
        let mut out = Vec::new();
        for (_, uuid) in &between {
            out.extend(
                records
                    .iter()
                    .filter(|r| r["UUID"] == uuid.as_str() && names(r, label))
                    .cloned(),
            );
        }
        Ok(out)
    }
}
