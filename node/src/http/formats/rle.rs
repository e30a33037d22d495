//! DVID's sparse-volume RLEs ("rles"): a 12-byte header (payload descriptor 0, 3 dimensions, runs
//! along x, a reserved byte, a voxel count DVID leaves 0, the number of runs), then each run as
//! little-endian i32 `x, y, z, length`. `srles` is the runs alone. `split-supervoxel` takes them
//! as a request body.

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

/// The runs of DVID's RLE bytes (header and runs, as `split-supervoxel` takes them), refusing
/// anything malformed with a message.
pub fn decode(bytes: &[u8]) -> Result<Vec<[i32; 4]>, String> {
    if bytes.len() < HEADER {
        return Err(format!(
            "RLEs of {} bytes: DVID's RLEs start with a {HEADER}-byte header",
            bytes.len()
        ));
    }
    if bytes[0] != 0 {
        return Err(format!(
            "RLE header starts with {}: the payload descriptor must be 0 (binary voxels)",
            bytes[0]
        ));
    }
    let n = u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes")) as usize;
    let body = &bytes[HEADER..];
    if n.checked_mul(RUN) != Some(body.len()) {
        return Err(format!(
            "RLE header says {n} runs ({} bytes) but {} bytes follow it",
            n.saturating_mul(RUN),
            body.len()
        ));
    }
    Ok(body
        .chunks_exact(RUN)
        .map(|r| {
            std::array::from_fn(|i| {
                i32::from_le_bytes(r[4 * i..4 * i + 4].try_into().expect("4 bytes"))
            })
        })
        .collect())
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
        assert_eq!(decode(&bytes), Ok(vec![[1, 2, 3, 4]]));
    }

    #[test]
    fn rle_decode_refuses_malformed_bytes() {
        let good = encode(&[[1, 2, 3, 4], [5, 6, 7, 8]]);
        assert!(decode(&good[..11]).unwrap_err().contains("12-byte header"));
        assert!(
            decode(&good[..good.len() - 1])
                .unwrap_err()
                .contains("2 runs")
        );
        let mut extra = good.clone();
        extra.push(0);
        assert!(decode(&extra).is_err());
        let mut descriptor = good.clone();
        descriptor[0] = 1;
        assert!(decode(&descriptor).unwrap_err().contains("descriptor"));
        let mut huge = good[..12].to_vec();
        huge[8..12].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(decode(&huge).is_err());
        assert_eq!(decode(&encode(&[])), Ok(vec![]));
    }
}
