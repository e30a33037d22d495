//! The fjall store reopens with every repo, version, tree and working entry it acknowledged.

use dvid_store::{Codec, DataKind, InstanceSettings, Store, Subvolume};
use std::collections::BTreeMap;

fn kv() -> InstanceSettings {
    InstanceSettings {
        name: "kv".into(),
        kind: DataKind::KeyValue,
        codec: Codec::Lz4,
        block_size: [64, 64, 64],
        voxel_size: [8.0; 3],
        voxel_units: ["nm".into(), "nm".into(), "nm".into()],
        tags: BTreeMap::new(),
    }
}

#[test]
fn store_recover_reopens_dag_trees_and_working_sets() {
    let dir = tempfile::tempdir().unwrap();
    let (root, child, roots_before);
    {
        let store = Store::open_fjall(dir.path()).unwrap();
        root = store.create_repo("recover", "reopen me").unwrap().to_hex();
        store.create_instance(&root, kv()).unwrap();
        let mut gray = kv();
        gray.name = "gray".into();
        gray.kind = DataKind::LabelBlk;
        gray.block_size = [8, 8, 8];
        store.create_instance(&root, gray).unwrap();
        for i in 0..500 {
            store
                .kv_put(&root, "kv", &format!("key{i:04}"), vec![i as u8; 10])
                .unwrap();
        }
        let sub = Subvolume::new([-4, -4, -4], [20, 20, 20]).unwrap();
        store
            .write_subvolume(&root, "gray", sub, &vec![3u8; 20 * 20 * 20 * 8])
            .unwrap();
        store
            .commit(&root, Some("first"), &["line".into()])
            .unwrap();
        child = store.new_version(&root, "child").unwrap().to_hex();
        store.kv_delete(&child, "kv", "key0000").unwrap();
        store
            .kv_put(&child, "kv", "new", b"uncommitted".to_vec())
            .unwrap();
        roots_before = store.resolve(&root).unwrap().roots;
    }
    {
        let store = Store::open_fjall(dir.path()).unwrap();
        let r = store.resolve(&root).unwrap();
        assert!(r.locked);
        assert_eq!(r.note, "first");
        assert_eq!(r.roots, roots_before);
        assert!(r.commit_hash.is_some());
        let c = store.resolve(&child).unwrap();
        assert!(!c.locked);
        assert_eq!(c.parents, vec![r.id]);
        assert_eq!(store.kv_keys(&root, "kv", None, None).unwrap().len(), 500);
        let keys = store.kv_keys(&child, "kv", None, None).unwrap();
        assert_eq!(keys.len(), 500);
        assert!(!keys.contains(&"key0000".to_string()) && keys.contains(&"new".to_string()));
        let back = store
            .read_subvolume(
                &root,
                "gray",
                Subvolume::new([-4, -4, -4], [20, 20, 20]).unwrap(),
            )
            .unwrap();
        assert!(back.iter().all(|&b| b == 3));
        // The reopened store keeps working: commit the working set it recovered.
        store.commit(&child, None, &[]).unwrap();
        assert_eq!(
            store.kv_get(&child, "kv", "new").unwrap(),
            Some(b"uncommitted".to_vec())
        );
        // Ids keep counting up after reopening: a new repo does not reuse any.
        let other = store.create_repo("second", "").unwrap().to_hex();
        assert_ne!(store.resolve(&other).unwrap().id, r.id);
        assert_eq!(store.catalog().repos.len(), 2);
    }
}
