//! A label's sparse volume: the blocks its index lists, each read, decompressed and handed to
//! the caller's function on the rayon pool before the next is read, so a body of 10^7 voxels is
//! never all in memory at once. Runs along x (DVID's RLEs) are one such function; the block-coded
//! form of `sparsevol?format=blocks` is another (the node's `formats::sparse_blocks`).

use super::{labelmap_only, proto};
use crate::geometry::Point;
use crate::store::DataHandle;
use crate::types::voxels::map_blocks;
use crate::{Result, Store};
use rustc_hash::FxHashSet;
use std::borrow::Cow;
use std::collections::HashSet;

/// One block of a label's sparse volume, as [`Store::map_body_blocks`] hands it over.
pub struct BodyBlock<'a> {
    /// The block's coordinates at its level.
    pub at: Point,
    pub block_size: Point,
    /// The supervoxels whose voxels are the label's (a fast hash: every run of a block asks).
    pub wanted: &'a FxHashSet<u64>,
    /// The block's little-endian labels, or `None` for a block wholly the label's (known from
    /// its index, not read).
    pub labels: Option<&'a [u8]>,
}

impl BodyBlock<'_> {
    /// Whether a voxel's label is the label's, remembering the last answer: labels come in
    /// runs, so most voxels skip the hash lookup.
    pub fn wanted_test(&self) -> impl FnMut(u64) -> bool + '_ {
        let mut last = (0u64, self.wanted.contains(&0));
        move |l| {
            if l != last.0 {
                last = (l, self.wanted.contains(&l));
            }
            last.1
        }
    }

    /// The label's runs along x (`x, y, z, length`) in this block, within the inclusive voxel
    /// `bounds` if given.
    pub fn runs(&self, bounds: Option<(Point, Point)>) -> Vec<[i32; 4]> {
        let bs = self.block_size;
        let [bx, by, bz] = bs.map(|s| s as usize);
        let origin: Point = std::array::from_fn(|a| self.at[a] * bs[a]);
        let mut runs = Vec::new();
        let mut push = |s: i32, e: i32, py: i32, pz: i32| {
            let (s, e) = match bounds {
                Some((lo, hi)) => (s.max(lo[0]), e.min(hi[0])),
                None => (s, e),
            };
            if s <= e {
                runs.push([s, py, pz, e - s + 1]);
            }
        };
        let mut wanted = self.wanted_test();
        let words = self.labels.map(words);
        for z in 0..bz {
            for y in 0..by {
                let (py, pz) = (origin[1] + y as i32, origin[2] + z as i32);
                if bounds
                    .is_some_and(|(lo, hi)| py < lo[1] || py > hi[1] || pz < lo[2] || pz > hi[2])
                {
                    continue;
                }
                let Some(words) = &words else {
                    push(origin[0], origin[0] + bs[0] - 1, py, pz);
                    continue;
                };
                let row = &words[(z * by + y) * bx..][..bx];
                // Most rows hold one label; this test vectorises where finding runs cannot.
                if row.iter().fold(0, |acc, &o| acc | (o ^ row[0])) == 0 {
                    if wanted(u64::from_le(row[0])) {
                        push(origin[0], origin[0] + bs[0] - 1, py, pz);
                    }
                    continue;
                }
                let mut x = 0;
                while x < bx {
                    // Equal labels are equal words in either byte order.
                    let (w, start) = (row[x], x);
                    x += row[x..].iter().position(|&o| o != w).unwrap_or(bx - x);
                    if wanted(u64::from_le(w)) {
                        push(origin[0] + start as i32, origin[0] + x as i32 - 1, py, pz);
                    }
                }
            }
        }
        runs
    }
}

/// Little-endian labels as words, without a copy when they are aligned (the allocator's blocks
/// are).
fn words(labels: &[u8]) -> Cow<'_, [u64]> {
    match bytemuck::try_cast_slice(labels) {
        Ok(w) => Cow::Borrowed(w),
        Err(_) => Cow::Owned(
            labels
                .chunks_exact(8)
                .map(|c| u64::from_ne_bytes(c.try_into().expect("8 bytes")))
                .collect(),
        ),
    }
}

impl Store {
    /// Voxel runs along x of a label (`x, y, z, length`), sorted z, y, x, within the inclusive
    /// voxel `bounds` if given; `None` if the label has no voxels at this version. Reads only the
    /// blocks its index lists.
    pub fn sparsevol(
        &self,
        h: &DataHandle,
        label: u64,
        supervoxels: bool,
        bounds: Option<(Point, Point)>,
    ) -> Result<Option<Vec<[i32; 4]>>> {
        self.sparsevol_scaled(h, h, 0, label, supervoxels, bounds)
    }

