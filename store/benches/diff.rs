//! Version diff cost: `cargo bench -p dvid-store --bench diff`. For n blocks (4^3 uint8 voxels) and
//! a child version changing 100 of them, times `Store::diff` (tree diff: equal subtrees are skipped
//! by hash) against the fastest way to find the changes without it: listing every entry of both
//! versions' trees and comparing them (what a DVID user must do, reading both versions). Both run
//! on the same warm in-memory store, so the ratio is the figure; the diff's time should stay flat as
//! n grows, the listing's grow with n.

use dvid_store::tree::Scope;
use dvid_store::{Codec, InstanceSpec, Store, Subvolume};
use std::time::Instant;

fn main() {
    let sizes: Vec<usize> = if std::env::args().any(|a| a == "--quick") {
        vec![10_000, 100_000]
    } else {
        vec![10_000, 100_000, 1_000_000]
    };
    println!("diff of a child with 100 of n blocks changed (4^3 uint8 blocks), best of 5 runs:");
    println!(
        "{:>9} {:>8} {:>12} {:>14} {:>10}",
        "n", "changed", "diff ms", "list both ms", "ratio"
    );
    for n in sizes {
        let (changed, diff, list) = measure(n);
        println!(
            "{:>9} {:>8} {:>12.3} {:>14.1} {:>10.5}",
            n,
            changed,
            diff * 1e3,
            list * 1e3,
            diff / list
        );
    }
}

/// (changes found, seconds per diff, seconds per listing of both trees).
fn measure(n: usize) -> (usize, f64, f64) {
    let store = Store::open_memory().unwrap();
    let root = store.create_repo("bench", "").unwrap().to_hex();
    store
        .create_instance(
            &root,
            "gray",
            InstanceSpec::voxels("uint8blk", Codec::Lz4, 4).unwrap(),
        )
        .unwrap();
    // A slab of n blocks: 100 x 100 x n/10^4, distinct contents.
    let dims = [100usize, 100, n / 10_000];
    let vox = [dims[0] * 4, dims[1] * 4, dims[2] * 4];
    let data: Vec<u8> = (0..vox.iter().product::<usize>())
        .map(|i| ((i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 56) as u8)
        .collect();
    let sub = Subvolume::new([0, 0, 0], vox.map(|v| v as u32)).unwrap();
    store
        .write_subvolume(&store.handle(&root, "gray").unwrap(), sub, &data)
        .unwrap();
    store.commit(&root, None, &[]).unwrap();
    let child = store.new_version(&root, "").unwrap().to_hex();
    let mut seed = n as u64;
    for i in 0..100usize {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        // Distinct blocks: one per 100-block row, at a random place in it.
        let b = [
            (seed >> 33) as usize % dims[0],
            i,
            (seed >> 43) as usize % dims[2],
        ];
        let block: Vec<u8> = (0..64)
            .map(|j| (seed >> (j % 56)) as u8 ^ j as u8)
            .collect();
        let s = Subvolume::new(b.map(|c| c as i32 * 4), [4, 4, 4]).unwrap();
        store
            .write_subvolume(&store.handle(&child, "gray").unwrap(), s, &block)
            .unwrap();
    }
    store.commit(&child, None, &[]).unwrap();

    let (mut diff, mut list, mut changed) = (f64::MAX, f64::MAX, 0);
    let roots = |v: &str| store.resolve(v).unwrap().roots.values().next().copied();
    let (ra, rb) = (roots(&root), roots(&child));
    let (ha, hb) = (
        store.handle(&root, "gray").unwrap(),
        store.handle(&child, "gray").unwrap(),
    );
    for _ in 0..5 {
        let t = Instant::now();
        let d = store.diff(&ha, &hb).unwrap();
        diff = diff.min(t.elapsed().as_secs_f64());
        changed = d.changes.len();

        let t = Instant::now();
        let (mut a, mut b) = (Vec::new(), Vec::new());
        store.trees().collect(ra, &Scope::All, &mut a).unwrap();
        store.trees().collect(rb, &Scope::All, &mut b).unwrap();
        let differing = a
            .iter()
            .zip(&b)
            .filter(|(x, y)| x.key != y.key || x.object != y.object)
            .count()
            + a.len().abs_diff(b.len());
        list = list.min(t.elapsed().as_secs_f64());
        assert_eq!(differing, changed, "the listing and the diff disagree");
    }
    (changed, diff, list)
}
