//! DVID's compressed label **Block** (the serialization labelmap stores, gzipped, per block) and
//! the block stream that `GET /blocks`, `GET /specificblocks`, `POST /blocks` and
//! `POST /ingest-supervoxels` carry.
//!
//! # Block layout
//!
//! All integers are little-endian. A block of `nx × ny × nz` voxels (each a multiple of 8) is
//! cut into `gx × gy × gz` sub-blocks of 8×8×8 (`g = n / 8`):
//!
//! ```text
//! u32 gx, u32 gy, u32 gz       sub-blocks per axis
//! u32 N                        distinct labels in the block (at least 1)
//! N × u64                      the block's label list
//! -- only when N > 1 (N == 1 is a solid block: 24 bytes in all) --
//! Nsb × u16                    labels per sub-block, Ns[i] (Nsb = gx·gy·gz, at most 512 each)
//! ΣNs × u32                    per sub-block, its Ns[i] indices into the block's label list
//! per sub-block with Ns[i] > 1: 512 × ceil(log2 Ns[i]) bits of indices into its own list
//! ```
//!
//! Sub-blocks run x fastest, then y, then z, and so do the 512 voxels inside one. Voxel indices
//! are packed most-significant bit first and run on across byte boundaries; each sub-block's
//! values start on a fresh byte (512 × bits is always whole bytes). `Ns[i] == 1` needs no values
//! (the whole sub-block is that label) and `Ns[i] == 0` means the sub-block is all label 0.
//!
//! Which order a writer gives the label lists is up to it: Go DVID's encoder takes the block
//! list from map iteration, libdvid sorts each sub-block's list. [`encode`] uses first-seen
//! order (sub-blocks in order, voxels in order), so its output is deterministic.
//!
//! # Stream framing
//!
//! Each block in a stream is `i32 bx, i32 by, i32 bz` (block coordinates), a `u32` byte count
//! (DVID writes it unsigned; its help text calls it int32) and that many payload bytes. On the
//! wire the payload of `compression=blocks` (and of every POST) is the gzipped Block; the other
//! GET choices (`lz4`, `gzip`, `uncompressed`) carry the block's plain `u64` voxels instead.

use rustc_hash::FxHashMap;
use std::io::Read;

/// Voxels along each side of a sub-block.
const SUB: usize = 8;
/// Voxels in a sub-block.
const SUB_VOXELS: usize = SUB * SUB * SUB;
/// DVID's limit on a block side (so a block's voxel count fits a `u32`).
pub const MAX_BLOCK_SIZE: usize = 1024;
/// Bytes before a block's label list.
const HEADER: usize = 16;
/// Bytes before each payload in a block stream.
pub const FRAME_HEADER: usize = 16;

/// Checks a block size (each side a nonzero multiple of 8, at most [`MAX_BLOCK_SIZE`]) and
/// returns the number of sub-blocks along each axis. (Go DVID's `MakeBlock` also wants sides of
/// at least 16 and labelmap wants multiples of 16; its decoder and solid blocks take any 8s.)
pub fn sub_blocks(size: [usize; 3]) -> Result<[usize; 3], String> {
    if size
        .iter()
        .any(|&n| n == 0 || !n.is_multiple_of(SUB) || n > MAX_BLOCK_SIZE)
    {
        return Err(format!(
            "label block size {}×{}×{} must be nonzero multiples of {SUB} up to {MAX_BLOCK_SIZE}",
            size[0], size[1], size[2]
        ));
    }
    Ok(size.map(|n| n / SUB))
}

/// The most bytes a valid Block of `size` can take: a label and a sub-block index per voxel
/// plus 9-bit voxel values. Used to cap decompression.
pub fn max_encoded_len(size: [usize; 3]) -> usize {
    let voxels = size[0] * size[1] * size[2];
    HEADER + 8 * voxels + 2 * (voxels / SUB_VOXELS) + 4 * voxels + voxels * 9 / 8
}

