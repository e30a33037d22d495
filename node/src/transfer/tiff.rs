//! TIFF stacks with the `tiff` crate: a folder of 2-D slices (in name order) or one multi-page
//! file (page k is z = k) for import, one multi-page file (BigTIFF past 4 GB) for export.
//! Every page is checked before anything is staged: the same size and type, and its strips or
//! tiles inside the file (a truncated file is refused up front).

use super::{Box3, Dtype, Layout, Sink, Source};
use anyhow::{Context, bail};
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufReader, BufWriter};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use tiff::decoder::{Decoder, DecodingResult, Limits};
use tiff::encoder::{TiffEncoder, colortype};
use tiff::tags::Tag;

type Reader = Decoder<BufReader<File>>;
/// A page decoded at most once by whichever worker needs it first.
type PageSlot = Arc<Mutex<Option<Arc<Vec<u8>>>>>;

/// Whether a folder holds `.tif`/`.tiff` slices.
pub fn is_slice_folder(dir: &Path) -> bool {
    slices(dir).is_ok_and(|s| !s.is_empty())
}

fn slices(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("{}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| matches!(e.to_ascii_lowercase().as_str(), "tif" | "tiff"))
        })
        .collect();
    files.sort();
    Ok(files)
}

fn decoder(path: &Path) -> anyhow::Result<Reader> {
    let file = File::open(path).with_context(|| format!("{}", path.display()))?;
    Ok(Decoder::new(BufReader::new(file))
        .map_err(|e| anyhow::anyhow!("{}: not a TIFF file: {e}", path.display()))?
        .with_limits(Limits::unlimited()))
}

/// The current page's size and voxel type, after checking its data lies inside the file.
fn page_info(d: &mut Reader, what: &str, file_len: u64) -> anyhow::Result<((u32, u32), Dtype)> {
    let fail = |e: tiff::TiffError| anyhow::anyhow!("{what}: {e}");
    let dims = d.dimensions().map_err(fail)?;
    let dtype = match d.colortype().map_err(fail)? {
        tiff::ColorType::Gray(8) => Dtype::U8,
        tiff::ColorType::Gray(32) => Dtype::U32,
        tiff::ColorType::Gray(64) => Dtype::U64,
        other => bail!(
            "{what}: {other:?} pixels; a node imports 8-bit grayscale and 32- or 64-bit labels"
        ),
    };
    // SampleFormat 1 is unsigned integers (the default); 2 signed, 3 floating point.
    let format: Option<u16> = d.find_tag_unsigned(Tag::SampleFormat).map_err(fail)?;
    if format.is_some_and(|f| f != 1) {
        bail!("{what}: its samples are signed or floating point, not unsigned integers");
    }
    let (offsets, counts) = match d
        .find_tag_unsigned_vec::<u64>(Tag::StripOffsets)
        .map_err(fail)?
    {
        Some(o) => (
            o,
            d.find_tag_unsigned_vec::<u64>(Tag::StripByteCounts)
                .map_err(fail)?,
        ),
        None => (
            d.find_tag_unsigned_vec::<u64>(Tag::TileOffsets)
                .map_err(fail)?
                .unwrap_or_default(),
            d.find_tag_unsigned_vec::<u64>(Tag::TileByteCounts)
                .map_err(fail)?,
        ),
    };
    let end = offsets
        .iter()
        .zip(counts.unwrap_or_default())
        .map(|(o, c)| o + c)
        .max()
        .unwrap_or(0);
    if end > file_len {
        bail!("{what} is truncated: its pixels end at byte {end}, the file has {file_len} bytes");
    }
    Ok((dims, dtype))
}

enum Pages {
    /// One file per slice.
    Files(Vec<PathBuf>),
    /// One multi-page file, decoded under a lock (the decoder remembers where pages start).
    Stack(Box<Mutex<Reader>>),
}

