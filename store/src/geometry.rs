//! Voxel and block geometry: points, subvolumes, block coordinates, and the Morton (Z-order) keys that
//! give block trees their spatial locality. This module owns the block index key format.

use crate::{Result, StoreError};

/// A voxel or block coordinate, x then y then z.
pub type Point = [i32; 3];

/// Length in bytes of a block index key: the Morton interleave of three biased 32-bit coordinates.
pub const BLOCK_KEY_LEN: usize = 12;

/// Most blocks one subvolume request may touch.
pub const MAX_BLOCKS_PER_REQUEST: u64 = 1 << 22;

/// A box of voxels: `offset` is its first voxel, `size` its extent along each axis (all > 0).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Subvolume {
    pub offset: Point,
    pub size: [u32; 3],
}

impl Subvolume {
    /// Checks that the box is non-empty and its last voxel fits in i32 coordinates.
    pub fn new(offset: Point, size: [u32; 3]) -> Result<Self> {
        for axis in 0..3 {
            if size[axis] == 0 {
                return Err(StoreError::BadRequest(format!(
                    "size along axis {axis} is 0: every dimension must be at least 1"
                )));
            }
            let last = i64::from(offset[axis]) + i64::from(size[axis]) - 1;
            if last > i64::from(i32::MAX) {
                return Err(StoreError::BadRequest(format!(
                    "subvolume ends at {last} along axis {axis}, past the largest coordinate {}",
                    i32::MAX
                )));
            }
        }
        Ok(Self { offset, size })
    }

    /// Number of voxels, as u64, saturating (three u32 sizes can overflow it); callers bound it
    /// before allocating.
    pub fn voxels(&self) -> u64 {
        self.size
            .iter()
            .fold(1u64, |n, &s| n.saturating_mul(u64::from(s)))
    }

    /// Number of blocks the box touches, saturating.
    pub fn block_count(&self, block_size: Point) -> u64 {
        let (lo, hi) = self.block_range(block_size);
        (0..3).fold(1u64, |n, a| {
            n.saturating_mul((i64::from(hi[a]) - i64::from(lo[a]) + 1) as u64)
        })
    }

    /// Refuses a box touching more blocks than one request may (tiny blocks make even a modest
    /// box a huge list of coordinates).
    pub fn check_block_count(&self, block_size: Point) -> crate::Result<()> {
        let n = self.block_count(block_size);
        if n > MAX_BLOCKS_PER_REQUEST {
            return Err(crate::StoreError::BadRequest(format!(
                "the subvolume touches {n} blocks of {block_size:?} voxels; one request may touch at most {MAX_BLOCKS_PER_REQUEST}"
            )));
        }
        Ok(())
    }

    /// Inclusive last voxel.
    pub fn last(&self) -> Point {
        std::array::from_fn(|a| (i64::from(self.offset[a]) + i64::from(self.size[a]) - 1) as i32)
    }

    /// Inclusive range of block coordinates the box touches.
    pub fn block_range(&self, block_size: Point) -> (Point, Point) {
        let last = self.last();
        (
            std::array::from_fn(|a| self.offset[a].div_euclid(block_size[a])),
            std::array::from_fn(|a| last[a].div_euclid(block_size[a])),
        )
    }

    /// Blocks the box touches, in z, y, x order.
    pub fn blocks(&self, block_size: Point) -> Vec<Point> {
        let (lo, hi) = self.block_range(block_size);
        let mut out = Vec::new();
        for z in lo[2]..=hi[2] {
            for y in lo[1]..=hi[1] {
                for x in lo[0]..=hi[0] {
                    out.push([x, y, z]);
                }
            }
        }
        out
    }

    /// True if this box covers every voxel of block `b`.
    pub fn covers_block(&self, b: Point, block_size: Point) -> bool {
        let last = self.last();
        (0..3).all(|a| {
            let start = i64::from(b[a]) * i64::from(block_size[a]);
            let end = start + i64::from(block_size[a]) - 1;
            i64::from(self.offset[a]) <= start && end <= i64::from(last[a])
        })
    }
}

