//! The fjall store reopens with every repo, version, tree and working entry it acknowledged.

use dvid_store::{Codec, InstanceSpec, Store, Subvolume};

#[test]
fn store_recover_reopens_dag_trees_and_working_sets() {
    let dir = tempfile::tempdir().unwrap();
    let (root, child, roots_before);
    {
        let store = Store::open_fjall(dir.path()).unwrap();
        root = store.create_repo("recover", "reopen me").unwrap().to_hex();
        let kv = InstanceSpec::plain("keyvalue").unwrap();
        store.create_instance(&root, "kv", kv).unwrap();
        let labels = InstanceSpec::voxels("labelblk", Codec::Lz4, 8).unwrap();
        store.create_instance(&root, "gray", labels).unwrap();
        for i in 0..500 {
            store
                .kv_put(
                    &store.handle(&root, "kv").unwrap(),
                    &format!("key{i:04}"),
                    vec![i as u8; 10],
                )
                .unwrap();
        }
        let sub = Subvolume::new([-4, -4, -4], [20, 20, 20]).unwrap();
        store
            .write_subvolume(
                &store.handle(&root, "gray").unwrap(),
                sub,
                &vec![3u8; 20 * 20 * 20 * 8],
            )
            .unwrap();
        store
            .commit(&root, Some("first"), &["line".into()])
            .unwrap();
        child = store.new_version(&root, "child").unwrap().to_hex();
        store
            .kv_delete(&store.handle(&child, "kv").unwrap(), "key0000")
            .unwrap();
        store
            .kv_put(
                &store.handle(&child, "kv").unwrap(),
                "new",
                b"uncommitted".to_vec(),
            )
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
        assert_eq!(
            store
                .kv_keys(&store.handle(&root, "kv").unwrap(), None, None)
                .unwrap()
                .len(),
            500
        );
        let keys = store
            .kv_keys(&store.handle(&child, "kv").unwrap(), None, None)
            .unwrap();
        assert_eq!(keys.len(), 500);
        assert!(!keys.contains(&"key0000".to_string()) && keys.contains(&"new".to_string()));
        let back = store
            .read_subvolume(
                &store.handle(&root, "gray").unwrap(),
                Subvolume::new([-4, -4, -4], [20, 20, 20]).unwrap(),
            )
            .unwrap();
        assert!(back.iter().all(|&b| b == 3));
        // The reopened store keeps working: commit the working set it recovered.
        store.commit(&child, None, &[]).unwrap();
        assert_eq!(
            store
                .kv_get(&store.handle(&child, "kv").unwrap(), "new")
                .unwrap(),
            Some(b"uncommitted".to_vec())
        );
        // Ids keep counting up after reopening: a new repo does not reuse any.
        let other = store.create_repo("second", "").unwrap().to_hex();
        assert_ne!(store.resolve(&other).unwrap().id, r.id);
        assert_eq!(store.catalog().repos.len(), 2);
    }
}
