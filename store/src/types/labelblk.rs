//! labelblk: 64-bit labels in blocks (little-endian), with reads of the label at points.

use super::VoxelType;
use crate::store::DataHandle;
use crate::{Point, Result, Store};
use std::collections::HashMap;

pub static LABELBLK: VoxelType = VoxelType {
    name: "labelblk",
    voxel_bytes: 8,
    default_block_size: [32, 32, 32],
    downsample: super::Downsample::Mode,
    indexed: false,
};

impl Store {
    /// The labels at `points` (0 where never written), reading each touched block once: a
    /// labelmap's supervoxels.
    pub fn labels_at(&self, h: &DataHandle, points: &[Point]) -> Result<Vec<u64>> {
        if h.instance.spec.datatype.voxel_bytes() != Some(8) {
            return Err(crate::StoreError::BadRequest(format!(
                "data instance {:?} is {}; labels are read from labelblk and labelmap instances",
                h.instance.name,
                h.instance.spec.datatype.name()
            )));
        }
        let bs = h.instance.voxels()?.block_size();
        let block_of = |p: &Point| -> Point { std::array::from_fn(|a| p[a].div_euclid(bs[a])) };
        let mut wanted: Vec<Point> = points.iter().map(block_of).collect();
        wanted.sort_unstable();
        wanted.dedup();
        let blocks: HashMap<Point, Vec<u8>> = self.read_blocks(h, &wanted)?.into_iter().collect();
        Ok(points
            .iter()
            .map(|p| {
                blocks.get(&block_of(p)).map_or(0, |d| {
                    let l: [usize; 3] = std::array::from_fn(|a| p[a].rem_euclid(bs[a]) as usize);
                    let i = ((l[2] * bs[1] as usize + l[1]) * bs[0] as usize + l[0]) * 8;
                    u64::from_le_bytes(d[i..i + 8].try_into().expect("blocks hold whole labels"))
                })
            })
            .collect())
    }
}
