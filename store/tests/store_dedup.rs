//! Identical blocks are stored once, across versions and instances.

use dvid_store::{Codec, InstanceSpec, ObjectStore, Store, Subvolume};
use std::sync::Arc;

fn gray() -> InstanceSpec {
    InstanceSpec::voxels("uint8blk", Codec::Lz4, 16).unwrap()
}

fn count(objects: &dyn ObjectStore) -> usize {
    let mut n = 0;
    objects
        .for_each_object_id(&mut |_| {
            n += 1;
            true
        })
        .unwrap();
    n
}

#[test]
fn store_dedup_blocks_across_versions_and_instances() {
    let engine = Arc::new(dvid_store::MemEngine::new());
    let store = Store::open(engine.clone(), engine.clone(), "memory").unwrap();
    let root = store.create_repo("dedup", "").unwrap().to_hex();
    store.create_instance(&root, "a", gray()).unwrap();
    store.create_instance(&root, "b", gray()).unwrap();
    // 8 blocks, each with distinct contents.
    let sub = Subvolume::new([0, 0, 0], [32, 32, 32]).unwrap();
    let data: Vec<u8> = (0..32 * 32 * 32u32)
        .map(|i| {
            let (x, y, z) = (i % 32 / 16, i / 32 % 32 / 16, i / 1024 / 16);
            (x + 2 * y + 4 * z + 1) as u8
        })
        .collect();
    store
        .write_subvolume(&store.handle(&root, "a").unwrap(), sub, &data)
        .unwrap();
    let after_first = count(engine.as_ref());
    assert_eq!(after_first, 8);
    // The same bytes into another instance, and again into the same one: no new objects.
    store
        .write_subvolume(&store.handle(&root, "b").unwrap(), sub, &data)
        .unwrap();
    store
        .write_subvolume(&store.handle(&root, "a").unwrap(), sub, &data)
        .unwrap();
    assert_eq!(count(engine.as_ref()), 8);
    store.commit(&root, None, &[]).unwrap();
    let with_trees = count(engine.as_ref());
    // The two instances hold the same entries, so their trees are the same single leaf object.
    assert_eq!(with_trees, 9);
    let child = store.new_version(&root, "").unwrap().to_hex();
    store
        .write_subvolume(&store.handle(&child, "b").unwrap(), sub, &data)
        .unwrap();
    store.commit(&child, None, &[]).unwrap();
    assert_eq!(
        count(engine.as_ref()),
        9,
        "rewriting identical data in a child stored nothing new"
    );
}
