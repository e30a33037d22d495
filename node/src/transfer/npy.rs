//! NumPy `.npy` arrays of shape (z, y, x), C order: the header by `npyz`, the voxels read and
//! written as raw bytes after it.

use super::raw::{RawSink, RawSource};
use super::{Box3, Dtype, Layout, Sink, Source};
use anyhow::{Context, bail};
use npyz::WriterBuilder;
use std::io::Seek;
use std::path::Path;

pub struct NpySource(RawSource);

impl NpySource {
    pub fn open(path: &Path) -> anyhow::Result<Self> {
        let what = format!("NumPy array {}", path.display());
        let mut file = std::fs::File::open(path).with_context(|| format!("{}", path.display()))?;
        let header = npyz::NpyHeader::from_reader(&mut file)
            .map_err(|e| anyhow::anyhow!("{what}: not a .npy file: {e}"))?;
        let start = file.stream_position()?;
        let npy = npyz::NpyFile::with_header(header, file);
        if npy.order() != npyz::Order::C {
            bail!("{what} is in Fortran order: save it in C order (numpy.ascontiguousarray)");
        }
        let shape = npy.shape().to_vec();
        if shape.len() != 3 {
            bail!("{what} has shape {shape:?}: expected 3 axes (z, y, x)");
        }
        let dtype = match npy.dtype() {
            npyz::DType::Plain(t) => {
                let code = t.to_string();
                if code.starts_with('>') && !code.ends_with('1') {
                    bail!("{what} is big-endian ({code}): save it little-endian");
                }
                Dtype::parse(&numpy_name(&code), &what)?
            }
            other => bail!("{what} holds records ({other:?}), not voxels"),
        };
        Ok(Self(RawSource::at(
            what,
            path,
            start,
            [shape[2], shape[1], shape[0]],
            dtype,
        )?))
    }
}

impl Source for NpySource {
    fn describe(&self) -> String {
        self.0.describe()
    }
    fn shape(&self) -> [u64; 3] {
        self.0.shape()
    }
    fn dtype(&self) -> Dtype {
        self.0.dtype()
    }
    fn read(&self, b: Box3) -> anyhow::Result<Vec<u8>> {
        self.0.read(b)
    }
}

/// NumPy's name of a type string: `<f4` is float32, `|u1` uint8.
fn numpy_name(code: &str) -> String {
    let body = code.trim_start_matches(['<', '>', '|', '=']);
    let (kind, size) = body.split_at(1.min(body.len()));
    let bits = size.parse::<u32>().map_or(0, |b| b * 8);
    match kind {
        "u" => format!("uint{bits}"),
        "i" => format!("int{bits}"),
        "f" => format!("float{bits}"),
        "b" => "bool".into(),
        _ => code.to_string(),
    }
}

/// A `.npy` file being written: its header now, its voxels slab by slab.
pub fn create(path: &Path, layout: &Layout) -> anyhow::Result<Box<dyn Sink>> {
    let mut file = std::fs::File::create(path).with_context(|| format!("{}", path.display()))?;
    let [x, y, z] = layout.shape;
    let dtype = match layout.dtype {
        Dtype::U8 => <u8 as npyz::AutoSerialize>::default_dtype(),
        Dtype::U32 => <u32 as npyz::AutoSerialize>::default_dtype(),
        Dtype::U64 => <u64 as npyz::AutoSerialize>::default_dtype(),
    };
    npyz::WriteOptions::new_header_only()
        .dtype(dtype)
        .shape(&[z, y, x])
        .writer(&mut file)
        .write_header_only()?;
    Ok(Box::new(RawSink::new(file)))
}