/// The smallest inclusive box holding both inclusive boxes `a` and `b`.
pub fn cover(a: (Point, Point), b: (Point, Point)) -> (Point, Point) {
    (
        std::array::from_fn(|k| a.0[k].min(b.0[k])),
        std::array::from_fn(|k| a.1[k].max(b.1[k])),
    )
}

/// Calls `run(block_index, sub_index, len)` for each x-run of the intersection of block `b` and `sub`,
/// with byte indices into the block buffer and the subvolume buffer (both x fastest, then y, then z).
pub fn intersection_runs(
    b: Point,
    block_size: Point,
    sub: &Subvolume,
    voxel_bytes: usize,
    mut run: impl FnMut(usize, usize, usize),
) {
    let bs: [i64; 3] = std::array::from_fn(|a| i64::from(block_size[a]));
    let b0: [i64; 3] = std::array::from_fn(|a| i64::from(b[a]) * bs[a]);
    let s0: [i64; 3] = std::array::from_fn(|a| i64::from(sub.offset[a]));
    let ss: [i64; 3] = std::array::from_fn(|a| i64::from(sub.size[a]));
    let lo: [i64; 3] = std::array::from_fn(|a| b0[a].max(s0[a]));
    let hi: [i64; 3] = std::array::from_fn(|a| (b0[a] + bs[a]).min(s0[a] + ss[a]));
    if (0..3).any(|a| lo[a] >= hi[a]) {
        return;
    }
    let len = ((hi[0] - lo[0]) as usize) * voxel_bytes;
    for z in lo[2]..hi[2] {
        for y in lo[1]..hi[1] {
            let bi = (((z - b0[2]) * bs[1] + (y - b0[1])) * bs[0] + (lo[0] - b0[0])) as usize;
            let si = (((z - s0[2]) * ss[1] + (y - s0[1])) * ss[0] + (lo[0] - s0[0])) as usize;
            run(bi * voxel_bytes, si * voxel_bytes, len);
        }
    }
}

/// The tree key of a block: bits of the three coordinates (biased so negatives sort first)
/// interleaved z, y, x from the most significant bit down. Nearby blocks share long key prefixes.
pub fn block_key(b: Point) -> [u8; BLOCK_KEY_LEN] {
    let u = b.map(bias);
    let mut code: u128 = 0;
    for bit in (0..32).rev() {
        for axis in [2, 1, 0] {
            code = (code << 1) | u128::from((u[axis] >> bit) & 1);
        }
    }
    let bytes = code.to_be_bytes();
    bytes[16 - BLOCK_KEY_LEN..].try_into().expect("12 bytes")
}

/// Inverse of [`block_key`]; `None` if `key` is not a block key.
pub fn block_from_key(key: &[u8]) -> Option<Point> {
    let key: [u8; BLOCK_KEY_LEN] = key.try_into().ok()?;
    let mut full = [0u8; 16];
    full[16 - BLOCK_KEY_LEN..].copy_from_slice(&key);
    let code = u128::from_be_bytes(full);
    let mut u = [0u32; 3];
    for i in 0..96 {
        // Position i counted from the most significant of the 96 bits.
        let bit = (code >> (95 - i)) & 1;
        let axis = [2, 1, 0][i % 3];
        u[axis] = (u[axis] << 1) | bit as u32;
    }
    Some(u.map(unbias))
}

/// The inclusive box of block coordinates whose keys start with the first `bits` bits of `prefix`
/// (used to prune tree walks).
pub fn block_box_of_prefix(prefix: &[u8], bits: usize) -> (Point, Point) {
    let bits = bits.min(prefix.len() * 8).min(96);
    let mut fixed = [0u32; 3];
    let mut nfixed = [0u32; 3];
    for i in 0..bits {
        let bit = u32::from((prefix[i / 8] >> (7 - i % 8)) & 1);
        let axis = [2, 1, 0][i % 3];
        fixed[axis] = (fixed[axis] << 1) | bit;
        nfixed[axis] += 1;
    }
    let lo: [u32; 3] = std::array::from_fn(|a| shl(fixed[a], 32 - nfixed[a]));
    let hi: [u32; 3] = std::array::from_fn(|a| lo[a] | low_mask(32 - nfixed[a]));
    (lo.map(unbias), hi.map(unbias))
}

