//! End-to-end store benchmarks against a real `dvid` process (release build) on loopback.
//! Run: `cargo bench -p dvid-tests --bench store`. Prints figures and ratios; asserts nothing about time.
//!
//! 1. ingest and read MB/s of raw 256^3 uint8, beside in-memory lz4 compression of the same blocks;
//! 2. median time to read one block at a version 1 and 1,000 levels below the root;
//! 3. commit time for 1% of blocks changed in instances of 10^4 and 10^5 blocks (and a fixed k).

use dvid_tests::{Node, json, test_volume};
use std::time::{Duration, Instant};

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let dir = tempfile::tempdir().unwrap();
    let n = Node::start(dir.path(), &[]);
    println!(
        "dvid store benchmark (fjall, loopback HTTP, release build){}",
        if quick { " [quick]" } else { "" }
    );
    ingest_and_read(&n, if quick { 2 } else { 5 });
    deep_version_reads(&n, if quick { 100 } else { 1000 });
    commit_cost(&n, if quick { &[10_000] } else { &[10_000, 100_000] });
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn mbps(bytes: usize, t: Duration) -> f64 {
    bytes as f64 / 1e6 / t.as_secs_f64()
}

fn ingest_and_read(n: &Node, rounds: usize) {
    let root = n.new_repo("ingest");
    n.new_instance(&root, "uint8blk", "gray", json!({}));
    let size = 256usize;
    let bytes = size * size * size;
    let (mut post, mut get, mut lz4) = (Vec::new(), Vec::new(), Vec::new());
    for r in 0..rounds {
        let vol = test_volume([size; 3], 100 + r as u64);
        // The limit: lz4 over the same 64^3 blocks, in memory, one thread.
        let blocks = to_blocks(&vol, size, 64);
        let t = Instant::now();
        let mut compressed = 0;
        for b in &blocks {
            compressed += lz4_flex::block::compress(b).len();
        }
        lz4.push(t.elapsed());
        if r == 0 {
            println!(
                "  test volume compresses to {:.1}% with lz4",
                100.0 * compressed as f64 / bytes as f64
            );
        }
        let path = format!(
            "/api/node/{root}/gray/raw/0_1_2/256_256_256/{}_0_0",
            r * 256
        );
        let body = vol.clone();
        let t = Instant::now();
        n.post_bytes(&path, body);
        post.push(t.elapsed());
        let t = Instant::now();
        let back = n.get_bytes(&path);
        get.push(t.elapsed());
        assert!(back == vol, "read back differs");
    }
    let (p, g, l) = (
        mbps(bytes, median(post)),
        mbps(bytes, median(get)),
        mbps(bytes, median(lz4)),
    );
    println!("1. raw 256^3 uint8 over HTTP, median of {rounds}:");
    println!("   lz4 compress in memory (1 thread): {l:8.1} MB/s  (the limit)");
    println!(
        "   POST raw (ingest):                 {p:8.1} MB/s  ratio to limit {:.2} (goal >= 0.5)",
        p / l
    );
    println!(
        "   GET raw (read):                    {g:8.1} MB/s  ratio to limit {:.2} (goal >= 0.5)",
        g / l
    );
}

fn to_blocks(vol: &[u8], size: usize, bs: usize) -> Vec<Vec<u8>> {
    let nb = size / bs;
    let mut out = Vec::new();
    for bz in 0..nb {
        for by in 0..nb {
            for bx in 0..nb {
                let mut b = Vec::with_capacity(bs * bs * bs);
                for z in 0..bs {
                    for y in 0..bs {
                        let i = ((bz * bs + z) * size + by * bs + y) * size + bx * bs;
                        b.extend_from_slice(&vol[i..i + bs]);
                    }
                }
                out.push(b);
            }
        }
    }
    out
}

