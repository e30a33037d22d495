//! Neuroglancer's "compressed segmentation" codec for `u64` label volumes.
//!
//! The format is specified in Neuroglancer's
//! `src/sliceview/compressed_segmentation/README.md`. In short: the volume is
//! cut into blocks (8×8×8 for dvid); each block stores a sorted table of its
//! distinct labels plus a bit-packed index per voxel using 0, 1, 2, 4, 8, 16
//! or 32 bits. Everything is little-endian 32-bit words, and every offset is
//! counted in words from the start of the channel.
//!
//! dvid serves this as `raw/0_1_2/...?compression=google[gzip]`. Neuroglancer
//! hands the (transport-gunzipped) body straight to its chunk format, which
//! reads it as a *multi-channel* stream: word 0 is the offset of channel 0 and
//! must be `1` for one channel. So the bytes produced here start with that word,
//! exactly like the Go dvid server and the `compressed-segmentation` PyPI
//! package.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// Words before the channel data: the single channel-offset word.
const CHANNEL_BASE: usize = 1;

/// Neuroglancer keeps table offsets in 24 bits, and its CPU-side reader also
/// masks the values offset to 24 bits, so the whole channel must stay below
/// 2^24 words (64 MiB) to be readable everywhere.
const MAX_WORDS: usize = 1 << 24;

/// Encodes `labels` (x fastest, then y, then z) of a volume of `size` voxels
/// into a single-channel compressed segmentation, header word included.
///
/// # Panics
///
/// If `labels.len()` is not the product of `size`, a `block` dimension is zero,
/// or the result would exceed Neuroglancer's 2^24-word offset limit; use
/// [`try_encode_u64`] where any of those can come from a request.
#[cfg(test)]
pub fn encode_u64(labels: &[u64], size: [usize; 3], block: [usize; 3]) -> Vec<u8> {
    match try_encode_u64(labels, size, block) {
        Ok(bytes) => bytes,
        Err(e) => panic!("compressed segmentation: {e}"),
    }
}

/// Like [`encode_u64`], but reports bad arguments and oversized output as an
/// error instead of panicking.
pub fn try_encode_u64(
    labels: &[u64],
    size: [usize; 3],
    block: [usize; 3],
) -> Result<Vec<u8>, String> {
    let geom = Geometry::new(size, block)?;
    // Checked before the label count so callers can probe the limit cheaply.
    if CHANNEL_BASE + 2 * geom.blocks > MAX_WORDS {
        return Err(too_big());
    }
    if labels.len() != geom.voxels {
        return Err(format!(
            "{} labels given for a {}x{}x{} volume ({} voxels)",
            labels.len(),
            size[0],
            size[1],
            size[2],
            geom.voxels
        ));
    }
    encode(&Dense { labels, size }, geom)
}

/// Whether a volume at `offset` (voxels) held as stored blocks of `block_size` can be encoded
/// in `block`s straight from them: every encoding block must lie within one stored block.
pub fn encodes_from_blocks(offset: [i64; 3], block_size: [usize; 3], block: [usize; 3]) -> bool {
    block[0] <= ZEROS.len()
        && (0..3).all(|a| {
            block[a] > 0
                && block_size[a].is_multiple_of(block[a])
                && (offset[a].rem_euclid(block_size[a] as i64) as usize).is_multiple_of(block[a])
        })
}

/// Encodes a volume of `size` voxels held as the blocks of a store (see [`StoredBlocks`])
/// without assembling it first; the blocks must pass [`encodes_from_blocks`].
pub fn try_encode_blocks(
    blocks: &StoredBlocks,
    size: [usize; 3],
    block: [usize; 3],
) -> Result<Vec<u8>, String> {
    if !encodes_from_blocks(blocks.offset, blocks.block_size, block) {
        return Err(format!(
            "{block:?} encoding blocks straddle the stored blocks of {:?} at {:?}",
            blocks.block_size, blocks.offset
        ));
    }
    let expected = blocks.grid.iter().product::<usize>();
    let voxels = blocks.block_size.iter().product::<usize>();
    if blocks.blocks.len() != expected || blocks.blocks.iter().flatten().any(|b| b.len() != voxels)
    {
        return Err(format!(
            "expected {expected} stored blocks of {voxels} labels for a {:?} grid",
            blocks.grid
        ));
    }
    encode(blocks, Geometry::new(size, block)?)
}

/// Where the labels of one encoding block are: row (y, z) of the block starts at
/// `labels[start + y * y_stride + z * z_stride]`.
struct Strided<'a> {
    labels: &'a [u64],
    start: usize,
    y_stride: usize,
    z_stride: usize,
}

