//! DVID's sparse-volume RLEs ("rles"): a 12-byte header (payload descriptor 0, 3 dimensions, runs
//! along x, a reserved byte, a voxel count DVID leaves 0, the number of runs), then each run as
//! little-endian i32 `x, y, z, length`. `srles` is the runs alone.

const HEADER: usize = 12;
const RUN: usize = 16;

/// The runs with DVID's header.
pub fn encode(runs: &[[i32; 4]]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER + RUN * runs.len());
    out.extend_from_slice(&[0, 3, 0, 0]);
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&(runs.len() as u32).to_le_bytes());
    out.extend_from_slice(&self::runs(runs));
    out
}

/// The runs alone.
pub fn runs(runs: &[[i32; 4]]) -> Vec<u8> {
    runs.iter()
        .flat_map(|r| r.iter().flat_map(|v| v.to_le_bytes()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rle_golden_bytes() {
        let bytes = encode(&[[1, 2, 3, 4]]);
        assert_eq!(
            bytes,
            [
                0, 3, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, // header: 1 run
                1, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0, 4, 0, 0, 0
            ]
        );
        assert_eq!(runs(&[[1, 2, 3, 4]]), bytes[12..]);
    }
}