/// Encodes one block of labels (x fastest, then y, then z; `size` in voxels, each a multiple of
/// 8) into DVID's Block bytes.
///
/// # Panics
///
/// If `size` fails [`sub_blocks`] or `labels.len()` is not its voxel count; both are the
/// caller's geometry, never request bytes.
pub fn encode(labels: &[u64], size: [usize; 3]) -> Vec<u8> {
    let g = match sub_blocks(size) {
        Ok(g) => g,
        Err(e) => panic!("{e}"),
    };
    let voxels = size[0] * size[1] * size[2];
    assert_eq!(
        labels.len(),
        voxels,
        "label block of {size:?} needs {voxels} labels"
    );
    let first = labels[0];
    if labels.iter().all(|&l| l == first) {
        return solid(first, g);
    }

    let nsb = g[0] * g[1] * g[2];
    let mut counts: Vec<u16> = Vec::with_capacity(nsb);
    let mut indices: Vec<u32> = Vec::with_capacity(nsb * 2);
    let mut values: Vec<u8> = Vec::new();
    let mut block_labels: Vec<u64> = Vec::new();
    let mut block_index: FxHashMap<u64, u32> = FxHashMap::default();
    // Neighbouring sub-blocks often repeat a label: skip the map for a repeat of the last one.
    let mut last: Option<(u64, u32)> = None;
    let mut table = SubTable::new();
    let mut idx = [0u16; SUB_VOXELS];
    let (dy, dz) = (size[0], size[0] * size[1]);
    for sz in 0..g[2] {
        for sy in 0..g[1] {
            for sx in 0..g[0] {
                let base = sz * SUB * dz + sy * SUB * dy + sx * SUB;
                let rows = (0..SUB * SUB).map(|r| base + (r / SUB) * dz + (r % SUB) * dy);
                let n = table.index(labels, rows, &mut idx);
                counts.push(n as u16);
                for &l in &table.list[..n] {
                    let i = match last {
                        Some((label, i)) if label == l => i,
                        _ => {
                            let next = block_labels.len() as u32;
                            let i = *block_index.entry(l).or_insert_with(|| {
                                block_labels.push(l);
                                next
                            });
                            last = Some((l, i));
                            i
                        }
                    };
                    indices.push(i);
                }
                if n > 1 {
                    pack(&idx, bits_for(n), &mut values);
                }
            }
        }
    }

    let mut out = Vec::with_capacity(
        HEADER + 8 * block_labels.len() + 2 * nsb + 4 * indices.len() + values.len(),
    );
    put_header(&mut out, g, block_labels.len());
    for l in &block_labels {
        out.extend_from_slice(&l.to_le_bytes());
    }
    for c in &counts {
        out.extend_from_slice(&c.to_le_bytes());
    }
    for i in &indices {
        out.extend_from_slice(&i.to_le_bytes());
    }
    out.extend_from_slice(&values);
    out
}

