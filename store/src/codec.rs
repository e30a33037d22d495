//! Block payload format, the one owner of how voxel blocks are compressed into objects.
//!
//! Layout: `[codec: u8][uncompressed length: u32 LE][compressed bytes]`. The codec byte is part of the
//! content address, so the same voxels compressed two ways are two objects; that is rare and harmless.
//! JPEG blocks (lossy, grayscale only) hold one baseline JPEG of the block as DVID stores it: width
//! the block's x size, height y × z (row r is voxel row r mod y of slice r div y).

use crate::geometry::Point;
use crate::{Result, StoreError, jpeg};
use serde::{Deserialize, Serialize};

/// Compression applied to block payloads; chosen per instance at creation. Stored in catalog records
/// and sent in manifests by postcard, which writes the variant index: append variants, never
/// reorder or remove them (`catalog::tests::catalog_enums_golden_bytes`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Codec {
    /// LZ4 block format: fast; the default.
    Lz4,
    /// Zstandard at the given level: smaller, slower.
    Zstd(i32),
    /// JPEG at the given quality (1..=100): lossy, 8-bit grayscale only; what Neuroglancer reads
    /// fastest from DVID (`subvolblocks`).
    Jpeg(u8),
}

const TAG_LZ4: u8 = 1;
const TAG_ZSTD: u8 = 2;
const TAG_JPEG: u8 = 3;
const HEADER: usize = 5;

impl Codec {
    /// Parses DVID's `Compression` setting: `lz4`, `zstd`, `zstd:N`, `jpeg` or `jpeg:QUALITY`
    /// (case-insensitive).
    pub fn parse(s: &str) -> Result<Self> {
        let lower = s.trim().to_ascii_lowercase();
        match lower.split_once(':') {
            None if lower == "lz4" => Ok(Self::Lz4),
            None if lower == "zstd" => Ok(Self::Zstd(3)),
            None if lower == "jpeg" => Ok(Self::Jpeg(jpeg::DEFAULT_QUALITY)),
            Some(("jpeg", q)) => match q.parse::<i64>() {
                Ok(q) => Ok(Self::Jpeg(jpeg::check_quality(q)?)),
                Err(_) => Err(StoreError::BadRequest(format!(
                    "jpeg quality must be 1..=100, got {q:?}"
                ))),
            },
            Some(("zstd", level)) => match level.parse::<i32>() {
                Ok(l) if (1..=19).contains(&l) => Ok(Self::Zstd(l)),
                _ => Err(StoreError::BadRequest(format!(
                    "zstd level must be 1..=19, got {level:?}"
                ))),
            },
            _ => Err(StoreError::BadRequest(format!(
                "unknown compression {s:?}: use lz4, zstd, zstd:LEVEL, jpeg or jpeg:QUALITY"
            ))),
        }
    }

    /// DVID's human-readable description, as shown in `Base.Compression`.
    pub fn describe(&self) -> String {
        match self {
            Self::Lz4 => "LZ4 compression, level -1".to_string(),
            Self::Zstd(l) => format!("Zstd compression, level {l}"),
            // Neuroglancer looks for "jpeg" in this text to read blocks as JPEG.
            Self::Jpeg(q) => format!("jpeg compression, quality {q}"),
        }
    }

    /// Whether blocks of `voxel_bytes`-byte voxels and this size can be stored with this codec.
    pub fn check(&self, voxel_bytes: usize, block_size: Point) -> Result<()> {
        if let Self::Jpeg(_) = self {
            if voxel_bytes != 1 {
                return Err(StoreError::BadRequest(
                    "jpeg compression is for 8-bit grayscale (uint8blk) only: labels must stay exact"
                        .into(),
                ));
            }
            let height = i64::from(block_size[1]) * i64::from(block_size[2]);
            if block_size[0] as usize > jpeg::MAX_EDGE || height > jpeg::MAX_EDGE as i64 {
                return Err(StoreError::BadRequest(format!(
                    "BlockSize {block_size:?} is too large for jpeg blocks: x and y×z must be at most {}",
                    jpeg::MAX_EDGE
                )));
            }
        }
        Ok(())
    }

    /// Compresses the voxels of one block of `block_size` into a block payload.
    pub fn encode(&self, raw: &[u8], block_size: Point) -> Vec<u8> {
        let len = u32::try_from(raw.len()).expect("blocks are far below 4 GiB");
        match self {
            Self::Lz4 => {
                // Compress straight into the payload, after the header: no intermediate buffer.
                let mut out =
                    vec![0u8; HEADER + lz4_flex::block::get_maximum_output_size(raw.len())];
                out[0] = TAG_LZ4;
                out[1..HEADER].copy_from_slice(&len.to_le_bytes());
                let n = lz4_flex::block::compress_into(raw, &mut out[HEADER..])
                    .expect("output sized by get_maximum_output_size");
                out.truncate(HEADER + n);
                out
            }
            Self::Zstd(level) => {
                let mut out =
                    Vec::with_capacity(HEADER + zstd::zstd_safe::compress_bound(raw.len()));
                out.push(TAG_ZSTD);
                out.extend_from_slice(&len.to_le_bytes());
                let z = zstd::bulk::compress(raw, *level).expect("zstd compression of memory");
                out.extend_from_slice(&z);
                out
            }
            Self::Jpeg(quality) => {
                let (w, h) = (
                    block_size[0] as usize,
                    block_size[1] as usize * block_size[2] as usize,
                );
                let j = jpeg::encode_gray(raw, w, h, *quality)
                    .expect("jpeg block shapes are checked when the instance is created");
                let mut out = Vec::with_capacity(HEADER + j.len());
                out.push(TAG_JPEG);
                out.extend_from_slice(&len.to_le_bytes());
                out.extend_from_slice(&j);
                out
            }
        }
    }
}

