//! N5 datasets with the `n5` crate. N5 lists axes fastest first, so its (x, y, z) is a node's;
//! blocks at the upper edges are stored cut to the dataset, and missing blocks read as 0.

use super::{Box3, Dtype, Layout, Sink, Source};
use anyhow::{Context, bail};
use n5::prelude::*;
use n5::{ReadableDataBlock, WriteableDataBlock};
use std::path::Path;

/// The dataset is the container's root: attributes.json beside the block folders.
const ROOT: &str = "";

pub struct N5Source {
    what: String,
    n5: N5Filesystem,
    attrs: DatasetAttributes,
    dtype: Dtype,
}

impl N5Source {
    pub fn open(path: &Path) -> anyhow::Result<Self> {
        let what = format!("N5 dataset {}", path.display());
        let n5 = N5Filesystem::open(path).map_err(|e| {
            let hint = if e.to_string().contains("Version attribute") {
                ": its attributes.json lacks the container's \"n5\" version (as tensorstore writes                  it); add \"n5\": \"2.5.1\" to it"
            } else {
                ""
            };
            anyhow::anyhow!("{what}: {e}{hint}")
        })?;
        let attrs = n5
            .get_dataset_attributes(ROOT)
            .map_err(|e| anyhow::anyhow!("{what}: no dataset attributes: {e}"))?;
        if attrs.get_ndim() != 3 {
            bail!("{what} has {} axes: expected 3 (x, y, z)", attrs.get_ndim());
        }
        let dtype = match attrs.get_data_type() {
            DataType::UINT8 => Dtype::U8,
            DataType::UINT32 => Dtype::U32,
            DataType::UINT64 => Dtype::U64,
            other => Dtype::parse(&format!("{other:?}").to_lowercase(), &what)?,
        };
        Ok(Self {
            what,
            n5,
            attrs,
            dtype,
        })
    }

    fn read_typed<T>(&self, b: Box3) -> anyhow::Result<Vec<u8>>
    where
        T: ReflectedType + bytemuck::Pod,
        VecDataBlock<T>: DataBlock<T> + ReadableDataBlock,
    {
        let bs: [u64; 3] = std::array::from_fn(|a| u64::from(self.attrs.get_block_size()[a]));
        let vb = std::mem::size_of::<T>();
        let mut out = vec![0u8; b.voxels() as usize * vb];
        let (first, last): ([u64; 3], [u64; 3]) = (
            std::array::from_fn(|a| b.offset[a] / bs[a]),
            std::array::from_fn(|a| (b.end()[a] - 1) / bs[a]),
        );
        for gz in first[2]..=last[2] {
            for gy in first[1]..=last[1] {
                for gx in first[0]..=last[0] {
                    let grid = [gx, gy, gz];
                    let Some(block) = self
                        .n5
                        .read_block::<T>(ROOT, &self.attrs, GridCoord::from_slice(&grid))
                        .map_err(|e| anyhow::anyhow!("{}: block {grid:?}: {e}", self.what))?
                    else {
                        continue;
                    };
                    let size: [u64; 3] = std::array::from_fn(|a| u64::from(block.get_size()[a]));
                    let data: &[u8] = bytemuck::cast_slice(block.get_data());
                    if data.len() as u64 != size.iter().product::<u64>() * vb as u64 {
                        bail!(
                            "{}: block {grid:?} holds {} bytes for size {size:?}",
                            self.what,
                            data.len()
                        );
                    }
                    let origin: [u64; 3] = std::array::from_fn(|a| grid[a] * bs[a]);
                    let lo: [u64; 3] = std::array::from_fn(|a| origin[a].max(b.offset[a]));
                    let hi: [u64; 3] =
                        std::array::from_fn(|a| (origin[a] + size[a]).min(b.end()[a]));
                    if (0..3).any(|a| lo[a] >= hi[a]) {
                        continue;
                    }
                    let row = (hi[0] - lo[0]) as usize * vb;
                    for z in lo[2]..hi[2] {
                        for y in lo[1]..hi[1] {
                            let from = ((((z - origin[2]) * size[1] + (y - origin[1])) * size[0]
                                + (lo[0] - origin[0]))
                                as usize)
                                * vb;
                            let to = ((((z - b.offset[2]) * b.size[1] + (y - b.offset[1]))
                                * b.size[0]
                                + (lo[0] - b.offset[0]))
                                as usize)
                                * vb;
                            out[to..to + row].copy_from_slice(&data[from..from + row]);
                        }
                    }
                }
            }
        }
        Ok(out)
    }
}

