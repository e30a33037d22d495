//! DVID's binary "blocks" form of a sparse volume (`sparsevol?format=blocks`), the form NeuTu
//! reads. All little-endian:
//! - a 20-byte header: the 8³ sub-blocks per block along x, y and z (three u32), then the label
//!   (u64);
//! - per block, sorted z, y, x: its first voxel (three i32), then a flag: 1 when every voxel is
//!   the label's, 2 when mixed;
//! - after a mixed block, one record per sub-block, x fastest, then y, then z: a flag (0 none of
//!   the label's, 1 all, 2 mixed) and, when mixed, a 64-byte mask whose bit `z·64 + y·8 + x`
//!   (lowest bit of each byte first) is set for the label's voxels.
//!
//! A label with no voxels in the blocks asked for gives an empty body, as DVID's does.

use dvid_store::Point;
use dvid_store::types::labelmap::BodyBlock;

const SUB: usize = 8;
const ALL: u8 = 1;
const MIXED: u8 = 2;

/// Refuses blocks that are not made of 8³ sub-blocks.
pub fn check_block_size(bs: Point) -> Result<(), String> {
    if bs.iter().any(|&s| !(s as usize).is_multiple_of(SUB)) {
        return Err(format!(
            "format=blocks cuts blocks into 8x8x8 sub-blocks; this instance's blocks are {}x{}x{}",
            bs[0], bs[1], bs[2]
        ));
    }
    Ok(())
}

/// The sparse volume of `label` from its blocks' records ([`block_record`]), in the blocks'
/// order: empty if no block holds any of its voxels.
pub fn encode(label: u64, bs: Point, records: impl IntoIterator<Item = Vec<u8>>) -> Vec<u8> {
    let mut out = Vec::new();
    for r in records {
        if out.is_empty() {
            for s in bs {
                out.extend_from_slice(&(s as u32 / SUB as u32).to_le_bytes());
            }
            out.extend_from_slice(&label.to_le_bytes());
        }
        out.extend_from_slice(&r);
    }
    out
}

/// One block's record (its first voxel, its flag, its sub-blocks if mixed), or `None` if none
/// of its voxels are the label's. The block size must have passed [`check_block_size`].
pub fn block_record(b: &BodyBlock) -> Option<Vec<u8>> {
    let bs = b.block_size.map(|s| s as usize);
    let subs = bs.map(|s| s / SUB);
    let mut out = Vec::with_capacity(13);
    for (c, size) in b.at.iter().zip(b.block_size) {
        out.extend_from_slice(&(c * size).to_le_bytes());
    }
    match b.labels {
        None => out.push(ALL),
        Some(raw) => {
            out.push(0);
            let flag = mixed_block(b, raw, bs, subs, &mut out)?;
            out[12] = flag;
            if flag == ALL {
                out.truncate(13);
            }
        }
    }
    Some(out)
}