impl Strided<'_> {
    fn row(&self, y: usize, z: usize, n: usize) -> &[u64] {
        &self.labels[self.start + y * self.y_stride + z * self.z_stride..][..n]
    }
}

/// Labels of a volume, handed to the encoder one encoding block at a time.
trait LabelSource {
    /// The block whose first voxel is `origin` (volume coordinates).
    fn at(&self, origin: [usize; 3]) -> Strided<'_>;
}

/// An assembled volume, x fastest.
struct Dense<'a> {
    labels: &'a [u64],
    size: [usize; 3],
}

impl LabelSource for Dense<'_> {
    fn at(&self, [x, y, z]: [usize; 3]) -> Strided<'_> {
        let [sx, sy, _] = self.size;
        Strided {
            labels: self.labels,
            start: x + sx * (y + sy * z),
            y_stride: sx,
            z_stride: sx * sy,
        }
    }
}

/// A volume as the store's blocks: those touching the box at `offset` (voxels), x fastest
/// then y then z, each `block_size` labels or `None` for a block of zeros (never written).
pub struct StoredBlocks<'a> {
    pub offset: [i64; 3],
    pub block_size: [usize; 3],
    /// Blocks along each axis.
    pub grid: [usize; 3],
    pub blocks: Vec<Option<std::borrow::Cow<'a, [u64]>>>,
}

/// Labels of an unwritten block: any row reads as zeros (strides 0).
static ZEROS: [u64; 64] = [0; 64];

impl LabelSource for StoredBlocks<'_> {
    fn at(&self, origin: [usize; 3]) -> Strided<'_> {
        let bs = self.block_size;
        // Voxel within the first block's grid, then which block and where in it.
        let g: [usize; 3] =
            std::array::from_fn(|a| origin[a] + self.offset[a].rem_euclid(bs[a] as i64) as usize);
        let b: [usize; 3] = std::array::from_fn(|a| g[a] / bs[a]);
        let i: [usize; 3] = std::array::from_fn(|a| g[a] % bs[a]);
        match &self.blocks[b[0] + self.grid[0] * (b[1] + self.grid[1] * b[2])] {
            Some(labels) => Strided {
                labels,
                start: i[0] + bs[0] * (i[1] + bs[1] * i[2]),
                y_stride: bs[0],
                z_stride: bs[0] * bs[1],
            },
            None => Strided {
                labels: &ZEROS,
                start: 0,
                y_stride: 0,
                z_stride: 0,
            },
        }
    }
}

fn too_big() -> String {
    format!(
        "encoded volume exceeds {MAX_WORDS} 32-bit words, the format's offset limit; \
         request a smaller subvolume"
    )
}

fn encode(labels: &impl LabelSource, geom: Geometry) -> Result<Vec<u8>, String> {
    let header_words = 2 * geom.blocks;
    if CHANNEL_BASE + header_words > MAX_WORDS {
        return Err(too_big());
    }

    let mut out: Vec<u32> = Vec::with_capacity(CHANNEL_BASE + header_words + 4 * geom.blocks);
    out.push(CHANNEL_BASE as u32);
    out.resize(CHANNEL_BASE + header_words, 0);

    // Identical tables are written once; neighbouring blocks often share one.
    let mut written_tables: HashMap<Box<[u64]>, u32, BuildFastHasher> = HashMap::default();
    let mut enc = BlockEncoder::new();
    let mut header = CHANNEL_BASE;

    for region in geom.blocks() {
        enc.index(&labels.at(region.origin), &geom, &region);
        let bits = bits_for(enc.table.len());

        let values_offset = out.len() - CHANNEL_BASE;
        let value_words = (bits as usize * geom.block_len).div_ceil(32);
        if out.len() + value_words > MAX_WORDS {
            return Err(too_big());
        }
        out.resize(out.len() + value_words, 0);
        enc.pack(bits, &mut out[CHANNEL_BASE + values_offset..]);

        let table = enc.table.as_slice();
        let table_offset = match written_tables.get(table) {
            Some(&offset) => offset,
            None => {
                let offset = (out.len() - CHANNEL_BASE) as u32;
                out.reserve(2 * table.len());
                for &v in table {
                    out.push(v as u32);
                    out.push((v >> 32) as u32);
                }
                written_tables.insert(table.into(), offset);
                offset
            }
        };

        // Checked per block so a huge request fails early rather than late.
        if out.len() > MAX_WORDS {
            return Err(too_big());
        }
        out[header] = table_offset | (bits << 24);
        out[header + 1] = values_offset as u32;
        header += 2;
    }

    let mut bytes = Vec::with_capacity(out.len() * 4);
    for w in &out {
        bytes.extend_from_slice(&w.to_le_bytes());
    }
    Ok(bytes)
}