impl Source for N5Source {
    fn describe(&self) -> String {
        self.what.clone()
    }

    fn shape(&self) -> [u64; 3] {
        let d = self.attrs.get_dimensions();
        [d[0], d[1], d[2]]
    }

    fn dtype(&self) -> Dtype {
        self.dtype
    }

    fn chunk(&self) -> Option<[u64; 3]> {
        let b = self.attrs.get_block_size();
        Some([b[0], b[1], b[2]].map(u64::from))
    }

    fn read(&self, b: Box3) -> anyhow::Result<Vec<u8>> {
        match self.dtype {
            Dtype::U8 => self.read_typed::<u8>(b),
            Dtype::U32 => self.read_typed::<u32>(b),
            Dtype::U64 => self.read_typed::<u64>(b),
        }
    }
}

pub struct N5Sink {
    n5: N5Filesystem,
    attrs: DatasetAttributes,
    layout: Layout,
}

pub fn create(path: &Path, layout: &Layout) -> anyhow::Result<Box<dyn Sink>> {
    std::fs::create_dir_all(path).with_context(|| format!("{}", path.display()))?;
    let n5 = N5Filesystem::open_or_create(path)
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    let dtype = match layout.dtype {
        Dtype::U8 => DataType::UINT8,
        Dtype::U32 => DataType::UINT32,
        Dtype::U64 => DataType::UINT64,
    };
    let attrs = DatasetAttributes::new(
        GridCoord::from_slice(&layout.shape),
        BlockCoord::from_slice(&layout.chunk.map(|c| c as u32)),
        dtype,
        n5::compression::CompressionType::Gzip(Default::default()),
    );
    n5.create_dataset(ROOT, &attrs)?;
    Ok(Box::new(N5Sink {
        n5,
        attrs,
        layout: layout.clone(),
    }))
}

impl N5Sink {
    fn write_typed<T>(&self, z: u64, depth: u64, data: &[u8]) -> anyhow::Result<()>
    where
        T: ReflectedType + bytemuck::Pod,
        VecDataBlock<T>: DataBlock<T> + WriteableDataBlock,
    {
        let [sx, sy, _] = self.layout.shape;
        let bs = self.layout.chunk;
        let vb = std::mem::size_of::<T>();
        let gz = z / bs[2];
        for gy in 0..sy.div_ceil(bs[1]) {
            for gx in 0..sx.div_ceil(bs[0]) {
                let lo = [gx * bs[0], gy * bs[1]];
                let size = [bs[0].min(sx - lo[0]), bs[1].min(sy - lo[1]), depth];
                let mut bytes = Vec::with_capacity(size.iter().product::<u64>() as usize * vb);
                for k in 0..depth {
                    for y in lo[1]..lo[1] + size[1] {
                        let at = (((k * sy + y) * sx + lo[0]) as usize) * vb;
                        bytes.extend_from_slice(&data[at..at + size[0] as usize * vb]);
                    }
                }
                let block = VecDataBlock::<T>::new(
                    BlockCoord::from_slice(&size.map(|s| s as u32)),
                    GridCoord::from_slice(&[gx, gy, gz]),
                    bytemuck::pod_collect_to_vec(&bytes),
                );
                self.n5.write_block(ROOT, &self.attrs, &block)?;
            }
        }
        Ok(())
    }
}

impl Sink for N5Sink {
    fn write_slab(&mut self, z: u64, depth: u64, data: &[u8]) -> anyhow::Result<()> {
        anyhow::ensure!(
            z.is_multiple_of(self.layout.chunk[2])
                && (depth == self.layout.chunk[2] || z + depth == self.layout.shape[2]),
            "N5 slabs are whole blocks deep"
        );
        match self.layout.dtype {
            Dtype::U8 => self.write_typed::<u8>(z, depth, data),
            Dtype::U32 => self.write_typed::<u32>(z, depth, data),
            Dtype::U64 => self.write_typed::<u64>(z, depth, data),
        }
    }

    fn finish(self: Box<Self>) -> anyhow::Result<()> {
        Ok(())
    }
}
