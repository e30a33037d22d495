//! Baseline 8-bit grayscale JPEG, the one owner of JPEG in dvid: `jpeg-encoder` writes it (pure
//! Rust, SIMD where the CPU has it) and `zune-jpeg` reads it (the decoder the `image` crate uses).
//! Used for JPEG-compressed uint8blk blocks and for the JPEG views of grayscale (3-D tiles, slices).

use crate::{Result, StoreError};
use jpeg_encoder::{ColorType, Encoder};
use zune_jpeg::JpegDecoder;
use zune_jpeg::zune_core::colorspace::ColorSpace;
use zune_jpeg::zune_core::options::DecoderOptions;

/// Largest width or height a JPEG can have.
pub const MAX_EDGE: usize = u16::MAX as usize;

/// DVID's default JPEG quality.
pub const DEFAULT_QUALITY: u8 = 80;

/// Checks a JPEG quality setting: 1 (smallest) to 100 (best).
pub fn check_quality(q: i64) -> Result<u8> {
    u8::try_from(q)
        .ok()
        .filter(|q| (1..=100).contains(q))
        .ok_or_else(|| StoreError::BadRequest(format!("JPEG quality must be 1..=100, got {q}")))
}

/// Encodes `width × height` grayscale pixels, rows top to bottom.
pub fn encode_gray(pixels: &[u8], width: usize, height: usize, quality: u8) -> Result<Vec<u8>> {
    let too_big = || {
        StoreError::BadRequest(format!(
            "a {width}x{height} image is too large for JPEG: width and height must be 1..={MAX_EDGE}"
        ))
    };
    let w = u16::try_from(width)
        .ok()
        .filter(|&w| w > 0)
        .ok_or_else(too_big)?;
    let h = u16::try_from(height)
        .ok()
        .filter(|&h| h > 0)
        .ok_or_else(too_big)?;
    if pixels.len() != width * height {
        return Err(StoreError::BadRequest(format!(
            "{} pixels for a {width}x{height} image",
            pixels.len()
        )));
    }
    let mut out = Vec::with_capacity(pixels.len() / 4 + 1024);
    Encoder::new(&mut out, quality)
        .encode(pixels, w, h, ColorType::Luma)
        .map_err(|e| StoreError::BadRequest(format!("JPEG encoding: {e}")))?;
    Ok(tables_first(out))
}

/// Moves the quantization tables (DQT) before the frame header (SOF), where libjpeg writes them.
/// Both orders are valid JPEG, but the decoder Neuroglancer uses (jpgjs) binds a component's
/// table when it reads the frame header, so it fails on the order jpeg-encoder writes.
fn tables_first(jpeg: Vec<u8>) -> Vec<u8> {
    const DQT: u8 = 0xDB;
    const SOS: u8 = 0xDA;
    let is_sof = |m: u8| (0xC0..=0xCF).contains(&m) && !matches!(m, 0xC4 | 0xC8 | 0xCC);
    // Header segments after SOI, up to the scan: (marker, start, end).
    let mut segments = Vec::new();
    let mut at = 2;
    while at + 4 <= jpeg.len() && jpeg[at] == 0xFF && jpeg[at + 1] != SOS {
        let len = usize::from(u16::from_be_bytes([jpeg[at + 2], jpeg[at + 3]]));
        segments.push((jpeg[at + 1], at, at + 2 + len));
        at += 2 + len;
    }
    let Some(sof) = segments.iter().position(|s| is_sof(s.0)) else {
        return jpeg;
    };
    if !segments[sof..].iter().any(|s| s.0 == DQT) || at > jpeg.len() {
        return jpeg;
    }
    let mut out = Vec::with_capacity(jpeg.len());
    out.extend_from_slice(&jpeg[..2]);
    let copy =
        |out: &mut Vec<u8>, (_, a, b): (u8, usize, usize)| out.extend_from_slice(&jpeg[a..b]);
    for &s in &segments[..sof] {
        copy(&mut out, s);
    }
    for &s in segments[sof..].iter().filter(|s| s.0 == DQT) {
        copy(&mut out, s);
    }
    for &s in segments[sof..].iter().filter(|s| s.0 != DQT) {
        copy(&mut out, s);
    }
    out.extend_from_slice(&jpeg[at..]);
    out
}

/// Decodes a JPEG to grayscale: (width, height, pixels). Untrusted input: errors, never panics.
pub fn decode_gray(bytes: &[u8]) -> Result<(usize, usize, Vec<u8>)> {
    let options = DecoderOptions::default()
        .jpeg_set_out_colorspace(ColorSpace::Luma)
        .set_max_width(MAX_EDGE)
        .set_max_height(MAX_EDGE);
    let mut d = JpegDecoder::new_with_options(bytes, options);
    let pixels = d
        .decode()
        .map_err(|e| StoreError::Corrupt(format!("JPEG decoding: {e:?}")))?;
    let info = d
        .info()
        .ok_or_else(|| StoreError::Corrupt("JPEG without a frame header".into()))?;
    let (w, h) = (usize::from(info.width), usize::from(info.height));
    if pixels.len() != w * h {
        return Err(StoreError::Corrupt(format!(
            "JPEG decoded to {} bytes for {w}x{h} grayscale",
            pixels.len()
        )));
    }
    Ok((w, h, pixels))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jpeg_round_trip_is_close() {
        let (w, h) = (64, 64 * 4);
        let pixels: Vec<u8> = (0..w * h).map(|i| ((i % w) * 3 + (i / w)) as u8).collect();
        let j = encode_gray(&pixels, w, h, 95).unwrap();
        let (dw, dh, back) = decode_gray(&j).unwrap();
        assert_eq!((dw, dh), (w, h));
        let worst = pixels
            .iter()
            .zip(&back)
            .map(|(a, b)| (i32::from(*a) - i32::from(*b)).abs())
            .max()
            .unwrap();
        assert!(worst <= 12, "worst error {worst}");
    }

    #[test]
    fn jpeg_writes_tables_before_the_frame() {
        let j = encode_gray(&[128; 64], 8, 8, 80).unwrap();
        let marker_at = |m: u8| j.windows(2).position(|w| w == [0xFF, m]).unwrap();
        assert!(marker_at(0xDB) < marker_at(0xC0), "DQT before SOF0");
        assert_eq!(decode_gray(&j).unwrap().2, vec![128; 64]);
    }

    #[test]
    fn jpeg_refuses_bad_input() {
        assert!(encode_gray(&[0; 10], 5, 3, 80).is_err());
        assert!(encode_gray(&[], 0, 0, 80).is_err());
        assert!(encode_gray(&vec![0; 70000], 70000, 1, 80).is_err());
        assert!(decode_gray(b"not a jpeg").is_err());
        assert!(check_quality(0).is_err() && check_quality(101).is_err());
        assert_eq!(check_quality(55).unwrap(), 55);
    }
}
