//! Multiscale levels of voxel instances, as Neuroglancer reads them from DVID: level k of `NAME`
//! is the sibling instance `NAME_k`, 2^k times coarser, with the same block size. Levels are
//! ordinary instances of the version, so a locked version's levels are part of it and sync with it.
//!
//! Building is proportional to the change: only level-0 blocks written in the version (its
//! working set) are reduced, up through the levels. When the version's base has no levels yet
//! (the first build), every block is.

use super::{Downsample, InstanceSpec};
use crate::geometry::{Point, Subvolume, block_from_key};
use crate::tree::Scope;
use crate::{Result, Store, StoreError};
use rayon::prelude::*;
use serde::Serialize;
use std::collections::BTreeSet;

/// Most levels one build makes (2^10 = 1024× coarser).
pub const MAX_LEVELS: u32 = 10;

/// Level-0 blocks reduced per batch, bounding memory (each reads 8 blocks).
const BATCH: usize = 256;

/// One level written by [`Store::downres`].
#[derive(Clone, Debug, Serialize)]
pub struct Level {
    /// The level's instance, `NAME_k`.
    pub name: String,
    pub scale: u32,
    /// Blocks of the level written.
    pub blocks: usize,
    /// Whether this build created the instance.
    pub created: bool,
}

impl Store {
    /// Builds (or brings up to date) levels 1..=`levels` of voxel instance `name` at a mutable
    /// version. `None` picks enough levels for the whole extent to fit in one block. Returns
    /// whether every block was reduced (the first build) and the levels written.
    pub fn downres(
        &self,
        uuid: &str,
        name: &str,
        levels: Option<u32>,
    ) -> Result<(bool, Vec<Level>)> {
        let h0 = self.handle(uuid, name)?;
        let (v, inst) = {
            let _gate = self.gate.read();
            self.writable(&h0)?
        };
        let vox = inst.voxels()?;
        let reduce = inst.spec.datatype.downsample().ok_or_else(|| {
            StoreError::BadRequest(format!(
                "{} instances have no multiscale levels",
                inst.spec.datatype.name()
            ))
        })?;
        let bs = vox.block_size();
        let levels = match levels {
            Some(n) if (1..=MAX_LEVELS).contains(&n) => n,
            Some(n) => {
                return Err(StoreError::BadRequest(format!(
                    "levels must be 1..={MAX_LEVELS}, got {n}"
                )));
            }
            None => levels_to_fit(inst.extents, bs),
        };
        let mut handles = vec![h0];
        let mut report = Vec::new();
        for k in 1..=levels {
            let level_name = format!("{name}_{k}");
            let (h, created) = match self.handle(uuid, &level_name) {
                Ok(h) => {
                    check_level(&inst.spec, &h.instance.spec, &level_name, name)?;
                    (h, false)
                }
                Err(StoreError::NotFound(_)) => {
                    let mut spec = inst.spec.clone();
                    spec.datatype = super::by_name(inst.spec.datatype.level_type())?;
                    if let Some(g) = spec.geometry.as_mut() {
                        g.voxel_size = g.voxel_size.map(|s| s * (1u32 << k) as f32);
                    }
                    self.create_instance(uuid, &level_name, spec)?;
                    (self.handle(uuid, &level_name)?, true)
                }
                Err(e) => return Err(e),
            };
            report.push(Level {
                name: level_name,
                scale: k,
                blocks: 0,
                created,
            });
            handles.push(h);
        }
        // What to reduce: the level-0 blocks written in this version, or all of them when the
        // base holds level 0 but not every level asked for (a first build, or a new level).
        let base0 = v.roots.get(&inst.id).copied();
        let full = base0.is_some()
            && handles[1..]
                .iter()
                .any(|h| !v.roots.contains_key(&h.instance.id));
        let mut changed = BTreeSet::new();
        self.scan_working(inst.id, v.id, &mut |_, index, _| {
            changed.extend(block_from_key(index));
        })?;
        if full {
            self.trees.visit(base0, &Scope::All, &mut |e| {
                changed.extend(block_from_key(&e.key));
                true
            })?;
        }
        for k in 1..=levels as usize {
            let parents: BTreeSet<Point> =
                changed.iter().map(|b| b.map(|c| c.div_euclid(2))).collect();
            let extents = inst.extents.map_or(([0; 3], [0; 3]), |(lo, hi)| {
                let f = 1i32 << k;
                (lo.map(|c| c.div_euclid(f)), hi.map(|c| c.div_euclid(f)))
            });
            let list: Vec<Point> = parents.iter().copied().collect();
            for batch in list.chunks(BATCH) {
                let blocks = batch
                    .par_iter()
                    .map(|&p| {
                        let offset = std::array::from_fn(|a| 2 * p[a] * bs[a]);
                        let size = bs.map(|s| 2 * s as u32);
                        let data =
                            self.read_subvolume(&handles[k - 1], Subvolume::new(offset, size)?)?;
                        Ok((p, reduce_block(&data, bs, reduce)))
                    })
                    .collect::<Result<Vec<_>>>()?;
                self.write_blocks(&handles[k], blocks, extents)?;
            }
            report[k - 1].blocks = list.len();
            changed = parents;
        }
        Ok((full, report))
    }
}