fn deep_version_reads(n: &Node, depth: usize) {
    let root = n.new_repo("deep");
    n.new_instance(&root, "uint8blk", "gray", json!({}));
    n.post_bytes(
        &format!("/api/node/{root}/gray/raw/0_1_2/256_256_64/0_0_0"),
        test_volume([256, 256, 64], 7),
    );
    n.commit(&root);
    let t = Instant::now();
    let mut chain = Vec::new();
    let mut tip = root.clone();
    for i in 0..depth {
        tip = n.new_version(&tip);
        // Each version rewrites one block, away from the one we read, so every level has its own tree.
        let x = 64 * (1 + i % 3);
        n.post_bytes(
            &format!("/api/node/{tip}/gray/raw/0_1_2/64_64_64/{x}_0_0"),
            test_volume([64; 3], i as u64),
        );
        n.commit(&tip);
        chain.push(tip.clone());
    }
    let build = t.elapsed();
    let (shallow, deep) = (&chain[0], &chain[depth - 1]);
    let block = |v: &str| format!("/api/node/{v}/gray/raw/0_1_2/64_64_64/0_64_0");
    assert!(n.get_bytes(&block(shallow)) == n.get_bytes(&block(deep)));
    let (mut ts, mut td) = (Vec::new(), Vec::new());
    for _ in 0..200 {
        let t = Instant::now();
        n.get_bytes(&block(shallow));
        ts.push(t.elapsed());
        let t = Instant::now();
        n.get_bytes(&block(deep));
        td.push(t.elapsed());
    }
    let (s, d) = (median(ts), median(td));
    println!(
        "2. one 64^3 block read, median of 200 (chain of {depth} versions built in {:.1}s):",
        build.as_secs_f64()
    );
    println!(
        "   1 level below root:     {:8.3} ms",
        s.as_secs_f64() * 1e3
    );
    println!(
        "   {depth} levels below root: {:8.3} ms  ratio {:.2} (goal <= 1.2)",
        d.as_secs_f64() * 1e3,
        d.as_secs_f64() / s.as_secs_f64()
    );
}

fn commit_cost(n: &Node, sizes: &[usize]) {
    println!("3. commit time with 8^3 blocks, median of 3 trials:");
    let mut fixed_k = Vec::new();
    for &blocks in sizes {
        let root = n.new_repo("commit");
        n.new_instance(&root, "uint8blk", "gray", json!({"BlockSize": "8,8,8"}));
        // A slab of `blocks` blocks: 50 x 40 x (blocks / 2000).
        let dims = [50usize, 40, blocks / 2000];
        let vox = [dims[0] * 8, dims[1] * 8, dims[2] * 8];
        n.post_bytes(
            &format!(
                "/api/node/{root}/gray/raw/0_1_2/{}_{}_{}/0_0_0",
                vox[0], vox[1], vox[2]
            ),
            test_volume(vox, blocks as u64),
        );
        let t = Instant::now();
        n.commit(&root);
        let first = t.elapsed();
        let mut tip = root.clone();
        let mut seed = blocks as u64;
        let mut time_k = |k: usize, tip: &mut String| {
            let mut times = Vec::new();
            for _ in 0..3 {
                *tip = n.new_version(tip);
                for _ in 0..k {
                    seed = seed
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    let b = [
                        (seed >> 33) as usize % dims[0],
                        (seed >> 43) as usize % dims[1],
                        (seed >> 53) as usize % dims[2],
                    ];
                    n.post_bytes(
                        &format!(
                            "/api/node/{tip}/gray/raw/0_1_2/8_8_8/{}_{}_{}",
                            b[0] * 8,
                            b[1] * 8,
                            b[2] * 8
                        ),
                        test_volume([8, 8, 8], seed),
                    );
                }
                let t = Instant::now();
                n.commit(tip);
                times.push(t.elapsed());
            }
            median(times)
        };
        let pct = time_k(blocks / 100, &mut tip);
        let k100 = time_k(100, &mut tip);
        fixed_k.push(k100);
        println!(
            "   n = {blocks:>6}: first commit (all n) {:8.1} ms | 1% (k = {:>4}) {:8.2} ms | k = 100 {:8.2} ms",
            first.as_secs_f64() * 1e3,
            blocks / 100,
            pct.as_secs_f64() * 1e3,
            k100.as_secs_f64() * 1e3
        );
    }
    if fixed_k.len() == 2 {
        let r = fixed_k[1].as_secs_f64() / fixed_k[0].as_secs_f64();
        println!(
            "   k = 100 at n = 10^5 vs 10^4: ratio {r:.2} (log n predicts ~1.25; linear in n would be 10)"
        );
    }
}
