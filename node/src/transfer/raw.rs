//! Raw volumes: little-endian voxels, x fastest, from a byte offset of a file (0 for raw files,
//! past the header for `.npy`). Read by rows with positioned reads, so any box costs its bytes.

use super::{Box3, Dtype, Sink, Source};
use anyhow::{Context, bail};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;

pub struct RawSource {
    what: String,
    file: File,
    start: u64,
    shape: [u64; 3],
    dtype: Dtype,
}

impl RawSource {
    pub fn open(path: &Path, shape: [u64; 3], dtype: Dtype) -> anyhow::Result<Self> {
        Self::at(
            format!("raw volume {}", path.display()),
            path,
            0,
            shape,
            dtype,
        )
    }

    /// Voxels from byte `start` of the file; refuses a file too short to hold them all.
    pub fn at(
        what: String,
        path: &Path,
        start: u64,
        shape: [u64; 3],
        dtype: Dtype,
    ) -> anyhow::Result<Self> {
        let file = File::open(path).with_context(|| format!("{}", path.display()))?;
        let len = file.metadata()?.len();
        let need = shape.iter().product::<u64>() * dtype.bytes() as u64;
        if len < start + need {
            bail!(
                "{what} is truncated: shape {shape:?} of {} needs {need} bytes of voxels, the file holds {}",
                dtype.name(),
                len.saturating_sub(start)
            );
        }
        if len > start + need {
            bail!(
                "{what} holds {} bytes of voxels, more than shape {shape:?} of {} needs ({need}): check --shape and --dtype",
                len - start,
                dtype.name()
            );
        }
        Ok(Self {
            what,
            file,
            start,
            shape,
            dtype,
        })
    }
}

impl Source for RawSource {
    fn describe(&self) -> String {
        self.what.clone()
    }

    fn shape(&self) -> [u64; 3] {
        self.shape
    }

    fn dtype(&self) -> Dtype {
        self.dtype
    }

    fn read(&self, b: Box3) -> anyhow::Result<Vec<u8>> {
        let vb = self.dtype.bytes() as u64;
        let [sx, sy, _] = self.shape;
        let row = (b.size[0] * vb) as usize;
        let mut out = vec![0u8; b.voxels() as usize * vb as usize];
        let mut at = 0;
        for z in b.offset[2]..b.end()[2] {
            for y in b.offset[1]..b.end()[1] {
                let pos = self.start + ((z * sy + y) * sx + b.offset[0]) * vb;
                self.file
                    .read_exact_at(&mut out[at..at + row], pos)
                    .with_context(|| format!("{}: reading at byte {pos}", self.what))?;
                at += row;
            }
        }
        Ok(out)
    }
}

/// Writes slabs as they come, one after another: a raw file, or the data of a `.npy`.
pub struct RawSink {
    out: BufWriter<File>,
    next_z: u64,
}

impl RawSink {
    /// Appends to `file` (positioned after any header).
    pub fn new(file: File) -> Self {
        Self {
            out: BufWriter::with_capacity(1 << 20, file),
            next_z: 0,
        }
    }
}

impl Sink for RawSink {
    fn write_slab(&mut self, z: u64, depth: u64, data: &[u8]) -> anyhow::Result<()> {
        anyhow::ensure!(z == self.next_z, "slabs of a raw file come in z order");
        self.out.write_all(data)?;
        self.next_z = z + depth;
        Ok(())
    }

    fn finish(self: Box<Self>) -> anyhow::Result<()> {
        self.out
            .into_inner()
            .map_err(|e| e.into_error())?
            .sync_all()?;
        Ok(())
    }
}
