//! labelmap proofreading benchmark against real `dvid` processes (release build) on loopback:
//! `cargo bench -p dvid-tests --bench labelmap` (add `-- --quick` for a 256³ volume and fewer
//! mutations, `-- --open-only` for part 3 alone, `-- --skip-open` for the rest). Prints figures and ratios; asserts nothing about time.
//!
//! A synthetic segmentation of 512³ voxels in 64³ blocks: supervoxels are 24³ cells (about
//! 10^4), grouped 10 to a body (about 10^3 bodies) by merges.
//! 1. merge and cleave latency (p50/p99) of small bodies and of one grown to about 10^7 voxels
//!    (goal: independent of the body's size), and what one merge writes (the objects it stores
//!    and the data dir's growth per merge);
//! 2. `sparsevol` of that body against reading its blocks (the limit);
//! 3. opening a data dir after 10^3..10^6 mutations (goal: flat; DVID replays its log);
//! 4. an incremental pull after 100 merges: bytes on the wire against the changed mapping, index
//!    and mutation bytes.

use dvid_store::Store;
use dvid_store::types::labelmap::Editor;
use dvid_tests::{Node, Value, json};
use std::path::Path;
use std::time::{Duration, Instant};

const CELL: u64 = 24;
const PER_BODY: u64 = 10;

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let counts: &[usize] = match quick {
        true => &[1_000, 10_000],
        false => &[1_000, 10_000, 100_000, 1_000_000],
    };
    if std::env::args().any(|a| a == "--open-only") {
        return open_after_mutations(counts);
    }
    let size: u64 = if quick { 256 } else { 512 };
    let cells = size.div_ceil(CELL);
    println!(
        "dvid labelmap benchmark: {size}³ voxels, {} supervoxels of {CELL}³ in 64³ blocks{}",
        cells.pow(3),
        if quick { " [quick]" } else { "" }
    );
    let dir = tempfile::tempdir().unwrap();
    let n = Node::start_p2p(dir.path(), &[]);
    let root = n.new_repo("labelmap bench");
    n.new_instance(&root, "labelmap", "seg", json!({}));
    let t = Instant::now();
    for z0 in (0..size).step_by(64) {
        n.post_bytes(
            &format!("/api/node/{root}/seg/raw/0_1_2/{size}_{size}_64/0_0_{z0}"),
            slab(size, z0, cells),
        );
    }
    let voxels = size.pow(3);
    println!(
        "  ingest with label indices: {:.1} s ({:.1} Mvoxels/s)",
        t.elapsed().as_secs_f64(),
        voxels as f64 / 1e6 / t.elapsed().as_secs_f64()
    );
    n.commit(&root);
    let v = n.new_version(&root);
    edits(&n, &v, cells);
    let http_sparsevol = sparsevol_over_http(&n, &v);
    n.commit(&v);
    incremental_pull(&n, &root, &v, cells);
    assert!(n.stop(), "the node stops cleanly");
    sparsevol_limit(dir.path(), &v, http_sparsevol);
    if !std::env::args().any(|a| a == "--skip-open") {
        open_after_mutations(counts);
    }
}

/// Supervoxel ids of one 64-voxel slab: 1 + the cell's index.
fn slab(size: u64, z0: u64, cells: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity((size * size * 64 * 8) as usize);
    for z in z0..z0 + 64 {
        for y in 0..size {
            for x in 0..size {
                let sv = 1 + x / CELL + cells * (y / CELL + cells * (z / CELL));
                out.extend_from_slice(&sv.to_le_bytes());
            }
        }
    }
    out
}

fn pct(mut v: Vec<Duration>, p: f64) -> f64 {
    v.sort();
    let i = ((p / 100.0) * v.len() as f64).ceil() as usize;
    v[i.clamp(1, v.len()) - 1].as_secs_f64() * 1e3
}

fn timed(f: impl FnOnce()) -> Duration {
    let t = Instant::now();
    f();
    t.elapsed()
}

