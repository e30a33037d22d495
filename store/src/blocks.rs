//! Voxel data (uint8blk, labelblk): subvolume reads and writes at any offset and size, block records.
//! Partial blocks are read-modify-written, so clients need not align to blocks (DVID demands it).

use crate::catalog::{Instance, Version};
use crate::codec::decode_block;
use crate::geometry::{Point, Subvolume, block_key, intersection_runs};
use crate::store::{WorkingEntry, check_blocks_held};
use crate::{ObjectId, Result, Store, StoreError};
use rayon::prelude::*;

impl Store {
    /// Reads a subvolume; voxels never written read as 0. Bytes are x fastest, then y, then z.
    pub fn read_subvolume(&self, uuid: &str, instance: &str, sub: Subvolume) -> Result<Vec<u8>> {
        let _gate = self.gate.read();
        let (v, inst) = self.readable(uuid, instance)?;
        let vb = voxel_bytes(&inst)?;
        sub.check_block_count(inst.block_size)?;
        let len = usize::try_from(sub.voxels().saturating_mul(vb as u64))
            .map_err(|_| StoreError::BadRequest("subvolume too large for this machine".into()))?;
        let blocks = sub.blocks(inst.block_size);
        check_blocks_held(&v, &inst, &blocks)?;
        let decoded: Vec<(Point, Option<Vec<u8>>)> = blocks
            .par_iter()
            .map(|&b| Ok((b, self.block_at(&inst, &v, b)?)))
            .collect::<Result<_>>()?;
        let mut out = vec![0u8; len];
        for (b, data) in decoded {
            if let Some(data) = data {
                intersection_runs(b, inst.block_size, &sub, vb, |bi, si, n| {
                    out[si..si + n].copy_from_slice(&data[bi..bi + n]);
                });
            }
        }
        Ok(out)
    }

    /// Writes a subvolume (`data.len()` must equal voxels × voxel bytes) to a mutable version.
    pub fn write_subvolume(
        &self,
        uuid: &str,
        instance: &str,
        sub: Subvolume,
        data: &[u8],
    ) -> Result<()> {
        let _gate = self.gate.read();
        let (v, inst) = self.writable(uuid, instance)?;
        let vb = voxel_bytes(&inst)?;
        sub.check_block_count(inst.block_size)?;
        let expected = sub.voxels().saturating_mul(vb as u64);
        if data.len() as u64 != expected {
            return Err(StoreError::BadRequest(format!(
                "body has {} bytes; a {}x{}x{} subvolume of {} needs {expected}",
                data.len(),
                sub.size[0],
                sub.size[1],
                sub.size[2],
                inst.kind.name()
            )));
        }
        check_blocks_held(&v, &inst, &sub.blocks(inst.block_size))?;
        let lock = self.instance_lock(inst.id);
        let _held = lock.lock();
        // Re-read under the lock: extents may have moved since `writable`.
        let (_, inst) = self.readable(uuid, instance)?;
        let block_bytes = inst.block_bytes();
        let encoded: Vec<(Point, ObjectId, Vec<u8>)> = sub
            .blocks(inst.block_size)
            .par_iter()
            .map(|&b| {
                let mut block = if sub.covers_block(b, inst.block_size) {
                    vec![0u8; block_bytes]
                } else {
                    self.block_at(&inst, &v, b)?
                        .unwrap_or_else(|| vec![0u8; block_bytes])
                };
                intersection_runs(b, inst.block_size, &sub, vb, |bi, si, n| {
                    block[bi..bi + n].copy_from_slice(&data[si..si + n]);
                });
                let payload = inst.codec.encode(&block);
                Ok((b, ObjectId::of(&payload), payload))
            })
            .collect::<Result<_>>()?;
        let mut objects = Vec::with_capacity(encoded.len());
        let mut entries = Vec::with_capacity(encoded.len());
        for (b, id, payload) in encoded {
            entries.push((
                block_key(b).to_vec(),
                WorkingEntry {
                    object: Some(id),
                    name: vec![],
                },
            ));
            objects.push((id, payload));
        }
        let mut extra = Vec::new();
        let grown = grow_extents(inst.extents, &sub);
        if Some(grown) != inst.extents {
            let mut updated = inst.clone();
            updated.extents = Some(grown);
            extra.push(self.update_instance(&updated)?);
        }
        self.write_working(&inst, &v, objects, entries, extra)
    }

    /// Uncompressed voxels of the blocks that exist among `blocks`, in the order asked.
    pub fn read_blocks(
        &self,
        uuid: &str,
        instance: &str,
        blocks: &[Point],
    ) -> Result<Vec<(Point, Vec<u8>)>> {
        let _gate = self.gate.read();
        let (v, inst) = self.readable(uuid, instance)?;
        voxel_bytes(&inst)?;
        check_blocks_held(&v, &inst, blocks)?;
        let found: Vec<Option<(Point, Vec<u8>)>> = blocks
            .par_iter()
            .map(|&b| Ok(self.block_at(&inst, &v, b)?.map(|d| (b, d))))
            .collect::<Result<_>>()?;
        Ok(found.into_iter().flatten().collect())
    }

    /// Decoded voxels of one block at a version, or `None` if never written.
    fn block_at(&self, inst: &Instance, v: &Version, b: Point) -> Result<Option<Vec<u8>>> {
        match self.lookup(inst, v, &block_key(b))? {
            None => Ok(None),
            Some(e) => Ok(Some(decode_block(
                &self.object(&e.object)?,
                inst.block_bytes(),
            )?)),
        }
    }
}

fn voxel_bytes(inst: &Instance) -> Result<usize> {
    inst.kind.voxel_bytes().ok_or_else(|| {
        StoreError::BadRequest(format!(
            "data instance {:?} is {}, not a voxel type",
            inst.name,
            inst.kind.name()
        ))
    })
}

fn grow_extents(current: Option<(Point, Point)>, sub: &Subvolume) -> (Point, Point) {
    let last = sub.last();
    match current {
        None => (sub.offset, last),
        Some((lo, hi)) => (
            std::array::from_fn(|a| lo[a].min(sub.offset[a])),
            std::array::from_fn(|a| hi[a].max(last[a])),
        ),
    }
}
