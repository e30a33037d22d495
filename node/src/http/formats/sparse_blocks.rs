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

use dvid_store::types::labelmap::BodyBlocks;

const SUB: usize = 8;
const ALL: u8 = 1;
const MIXED: u8 = 2;

/// Encodes `body` as `label`'s sparse volume; `Err` if its blocks are not made of 8³ sub-blocks.
pub fn encode(label: u64, body: &BodyBlocks) -> Result<Vec<u8>, String> {
    let bs = body.block_size.map(|s| s as usize);
    if bs.iter().any(|s| s % SUB != 0) {
        return Err(format!(
            "format=blocks cuts blocks into 8x8x8 sub-blocks; this instance's blocks are {}x{}x{}",
            bs[0], bs[1], bs[2]
        ));
    }
    let subs = bs.map(|s| s / SUB);
    let mut out = Vec::new();
    let mut records = Vec::new();
    for (b, raw) in &body.blocks {
        let flag = match raw {
            None => ALL,
            Some(raw) => {
                records.clear();
                match mixed_block(raw, bs, subs, body, &mut records) {
                    None => continue,
                    Some(flag) => flag,
                }
            }
        };
        if out.is_empty() {
            for n in subs {
                out.extend_from_slice(&(n as u32).to_le_bytes());
            }
            out.extend_from_slice(&label.to_le_bytes());
        }
        for (c, size) in b.iter().zip(body.block_size) {
            out.extend_from_slice(&(c * size).to_le_bytes());
        }
        out.push(flag);
        if flag == MIXED {
            out.extend_from_slice(&records);
        }
    }
    Ok(out)
}

/// The sub-block records of a read block into `records`, and the block's flag: `None` if none of
/// its voxels are the label's, [`ALL`] if all are.
fn mixed_block(
    raw: &[u8],
    bs: [usize; 3],
    subs: [usize; 3],
    body: &BodyBlocks,
    records: &mut Vec<u8>,
) -> Option<u8> {
    let mut last: Option<(u64, bool)> = None;
    let mut is_wanted = |l: u64| match last {
        Some((prev, w)) if prev == l => w,
        _ => {
            let w = body.wanted.contains(&l);
            last = Some((l, w));
            w
        }
    };
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
    use std::collections::HashSet;

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
        let body = BodyBlocks {
            block_size: [16, 8, 8],
            wanted: HashSet::from([7]),
            blocks: vec![([1, 0, 0], Some(labels_bytes(&labels))), ([0, 1, 0], None)],
        };
        let out = encode(42, &body).unwrap();
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
        let body = BodyBlocks {
            block_size: [8, 8, 8],
            wanted: HashSet::from([7]),
            blocks: vec![([0, 0, 0], Some(labels_bytes(&[3; 512])))],
        };
        assert!(encode(7, &body).unwrap().is_empty());
        let uneven = BodyBlocks {
            block_size: [12, 8, 8],
            ..body
        };
        assert!(encode(7, &uneven).unwrap_err().contains("12x8x8"));
    }

    #[test]
    fn a_read_block_all_the_labels_is_flagged_whole() {
        let body = BodyBlocks {
            block_size: [8, 8, 8],
            wanted: HashSet::from([3, 4]),
            blocks: vec![(
                [0, 0, -1],
                Some(labels_bytes(
                    &(0..512).map(|i| 3 + i % 2).collect::<Vec<_>>(),
                )),
            )],
        };
        let out = encode(3, &body).unwrap();
        assert_eq!(
            &out[20..32],
            &[0, 0, 0, 0, 0, 0, 0, 0, 0xf8, 0xff, 0xff, 0xff]
        );
        assert_eq!(out[32..], [ALL]);
    }
}