/// Decodes DVID's Block bytes into the labels of a block of `size` voxels (x fastest), refusing
/// malformed input with a message: a grid that does not match `size`, missing or trailing bytes,
/// a sub-block with more than 512 labels, an index past the block's label list or a voxel value
/// past its sub-block's list. (Go DVID ignores bytes after the values; every known writer, Go
/// DVID and libdvid alike, writes none, so here they are an error.)
pub fn decode(bytes: &[u8], size: [usize; 3]) -> Result<Vec<u64>, String> {
    let g = sub_blocks(size)?;
    if bytes.len() < HEADER {
        return Err(format!(
            "label block of {} bytes is shorter than its {HEADER}-byte header",
            bytes.len()
        ));
    }
    let grid = [u32_at(bytes, 0), u32_at(bytes, 4), u32_at(bytes, 8)];
    if grid.iter().zip(&g).any(|(&a, &b)| a as usize != b) {
        return Err(format!(
            "label block has {}×{}×{} sub-blocks; a {}×{}×{} block needs {}×{}×{}",
            grid[0], grid[1], grid[2], size[0], size[1], size[2], g[0], g[1], g[2]
        ));
    }
    let n = u32_at(bytes, 12) as usize;
    if n == 0 {
        return Err("label block lists no labels".into());
    }
    let label_bytes = &bytes[HEADER..];
    if n > label_bytes.len() / 8 {
        return Err(format!(
            "label block lists {n} labels but holds only {} bytes",
            bytes.len()
        ));
    }
    let labels: Vec<u64> = label_bytes[..8 * n]
        .chunks_exact(8)
        .map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes")))
        .collect();
    let rest = &label_bytes[8 * n..];
    let voxels = size[0] * size[1] * size[2];
    if n == 1 {
        if !rest.is_empty() {
            return Err(format!(
                "solid label block has {} bytes after its label",
                rest.len()
            ));
        }
        return Ok(vec![labels[0]; voxels]);
    }

    let nsb = g[0] * g[1] * g[2];
    if rest.len() < 2 * nsb {
        return Err(format!(
            "label block of {n} labels ends before its {nsb} sub-block label counts"
        ));
    }
    let (count_bytes, rest) = rest.split_at(2 * nsb);
    let counts: Vec<usize> = count_bytes
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]) as usize)
        .collect();
    let mut total_indices = 0;
    let mut total_values = 0;
    for (i, &c) in counts.iter().enumerate() {
        if c > SUB_VOXELS {
            return Err(format!(
                "sub-block {i} claims {c} labels; a sub-block holds at most {SUB_VOXELS}"
            ));
        }
        total_indices += c;
        total_values += value_bytes(c);
    }
    if rest.len() != 4 * total_indices + total_values {
        return Err(format!(
            "label block needs {} bytes of sub-block indices and values after its counts but has {}",
            4 * total_indices + total_values,
            rest.len()
        ));
    }
    let (index_bytes, mut value_data) = rest.split_at(4 * total_indices);
    let mut index_words = index_bytes
        .chunks_exact(4)
        .map(|c| u32::from_le_bytes(c.try_into().expect("4 bytes")) as usize);

    let mut out = vec![0u64; voxels];
    let mut sb_labels = [0u64; SUB_VOXELS];
    let mut idx = [0u16; SUB_VOXELS];
    let (dy, dz) = (size[0], size[0] * size[1]);
    let mut sb_num = 0;
    for sz in 0..g[2] {
        for sy in 0..g[1] {
            for sx in 0..g[0] {
                let c = counts[sb_num];
                for slot in &mut sb_labels[..c] {
                    let i = index_words.next().expect("indices counted above");
                    *slot = *labels.get(i).ok_or_else(|| {
                        format!("sub-block {sb_num} refers to label {i} of a list of {n}")
                    })?;
                }
                let base = sz * SUB * dz + sy * SUB * dy + sx * SUB;
                let rows = (0..SUB * SUB).map(|r| base + (r / SUB) * dz + (r % SUB) * dy);
                match c {
                    0 => {} // all label 0, as allocated
                    1 => {
                        for dst in rows {
                            out[dst..dst + SUB].fill(sb_labels[0]);
                        }
                    }
                    _ => {
                        let bits = bits_for(c);
                        let (these, next) = value_data.split_at(value_bytes(c));
                        value_data = next;
                        unpack(these, bits, &mut idx);
                        if let Some(&v) = idx.iter().find(|&&v| v as usize >= c) {
                            return Err(format!(
                                "sub-block {sb_num} has a voxel value {v} past its {c} labels"
                            ));
                        }
                        for (dst, row) in rows.zip(idx.chunks_exact(SUB)) {
                            for (o, &v) in out[dst..dst + SUB].iter_mut().zip(row) {
                                *o = sb_labels[v as usize];
                            }
                        }
                    }
                }
                sb_num += 1;
            }
        }
    }
    Ok(out)
}

/// Gzips the Block of `labels` as DVID stores it and sends it for `compression=blocks`.
pub fn encode_gzip(labels: &[u64], size: [usize; 3]) -> Vec<u8> {
    super::gzip(&encode(labels, size))
}

/// Gunzips a block payload (concatenated gzip members read as one, as Go's reader does) into
/// Block bytes, refusing output longer than any valid Block of `size`.
pub fn gunzip(payload: &[u8], size: [usize; 3]) -> Result<Vec<u8>, String> {
    let cap = max_encoded_len(size);
    let mut out = Vec::new();
    flate2::read::MultiGzDecoder::new(payload)
        .take(cap as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| format!("gzipped label block: {e}"))?;
    if out.len() > cap {
        return Err(format!(
            "gzipped label block inflates past {cap} bytes, the most a {}×{}×{} block can take",
            size[0], size[1], size[2]
        ));
    }
    Ok(out)
}