pub struct TiffSource {
    what: String,
    pages: Pages,
    shape: [u64; 3],
    dtype: Dtype,
    /// Decoded pages of the slabs being read, by z.
    cache: Mutex<BTreeMap<u64, PageSlot>>,
}

impl TiffSource {
    pub fn open(path: &Path) -> anyhow::Result<Self> {
        let (what, pages, infos) = if path.is_dir() {
            let files = slices(path)?;
            if files.is_empty() {
                bail!("{}: no .tif slices in the folder", path.display());
            }
            let mut infos = Vec::with_capacity(files.len());
            for f in &files {
                let len = std::fs::metadata(f)?.len();
                infos.push(page_info(&mut decoder(f)?, &f.display().to_string(), len)?);
            }
            (
                format!("TIFF slices {}", path.display()),
                Pages::Files(files),
                infos,
            )
        } else {
            let len = std::fs::metadata(path)
                .with_context(|| format!("{}", path.display()))?
                .len();
            let mut d = decoder(path)?;
            let mut infos = Vec::new();
            loop {
                let page = format!("{} page {}", path.display(), infos.len());
                infos.push(page_info(&mut d, &page, len)?);
                if !d.more_images() {
                    break;
                }
                d.next_image().map_err(|e| {
                    anyhow::anyhow!(
                        "{page}: cannot read the next page ({e}): the file may be truncated"
                    )
                })?;
            }
            (
                format!("TIFF stack {}", path.display()),
                Pages::Stack(Box::new(Mutex::new(d))),
                infos,
            )
        };
        let (dims, dtype) = infos[0];
        if let Some(k) = infos.iter().position(|i| *i != (dims, dtype)) {
            bail!(
                "{what}: slice {k} is {:?} {}, slice 0 is {dims:?} {}: every slice must match",
                infos[k].0,
                infos[k].1.name(),
                dtype.name()
            );
        }
        Ok(Self {
            what,
            pages,
            shape: [u64::from(dims.0), u64::from(dims.1), infos.len() as u64],
            dtype,
            cache: Mutex::new(BTreeMap::new()),
        })
    }

    fn decode(&self, z: u64) -> anyhow::Result<Vec<u8>> {
        let result = match &self.pages {
            Pages::Files(files) => {
                let f = &files[z as usize];
                decoder(f)?
                    .read_image()
                    .map_err(|e| anyhow::anyhow!("{}: {e}", f.display()))?
            }
            Pages::Stack(d) => {
                let mut d = d.lock().expect("tiff decoder");
                d.seek_to_image(z as usize)
                    .and_then(|()| d.read_image())
                    .map_err(|e| anyhow::anyhow!("{} page {z}: {e}", self.what))?
            }
        };
        Ok(match result {
            DecodingResult::U8(v) => v,
            DecodingResult::U32(v) => bytemuck::cast_slice(&v).to_vec(),
            DecodingResult::U64(v) => bytemuck::cast_slice(&v).to_vec(),
            _ => bail!("{} page {z}: not unsigned integer pixels", self.what),
        })
    }

    /// Page `z`, decoded once while the slabs around it are read.
    fn page(&self, z: u64, keep: u64) -> anyhow::Result<Arc<Vec<u8>>> {
        let slot = {
            let mut cache = self.cache.lock().expect("tiff cache");
            let slot = cache.entry(z).or_default().clone();
            while cache.len() as u64 > keep {
                cache.pop_first();
            }
            slot
        };
        let mut slot = slot.lock().expect("tiff page");
        if let Some(p) = slot.as_ref() {
            return Ok(p.clone());
        }
        let page = Arc::new(self.decode(z)?);
        let want = (self.shape[0] * self.shape[1]) as usize * self.dtype.bytes();
        if page.len() != want {
            bail!(
                "{} page {z}: decoded {} bytes, expected {want}",
                self.what,
                page.len()
            );
        }
        *slot = Some(page.clone());
        Ok(page)
    }
}

