//! Volumes in and out of a real `dvid` process (release build, fjall, loopback): an N³ grayscale
//! (N = 1024: 1 GiB) with 64³ blocks is exported with `dvid export` to a Zarr v3 array (64³
//! chunks, zstd) and to a multi-page TIFF, and those are imported with `dvid import` into a new
//! instance. Each is timed beside its limit, measured in the same run in-process on every core:
//! - import: the slower of reading and decoding the source alone (the importer's own readers,
//!   zarrs and tiff) and compressing and storing the same blocks alone (lz4 and the engine's
//!   bulk object write on a fresh data dir);
//! - export: the slower of reading the version's slabs from the store alone (a copy of the data
//!   dir) and writing the format alone from memory (the exporter's own writers).
//!
//! The goal is at least 0.7 of the limit. Then the Zarr view's chunks (`…/zarr/c/z/y/x`) against
//! `raw` of the same 64³ blocks over HTTP, 8 clients. Run: `cargo bench -p dvid-tests --bench
//! volumes` (`-- --quick` for N = 512).

use dvid_node::transfer::{self, Box3, Dtype, Format, Layout};
use dvid_store::{Codec, ObjectId, Store, Subvolume};
use dvid_tests::{Node, json};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const BLOCK: usize = 64;
const CLIENTS: usize = 8;

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let n: usize = if quick { 512 } else { 1024 };
    let bytes = (n * n * n) as f64;
    let mb = |secs: f64| bytes / 1e6 / secs;
    println!(
        "Volume import/export benchmark: {n}^3 uint8 ({:.0} MiB), {BLOCK}^3 blocks{}",
        bytes / (1 << 20) as f64,
        if quick { " [quick]" } else { "" }
    );
    let dir = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    let node = Node::start(dir.path(), &[]);
    let root = node.new_repo("volumes");
    node.new_instance(&root, "uint8blk", "em", json!({"BlockSize": "64,64,64"}));
    for z0 in (0..n).step_by(BLOCK) {
        let path = format!("/api/node/{root}/em/raw/0_1_2/{n}_{n}_{BLOCK}/0_0_{z0}");
        node.post_bytes(&path, dvid_tests::em_slab(n, z0, BLOCK));
    }
    node.commit(&root);
    let target = node.new_repo("imported");

    // The limits read a copy of the node's data dir and the exports from disk.
    assert!(node.stop(), "node stopped cleanly");
    let copy = tempfile::tempdir().unwrap();
    dvid_tests::copy_dir(dir.path(), copy.path());
    let node = Node::start(dir.path(), &[]);
    let layout = Layout {
        shape: [n as u64; 3],
        dtype: Dtype::U8,
        chunk: [BLOCK as u64; 3],
        voxel_size: [8.0; 3],
        voxel_unit: "nanometers".into(),
        origin: [0; 3],
    };
    let read_store = read_store_limit(copy.path(), &root, n);
    println!(
        "  limit, reading the version's slabs from the store: {:.0} MB/s",
        mb(read_store)
    );

    let mut peak_cli = 0u64;
    for (format, name) in [(Format::Zarr, "em.zarr"), (Format::Tiff, "em.tif")] {
        let dest = work.path().join(name);
        let t = Instant::now();
        let (ok, err, rss) = cli_measured(
            &node,
            &[
                "export",
                dest.to_str().unwrap(),
                "--version",
                &root,
                "--instance",
                "em",
                "--format",
                &format!("{format:?}").to_lowercase(),
            ],
        );
        assert!(ok, "export failed: {err}");
        let export = t.elapsed().as_secs_f64();
        peak_cli = peak_cli.max(rss);
        let write = write_limit(
            &work.path().join(format!("limit-{name}")),
            format,
            &layout,
            n,
        );
        let limit = read_store.max(write);
        println!(
            "  export to {format:?}: {:.0} MB/s; writing it alone {:.0} MB/s; ratio to the slower limit {:.2}",
            mb(export),
            mb(write),
            limit / export
        );

        let read = read_source_limit(&dest, format, n);
        let store = store_limit(&work.path().join(format!("store-{name}")), n);
        let limit = read.max(store);
        let instance = format!("from_{}", format!("{format:?}").to_lowercase());
        let t = Instant::now();
        let (ok, err, rss) = cli_measured(
            &node,
            &[
                "import",
                dest.to_str().unwrap(),
                "--version",
                &target,
                "--instance",
                &instance,
            ],
        );
        assert!(ok, "import failed: {err}");
        let import = t.elapsed().as_secs_f64();
        peak_cli = peak_cli.max(rss);
        println!(
            "  import from {format:?}: {:.0} MB/s; reading and decoding it alone {:.0} MB/s, storing the blocks alone {:.0} MB/s; ratio to the slower {:.2}",
            mb(import),
            mb(read),
            mb(store),
            limit / import
        );
        let a = node.get_bytes(&format!(
            "/api/node/{root}/em/raw/0_1_2/{n}_{n}_8/0_0_{}",
            n / 2
        ));
        let b = node.get_bytes(&format!(
            "/api/node/{target}/{instance}/raw/0_1_2/{n}_{n}_8/0_0_{}",
            n / 2
        ));
        assert!(a == b, "the import differs from the version it came from");
    }

    let per_axis = n / BLOCK;
    let blocks: Vec<[usize; 3]> = (0..per_axis.pow(3))
        .map(|i| {
            [
                i % per_axis,
                i / per_axis % per_axis,
                i / per_axis / per_axis,
            ]
        })
        .collect();
    // Memory stays bounded by rows of blocks, not the volume: the largest resident set of the
    // import and export commands, and of the node that served them (restarted after the ingest).
    println!(
        "  peak memory: dvid import/export {:.0} MiB, the node {:.0} MiB, for a {:.0} MiB volume",
        peak_cli as f64 / 1024.0,
        peak_rss_kib(node.pid()) as f64 / 1024.0,
        bytes / (1 << 20) as f64
    );
    let zarr = fetch_all(&node, &blocks, |[x, y, z]| {
        format!("/api/node/{root}/em/zarr/c/{z}/{y}/{x}")
    });
    let raw = fetch_all(&node, &blocks, |[x, y, z]| {
        let o = |a: usize| a * BLOCK;
        format!(
            "/api/node/{root}/em/raw/0_1_2/{BLOCK}_{BLOCK}_{BLOCK}/{}_{}_{}",
            o(x),
            o(y),
            o(z)
        )
    });
    println!(
        "  Zarr view: {:.0} chunks/s, raw of the same blocks: {:.0} chunks/s; ratio {:.2}",
        zarr,
        raw,
        zarr / raw
    );
    assert!(node.stop());
}

