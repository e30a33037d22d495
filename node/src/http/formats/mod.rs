//! Response formats the HTTP layer owns: Neuroglancer's compressed segmentation, DVID's sparse
//! volume RLEs, DVID's compressed label Block and the block stream of labelmap's `blocks`
//! endpoints, PNG slices, and the byte-stream compressions DVID offers on `raw` (lz4, gzip). JPEG belongs to the store
//! ([`dvid_store::jpeg`]), which also keeps JPEG blocks.

pub mod compressed_segmentation;
pub mod label_block;
pub mod rle;
pub mod sparse_blocks;

use crate::http::{ApiError, ApiResult};
use flate2::Compression;
use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use std::io::{Read, Write};

/// Gzip at a speed-leaning level: responses are compressed once per request.
pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = GzEncoder::new(
        Vec::with_capacity(bytes.len() / 4 + 64),
        Compression::fast(),
    );
    e.write_all(bytes).expect("gzip into memory");
    e.finish().expect("gzip into memory")
}

/// Gunzips a request body that must hold exactly `expected` bytes.
pub fn gunzip(bytes: &[u8], expected: usize) -> ApiResult<Vec<u8>> {
    let mut out = Vec::with_capacity(expected);
    GzDecoder::new(bytes)
        .take(expected as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| ApiError::bad_request(format!("gzip body: {e}")))?;
    check_len(out, expected, "gzip")
}

/// DVID's lz4: one LZ4 block, no header (the reader knows the size it asked for).
pub fn lz4(bytes: &[u8]) -> Vec<u8> {
    lz4_flex::block::compress(bytes)
}

/// Decompresses an lz4 request body that must hold exactly `expected` bytes.
pub fn unlz4(bytes: &[u8], expected: usize) -> ApiResult<Vec<u8>> {
    let mut out = vec![0u8; expected];
    let n = lz4_flex::block::decompress_into(bytes, &mut out)
        .map_err(|e| ApiError::bad_request(format!("lz4 body: {e}")))?;
    out.truncate(n);
    check_len(out, expected, "lz4")
}

fn check_len(out: Vec<u8>, expected: usize, what: &str) -> ApiResult<Vec<u8>> {
    if out.len() == expected {
        Ok(out)
    } else {
        Err(ApiError::bad_request(format!(
            "{what} body decompresses to {}{} bytes; the subvolume needs {expected}",
            out.len().min(expected + 1),
            if out.len() > expected { "+" } else { "" }
        )))
    }
}

/// A PNG of `width × height` pixels of `voxel_bytes` each: 8-bit grayscale for uint8, and for
/// 64-bit labels a 16-bit RGBA PNG whose sample bytes are the label's little-endian bytes, as
/// DVID writes label slices.
pub fn png(pixels: &[u8], width: usize, height: usize, voxel_bytes: usize) -> ApiResult<Vec<u8>> {
    let (color, depth) = match voxel_bytes {
        1 => (png::ColorType::Grayscale, png::BitDepth::Eight),
        8 => (png::ColorType::Rgba, png::BitDepth::Sixteen),
        n => {
            return Err(ApiError::bad_request(format!(
                "no PNG form for {n}-byte voxels"
            )));
        }
    };
    let mut out = Vec::new();
    let fail = |e: png::EncodingError| ApiError::bad_request(format!("PNG encoding: {e}"));
    let mut enc = png::Encoder::new(&mut out, width as u32, height as u32);
    enc.set_color(color);
    enc.set_depth(depth);
    enc.set_compression(png::Compression::Fast);
    let mut w = enc.write_header().map_err(fail)?;
    w.write_image_data(pixels).map_err(fail)?;
    w.finish().map_err(fail)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_round_trip_and_refuse_wrong_sizes() {
        let raw: Vec<u8> = (0..5000u32).map(|i| (i % 7) as u8).collect();
        assert_eq!(gunzip(&gzip(&raw), raw.len()).unwrap(), raw);
        assert_eq!(unlz4(&lz4(&raw), raw.len()).unwrap(), raw);
        assert_eq!(gunzip(&gzip(&raw), raw.len() - 1).unwrap_err().status, 400);
        assert_eq!(unlz4(&lz4(&raw), raw.len() + 1).unwrap_err().status, 400);
        assert!(gunzip(b"junk", 4).is_err() && unlz4(b"\xff\xff", 4).is_err());
        let p = png(&raw[..100], 10, 10, 1).unwrap();
        assert_eq!(&p[1..4], b"PNG");
        assert!(png(&raw[..99], 10, 10, 1).is_err());
    }
}
