//! Neuroglancer's request pattern against a real `dvid` process (release build, fjall, loopback):
//! a version holding an N³ grayscale (uint8blk) and N³ labels (labelblk) volume, both with DVID's
//! default 32³ blocks, read as 64³ chunks by 32 concurrent clients, every chunk once in a shuffled
//! order: grayscale as `raw/0_1_2/64_64_64/x_y_z/jpeg`, labels as `?compression=googlegzip`
//! (compressed segmentation, gzipped). Beside each, in the same run: the same chunks as plain bytes
//! over HTTP, and the limit: the store reading and decompressing the same blocks in-process on every
//! core (the node stopped, its data dir opened directly). Prints chunks/s, p50/p99 latency, bytes
//! per chunk against raw, and the ratio to the limit (the goal is at least 0.5).
//! Run: `cargo bench -p dvid-tests --bench neuroglancer` (N = 1024; `-- --quick` for N = 512).

use dvid_store::{Store, Subvolume};
use dvid_tests::load::percentile;
use dvid_tests::{Node, json};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

const CHUNK: usize = 64;
const CLIENTS: usize = 32;

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
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
        let gray = gray_slab(n, z0);
        node.post_bytes(&path("em"), gray.clone());
        node.post_bytes(&path("gray"), gray);
        node.post_bytes(&path("seg"), label_slab(n, z0));
    }
    node.commit(&root);
    println!(
        "  ingest (not timed below): {:.1} s",
        t.elapsed().as_secs_f64()
    );

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
    let url = |name: &str, c: &[usize; 3], suffix: &str| {
        format!(
            "{}/api/node/{root}/{name}/raw/0_1_2/{CHUNK}_{CHUNK}_{CHUNK}/{}_{}_{}{suffix}",
            node.url, c[0], c[1], c[2]
        )
    };
    let block_url = |c: &[usize; 3]| {
        format!(
            "{}/api/node/{root}/em/subvolblocks/{CHUNK}_{CHUNK}_{CHUNK}/{}_{}_{}?app=Neuroglancer",
            node.url, c[0], c[1], c[2]
        )
    };
    let mut http_rates = Vec::new();
    let urls: Vec<String> = chunks.iter().map(block_url).collect();
    let r = http_run(&urls);
    report("jpeg blocks as stored", &r, CHUNK.pow(3));
    http_rates.push(("jpeg blocks as stored", "em", r.rate));
    let runs = [
        (
            "grayscale jpeg",
            "gray",
            "/jpeg?app=Neuroglancer",
            CHUNK.pow(3),
        ),
        (
            "grayscale raw bytes",
            "gray",
            "?app=Neuroglancer",
            CHUNK.pow(3),
        ),
        (
            "labels googlegzip",
            "seg",
            "?compression=googlegzip&app=Neuroglancer",
            CHUNK.pow(3) * 8,
        ),
        (
            "labels raw bytes",
            "seg",
            "?app=Neuroglancer",
            CHUNK.pow(3) * 8,
        ),
    ];
    for (what, name, suffix, raw_bytes) in runs {
        let urls: Vec<String> = chunks.iter().map(|c| url(name, c, suffix)).collect();
        let r = http_run(&urls);
        report(what, &r, raw_bytes);
        http_rates.push((what, name, r.rate));
    }
    assert!(node.stop(), "node stopped cleanly");

    // The limit: the store alone reads and decompresses the same blocks, on every core.
    let store = Store::open_fjall(dir.path()).expect("the node's store");
    for name in ["gray", "seg", "em"] {
        let h = store.handle(&root, name).unwrap();
        let next = AtomicUsize::new(0);
        let t = Instant::now();
        std::thread::scope(|s| {
            for _ in 0..std::thread::available_parallelism().map_or(2, |p| p.get()) {
                s.spawn(|| {
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(c) = chunks.get(i) else { break };
                        let sub = Subvolume::new(c.map(|v| v as i32), [CHUNK as u32; 3]).unwrap();
                        std::hint::black_box(store.read_subvolume(&h, sub).unwrap());
                    }
                });
            }
        });
        let limit = chunks.len() as f64 / t.elapsed().as_secs_f64();
        println!("  limit {name}: store read + decompress {limit:>7.0} chunks/s");
        for (what, _, rate) in http_rates.iter().filter(|(_, n, _)| *n == name) {
            println!("    {what:<22} {:.2} of the limit", rate / limit);
        }
    }
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

/// Electron-microscopy-like grayscale: smooth membranes-and-cells shading plus a little noise.
fn gray_slab(n: usize, z0: usize) -> Vec<u8> {
    let mut v = Vec::with_capacity(n * n * CHUNK);
    for z in z0..z0 + CHUNK {
        for y in 0..n {
            for x in 0..n {
                let cell =
                    ((x as f32 / 23.0).sin() + (y as f32 / 31.0).cos() + (z as f32 / 17.0).sin())
                        * 40.0;
                let noise = (x.wrapping_mul(2_654_435_761) ^ y.wrapping_mul(40503) ^ z) & 15;
                v.push((120.0 + cell) as u8 + noise as u8);
            }
        }
    }
    v
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
