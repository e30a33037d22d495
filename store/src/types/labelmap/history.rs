//! A label's history between two versions (DVID's `history`): the mutation records that touched it,
//! in the versions from one to the other along the DAG.

use super::labelmap_only;
use crate::catalog::Uuid;
use crate::store::DataHandle;
use crate::{Result, Store, StoreError};
use serde_json::Value;

/// The fields of a mutation record that name labels.
const LABEL_FIELDS: [&str; 10] = [
    "Target",
    "NewLabel",
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
        // The versions on the way (ancestors of the target that descend from `from`), oldest
        // first, by their place in that order.
        let after: std::collections::BTreeSet<u32> = c.descendants(from_id)?.into_iter().collect();
        let mut place = std::collections::HashMap::new();
        for id in ancestors.into_iter().filter(|id| after.contains(id)) {
            place.insert(c.version(id)?.uuid.to_string(), place.len());
        }
        drop(c);
        let at = |r: &Value| r["UUID"].as_str().and_then(|u| place.get(u)).copied();
        let mut out: Vec<Value> = self
            .mutation_records(&inst, &v)?
            .into_iter()
            .filter(|r| at(r).is_some() && names(r, label))
            .collect();
        // Stable: each version's records stay in the order made.
        out.sort_by_key(|r| at(r));
        Ok(out)
    }
}