/// The sub-block records of a read block into `records`, and the block's flag: `None` if none of
/// its voxels are the label's, [`ALL`] if all are.
fn mixed_block(
    b: &BodyBlock,
    raw: &[u8],
    bs: [usize; 3],
    subs: [usize; 3],
    records: &mut Vec<u8>,
) -> Option<u8> {
    let mut is_wanted = b.wanted_test();
    let (mut any, mut all) = (false, true);
    for sz in 0..subs[2] {
        for sy in 0..subs[1] {
            for sx in 0..subs[0] {
                let mut mask = [0u8; SUB * SUB * SUB / 8];
                let mut count = 0;
                for z in 0..SUB {
                    for y in 0..SUB {
                        let row = ((sz * SUB + z) * bs[1] + sy * SUB + y) * bs[0] + sx * SUB;
                        for x in 0..SUB {
                            let at = (row + x) * 8;
                            let l =
                                u64::from_le_bytes(raw[at..at + 8].try_into().expect("8 bytes"));
                            if is_wanted(l) {
                                let i = z * SUB * SUB + y * SUB + x;
                                mask[i / 8] |= 1 << (i % 8);
                                count += 1;
                            }
                        }
                    }
                }
                match count {
                    0 => {
                        all = false;
                        records.push(0);
                    }
                    512 => {
                        any = true;
                        records.push(ALL);
                    }
                    _ => {
                        (any, all) = (true, false);
                        records.push(MIXED);
                        records.extend_from_slice(&mask);
                    }
                }
            }
        }
    }
    match (any, all) {
        (false, _) => None,
        (true, true) => Some(ALL),
        (true, false) => Some(MIXED),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustc_hash::FxHashSet;

    /// The sparse volume of `label` in `blocks`, as the handler encodes it.
    fn encode_blocks(
        label: u64,
        block_size: Point,
        wanted: &[u64],
        blocks: &[(Point, Option<Vec<u8>>)],
    ) -> Vec<u8> {
        let wanted = FxHashSet::from_iter(wanted.iter().copied());
        let records = blocks.iter().filter_map(|(at, raw)| {
            block_record(&BodyBlock {
                at: *at,
                block_size,
                wanted: &wanted,
                labels: raw.as_deref(),
            })
        });
        encode(label, block_size, records)
    }

    fn labels_bytes(labels: &[u64]) -> Vec<u8> {
        labels.iter().flat_map(|l| l.to_le_bytes()).collect()
    }

    #[test]
    fn golden_bytes_of_a_mixed_and_a_whole_block() {
        // A 16x8x8 block: label 7 in the first sub-block's voxel (1, 2, 3) only; the second
        // sub-block all label 9 (not wanted).
        let (w, h, d) = (16, 8, 8);
        let mut labels = vec![9u64; w * h * d];
        for z in 0..8 {
            for y in 0..8 {
                for x in 0..8 {
                    labels[(z * h + y) * w + x] = 5;
                }
            }
        }
        labels[(3 * h + 2) * w + 1] = 7;
        let out = encode_blocks(
            42,
            [16, 8, 8],
            &[7],
            &[([1, 0, 0], Some(labels_bytes(&labels))), ([0, 1, 0], None)],
        );
        let mut want = Vec::new();
        for v in [2u32, 1, 1] {
            want.extend_from_slice(&v.to_le_bytes());
        }
        want.extend_from_slice(&42u64.to_le_bytes());
        for v in [16i32, 0, 0] {
            want.extend_from_slice(&v.to_le_bytes());
        }
        want.push(MIXED);
        want.push(MIXED);
        let mut mask = [0u8; 64];
        let i = 3 * 64 + 2 * 8 + 1;
        mask[i / 8] = 1 << (i % 8);
        want.extend_from_slice(&mask);
        want.push(0);
        for v in [0i32, 8, 0] {
            want.extend_from_slice(&v.to_le_bytes());
        }
        want.push(ALL);
        assert_eq!(out, want);
    }

    #[test]
    fn blocks_without_the_label_are_left_out_and_none_gives_an_empty_body() {
        let blocks = [([0, 0, 0], Some(labels_bytes(&[3; 512])))];
        assert!(encode_blocks(7, [8, 8, 8], &[7], &blocks).is_empty());
        assert!(check_block_size([12, 8, 8]).unwrap_err().contains("12x8x8"));
        assert!(check_block_size([64, 32, 8]).is_ok());
    }

    #[test]
    fn a_read_block_all_the_labels_is_flagged_whole() {
        let labels = labels_bytes(&(0..512).map(|i| 3 + i % 2).collect::<Vec<_>>());
        let out = encode_blocks(3, [8, 8, 8], &[3, 4], &[([0, 0, -1], Some(labels))]);
        assert_eq!(
            &out[20..32],
            &[0, 0, 0, 0, 0, 0, 0, 0, 0xf8, 0xff, 0xff, 0xff]
        );
        assert_eq!(out[32..], [ALL]);
    }
}