/// Decodes a gzipped Block payload, as POSTed or sent for `compression=blocks`.
pub fn decode_gzip(payload: &[u8], size: [usize; 3]) -> Result<Vec<u64>, String> {
    decode(&gunzip(payload, size)?, size)
}

/// One block of a stream: its block coordinates (x, y, z) and its payload.
pub type Frame<'a> = ([i32; 3], &'a [u8]);

/// Appends one framed block of a stream: its block coordinates and payload.
///
/// # Panics
///
/// If the payload exceeds 4 GiB, which no block can.
pub fn frame(out: &mut Vec<u8>, block: [i32; 3], payload: &[u8]) {
    let len = u32::try_from(payload.len()).expect("block payload under 4 GiB");
    out.reserve(FRAME_HEADER + payload.len());
    for c in block {
        out.extend_from_slice(&c.to_le_bytes());
    }
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(payload);
}

/// Splits a block stream into (block coordinates, payload) pairs. Errors on a truncated header
/// or payload and, as DVID's reader does, on a zero-length payload.
pub fn unframe(stream: &[u8]) -> Result<Vec<Frame<'_>>, String> {
    let mut blocks = Vec::new();
    let mut rest = stream;
    while !rest.is_empty() {
        let at = stream.len() - rest.len();
        if rest.len() < FRAME_HEADER {
            return Err(format!(
                "block stream ends {} bytes into a {FRAME_HEADER}-byte block header at byte {at}",
                rest.len()
            ));
        }
        let coord = [0, 4, 8].map(|o| u32_at(rest, o) as i32);
        let len = u32_at(rest, 12) as usize;
        if len == 0 {
            return Err(format!(
                "zero-length block at ({}, {}, {})",
                coord[0], coord[1], coord[2]
            ));
        }
        let body = &rest[FRAME_HEADER..];
        if body.len() < len {
            return Err(format!(
                "block ({}, {}, {}) at byte {at} needs {len} bytes but the stream has {}",
                coord[0],
                coord[1],
                coord[2],
                body.len()
            ));
        }
        blocks.push((coord, &body[..len]));
        rest = &body[len..];
    }
    Ok(blocks)
}

fn solid(label: u64, g: [usize; 3]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER + 8);
    put_header(&mut out, g, 1);
    out.extend_from_slice(&label.to_le_bytes());
    out
}