impl Store {
    /// Brings the levels of every instance that has some (`NAME_1` exists) up to date at a
    /// mutable version: what a commit with `downres` runs before it locks the version.
    pub fn refresh_levels(&self, uuid: &str) -> Result<Vec<Level>> {
        let names: BTreeSet<String> = {
            let c = self.catalog.read();
            let vid = c.resolve(uuid)?;
            c.instances_at(vid)?
                .into_iter()
                .filter(|i| i.spec.datatype.downsample().is_some())
                .map(|i| i.name.clone())
                .collect()
        };
        let mut built = Vec::new();
        for name in &names {
            let levels = (1..=MAX_LEVELS)
                .take_while(|k| names.contains(&format!("{name}_{k}")))
                .count() as u32;
            // `NAME_1` of a `NAME` is a level, not a base with levels of its own.
            let is_level = name.rsplit_once('_').is_some_and(|(base, k)| {
                names.contains(base)
                    && k.parse::<u32>()
                        .is_ok_and(|k| (1..=MAX_LEVELS).contains(&k))
            });
            if levels > 0 && !is_level {
                built.extend(self.downres(uuid, name, Some(levels))?.1);
            }
        }
        Ok(built)
    }
}

/// Levels until the extent fits in one block, at least 1.
fn levels_to_fit(extents: Option<(Point, Point)>, bs: Point) -> u32 {
    let Some((lo, hi)) = extents else { return 1 };
    let blocks = (0..3)
        .map(|a| (i64::from(hi[a]) - i64::from(lo[a]) + i64::from(bs[a])) / i64::from(bs[a]))
        .max()
        .unwrap_or(1);
    let mut levels = 1;
    while (1i64 << levels) < blocks && levels < MAX_LEVELS {
        levels += 1;
    }
    levels
}

/// Refuses an existing `NAME_k` that is not a level of `NAME`: another type or block size.
fn check_level(
    base: &InstanceSpec,
    level: &InstanceSpec,
    level_name: &str,
    name: &str,
) -> Result<()> {
    let same_type = base.datatype.level_type() == level.datatype.name();
    let block = |s: &InstanceSpec| s.geometry.as_ref().map(|g| g.block_size);
    if same_type && block(base) == block(level) {
        return Ok(());
    }
    Err(StoreError::BadRequest(format!(
        "instance {level_name:?} exists but is not a level of {name:?}: levels have the same type and block size"
    )))
}

/// Reduces a (2·bs)³ region, x fastest, to one block of `bs`.
fn reduce_block(data: &[u8], bs: Point, reduce: Downsample) -> Vec<u8> {
    let [bx, by, bz] = bs.map(|s| s as usize);
    let (sx, sy) = (2 * bx, 2 * by);
    let vb = match reduce {
        Downsample::Mean => 1,
        Downsample::Mode => 8,
    };
    let mut out = vec![0u8; bx * by * bz * vb];
    let mut i = 0;
    for z in 0..bz {
        for y in 0..by {
            for x in 0..bx {
                let at = |dx: usize, dy: usize, dz: usize| {
                    ((2 * z + dz) * sy + 2 * y + dy) * sx + 2 * x + dx
                };
                let corners = [0, 1, 2, 3, 4, 5, 6, 7].map(|c| at(c & 1, (c >> 1) & 1, c >> 2));
                match reduce {
                    Downsample::Mean => {
                        let sum: u32 = corners.iter().map(|&j| u32::from(data[j])).sum();
                        out[i] = ((sum + 4) / 8) as u8;
                    }
                    Downsample::Mode => {
                        let labels = corners.map(|j| {
                            u64::from_le_bytes(data[j * 8..j * 8 + 8].try_into().expect("8 bytes"))
                        });
                        out[i * 8..i * 8 + 8].copy_from_slice(&mode(labels).to_le_bytes());
                    }
                }
                i += 1;
            }
        }
    }
    out
}

