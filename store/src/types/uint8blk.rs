//! uint8blk: 8-bit grayscale voxels in blocks, DVID's image type.

use super::VoxelType;

pub static UINT8BLK: VoxelType = VoxelType {
    name: "uint8blk",
    voxel_bytes: 1,
    default_block_size: [32, 32, 32],
    downsample: super::Downsample::Mean,
    indexed: false,
};
