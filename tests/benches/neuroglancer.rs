//! Neuroglancer's request pattern against a real `dvid` process (release build, fjall, loopback):
//! a version holding an N³ grayscale (uint8blk) and N³ labels (labelblk) volume, both with DVID's
//! default 32³ blocks, read as 64³ chunks by 32 concurrent clients, every chunk once in a shuffled
//! order: grayscale as `raw/0_1_2/64_64_64/x_y_z/jpeg`, labels as `?compression=googlegzip`
//! (compressed segmentation, gzipped). Beside each, in the same run: the same chunks as plain bytes
//! over HTTP, and the limit: the store reading and decompressing the same blocks in-process on every
//! core (the node stopped, its data dir opened directly). Prints chunks/s, p50/p99 latency, bytes
//! per chunk against raw, and the ratio to the limit (the goal is at least 0.5). Each figure is the
//! best of three passes; each HTTP pass is followed by a limit pass over a copy of the data dir,
//! so a ratio compares figures taken in the same minutes of this shared machine.
//! Run: `cargo bench -p dvid-tests --bench neuroglancer` (N = 1024; `-- --quick` for N = 512;
//! `-- --only googlegzip` for the passes whose name holds that text).

use dvid_store::{Store, Subvolume};
use dvid_tests::load::percentile;
use dvid_tests::{Node, json};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

// The same allocator as the node, so the in-process limit is not slowed by glibc's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const CHUNK: usize = 64;
const CLIENTS: usize = 32;
/// Each figure is the best of this many runs: the machine is shared, and a neighbour's burst
/// only ever slows a run down.
const RUNS: usize = 3;

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    // `--only TEXT` runs just the passes whose name contains TEXT (for profiling one of them).
    let only: Option<String> = std::env::args().skip_while(|a| a != "--only").nth(1);
    let n: usize = if quick { 512 } else { 1024 };
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(dir.path(), &[]);
    println!(
        "Neuroglancer chunk benchmark: {n}^3 grayscale + {n}^3 labels, 32^3 blocks, {CHUNK}^3 chunks, {CLIENTS} clients{}",
        if quick { " [quick]" } else { "" }
    );
    let root = node.new_repo("ng");
    node.new_instance(&root, "uint8blk", "gray", json!({"BlockSize": "32,32,32"}));
    node.new_instance(&root, "labelblk", "seg", json!({"BlockSize": "32,32,32"}));
    // How DVID keeps grayscale for Neuroglancer: JPEG blocks of its 64^3 chunk size, sent as stored.
    node.new_instance(
        &root,
        "uint8blk",
        "em",
        json!({"BlockSize": "64,64,64", "Compression": "jpeg"}),
    );
    let t = Instant::now();
    for z0 in (0..n).step_by(CHUNK) {
        let path =
            |name: &str| format!("/api/node/{root}/{name}/raw/0_1_2/{n}_{n}_{CHUNK}/0_0_{z0}");
        let gray = dvid_tests::em_slab(n, z0, CHUNK);
        node.post_bytes(&path("em"), gray.clone());
        node.post_bytes(&path("gray"), gray);
        node.post_bytes(&path("seg"), label_slab(n, z0));
    }
    node.commit(&root);
    println!(
        "  ingest (not timed below): {:.1} s",
        t.elapsed().as_secs_f64()
    );

    // The limit reads a copy of the data dir, so it can run between the node's passes: each
    // HTTP pass is followed by a limit pass, and both figures come from the same minutes of this
    // shared machine.
    assert!(node.stop(), "node stopped cleanly");
    let copy = tempfile::tempdir().unwrap();
    dvid_tests::copy_dir(dir.path(), copy.path());
    let node = Node::start(dir.path(), &[]);
    let store = &Store::open_fjall(copy.path()).expect("the copy's store");

    let per_axis = n / CHUNK;
    let mut chunks: Vec<[usize; 3]> = (0..per_axis.pow(3))
        .map(|i| {
            [
                i % per_axis,
                i / per_axis % per_axis,
                i / per_axis / per_axis,
            ]
            .map(|c| c * CHUNK)
        })
        .collect();
    chunks.shuffle(&mut rand::rngs::StdRng::seed_from_u64(7));
    let raw_url = |name: &str, suffix: &str| -> Vec<String> {
        chunks
            .iter()
            .map(|c| {
                format!(
                    "{}/api/node/{root}/{name}/raw/0_1_2/{CHUNK}_{CHUNK}_{CHUNK}/{}_{}_{}{suffix}",
                    node.url, c[0], c[1], c[2]
                )
            })
            .collect()
    };
    let block_urls: Vec<String> = chunks
        .iter()
        .map(|c| {
            format!(
                "{}/api/node/{root}/em/subvolblocks/{CHUNK}_{CHUNK}_{CHUNK}/{}_{}_{}?app=Neuroglancer",
                node.url, c[0], c[1], c[2]
            )
        })
        .collect();
    let read = |name: &str| {
        let h = store.handle(root.as_str(), name).unwrap();
        move |sub: Subvolume| store.read_subvolume(&h, sub).unwrap()
    };
    // The limit: each block read and decompressed, not even assembled into the chunk.
    let read_only = |name: &str| {
        let h = store.handle(root.as_str(), name).unwrap();
        move |sub: Subvolume| {
            drop(std::hint::black_box(
                store.subvolume_blocks(&h, sub).unwrap(),
            ))
        }
    };
    let read_and_encode = {
        let read = read("gray");
        move |sub: Subvolume| {
            let jpeg = dvid_store::jpeg::encode_gray(&read(sub), CHUNK, CHUNK * CHUNK, 80);
            drop(std::hint::black_box(jpeg.unwrap()));
        }
    };
    type Job<'a> = Box<dyn Fn(Subvolume) + Sync + 'a>;
    let passes: Vec<(&str, Vec<String>, usize, &str, Job)> = vec![
        (
            "jpeg blocks as stored",
            block_urls,
            CHUNK.pow(3),
            "decode the JPEG blocks",
            Box::new(read_only("em")),
        ),
        (
            "grayscale jpeg",
            raw_url("gray", "/jpeg?app=Neuroglancer"),
            CHUNK.pow(3),
            "read + decompress",
            Box::new(read_only("gray")),
        ),
        (
            "grayscale jpeg",
            raw_url("gray", "/jpeg?app=Neuroglancer"),
            CHUNK.pow(3),
            "read + JPEG encode",
            Box::new(read_and_encode),
        ),
        (
            "grayscale raw bytes",
            raw_url("gray", "?app=Neuroglancer"),
            CHUNK.pow(3),
            "read + decompress",
            Box::new(read_only("gray")),
        ),
        (
            "labels googlegzip",
            raw_url("seg", "?compression=googlegzip&app=Neuroglancer"),
            CHUNK.pow(3) * 8,
            "read + decompress",
            Box::new(read_only("seg")),
        ),
        (
            "labels raw bytes",
            raw_url("seg", "?app=Neuroglancer"),
            CHUNK.pow(3) * 8,
            "read + decompress",
            Box::new(read_only("seg")),
        ),
    ];
    for (what, urls, raw_bytes, limit_what, job) in &passes {
        if only.as_ref().is_some_and(|o| !what.contains(o.as_str())) {
            continue;
        }
        let (mut best, mut limit) = (None::<Run>, 0.0f64);
        for _ in 0..RUNS {
            let r = http_run(urls);
            limit = limit.max(in_process(&chunks, job));
            if best.as_ref().is_none_or(|b| r.rate > b.rate) {
                best = Some(r);
            }
        }
        let r = best.expect("RUNS > 0");
        report(what, &r, *raw_bytes);
        println!(
            "    limit ({limit_what}, in-process) {limit:>7.0} chunks/s: {:.2} of the limit",
            r.rate / limit
        );
    }
    assert!(node.stop(), "node stopped cleanly");
}