/// True if block `b` lies in the inclusive block box `(lo, hi)`.
pub fn box_contains((lo, hi): (Point, Point), b: Point) -> bool {
    (0..3).all(|a| lo[a] <= b[a] && b[a] <= hi[a])
}

/// True if the block key names a block inside the box (region pruning of leaf entries).
pub fn key_in_box(key: &[u8], bx: (Point, Point)) -> bool {
    block_from_key(key).is_some_and(|b| box_contains(bx, b))
}

/// True if some block under the subtree of keys starting with the first `bits` bits of `prefix`
/// may lie inside the box (region pruning of inner nodes).
pub fn prefix_meets_box(prefix: &[u8], bits: usize, (lo, hi): (Point, Point)) -> bool {
    let (blo, bhi) = block_box_of_prefix(prefix, bits);
    (0..3).all(|a| blo[a] <= hi[a] && lo[a] <= bhi[a])
}

fn shl(v: u32, by: u32) -> u32 {
    if by >= 32 { 0 } else { v << by }
}

fn low_mask(bits: u32) -> u32 {
    if bits >= 32 {
        u32::MAX
    } else {
        (1u32 << bits) - 1
    }
}

fn bias(v: i32) -> u32 {
    (v as u32) ^ 0x8000_0000
}

fn unbias(u: u32) -> i32 {
    (u ^ 0x8000_0000) as i32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn geometry_counts_saturate_and_bound_blocks() {
        let huge = Subvolume::new([0, 0, 0], [u32::MAX >> 1; 3]).unwrap();
        assert_eq!(huge.voxels(), u64::MAX);
        let s = Subvolume::new([-1, 0, 0], [130, 64, 1]).unwrap();
        assert_eq!(s.block_count([64; 3]), 4);
        assert!(s.check_block_count([64; 3]).is_ok());
        let tiny = Subvolume::new([0, 0, 0], [256, 256, 128]).unwrap();
        assert_eq!(tiny.block_count([1; 3]), 1 << 23);
        assert!(tiny.check_block_count([1; 3]).is_err());
    }
    use proptest::prelude::*;

    #[test]
    fn block_key_golden() {
        // Origin: every coordinate biased to 0x8000_0000, so the top three bits are set.
        assert_eq!(
            block_key([0, 0, 0]),
            [0xe0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]
        );
        // x = 1 sets the least significant bit only.
        assert_eq!(block_key([1, 0, 0])[11], 0x01);
        assert_eq!(block_key([0, 0, 1])[11], 0x04);
    }

    #[test]
    fn block_keys_sort_negative_first() {
        assert!(block_key([-1, -1, -1]) < block_key([0, 0, 0]));
    }

    #[test]
    fn subvolume_blocks_and_cover() {
        let s = Subvolume::new([-1, 0, 63], [2, 64, 2]).unwrap();
        assert_eq!(s.block_range([64; 3]), ([-1, 0, 0], [0, 0, 1]));
        assert_eq!(s.blocks([64; 3]).len(), 4);
        let full = Subvolume::new([64, 0, 0], [64, 64, 64]).unwrap();
        assert!(full.covers_block([1, 0, 0], [64; 3]));
        assert!(!s.covers_block([0, 0, 0], [64; 3]));
        assert!(Subvolume::new([i32::MAX, 0, 0], [2, 1, 1]).is_err());
        assert!(Subvolume::new([0, 0, 0], [0, 1, 1]).is_err());
    }

    proptest! {
        #[test]
        fn block_key_round_trips(x in any::<i32>(), y in any::<i32>(), z in any::<i32>()) {
            prop_assert_eq!(block_from_key(&block_key([x, y, z])), Some([x, y, z]));
        }

        #[test]
        fn block_prefix_box_contains_block(x in -1000i32..1000, y in -1000i32..1000, z in -1000i32..1000, len in 0usize..=96) {
            let key = block_key([x, y, z]);
            let (lo, hi) = block_box_of_prefix(&key, len);
            for a in 0..3 {
                let v = [x, y, z][a];
                prop_assert!(lo[a] <= v && v <= hi[a]);
            }
        }
    }
}
