//! DVID's labelmap protobufs (`datatype/common/proto/labelops.proto`, package `proto`), field for
//! field, and its block index: the one owner of these formats. Maps are `BTreeMap`s so a label
//! index encodes to the same bytes whatever order it was built in: stored indices are
//! content-addressed objects, and equal indices must be one object.

use crate::{Point, Result, StoreError};
use prost::Message;
use std::collections::BTreeMap;

/// Voxels of each supervoxel in one block.
#[derive(Clone, PartialEq, Message)]
pub struct SvCount {
    #[prost(btree_map = "uint64, uint32", tag = "1")]
    pub counts: BTreeMap<u64, u32>,
    #[prost(uint64, tag = "2")]
    pub surface_mutid: u64,
}

/// Where a body is: its blocks (keyed by [`encode_block`]) and the voxels of each of its
/// supervoxels in each, with who changed it last.
#[derive(Clone, PartialEq, Message)]
pub struct LabelIndex {
    #[prost(btree_map = "uint64, message", tag = "1")]
    pub blocks: BTreeMap<u64, SvCount>,
    #[prost(uint64, tag = "2")]
    pub label: u64,
    #[prost(uint64, tag = "3")]
    pub last_mutid: u64,
    #[prost(string, tag = "4")]
    pub last_mod_time: String,
    #[prost(string, tag = "5")]
    pub last_mod_user: String,
    #[prost(string, tag = "6")]
    pub last_mod_app: String,
}

#[derive(Clone, PartialEq, Message)]
pub struct LabelIndices {
    #[prost(message, repeated, tag = "1")]
    pub indices: Vec<LabelIndex>,
}

/// Supervoxels `original` now belong to body `mapped`.
#[derive(Clone, PartialEq, Message)]
pub struct MappingOp {
    #[prost(uint64, tag = "1")]
    pub mutid: u64,
    #[prost(uint64, tag = "2")]
    pub mapped: u64,
    #[prost(uint64, repeated, tag = "3")]
    pub original: Vec<u64>,
}

#[derive(Clone, PartialEq, Message)]
pub struct MappingOps {
    #[prost(message, repeated, tag = "1")]
    pub mappings: Vec<MappingOp>,
}

impl LabelIndex {
    /// Decodes a stored or posted index.
    pub fn decode_bytes(bytes: &[u8]) -> Result<Self> {
        Self::decode(bytes)
            .map_err(|e| StoreError::BadRequest(format!("not a DVID LabelIndex protobuf: {e}")))
    }

    /// Voxels of the body, or of one of its supervoxels.
    pub fn voxels(&self, only: Option<u64>) -> u64 {
        self.blocks
            .values()
            .flat_map(|c| c.counts.iter())
            .filter(|(sv, _)| only.is_none_or(|o| o == **sv))
            .map(|(_, &n)| u64::from(n))
            .sum()
    }

    /// The body's supervoxels, sorted.
    pub fn supervoxels(&self) -> Vec<u64> {
        let mut svs: Vec<u64> = self
            .blocks
            .values()
            .flat_map(|c| c.counts.keys().copied())
            .collect();
        svs.sort_unstable();
        svs.dedup();
        svs
    }

    /// The blocks holding the body, or one of its supervoxels, sorted z, y, x.
    pub fn block_coords(&self, only: Option<u64>) -> Vec<Point> {
        let mut blocks: Vec<Point> = self
            .blocks
            .iter()
            .filter(|(_, c)| only.is_none_or(|o| c.counts.contains_key(&o)))
            .map(|(&k, _)| decode_block(k))
            .collect();
        blocks.sort_unstable_by_key(|b| [b[2], b[1], b[0]]);
        blocks
    }
}

/// DVID's `EncodeBlockIndex`: 21 bits per axis, z highest, each a sign bit (bit 20) over a 20-bit
/// magnitude (sign-magnitude, not two's complement).
pub fn encode_block(b: Point) -> u64 {
    let mut acc = 0u64;
    for (i, v) in [b[2], b[1], b[0]].into_iter().enumerate() {
        let mut field = u64::from(v.unsigned_abs()) & 0xF_FFFF;
        if v < 0 {
            field |= 0x10_0000;
        }
        acc |= field << (21 * (2 - i));
    }
    acc
}

/// Inverse of [`encode_block`].
pub fn decode_block(code: u64) -> Point {
    let axis = |shift: u32| {
        let field = (code >> shift) & 0x1F_FFFF;
        let magnitude = (field & 0xF_FFFF) as i32;
        if field & 0x10_0000 != 0 {
            -magnitude
        } else {
            magnitude
        }
    };
    [axis(0), axis(21), axis(42)]
}

/// Largest block coordinate magnitude the block index holds.
pub const MAX_BLOCK_COORD: i32 = 0xF_FFFF;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_index_matches_dvid() {
        // (1, 2, 3): z=3 in the top field, y=2 in the middle, x=1 at the bottom.
        assert_eq!(encode_block([1, 2, 3]), (3 << 42) | (2 << 21) | 1);
        // Negative x sets bit 20 over the magnitude.
        assert_eq!(encode_block([-1, 0, 0]), 0x10_0000 | 1);
        for b in [
            [0, 0, 0],
            [-5, 7, -9],
            [MAX_BLOCK_COORD, -MAX_BLOCK_COORD, 3],
        ] {
            assert_eq!(decode_block(encode_block(b)), b);
        }
    }

    #[test]
    fn label_index_golden_bytes() {
        let mut idx = LabelIndex {
            label: 7,
            last_mutid: 2,
            ..Default::default()
        };
        idx.blocks.insert(
            encode_block([1, 0, 0]),
            SvCount {
                counts: BTreeMap::from([(5, 10)]),
                surface_mutid: 0,
            },
        );
        // blocks {1: {counts {5: 10}}}, label 7, last_mutid 2, as protoc writes it.
        let expected = [
            0x0a, 0x0a, // field 1 (blocks), a 10-byte map entry
            0x08, 0x01, // key 1
            0x12, 0x06, // value: a 6-byte SVCount
            0x0a, 0x04, 0x08, 0x05, 0x10, 0x0a, // counts {5: 10}
            0x10, 0x07, // label 7
            0x18, 0x02, // last_mutid 2
        ];
        assert_eq!(idx.encode_to_vec(), expected);
        assert_eq!(LabelIndex::decode_bytes(&expected).unwrap(), idx);
        assert!(LabelIndex::decode_bytes(&[0x0a, 0x09]).is_err());
    }
}
