//! Label indices a client stores itself (DVID's `POST index` and `POST indices`), for tools that
//! compute indices outside DVID and for repairs. The node's own writes keep every index right,
//! so a stored index replaces one the node already holds.

use super::proto::{decode_block, encode_block};
use super::{LabelIndex, MetaWrite};
use crate::store::DataHandle;
use crate::{Result, Store, StoreError};

impl Store {
    /// Stores label indices in one write: an index without blocks deletes the label's. Every
    /// index is checked before any is stored. Returns how many were stored and deleted.
    pub fn put_label_indices(
        &self,
        h: &DataHandle,
        indices: Vec<LabelIndex>,
    ) -> Result<(usize, usize)> {
        let mut seen = std::collections::HashSet::new();
        for idx in &indices {
            check_index(idx)?;
            if !seen.insert(idx.label) {
                return Err(StoreError::BadRequest(format!(
                    "label {} has two indices in the request",
                    idx.label
                )));
            }
        }
        self.editing(h, "index", |inst, v| {
            let mut write = MetaWrite::default();
            let mut deleted = 0;
            for idx in &indices {
                deleted += usize::from(idx.blocks.is_empty());
                write.put_index(idx.label, idx);
            }
            self.write_meta(inst, v, write)?;
            Ok((indices.len() - deleted, deleted))
        })
    }
}

/// Refuses an index for label 0, with a block DVID's block index cannot name, or with a count
/// of no voxels.
fn check_index(idx: &LabelIndex) -> Result<()> {
    if idx.label == 0 {
        return Err(StoreError::BadRequest(
            "an index names its label, and label 0 (background) has none".into(),
        ));
    }
    for (&code, counts) in &idx.blocks {
        if encode_block(decode_block(code)) != code {
            return Err(StoreError::BadRequest(format!(
                "label {}'s index has block code {code:#x}, which names no block (DVID's block \
                 index: 21-bit sign-magnitude z, y, x)",
                idx.label
            )));
        }
        if let Some((sv, _)) = counts.counts.iter().find(|(sv, n)| **sv == 0 || **n == 0) {
            return Err(StoreError::BadRequest(format!(
                "label {}'s index counts supervoxel {sv} with {} voxels in block {:?}: counts \
                 name nonzero supervoxels with at least one voxel",
                idx.label,
                counts.counts[sv],
                decode_block(code)
            )));
        }
    }
    Ok(())
}