/// Bodies of 10 supervoxels by merges (timed), then a body grown to ~10^7 voxels; merges and
/// cleaves of small bodies against the same on the big one.
fn edits(n: &Node, v: &str, cells: u64) {
    let at = |p: &str| format!("/api/node/{v}/seg/{p}");
    let total = cells.pow(3);
    let bodies = total / PER_BODY;
    let mut small_merges = Vec::new();
    for b in 0..bodies {
        let svs: Vec<u64> = (0..PER_BODY).map(|i| 1 + b * PER_BODY + i).collect();
        small_merges.push(timed(|| {
            n.post_json(&at("merge"), json!(svs));
        }));
    }
    // The payload of one such merge: the target's index, the shared mapping value, the record.
    let idx = n.get_bytes(&at("index/1")).len();
    let record = n.get_json(&at("mutations"))[0].to_string().len();
    println!("1. proofreading edits ({bodies} bodies of {PER_BODY} supervoxels):");
    println!(
        "   one merge of 10 supervoxels stores 3 objects ({} bytes: the target's index {idx}, the \
         mapping value 8, the record {record}), 10 mapping entries and 9 index deletions",
        idx + 8 + record
    );
    // Grow body 1 to ~10^7 voxels (about 720 supervoxels of 24³).
    let big_bodies = (10_000_000 / (CELL.pow(3) * PER_BODY)).min(bodies / 2);
    for chunk in (2..=big_bodies).collect::<Vec<_>>().chunks(50) {
        let mut list = vec![1];
        list.extend(chunk.iter().map(|b| 1 + (b - 1) * PER_BODY));
        n.post_json(&at("merge"), json!(list));
    }
    let big = n.get_json(&at("size/1"))["voxels"].as_u64().unwrap();
    // Merges into the big body and between small ones, then cleaves of one supervoxel from each.
    let rounds = 50.min((bodies - big_bodies) / 8) as usize;
    let (mut into_big, mut small, mut cleave_big, mut cleave_small) =
        (vec![], vec![], vec![], vec![]);
    let first = big_bodies + 1;
    for i in 0..rounds as u64 {
        let a = 1 + (first + 4 * i - 1) * PER_BODY;
        let (b, c) = (a + PER_BODY, a + 2 * PER_BODY);
        into_big.push(timed(|| {
            n.post_json(&at("merge"), json!([1, a]));
        }));
        small.push(timed(|| {
            n.post_json(&at("merge"), json!([b, c]));
        }));
        cleave_big.push(timed(|| {
            n.post_json(&at("cleave/1"), json!([a]));
        }));
        cleave_small.push(timed(|| {
            n.post_json(&at(&format!("cleave/{b}")), json!([c]));
        }));
    }
    let row = |name: &str, d: &Vec<Duration>| {
        println!(
            "   {name:<44} p50 {:6.2} ms  p99 {:6.2} ms",
            pct(d.clone(), 50.0),
            pct(d.clone(), 99.0)
        );
    };
    row("merge of 10 supervoxels (building bodies)", &small_merges);
    row("merge of two small bodies", &small);
    row(&format!("merge into a body of {big} voxels"), &into_big);
    row("cleave of 1 supervoxel off a small body", &cleave_small);
    row(
        &format!("cleave of 1 supervoxel off the {big}-voxel body"),
        &cleave_big,
    );
    println!(
        "   ratio big/small body: merge p50 {:.2}, cleave p50 {:.2} (goal: about 1; the big \
         body's index has {} blocks)",
        pct(into_big.clone(), 50.0) / pct(small.clone(), 50.0),
        pct(cleave_big.clone(), 50.0) / pct(cleave_small.clone(), 50.0),
        n.get_json(&at("sparsevol-size/1"))["numblocks"]
    );
}

/// The median time of `sparsevol` of the big body over HTTP (ms).
fn sparsevol_over_http(n: &Node, v: &str) -> f64 {
    let path = format!("/api/node/{v}/seg/sparsevol/1");
    let times: Vec<Duration> = (0..5)
        .map(|_| {
            timed(|| {
                n.get_bytes(&path);
            })
        })
        .collect();
    pct(times, 50.0)
}

/// The same sparse volume in-process, and the limit: reading and decompressing its blocks, on the
/// data dir the node left.
fn sparsevol_limit(dir: &Path, v: &str, http_ms: f64) {
    let store = Store::open_fjall(dir).unwrap();
    let h = store.handle(v, "seg").unwrap();
    let idx = store.label_index(&h, 1).unwrap().unwrap();
    let blocks = idx.block_coords(None);
    let mut runs = 0;
    let (mut sv, mut limit) = (vec![], vec![]);
    for _ in 0..5 {
        limit.push(timed(|| {
            store.read_blocks(&h, &blocks).unwrap();
        }));
        sv.push(timed(|| {
            runs = store.sparsevol(&h, 1, false, None).unwrap().unwrap().len();
        }));
    }
    let (s, l) = (pct(sv, 50.0), pct(limit, 50.0));
    println!(
        "2. sparsevol of a {}-voxel body ({} blocks, {runs} runs): {http_ms:.0} ms over HTTP, {s:.0} ms \
         in-process; reading and decompressing its blocks {l:.0} ms (the limit); ratio \
         limit/HTTP {:.2}, limit/in-process {:.2} (goal >= 0.5)",
        idx.voxels(None),
        blocks.len(),
        l / http_ms,
        l / s
    );
}

