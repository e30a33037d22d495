//! `Store::fsck` passes a healthy store and catches damaged objects, in memory and on disk.

use dvid_store::engine::MemEngine;
use dvid_store::{Codec, InstanceSpec, ObjectId, ObjectStore, Result, Store, Subvolume};
use parking_lot::Mutex;
use std::collections::HashSet;
use std::sync::Arc;

/// A repo with two instances, a committed root, a committed child and a mutable grandchild.
fn fill(store: &Store) {
    let root = store.create_repo("fsck", "").unwrap().to_hex();
    store
        .create_instance(
            &root,
            "gray",
            InstanceSpec::voxels("uint8blk", Codec::Lz4, 16).unwrap(),
        )
        .unwrap();
    store
        .create_instance(&root, "kv", InstanceSpec::plain("keyvalue").unwrap())
        .unwrap();
    let sub = Subvolume::new([0, 0, 0], [64, 64, 32]).unwrap();
    let voxels: Vec<u8> = (0..64 * 64 * 32).map(|i| (i % 251) as u8).collect();
    store
        .write_subvolume(&store.handle(&root, "gray").unwrap(), sub, &voxels)
        .unwrap();
    for i in 0..100 {
        store
            .kv_put(
                &store.handle(&root, "kv").unwrap(),
                &format!("k{i}"),
                vec![i as u8; 100],
            )
            .unwrap();
    }
    store.commit(&root, None, &[]).unwrap();
    let child = store.new_version(&root, "").unwrap().to_hex();
    store
        .kv_put(
            &store.handle(&child, "kv").unwrap(),
            "k7",
            b"changed".to_vec(),
        )
        .unwrap();
    store.commit(&child, None, &[]).unwrap();
    let leaf = store.new_version(&child, "").unwrap().to_hex();
    store
        .kv_put(
            &store.handle(&leaf, "kv").unwrap(),
            "mutable",
            b"x".to_vec(),
        )
        .unwrap();
}

/// Objects whose stored bytes changed after they were written (bit rot under the engine).
struct Rotting {
    inner: MemEngine,
    rotten: Mutex<HashSet<ObjectId>>,
}

impl ObjectStore for Rotting {
    fn get_object(&self, id: &ObjectId) -> Result<Option<Vec<u8>>> {
        let mut bytes = self.inner.get_object(id)?;
        if self.rotten.lock().contains(id)
            && let Some(b) = bytes.as_mut()
        {
            let mid = b.len() / 2;
            b[mid] ^= 0x40;
        }
        Ok(bytes)
    }
    fn has_object(&self, id: &ObjectId) -> Result<bool> {
        self.inner.has_object(id)
    }
    fn put_objects(&self, objects: &[(ObjectId, Vec<u8>)]) -> Result<()> {
        self.inner.put_objects(objects)
    }
    fn for_each_object_id(&self, visit: &mut dyn FnMut(&ObjectId) -> bool) -> Result<()> {
        self.inner.for_each_object_id(visit)
    }
}

#[test]
fn store_fsck_passes_a_healthy_store_and_names_rotten_objects() {
    let objects = Arc::new(Rotting {
        inner: MemEngine::new(),
        rotten: Mutex::new(HashSet::new()),
    });
    let store = Store::open(Arc::new(MemEngine::new()), objects.clone(), "memory").unwrap();
    fill(&store);

    let clean = store.fsck().unwrap();
    assert!(clean.is_clean(), "{:?}", clean.problems);
    assert!(clean.objects_checked > 100, "{clean:?}");
    assert!(clean.tree_nodes_checked >= 2, "{clean:?}");
    assert!(clean.entries_checked >= 100 + 32, "{clean:?}");
    assert_eq!(clean.versions_checked, 3);
    assert_eq!(clean.working_entries_checked, 1);

    let mut ids = Vec::new();
    objects
        .for_each_object_id(&mut |id| {
            ids.push(*id);
            true
        })
        .unwrap();
    let victims = [ids[3], ids[ids.len() / 2]];
    objects.rotten.lock().extend(victims);
    let report = store.fsck().unwrap();
    assert!(!report.is_clean());
    for v in victims {
        let named = report.problems.iter().any(|p| p.contains(&v.to_string()));
        assert!(named, "{v} not reported in {:?}", report.problems);
    }
}

#[test]
fn store_fsck_catches_bytes_flipped_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open_fjall(dir.path()).unwrap();
        fill(&store);
        let report = store.fsck().unwrap();
        assert!(report.is_clean(), "{:?}", report.problems);
        store.flush().unwrap();
    }
    // Flip a byte in the middle of every value-log (blob) file: the object payloads live there.
    let mut flipped = 0;
    for file in walk(dir.path()) {
        let is_blob = file.components().any(|c| c.as_os_str() == "blobs");
        if is_blob && std::fs::metadata(&file).unwrap().len() > 1024 {
            let mut bytes = std::fs::read(&file).unwrap();
            let mid = bytes.len() / 2;
            bytes[mid] ^= 0xff;
            std::fs::write(&file, bytes).unwrap();
            flipped += 1;
        }
    }
    assert!(flipped > 0, "no blob file found under {:?}", dir.path());
    let store = Store::open_fjall(dir.path()).unwrap();
    let report = store.fsck().unwrap();
    assert!(!report.is_clean(), "a flipped byte went unnoticed");
    eprintln!("fsck found: {:?}", report.problems);
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}
