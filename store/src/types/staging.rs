//! Staged imports: a bulk write that lands all at once or not at all, and resumes after an
//! interruption without rewriting what it stored. Each staged subvolume's blocks are encoded and
//! their objects stored at once, but recorded only under the import's session; the version shows
//! none of them until [`Store::finish_import`] points its blocks at them in one write. An import
//! that fails or is abandoned leaves the version as it was ([`Store::discard_import`] drops its
//! records; its objects, referenced by nothing, are garbage).

use super::labelmap::{CountChange, MetaWrite, block_counts};
use crate::codec::decode_block;
use crate::engine::{BatchOp, Space};
use crate::geometry::{Point, Subvolume, block_from_key, block_key, cover};
use crate::store::DataHandle;
use crate::{ObjectId, Result, Store, StoreError, keys};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

/// Longest import session name.
pub const MAX_SESSION_LEN: usize = 64;

/// A block an import stored, not yet shown by the version.
#[derive(Serialize, Deserialize)]
struct StagedBlock {
    object: ObjectId,
    /// The voxels of the block the import wrote (inclusive), for the instance's extents.
    covered: (Point, Point),
}

/// Refuses session names that are empty, long, or not `[A-Za-z0-9_.-]`.
pub fn check_session(session: &str) -> Result<()> {
    let fine = !session.is_empty()
        && session.len() <= MAX_SESSION_LEN
        && session
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-' | b'.'));
    if fine {
        Ok(())
    } else {
        Err(StoreError::BadRequest(format!(
            "import session {session:?}: expected 1 to {MAX_SESSION_LEN} letters, digits, '_', '-' or '.'"
        )))
    }
}

impl Store {
    /// Stages a subvolume of a mutable version under an import session; returns how many blocks
    /// it staged. Blocks it covers only in part keep the rest of their voxels as the version holds
    /// them now. Staging a block again replaces what was staged for it.
    pub fn stage_subvolume(
        &self,
        h: &DataHandle,
        session: &str,
        sub: Subvolume,
        data: &[u8],
    ) -> Result<usize> {
        check_session(session)?;
        let _gate = self.gate.read();
        let (v, inst) = self.writable(h)?;
        self.check_subvolume_write(&v, &inst, sub, data)?;
        let encoded = self.encode_subvolume(&inst, &v, sub, data, false)?;
        let bs = inst.voxels()?.block_size();
        let mut objects = Vec::with_capacity(encoded.len());
        let mut batch = Vec::with_capacity(encoded.len());
        for e in encoded {
            let lo: Point = std::array::from_fn(|a| (e.block[a] * bs[a]).max(sub.offset[a]));
            let hi: Point =
                std::array::from_fn(|a| ((e.block[a] + 1) * bs[a] - 1).min(sub.last()[a]));
            let record = StagedBlock {
                object: e.id,
                covered: (lo, hi),
            };
            batch.push(BatchOp::Put(
                Space::Meta,
                keys::staged(inst.id, v.id, session, &block_key(e.block)),
                postcard::to_stdvec(&record).expect("staged blocks serialize"),
            ));
            objects.push((e.id, e.payload));
        }
        let staged = batch.len();
        // Objects first: a record never names an object that is not stored.
        self.objects().put_objects(&objects)?;
        self.meta.write(batch)?;
        Ok(staged)
    }

    /// The blocks staged under an import session, in key order.
    pub fn staged_blocks(&self, h: &DataHandle, session: &str) -> Result<Vec<Point>> {
        Ok(self
            .staged_records(h, session)?
            .into_iter()
            .map(|(b, _)| b)
            .collect())
    }

    fn staged_records(&self, h: &DataHandle, session: &str) -> Result<Vec<(Point, StagedBlock)>> {
        check_session(session)?;
        let (v, inst) = self.readable(h)?;
        let prefix = keys::staged_prefix(inst.id, v.id, session);
        let end = keys::prefix_end(&prefix);
        let mut out = Vec::new();
        let mut bad = None;
        self.meta
            .scan(Space::Meta, &prefix, end.as_deref(), &mut |k, val| {
                match (
                    block_from_key(&k[prefix.len()..]),
                    postcard::from_bytes::<StagedBlock>(val),
                ) {
                    (Some(b), Ok(r)) => out.push((b, r)),
                    _ => bad = Some(k.to_vec()),
                }
                bad.is_none()
            })?;
        match bad {
            Some(k) => Err(StoreError::Corrupt(format!("staged block record {k:?}"))),
            None => Ok(out),
        }
    }

    /// Shows every block staged under an import session at its version, in one write (with the
    /// label index kept right for a labelmap), and ends the session. Returns how many blocks it
    /// showed.
    pub fn finish_import(&self, h: &DataHandle, session: &str) -> Result<usize> {
        let _gate = self.gate.read();
        let (v, inst) = self.writable(h)?;
        let lock = self.instance_lock(inst.id);
        let _held = lock.lock();
        let (_, inst) = self.readable(h)?;
        let records = self.staged_records(h, session)?;
        let Some(covered) = records.iter().map(|(_, r)| r.covered).reduce(cover) else {
            return Err(StoreError::NotFound(format!(
                "import session {session:?} of {:?} at version {} has nothing staged",
                inst.name, v.uuid
            )));
        };
        let block_bytes = inst.voxels()?.block_bytes();
        let counts: Vec<CountChange> = if inst.spec.datatype.indexes_labels() {
            records
                .par_iter()
                .map(|(b, r)| {
                    let staged = self.object(&r.object)?;
                    let before = self.block_at(&inst, &v, *b)?;
                    Ok(CountChange {
                        block: *b,
                        before: before.as_deref().map(block_counts).unwrap_or_default(),
                        after: block_counts(&decode_block(&staged, block_bytes)?),
                    })
                })
                .collect::<Result<_>>()?
        } else {
            // The version must never name a missing object: check what `counts` would have read.
            for (b, r) in &records {
                if !self.objects().has_object(&r.object)? {
                    return Err(StoreError::Corrupt(format!(
                        "staged block {b:?} names object {} that is not stored",
                        r.object
                    )));
                }
            }
            vec![]
        };
        let staged = records.len();
        let meta = MetaWrite {
            extra: unstage(inst.id, v.id, session, &records),
            ..Default::default()
        };
        let blocks = records.into_iter().map(|(b, r)| (b, r.object)).collect();
        self.apply_blocks(&inst, &v, blocks, counts, covered, meta)?;
        Ok(staged)
    }

    /// Drops an import session's staged blocks; the version stays as it was. Returns how many.
    pub fn discard_import(&self, h: &DataHandle, session: &str) -> Result<usize> {
        let (v, inst) = self.readable(h)?;
        let records = self.staged_records(h, session)?;
        self.meta.write(unstage(inst.id, v.id, session, &records))?;
        Ok(records.len())
    }
}

/// The deletes that end a session's records.
fn unstage(
    instance: u32,
    version: u32,
    session: &str,
    records: &[(Point, StagedBlock)],
) -> Vec<BatchOp> {
    records
        .iter()
        .map(|(b, _)| {
            BatchOp::Delete(
                Space::Meta,
                keys::staged(instance, version, session, &block_key(*b)),
            )
        })
        .collect()
}