/// Decodes a single-channel compressed segmentation (header word included)
/// of a volume of `size` voxels encoded with `block`, x fastest in the result.
///
/// Every offset and index is bounds-checked: malformed input gives `Err`,
/// never a panic.
#[cfg(test)]
pub fn decode_u64(data: &[u8], size: [usize; 3], block: [usize; 3]) -> Result<Vec<u64>, String> {
    let geom = Geometry::new(size, block)?;
    if !data.len().is_multiple_of(4) {
        return Err(format!(
            "length {} is not a whole number of 32-bit words",
            data.len()
        ));
    }
    let words: Vec<u32> = data
        .chunks_exact(4)
        .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    match words.first() {
        None => return Err("empty input: missing the channel-offset word".into()),
        Some(&1) => {}
        Some(&w) => {
            return Err(format!(
                "channel-offset word is {w}, expected 1 for single-channel data"
            ));
        }
    }
    let channel = &words[CHANNEL_BASE..];
    let header_words = 2 * geom.blocks;
    if channel.len() < header_words {
        return Err(format!(
            "{} words of block headers needed, only {} present",
            header_words,
            channel.len()
        ));
    }

    let mut out = vec![0u64; geom.voxels];
    for (i, region) in geom.blocks().enumerate() {
        let h0 = channel[2 * i];
        let h1 = channel[2 * i + 1];
        let bits = h0 >> 24;
        let table_offset = (h0 & 0x00ff_ffff) as usize;
        if !matches!(bits, 0 | 1 | 2 | 4 | 8 | 16 | 32) {
            return Err(format!("block {i}: invalid bits per index {bits}"));
        }
        let table = channel.get(table_offset..).unwrap_or(&[]);
        let table_len = table.len() / 2;
        let entry = |idx: usize| -> Result<u64, String> {
            if idx >= table_len {
                return Err(format!(
                    "block {i}: table index {idx} at word offset {table_offset} is past the end"
                ));
            }
            Ok(u64::from(table[2 * idx]) | (u64::from(table[2 * idx + 1]) << 32))
        };

        if bits == 0 {
            let v = entry(0)?;
            for row in geom.rows(&region) {
                out[row.volume..row.volume + region.extent[0]].fill(v);
            }
            continue;
        }

        let values_offset = h1 as usize;
        let value_words = (bits as usize * geom.block_len).div_ceil(32);
        let values = values_offset
            .checked_add(value_words)
            .and_then(|end| channel.get(values_offset..end))
            .ok_or_else(|| {
                format!(
                    "block {i}: {value_words} index words at word offset {values_offset} \
                     run past the end"
                )
            })?;
        let mask = if bits == 32 {
            u32::MAX
        } else {
            (1u32 << bits) - 1
        };
        let bits = bits as usize;
        for row in geom.rows(&region) {
            let mut bit = bits * row.in_block;
            for slot in &mut out[row.volume..row.volume + region.extent[0]] {
                let idx = (values[bit / 32] >> (bit % 32)) & mask;
                *slot = entry(idx as usize)?;
                bit += bits;
            }
        }
    }
    Ok(out)
}

/// Smallest allowed index width for `n` distinct values.
fn bits_for(n: usize) -> u32 {
    match n {
        0 | 1 => 0,
        2 => 1,
        3..=4 => 2,
        5..=16 => 4,
        17..=256 => 8,
        257..=65536 => 16,
        _ => 32,
    }
}

/// Scratch space for encoding one block at a time, reused across blocks.
struct BlockEncoder {
    /// Per position in the block: 1 + first-seen number of its label, or 0
    /// for padding outside the volume (padding is then stored as index 0,
    /// like Neuroglancer's encoder does; the spec allows any present value).
    ids: Vec<u32>,
    /// First-seen number of each label met so far in the block.
    seen: HashMap<u64, u32, BuildFastHasher>,
    /// Distinct labels in first-seen order.
    firsts: Vec<u64>,
    /// Table index for each entry of `ids`' numbering.
    rank: Vec<u32>,
    /// The block's lookup table: its distinct labels, sorted.
    table: Vec<u64>,
    order: Vec<u32>,
}

impl BlockEncoder {
    fn new() -> Self {
        Self {
            ids: Vec::new(),
            seen: HashMap::default(),
            firsts: Vec::new(),
            rank: Vec::new(),
            table: Vec::new(),
            order: Vec::new(),
        }
    }