/// Chunks per second when every core runs `job` over the chunks in-process; the best of RUNS.
fn in_process(chunks: &[[usize; 3]], job: impl Fn(Subvolume) + Sync) -> f64 {
    (0..RUNS)
        .map(|_| {
            let next = AtomicUsize::new(0);
            let t = Instant::now();
            std::thread::scope(|s| {
                for _ in 0..std::thread::available_parallelism().map_or(2, |p| p.get()) {
                    s.spawn(|| {
                        while let Some(c) = chunks.get(next.fetch_add(1, Ordering::Relaxed)) {
                            job(Subvolume::new(c.map(|v| v as i32), [CHUNK as u32; 3]).unwrap());
                        }
                    });
                }
            });
            chunks.len() as f64 / t.elapsed().as_secs_f64()
        })
        .fold(0.0, f64::max)
}

fn report(what: &str, r: &Run, raw_bytes: usize) {
    println!(
        "  {what:<22} {:>7.0} chunks/s  p50 {:>6.1} ms  p99 {:>6.1} ms  {:>8.0} B/chunk ({:.3} of raw)",
        r.rate,
        ms(r.p50),
        ms(r.p99),
        r.bytes_per_chunk,
        r.bytes_per_chunk / raw_bytes as f64
    );
}

struct Run {
    rate: f64,
    p50: Duration,
    p99: Duration,
    bytes_per_chunk: f64,
}

/// Fetches every URL once with CLIENTS concurrent clients; checks each answer is a 200.
fn http_run(urls: &[String]) -> Run {
    let next = AtomicUsize::new(0);
    let bytes = AtomicUsize::new(0);
    let t = Instant::now();
    let mut latencies: Vec<Duration> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..CLIENTS)
            .map(|_| {
                s.spawn(|| {
                    let client = reqwest::blocking::Client::new();
                    let mut own = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(u) = urls.get(i) else { break };
                        let t = Instant::now();
                        let r = client.get(u).send().expect("GET");
                        assert!(r.status().is_success(), "{u}: {}", r.status());
                        bytes.fetch_add(r.bytes().unwrap().len(), Ordering::Relaxed);
                        own.push(t.elapsed());
                    }
                    own
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    let wall = t.elapsed();
    latencies.sort();
    Run {
        rate: urls.len() as f64 / wall.as_secs_f64(),
        p50: percentile(&latencies, 50.0),
        p99: percentile(&latencies, 99.0),
        bytes_per_chunk: bytes.load(Ordering::Relaxed) as f64 / urls.len() as f64,
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Segmentation-like labels: cells of about 40³ with wavy boundaries, 64-bit ids.
fn label_slab(n: usize, z0: usize) -> Vec<u8> {
    let mut v = Vec::with_capacity(n * n * CHUNK * 8);
    for z in z0..z0 + CHUNK {
        for y in 0..n {
            for x in 0..n {
                let wx = (x as f32 + 6.0 * (y as f32 / 9.0).sin()) / 40.0;
                let wy = (y as f32 + 6.0 * (z as f32 / 11.0).sin()) / 40.0;
                let wz = (z as f32 + 6.0 * (x as f32 / 13.0).sin()) / 40.0;
                let cell = (wx as u64) | (wy as u64) << 20 | (wz as u64) << 40;
                v.extend_from_slice(&(cell.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 1).to_le_bytes());
            }
        }
    }
    v
}