fn put_header(out: &mut Vec<u8>, g: [usize; 3], labels: usize) {
    for n in [g[0], g[1], g[2], labels] {
        out.extend_from_slice(&(n as u32).to_le_bytes());
    }
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

/// Bits per voxel for a sub-block of `n` labels: ceil(log2 n), 0 for 0 or 1.
fn bits_for(n: usize) -> u32 {
    if n < 2 {
        0
    } else {
        usize::BITS - (n - 1).leading_zeros()
    }
}

/// Bytes of voxel values for a sub-block of `n` labels.
fn value_bytes(n: usize) -> usize {
    SUB_VOXELS * bits_for(n) as usize / 8
}

/// Packs 512 indices of `bits` (1 to 9) bits each, most significant bit first: every 8 values
/// fill exactly `bits` bytes.
fn pack(idx: &[u16; SUB_VOXELS], bits: u32, out: &mut Vec<u8>) {
    match bits {
        1 => pack_n::<1>(idx, out),
        2 => pack_n::<2>(idx, out),
        3 => pack_n::<3>(idx, out),
        4 => pack_n::<4>(idx, out),
        5 => pack_n::<5>(idx, out),
        6 => pack_n::<6>(idx, out),
        7 => pack_n::<7>(idx, out),
        8 => pack_n::<8>(idx, out),
        _ => pack_n::<9>(idx, out),
    }
}

fn pack_n<const B: usize>(idx: &[u16; SUB_VOXELS], out: &mut Vec<u8>) {
    let start = out.len();
    out.resize(start + SUB_VOXELS / 8 * B, 0);
    for (group, dst) in idx.chunks_exact(8).zip(out[start..].chunks_exact_mut(B)) {
        let acc = if B <= 8 {
            group.iter().fold(0u64, |a, &v| (a << B) | v as u64) as u128
        } else {
            group.iter().fold(0u128, |a, &v| (a << B) | v as u128)
        };
        dst.copy_from_slice(&acc.to_be_bytes()[16 - B..]);
    }
}

/// Inverse of [`pack`]; `src` holds exactly `64 × bits` bytes.
fn unpack(src: &[u8], bits: u32, idx: &mut [u16; SUB_VOXELS]) {
    match bits {
        1 => unpack_n::<1>(src, idx),
        2 => unpack_n::<2>(src, idx),
        3 => unpack_n::<3>(src, idx),
        4 => unpack_n::<4>(src, idx),
        5 => unpack_n::<5>(src, idx),
        6 => unpack_n::<6>(src, idx),
        7 => unpack_n::<7>(src, idx),
        8 => unpack_n::<8>(src, idx),
        _ => unpack_n::<9>(src, idx),
    }
}

fn unpack_n<const B: usize>(src: &[u8], idx: &mut [u16; SUB_VOXELS]) {
    let mask = (1u64 << B) - 1;
    for (group, out) in src.chunks_exact(B).zip(idx.chunks_exact_mut(8)) {
        let mut be = [0u8; 16];
        be[16 - B..].copy_from_slice(group);
        let acc = u128::from_be_bytes(be);
        if B <= 8 {
            let acc = acc as u64;
            for (k, o) in out.iter_mut().enumerate() {
                *o = ((acc >> (B * (7 - k))) & mask) as u16;
            }
        } else {
            for (k, o) in out.iter_mut().enumerate() {
                *o = ((acc >> (B * (7 - k))) as u64 & mask) as u16;
            }
        }
    }
}

/// Slots of the per-sub-block label table: a power of two at least twice 512.
const SLOTS: usize = 1024;

/// A sub-block's distinct labels in first-seen order, found through a small open-addressing
/// table that is emptied after each sub-block (only the slots it used are touched).
struct SubTable {
    keys: [u64; SLOTS],
    /// Index into `list` plus one; 0 marks an empty slot.
    vals: [u16; SLOTS],
    used: [u16; SUB_VOXELS],
    list: [u64; SUB_VOXELS],
}

impl SubTable {
    fn new() -> Self {
        SubTable {
            keys: [0; SLOTS],
            vals: [0; SLOTS],
            used: [0; SUB_VOXELS],
            list: [0; SUB_VOXELS],
        }
    }

    /// Fills `list` with the distinct labels of the sub-block whose 64 rows of 8 voxels start at
    /// `rows` in `labels` and, unless there is only one, `idx` with each voxel's position in
    /// that list. Returns the number of distinct labels.
    fn index(
        &mut self,
        labels: &[u64],
        rows: impl Iterator<Item = usize> + Clone,
        idx: &mut [u16; SUB_VOXELS],
    ) -> usize {
        let first = labels[rows.clone().next().expect("64 rows")];
        self.list[0] = first;
        if rows
            .clone()
            .all(|r| labels[r..r + SUB].iter().all(|&l| l == first))
        {
            return 1;
        }
        let mut n = 0;
        let (mut prev, mut prev_i) = (first, self.find(first, &mut n));
        for (r, out) in rows.zip(idx.chunks_exact_mut(SUB)) {
            for (&l, o) in labels[r..r + SUB].iter().zip(out) {
                if l != prev {
                    prev = l;
                    prev_i = self.find(l, &mut n);
                }
                *o = prev_i;
            }
        }
        for &slot in &self.used[..n] {
            self.vals[slot as usize] = 0;
        }
        n
    }

    fn find(&mut self, label: u64, n: &mut usize) -> u16 {
        let mut slot = (label.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 54) as usize;
        loop {
            match self.vals[slot] {
                0 => {
                    let i = *n;
                    self.keys[slot] = label;
                    self.vals[slot] = i as u16 + 1;
                    self.used[i] = slot as u16;
                    self.list[i] = label;
                    *n += 1;
                    return i as u16;
                }
                v if self.keys[slot] == label => return v - 1,
                _ => slot = (slot + 1) & (SLOTS - 1),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
    }

    fn voxels(size: [usize; 3]) -> usize {
        size[0] * size[1] * size[2]
    }

    fn round_trip(labels: &[u64], size: [usize; 3]) -> Vec<u8> {
        let enc = encode(labels, size);
        assert_eq!(decode(&enc, size).unwrap(), labels);
        assert!(enc.len() <= max_encoded_len(size));
        enc
    }

    /// The 16×8×8 block of the golden test: sub-block 0 all label 7; sub-block 1 label 9 where
    /// its local x < 4 and 7 elsewhere, except that its last row (y = z = 7) starts with a 7.
    fn two_sub_blocks() -> Vec<u64> {
        let size = [16, 8, 8];
        let mut v = vec![7u64; voxels(size)];
        for z in 0..8 {
            for y in 0..8 {
                for x in 8..12 {
                    v[(z * 8 + y) * 16 + x] = 9;
                }
            }
        }
        v[(7 * 8 + 7) * 16 + 8] = 7;
        v
    }

    #[test]
    fn golden_solid_8_cube() {
        // MakeSolidBlock: gx, gy, gz = 1, N = 1, then the one label; nothing more.
        let expected: Vec<u8> = [
            [1, 0, 0, 0], // gx
            [1, 0, 0, 0], // gy
            [1, 0, 0, 0], // gz
            [1, 0, 0, 0], // N
        ]
        .concat()
        .into_iter()
        .chain([0x08, 0x07, 0x06, 0x05, 0x04, 0x03, 0x02, 0x01]) // label, LE
        .collect();
        let labels = vec![0x0102_0304_0506_0708u64; 512];
        assert_eq!(round_trip(&labels, [8, 8, 8]), expected);
    }

    #[test]
    fn golden_two_sub_blocks() {
        let mut expected: Vec<u8> = vec![
            2, 0, 0, 0, // gx = 16 / 8
            1, 0, 0, 0, // gy
            1, 0, 0, 0, // gz
            2, 0, 0, 0, // N = 2 labels in the block
            7, 0, 0, 0, 0, 0, 0, 0, // label 0 of the block: 7 (first seen, sub-block 0)
            9, 0, 0, 0, 0, 0, 0, 0, // label 1: 9 (first new label in sub-block 1)
            1, 0, // Ns[0] = 1: solid sub-block, no values
            2, 0, // Ns[1] = 2: one bit per voxel
            0, 0, 0, 0, // sub-block 0 list: [block label 0] = [7]
            1, 0, 0, 0, // sub-block 1 list, first seen 9 = block label 1 ...
            0, 0, 0, 0, // ... then 7 = block label 0
        ];
        // Sub-block 1 values: 64 rows of 8 voxels, one byte per row, first voxel in the top bit:
        // x 0..3 are 9 (sub-block index 0), x 4..7 are 7 (index 1): 0b0000_1111.
        expected.extend([0x0F; 63]);
        // The last row (y = 7, z = 7) starts with a 7: 0b1000_1111.
        expected.push(0x8F);
        assert_eq!(expected.len(), 16 + 16 + 4 + 12 + 64);
        assert_eq!(round_trip(&two_sub_blocks(), [16, 8, 8]), expected);
    }

    #[test]
    fn golden_three_bit_values_straddle_bytes() {
        // One sub-block of 6 labels (3 bits) whose first five voxels hold indices 1..5, the
        // rest 0: 001 010 011 100 101 0.. = 0b0010_1001, 0b1100_1010 (libdvid's worked example).
        let mut bytes: Vec<u8> = vec![1, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 6, 0, 0, 0];
        for l in [10u64, 11, 12, 13, 14, 15] {
            bytes.extend(l.to_le_bytes());
        }
        bytes.extend([6, 0]); // Ns[0]
        for i in [5u32, 4, 3, 2, 1, 0] {
            bytes.extend(i.to_le_bytes()); // sub-block list, reversed into the block list
        }
        let mut values = vec![0u8; 192];
        values[0] = 0b0010_1001;
        values[1] = 0b1100_1010;
        bytes.extend(values);
        let mut expected = vec![15u64; 512];
        expected[..5].copy_from_slice(&[14, 13, 12, 11, 10]);
        assert_eq!(decode(&bytes, [8, 8, 8]).unwrap(), expected);
        // Our encoder lists labels in first-seen order but means the same voxels.
        assert_eq!(
            decode(&encode(&expected, [8, 8, 8]), [8, 8, 8]).unwrap(),
            expected
        );
    }

    #[test]
    fn bits_for_matches_dvid() {
        let cases = [
            (0, 0),
            (1, 0),
            (2, 1),
            (3, 2),
            (4, 2),
            (5, 3),
            (8, 3),
            (9, 4),
        ];
        for (n, b) in cases {
            assert_eq!(bits_for(n), b, "n = {n}");
        }
        assert_eq!((bits_for(256), bits_for(257), bits_for(512)), (8, 9, 9));
    }

    #[test]
    fn round_trips_every_label_count_per_sub_block() {
        let size = [16, 16, 8];
        let mut rng = Rng(0x1234_5678_9abc_def1);
        for distinct in [2usize, 3, 5, 16, 17, 100, 255, 256, 257, 300, 511, 512] {
            let mut labels = vec![0u64; voxels(size)];
            // Every sub-block gets exactly `distinct` labels, all in its first voxels, from a
            // palette that overlaps the next sub-block's, so block-level labels are shared.
            for sb in 0..4 {
                let (sx, sy) = (sb % 2, sb / 2);
                let palette = |k: usize| 1_000_000 + (sb * 300 + k) as u64;
                for k in 0..512 {
                    let (x, y, z) = (k % 8, (k / 8) % 8, k / 64);
                    let pick = if k < distinct {
                        k
                    } else {
                        rng.next() as usize % distinct
                    };
                    labels[(z * 16 + sy * 8 + y) * 16 + sx * 8 + x] = palette(pick);
                }
            }
            let enc = round_trip(&labels, size);
            let counts = &enc[16 + 8 * u32_at(&enc, 12) as usize..][..8];
            assert!(
                counts
                    .chunks(2)
                    .all(|c| c == (distinct as u16).to_le_bytes())
            );
        }
    }

    #[test]
    fn round_trips_64_cubes() {
        let size = [64, 64, 64];
        let mut rng = Rng(42);
        // Segmentation-like: runs of labels along x with a palette of ~200 bodies.
        let mut labels = vec![0u64; voxels(size)];
        let mut cur = 0;
        for l in labels.iter_mut() {
            if rng.next().is_multiple_of(23) {
                cur = 1 + rng.next() % 200;
            }
            *l = cur;
        }
        let enc = round_trip(&labels, size);
        assert!(enc.len() < labels.len() * 8);
        // Every voxel distinct, the worst case.
        let unique: Vec<u64> = (0..voxels(size) as u64).map(|i| i * 31 + 5).collect();
        round_trip(&unique, size);
        // Solid, and solid but one voxel.
        let mut almost = vec![3u64; voxels(size)];
        assert_eq!(round_trip(&almost, size).len(), 24);
        almost[voxels(size) - 1] = 4;
        round_trip(&almost, size);
        // Gzip round trip, as on the wire.
        let gz = encode_gzip(&labels, size);
        assert_eq!(decode_gzip(&gz, size).unwrap(), labels);
    }

    #[test]
    fn decodes_empty_sub_blocks_as_zero() {
        // N = 2, Ns = [0, 1]: sub-block 0 is all 0, sub-block 1 all label 5.
        let mut bytes = vec![2, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0];
        bytes.extend(8u64.to_le_bytes());
        bytes.extend(5u64.to_le_bytes());
        bytes.extend([0, 0, 1, 0]);
        bytes.extend(1u32.to_le_bytes());
        let out = decode(&bytes, [16, 8, 8]).unwrap();
        for (i, &l) in out.iter().enumerate() {
            assert_eq!(l, if i % 16 < 8 { 0 } else { 5 });
        }
    }

    #[test]
    fn decode_refuses_malformed_input() {
        let size = [16, 8, 8];
        let good = encode(&two_sub_blocks(), size);
        // Every truncation fails without panicking.
        for n in 0..good.len() {
            assert!(decode(&good[..n], size).is_err(), "prefix of {n} bytes");
        }
        // Trailing bytes.
        let mut long = good.clone();
        long.push(0);
        assert!(decode(&long, size).is_err());
        let mut solid = encode(&[1u64; 512], [8, 8, 8]);
        solid.push(0);
        assert!(decode(&solid, [8, 8, 8]).is_err());
        // Wrong grid for the size, and sizes that are no block.
        assert!(decode(&good, [8, 16, 8]).is_err());
        assert!(decode(&good, [16, 8, 16]).is_err());
        assert!(decode(&good, [12, 8, 8]).is_err() && decode(&good, [0, 8, 8]).is_err());
        assert!(decode(&good, [2048, 8, 8]).is_err());
        // Zero labels.
        let mut zero = good.clone();
        zero[12..16].copy_from_slice(&0u32.to_le_bytes());
        assert!(decode(&zero, size).is_err());
        // A label count far past the bytes (no huge allocation).
        let mut huge = good.clone();
        huge[12..16].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(decode(&huge, size).is_err());
        // A sub-block index past the label list (offset: header 16 + labels 16 + counts 4).
        let mut bad_index = good.clone();
        bad_index[36..40].copy_from_slice(&2u32.to_le_bytes());
        assert!(decode(&bad_index, size).unwrap_err().contains("label 2"));
        // A sub-block count over 512, and one inconsistent with the bytes that follow.
        let mut over = good.clone();
        over[34..36].copy_from_slice(&513u16.to_le_bytes());
        assert!(decode(&over, size).is_err());
        let mut more = good.clone();
        more[34..36].copy_from_slice(&3u16.to_le_bytes());
        assert!(decode(&more, size).is_err());
        // A voxel value past its sub-block's list: 3 labels use 2 bits, so value 3 is invalid.
        let mut three = vec![1, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 3, 0, 0, 0];
        for l in [1u64, 2, 3] {
            three.extend(l.to_le_bytes());
        }
        three.extend([3, 0]);
        for i in [0u32, 1, 2] {
            three.extend(i.to_le_bytes());
        }
        let mut values = vec![0b0001_1000u8; 128]; // indices 0, 1, 2, 0 per byte
        assert!(decode(&[three.clone(), values.clone()].concat(), [8, 8, 8]).is_ok());
        values[127] = 0b0000_0011;
        let err = decode(&[three, values].concat(), [8, 8, 8]).unwrap_err();
        assert!(err.contains("value 3"), "{err}");
        // Junk of every short length and a few random buffers.
        let mut rng = Rng(7);
        for len in 0..300 {
            let junk: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
            let _ = decode(&junk, size);
            let mut hdr = good[..16].to_vec();
            hdr.extend(&junk);
            let _ = decode(&hdr, size);
        }
        assert!(gunzip(b"not gzip", size).is_err());
    }

    #[test]
    fn gunzip_is_capped_and_reads_concatenated_members() {
        let size = [8, 8, 8];
        let big = super::super::gzip(&vec![0u8; max_encoded_len(size) + 1]);
        assert!(gunzip(&big, size).unwrap_err().contains("inflates past"));
        let enc = encode(&[5u64; 512], size);
        let two = [
            super::super::gzip(&enc[..10]),
            super::super::gzip(&enc[10..]),
        ]
        .concat();
        assert_eq!(decode_gzip(&two, size).unwrap(), vec![5u64; 512]);
    }

    #[test]
    fn frames_round_trip_and_refuse_truncation() {
        let mut stream = Vec::new();
        frame(&mut stream, [1, -2, 3], b"abc");
        frame(&mut stream, [i32::MIN, 0, i32::MAX], &[9; 40]);
        assert_eq!(
            &stream[..19],
            &[
                1, 0, 0, 0, 0xFE, 0xFF, 0xFF, 0xFF, 3, 0, 0, 0, 3, 0, 0, 0, b'a', b'b', b'c'
            ]
        );
        let blocks = unframe(&stream).unwrap();
        assert_eq!(blocks.len(), 2);
        assert_eq!(blocks[0], ([1, -2, 3], &b"abc"[..]));
        assert_eq!(blocks[1], ([i32::MIN, 0, i32::MAX], &[9u8; 40][..]));
        assert!(unframe(&[]).unwrap().is_empty());
        for n in 1..stream.len() {
            if n != 19 {
                assert!(unframe(&stream[..n]).is_err(), "prefix of {n} bytes");
            }
        }
        assert_eq!(unframe(&stream[..19]).unwrap().len(), 1);
        let mut empty = Vec::new();
        frame(&mut empty, [0, 0, 0], &[]);
        assert!(unframe(&empty).is_err());
        let mut huge = stream[..16].to_vec();
        huge[12..16].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(unframe(&huge).is_err());
    }
}