    /// Numbers the labels of `region` and builds its sorted table. Only label
    /// changes along a row cost a lookup, which is rare in segmentations.
    fn index(&mut self, labels: &Strided, geom: &Geometry, region: &Region) {
        self.seen.clear();
        self.firsts.clear();
        self.table.clear();
        self.rank.clear();
        let [ex, ey, ez] = region.extent;
        let [bx, by, _] = geom.block;
        let first = labels.row(0, 0, 1)[0];

        // Most blocks of a segmentation hold one label; they need no indices.
        // The per-row test vectorises.
        let mut uniform = true;
        'scan: for z in 0..ez {
            for y in 0..ey {
                let src = labels.row(y, z, ex);
                if src.iter().fold(0, |acc, &v| acc | (v ^ first)) != 0 {
                    uniform = false;
                    break 'scan;
                }
            }
        }
        if uniform {
            self.firsts.push(first);
            self.table.push(first);
            self.rank.extend([0, 0]);
            return;
        }

        // Positions past the last voxel inside the volume stay out of `ids`;
        // their index words are already zero. This also keeps a block far
        // larger than the volume cheap.
        let used = ex + bx * ((ey - 1) + by * (ez - 1));
        if region.extent != geom.block || self.ids.len() != used {
            self.ids.clear();
            self.ids.resize(used, 0);
        }
        let mut last = first.wrapping_add(1);
        let mut last_id = 0;
        for z in 0..ez {
            for y in 0..ey {
                let src = labels.row(y, z, ex);
                let dst = &mut self.ids[bx * (y + by * z)..][..ex];
                // Whole rows of one label are the common case.
                if src.iter().fold(0, |acc, &v| acc | (v ^ last)) == 0 {
                    dst.fill(last_id);
                    continue;
                }
                for (d, &v) in dst.iter_mut().zip(src) {
                    if v != last {
                        last = v;
                        last_id = id_of(&mut self.firsts, &mut self.seen, v);
                    }
                    *d = last_id;
                }
            }
        }

        let firsts = &self.firsts;
        self.order.clear();
        self.order.extend(0..firsts.len() as u32);
        self.order.sort_unstable_by_key(|&i| firsts[i as usize]);
        self.table
            .extend(self.order.iter().map(|&i| firsts[i as usize]));
        self.rank.resize(firsts.len() + 1, 0);
        for (pos, &i) in self.order.iter().enumerate() {
            self.rank[i as usize + 1] = pos as u32;
        }
    }

    /// Writes the table index of every block position into `words`.
    fn pack(&self, bits: u32, words: &mut [u32]) {
        match bits {
            1 => pack_fixed::<1>(&self.ids, &self.rank, words),
            2 => pack_fixed::<2>(&self.ids, &self.rank, words),
            4 => pack_fixed::<4>(&self.ids, &self.rank, words),
            8 => pack_fixed::<8>(&self.ids, &self.rank, words),
            16 => pack_fixed::<16>(&self.ids, &self.rank, words),
            32 => pack_fixed::<32>(&self.ids, &self.rank, words),
            _ => {}
        }
    }
}

/// The first-seen number (from 1) of `v`, assigning the next one if new.
/// A short linear scan beats hashing for the few labels a block has.
fn id_of(firsts: &mut Vec<u64>, seen: &mut HashMap<u64, u32, BuildFastHasher>, v: u64) -> u32 {
    const SCAN: usize = 8;
    let scan = firsts.len().min(SCAN);
    if let Some(i) = firsts[..scan].iter().position(|&f| f == v) {
        return i as u32 + 1;
    }
    if firsts.len() > SCAN
        && let Some(&id) = seen.get(&v)
    {
        return id;
    }
    firsts.push(v);
    let id = firsts.len() as u32;
    if id as usize > SCAN {
        seen.insert(v, id);
    }
    id
}

/// Packs `32 / BITS` indices per word, lowest bits first; a constant width
/// lets the compiler unroll the inner loop.
fn pack_fixed<const BITS: usize>(ids: &[u32], rank: &[u32], words: &mut [u32]) {
    for (word, chunk) in words.iter_mut().zip(ids.chunks(32 / BITS)) {
        let mut acc = 0;
        for (k, &id) in chunk.iter().enumerate() {
            acc |= rank[id as usize] << (k * BITS);
        }
        *word = acc;
    }
}

/// FxHash-style hasher with a final mix, for the encoder's small maps.
/// SipHash would cost more than the rest of the encoder; collision attacks
/// are bounded because a block holds at most `block_len` labels.
#[derive(Default)]
struct FastHasher(u64);

type BuildFastHasher = BuildHasherDefault<FastHasher>;