/// The most frequent of 8 labels; the smallest among equally frequent ones.
fn mode(mut labels: [u64; 8]) -> u64 {
    labels.sort_unstable();
    let (mut best, mut best_n) = (labels[0], 0);
    let mut run = 0;
    for i in 0..8 {
        run = if i > 0 && labels[i] == labels[i - 1] {
            run + 1
        } else {
            1
        };
        if run > best_n {
            (best, best_n) = (labels[i], run);
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multiscale_mode_prefers_frequent_then_smallest() {
        assert_eq!(mode([5, 5, 5, 1, 1, 2, 3, 4]), 5);
        assert_eq!(mode([9, 9, 7, 7, 1, 2, 3, 4]), 7);
        assert_eq!(mode([0, 0, 0, 0, 8, 8, 8, 8]), 0);
        assert_eq!(mode([1, 2, 3, 4, 5, 6, 7, 8]), 1);
    }

    #[test]
    fn multiscale_reduce_means_and_modes_each_octant() {
        // A 4³ region to a 2³ block: each output voxel reads its own 2³ octant.
        let bs = [2, 2, 2];
        let gray: Vec<u8> = (0..64).map(|i| if (i % 4) < 2 { 10 } else { 21 }).collect();
        let out = reduce_block(&gray, bs, Downsample::Mean);
        assert_eq!(out, vec![10, 21, 10, 21, 10, 21, 10, 21]);
        let labels: Vec<u8> = (0..64u64)
            .flat_map(|i| (if (i / 16) < 2 { 7u64 } else { 1 << 40 }).to_le_bytes())
            .collect();
        let out = reduce_block(&labels, bs, Downsample::Mode);
        let got: Vec<u64> = out
            .chunks(8)
            .map(|c| u64::from_le_bytes(c.try_into().unwrap()))
            .collect();
        assert_eq!(got, vec![7, 7, 7, 7, 1 << 40, 1 << 40, 1 << 40, 1 << 40]);
    }

    #[test]
    fn multiscale_a_new_level_is_built_whole_and_old_ones_by_the_change() {
        let store = Store::open_memory().unwrap();
        let root = store.create_repo("levels", "").unwrap().to_hex();
        let spec = InstanceSpec::voxels("uint8blk", crate::Codec::Lz4, 32).unwrap();
        store.create_instance(&root, "g", spec).unwrap();
        let h = store.handle(&root, "g").unwrap();
        let sub = Subvolume::new([0; 3], [64; 3]).unwrap();
        store
            .write_subvolume(&h, sub, &vec![7u8; 64 * 64 * 64])
            .unwrap();
        let blocks = |built: &[Level]| built.iter().map(|l| l.blocks).collect::<Vec<_>>();
        let (full, built) = store.downres(&root, "g", Some(1)).unwrap();
        assert_eq!(
            (full, blocks(&built)),
            (false, vec![1]),
            "a root's writes are all new"
        );
        store.commit(&root, None, &[]).unwrap();
        let child = store.new_version(&root, "").unwrap().to_hex();
        // No change, but level 2 is new: every block is reduced.
        let (full, built) = store.downres(&child, "g", Some(2)).unwrap();
        assert_eq!((full, blocks(&built)), (true, vec![1, 1]));
        store.commit(&child, None, &[]).unwrap();
        let grandchild = store.new_version(&child, "").unwrap().to_hex();
        let (full, built) = store.downres(&grandchild, "g", Some(2)).unwrap();
        assert_eq!(
            (full, blocks(&built)),
            (false, vec![0, 0]),
            "nothing changed"
        );
    }

    #[test]
    fn multiscale_levels_fit_the_extent() {
        assert_eq!(levels_to_fit(None, [32; 3]), 1);
        assert_eq!(levels_to_fit(Some(([0; 3], [31; 3])), [32; 3]), 1);
        assert_eq!(levels_to_fit(Some(([0; 3], [1023, 10, 10])), [32; 3]), 5);
    }
}