/// Seconds to read every slab of the version from a copy of the store, slabs on every core.
fn read_store_limit(dir: &Path, root: &str, n: usize) -> f64 {
    let store = Store::open_fjall(dir).unwrap();
    let h = store.handle(root, "em").unwrap();
    let next = AtomicUsize::new(0);
    let t = Instant::now();
    on_every_core(|| {
        loop {
            let z = next.fetch_add(1, Ordering::Relaxed) * BLOCK;
            if z >= n {
                return;
            }
            let sub = Subvolume::new([0, 0, z as i32], [n as u32, n as u32, BLOCK as u32]).unwrap();
            std::hint::black_box(store.read_subvolume(&h, sub).unwrap());
        }
    });
    t.elapsed().as_secs_f64()
}

/// Seconds to write the volume from memory in `format` with the exporter's own writer.
fn write_limit(dest: &Path, format: Format, layout: &Layout, n: usize) -> f64 {
    let slabs: Vec<Vec<u8>> = (0..n)
        .step_by(BLOCK)
        .map(|z| dvid_tests::em_slab(n, z, BLOCK))
        .collect();
    let t = Instant::now();
    let mut sink = transfer::create_sink(dest, format, layout, json!({})).unwrap();
    for (k, slab) in slabs.iter().enumerate() {
        sink.write_slab((k * BLOCK) as u64, BLOCK as u64, slab)
            .unwrap();
    }
    sink.finish().unwrap();
    t.elapsed().as_secs_f64()
}