impl Source for TiffSource {
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
        let vb = self.dtype.bytes();
        let row = b.size[0] as usize * vb;
        let mut out = Vec::with_capacity(b.voxels() as usize * vb);
        // Keep two slabs' pages: workers read the bricks of one slab, then the next.
        let keep = 2 * b.size[2].max(8);
        for z in b.offset[2]..b.end()[2] {
            let page = self.page(z, keep)?;
            for y in b.offset[1]..b.end()[1] {
                let at = ((y * self.shape[0] + b.offset[0]) as usize) * vb;
                out.extend_from_slice(&page[at..at + row]);
            }
        }
        Ok(out)
    }
}

/// BigTIFF once the voxels pass this: classic TIFF offsets are 32 bits.
const BIG_TIFF_BYTES: u64 = 3 << 30;

/// The output file, shared with the encoder (which never hands its writer back), so the sink
/// can flush it and see the errors a dropped buffer would hide.
#[derive(Clone)]
struct Output(Arc<Mutex<BufWriter<File>>>);

impl std::io::Write for Output {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("tiff output").write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.0.lock().expect("tiff output").flush()
    }
}

impl std::io::Seek for Output {
    fn seek(&mut self, pos: std::io::SeekFrom) -> std::io::Result<u64> {
        self.0.lock().expect("tiff output").seek(pos)
    }
}

enum Encoder {
    Classic(TiffEncoder<Output>),
    Big(TiffEncoder<Output, tiff::encoder::TiffKindBig>),
}

pub struct TiffSink {
    encoder: Encoder,
    output: Output,
    layout: Layout,
}

pub fn create(path: &Path, layout: &Layout) -> anyhow::Result<Box<dyn Sink>> {
    let output = Output(Arc::new(Mutex::new(BufWriter::with_capacity(
        1 << 20,
        File::create(path).with_context(|| format!("{}", path.display()))?,
    ))));
    let file = output.clone();
    let bytes = layout.shape.iter().product::<u64>() * layout.dtype.bytes() as u64;
    let encoder = if bytes > BIG_TIFF_BYTES {
        Encoder::Big(TiffEncoder::new_big(file)?)
    } else {
        Encoder::Classic(TiffEncoder::new(file)?)
    };
    Ok(Box::new(TiffSink {
        encoder,
        output,
        layout: layout.clone(),
    }))
}

macro_rules! write_page {
    ($enc:expr, $dtype:expr, $w:expr, $h:expr, $page:expr) => {
        match $dtype {
            Dtype::U8 => $enc.write_image::<colortype::Gray8>($w, $h, $page),
            Dtype::U32 => $enc.write_image::<colortype::Gray32>(
                $w,
                $h,
                &bytemuck::pod_collect_to_vec::<u8, u32>($page),
            ),
            Dtype::U64 => $enc.write_image::<colortype::Gray64>(
                $w,
                $h,
                &bytemuck::pod_collect_to_vec::<u8, u64>($page),
            ),
        }
    };
}

impl Sink for TiffSink {
    fn write_slab(&mut self, _z: u64, depth: u64, data: &[u8]) -> anyhow::Result<()> {
        let [w, h, _] = self.layout.shape;
        let page = (w * h) as usize * self.layout.dtype.bytes();
        for k in 0..depth as usize {
            let p = &data[k * page..(k + 1) * page];
            let (w, h) = (w as u32, h as u32);
            match &mut self.encoder {
                Encoder::Classic(e) => write_page!(e, self.layout.dtype, w, h, p)?,
                Encoder::Big(e) => write_page!(e, self.layout.dtype, w, h, p)?,
            }
        }
        Ok(())
    }

    fn finish(self: Box<Self>) -> anyhow::Result<()> {
        drop(self.encoder);
        let mut out = self.output.0.lock().expect("tiff output");
        std::io::Write::flush(&mut *out)?;
        out.get_ref().sync_all()?;
        Ok(())
    }
}