impl Hasher for FastHasher {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut b = [0u8; 8];
            b[..chunk.len()].copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(b));
        }
    }

    fn write_u64(&mut self, x: u64) {
        self.0 = (self.0.rotate_left(5) ^ x).wrapping_mul(0x517c_c1b7_2722_0a95);
    }

    fn write_usize(&mut self, x: usize) {
        self.write_u64(x as u64);
    }

    fn finish(&self) -> u64 {
        // Murmur3's finaliser spreads high-bit-only differences (ids like
        // `n << 40`) into the low bits the table indexes by.
        let mut z = self.0;
        z = (z ^ (z >> 33)).wrapping_mul(0xff51_afd7_ed55_8ccd);
        z = (z ^ (z >> 33)).wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        z ^ (z >> 33)
    }
}

/// Volume and block dimensions with the derived counts, validated once.
struct Geometry {
    size: [usize; 3],
    block: [usize; 3],
    grid: [usize; 3],
    voxels: usize,
    blocks: usize,
    block_len: usize,
}

/// One block: its first voxel and its extent inside the volume.
struct Region {
    origin: [usize; 3],
    extent: [usize; 3],
}

/// Start of one x-row of a block: index into the volume and into the block.
#[cfg(test)]
struct Row {
    volume: usize,
    in_block: usize,
}

impl Geometry {
    fn new(size: [usize; 3], block: [usize; 3]) -> Result<Self, String> {
        if block.contains(&0) {
            return Err(format!("block size {block:?} has a zero dimension"));
        }
        let grid = [0, 1, 2].map(|i| size[i].div_ceil(block[i]));
        let product = |d: [usize; 3]| d[0].checked_mul(d[1])?.checked_mul(d[2]);
        let voxels = product(size).ok_or("volume size overflows")?;
        let blocks = product(grid).ok_or("block grid overflows")?;
        let block_len = product(block)
            .filter(|&n| n.checked_mul(32).is_some())
            .ok_or("block size overflows")?;
        blocks
            .checked_mul(2)
            .and_then(|n| n.checked_add(CHANNEL_BASE))
            .ok_or("block grid overflows")?;
        Ok(Self {
            size,
            block,
            grid,
            voxels,
            blocks,
            block_len,
        })
    }