/// Seconds to read and decode the whole source in rows of blocks (as the importer reads it), on
/// every core.
fn read_source_limit(path: &Path, format: Format, n: usize) -> f64 {
    let source = transfer::open_source(path, format, 0).unwrap();
    let rows = (n / BLOCK) * (n / BLOCK);
    let next = AtomicUsize::new(0);
    let t = Instant::now();
    on_every_core(|| {
        loop {
            let i = next.fetch_add(1, Ordering::Relaxed);
            if i >= rows {
                return;
            }
            let (y, z) = ((i % (n / BLOCK)) * BLOCK, (i / (n / BLOCK)) * BLOCK);
            let b = Box3 {
                offset: [0, y as u64, z as u64],
                size: [n as u64, BLOCK as u64, BLOCK as u64],
            };
            std::hint::black_box(source.read(b).unwrap());
        }
    });
    t.elapsed().as_secs_f64()
}

/// Seconds to compress the volume's blocks (lz4, the instance's codec) and store them as
/// objects in a fresh store, 128 blocks (32 MiB) a batch (the engine's bulk path), on every core:
/// the least any write of them costs, with no working entries or extents to keep.
fn store_limit(dir: &Path, n: usize) -> f64 {
    let store = Store::open_fjall(dir).unwrap();
    let per = n / BLOCK;
    // The blocks in memory first: only compressing and storing them is timed.
    let slabs: Vec<Vec<u8>> = (0..n)
        .step_by(BLOCK)
        .map(|z| dvid_tests::em_slab(n, z, BLOCK))
        .collect();
    let mut blocks = Vec::with_capacity(per * per * per);
    for slab in &slabs {
        for by in 0..per {
            for bx in 0..per {
                let mut block = Vec::with_capacity(BLOCK.pow(3));
                for z in 0..BLOCK {
                    for y in 0..BLOCK {
                        let at = (z * n + by * BLOCK + y) * n + bx * BLOCK;
                        block.extend_from_slice(&slab[at..at + BLOCK]);
                    }
                }
                blocks.push(block);
            }
        }
    }
    let batches: Vec<&[Vec<u8>]> = blocks.chunks(128).collect();
    let next = AtomicUsize::new(0);
    let t = Instant::now();
    on_every_core(|| {
        loop {
            let Some(batch) = batches.get(next.fetch_add(1, Ordering::Relaxed)) else {
                return;
            };
            let objects: Vec<(ObjectId, Vec<u8>)> = batch
                .iter()
                .map(|b| {
                    let payload = Codec::Lz4.encode(b, [BLOCK as i32; 3]);
                    (ObjectId::of(&payload), payload)
                })
                .collect();
            store.objects().put_objects(&objects).unwrap();
        }
    });
    store.flush().unwrap();
    t.elapsed().as_secs_f64()
}

/// Runs a `dvid` client command against the node; returns whether it succeeded, its stderr and
/// its peak resident set in KiB. The peak is read from /proc while it runs: a child's own
/// rusage would also count this process's memory, which a spawned child shares until it execs.
fn cli_measured(node: &Node, args: &[&str]) -> (bool, String, u64) {
    let err = tempfile::NamedTempFile::new().unwrap();
    let mut child = std::process::Command::new(dvid_tests::dvid_bin())
        .args(args)
        .env("DVID_SERVER", &node.url)
        .stdout(std::process::Stdio::null())
        .stderr(err.reopen().unwrap())
        .spawn()
        .unwrap();
    let mut peak = 0;
    let status = loop {
        peak = peak.max(peak_rss_kib(child.id()));
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    (
        status.success(),
        std::fs::read_to_string(err.path()).unwrap(),
        peak,
    )
}

/// A running process's peak resident set, in KiB (VmHWM).
fn peak_rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn on_every_core(job: impl Fn() + Sync) {
    let cores = std::thread::available_parallelism().map_or(2, |c| c.get());
    std::thread::scope(|s| {
        for _ in 0..cores {
            s.spawn(&job);
        }
    });
}

/// Requests per second fetching every block's URL once with CLIENTS clients.
fn fetch_all(node: &Node, blocks: &[[usize; 3]], url: impl Fn([usize; 3]) -> String + Sync) -> f64 {
    let next = AtomicUsize::new(0);
    let t = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..CLIENTS {
            s.spawn(|| {
                let http = reqwest::blocking::Client::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(&b) = blocks.get(i) else {
                        return;
                    };
                    let r = http.get(format!("{}{}", node.url, url(b))).send().unwrap();
                    assert!(r.status().is_success(), "{}", r.status());
                    std::hint::black_box(r.bytes().unwrap());
                }
            });
        }
    });
    blocks.len() as f64 / t.elapsed().as_secs_f64()
}
