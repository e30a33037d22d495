//! Block payload format, the one owner of how voxel blocks are compressed into objects.
//!
//! Layout: `[codec: u8][uncompressed length: u32 LE][compressed bytes]`. The codec byte is part of the
//! content address, so the same voxels compressed two ways are two objects; that is rare and harmless.

use crate::{Result, StoreError};
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
}

const TAG_LZ4: u8 = 1;
const TAG_ZSTD: u8 = 2;
const HEADER: usize = 5;

impl Codec {
    /// Parses DVID's `Compression` setting: `lz4`, `zstd`, or `zstd:N` (case-insensitive).
    pub fn parse(s: &str) -> Result<Self> {
        let lower = s.trim().to_ascii_lowercase();
        match lower.split_once(':') {
            None if lower == "lz4" => Ok(Self::Lz4),
            None if lower == "zstd" => Ok(Self::Zstd(3)),
            Some(("zstd", level)) => match level.parse::<i32>() {
                Ok(l) if (1..=19).contains(&l) => Ok(Self::Zstd(l)),
                _ => Err(StoreError::BadRequest(format!(
                    "zstd level must be 1..=19, got {level:?}"
                ))),
            },
            _ => Err(StoreError::BadRequest(format!(
                "unknown compression {s:?}: use lz4, zstd or zstd:LEVEL"
            ))),
        }
    }

    /// DVID's human-readable description, as shown in `Base.Compression`.
    pub fn describe(&self) -> String {
        match self {
            Self::Lz4 => "LZ4 compression, level -1".to_string(),
            Self::Zstd(l) => format!("Zstd compression, level {l}"),
        }
    }

    /// Compresses `raw` into a block payload.
    pub fn encode(&self, raw: &[u8]) -> Vec<u8> {
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
        }
    }
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
            let mut out = vec![0u8; expected_len];
            let n = lz4_flex::block::decompress_into(body, &mut out)
                .map_err(|e| corrupt(&format!("lz4: {e}")))?;
            (n == expected_len).then_some(out)
        }
        TAG_ZSTD => {
            let out = zstd::bulk::decompress(body, expected_len)
                .map_err(|e| corrupt(&format!("zstd: {e}")))?;
            (out.len() == expected_len).then_some(out)
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
        let p = Codec::Lz4.encode(&[0u8; 16]);
        assert_eq!(&p[..5], &[TAG_LZ4, 16, 0, 0, 0]);
        let z = Codec::Zstd(3).encode(&[7u8; 16]);
        assert_eq!(&z[..5], &[TAG_ZSTD, 16, 0, 0, 0]);
    }

    #[test]
    fn codec_parse_settings() {
        assert_eq!(Codec::parse("LZ4").unwrap(), Codec::Lz4);
        assert_eq!(Codec::parse("zstd").unwrap(), Codec::Zstd(3));
        assert_eq!(Codec::parse("zstd:9").unwrap(), Codec::Zstd(9));
        assert!(Codec::parse("gzip").is_err());
        assert!(Codec::parse("zstd:99").is_err());
    }

    #[test]
    fn codec_rejects_wrong_length() {
        let p = Codec::Lz4.encode(&[1u8; 64]);
        assert!(decode_block(&p, 63).is_err());
        assert!(decode_block(&p[..3], 64).is_err());
    }

    proptest! {
        #[test]
        fn codec_round_trips(raw in proptest::collection::vec(any::<u8>(), 0..4096), zstd in any::<bool>()) {
            let codec = if zstd { Codec::Zstd(1) } else { Codec::Lz4 };
            let p = codec.encode(&raw);
            prop_assert_eq!(decode_block(&p, raw.len()).unwrap(), raw);
        }

        #[test]
        fn codec_decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256), len in 0usize..1024) {
            let _ = decode_block(&bytes, len);
        }
    }
}