    /// [`Self::sparsevol`] at `scale`, from `level` (the labelmap's level `NAME_scale`, whose
    /// voxels are supervoxels 2^scale times coarser): runs and bounds in that level's voxels.
    pub fn sparsevol_scaled(
        &self,
        h: &DataHandle,
        level: &DataHandle,
        scale: u32,
        label: u64,
        supervoxels: bool,
        bounds: Option<(Point, Point)>,
    ) -> Result<Option<Vec<[i32; 4]>>> {
        let per_block = self.map_body_blocks(h, level, scale, label, supervoxels, bounds, |b| {
            b.runs(bounds)
        })?;
        let Some(per_block) = per_block else {
            return Ok(None);
        };
        // Blocks come sorted z, y, x: sort their runs the same way and join runs that meet
        // across block edges.
        let mut runs: Vec<[i32; 4]> = per_block.into_iter().flatten().collect();
        runs.sort_unstable_by_key(|r| [r[2], r[1], r[0]]);
        let mut joined: Vec<[i32; 4]> = Vec::with_capacity(runs.len());
        for r in runs {
            match joined.last_mut() {
                Some(last) if last[1] == r[1] && last[2] == r[2] && last[0] + last[3] == r[0] => {
                    last[3] += r[3];
                }
                _ => joined.push(r),
            }
        }
        Ok(Some(joined))
    }

    /// `f` of each block a label's voxels are in at `scale`, read from `level` (the labelmap's
    /// level `NAME_scale`, whose voxels are supervoxels 2^scale times coarser), in the blocks'
    /// order z, y, x; only blocks touching the inclusive voxel `bounds` if given. `None` if the
    /// label has no voxels at this version. A full-resolution block that the index says is
    /// wholly the label's is not read; a block the index lists but the level lacks is left out.
    #[allow(clippy::too_many_arguments)]
    pub fn map_body_blocks<T: Send>(
        &self,
        h: &DataHandle,
        level: &DataHandle,
        scale: u32,
        label: u64,
        supervoxels: bool,
        bounds: Option<(Point, Point)>,
        f: impl Fn(&BodyBlock) -> T + Sync + Send,
    ) -> Result<Option<Vec<T>>> {
        let idx = {
            let _gate = self.gate.read();
            let (v, inst) = self.readable(h)?;
            labelmap_only(&inst, "sparsevol")?;
            match self.narrowed_index(&inst, &v, label, supervoxels)? {
                None => return Ok(None),
                Some(idx) => idx,
            }
        };
        let wanted: FxHashSet<u64> = idx
            .blocks
            .values()
            .flat_map(|c| c.counts.keys().copied())
            .collect();
        let _gate = self.gate.read();
        let (v, inst) = self.readable(level)?;
        let bs = inst.voxels()?.block_size();
        // A level's block holds 2^scale level-0 blocks along each axis.
        let mut blocks: Vec<Point> = idx
            .block_coords(None)
            .into_iter()
            .map(|b| b.map(|c| c >> scale))
            .collect();
        blocks.sort_unstable_by_key(|b| [b[2], b[1], b[0]]);
        blocks.dedup();
        if let Some((lo, hi)) = bounds {
            blocks.retain(|b| (0..3).all(|a| b[a] * bs[a] <= hi[a] && (b[a] + 1) * bs[a] > lo[a]));
        }
        let voxels = bs.iter().map(|&s| s as u64).product::<u64>();
        let whole: HashSet<Point> = match scale {
            0 => idx
                .blocks
                .iter()
                .filter(|(_, c)| c.counts.values().map(|&n| u64::from(n)).sum::<u64>() == voxels)
                .map(|(&code, _)| proto::decode_block(code))
                .collect(),
            _ => Default::default(),
        };
        let read: Vec<Point> = blocks
            .iter()
            .filter(|b| !whole.contains(*b))
            .copied()
            .collect();
        self.check_blocks_held(&v, &inst, &read)?;
        let out = map_blocks(&blocks, |at| {
            let raw = match whole.contains(&at) {
                true => None,
                false => match self.block_at(&inst, &v, at)? {
                    Some(raw) => Some(raw),
                    None => return Ok(None),
                },
            };
            Ok(Some(f(&BodyBlock {
                at,
                block_size: bs,
                wanted: &wanted,
                labels: raw.as_deref(),
            })))
        })?;
        Ok(Some(out.into_iter().flatten().collect()))
    }
}