/// 100 merges in a child, committed; a second node that holds the parent pulls the child.
fn incremental_pull(n: &Node, root: &str, v: &str, cells: u64) {
    let dir = tempfile::tempdir().unwrap();
    let addr = n.p2p_addr();
    let b = Node::start_p2p(dir.path(), &["--peer", &addr]);
    n.post_json(
        &format!("/api/repo/{root}/share"),
        json!({"peers": [b.peer_id()]}),
    );
    b.wait_offered(v);
    let full: Value = b.pull(json!({"uuid": v}));
    let child = n.new_version(v);
    let at = |p: &str| format!("/api/node/{child}/seg/{p}");
    let bodies = cells.pow(3) / PER_BODY;
    let merges = 100.min(bodies / 8);
    let mut targets = Vec::new();
    for i in 0..merges {
        let a = 1 + (bodies - 1 - 2 * i) * PER_BODY;
        let c = a - PER_BODY;
        n.post_json(&at("merge"), json!([a, c]));
        targets.push(a);
    }
    n.commit(&child);
    // The changed content: each target's index, the shared mapping value, each record; the
    // merged-away bodies' indices are deletions (no bytes).
    let index_bytes: usize = targets
        .iter()
        .map(|t| n.get_bytes(&at(&format!("index/{t}"))).len())
        .sum();
    let records: usize = n
        .get_json(&at("mutations"))
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.to_string().len())
        .sum();
    let payload = index_bytes + merges as usize * 8 + records;
    b.wait_offered(&child);
    let st = b.pull(json!({"uuid": child}));
    assert_eq!(st["state"], "done", "{st}");
    let wire = st["bytes_fetched"].as_u64().unwrap();
    println!(
        "4. incremental pull after {merges} merges: {wire} bytes in {} objects, against {payload} bytes \
         of changed indices, mappings and records (ratio {:.2}; the tree nodes above them make \
         the rest); the full pull was {} bytes",
        st["objects_fetched"],
        wire as f64 / payload as f64,
        full["bytes_fetched"]
    );
}

/// Bytes of the files under `dir`.
fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir).map_or(0, |it| {
        it.flatten()
            .map(|e| match e.metadata() {
                Ok(m) if m.is_dir() => dir_bytes(&e.path()),
                Ok(m) => m.len(),
                Err(_) => 0,
            })
            .sum()
    })
}

/// Mutations made in-process on a data dir (a merge and a cleave back, alternately), then the
/// time a node takes from start to answering HTTP on it.
fn open_after_mutations(counts: &[usize]) {
    println!("3. opening a data dir after N mutations (node start to first HTTP answer):");
    for &count in counts {
        let dir = tempfile::tempdir().unwrap();
        let made = {
            let store = Store::open_fjall(dir.path()).unwrap();
            let root = store.create_repo("open bench", "").unwrap().to_string();
            let spec =
                dvid_store::types::InstanceSpec::voxels("labelmap", dvid_store::Codec::Lz4, 8)
                    .unwrap();
            store.create_instance(&root, "seg", spec).unwrap();
            let h = store.handle(&root, "seg").unwrap();
            let sub = dvid_store::Subvolume::new([0, 0, 0], [16, 16, 16]).unwrap();
            let octants: Vec<u8> = (0..16u64 * 16 * 16)
                .flat_map(|i| {
                    (1 + (i % 16) / 8 + 2 * ((i / 16) % 16 / 8) + 4 * (i / 256 / 8)).to_le_bytes()
                })
                .collect();
            store.write_subvolume(&h, sub, &octants).unwrap();
            let who = Editor::default();
            let t = Instant::now();
            let (mut made, mut other) = (0, 2);
            while made < count {
                // Supervoxel 2 joins body 1 and is cleaved off again, into a new body each time.
                store.merge_bodies(&h, 1, &[other], &who).unwrap();
                other = store.cleave_body(&h, 1, &[2], &who).unwrap().label;
                made += 2;
            }
            store.flush().unwrap();
            (made, t.elapsed())
        };
        let store_open = timed(|| {
            Store::open_fjall(dir.path()).unwrap();
        });
        let size = dir_bytes(dir.path());
        let t = Instant::now();
        let node = Node::start(dir.path(), &[]);
        let open = t.elapsed();
        drop(node);
        println!(
            "   {:>9} mutations (made in {:.1} s, data dir {:.0} MB): store opens in {:.1} ms, a \
             node answers HTTP {:.0} ms after starting",
            made.0,
            made.1.as_secs_f64(),
            size as f64 / 1e6,
            store_open.as_secs_f64() * 1e3,
            open.as_secs_f64() * 1e3
        );
    }
}