    /// Blocks in header order: x fastest, then y, then z.
    fn blocks(&self) -> impl Iterator<Item = Region> + '_ {
        let [gx, gy, gz] = self.grid;
        (0..gz).flat_map(move |bz| {
            (0..gy).flat_map(move |by| {
                (0..gx).map(move |bx| {
                    let origin = [bx * self.block[0], by * self.block[1], bz * self.block[2]];
                    let extent = [0, 1, 2].map(|i| self.block[i].min(self.size[i] - origin[i]));
                    Region { origin, extent }
                })
            })
        })
    }

    /// The x-rows of `region` that lie inside the volume.
    #[cfg(test)]
    fn rows<'a>(&'a self, region: &'a Region) -> impl Iterator<Item = Row> + 'a {
        let [sx, sy, _] = self.size;
        let [bx, by, _] = self.block;
        let [ox, oy, oz] = region.origin;
        (0..region.extent[2]).flat_map(move |z| {
            (0..region.extent[1]).map(move |y| Row {
                volume: ox + sx * ((oy + y) + sy * (oz + z)),
                in_block: bx * (y + by * z),
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const B8: [usize; 3] = [8, 8, 8];

    /// SplitMix64: deterministic test data without a dependency.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        }

        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    fn len(size: [usize; 3]) -> usize {
        size.iter().product()
    }

    fn words(bytes: &[u8]) -> Vec<u32> {
        bytes
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes(c.try_into().unwrap()))
            .collect()
    }

    fn round_trip(labels: &[u64], size: [usize; 3], block: [usize; 3]) -> Vec<u8> {
        let enc = encode_u64(labels, size, block);
        let dec = decode_u64(&enc, size, block).unwrap();
        assert!(dec == labels, "round trip differs for {size:?} / {block:?}");
        enc
    }

    /// Voronoi cells around a few seeds, with large ids: looks like a real
    /// segmentation chunk.
    fn blobs(size: [usize; 3], seeds: usize, rng: &mut Rng) -> Vec<u64> {
        let pts: Vec<([i64; 3], u64)> = (0..seeds)
            .map(|_| {
                let p = [0, 1, 2].map(|i| rng.below(size[i] as u64) as i64);
                (p, (rng.next() >> 8) | (1 << 40))
            })
            .collect();
        let mut out = Vec::with_capacity(len(size));
        for z in 0..size[2] as i64 {
            for y in 0..size[1] as i64 {
                for x in 0..size[0] as i64 {
                    let d = |p: &[i64; 3]| {
                        (p[0] - x).pow(2) + (p[1] - y).pow(2) + 4 * (p[2] - z).pow(2)
                    };
                    out.push(pts.iter().min_by_key(|(p, _)| d(p)).unwrap().1);
                }
            }
        }
        out
    }

    fn header_bits(enc: &[u8], block_index: usize) -> u32 {
        words(enc)[CHANNEL_BASE + 2 * block_index] >> 24
    }

    #[test]
    fn uniform_8cube_matches_reference_bytes() {
        // Same words the PyPI package emits: channel offset, header
        // (table at 2, 0 bits; values at 2), then the one-entry table.
        let enc = encode_u64(&[3; 512], [8, 8, 8], B8);
        assert_eq!(words(&enc), [1, 2, 2, 3, 0]);
        assert_eq!(decode_u64(&enc, [8, 8, 8], B8).unwrap(), vec![3; 512]);
    }

    #[test]
    fn uniform_volume_uses_zero_bits_and_one_shared_table() {
        let size = [64, 64, 64];
        let enc = round_trip(&vec![u64::MAX - 5; len(size)], size, B8);
        let blocks = 512;
        assert_eq!(enc.len(), 4 * (CHANNEL_BASE + 2 * blocks + 2));
        assert!((0..blocks).all(|b| header_bits(&enc, b) == 0));
    }

    #[test]
    fn random_labels_round_trip() {
        let mut rng = Rng(1);
        for size in [[16, 16, 16], [64, 64, 64], [24, 8, 40]] {
            let any: Vec<u64> = (0..len(size)).map(|_| rng.next()).collect();
            round_trip(&any, size, B8);
            let palette: Vec<u64> = (0..64).map(|_| rng.next()).collect();
            let few: Vec<u64> = (0..len(size))
                .map(|_| palette[rng.below(64) as usize])
                .collect();
            round_trip(&few, size, B8);
        }
    }

    #[test]
    fn real_like_volumes_round_trip_and_compress() {
        let mut rng = Rng(2);
        let size = [64, 64, 64];
        let labels = blobs(size, 20, &mut rng);
        let enc = round_trip(&labels, size, B8);
        assert!(enc.len() * 20 < labels.len() * 8, "{} bytes", enc.len());

        let layered: Vec<u64> = (0..len(size))
            .map(|i| 1000 + (i / 4096 / 5) as u64)
            .collect();
        round_trip(&layered, size, B8);
        round_trip(&vec![0; len(size)], size, B8);
    }

    #[test]
    fn edge_sizes_and_odd_blocks_round_trip() {
        let mut rng = Rng(3);
        let cases = [
            ([13, 7, 9], B8),
            ([1, 1, 1], B8),
            ([9, 8, 17], B8),
            ([33, 1, 65], B8),
            ([13, 7, 9], [4, 8, 2]),
            ([10, 10, 10], [3, 5, 7]),
            ([5, 6, 7], [1, 1, 1]),
        ];
        for (size, block) in cases {
            let labels = blobs(size, 4, &mut rng);
            round_trip(&labels, size, block);
            let noisy: Vec<u64> = (0..len(size)).map(|_| rng.below(300)).collect();
            round_trip(&noisy, size, block);
        }
    }

    #[test]
    fn empty_volume_is_just_the_header_word() {
        let enc = round_trip(&[], [0, 8, 8], B8);
        assert_eq!(words(&enc), [1]);
    }

    #[test]
    fn every_index_width_is_chosen_and_decodes() {
        let cases = [
            (1, 0),
            (2, 1),
            (3, 2),
            (4, 2),
            (5, 4),
            (16, 4),
            (17, 8),
            (256, 8),
            (257, 16),
            (512, 16),
        ];
        let mut rng = Rng(4);
        for (distinct, bits) in cases {
            // Shuffled so indices are not monotone in voxel order.
            let mut labels: Vec<u64> = (0..512).map(|i| (i % distinct) as u64 * 7919).collect();
            for i in (1..labels.len()).rev() {
                labels.swap(i, rng.below(i as u64 + 1) as usize);
            }
            let enc = round_trip(&labels, [8, 8, 8], B8);
            assert_eq!(header_bits(&enc, 0), bits, "{distinct} distinct");
        }
        // 32 bits needs more than 2^16 distinct labels in one block.
        let block = [64, 64, 32];
        let labels: Vec<u64> = (0..len(block)).map(|i| (i as u64) << 20).collect();
        let enc = round_trip(&labels, block, block);
        assert_eq!(header_bits(&enc, 0), 32);
        let labels: Vec<u64> = (0..len(block)).map(|i| (i % 65537) as u64).collect();
        assert_eq!(header_bits(&round_trip(&labels, block, block), 0), 32);
        let labels: Vec<u64> = (0..len(block)).map(|i| (i % 65536) as u64).collect();
        assert_eq!(header_bits(&round_trip(&labels, block, block), 0), 16);
    }

    #[test]
    fn identical_tables_are_shared() {
        // Two blocks with the same two labels, the second in another pattern.
        let size = [16, 8, 8];
        let labels: Vec<u64> = (0..len(size))
            .map(|i| if (i % 16 < 8) == (i % 3 == 0) { 5 } else { 9 })
            .collect();
        let enc = round_trip(&labels, size, B8);
        let w = words(&enc);
        assert_eq!(w[1] & 0xff_ffff, w[3] & 0xff_ffff);
        // headers + 2 × 16 index words + one 2-entry table
        assert_eq!(w.len(), 1 + 4 + 32 + 4);
    }

    #[test]
    fn try_encode_rejects_bad_arguments() {
        assert!(try_encode_u64(&[1, 2, 3], [2, 2, 1], B8).is_err());
        assert!(try_encode_u64(&[1], [1, 1, 1], [8, 0, 8]).is_err());
        assert!(try_encode_u64(&[], [usize::MAX, 2, 2], B8).is_err());
    }

    #[test]
    fn try_encode_rejects_output_past_offset_limit() {
        // 2^24 words of block headers alone.
        let err = try_encode_u64(&[], [1 << 11, 1 << 11, 2], [1, 1, 1]).unwrap_err();
        assert!(err.contains("offset limit"), "{err}");
        // A block (larger than the volume) whose 1-bit indices alone pass it.
        let err = try_encode_u64(&[1, 2], [2, 1, 1], [1024, 1024, 1024]).unwrap_err();
        assert!(err.contains("offset limit"), "{err}");
    }

    #[test]
    fn decode_rejects_malformed_input() {
        let size = [13, 7, 9];
        let mut rng = Rng(5);
        let labels: Vec<u64> = (0..len(size)).map(|_| rng.below(40)).collect();
        let enc = encode_u64(&labels, size, B8);

        for cut in 0..enc.len() {
            assert!(
                decode_u64(&enc[..cut], size, B8).is_err(),
                "truncated to {cut} bytes was accepted"
            );
        }
        let mut wrong_channel = enc.clone();
        wrong_channel[0] = 2;
        assert!(decode_u64(&wrong_channel, size, B8).is_err());
        let mut bad_bits = enc.clone();
        bad_bits[4 + 3] = 3;
        assert!(
            decode_u64(&bad_bits, size, B8)
                .unwrap_err()
                .contains("bits")
        );
        let mut bad_table = enc.clone();
        bad_table[4..7].copy_from_slice(&[0xff, 0xff, 0xff]);
        assert!(decode_u64(&bad_table, size, B8).is_err());
        let mut bad_values = enc.clone();
        bad_values[8..12].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(decode_u64(&bad_values, size, B8).is_err());
        assert!(decode_u64(&enc, size, [0, 8, 8]).is_err());
        // The size is not stored: a larger grid reads past the headers.
        assert!(decode_u64(&enc, [64, 64, 64], B8).is_err());
    }

    #[test]
    fn decode_never_panics_on_garbage_or_bit_flips() {
        let mut rng = Rng(6);
        let size = [16, 9, 8];
        let labels = blobs(size, 5, &mut rng);
        let enc = encode_u64(&labels, size, B8);
        for _ in 0..2000 {
            let mut m = enc.clone();
            for _ in 0..1 + rng.below(4) {
                let at = rng.below(m.len() as u64) as usize;
                m[at] ^= 1 << rng.below(8);
            }
            let _ = decode_u64(&m, size, B8);
        }
        for _ in 0..500 {
            let n = 4 * rng.below(64) as usize;
            let mut g: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
            if !g.is_empty() {
                g[..4].copy_from_slice(&1u32.to_le_bytes());
            }
            let _ = decode_u64(&g, size, B8);
        }
    }

    macro_rules! fixture {
        ($name:literal) => {
            (
                $name,
                &include_bytes!(concat!(
                    env!("CARGO_MANIFEST_DIR"),
                    "/../tests/fixtures/compressed_segmentation/",
                    $name,
                    ".raw"
                ))[..],
                &include_bytes!(concat!(
                    env!("CARGO_MANIFEST_DIR"),
                    "/../tests/fixtures/compressed_segmentation/",
                    $name,
                    ".cseg"
                ))[..],
            )
        };
    }

    /// Fixtures encoded by the `compressed-segmentation` PyPI package; see
    /// `tests/fixtures/compressed_segmentation/make-fixtures.py`.
    #[test]
    fn decodes_and_reproduces_reference_encodings() {
        let fixtures = [
            (fixture!("random64"), [16, 16, 16]),
            (fixture!("blobs"), [32, 32, 16]),
            (fixture!("layers"), [16, 16, 16]),
            (fixture!("edge"), [13, 7, 9]),
            (fixture!("uniform"), [16, 16, 16]),
        ];
        for ((name, raw, cseg), size) in fixtures {
            let expected: Vec<u64> = raw
                .chunks_exact(8)
                .map(|c| u64::from_le_bytes(c.try_into().unwrap()))
                .collect();
            assert_eq!(expected.len(), len(size), "{name}.raw");
            let decoded = decode_u64(cseg, size, B8).unwrap();
            assert!(decoded == expected, "{name}: decode differs");
            assert!(
                encode_u64(&expected, size, B8) == cseg,
                "{name}: encoding differs from the reference bytes"
            );
        }
    }

    /// Cuts a dense volume at `offset` (voxels) into stored blocks of `bs`, dropping (as
    /// never written) the blocks `missing` names; those voxels become zeros in the returned
    /// volume, as the store reads them.
    fn as_stored(
        labels: &[u64],
        size: [usize; 3],
        offset: [i64; 3],
        bs: [usize; 3],
        missing: impl Fn(usize) -> bool,
    ) -> (StoredBlocks<'static>, Vec<u64>) {
        let lo: [i64; 3] = std::array::from_fn(|a| offset[a].div_euclid(bs[a] as i64));
        let hi: [i64; 3] =
            std::array::from_fn(|a| (offset[a] + size[a] as i64 - 1).div_euclid(bs[a] as i64));
        let grid: [usize; 3] = std::array::from_fn(|a| (hi[a] - lo[a] + 1) as usize);
        let mut seen = labels.to_vec();
        let mut blocks = Vec::new();
        for i in 0..grid.iter().product::<usize>() {
            let g = [i % grid[0], i / grid[0] % grid[1], i / grid[0] / grid[1]];
            let mut block = vec![u64::MAX; bs.iter().product()];
            for (j, slot) in block.iter_mut().enumerate() {
                let v = [j % bs[0], j / bs[0] % bs[1], j / bs[0] / bs[1]];
                let p: [i64; 3] =
                    std::array::from_fn(|a| (lo[a] + g[a] as i64) * bs[a] as i64 + v[a] as i64);
                let inside = (0..3).all(|a| p[a] >= offset[a] && p[a] < offset[a] + size[a] as i64);
                if inside {
                    let q: [usize; 3] = std::array::from_fn(|a| (p[a] - offset[a]) as usize);
                    let at = q[0] + size[0] * (q[1] + size[1] * q[2]);
                    *slot = labels[at];
                    if missing(i) {
                        seen[at] = 0;
                    }
                }
            }
            blocks.push((!missing(i)).then(|| block.into()));
        }
        let stored = StoredBlocks {
            offset,
            block_size: bs,
            grid,
            blocks,
        };
        (stored, seen)
    }

    #[test]
    fn encoding_from_stored_blocks_matches_the_assembled_volume() {
        let mut rng = Rng(4);
        let cases = [
            ([64, 64, 64], [0, 0, 0], [32, 32, 32]),
            ([64, 64, 64], [32, -64, 96], [64, 64, 64]),
            ([40, 24, 16], [-8, 16, 8], [32, 16, 8]),
            ([8, 8, 8], [24, 24, 24], [32, 32, 32]),
        ];
        for (size, offset, bs) in cases {
            let labels = blobs(size, 6, &mut rng);
            for missing_every in [0, 2] {
                let (stored, expected) = as_stored(&labels, size, offset, bs, |i| {
                    missing_every > 0 && i % missing_every == 1
                });
                assert!(encodes_from_blocks(offset, bs, B8));
                let from_blocks = try_encode_blocks(&stored, size, B8).unwrap();
                assert!(
                    from_blocks == encode_u64(&expected, size, B8),
                    "{size:?} at {offset:?} in {bs:?} blocks, missing every {missing_every}"
                );
            }
        }
    }

    #[test]
    fn stored_blocks_that_straddle_encoding_blocks_are_refused() {
        assert!(!encodes_from_blocks([4, 0, 0], [32, 32, 32], B8));
        assert!(!encodes_from_blocks([0, 0, 0], [20, 32, 32], B8));
        assert!(!encodes_from_blocks(
            [0, 0, 0],
            [128, 128, 128],
            [128, 8, 8]
        ));
        let (stored, _) = as_stored(&[7; 512], B8, [4, 0, 0], [32, 32, 32], |_| false);
        assert!(
            try_encode_blocks(&stored, B8, B8)
                .unwrap_err()
                .contains("straddle")
        );
    }
}