/// The JPEG image of a JPEG block payload, as DVID sends it in block records; `None` for other
/// codecs.
pub fn jpeg_of(payload: &[u8]) -> Option<&[u8]> {
    (payload.len() > HEADER && payload[0] == TAG_JPEG).then(|| &payload[HEADER..])
}

/// Decompresses a block payload that must hold exactly `expected_len` bytes. Payloads are untrusted
/// (they may come from a peer or a damaged disk): the declared length is checked before allocating.
pub fn decode_block(payload: &[u8], expected_len: usize) -> Result<Vec<u8>> {
    let corrupt = |what: &str| StoreError::Corrupt(format!("block payload: {what}"));
    if payload.len() < HEADER {
        return Err(corrupt("shorter than its header"));
    }
    let declared = u32::from_le_bytes([payload[1], payload[2], payload[3], payload[4]]) as usize;
    if declared != expected_len {
        return Err(corrupt(&format!(
            "declares {declared} bytes, the instance's blocks hold {expected_len}"
        )));
    }
    let body = &payload[HEADER..];
    let raw = match payload[0] {
        TAG_LZ4 => {
            // `decompress` fills fresh memory without zeroing it first (`decompress_into` needs
            // a zeroed buffer: a memset of every block read).
            let out = lz4_flex::block::decompress(body, expected_len)
                .map_err(|e| corrupt(&format!("lz4: {e}")))?;
            (out.len() == expected_len).then_some(out)
        }
        TAG_ZSTD => {
            let out = zstd::bulk::decompress(body, expected_len)
                .map_err(|e| corrupt(&format!("zstd: {e}")))?;
            (out.len() == expected_len).then_some(out)
        }
        TAG_JPEG => {
            let (w, h, out) =
                jpeg::decode_gray(body).map_err(|e| corrupt(&format!("jpeg: {e}")))?;
            (w * h == expected_len).then_some(out)
        }
        other => return Err(corrupt(&format!("unknown codec tag {other}"))),
    };
    raw.ok_or_else(|| corrupt("decompressed to the wrong length"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn codec_golden_header() {
        let p = Codec::Lz4.encode(&[0u8; 16], [16, 1, 1]);
        assert_eq!(&p[..5], &[TAG_LZ4, 16, 0, 0, 0]);
        let z = Codec::Zstd(3).encode(&[7u8; 16], [16, 1, 1]);
        assert_eq!(&z[..5], &[TAG_ZSTD, 16, 0, 0, 0]);
    }

    #[test]
    fn codec_parse_settings() {
        assert_eq!(Codec::parse("LZ4").unwrap(), Codec::Lz4);
        assert_eq!(Codec::parse("zstd").unwrap(), Codec::Zstd(3));
        assert_eq!(Codec::parse("zstd:9").unwrap(), Codec::Zstd(9));
        assert!(Codec::parse("gzip").is_err());
        assert!(Codec::parse("zstd:99").is_err());
        assert_eq!(Codec::parse("JPEG").unwrap(), Codec::Jpeg(80));
        assert_eq!(Codec::parse("jpeg:90").unwrap(), Codec::Jpeg(90));
        assert!(Codec::parse("jpeg:0").is_err() && Codec::parse("jpeg:x").is_err());
        assert!(Codec::Jpeg(80).check(8, [32, 32, 32]).is_err());
        assert!(Codec::Jpeg(80).check(1, [64, 512, 512]).is_err());
        assert!(Codec::Jpeg(80).check(1, [64, 64, 64]).is_ok());
    }

    #[test]
    fn codec_jpeg_blocks_decode_close_and_expose_their_jpeg() {
        let raw: Vec<u8> = (0..16 * 16 * 16).map(|i| (i % 16 * 8) as u8).collect();
        let p = Codec::Jpeg(95).encode(&raw, [16, 16, 16]);
        let j = jpeg_of(&p).unwrap();
        assert_eq!(&j[..2], &[0xFF, 0xD8], "a JPEG starts with SOI");
        let back = decode_block(&p, raw.len()).unwrap();
        assert!(raw.iter().zip(&back).all(|(a, b)| a.abs_diff(*b) <= 12));
        assert!(jpeg_of(&Codec::Lz4.encode(&raw, [16, 16, 16])).is_none());
    }

    #[test]
    fn codec_rejects_wrong_length() {
        let p = Codec::Lz4.encode(&[1u8; 64], [64, 1, 1]);
        assert!(decode_block(&p, 63).is_err());
        assert!(decode_block(&p[..3], 64).is_err());
    }

    proptest! {
        #[test]
        fn codec_round_trips(raw in proptest::collection::vec(any::<u8>(), 0..4096), zstd in any::<bool>()) {
            let codec = if zstd { Codec::Zstd(1) } else { Codec::Lz4 };
            let p = codec.encode(&raw, [raw.len() as i32, 1, 1]);
            prop_assert_eq!(decode_block(&p, raw.len()).unwrap(), raw);
        }

        #[test]
        fn codec_decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256), len in 0usize..1024) {
            let _ = decode_block(&bytes, len);
        }
    }
}
